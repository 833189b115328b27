//! # maestro-broker-mqtt: the MQTT 5 broker backend
//!
//! Maestro's MQTT transport (docs/protocol.md §7.2) in both roles over rumqttc's v5 client:
//!
//! - [`MqttSource`] ([`maestro_transport::SourceTransport`], the server): publishes spec events
//!   on `sourceEvents` (first `+` → `clustername`) and status resyncs for all clusters on
//!   `sourceBroadcast`; subscribes to `agentEvents` (+ `agentBroadcast`).
//! - [`MqttAgent`] ([`maestro_transport::AgentTransport`]): subscribes to `sourceEvents` (last
//!   `+` → its cluster, + `sourceBroadcast`); publishes status events and spec resyncs on
//!   `agentEvents` / `agentBroadcast`.
//!
//! Events travel in CloudEvents binary mode ([`maestro_api::mqtt`]: payload = data, `ce-*`
//! user properties, `Content-Type`), QoS 1 by default, `CleanStart=true`, no retain.
//! Incoming QoS 1 messages are acknowledged only after the handler accepted them (or they
//! were dropped as undecodable / on an unexpected topic / permanently rejected). Connection
//! loss: publishes fail with `Disconnected` at once, the client reconnects with jittered
//! exponential backoff, resubscribes, and bumps the subscribed signal on SUBACK.
//! `publish` returns after the broker's PUBACK. A PUBACK refusal is an `Error::Rejected` whose
//! retryability follows its MQTT 5 reason code ([`MqttRefusal`], the source of the error):
//! `NotAuthorized`, `TopicNameInvalid` and `PayloadFormatInvalid` are permanent, the others
//! retryable; a PUBLISH over the maximum packet size the broker announced is `TooLarge`.
//!
//! ## Modules
//! - [`config`]: [`MqttConfig`] / [`MqttTopics`] (sdk-go keys), validation, the file loader.
//! - [`topics`]: topic validation and derivation rules.
//! - `tls`: rustls client configuration (ring, TLS 1.3).
//! - `conn`: the connection, event loop, publish tracking and in-order delivery.
//! - `source`, `agent`: the two roles.
//! - [`gate`]: an authentication and topic-ACL gate in front of a broker without ACLs (the
//!   embedded rumqttd), with Mosquitto password files.
//! - `testing` (feature `test-support`): Mosquitto / rumqttd / TCP proxy helpers for tests.

pub mod config;
pub mod gate;
pub mod topics;

mod agent;
mod base64;
mod conn;
mod source;
mod tls;

#[cfg(feature = "test-support")]
pub mod testing;

pub use agent::MqttAgent;
pub use config::{ConfigParseError, MqttConfig, MqttTopics, parse_duration};
pub use conn::MqttRefusal;
pub use source::MqttSource;
pub use topics::TopicError;

/// The backend name reported by both roles.
pub const BACKEND: &str = "mqtt";
