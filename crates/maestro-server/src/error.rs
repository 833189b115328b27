//! The server's error type, mapped to REST error bodies (maestro-reference.md §2.3) and to
//! gRPC statuses.

use maestro_store::StoreError;

/// A failure of a server operation. Each variant maps to one Maestro error code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Bad input (malformed event, invalid bundle, bad query): Maestro code 8 / HTTP 400.
    #[error("{0}")]
    Validation(String),
    /// A `search` that cannot be parsed: code 23 / HTTP 400.
    #[error("failed to parse search: {0}")]
    Search(String),
    /// Not found: code 7 / HTTP 404.
    #[error("{0}")]
    NotFound(String),
    /// Conflict (stale version, name taken, resource being deleted): code 6 / HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// Forbidden (consumer still in use): code 4 / HTTP 403.
    #[error("{0}")]
    Forbidden(String),
    /// The store failed: code 9 / HTTP 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// Maestro's numeric error code.
    pub fn code(&self) -> u16 {
        match self {
            ServiceError::Validation(_) => 8,
            ServiceError::Search(_) => 23,
            ServiceError::NotFound(_) => 7,
            ServiceError::Conflict(_) => 6,
            ServiceError::Forbidden(_) => 4,
            ServiceError::Internal(_) => 9,
        }
    }

    /// The HTTP status.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            ServiceError::Validation(_) | ServiceError::Search(_) => http::StatusCode::BAD_REQUEST,
            ServiceError::NotFound(_) => http::StatusCode::NOT_FOUND,
            ServiceError::Conflict(_) => http::StatusCode::CONFLICT,
            ServiceError::Forbidden(_) => http::StatusCode::FORBIDDEN,
            ServiceError::Internal(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status.
    pub fn to_status(&self) -> tonic::Status {
        let msg = self.to_string();
        match self {
            ServiceError::Validation(_) | ServiceError::Search(_) => tonic::Status::invalid_argument(msg),
            ServiceError::NotFound(_) => tonic::Status::not_found(msg),
            ServiceError::Conflict(_) => tonic::Status::aborted(msg),
            ServiceError::Forbidden(_) => tonic::Status::permission_denied(msg),
            ServiceError::Internal(_) => tonic::Status::unavailable(msg),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ServiceError::NotFound(e.to_string()),
            StoreError::Conflict(_) => ServiceError::Conflict(e.to_string()),
            StoreError::ConsumerInUse(_) => ServiceError::Forbidden(e.to_string()),
            StoreError::UnknownConsumer(_) => ServiceError::NotFound(e.to_string()),
            StoreError::Invalid(_) => ServiceError::Validation(e.to_string()),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<maestro_api::Error> for ServiceError {
    fn from(e: maestro_api::Error) -> Self {
        ServiceError::Validation(e.to_string())
    }
}
