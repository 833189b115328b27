//! `maestro agent`: a work agent for one consumer.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use maestro_agent::{Agent, AgentConfig, Cluster, JournaledCluster, SimulatedCluster};

use crate::broker::{AgentBrokerSettings, agent_transport};

/// The cluster implementation an agent applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterKind {
    /// A real cluster through kube-rs (kubeconfig or in-cluster config).
    Kube,
    /// An in-process simulated cluster (objects in memory, or kept in the `--simulated-journal`
    /// file; realistic status).
    Simulated,
}

/// `maestro agent` flags choosing whose spec events the agent applies (flattened into the
/// agent's flags).
#[derive(Debug, Clone, clap::Args)]
pub struct AgentSourceArgs {
    /// Source id(s) whose spec events (and status resync requests) this agent handles: the
    /// server's `--source-id`, which it stamps as CloudEvent `source` on everything it sends to
    /// agents. Events from any other source are refused: not applied, logged as a warning,
    /// dropped. Repeat or separate with commas.
    #[arg(
        long = "source-id",
        env = "MAESTRO_SOURCE_ID",
        value_name = "ID",
        value_delimiter = ',',
        default_value = maestro_agent::config::DEFAULT_SOURCE_ID
    )]
    pub source_ids: Vec<String>,
}

/// `maestro agent` flags of the fleet-wipe guard (docs/operations.md §3.5; flattened into the
/// agent's flags).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct WipeGuardArgs {
    /// Fleet-wipe guard: when one spec resync answer would delete more than this percentage
    /// of the works the agent holds (works the server's store no longer has: a database
    /// restored from an old backup), the agent keeps their objects and reports the works
    /// Orphaned instead of deleting them. 0-100; 100 turns this rule off (a changed store
    /// identity still orphans).
    #[arg(long, env = "MAESTRO_WIPE_GUARD_PERCENT", value_name = "PERCENT", default_value_t = maestro_agent::config::DEFAULT_WIPE_GUARD_PERCENT, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub wipe_guard_percent: u8,
    /// While works are orphaned by the fleet-wipe guard: how often the agent asks the server
    /// for a spec resync again, to adopt the works sources publish again and to delete the
    /// others once an operator ran `maestro-cli consumer confirm-wipe` (e.g. `30s`).
    #[arg(long, env = "MAESTRO_ORPHAN_RECHECK_INTERVAL", value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub orphan_recheck_interval: Duration,
    /// How long the objects of a work that vanished from the source (the server's store no
    /// longer holds it and no source deleted it; also a work found only in its
    /// AppliedManifestWork after an agent restart) stay on the cluster before the agent
    /// deletes them, unless a source publishes the work again meanwhile (the OCM work agent's
    /// flag; e.g. `60m`, `0s` deletes at once).
    #[arg(long, env = "MAESTRO_APPLIEDMANIFESTWORK_EVICTION_GRACE_PERIOD", value_name = "DURATION", default_value = "60m", value_parser = humantime::parse_duration)]
    pub appliedmanifestwork_eviction_grace_period: Duration,
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
    /// With [`ClusterKind::Simulated`]: the journal keeping the cluster across restarts
    /// (`--simulated-journal`); `None`: in memory.
    pub simulated_journal: Option<std::path::PathBuf>,
    /// [`AgentConfig::clock_skew_ms`] (`--clock-skew-ms`, hidden: testing only).
    pub clock_skew_ms: i64,
    /// Status sync period.
    pub status_sync_interval: Duration,
    /// [`AgentConfig::shutdown_timeout`]; `--shutdown-timeout`, default 10 s.
    pub shutdown_timeout: Duration,
    /// The accepted CloudEvent `source` ids of spec events
    /// ([`AgentConfig::accepted_sources`]); `--source-id`, default `maestro`.
    pub accepted_sources: Vec<String>,
    /// Where to serve `/metrics` and the health endpoints (`--metrics-addr`); `None`: nowhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The fleet-wipe guard's settings.
    pub wipe_guard: WipeGuardArgs,
}

async fn cluster(kind: ClusterKind, journal: Option<&std::path::Path>) -> anyhow::Result<Arc<dyn Cluster>> {
    if journal.is_some() && kind != ClusterKind::Simulated {
        anyhow::bail!("--simulated-journal needs --cluster simulated");
    }
    Ok(match kind {
        ClusterKind::Simulated => match journal {
            Some(path) => Arc::new(JournaledCluster::open(path).context("opening the simulated cluster's journal")?),
            None => Arc::new(SimulatedCluster::new()),
        },
        ClusterKind::Kube => Arc::new(
            maestro_agent::KubeCluster::infer()
                .await
                .context("connecting to Kubernetes (kubeconfig or in-cluster config); use --cluster simulated to run without one")?,
        ),
    })
}

/// Builds the agent described by `s`, with its transport's "subscribed" signal (readiness).
///
/// # Errors
/// Broker configuration or cluster connection failures.
pub async fn build(s: &AgentSettings) -> anyhow::Result<(Agent, maestro_transport::Subscribed)> {
    let mut config = AgentConfig::new(&s.consumer);
    config.agent_id = s.agent_id.clone();
    config.status_sync_interval = s.status_sync_interval;
    config.shutdown_timeout = s.shutdown_timeout;
    config.hub_host = s.broker.hub_host()?;
    config.accepted_sources = s.accepted_sources.clone();
    config.wipe_guard_percent = s.wipe_guard.wipe_guard_percent;
    config.orphan_recheck_interval = s.wipe_guard.orphan_recheck_interval;
    config.eviction_grace_period = s.wipe_guard.appliedmanifestwork_eviction_grace_period;
    config.clock_skew_ms = s.clock_skew_ms;
    config.validate().map_err(|e| anyhow::anyhow!("invalid agent settings: {e}"))?;
    let transport = agent_transport(&s.broker, &s.consumer, &s.agent_id)
        .await
        .with_context(|| format!("configuring the {} broker", s.broker.kind.as_str()))?;
    let subscribed = transport.subscribed();
    Ok((Agent::new(config, transport, cluster(s.cluster, s.simulated_journal.as_deref()).await?), subscribed))
}

/// Runs `maestro agent` until Ctrl-C / SIGTERM.
///
/// # Errors
/// Start-up failures.
pub async fn run(s: AgentSettings) -> anyhow::Result<()> {
    let (agent, subscribed) = build(&s).await?;
    let ops = match s.metrics_addr {
        Some(addr) => Some(serve_ops(addr, subscribed).await?),
        None => None,
    };
    tracing::info!(consumer = %s.consumer, agent_id = %s.agent_id, broker = s.broker.kind.as_str(),
        accepted_sources = ?s.accepted_sources, "agent starting");
    agent.run(crate::shutdown_signal()).await.context("agent failed")?;
    drop(ops);
    Ok(())
}

/// Serves `/metrics`, `/livez`, `/healthz` (alive) and `/readyz` (the broker subscribed at
/// least once) on `addr` until the returned guard is dropped.
///
/// # Errors
/// The recorder cannot be installed, or `addr` cannot be bound.
async fn serve_ops(
    addr: std::net::SocketAddr,
    subscribed: maestro_transport::Subscribed,
) -> anyhow::Result<maestro_transport::retry::DropGuard> {
    use axum::routing::get;
    let handle = crate::metrics_recorder()?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--metrics-addr {addr}"))?;
    let ready = move || {
        let subscribed = *subscribed.borrow() > 0;
        async move {
            if subscribed {
                (axum::http::StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"})))
            } else {
                let body =
                    serde_json::json!({"status": "not ready", "reason": "the broker is not subscribed yet"});
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(body))
            }
        }
    };
    let alive = || async { axum::Json(serde_json::json!({"status": "ok"})) };
    let router = maestro_server::ops::metrics_router(handle)
        .route("/readyz", get(ready))
        .route("/livez", get(alive))
        .route("/healthz", get(alive));
    let cancel = maestro_transport::retry::CancellationToken::new();
    let stop = cancel.clone();
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "agent metrics and health listening");
    tokio::spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "agent metrics listener failed");
        }
    });
    Ok(cancel.drop_guard())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::AgentSourceArgs;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        sources: AgentSourceArgs,
    }

    fn parse(args: &[&str]) -> Vec<String> {
        let argv = std::iter::once("maestro-agent").chain(args.iter().copied());
        Flags::try_parse_from(argv).expect("parse").sources.source_ids
    }

    #[test]
    fn source_ids_default_to_maestro_and_take_lists() {
        if std::env::var_os("MAESTRO_SOURCE_ID").is_none() {
            assert_eq!(parse(&[]), ["maestro"]);
        }
        assert_eq!(parse(&["--source-id", "a,b", "--source-id", "c"]), ["a", "b", "c"]);
    }
}
