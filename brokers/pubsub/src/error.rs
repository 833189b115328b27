//! The Pub/Sub failures and whether trying again can succeed, decided from the kind of the
//! Google API error (its gRPC status code, else its HTTP status, else what failed), never from
//! its text. The library's error is kept as the source of every [`maestro_transport::Error`]
//! built here, so a permission problem is reported as such and not retried for ever.
//!
//! | status | retryable | why |
//! |---|---|---|
//! | `INVALID_ARGUMENT`, `OUT_OF_RANGE` | no | the request is refused as it is |
//! | `NOT_FOUND` | no (a publish: yes, see [`publish_is_retryable`]) | the topic (or subscription) does not exist |
//! | `ALREADY_EXISTS` | no | nothing changes by sending again |
//! | `PERMISSION_DENIED`, `UNAUTHENTICATED` | no | the credentials may not do this |
//! | `FAILED_PRECONDITION` | no | the resource is not in a state that allows it |
//! | `UNIMPLEMENTED`, `DATA_LOSS` | no | the service cannot do it |
//! | `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `ABORTED`, `INTERNAL`, `UNKNOWN`, `CANCELLED` | yes | the service or the way to it failed, or a quota that refills |
//!
//! Without a gRPC status: an HTTP status (REST admin calls) is classified the same way
//! ([`http_is_retryable`]); a request that cannot be serialized is permanent; a credentials
//! failure is retryable only when the credentials library says it is transient; timeouts,
//! connection and I/O failures, and retry policies that gave up, are retryable.

use std::error::Error as _;

use google_cloud_gax::error::CredentialsError;
use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::error::PublishError;
use maestro_transport::Error;

use crate::BACKEND;

/// A Pub/Sub call that failed, naming what was attempted; the source of
/// [`maestro_transport::Error::Other`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PubSubError {
    /// An admin call (get/create a topic or a subscription) failed.
    #[error("{call}: {source}")]
    Call {
        /// What was attempted, e.g. `create topic projects/p/topics/t`.
        call: String,
        /// The library's error.
        #[source]
        source: google_cloud_pubsub::Error,
    },
    /// A client (admin, subscriber, publisher) could not be built.
    #[error("{client}: {source}")]
    Client {
        /// Which client.
        client: &'static str,
        /// The library's error.
        #[source]
        source: google_cloud_gax::client_builder::Error,
    },
    /// The application default credentials could not be loaded.
    #[error("application default credentials: {source}")]
    Credentials {
        /// The library's error.
        #[source]
        source: google_cloud_auth::build_errors::Error,
    },
}

impl PubSubError {
    /// True when trying again can succeed: a failed call as [`is_retryable`] says; a client or
    /// the default credentials that cannot be built never (the configuration or the
    /// environment must change).
    pub fn is_retryable(&self) -> bool {
        match self {
            PubSubError::Call { source, .. } => is_retryable(source),
            PubSubError::Client { .. } | PubSubError::Credentials { .. } => false,
        }
    }
}

impl From<PubSubError> for Error {
    fn from(e: PubSubError) -> Error {
        Error::other(BACKEND, e.is_retryable(), e)
    }
}

/// Whether a Google API call that failed with status `code` can succeed when made again (the
/// table in the module documentation). A code this crate does not know is retryable, like
/// `UNKNOWN`.
pub fn code_is_retryable(code: Code) -> bool {
    match code {
        Code::InvalidArgument
        | Code::OutOfRange
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::FailedPrecondition
        | Code::Unimplemented
        | Code::DataLoss => false,
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled
        | Code::Ok => true,
        _ => true,
    }
}

/// Whether a call answered with HTTP status `status` (and no gRPC status) can succeed when
/// made again: 408 (timeout), 429 (too many requests) and 5xx yes, other 4xx no (400, 401,
/// 403, 404, 409, 412, …), anything else yes.
pub fn http_is_retryable(status: u16) -> bool {
    match status {
        408 | 429 => true,
        400..=499 => false,
        _ => true,
    }
}

/// Whether the failed call `e` can succeed when made again (see the module documentation).
pub fn is_retryable(e: &google_cloud_pubsub::Error) -> bool {
    if let Some(status) = e.status() {
        return code_is_retryable(status.code);
    }
    if let Some(status) = e.http_status_code() {
        return http_is_retryable(status);
    }
    if e.is_serialization() {
        return false;
    }
    match e.source().and_then(|s| s.downcast_ref::<CredentialsError>()) {
        Some(credentials) => credentials.is_transient(),
        None => true,
    }
}

/// Whether a publish that failed with `e` can succeed when sent again: an RPC failure as
/// [`is_retryable`] says, except a missing topic (`NOT_FOUND`), which is retryable here: the
/// topic belongs to this deployment and the endpoint creates it again when it subscribes
/// again (a broker that lost its topics, as the emulator restarted empty does), so the event
/// waits instead of being set aside for good (the fault harness saw 40 spec events set aside
/// after a kill -9 of the emulator); a publisher that shut down (the process is stopping)
/// yes, so the event is sent by the next run instead of being set aside; a paused ordering key
/// no (only `resume_publish` clears it, and Maestro sets no ordering keys).
pub fn publish_is_retryable(e: &PublishError) -> bool {
    match e {
        PublishError::Rpc(rpc) if rpc.status().is_some_and(|s| s.code == Code::NotFound) => true,
        PublishError::Rpc(rpc) => is_retryable(rpc),
        PublishError::OrderingKeyPaused => false,
        PublishError::Shutdown => true,
        _ => true,
    }
}

/// The transport error of a failed publish: [`Error::Rejected`] with the library's error as
/// its source, retryable as [`publish_is_retryable`] says.
pub fn publish_error(e: PublishError) -> Error {
    let retryable = publish_is_retryable(&e);
    Error::Rejected { backend: BACKEND, reason: e.to_string(), retryable, source: Some(Box::new(e)) }
}

/// The transport error of a failed admin call `call`: [`Error::Other`] holding a
/// [`PubSubError::Call`], retryable as [`is_retryable`] says.
pub(crate) fn call_error(call: String, source: google_cloud_pubsub::Error) -> Error {
    PubSubError::Call { call, source }.into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use google_cloud_gax::error::rpc::Status;

    use super::*;

    fn service(code: Code) -> google_cloud_pubsub::Error {
        google_cloud_pubsub::Error::service(Status::default().set_code(code).set_message("from the service"))
    }

    const PERMANENT: [Code; 9] = [
        Code::PermissionDenied,
        Code::NotFound,
        Code::InvalidArgument,
        Code::FailedPrecondition,
        Code::Unauthenticated,
        Code::OutOfRange,
        Code::AlreadyExists,
        Code::Unimplemented,
        Code::DataLoss,
    ];

    const RETRYABLE: [Code; 7] = [
        Code::Unavailable,
        Code::DeadlineExceeded,
        Code::ResourceExhausted,
        Code::Aborted,
        Code::Internal,
        Code::Unknown,
        Code::Cancelled,
    ];

    /// A publish refused for good (e.g. `PERMISSION_DENIED`) is a permanent `Rejected` holding
    /// the library's error; before, every publish failure was retryable. A missing topic is
    /// the exception (retryable: see `temporary_publish_statuses_are_retried`).
    #[test]
    fn permanent_publish_statuses_are_not_retried() {
        for code in PERMANENT.into_iter().filter(|c| *c != Code::NotFound) {
            let err = publish_error(PublishError::Rpc(Arc::new(service(code))));
            assert!(matches!(err, Error::Rejected { .. }), "{err}");
            assert!(!err.is_retryable(), "{code:?} must be permanent: {err}");
            let source = err.source().and_then(|s| s.downcast_ref::<PublishError>());
            assert!(matches!(source, Some(PublishError::Rpc(_))), "the library's error is the source");
        }
    }

    #[test]
    fn temporary_publish_statuses_are_retried() {
        for code in RETRYABLE {
            let err = publish_error(PublishError::Rpc(Arc::new(service(code))));
            assert!(err.is_retryable(), "{code:?} must be retryable: {err}");
        }
        assert!(publish_error(PublishError::Shutdown).is_retryable());
        let missing_topic = publish_error(PublishError::Rpc(Arc::new(service(Code::NotFound))));
        assert!(missing_topic.is_retryable(), "a missing topic waits for the endpoint to create it again");
        assert!(!publish_error(PublishError::OrderingKeyPaused).is_retryable());
        let timeout = google_cloud_pubsub::Error::timeout("no answer");
        assert!(publish_error(PublishError::Rpc(Arc::new(timeout))).is_retryable());
    }

    /// Admin calls: the same codes; HTTP statuses of the REST clients by their class.
    #[test]
    fn admin_calls_are_classified_by_status() {
        for code in PERMANENT {
            let err = call_error("get topic t".into(), service(code));
            assert!(!err.is_retryable(), "{code:?}: {err}");
            assert!(err.to_string().starts_with("pubsub: get topic t: "), "{err}");
            let source = err.source().and_then(|s| s.downcast_ref::<PubSubError>());
            assert!(matches!(source, Some(PubSubError::Call { .. })), "{err}");
        }
        for code in RETRYABLE {
            assert!(call_error("get topic t".into(), service(code)).is_retryable(), "{code:?}");
        }
        for status in [400, 401, 403, 404, 409, 412] {
            assert!(!http_is_retryable(status), "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(http_is_retryable(status), "{status}");
        }
    }
}
