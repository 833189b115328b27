//! `maestro server` and `maestro migrate`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use maestro_server::registered::RegisteredConsumers;
use maestro_server::{RunningServer, ServerConfig};

use crate::broker::{BrokerKind, SourceBrokerSettings, source_transport_with};

/// Everything `maestro server` needs.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Database URL (`sqlite://FILE`, `sqlite::memory:`, `postgres://…`).
    pub db_url: String,
    /// Where to serve Prometheus metrics (`--metrics-server-bindport`); `None`: nowhere, and no
    /// recorder is installed.
    pub metrics_addr: Option<SocketAddr>,
    /// The broker.
    pub broker: SourceBrokerSettings,
    /// Server settings.
    pub server: ServerConfig,
    /// Authentication and authorization of the three listeners.
    pub security: crate::security::SecurityArgs,
    /// The agent broker's limits and registered-consumer check (`--broker grpc`;
    /// docs/security.md, "Limits").
    pub grpc_broker: crate::grpc_limits::BrokerLimits,
}

/// A started server with its broker address.
#[derive(Debug)]
pub struct Started {
    /// The running server.
    pub server: RunningServer,
    /// The agent-facing gRPC broker address, or the embedded MQTT broker's address.
    pub broker_addr: Option<SocketAddr>,
}

/// Claims a SQLite file for this server (`crate::instance_lock`), opens the store (running
/// migrations), builds the broker and starts the server.
///
/// # Errors
/// Another server on the same SQLite file; database, broker and bind failures, with context
/// naming what failed.
pub async fn start(s: &ServerSettings) -> anyhow::Result<Started> {
    let cas = crate::security::ClientCas {
        http: s.server.http_tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        grpc: s.server.grpc_tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        broker: s.broker.grpc_tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
    };
    if s.security.https_client_ca_file.is_some() && s.server.http_tls.is_none() {
        anyhow::bail!("--https-client-ca-file needs --enable-https");
    }
    let gates = s.security.gates(cas).await?;
    let mut s = s.clone();
    s.server.http_gate = gates.http;
    s.server.grpc_gate = gates.grpc;
    s.broker.grpc_gate = gates.broker;
    if let Some(addr) = s.metrics_addr {
        s.server.metrics = Some((addr, crate::metrics_recorder()?));
    }
    let s = &s;
    let lock = crate::instance_lock::claim(&s.db_url)?;
    let store = maestro_store::open(&s.db_url)
        .await
        .with_context(|| format!("opening database {}", maestro_store::redact(&s.db_url)))?;
    let consumers = Arc::new(RegisteredConsumers::new(store.clone()));
    let grpc = match s.broker.kind {
        BrokerKind::Grpc => s.grpc_broker.broker_config(&consumers),
        _ => Default::default(),
    };
    let (transport, broker_addr) = source_transport_with(&s.broker, grpc)
        .await
        .with_context(|| format!("starting the {} broker", s.broker.kind.as_str()))?;
    let config = maestro_server::ServerConfig { consumers: Some(consumers), ..s.server.clone() };
    let mut server = maestro_server::start(config, store, transport).await.context("starting the server")?;
    if let Some(lock) = lock {
        server.hold(lock);
    }
    if let Some(addr) = broker_addr {
        tracing::info!(%addr, broker = s.broker.kind.as_str(), "agent broker listening");
    }
    Ok(Started { server, broker_addr })
}

/// Runs `maestro server` until Ctrl-C / SIGTERM.
///
/// # Errors
/// Start-up failures.
pub async fn run(s: ServerSettings) -> anyhow::Result<()> {
    let started = start(&s).await?;
    crate::shutdown_signal().await;
    started.server.shutdown().await;
    Ok(())
}

/// Runs `maestro migrate`: applies pending migrations and exits.
///
/// # Errors
/// Database or migration failures.
pub async fn migrate(db_url: &str) -> anyhow::Result<()> {
    maestro_store::open(db_url)
        .await
        .with_context(|| format!("migrating {}", maestro_store::redact(db_url)))?;
    tracing::info!(db = %maestro_store::redact(db_url), "migrations applied");
    Ok(())
}

/// Default settings with the given broker kind (used by `demo` and tests).
pub fn defaults(db_url: &str, kind: BrokerKind) -> ServerSettings {
    ServerSettings {
        db_url: db_url.to_owned(),
        metrics_addr: None,
        broker: SourceBrokerSettings {
            kind,
            grpc_bind: SocketAddr::from(([0, 0, 0, 0], 8091)),
            heartbeat: Some(Duration::from_secs(10)),
            config_file: None,
            embedded_mqtt: None,
            embedded_mqtt_password_file: None,
            embedded_mqtt_engine: Default::default(),
            broker_url: None,
            pubsub_project: None,
            source_id: "maestro".into(),
            client_id: "maestro".into(),
            grpc_tls: None,
            grpc_gate: maestro_auth::Gate::open(),
        },
        server: ServerConfig::default(),
        security: crate::security::SecurityArgs::default(),
        grpc_broker: crate::grpc_limits::BrokerLimits::default(),
    }
}
