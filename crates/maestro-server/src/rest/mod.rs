//! The REST API (axum), on Go Maestro's paths and with its shapes (docs/rest.md):
//! `/api/maestro/v1/consumers` (list, get, create, patch labels, delete),
//! `/api/maestro/v1/resource-bundles` (list, get, delete), the error catalogue
//! (`/api/maestro/v1/errors`, `/errors/{id}`), this API's OpenAPI document
//! (`/api/maestro/v1/openapi`), the dead letters (`/api/maestro/v1/dead-letters`,
//! [`dead_letters`]), Go's JSON error bodies on every failure (unknown routes and
//! methods included); plus `/healthz` (liveness) and `/readyz` (database reachable). The limits
//! of docs/rest.md, "Limits" are [`limits`] (body size, request time, concurrent lists) and
//! [`serve`] (the listener's connections: header read and idle timeouts).

pub mod auth;
pub mod dead_letters;
pub mod errors;
pub mod limits;
pub mod list;
pub mod openapi;
pub mod presenters;
pub mod raw;
pub mod serve;
pub mod server_instances;
mod stream;
pub mod wipe;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use maestro_store::{DynStore, NewConsumer};
use maestro_transport::DynSourceTransport;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ServiceError;
pub use errors::ApiError;
pub(crate) use errors::{ApiResult, fail};
pub use limits::RestLimits;
use presenters::BASE;

/// Shared handler state.
#[derive(Debug, Clone)]
pub struct RestState {
    /// The store.
    pub store: DynStore,
    /// The broker, told about newly registered consumers
    /// ([`maestro_transport::SourceTransport::register_consumer`]).
    pub transport: DynSourceTransport,
    /// The limits of this API.
    limits: Arc<RestLimits>,
    /// The slots of concurrent lists.
    lists: limits::ListSlots,
    /// What `/readyz` answers.
    readiness: crate::ops::Readiness,
}

impl RestState {
    /// The state of a REST API over `store` and `transport` under `limits`, whose `/readyz`
    /// answers `readiness`.
    pub fn new(
        store: DynStore,
        transport: DynSourceTransport,
        limits: &RestLimits,
        readiness: crate::ops::Readiness,
    ) -> Self {
        let lists = limits::ListSlots::new(limits);
        RestState { store, transport, limits: Arc::new(limits.clone()), lists, readiness }
    }
}

/// Builds the router over `state`; `gate` authenticates and authorizes every call but the
/// public ones ([`auth`]); the state's limits bound request bodies, request times and
/// concurrent lists.
pub fn router(state: RestState, gate: maestro_auth::Gate) -> Router {
    let shared = state.limits.clone();
    let max_body_bytes = shared.max_body_bytes;
    Router::new()
        .route("/api/maestro", get(|| async { Json(json!({"id":"maestro","kind":"API","href":"/api/maestro","versions":[{"id":"v1","href":BASE}]})) }))
        .route(BASE, get(|| async { Json(json!({"id":"v1","kind":"APIVersion","href":BASE,"collections":[{"id":"consumers","href":format!("{BASE}/consumers"),"kind":"ConsumerList"},{"id":"resource-bundles","href":format!("{BASE}/resource-bundles"),"kind":"ResourceBundleList"}]})) }))
        .route(&format!("{BASE}/openapi"), get(openapi::serve))
        .route(&format!("{BASE}/errors"), get(errors::list_errors))
        .route(&format!("{BASE}/errors/{{id}}"), get(errors::get_error))
        .route(&format!("{BASE}/consumers"), get(list::list_consumers).post(create_consumer))
        .route(&format!("{BASE}/consumers/{{id}}"), get(get_consumer).patch(patch_consumer).delete(delete_consumer))
        .route(&format!("{BASE}/consumers/{{id}}/wipe-confirmation"), axum::routing::post(wipe::confirm))
        .route(&format!("{BASE}/resource-bundles"), get(list::list_bundles))
        .route(&format!("{BASE}/resource-bundles/{{id}}"), get(get_bundle).delete(delete_bundle))
        .route(&format!("{BASE}/dead-letters"), get(dead_letters::list))
        .route(&format!("{BASE}/server-instances"), get(server_instances::list))
        .route(&format!("{BASE}/dead-letters/{{id}}"), get(dead_letters::get).delete(dead_letters::delete))
        .route("/healthz", get(|| async { Json(json!({"status":"ok"})) }))
        .route("/readyz", get(readyz))
        .fallback(errors::not_found)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(gate, auth::check))
        .layer(axum::middleware::from_fn_with_state(shared, limits::guard))
        .layer(axum::middleware::from_fn(track))
}

/// Counts and times every request ([`crate::metrics::REST_REQUESTS`],
/// [`crate::metrics::REST_DURATION`]) by method, route (`{id}` segments as `-`, as Go
/// Maestro's label; `unmatched` for unknown paths) and status code, and runs it in a `rest
/// request` span, the child of the caller's W3C `traceparent` header when it sends one
/// (docs/operations.md §4.6).
async fn track(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let method = req.method().as_str().to_owned();
    let path = match req.extensions().get::<axum::extract::MatchedPath>() {
        Some(route) => route
            .as_str()
            .split('/')
            .map(|seg| if seg.starts_with('{') { "-" } else { seg })
            .collect::<Vec<_>>()
            .join("/"),
        None => "unmatched".to_owned(),
    };
    let span = tracing::info_span!("rest request", method = %method, route = %path, trace_id = tracing::field::Empty);
    let caller = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        header("traceparent")
            .map(|parent| maestro_transport::trace::TraceContext { parent, state: header("tracestate") })
    };
    if let Some(cx) = caller {
        cx.link(&span);
    }
    maestro_transport::trace::record_trace_id(&span);
    let resp = next.run(req).instrument(span).await;
    let labels = [("method", method), ("path", path), ("code", resp.status().as_u16().to_string())];
    metrics::counter!(crate::metrics::REST_REQUESTS, &labels).increment(1);
    metrics::histogram!(crate::metrics::REST_DURATION, &labels).record(started.elapsed());
    resp
}

/// `/readyz`: 200 when the server is ready ([`crate::ops::Readiness`]: database, broker,
/// instance lease), else 503 with the reason and the operation id; the database's error text
/// goes to the log only.
async fn readyz(State(st): State<RestState>, headers: HeaderMap) -> Response {
    match st.readiness.check().await {
        Ok(()) => Json(json!({"status":"ok"})).into_response(),
        Err(reason) => {
            let operation_id = errors::op_id(&headers);
            tracing::warn!(%operation_id, %reason, "readiness check failed");
            let body = json!({"status": "not ready", "reason": reason.to_string(),
                              "operation_id": operation_id});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// A request body that is not the expected JSON: 400 with code 17, as Go answers.
fn malformed(headers: &HeaderMap) -> impl Fn(serde_json::Error) -> ApiError + '_ {
    move |e| fail(headers)(ServiceError::MalformedRequest(format!("Invalid request format: {e}")))
}

#[derive(Debug, Deserialize)]
struct ConsumerBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// `POST /consumers`. As Go's, a name must be a DNS-1123 label (Kubernetes' namespace name
/// rule: lower-case alphanumerics and '-', alphanumeric at both ends, at most 63 characters);
/// without one (absent or empty) the consumer is named by its id.
async fn create_consumer(
    State(st): State<RestState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = limits::body(&headers, body, st.limits.max_body_bytes)?;
    let body: ConsumerBody = serde_json::from_slice(&body).map_err(malformed(&headers))?;
    if body.id.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(fail(&headers)(ServiceError::Validation("id must be empty: it is generated".into())));
    }
    let name = body.name.filter(|n| !n.is_empty());
    if let Some(name) = name.as_deref().filter(|n| !maestro_api::validate::is_dns1123_label(n)) {
        return Err(fail(&headers)(ServiceError::Validation(format!(
            "consumer.name: Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case \
             alphanumeric characters or '-', start and end with an alphanumeric character, and be at most \
             63 characters long"
        ))));
    }
    let c = st
        .store
        .create_consumer(NewConsumer { name, labels: body.labels })
        .await
        .map_err(|e| fail(&headers)(e.into()))?;
    // The consumer is registered either way; an agent with autoCreate (or `maestro pubsub
    // init`) can still create what the broker failed to create here.
    if let Err(e) = st.transport.register_consumer(&c.name).await {
        tracing::warn!(consumer = %c.name, backend = st.transport.backend(), error = %e,
            "consumer registered, but preparing its broker resources failed");
    }
    Ok((StatusCode::CREATED, Json(presenters::consumer(&c))).into_response())
}

async fn get_consumer(State(st): State<RestState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let c = st.store.get_consumer(&id).await.map_err(|e| fail(&headers)(e.into()))?;
    Ok(Json(presenters::consumer(&c)).into_response())
}

/// `PATCH /consumers/{id}`: the body is a JSON object (else 400, code 17, as Go's decoder
/// refuses it); its `labels` replace the consumer's (`{}` clears them); without `labels`, or
/// with `labels: null`, the consumer is unchanged, as in Go. Naming `name` is refused (code 8).
async fn patch_consumer(
    State(st): State<RestState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = limits::body(&headers, body, st.limits.max_body_bytes)?;
    let body: Value = serde_json::from_slice(&body).map_err(malformed(&headers))?;
    let Value::Object(body) = body else {
        return Err(fail(&headers)(ServiceError::MalformedRequest(format!(
            "Invalid request format: the body must be a JSON object (ConsumerPatchRequest), not {}",
            json_kind(&body)
        ))));
    };
    if body.contains_key("name") {
        return Err(fail(&headers)(ServiceError::Validation("the consumer name is immutable".into())));
    }
    let labels: Option<BTreeMap<String, String>> = match body.get("labels") {
        None | Some(Value::Null) => None,
        Some(labels) => Some(serde_json::from_value(labels.clone()).map_err(|e| {
            fail(&headers)(ServiceError::MalformedRequest(format!("labels must map strings to strings: {e}")))
        })?),
    };
    let c = match labels {
        Some(labels) => st.store.set_consumer_labels(&id, labels).await,
        None => st.store.get_consumer(&id).await,
    };
    Ok(Json(presenters::consumer(&c.map_err(|e| fail(&headers)(e.into()))?)).into_response())
}

/// The JSON type of `v`, for error reasons.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

async fn delete_consumer(
    State(st): State<RestState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    st.store.delete_consumer(&id).await.map_err(|e| fail(&headers)(e.into()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_bundle(State(st): State<RestState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let r = st.store.get_resource(&id).await.map_err(|e| fail(&headers)(e.into()))?;
    Ok(Json(presenters::resource_bundle(&r)).into_response())
}

/// `DELETE /resource-bundles/{id}`: marks the bundle deleting. Idempotent as Go's: an
/// unknown id and a bundle already being deleted answer 204 too.
async fn delete_bundle(State(st): State<RestState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    st.store.mark_deleting(&id).await.map_err(|e| fail(&headers)(e.into()))?;
    metrics::counter!(crate::metrics::RESOURCES_PROCESSED, "action" => "delete").increment(1);
    Ok(StatusCode::NO_CONTENT.into_response())
}
