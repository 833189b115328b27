//! Error replies (docs/rest.md, "Errors"): the [`ApiError`] every handler answers with, the
//! fallbacks for unknown routes (404, code 7) and unserved methods (405, code 10), and the
//! error catalogue at `GET /api/maestro/v1/errors` and `/errors/{id}`, read from
//! [`ErrorCode::ALL`].

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::presenters;
use crate::error::{ErrorCode, ServiceError};

/// An error response carrying the request's operation id.
#[derive(Debug)]
pub struct ApiError {
    err: ServiceError,
    operation_id: String,
    /// Answered instead of the code's own status (413 for a body over the limit, 503 for a
    /// request over its time: docs/rest.md, "Limits").
    status: Option<StatusCode>,
}

impl ApiError {
    /// This error answered with `status` instead of its code's.
    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.err.error_code();
        if let ServiceError::Internal(cause) | ServiceError::Unavailable(cause) = &self.err {
            // The cause stays here: the client sees the generic reason and this operation id.
            tracing::error!(operation_id = %self.operation_id, error = %cause, "request failed");
        }
        let body = presenters::error(code, &self.err.reason(), Some(&self.operation_id));
        (self.status.unwrap_or_else(|| self.err.http_status()), Json(body)).into_response()
    }
}

/// The request's `X-Operation-ID`, or a new UUID.
pub(crate) fn op_id(headers: &HeaderMap) -> String {
    headers
        .get("x-operation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Wraps a [`ServiceError`] into the [`ApiError`] of the request with `headers`.
pub(crate) fn fail(headers: &HeaderMap) -> impl Fn(ServiceError) -> ApiError + '_ {
    move |err| ApiError { err, operation_id: op_id(headers), status: None }
}

/// What handlers return.
pub(crate) type ApiResult = Result<Response, ApiError>;

/// The fallback of unknown routes: 404 with code 7.
pub(crate) async fn not_found(headers: HeaderMap, uri: Uri) -> ApiError {
    let reason = format!("The requested resource '{}' doesn't exist", uri.path());
    fail(&headers)(ServiceError::NotFound(reason))
}

/// The fallback of known paths for methods they do not serve: 405 with code 10.
pub(crate) async fn method_not_allowed(headers: HeaderMap, method: Method, uri: Uri) -> ApiError {
    let reason = format!("{method} is not implemented for {}", uri.path());
    fail(&headers)(ServiceError::NotImplemented(reason))
}

/// `GET /errors`: the catalogue as an ErrorList.
pub(crate) async fn list_errors() -> Response {
    Json(presenters::error_list()).into_response()
}

/// `GET /errors/{id}`: one code with its default reason; 404 (code 7) for unknown ids.
pub(crate) async fn get_error(headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    match ErrorCode::find(&id) {
        Some(code) => Ok(Json(presenters::error_entry(code)).into_response()),
        None => Err(fail(&headers)(ServiceError::NotFound(format!("No error with id {id} exists")))),
    }
}
