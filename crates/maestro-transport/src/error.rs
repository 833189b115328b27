//! Transport errors.

/// A transport failure. [`Error::is_retryable`] tells the caller whether trying again later
/// can succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker is unreachable (reconnecting). Retryable.
    #[error("{backend}: disconnected from the broker")]
    Disconnected {
        /// Backend name.
        backend: &'static str,
    },
    /// No agent of this consumer is connected to this endpoint. Its spec resync on connect
    /// delivers the state instead.
    #[error("{backend}: no agent subscribed for consumer {consumer:?}")]
    NoSubscriber {
        /// Backend name.
        backend: &'static str,
        /// The consumer.
        consumer: String,
    },
    /// The encoded event exceeds the configured limit.
    #[error("{backend}: event of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Backend name.
        backend: &'static str,
        /// Encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The peer refused the event (e.g. gRPC `InvalidArgument`).
    #[error("{backend}: event rejected: {reason}")]
    Rejected {
        /// Backend name.
        backend: &'static str,
        /// The peer's reason.
        reason: String,
        /// Whether the peer signalled a temporary failure.
        retryable: bool,
    },
    /// The event cannot be encoded for this transport.
    #[error("{backend}: cannot encode event: {reason}")]
    Encode {
        /// Backend name.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// Invalid configuration.
    #[error("{backend}: invalid configuration: {reason}")]
    InvalidConfig {
        /// Backend name.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// `start` was called twice.
    #[error("{backend}: already started")]
    AlreadyStarted {
        /// Backend name.
        backend: &'static str,
    },
    /// The transport was closed.
    #[error("{backend}: closed")]
    Closed {
        /// Backend name.
        backend: &'static str,
    },
    /// A backend-specific failure.
    #[error("{backend}: {source}")]
    Other {
        /// Backend name.
        backend: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// True when retrying later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Disconnected { .. } | Error::NoSubscriber { .. } | Error::Other { .. } => true,
            Error::Rejected { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

/// Why an [`crate::EventHandler`] did not accept an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// A temporary failure (e.g. the database is down): deliver the event again.
    #[error("temporary failure: {0}")]
    Retryable(String),
    /// The event can never be handled (malformed, not ours): drop it.
    #[error("rejected: {0}")]
    Permanent(String),
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
