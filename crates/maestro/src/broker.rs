//! Broker selection (architecture.md §1): `--broker grpc|mqtt|pubsub`. Builds the source-side
//! and agent-side transports as trait objects, so the server and agent never name a backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use maestro_broker_grpc::{GrpcAgent, GrpcAgentConfig, GrpcBroker, GrpcBrokerConfig};
use maestro_transport::{DynAgentTransport, DynSourceTransport};

/// The broker backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// The server hosts the agent-facing gRPC endpoint itself (no third party).
    Grpc,
    /// An external MQTT 5 broker (not available in this build yet).
    Mqtt,
    /// Google Cloud Pub/Sub (not available in this build yet).
    Pubsub,
}

impl BrokerKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerKind::Grpc => "grpc",
            BrokerKind::Mqtt => "mqtt",
            BrokerKind::Pubsub => "pubsub",
        }
    }
}

/// A broker that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The backend is not part of this build yet.
    #[error("the {0} broker is not available in this build yet; use --broker grpc")]
    Unavailable(&'static str),
    /// The backend failed to start.
    #[error(transparent)]
    Transport(#[from] maestro_transport::Error),
    /// The broker configuration file could not be read.
    #[error("cannot read broker config {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Settings of the server's side of the broker.
#[derive(Debug, Clone)]
pub struct SourceBrokerSettings {
    /// The backend.
    pub kind: BrokerKind,
    /// gRPC: the agent-facing listen address (default `0.0.0.0:8091`).
    pub grpc_bind: SocketAddr,
    /// gRPC: heartbeat period on agent streams (`None` disables).
    pub heartbeat: Option<Duration>,
}

/// Builds the server's source transport.
///
/// # Errors
/// [`BrokerError::Unavailable`] for backends not in this build; bind failures.
pub async fn source_transport(
    s: &SourceBrokerSettings,
) -> Result<(DynSourceTransport, Option<SocketAddr>), BrokerError> {
    match s.kind {
        BrokerKind::Grpc => {
            let cfg = GrpcBrokerConfig {
                bind_address: s.grpc_bind,
                heartbeat_interval: s.heartbeat,
                ..Default::default()
            };
            let broker = GrpcBroker::bind(cfg).await?;
            let addr = broker.local_addr();
            Ok((broker as DynSourceTransport, Some(addr)))
        }
        BrokerKind::Mqtt => Err(BrokerError::Unavailable("mqtt")),
        BrokerKind::Pubsub => Err(BrokerError::Unavailable("pubsub")),
    }
}

/// Builds an agent transport for `consumer`. `config_file` is an sdk-go style YAML broker
/// config (`--workload-source-config`); without it, `url` is used.
///
/// # Errors
/// [`BrokerError`] on a bad config or an unavailable backend.
pub fn agent_transport(
    kind: BrokerKind,
    config_file: Option<&str>,
    url: &str,
    consumer: &str,
    agent_id: &str,
) -> Result<DynAgentTransport, BrokerError> {
    match kind {
        BrokerKind::Grpc => {
            let cfg = match config_file {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| BrokerError::Config { path: path.into(), reason: e.to_string() })?;
                    serde_yaml_ng::from_str::<GrpcAgentConfig>(&text)
                        .map_err(|e| BrokerError::Config { path: path.into(), reason: e.to_string() })?
                }
                None => GrpcAgentConfig::new(url),
            };
            let agent: Arc<GrpcAgent> = GrpcAgent::new(cfg, consumer, agent_id)?;
            Ok(agent as DynAgentTransport)
        }
        BrokerKind::Mqtt => Err(BrokerError::Unavailable("mqtt")),
        BrokerKind::Pubsub => Err(BrokerError::Unavailable("pubsub")),
    }
}
