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
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::broker::{BrokerKind, SourceBrokerSettings, agent_transport};
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
    /// rumqttd on a free port.
    pub mqtt_host: Option<String>,
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
        }
    }
}

struct RunningAgent {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// The running stack.
pub struct LocalStack {
    config: StackConfig,
    settings: ServerSettings,
    server: Option<Started>,
    /// REST client for the server.
    pub rest: RestClient,
    /// Source client for the server.
    pub source: SourceClient,
    agents: HashMap<String, RunningAgent>,
    clusters: HashMap<String, Arc<SimulatedCluster>>,
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
        let mut settings = crate::server::defaults(&config.db_url, config.broker);
        settings.broker = SourceBrokerSettings {
            kind: config.broker,
            grpc_bind: loopback(),
            heartbeat: config.heartbeat,
            embedded_mqtt: (config.broker == BrokerKind::Mqtt && config.mqtt_host.is_none()).then(loopback),
            mqtt_broker_host: config.mqtt_host.clone(),
            ..settings.broker
        };
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
                settings.broker.mqtt_broker_host = Some(a.to_string());
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
            settings,
            server: Some(started),
            rest,
            source,
            agents: HashMap::new(),
            clusters: HashMap::new(),
        })
    }

    /// The address agents connect to: the gRPC broker, or the MQTT broker `host:port`.
    pub fn broker_addr(&self) -> String {
        match self.config.broker {
            BrokerKind::Mqtt => self.settings.broker.mqtt_broker_host.clone().unwrap_or_default(),
            _ => self.settings.broker.grpc_bind.to_string(),
        }
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
        self.clusters.entry(consumer.to_owned()).or_insert_with(|| Arc::new(SimulatedCluster::new())).clone()
    }

    /// Starts (or restarts) the agent of `consumer` on its simulated cluster.
    ///
    /// # Errors
    /// Broker configuration failures.
    pub async fn start_agent(&mut self, consumer: &str) -> anyhow::Result<()> {
        self.stop_agent(consumer).await;
        let agent_id = format!("{consumer}-work-agent");
        let transport =
            agent_transport(self.config.broker, None, &self.broker_addr(), consumer, &agent_id).await?;
        let mut cfg = AgentConfig::new(consumer);
        cfg.status_sync_interval = self.config.status_sync_interval;
        cfg.hub_host = self.broker_addr();
        let agent = Agent::new(cfg, transport, self.cluster(consumer));
        let (stop, rx) = oneshot::channel::<()>();
        let name = consumer.to_owned();
        let task = tokio::spawn(async move {
            if let Err(e) = agent
                .run(async {
                    let _ = rx.await;
                })
                .await
            {
                tracing::error!(consumer = %name, error = %e, "agent stopped with an error");
            }
        });
        self.agents.insert(consumer.to_owned(), RunningAgent { stop, task });
        Ok(())
    }

    /// Stops the agent of `consumer` (its simulated cluster keeps its objects).
    pub async fn stop_agent(&mut self, consumer: &str) {
        if let Some(a) = self.agents.remove(consumer) {
            let _ = a.stop.send(());
            let _ = a.task.await;
        }
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
        let names: Vec<String> = self.agents.keys().cloned().collect();
        for n in names {
            self.stop_agent(&n).await;
        }
        self.stop_server().await;
    }
}
