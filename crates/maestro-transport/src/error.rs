//! Transport errors.
//!
//! Whether a failure is worth trying again is decided where the error is built, from the kind
//! of the underlying failure (a gRPC status code, an MQTT 5 reason code, a Pub/Sub status),
//! never from its text; the underlying error is kept as the [`std::error::Error::source`].

use std::fmt::Display;

/// A boxed error cause, as kept in the `source` fields of [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    /// delivers the state instead. Retryable.
    #[error("{backend}: no agent subscribed for consumer {consumer:?}")]
    NoSubscriber {
        /// Backend name.
        backend: &'static str,
        /// The consumer.
        consumer: String,
    },
    /// The encoded event exceeds the configured limit (or the broker's). Permanent.
    #[error("{backend}: event of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Backend name.
        backend: &'static str,
        /// Encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The peer refused the event (e.g. gRPC `InvalidArgument`, an MQTT PUBACK reason code,
    /// a Pub/Sub `PERMISSION_DENIED`), or the attempt failed on the way (a timeout).
    #[error("{backend}: event rejected: {reason}")]
    Rejected {
        /// Backend name.
        backend: &'static str,
        /// The peer's reason (with the cause's message when there is a cause).
        reason: String,
        /// Whether the peer signalled a temporary failure, decided from the kind of its
        /// answer (status or reason code).
        retryable: bool,
        /// The library's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The event cannot be encoded for this transport (e.g. no topic can be derived from
    /// it). Permanent.
    #[error("{backend}: cannot encode event: {reason}")]
    Encode {
        /// Backend name.
        backend: &'static str,
        /// Why (with the cause's message when there is a cause).
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// Invalid configuration. Permanent.
    #[error("{backend}: invalid configuration: {reason}")]
    InvalidConfig {
        /// Backend name.
        backend: &'static str,
        /// Why (with the cause's message when there is a cause).
        reason: String,
        /// The underlying error (an unreadable file, a parse error), when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// `start` was called twice. Permanent.
    #[error("{backend}: already started")]
    AlreadyStarted {
        /// Backend name.
        backend: &'static str,
    },
    /// The transport was closed. Permanent.
    #[error("{backend}: closed")]
    Closed {
        /// Backend name.
        backend: &'static str,
    },
    /// A backend-specific failure that fits no other variant. Whether it is retryable is
    /// decided where it is built, never assumed.
    #[error("{backend}: {source}")]
    Other {
        /// Backend name.
        backend: &'static str,
        /// Whether trying again later can succeed.
        retryable: bool,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// True when retrying later can succeed: [`Error::Disconnected`] and
    /// [`Error::NoSubscriber`] always; [`Error::Rejected`] and [`Error::Other`] as decided
    /// where they were built; every other variant never.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Disconnected { .. } | Error::NoSubscriber { .. } => true,
            Error::Rejected { retryable, .. } | Error::Other { retryable, .. } => *retryable,
            Error::TooLarge { .. }
            | Error::Encode { .. }
            | Error::InvalidConfig { .. }
            | Error::AlreadyStarted { .. }
            | Error::Closed { .. } => false,
        }
    }

    /// [`Error::InvalidConfig`] without an underlying error.
    pub fn invalid_config(backend: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidConfig { backend, reason: reason.into(), source: None }
    }

    /// [`Error::InvalidConfig`] caused by `source`; the reason reads `<context>: <source>`.
    pub fn invalid_config_from(
        backend: &'static str,
        context: impl Display,
        source: impl Into<BoxError>,
    ) -> Error {
        let source = source.into();
        Error::InvalidConfig { backend, reason: format!("{context}: {source}"), source: Some(source) }
    }

    /// Reads a broker config file of `backend` as text.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the file when it cannot be read.
    pub fn read_config_file(backend: &'static str, path: &std::path::Path) -> Result<String, Error> {
        std::fs::read_to_string(path).map_err(|e| {
            Error::invalid_config_from(backend, format_args!("cannot read {}", path.display()), e)
        })
    }

    /// [`Error::Encode`] without an underlying error.
    pub fn encode(backend: &'static str, reason: impl Into<String>) -> Error {
        Error::Encode { backend, reason: reason.into(), source: None }
    }

    /// [`Error::Encode`] caused by `source`; the reason is the source's message.
    pub fn encode_from(backend: &'static str, source: impl Into<BoxError>) -> Error {
        let source = source.into();
        Error::Encode { backend, reason: source.to_string(), source: Some(source) }
    }

    /// [`Error::Rejected`] without an underlying error (e.g. a timeout).
    pub fn rejected(backend: &'static str, reason: impl Into<String>, retryable: bool) -> Error {
        Error::Rejected { backend, reason: reason.into(), retryable, source: None }
    }

    /// [`Error::Rejected`] caused by `source`; the reason reads `<context>: <source>`.
    pub fn rejected_from(
        backend: &'static str,
        retryable: bool,
        context: impl Display,
        source: impl Into<BoxError>,
    ) -> Error {
        let source = source.into();
        Error::Rejected { backend, reason: format!("{context}: {source}"), retryable, source: Some(source) }
    }

    /// [`Error::Other`] caused by `source`, retryable or not as the caller decided.
    pub fn other(backend: &'static str, retryable: bool, source: impl Into<BoxError>) -> Error {
        Error::Other { backend, retryable, source: source.into() }
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "boom")
    }

    /// The catch-all is retryable only when its builder said so.
    #[test]
    fn other_is_retryable_only_when_decided_so() {
        let permanent = Error::other("test", false, io(std::io::ErrorKind::PermissionDenied));
        assert!(!permanent.is_retryable(), "{permanent}");
        let temporary = Error::other("test", true, io(std::io::ErrorKind::ConnectionReset));
        assert!(temporary.is_retryable(), "{temporary}");
        assert_eq!(temporary.to_string(), "test: boom");
        assert!(temporary.source().is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some()));
    }

    /// Every variant's retryability, and the cause kept as the source.
    #[test]
    fn retryability_by_variant() {
        let b = "test";
        for (e, retryable) in [
            (Error::Disconnected { backend: b }, true),
            (Error::NoSubscriber { backend: b, consumer: "c".into() }, true),
            (Error::TooLarge { backend: b, size: 2, limit: 1 }, false),
            (Error::rejected(b, "timed out", true), true),
            (Error::rejected(b, "NotAuthorized", false), false),
            (Error::encode(b, "no topic"), false),
            (Error::invalid_config(b, "x"), false),
            (Error::AlreadyStarted { backend: b }, false),
            (Error::Closed { backend: b }, false),
        ] {
            assert_eq!(e.is_retryable(), retryable, "{e}");
        }
        let e = Error::rejected_from(b, false, "publish", io(std::io::ErrorKind::InvalidData));
        assert_eq!(e.to_string(), "test: event rejected: publish: boom");
        assert!(!e.is_retryable());
        assert!(e.source().is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some()));
        let e = Error::invalid_config_from(b, "cfg.yaml", io(std::io::ErrorKind::NotFound));
        assert_eq!(e.to_string(), "test: invalid configuration: cfg.yaml: boom");
        assert!(e.source().is_some());
        let e = Error::encode_from(b, io(std::io::ErrorKind::InvalidInput));
        assert_eq!(e.to_string(), "test: cannot encode event: boom");
        assert!(e.source().is_some());
    }
}
