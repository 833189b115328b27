//! Broker selection (architecture.md §1): `--broker grpc|mqtt|pubsub`. Builds the source-side
//! and agent-side transports as trait objects, so the server and agent never name a backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use maestro_broker_grpc::{GrpcAgent, GrpcAgentConfig, GrpcBroker, GrpcBrokerConfig};
use maestro_broker_mqtt::{MqttAgent, MqttConfig, MqttSource, MqttTopics};
use maestro_transport::{DynAgentTransport, DynSourceTransport};

/// The broker backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// The server hosts the agent-facing gRPC endpoint itself (no third party).
    Grpc,
    /// An MQTT 5 broker (Mosquitto, EMQX, AWS IoT, …; or the embedded rumqttd).
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
    /// `--broker mqtt` without a broker to talk to.
    #[error("--broker mqtt needs a broker: --broker-config FILE (sdk-go MQTT keys) or --embedded-mqtt ADDR")]
    MqttWithoutBroker,
    /// The embedded MQTT broker failed.
    #[error(transparent)]
    Embedded(#[from] crate::embedded_mqtt::EmbeddedError),
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
    /// MQTT / Pub/Sub: the broker config file (sdk-go keys).
    pub config_file: Option<String>,
    /// MQTT: run the embedded rumqttd on this address (port 0 = any free port).
    pub embedded_mqtt: Option<SocketAddr>,
    /// MQTT: an external broker `host:port` used with Maestro's topic layout when no config
    /// file is given.
    pub mqtt_broker_host: Option<String>,
    /// The server's source id (MQTT topics, client ids).
    pub source_id: String,
    /// The server's broker client id (MQTT; also the instance id).
    pub client_id: String,
}

/// Reads an sdk-go style MQTT config file.
///
/// # Errors
/// [`BrokerError::Config`] naming the file.
pub fn mqtt_config_file(path: &str) -> Result<MqttConfig, BrokerError> {
    MqttConfig::from_file(path).map_err(|e| BrokerError::Config { path: path.into(), reason: e.to_string() })
}

async fn mqtt_source(
    s: &SourceBrokerSettings,
) -> Result<(DynSourceTransport, Option<SocketAddr>), BrokerError> {
    let embedded = match s.embedded_mqtt {
        Some(addr) => {
            Some(crate::embedded_mqtt::start(addr, 2 * maestro_transport::DEFAULT_MAX_EVENT_BYTES)?)
        }
        None => None,
    };
    let host = embedded.map(|a| a.to_string()).or_else(|| s.mqtt_broker_host.clone());
    let config = match (&s.config_file, host) {
        (Some(path), _) => mqtt_config_file(path)?,
        (None, Some(host)) => MqttConfig::new(host, MqttTopics::maestro(&s.source_id)),
        (None, None) => return Err(BrokerError::MqttWithoutBroker),
    };
    let source = MqttSource::connect(config, &s.source_id, &s.client_id).await?;
    Ok((source as DynSourceTransport, embedded))
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
        BrokerKind::Mqtt => mqtt_source(s).await,
        BrokerKind::Pubsub => Err(BrokerError::Unavailable("pubsub")),
    }
}

/// Builds an agent transport for `consumer`. `config_file` is an sdk-go style YAML broker
/// config (`--workload-source-config`); without it, `url` is used (gRPC: the broker address;
/// MQTT: the broker `host:port` with Maestro's topic layout for source `maestro`).
///
/// # Errors
/// [`BrokerError`] on a bad config or an unavailable backend.
pub async fn agent_transport(
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
        BrokerKind::Mqtt => {
            let config = match config_file {
                Some(path) => mqtt_config_file(path)?,
                None => MqttConfig::new(url, MqttTopics::maestro("maestro")),
            };
            Ok(MqttAgent::connect(config, consumer, agent_id).await? as DynAgentTransport)
        }
        BrokerKind::Pubsub => Err(BrokerError::Unavailable("pubsub")),
    }
}
