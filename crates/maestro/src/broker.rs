//! Broker selection (architecture.md §1): `--broker grpc|mqtt|pubsub`. Builds the source-side
//! and agent-side transports as trait objects, so the server and agent never name a backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use maestro_broker_grpc::{GrpcAgent, GrpcAgentConfig, GrpcBroker, GrpcBrokerConfig};
use maestro_broker_mqtt::{MqttAgent, MqttConfig, MqttSource, MqttTopics};
use maestro_broker_pubsub::{PubSubAgent, PubSubConfig, PubSubSource};
use maestro_transport::{DynAgentTransport, DynSourceTransport};

/// The gRPC broker address agents use when none is given.
pub const DEFAULT_GRPC_BROKER_URL: &str = "localhost:8091";

/// The broker backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// The server hosts the agent-facing gRPC endpoint itself (no third party).
    Grpc,
    /// An MQTT 5 broker (Mosquitto, EMQX, AWS IoT, …; or the embedded rumqttd).
    Mqtt,
    /// Google Cloud Pub/Sub (or its emulator).
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
    /// The backend failed to start.
    #[error(transparent)]
    Transport(#[from] maestro_transport::Error),
    /// `--broker mqtt` without a broker to talk to.
    #[error(
        "--broker mqtt needs a broker: --broker-config FILE (sdk-go MQTT keys), --broker-url HOST:PORT or --embedded-mqtt ADDR"
    )]
    MqttWithoutBroker,
    /// `--broker pubsub` without a project.
    #[error("--broker pubsub needs --broker-config FILE (sdk-go Pub/Sub keys) or --pubsub-project PROJECT")]
    PubsubWithoutProject,
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
    /// MQTT, with `embedded_mqtt`: a Mosquitto password file; the embedded broker then requires
    /// logins and confines each agent to its consumer's topics (`None`: open to anyone).
    pub embedded_mqtt_password_file: Option<std::path::PathBuf>,
    /// Without a config file: the MQTT broker `host:port` (Maestro's topic layout), or the
    /// Pub/Sub endpoint (`host:port` of an emulator; unset: `PUBSUB_EMULATOR_HOST`, else
    /// Google's endpoint with TLS).
    pub broker_url: Option<String>,
    /// Pub/Sub without a config file: the GCP project holding Maestro's topics.
    pub pubsub_project: Option<String>,
    /// The server's source id (MQTT topics, Pub/Sub subscriptions, client ids).
    pub source_id: String,
    /// The server's broker client id (MQTT; also the instance id).
    pub client_id: String,
    /// `grpc`: serve agents over TLS (Go's `--grpc-broker-tls-cert-file`,
    /// `--grpc-broker-tls-key-file`; mutual TLS with `--grpc-broker-client-ca-file`).
    pub grpc_tls: Option<maestro_tls::ServerTlsFiles>,
    /// `grpc`: authenticates agents and confines each to its own consumer (docs/security.md).
    pub grpc_gate: maestro_auth::Gate,
}

/// Settings of an agent's side of the broker.
#[derive(Debug, Clone)]
pub struct AgentBrokerSettings {
    /// The backend.
    pub kind: BrokerKind,
    /// sdk-go style broker config file (`--workload-source-config`).
    pub config_file: Option<String>,
    /// Without a config file: the gRPC broker address (default [`DEFAULT_GRPC_BROKER_URL`]),
    /// the MQTT broker `host:port`, or the Pub/Sub endpoint (as in [`SourceBrokerSettings`]).
    pub url: Option<String>,
    /// Pub/Sub without a config file: the GCP project.
    pub pubsub_project: Option<String>,
}

impl AgentBrokerSettings {
    /// The hub host hashed into AppliedManifestWork names (protocol.md §8.3): the MQTT
    /// `brokerHost`, the gRPC `url`, `""` for Pub/Sub.
    ///
    /// # Errors
    /// [`BrokerError::Config`] when the config file cannot be read.
    pub fn hub_host(&self) -> Result<String, BrokerError> {
        Ok(match (self.kind, &self.config_file) {
            (BrokerKind::Pubsub, _) => String::new(),
            (BrokerKind::Grpc, _) => grpc_agent_config(self)?.url,
            (BrokerKind::Mqtt, Some(path)) => mqtt_config_file(path)?.broker_host,
            (BrokerKind::Mqtt, None) => self.url.clone().unwrap_or_default(),
        })
    }
}

fn config_error(path: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Config { path: path.into(), reason: e.to_string() }
}

/// Reads an sdk-go style MQTT config file.
///
/// # Errors
/// [`BrokerError::Config`] naming the file.
pub fn mqtt_config_file(path: &str) -> Result<MqttConfig, BrokerError> {
    MqttConfig::from_file(path).map_err(|e| config_error(path, e))
}

/// Pub/Sub roles, for completing a configuration's subscriptions.
#[derive(Debug, Clone, Copy)]
pub enum PubSubRole<'a> {
    /// The server, with its source id.
    Source(&'a str),
    /// An agent, with its consumer name.
    Agent(&'a str),
}

/// The Pub/Sub configuration: the sdk-go file when given (subscriptions left empty in it are
/// filled with Maestro's names for `role`), else Maestro's layout on `project` at `endpoint`
/// (protocol.md §7.3).
///
/// # Errors
/// [`BrokerError::Config`] for a bad file; [`BrokerError::PubsubWithoutProject`] when neither a
/// file nor a project is given.
pub fn pubsub_config(
    file: Option<&str>,
    endpoint: Option<&str>,
    project: Option<&str>,
    role: PubSubRole<'_>,
) -> Result<PubSubConfig, BrokerError> {
    let base = match (file, project) {
        (Some(path), _) => PubSubConfig::from_file(path).map_err(|e| config_error(path, e))?,
        (None, Some(project)) => PubSubConfig::maestro_defaults(project, endpoint),
        (None, None) => return Err(BrokerError::PubsubWithoutProject),
    };
    let subs = &base.subscriptions;
    Ok(match role {
        PubSubRole::Source(id) if subs.agent_events.is_empty() && subs.agent_broadcast.is_empty() => {
            base.for_source(id)
        }
        PubSubRole::Agent(c) if subs.source_events.is_empty() && subs.source_broadcast.is_empty() => {
            base.for_agent(c)
        }
        _ => base,
    })
}

async fn mqtt_source(
    s: &SourceBrokerSettings,
) -> Result<(DynSourceTransport, Option<SocketAddr>), BrokerError> {
    let embedded = match s.embedded_mqtt {
        Some(addr) => Some(crate::embedded_mqtt::start(&crate::embedded_mqtt::EmbeddedOptions {
            addr,
            max_payload_bytes: 2 * maestro_transport::DEFAULT_MAX_EVENT_BYTES,
            password_file: s.embedded_mqtt_password_file.clone(),
            source_id: s.source_id.clone(),
        })?),
        None => None,
    };
    let host = embedded.as_ref().map(|e| e.addr.to_string()).or_else(|| s.broker_url.clone());
    let mut config = match (&s.config_file, host) {
        (Some(path), _) => mqtt_config_file(path)?,
        (None, Some(host)) => MqttConfig::new(host, MqttTopics::maestro(&s.source_id)),
        (None, None) => return Err(BrokerError::MqttWithoutBroker),
    };
    if let Some(e) = &embedded {
        e.apply_server_login(&mut config);
    }
    let source = MqttSource::connect(config, &s.source_id, &s.client_id).await?;
    Ok((source as DynSourceTransport, embedded.map(|e| e.addr)))
}

async fn pubsub_source(s: &SourceBrokerSettings) -> Result<DynSourceTransport, BrokerError> {
    let config = pubsub_config(
        s.config_file.as_deref(),
        s.broker_url.as_deref(),
        s.pubsub_project.as_deref(),
        PubSubRole::Source(&s.source_id),
    )?;
    Ok(PubSubSource::connect(config, &s.source_id).await? as DynSourceTransport)
}

/// Builds the server's source transport, with the address agents connect to when the server
/// hosts it (the gRPC broker, or the embedded MQTT broker). The gRPC broker gets the default
/// limits and accepts every consumer name; `maestro server` uses [`source_transport_with`].
///
/// # Errors
/// [`BrokerError`] for a bad or missing configuration; bind and connection failures.
pub async fn source_transport(
    s: &SourceBrokerSettings,
) -> Result<(DynSourceTransport, Option<SocketAddr>), BrokerError> {
    source_transport_with(s, GrpcBrokerConfig::default()).await
}

/// As [`source_transport`], with `grpc` as the base of the gRPC broker's configuration (its
/// limits and consumer registry, docs/security.md "Limits"); its address, heartbeat and TLS
/// come from `s`. Other backends ignore `grpc`.
///
/// # Errors
/// As [`source_transport`].
pub async fn source_transport_with(
    s: &SourceBrokerSettings,
    grpc: GrpcBrokerConfig,
) -> Result<(DynSourceTransport, Option<SocketAddr>), BrokerError> {
    match s.kind {
        BrokerKind::Grpc => {
            let cfg = GrpcBrokerConfig {
                bind_address: s.grpc_bind,
                heartbeat_interval: s.heartbeat,
                tls: s.grpc_tls.clone(),
                ..grpc
            };
            let broker = GrpcBroker::bind_with_gate(cfg, s.grpc_gate.clone()).await?;
            let addr = broker.local_addr();
            Ok((broker as DynSourceTransport, Some(addr)))
        }
        BrokerKind::Mqtt => mqtt_source(s).await,
        BrokerKind::Pubsub => Ok((pubsub_source(s).await?, None)),
    }
}

fn grpc_agent_config(s: &AgentBrokerSettings) -> Result<GrpcAgentConfig, BrokerError> {
    match &s.config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| config_error(path, e))?;
            serde_yaml_ng::from_str::<GrpcAgentConfig>(&text).map_err(|e| config_error(path, e))
        }
        None => Ok(GrpcAgentConfig::new(s.url.as_deref().unwrap_or(DEFAULT_GRPC_BROKER_URL))),
    }
}

/// Builds an agent transport for `consumer` with agent id `agent_id`. Without a config file,
/// MQTT uses Maestro's topic layout for source `maestro`.
///
/// # Errors
/// [`BrokerError`] on a bad or missing configuration.
pub async fn agent_transport(
    s: &AgentBrokerSettings,
    consumer: &str,
    agent_id: &str,
) -> Result<DynAgentTransport, BrokerError> {
    match s.kind {
        BrokerKind::Grpc => {
            let agent: Arc<GrpcAgent> = GrpcAgent::new(grpc_agent_config(s)?, consumer, agent_id)?;
            Ok(agent as DynAgentTransport)
        }
        BrokerKind::Mqtt => {
            let config = match (&s.config_file, &s.url) {
                (Some(path), _) => mqtt_config_file(path)?,
                (None, Some(url)) => MqttConfig::new(url, MqttTopics::maestro("maestro")),
                (None, None) => return Err(BrokerError::MqttWithoutBroker),
            };
            Ok(MqttAgent::connect(config, consumer, agent_id).await? as DynAgentTransport)
        }
        BrokerKind::Pubsub => {
            let config = pubsub_config(
                s.config_file.as_deref(),
                s.url.as_deref(),
                s.pubsub_project.as_deref(),
                PubSubRole::Agent(consumer),
            )?;
            Ok(PubSubAgent::connect(config, consumer, agent_id).await? as DynAgentTransport)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pubsub_layout_and_missing_project() {
        let cfg = pubsub_config(None, Some("127.0.0.1:8085"), Some("maestro-test"), PubSubRole::Agent("c1"));
        let cfg = cfg.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.subscriptions.source_events, "projects/maestro-test/subscriptions/sourceevents-c1");
        assert!(cfg.disable_tls && cfg.auto_create_enabled());
        let src = pubsub_config(None, None, Some("maestro-test"), PubSubRole::Source("maestro"));
        let src = src.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(src.subscriptions.agent_events, "projects/maestro-test/subscriptions/agentevents-maestro");
        let err = pubsub_config(None, None, None, PubSubRole::Source("maestro")).unwrap_err();
        assert!(err.to_string().contains("--pubsub-project"), "{err}");
        let err = pubsub_config(Some("/nonexistent/pubsub.yaml"), None, None, PubSubRole::Agent("c1"));
        assert!(err.unwrap_err().to_string().contains("/nonexistent/pubsub.yaml"));
    }
}
