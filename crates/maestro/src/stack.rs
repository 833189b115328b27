//! A complete local deployment in one process: a server (any store URL) with the gRPC broker
//! on loopback ports, and agents on simulated clusters. Used by `maestro demo` and by the
//! end-to-end tests; agents and the server can be stopped and restarted (same ports, same
//! simulated clusters) to exercise resync and outbox recovery.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use maestro_agent::{Agent, AgentConfig, SimulatedCluster};
use maestro_client::{RestClient, SourceClient};
use maestro_transport::retry::CancellationToken;
use tokio::task::JoinHandle;

use crate::broker::{AgentBrokerSettings, BrokerKind, PubSubRole, SourceBrokerSettings, agent_transport};
use crate::server::{ServerSettings, Started};

/// Stack settings.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Database URL.
    pub db_url: String,
    /// Source id of the client (the CLI's default is `maestro-cli`).
    pub client_source_id: String,
    /// Heartbeat period on gRPC streams.
    pub heartbeat: Option<Duration>,
    /// Agent status sync period.
    pub status_sync_interval: Duration,
    /// The broker between server and agents.
    pub broker: BrokerKind,
    /// MQTT: an external broker `host:port` (e.g. Mosquitto); `None` starts the embedded
    /// broker on a free port.
    pub mqtt_host: Option<String>,
    /// MQTT without `mqtt_host`: the embedded broker's engine (default: [`EmbeddedEngine`]'s).
    ///
    /// [`EmbeddedEngine`]: crate::broker::EmbeddedEngine
    pub embedded_mqtt_engine: crate::broker::EmbeddedEngine,
    /// Pub/Sub: the emulator `host:port` (required with [`BrokerKind::Pubsub`]).
    pub pubsub_endpoint: Option<String>,
    /// Pub/Sub: the project (default `maestro-local`).
    pub pubsub_project: String,
    /// Pub/Sub: how often clients check the service and recreate lost topics/subscriptions.
    pub pubsub_health_interval: Duration,
    /// Reconcile workers per agent (a fleet of thousands wants 1).
    pub agent_workers: usize,
    /// The agents' [`AgentConfig::orphan_recheck_interval`] (default 30 s).
    pub orphan_recheck_interval: Duration,
    /// The agents' [`AgentConfig::eviction_grace_period`] (default 60 min).
    pub eviction_grace_period: Duration,
}

impl StackConfig {
    /// Defaults for `db_url`: heartbeats every 10 s, status sync every 1 s.
    pub fn new(db_url: &str) -> Self {
        StackConfig {
            db_url: db_url.to_owned(),
            client_source_id: "maestro-demo".into(),
            heartbeat: Some(Duration::from_secs(10)),
            status_sync_interval: Duration::from_secs(1),
            broker: BrokerKind::Grpc,
            mqtt_host: None,
            embedded_mqtt_engine: Default::default(),
            pubsub_endpoint: None,
            pubsub_project: "maestro-local".into(),
            pubsub_health_interval: Duration::from_secs(1),
            agent_workers: 4,
            orphan_recheck_interval: maestro_agent::config::DEFAULT_ORPHAN_RECHECK_INTERVAL,
            eviction_grace_period: maestro_agent::config::DEFAULT_EVICTION_GRACE_PERIOD,
        }
    }
}

struct RunningAgent {
    stop: CancellationToken,
    task: JoinHandle<()>,
    handle: maestro_agent::AgentHandle,
}

/// Agents on simulated clusters, one per consumer, each a task of this process. A consumer's
/// simulated cluster is kept across agent restarts (until [`SimulatedAgents::reset_cluster`]).
/// Used by [`LocalStack`] and by the benchmark harness's fleet simulator.
#[derive(Default)]
pub struct SimulatedAgents {
    agents: HashMap<String, RunningAgent>,
    clusters: HashMap<String, Arc<SimulatedCluster>>,
}

impl std::fmt::Debug for SimulatedAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedAgents").field("running", &self.agents.len()).finish()
    }
}

impl SimulatedAgents {
    /// The simulated cluster of `consumer` (created empty on first use).
    pub fn cluster(&mut self, consumer: &str) -> Arc<SimulatedCluster> {
        self.clusters.entry(consumer.to_owned()).or_insert_with(|| Arc::new(SimulatedCluster::new())).clone()
    }

    /// Replaces the simulated cluster of `consumer` with an empty one (a new cluster); takes
    /// effect at the agent's next start.
    pub fn reset_cluster(&mut self, consumer: &str) {
        self.clusters.insert(consumer.to_owned(), Arc::new(SimulatedCluster::new()));
    }

    /// Runs an agent for `config.consumer` on its simulated cluster over `transport`, replacing
    /// the running one, if any (call [`SimulatedAgents::stop`] first to wait for it).
    pub fn spawn(&mut self, config: AgentConfig, transport: maestro_transport::DynAgentTransport) {
        let name = config.consumer.clone();
        let agent = Agent::new(config, transport, self.cluster(&name));
        let handle = agent.handle();
        let stop = CancellationToken::new();
        let consumer = name.clone();
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(e) = agent.run(shutdown).await {
                tracing::error!(%consumer, error = %e, "agent stopped with an error");
            }
        });
        self.agents.insert(name, RunningAgent { stop, task, handle });
    }

    /// A handle on the running agent of `consumer` (its works), if any.
    pub fn handle(&self, consumer: &str) -> Option<maestro_agent::AgentHandle> {
        self.agents.get(consumer).map(|a| a.handle.clone())
    }

    /// Stops the agent of `consumer` and waits for it (its simulated cluster keeps its
    /// objects).
    pub async fn stop(&mut self, consumer: &str) {
        if let Some(a) = self.agents.remove(consumer) {
            a.stop.cancel();
            let _ = a.task.await;
        }
    }

    /// Stops every agent (all signalled first) and waits for them all.
    pub async fn stop_all(&mut self) {
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut self.agents)
            .into_values()
            .map(|a| {
                a.stop.cancel();
                a.task
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// The running stack.
pub struct LocalStack {
    config: StackConfig,
    /// Holds the generated Pub/Sub config files.
    config_dir: crate::scratch::ScratchDir,
    settings: ServerSettings,
    server: Option<Started>,
    /// REST client for the server.
    pub rest: RestClient,
    /// Source client for the server.
    pub source: SourceClient,
    agents: SimulatedAgents,
}

impl std::fmt::Debug for LocalStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStack").field("db", &maestro_store::redact(&self.config.db_url)).finish()
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl LocalStack {
    /// Starts the server on free loopback ports.
    ///
    /// # Errors
    /// Database, bind or client connection failures.
    pub async fn start(config: StackConfig) -> anyhow::Result<Self> {
        let config_dir = crate::scratch::ScratchDir::new("maestro-stack")
            .context("creating a directory for broker configs")?;
        let mut settings = crate::server::defaults(&config.db_url, config.broker);
        settings.broker = SourceBrokerSettings {
            kind: config.broker,
            grpc_bind: loopback(),
            heartbeat: config.heartbeat,
            embedded_mqtt: (config.broker == BrokerKind::Mqtt && config.mqtt_host.is_none()).then(loopback),
            embedded_mqtt_engine: config.embedded_mqtt_engine,
            broker_url: config.mqtt_host.clone(),
            config_file: None,
            ..settings.broker
        };
        if config.broker == BrokerKind::Pubsub {
            let role = PubSubRole::Source(&settings.broker.source_id);
            settings.broker.config_file = Some(write_pubsub_config(&config, &config_dir, role)?);
        }
        settings.server.http_addr = loopback();
        settings.server.grpc_addr = loopback();
        settings.server.heartbeat = config.heartbeat;
        let started = crate::server::start(&settings).await?;
        // Pin the ports actually bound, so a restart comes back on the same addresses.
        settings.server.http_addr = started.server.http_addr;
        settings.server.grpc_addr = started.server.grpc_addr;
        match (config.broker, started.broker_addr) {
            (BrokerKind::Grpc, Some(a)) => settings.broker.grpc_bind = a,
            (BrokerKind::Mqtt, Some(a)) => {
                // The embedded broker keeps running across server restarts: reuse it.
                settings.broker.embedded_mqtt = None;
                settings.broker.broker_url = Some(a.to_string());
            }
            _ => {}
        }
        let rest = RestClient::new(&format!("http://{}", started.server.http_addr))?;
        let source = SourceClient::connect(
            &started.server.grpc_addr.to_string(),
            &config.client_source_id,
            rest.clone(),
        )
        .await
        .context("connecting the source client")?;
        Ok(LocalStack {
            config,
            config_dir,
            settings,
            server: Some(started),
            rest,
            source,
            agents: SimulatedAgents::default(),
        })
    }

    /// The address agents connect to: the gRPC broker, the MQTT broker `host:port`, or the
    /// Pub/Sub emulator.
    pub fn broker_addr(&self) -> String {
        match self.config.broker {
            BrokerKind::Mqtt => self.settings.broker.broker_url.clone().unwrap_or_default(),
            BrokerKind::Pubsub => self.config.pubsub_endpoint.clone().unwrap_or_default(),
            BrokerKind::Grpc => self.settings.broker.grpc_bind.to_string(),
        }
    }

    fn agent_broker(&self, consumer: &str) -> anyhow::Result<AgentBrokerSettings> {
        let config_file = match self.config.broker {
            BrokerKind::Pubsub => {
                Some(write_pubsub_config(&self.config, &self.config_dir, PubSubRole::Agent(consumer))?)
            }
            _ => None,
        };
        Ok(AgentBrokerSettings {
            kind: self.config.broker,
            config_file,
            url: Some(self.broker_addr()),
            pubsub_project: None,
        })
    }

    /// The REST address.
    pub fn http_addr(&self) -> SocketAddr {
        self.settings.server.http_addr
    }

    /// The source gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.settings.server.grpc_addr
    }

    /// The simulated cluster of `consumer` (kept across agent restarts).
    pub fn cluster(&mut self, consumer: &str) -> Arc<SimulatedCluster> {
        self.agents.cluster(consumer)
    }

    /// Starts (or restarts) the agent of `consumer` on its simulated cluster.
    ///
    /// # Errors
    /// Broker configuration failures.
    pub async fn start_agent(&mut self, consumer: &str) -> anyhow::Result<()> {
        self.stop_agent(consumer).await;
        let agent_id = format!("{consumer}-work-agent");
        let broker = self.agent_broker(consumer)?;
        let transport = agent_transport(&broker, consumer, &agent_id).await?;
        let mut cfg = AgentConfig::new(consumer);
        cfg.status_sync_interval = self.config.status_sync_interval;
        cfg.workers = self.config.agent_workers;
        cfg.orphan_recheck_interval = self.config.orphan_recheck_interval;
        cfg.eviction_grace_period = self.config.eviction_grace_period;
        cfg.hub_host = broker.hub_host()?;
        self.agents.spawn(cfg, transport);
        Ok(())
    }

    /// Replaces the simulated cluster of `consumer` with an empty one (a new cluster); takes
    /// effect at the agent's next start.
    pub fn reset_cluster(&mut self, consumer: &str) {
        self.agents.reset_cluster(consumer);
    }

    /// A handle on the running agent of `consumer` (its works), if any.
    pub fn agent(&self, consumer: &str) -> Option<maestro_agent::AgentHandle> {
        self.agents.handle(consumer)
    }

    /// Stops the agent of `consumer` (its simulated cluster keeps its objects).
    pub async fn stop_agent(&mut self, consumer: &str) {
        self.agents.stop(consumer).await;
    }

    /// Stops the server (agents keep running and reconnect when it is back).
    pub async fn stop_server(&mut self) {
        if let Some(s) = self.server.take() {
            s.server.shutdown().await;
        }
    }

    /// Starts the server again on the same addresses and database.
    ///
    /// # Errors
    /// Start-up failures.
    pub async fn restart_server(&mut self) -> anyhow::Result<()> {
        self.stop_server().await;
        self.server = Some(crate::server::start(&self.settings).await?);
        Ok(())
    }

    /// Stops every agent and the server.
    pub async fn shutdown(mut self) {
        self.agents.stop_all().await;
        self.stop_server().await;
    }
}

/// Writes an sdk-go style Pub/Sub config file for `role` (Maestro's layout on the stack's
/// project and emulator, with its health check period) and returns its path: the stack runs
/// the same config-file path as a deployment.
fn write_pubsub_config(
    config: &StackConfig,
    dir: &crate::scratch::ScratchDir,
    role: PubSubRole<'_>,
) -> anyhow::Result<String> {
    let endpoint =
        config.pubsub_endpoint.as_deref().context("--broker pubsub needs the emulator endpoint")?;
    Ok(crate::broker::write_pubsub_config(
        dir.path(),
        endpoint,
        &config.pubsub_project,
        config.pubsub_health_interval,
        role,
    )?)
}
