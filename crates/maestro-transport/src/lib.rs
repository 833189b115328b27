//! # maestro-transport: the broker contract
//!
//! Two roles (docs/architecture.md §4):
//! - the **source side** ([`SourceTransport`], the server): publishes spec events and status
//!   resync requests to consumers, receives status events and spec resync requests;
//! - the **agent side** ([`AgentTransport`]): receives spec events (and status resync requests)
//!   for its own consumer, publishes status events and spec resync requests.
//!
//! ## Contract (checked by the `conformance` suite, Cargo feature `conformance`)
//! - at-least-once delivery while both ends are up;
//! - per-consumer order preserved for one publisher;
//! - a delivery is acknowledged only after the [`EventHandler`] returned `Ok`; a handler that
//!   returns [`HandlerError::Retryable`] gets the same event again (after a backoff) before any
//!   later event; [`HandlerError::Permanent`] drops the event (logged);
//! - reconnect with backoff, and a "subscribed" signal ([`Subscribed`]) after the first
//!   subscription and after every resubscription, so the caller can resync;
//! - `publish` fails fast with a retryable [`Error`] while disconnected;
//! - size limits enforced with [`Error::TooLarge`].
//!
//! Backends live in `brokers/*` and depend only on this crate and `maestro-api`. The in-memory
//! broker ([`memory`]) is a complete backend for tests and single-process setups.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod deliver;
pub mod duration;
pub mod error;
pub mod memory;
pub mod retry;
pub mod tasks;
#[cfg(feature = "conformance")]
pub mod test_logs;
pub mod trace;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
pub use error::{BoxError, Error, HandlerError, Result};
use maestro_api::Event;

/// Receives the events a transport delivers. Implementations must be cheap to call
/// concurrently from different transports but each transport calls it sequentially.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Handles one event. `Ok` acknowledges it; see [`HandlerError`] for failures. The event is
    /// borrowed: a retryable failure is redelivered from the same value, without a copy of
    /// its `data` tree per attempt.
    async fn handle(&self, event: &Event) -> Result<(), HandlerError>;

    /// Told of a message the transport acknowledged and dropped without handing it to
    /// [`EventHandler::handle`]: bytes that are no CloudEvent, or an event refused by a
    /// transport check. The default does nothing (the transport logs it); the server keeps it
    /// as a dead letter (docs/security.md, "Dead letters"). Called in delivery order, before
    /// the next message is handled.
    async fn rejected(&self, _message: Rejected<'_>) {}
}

/// A message a transport dropped before handling ([`EventHandler::rejected`]).
#[derive(Debug, Clone, Copy)]
pub struct Rejected<'a> {
    /// The backend (`mqtt`, `pubsub`, …).
    pub backend: &'static str,
    /// Where it arrived: the MQTT topic or the Pub/Sub subscription.
    pub channel: &'a str,
    /// The consumer the channel belongs to, when the channel names one.
    pub consumer: Option<&'a str>,
    /// The message's payload as received (bytes; may be anything).
    pub payload: &'a [u8],
    /// The decoded event, when it decoded but a transport check refused it.
    pub event: Option<&'a Event>,
    /// Why it was dropped.
    pub reason: &'a str,
}

/// A shared handler.
pub type DynHandler = Arc<dyn EventHandler>;

/// The "subscribed" signal: the value increments after every (re)subscription. Wait on it with
/// `changed()`; the initial value is 0 (not yet subscribed).
pub type Subscribed = tokio::sync::watch::Receiver<u64>;

/// What a backend does that the server's behaviour depends on, so the server decides by
/// capability and never by backend name (docs/architecture.md, "Where to add things").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The server itself hosts the endpoint agents connect to (the gRPC broker): nothing is
    /// held for an absent agent and an agent's connection is its subscription, so the agent's
    /// spec resync on (re)connect covers everything. False for brokers that hold messages
    /// between the parties (MQTT, Pub/Sub): a status published while the server was away can be
    /// lost, so after every (re)subscription, and with every spec resync answer, the server asks
    /// agents to resend their statuses (docs/protocol.md §5.1).
    pub server_hosts_agents: bool,
}

impl Capabilities {
    /// A broker between server and agents (MQTT, Pub/Sub, the in-memory test broker).
    pub const BROKERED: Capabilities = Capabilities { server_hosts_agents: false };
    /// The server hosts the agents' endpoint (the gRPC broker).
    pub const SERVER_HOSTED: Capabilities = Capabilities { server_hosts_agents: true };
}

/// The source role (the server side of the broker).
#[async_trait]
pub trait SourceTransport: Send + Sync + Debug + 'static {
    /// Backend name (`memory`, `grpc`, `mqtt`, `pubsub`), for logs and dead letters only: the
    /// server's behaviour follows [`SourceTransport::capabilities`].
    fn backend(&self) -> &'static str;

    /// What this backend does. Default: [`Capabilities::BROKERED`].
    fn capabilities(&self) -> Capabilities {
        Capabilities::BROKERED
    }

    /// Publishes a spec event or a status resync request, routed by its `clustername`
    /// extension. Returns once the backend accepted it (broker ack; for the server-hosted
    /// gRPC broker, once queued on the agent's stream).
    ///
    /// # Errors
    /// [`Error::Disconnected`] while the broker is unreachable; [`Error::NoSubscriber`] when the
    /// backend knows no agent of that consumer is connected (the agent's spec resync on connect
    /// then delivers the state); [`Error::TooLarge`]; [`Error::Closed`].
    async fn publish(&self, event: &Event) -> Result<()>;

    /// Starts delivering agent events (status updates, spec resync requests, status resync
    /// responses) to `handler`. Called once.
    ///
    /// # Errors
    /// [`Error::AlreadyStarted`] on a second call; backend errors when subscribing fails.
    async fn start(&self, handler: DynHandler) -> Result<()>;

    /// The subscribed signal.
    fn subscribed(&self) -> Subscribed;

    /// How many spec events the server's dispatcher may have in flight at once. 1 by default:
    /// the dispatcher publishes a consumer's outbox rows one after the other and stops at the
    /// first retryable failure, so a broker that delivers one topic in order (MQTT, the
    /// server-hosted gRPC broker) hands them to the agent in order. A broker that keeps no
    /// order anyway (Pub/Sub without ordering keys, docs/protocol.md §7.3) gains nothing from
    /// that and pays one publish round trip per row; the agent takes specs in any order
    /// (versions, event ids and incarnations, docs/protocol.md §6.1).
    fn publish_concurrency(&self) -> usize {
        1
    }

    /// The largest event this transport publishes, in encoded bytes ([`event_size`]). The server
    /// refuses a spec whose event would be larger when it is written, rather than accepting it
    /// and failing to deliver it (docs/security.md, "Bad input"). Default:
    /// [`DEFAULT_MAX_EVENT_BYTES`].
    fn max_event_bytes(&self) -> usize {
        DEFAULT_MAX_EVENT_BYTES
    }

    /// Prepares what the broker needs before agents of a newly registered consumer can
    /// receive specs (Pub/Sub: the consumer's subscriptions, docs/protocol.md §7.3). The server calls
    /// it when a consumer is created. Default: nothing to do.
    ///
    /// # Errors
    /// Backend errors when the resources cannot be created; the consumer stays registered.
    async fn register_consumer(&self, consumer: &str) -> Result<()> {
        let _ = consumer;
        Ok(())
    }

    /// With [`Capabilities::server_hosts_agents`]: the consumers with an agent connected to
    /// this server, sorted, without duplicates (several server instances record who holds
    /// which consumer, docs/architecture.md §9). `None` for brokers between the parties, where
    /// any instance reaches every agent (the default).
    fn connected_consumers(&self) -> Option<Vec<String>> {
        None
    }

    /// Stops background tasks. Idempotent.
    async fn close(&self);
}

/// The agent role.
#[async_trait]
pub trait AgentTransport: Send + Sync + Debug + 'static {
    /// Backend name.
    fn backend(&self) -> &'static str;

    /// The consumer (cluster name) this agent serves.
    fn consumer(&self) -> &str;

    /// Publishes a status event or a spec resync request.
    ///
    /// # Errors
    /// [`Error::Disconnected`] (fast) while disconnected; [`Error::TooLarge`];
    /// [`Error::Rejected`] when the peer refused the event; [`Error::Closed`].
    async fn publish(&self, event: &Event) -> Result<()>;

    /// How many status publishes the agent may have in flight at once (each for a different
    /// work). 1 by default: a broker that hands one agent's messages to the server one at a
    /// time (MQTT: one topic per agent, acknowledged in order) gains nothing from more, and
    /// the embedded rumqttd dropped its router under 16. The gRPC broker takes each Publish
    /// RPC on its own, so concurrent statuses reach the server's group commit together.
    fn publish_concurrency(&self) -> usize {
        1
    }

    /// Starts delivering source events (spec events, status resync requests) for this
    /// consumer to `handler`. Called once; reconnects are handled by the transport.
    ///
    /// # Errors
    /// [`Error::AlreadyStarted`] on a second call.
    async fn start(&self, handler: DynHandler) -> Result<()>;

    /// The subscribed signal.
    fn subscribed(&self) -> Subscribed;

    /// Stops background tasks. Idempotent.
    async fn close(&self);
}

/// A shared source transport.
pub type DynSourceTransport = Arc<dyn SourceTransport>;
/// A shared agent transport.
pub type DynAgentTransport = Arc<dyn AgentTransport>;

/// Default maximum encoded event size: 512 KiB, the MQTT broker limit Maestro assumes
/// (docs/protocol.md §7.2).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 512 * 1024;

/// The encoded size of an event (structured JSON), bytes, used for size limits; counted
/// without building the encoding.
pub fn event_size(event: &Event) -> usize {
    maestro_api::json::encoded_len(event)
}
