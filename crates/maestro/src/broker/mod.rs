//! Broker selection (docs/architecture.md §1): `--broker grpc|mqtt|pubsub`. Builds the source-side
//! and agent-side transports as trait objects, so the server and agent never name a backend.
//! This module is the one place a backend is constructed; each backend lives in its own
//! submodule, compiled only with its Cargo feature (`grpc`, `mqtt`, `pubsub`; all on by
//! default). Choosing a backend the binary was built without is [`BrokerError::NotBuilt`].

use std::net::SocketAddr;
use std::time::Duration;

use maestro_transport::{DynAgentTransport, DynSourceTransport};

#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "mqtt")]
mod mqtt;
#[cfg(feature = "pubsub")]
mod pubsub;

#[cfg(feature = "mqtt")]
pub use mqtt::mqtt_config_file;
#[cfg(feature = "pubsub")]
pub use pubsub::pubsub_config;

/// The base of the gRPC broker's configuration (its limits and consumer registry) given to
/// [`source_transport_with`] (an empty type in a binary built without the `grpc` feature).
#[cfg(feature = "grpc")]
pub type GrpcBase = maestro_broker_grpc::GrpcBrokerConfig;
/// The base of the gRPC broker's configuration given to [`source_transport_with`]: nothing in
/// a binary built without the `grpc` feature.
#[cfg(not(feature = "grpc"))]
#[derive(Debug, Clone, Default)]
pub struct GrpcBase {
    _none: (),
}

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
    #[cfg(feature = "mqtt")]
    #[error(transparent)]
    Embedded(#[from] crate::embedded_mqtt::EmbeddedError),
    /// The binary was built without this backend's Cargo feature.
    #[error("this maestro binary was built without the {0} broker (Cargo feature {0:?})")]
    NotBuilt(&'static str),
    /// The broker configuration file could not be read.
    #[error("cannot read broker config {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The MQTT broker behind the gate (docs/operations.md, "Embedded MQTT broker"). The default
/// is rmqtt when the `embedded-rmqtt` Cargo feature is compiled in (the default build), else
/// rumqttd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbeddedEngine {
    /// rumqttd 0.20, behind the gate: ~51 KiB of fixed buffers per connection (10,000
    /// agents: ~650 MiB).
    Rumqttd,
    /// rmqtt 0.24 (needs the `embedded-rmqtt` Cargo feature, on by default), logins and ACL
    /// through its own hooks: ~19 KiB per idle connection, queues that grow as they fill.
    Rmqtt,
}

impl Default for EmbeddedEngine {
    fn default() -> Self {
        if cfg!(feature = "embedded-rmqtt") { EmbeddedEngine::Rmqtt } else { EmbeddedEngine::Rumqttd }
    }
}

impl std::fmt::Display for EmbeddedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EmbeddedEngine {
    /// The name `--embedded-mqtt-engine` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            EmbeddedEngine::Rumqttd => "rumqttd",
            EmbeddedEngine::Rmqtt => "rmqtt",
        }
    }
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
    /// MQTT, with `embedded_mqtt`: the embedded broker's engine (rumqttd runs behind a gate).
    pub embedded_mqtt_engine: EmbeddedEngine,
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
    /// The hub host hashed into AppliedManifestWork names (docs/protocol.md §8.3): the MQTT
    /// `brokerHost`, the gRPC `url`, `""` for Pub/Sub.
    ///
    /// # Errors
    /// [`BrokerError::Config`] when the config file cannot be read.
    pub fn hub_host(&self) -> Result<String, BrokerError> {
        match self.kind {
            BrokerKind::Pubsub => Ok(String::new()),
            #[cfg(feature = "grpc")]
            BrokerKind::Grpc => Ok(grpc::agent_config(self)?.url),
            #[cfg(feature = "mqtt")]
            BrokerKind::Mqtt => mqtt::hub_host(self),
            #[allow(unreachable_patterns)]
            other => Err(BrokerError::NotBuilt(other.as_str())),
        }
    }
}

fn config_error(path: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Config { path: path.into(), reason: e.to_string() }
}

/// Pub/Sub roles, for completing a configuration's subscriptions.
#[derive(Debug, Clone, Copy)]
pub enum PubSubRole<'a> {
    /// The server, with its source id.
    Source(&'a str),
    /// An agent, with its consumer name.
    Agent(&'a str),
}

/// Builds the server's source transport, with the address agents connect to when the server
/// hosts it (the gRPC broker, or the embedded MQTT broker). The gRPC broker gets the default
/// limits and accepts every consumer name; `maestro server` uses [`source_transport_with`].
///
/// # Errors
/// [`BrokerError`] for a bad or missing configuration or a backend not built in; bind and
/// connection failures.
pub async fn source_transport(
    s: &SourceBrokerSettings,
) -> Result<(DynSourceTransport, Option<SocketAddr>), BrokerError> {
    source_transport_with(s, GrpcBase::default()).await
}

/// As [`source_transport`], with `grpc` as the base of the gRPC broker's configuration (its
/// limits and consumer registry, docs/security.md "Limits"); its address, heartbeat and TLS
/// come from `s`. Other backends ignore `grpc`.
///
/// # Errors
/// As [`source_transport`].
#[cfg_attr(not(feature = "grpc"), allow(clippy::unused_async, unused_variables))]
pub async fn source_transport_with(
    s: &SourceBrokerSettings,
    grpc: GrpcBase,
) -> Result<(DynSourceTransport, Option<SocketAddr>), BrokerError> {
    match s.kind {
        #[cfg(feature = "grpc")]
        BrokerKind::Grpc => grpc::source(s, grpc).await,
        #[cfg(feature = "mqtt")]
        BrokerKind::Mqtt => mqtt::source(s).await,
        #[cfg(feature = "pubsub")]
        BrokerKind::Pubsub => Ok((pubsub::source(s).await?, None)),
        #[allow(unreachable_patterns)]
        other => Err(BrokerError::NotBuilt(other.as_str())),
    }
}

/// Builds an agent transport for `consumer` with agent id `agent_id`. Without a config file,
/// MQTT uses Maestro's topic layout for source `maestro`.
///
/// # Errors
/// [`BrokerError`] on a bad or missing configuration or a backend not built in.
#[cfg_attr(not(all(feature = "grpc", feature = "mqtt", feature = "pubsub")), allow(unused_variables))]
pub async fn agent_transport(
    s: &AgentBrokerSettings,
    consumer: &str,
    agent_id: &str,
) -> Result<DynAgentTransport, BrokerError> {
    match s.kind {
        #[cfg(feature = "grpc")]
        BrokerKind::Grpc => grpc::agent(s, consumer, agent_id),
        #[cfg(feature = "mqtt")]
        BrokerKind::Mqtt => mqtt::agent(s, consumer, agent_id).await,
        #[cfg(feature = "pubsub")]
        BrokerKind::Pubsub => pubsub::agent(s, consumer, agent_id).await,
        #[allow(unreachable_patterns)]
        other => Err(BrokerError::NotBuilt(other.as_str())),
    }
}

/// Writes an sdk-go style Pub/Sub config file for `role` into `dir` — Maestro's layout on
/// `project` at the emulator `endpoint`, checking the service every `health_check` — and
/// returns its path (the local stack runs the same config-file path as a deployment).
///
/// # Errors
/// [`BrokerError::Config`] when the file cannot be written; [`BrokerError::NotBuilt`] without
/// the `pubsub` feature.
#[cfg_attr(not(feature = "pubsub"), allow(unused_variables))]
pub fn write_pubsub_config(
    dir: &std::path::Path,
    endpoint: &str,
    project: &str,
    health_check: Duration,
    role: PubSubRole<'_>,
) -> Result<String, BrokerError> {
    #[cfg(feature = "pubsub")]
    return pubsub::write_config(dir, endpoint, project, health_check, role);
    #[cfg(not(feature = "pubsub"))]
    Err(BrokerError::NotBuilt("pubsub"))
}
