//! The REST API (axum), on Maestro's paths (maestro-reference.md §2.1):
//! `/api/maestro/v1/consumers` (list, get, create, patch labels, delete) and
//! `/api/maestro/v1/resource-bundles` (list, get, delete), with `page`/`size` paging, `search`,
//! and JSON error bodies; plus `/healthz` (liveness) and `/readyz` (database reachable).

pub mod list;
pub mod presenters;
pub mod raw;
pub mod search;

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use maestro_store::{DynStore, NewConsumer};
use maestro_transport::DynSourceTransport;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ServiceError;
use presenters::BASE;

/// Shared handler state.
#[derive(Debug, Clone)]
pub struct RestState {
    /// The store.
    pub store: DynStore,
    /// The broker, told about newly registered consumers
    /// ([`maestro_transport::SourceTransport::register_consumer`]).
    pub transport: DynSourceTransport,
}

/// Builds the router.
pub fn router(store: DynStore, transport: DynSourceTransport) -> Router {
    Router::new()
        .route("/api/maestro", get(|| async { Json(json!({"id":"maestro","kind":"API","href":"/api/maestro","versions":[{"id":"v1","href":BASE}]})) }))
        .route(BASE, get(|| async { Json(json!({"id":"v1","kind":"APIVersion","href":BASE,"collections":[{"id":"consumers","href":format!("{BASE}/consumers"),"kind":"ConsumerList"},{"id":"resource-bundles","href":format!("{BASE}/resource-bundles"),"kind":"ResourceBundleList"}]})) }))
        .route(&format!("{BASE}/consumers"), get(list::list_consumers).post(create_consumer))
        .route(&format!("{BASE}/consumers/{{id}}"), get(get_consumer).patch(patch_consumer).delete(delete_consumer))
        .route(&format!("{BASE}/resource-bundles"), get(list::list_bundles))
        .route(&format!("{BASE}/resource-bundles/{{id}}"), get(get_bundle).delete(delete_bundle))
        .route("/healthz", get(|| async { Json(json!({"status":"ok"})) }))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(RestState { store, transport })
}

/// An error response carrying the request's operation id.
pub struct ApiError {
    err: ServiceError,
    operation_id: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = presenters::error(self.err.code(), &self.err.to_string(), &self.operation_id);
        (self.err.http_status(), Json(body)).into_response()
    }
}

fn op_id(headers: &HeaderMap) -> String {
    headers
        .get("x-operation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

pub(crate) fn fail(headers: &HeaderMap) -> impl Fn(ServiceError) -> ApiError + '_ {
    move |err| ApiError { err, operation_id: op_id(headers) }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

async fn not_found(headers: HeaderMap) -> Response {
    let body = presenters::error(404, "the requested resource could not be found", &op_id(&headers));
    let mut body = body;
    body["id"] = json!("404");
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn readyz(State(st): State<RestState>) -> Response {
    match st.store.ping().await {
        Ok(()) => Json(json!({"status":"ok"})).into_response(),
        Err(e) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status":"not ready","reason":e.to_string()})))
                .into_response()
        }
    }
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

async fn create_consumer(
    State(st): State<RestState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: ConsumerBody = serde_json::from_slice(&body)
        .map_err(|e| fail(&headers)(ServiceError::Validation(format!("invalid consumer JSON: {e}"))))?;
    if body.id.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(fail(&headers)(ServiceError::Validation("id must be empty: it is generated".into())));
    }
    if let Some(name) = body.name.as_deref().filter(|n| !maestro_api::validate::is_dns1123_label(n)) {
        return Err(fail(&headers)(ServiceError::Validation(format!(
            "consumer name {name:?} must be a DNS-1123 label (lower-case alphanumerics and '-', at most 63)"
        ))));
    }
    let c = st
        .store
        .create_consumer(NewConsumer { name: body.name, labels: body.labels })
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

async fn patch_consumer(
    State(st): State<RestState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| fail(&headers)(ServiceError::Validation(format!("invalid patch JSON: {e}"))))?;
    if body.get("name").is_some() {
        return Err(fail(&headers)(ServiceError::Validation("the consumer name is immutable".into())));
    }
    let labels: BTreeMap<String, String> =
        serde_json::from_value(body.get("labels").cloned().unwrap_or(json!({}))).map_err(|e| {
            fail(&headers)(ServiceError::Validation(format!("labels must map strings to strings: {e}")))
        })?;
    let c = st.store.set_consumer_labels(&id, labels).await.map_err(|e| fail(&headers)(e.into()))?;
    Ok(Json(presenters::consumer(&c)).into_response())
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

async fn delete_bundle(State(st): State<RestState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    match st.store.mark_deleting(&id).await.map_err(|e| fail(&headers)(e.into()))? {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(fail(&headers)(ServiceError::NotFound(format!("resource bundle {id:?} not found")))),
    }
}
