//! # maestro-broker-grpc: the gRPC broker
//!
//! The OCM `io.cloudevents.v1.CloudEventService` transport (docs/protocol.md §7.1) in both roles:
//!
//! - [`GrpcBroker`] — the **server-hosted agent endpoint** (Go Maestro's `--grpc-broker-bindport`,
//!   default 8091). Agents `Subscribe` for their cluster and receive spec events (plus a
//!   heartbeat every interval); they `Publish` status events, which go to the handler given to
//!   [`maestro_transport::SourceTransport::start`]. The server publishes spec events through
//!   [`maestro_transport::SourceTransport::publish`]. [`GrpcBroker::pause`] /
//!   [`GrpcBroker::resume`] are fault-injection hooks for tests and operations.
//! - [`GrpcAgent`] — the **agent-side client**
//!   ([`maestro_transport::AgentTransport`]): subscribes for its consumer, requires the
//!   `subscription-id` header, delivers events in order with redelivery, watches server health,
//!   reconnects with jittered exponential backoff, and publishes with the Publish RPC.
//!
//! Events are mapped with [`maestro_api::grpc::to_proto`] / [`maestro_api::grpc::from_proto`]
//! (the OCM, non-standard attribute mapping of docs/protocol.md §7.1.2). The broker serves TLS and
//! mutual TLS and, through a [`maestro_auth::Gate`], confines every agent to its own consumer;
//! the agent connects over TLS with a client certificate or a bearer token (docs/security.md).
//!
//! ## Modules
//! - [`config`]: [`GrpcBrokerConfig`], [`GrpcAgentConfig`] (sdk-go YAML keys, docs/protocol.md
//!   §7.1.4) and the Go duration parser.
//! - `server`: the hosted broker and the tonic service.
//! - `stream`: a Subscribe stream (its queue and heartbeats, no task of its own).
//! - `subscribe`: the Subscribe method served in front of tonic's generated service, each burst
//!   of events sent in an allocation of its own size.
//! - `queue`: a Subscribe stream's bounded queue (allocated lazily, ~130 bytes when empty).
//! - `client`: the agent client.
//! - [`registry`]: [`ConsumerRegistry`], the hook telling the broker which consumers exist.
//! - `conn`: accepted connections the broker can cut (for `pause`/`close`), and the HTTP/2
//!   handshake deadline.
//!
//! Limits (docs/security.md, "Limits"): concurrent Subscribe streams per consumer and in total,
//! Subscribe only for registered consumers, and the connection settings of
//! [`GrpcListenerLimits`] (keepalive, connection age and timeout, streams per connection,
//! largest received message).

pub mod config;
pub mod registry;

mod bearer;
mod client;
mod conn;
mod queue;
mod server;
mod stream;
mod subscribe;

pub use client::GrpcAgent;
pub use config::{GrpcAgentConfig, GrpcBrokerConfig, GrpcListenerLimits, KeepAliveConfig, parse_duration};
pub use registry::{ConsumerRegistry, Registered, RegistryError};
pub use server::GrpcBroker;

/// The backend name reported by both roles.
pub const BACKEND: &str = "grpc";

/// Response header carrying the subscription id on Subscribe (docs/protocol.md §7.1.3,
/// sdk-go `GRPCSubscriptionIDKey`).
pub const SUBSCRIPTION_ID_HEADER: &str = "subscription-id";
