//! The server's error type, mapped to REST error bodies (docs/rest.md, "Errors") and to gRPC
//! statuses, and the catalogue of Go Maestro's error codes ([`ErrorCode`]) that both the error
//! bodies and `GET /api/maestro/v1/errors` read.

use maestro_store::StoreError;

/// One entry of Go Maestro's error catalogue: a numeric code, its default reason and the HTTP
/// status answered with it. A REST error body shows it as `id: "<code>"`,
/// `code: "maestro-<code>"` and `href: "/api/maestro/v1/errors/<code>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    /// The numeric code.
    pub code: u16,
    /// The default reason (the reason `GET /errors` lists).
    pub reason: &'static str,
    /// The HTTP status.
    pub http_status: u16,
}

impl ErrorCode {
    /// 1: the token is invalid.
    pub const INVALID_TOKEN: ErrorCode = ErrorCode::new(1, "Invalid token provided", 403);
    /// 4: the action is forbidden (e.g. deleting a consumer that still has bundles).
    pub const FORBIDDEN: ErrorCode = ErrorCode::new(4, "Forbidden to perform this action", 403);
    /// 6: a unique value is taken, or the write conflicts with the stored state.
    pub const CONFLICT: ErrorCode =
        ErrorCode::new(6, "An entity with the specified unique values already exists", 409);
    /// 7: no such object (or route).
    pub const NOT_FOUND: ErrorCode = ErrorCode::new(7, "Resource not found", 404);
    /// 8: the input is invalid.
    pub const VALIDATION: ErrorCode = ErrorCode::new(8, "General validation failure", 400);
    /// 9: anything else; the reason never carries the cause.
    pub const GENERAL: ErrorCode = ErrorCode::new(9, "Unspecified error", 500);
    /// 10: the method is not served on this path.
    pub const NOT_IMPLEMENTED: ErrorCode =
        ErrorCode::new(10, "HTTP Method not implemented for this endpoint", 405);
    /// 11: the account may not perform the action.
    pub const UNAUTHORIZED: ErrorCode =
        ErrorCode::new(11, "Account is unauthorized to perform this action", 403);
    /// 15: the credentials could not be verified.
    pub const UNAUTHENTICATED: ErrorCode =
        ErrorCode::new(15, "Account authentication could not be verified", 401);
    /// 17: the request body cannot be read or decoded.
    pub const MALFORMED_REQUEST: ErrorCode = ErrorCode::new(17, "Unable to read request body", 400);
    /// 21: a bad request.
    pub const BAD_REQUEST: ErrorCode = ErrorCode::new(21, "Bad request", 400);
    /// 23: the `search` parameter cannot be parsed.
    pub const FAILED_TO_PARSE_SEARCH: ErrorCode = ErrorCode::new(23, "Failed to parse search query", 400);
    /// 26: an advisory lock could not be taken.
    pub const DATABASE_ADVISORY_LOCK: ErrorCode = ErrorCode::new(26, "Database advisory lock error", 500);

    /// Every code, in ascending order (what `GET /api/maestro/v1/errors` lists).
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::INVALID_TOKEN,
        ErrorCode::FORBIDDEN,
        ErrorCode::CONFLICT,
        ErrorCode::NOT_FOUND,
        ErrorCode::VALIDATION,
        ErrorCode::GENERAL,
        ErrorCode::NOT_IMPLEMENTED,
        ErrorCode::UNAUTHORIZED,
        ErrorCode::UNAUTHENTICATED,
        ErrorCode::MALFORMED_REQUEST,
        ErrorCode::BAD_REQUEST,
        ErrorCode::FAILED_TO_PARSE_SEARCH,
        ErrorCode::DATABASE_ADVISORY_LOCK,
    ];

    const fn new(code: u16, reason: &'static str, http_status: u16) -> Self {
        ErrorCode { code, reason, http_status }
    }

    /// The code whose id (its number as text, e.g. `"23"`) is `id`.
    pub fn find(id: &str) -> Option<ErrorCode> {
        let code: u16 = id.parse().ok()?;
        ErrorCode::ALL.into_iter().find(|c| c.code == code)
    }

    /// The HTTP status as a [`http::StatusCode`].
    pub fn status(&self) -> http::StatusCode {
        http::StatusCode::from_u16(self.http_status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// A failure of a server operation. Each variant maps to one [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Bad input (malformed event, invalid bundle, bad query): code 8 / HTTP 400.
    #[error("{0}")]
    Validation(String),
    /// A request body that is not the expected JSON: code 17 / HTTP 400.
    #[error("{0}")]
    MalformedRequest(String),
    /// A request Go answers with "Bad request" (e.g. an `orderBy` naming an unknown column):
    /// code 21 / HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    /// A `search` that cannot be parsed or names an unknown field: code 23 / HTTP 400. The
    /// reason reads as Go's: `Failed to parse search query: …`.
    #[error("Failed to parse search query: {0}")]
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
    /// The method is not served on this path: code 10 / HTTP 405.
    #[error("{0}")]
    NotImplemented(String),
    /// No credentials, or credentials that were refused: code 15 / HTTP 401, gRPC
    /// `UNAUTHENTICATED` (docs/security.md). The text never says why a credential was refused.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's identity may not do this (no REST role, not an allowed source, another
    /// source's bundle): code 11 / HTTP 403, gRPC `PERMISSION_DENIED` (docs/security.md).
    #[error("{0}")]
    Unauthorized(String),
    /// The database is unreachable or too slow (a failure that may go away): code 9 / HTTP 503,
    /// gRPC `UNAVAILABLE`, so clients retry. The text is for the log only, as for
    /// [`ServiceError::Internal`] (docs/security.md, "Bad input").
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The store (or anything else) failed: code 9 / HTTP 500. The text is for the log only:
    /// REST answers the generic reason of [`ErrorCode::GENERAL`] (see [`ServiceError::reason`]).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// The catalogue entry of this error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ServiceError::Validation(_) => ErrorCode::VALIDATION,
            ServiceError::MalformedRequest(_) => ErrorCode::MALFORMED_REQUEST,
            ServiceError::BadRequest(_) => ErrorCode::BAD_REQUEST,
            ServiceError::Search(_) => ErrorCode::FAILED_TO_PARSE_SEARCH,
            ServiceError::NotFound(_) => ErrorCode::NOT_FOUND,
            ServiceError::Conflict(_) => ErrorCode::CONFLICT,
            ServiceError::Forbidden(_) => ErrorCode::FORBIDDEN,
            ServiceError::NotImplemented(_) => ErrorCode::NOT_IMPLEMENTED,
            ServiceError::Unauthenticated(_) => ErrorCode::UNAUTHENTICATED,
            ServiceError::Unauthorized(_) => ErrorCode::UNAUTHORIZED,
            ServiceError::Internal(_) | ServiceError::Unavailable(_) => ErrorCode::GENERAL,
        }
    }

    /// Maestro's numeric error code.
    pub fn code(&self) -> u16 {
        self.error_code().code
    }

    /// The HTTP status.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            ServiceError::Unavailable(_) => http::StatusCode::SERVICE_UNAVAILABLE,
            other => other.error_code().status(),
        }
    }

    /// The reason a client is shown: the error text, except for [`ServiceError::Internal`],
    /// whose cause stays in the server's log and whose reason is the generic
    /// [`ErrorCode::GENERAL`] one.
    pub fn reason(&self) -> String {
        match self {
            ServiceError::Internal(_) => ErrorCode::GENERAL.reason.to_owned(),
            ServiceError::Unavailable(_) => "The service is unavailable for now; retry later".to_owned(),
            other => other.to_string(),
        }
    }

    /// The gRPC status. Its message is [`ServiceError::reason`]: an internal failure's cause is
    /// logged here under a new operation id and never sent; the message names the id, so an
    /// operator can find the cause (docs/security.md, "Bad input").
    pub fn to_status(&self) -> tonic::Status {
        let mut msg = self.reason();
        if let ServiceError::Internal(cause) | ServiceError::Unavailable(cause) = self {
            let operation_id = uuid::Uuid::new_v4();
            tracing::error!(%operation_id, %cause, "internal error answered to a gRPC call");
            msg = format!("{msg} (operation id {operation_id})");
        }
        match self {
            ServiceError::Validation(_)
            | ServiceError::MalformedRequest(_)
            | ServiceError::BadRequest(_)
            | ServiceError::Search(_) => tonic::Status::invalid_argument(msg),
            ServiceError::NotFound(_) => tonic::Status::not_found(msg),
            ServiceError::Conflict(_) => tonic::Status::aborted(msg),
            ServiceError::Forbidden(_) => tonic::Status::permission_denied(msg),
            ServiceError::NotImplemented(_) => tonic::Status::unimplemented(msg),
            ServiceError::Unauthenticated(_) => tonic::Status::unauthenticated(msg),
            ServiceError::Unauthorized(_) => tonic::Status::permission_denied(msg),
            ServiceError::Internal(_) | ServiceError::Unavailable(_) => tonic::Status::unavailable(msg),
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
            other if other.is_retryable() => ServiceError::Unavailable(other.to_string()),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<maestro_api::Error> for ServiceError {
    fn from(e: maestro_api::Error) -> Self {
        ServiceError::Validation(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_go_maestros() {
        let codes: Vec<(u16, u16)> = ErrorCode::ALL.iter().map(|c| (c.code, c.http_status)).collect();
        assert_eq!(
            codes,
            [
                (1, 403),
                (4, 403),
                (6, 409),
                (7, 404),
                (8, 400),
                (9, 500),
                (10, 405),
                (11, 403),
                (15, 401),
                (17, 400),
                (21, 400),
                (23, 400),
                (26, 500)
            ]
        );
        assert!(ErrorCode::ALL.iter().all(|c| c.status().as_u16() == c.http_status));
        assert_eq!(ErrorCode::find("23"), Some(ErrorCode::FAILED_TO_PARSE_SEARCH));
        for unknown in ["999", "2", "x", "", "-7"] {
            assert_eq!(ErrorCode::find(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn internal_causes_stay_out_of_the_reason() {
        let e = ServiceError::Internal("password authentication failed for user \"maestro\"".into());
        assert_eq!((e.code(), e.reason().as_str()), (9, "Unspecified error"));
        assert_eq!(e.http_status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        let status = e.to_status();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().starts_with("Unspecified error (operation id "), "{}", status.message());
        assert!(!status.message().contains("password"), "{}", status.message());
        let e = ServiceError::NotFound("consumer \"x\" not found".into());
        assert_eq!((e.code(), e.reason().as_str()), (7, "consumer \"x\" not found"));
    }
}
