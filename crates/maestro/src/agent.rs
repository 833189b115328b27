//! `maestro agent`: a work agent for one consumer.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use maestro_agent::{Agent, AgentConfig, Cluster, SimulatedCluster};

use crate::broker::{AgentBrokerSettings, agent_transport};

/// The cluster implementation an agent applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterKind {
    /// A real cluster through kube-rs (kubeconfig or in-cluster config).
    Kube,
    /// An in-process simulated cluster (objects stored in memory; realistic status).
    Simulated,
}

/// Everything `maestro agent` needs.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Consumer name.
    pub consumer: String,
    /// Agent id (CloudEvent `source`).
    pub agent_id: String,
    /// The broker.
    pub broker: AgentBrokerSettings,
    /// Cluster implementation.
    pub cluster: ClusterKind,
    /// Status sync period.
    pub status_sync_interval: Duration,
}

async fn cluster(kind: ClusterKind) -> anyhow::Result<Arc<dyn Cluster>> {
    Ok(match kind {
        ClusterKind::Simulated => Arc::new(SimulatedCluster::new()),
        ClusterKind::Kube => Arc::new(
            maestro_agent::KubeCluster::infer()
                .await
                .context("connecting to Kubernetes (kubeconfig or in-cluster config); use --cluster simulated to run without one")?,
        ),
    })
}

/// Builds the agent described by `s`.
///
/// # Errors
/// Broker configuration or cluster connection failures.
pub async fn build(s: &AgentSettings) -> anyhow::Result<Agent> {
    let transport = agent_transport(&s.broker, &s.consumer, &s.agent_id)
        .await
        .with_context(|| format!("configuring the {} broker", s.broker.kind.as_str()))?;
    let mut config = AgentConfig::new(&s.consumer);
    config.agent_id = s.agent_id.clone();
    config.status_sync_interval = s.status_sync_interval;
    config.hub_host = s.broker.hub_host()?;
    Ok(Agent::new(config, transport, cluster(s.cluster).await?))
}

/// Runs `maestro agent` until Ctrl-C / SIGTERM.
///
/// # Errors
/// Start-up failures.
pub async fn run(s: AgentSettings) -> anyhow::Result<()> {
    let agent = build(&s).await?;
    tracing::info!(consumer = %s.consumer, agent_id = %s.agent_id, broker = s.broker.kind.as_str(), "agent starting");
    agent.run(crate::shutdown_signal()).await.context("agent failed")?;
    Ok(())
}
