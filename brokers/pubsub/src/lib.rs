//! # maestro-broker-pubsub: the GCP Pub/Sub broker
//!
//! Maestro's Pub/Sub transport (docs/protocol.md §7.3) in both roles — admin calls and
//! publishing over the official `google-cloud-pubsub` client, receiving over this crate's own
//! StreamingPull client (`pull`, whose streams end with a half-close: the emulator keeps
//! routing messages to a stream that was reset, as that library's are):
//!
//! - [`PubSubSource`] ([`maestro_transport::SourceTransport`]) publishes spec events to
//!   `sourceevents` and status resync requests to `sourcebroadcast`; pulls
//!   `agentevents-<source>` and `agentbroadcast-<source>`.
//! - [`PubSubAgent`] ([`maestro_transport::AgentTransport`]) publishes status events to
//!   `agentevents` and spec resync requests to `agentbroadcast`; pulls
//!   `sourceevents-<cluster>` and `sourcebroadcast-<cluster>`.
//!
//! Messages use the Go codec's attribute binding ([`maestro_api::pubsub`]). Both
//! subscriptions feed one sequential worker; a message is acked after the handler accepted
//! (or permanently rejected) it, retryable failures are retried in order
//! ([`maestro_transport::deliver`]), undecodable messages are acked and dropped. Events for
//! another consumer/source are acked and dropped on the client too (the emulator ignores
//! subscription filters). A health loop (admin `GetTopic`/`GetSubscription`) holds the
//! connected state, recreates missing topics and subscriptions when `autoCreate` is on (the
//! emulator loses everything on restart), and makes the receive loop resubscribe (bumping the
//! subscribed signal) after every outage.
//!
//! ## Modules
//! - [`config`]: [`PubSubConfig`] (sdk-go keys) and Maestro's layout
//!   ([`PubSubConfig::maestro_defaults`]).
//! - [`admin`]: idempotent topic/subscription creation ([`init`], [`init_consumer`], [`Admin`]).
//! - [`error`]: [`PubSubError`] and whether a failure is retryable, from the gRPC (or HTTP)
//!   status of the Google API error: e.g. `PERMISSION_DENIED` and `NOT_FOUND` are permanent
//!   (a publish to a missing topic excepted: it waits for the topic to be created again),
//!   `UNAVAILABLE` and `DEADLINE_EXCEEDED` retryable.
//! - `source` / `agent`: the two roles; `endpoint`: their shared machinery; `conn`: client
//!   and credential construction; `pull`: the StreamingPull client (gRPC generated from
//!   `proto/google/pubsub/v1/pubsub.proto`, a subset of Google's). An endpoint's tasks run on a `maestro_transport::tasks::Tasks`
//!   that `close` cancels and then waits for.
//! - [`emulator`]: a launcher of the official Pub/Sub emulator on a free local port
//!   ([`emulator::Emulator`]), used by `maestro demo --broker pubsub` and by the tests.

pub mod admin;
pub mod config;
pub mod emulator;
pub mod error;

mod agent;
mod conn;
mod endpoint;
mod pull;
mod source;

pub use admin::{Admin, InitPlan, init, init_consumer, plan};
pub use agent::PubSubAgent;
pub use config::{
    ConfigParseError, KeepaliveSettings, PubSubConfig, ReceiveSettings, ResolvedEndpoint, Subscriptions,
    Topics, cluster_filter, source_filter,
};
pub use error::PubSubError;
pub use source::PubSubSource;

/// The backend name reported by both roles.
pub const BACKEND: &str = "pubsub";

/// Publishes the server (spec events) and each agent (status events) keep in flight at once.
/// Pub/Sub without ordering keys, as Maestro uses it, delivers in no particular order, so
/// publishing one at a time buys no order and costs one round trip to the service per event
/// (docs/benchmarks.md, "Pub/Sub publishes in flight"; docs/protocol.md §7.3).
pub const PUBLISH_CONCURRENCY: usize = 32;
