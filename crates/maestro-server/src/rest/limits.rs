//! The REST API's limits (docs/rest.md, "Limits"): the request body size, the time a request
//! has to produce its response head, and how many lists are served at once. The connection
//! timeouts (header read, idle) are the listener's ([`super::serve`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::errors::{ApiError, fail, op_id};
use super::presenters;
use crate::error::{ErrorCode, ServiceError};

/// The request header naming a request in logs and error bodies.
const OPERATION_ID: &str = "x-operation-id";

/// Limits of the REST listener. The defaults suit Go Maestro's clients, whose bodies are a
/// few KiB and whose largest answer is a 65,500-item page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestLimits {
    /// Largest request body, in bytes (default 1 MiB); a larger one is answered 413 with code
    /// 17, before it is read when its `Content-Length` says so.
    pub max_body_bytes: usize,
    /// Time an HTTP/1.1 client has to send a request's headers (default 10 s), counted from
    /// when the connection is ready for a request: a half-sent header (slowloris) or an idle
    /// keep-alive connection is closed after it. `None` disables it.
    pub header_read_timeout: Option<Duration>,
    /// A connection on which nothing is read or written for this long is closed (default
    /// 90 s): HTTP/2 connections left idle, clients that stop reading a response. `None`
    /// disables it.
    pub idle_timeout: Option<Duration>,
    /// Time a request has to produce its response head (default 60 s): reading its body,
    /// waiting for a list slot, the database work; then 503 with code 9. A list's items stream
    /// after the head, bounded by the idle timeout only. `None` disables it.
    pub request_timeout: Option<Duration>,
    /// Lists served at once (default 8, at least 1); more wait for a slot, in arrival order,
    /// within the request timeout.
    pub max_concurrent_lists: usize,
}

impl Default for RestLimits {
    fn default() -> Self {
        RestLimits {
            max_body_bytes: 1024 * 1024,
            header_read_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(90)),
            request_timeout: Some(Duration::from_secs(60)),
            max_concurrent_lists: 8,
        }
    }
}

/// The slots of concurrent lists.
#[derive(Debug, Clone)]
pub(crate) struct ListSlots(Arc<Semaphore>);

impl ListSlots {
    pub(crate) fn new(limits: &RestLimits) -> Self {
        ListSlots(Arc::new(Semaphore::new(limits.max_concurrent_lists.clamp(1, Semaphore::MAX_PERMITS))))
    }

    /// Waits for a free slot (first come, first served); the slot is free again when the
    /// permit is dropped, i.e. when the list's body is written or abandoned.
    pub(crate) async fn take(&self) -> OwnedSemaphorePermit {
        match self.0.clone().acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }
}

/// The outermost middleware: names the request (a generated `X-Operation-ID` when it has
/// none, so every log line and error body of the request shows the same id), refuses a body
/// declared too large, and answers 503 when the response head is not ready in time.
///
/// A 413 on HTTP/1.1 carries `Connection: close`: its body was not read, so the server closes
/// the connection, and a client that reused it would see its next request fail mid-flight.
pub(crate) async fn guard(State(limits): State<Arc<RestLimits>>, req: Request, next: Next) -> Response {
    let http1 = req.version() <= axum::http::Version::HTTP_11;
    let mut resp = guarded(limits, req, next).await;
    if http1 && resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// [`guard`] without the connection handling.
async fn guarded(limits: Arc<RestLimits>, mut req: Request, next: Next) -> Response {
    if req.headers().get(OPERATION_ID).is_none_or(HeaderValue::is_empty) {
        let id = uuid::Uuid::new_v4().to_string();
        if let Ok(v) = HeaderValue::from_str(&id) {
            req.headers_mut().insert(OPERATION_ID, v);
        }
    }
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return too_large(req.headers(), limits.max_body_bytes).into_response();
    }
    let Some(limit) = limits.request_timeout else { return next.run(req).await };
    let (operation_id, method, path) =
        (op_id(req.headers()), req.method().clone(), req.uri().path().to_owned());
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(%operation_id, %method, path, ?limit, "REST request timed out");
            let reason = format!("The request did not complete within {}s", limit.as_secs_f64());
            let body = presenters::error(ErrorCode::GENERAL, &reason, Some(&operation_id));
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}

/// 413 with code 17: the body exceeds `max` bytes.
fn too_large(headers: &HeaderMap, max: usize) -> ApiError {
    let reason = format!("Unable to read request body: it exceeds the limit of {max} bytes");
    fail(headers)(ServiceError::MalformedRequest(reason)).with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// A handler's body: 413 (code 17) past `max` bytes (a body sent without a length is cut
/// there by axum's body limit), 400 (code 17) when it cannot be read.
pub(crate) fn body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    max: usize,
) -> Result<Bytes, ApiError> {
    match body {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large(headers, max)),
        Err(e) => Err(fail(headers)(ServiceError::MalformedRequest(format!(
            "Unable to read request body: {}",
            e.body_text()
        )))),
    }
}
