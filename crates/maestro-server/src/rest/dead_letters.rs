//! `GET /api/maestro/v1/dead-letters` (list, newest first; `page` and `size` as every list but
//! with sizes clamped to [`MAX_PAGE_SIZE`], and
//! `consumer` for one consumer's), `GET /dead-letters/{id}` and `DELETE /dead-letters/{id}`:
//! the events set aside for good (docs/security.md, "Dead letters"). They hold other tenants'
//! raw events and the server's reasons, so every method needs the REST role `admin`
//! ([`super::auth`]).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use maestro_store::{DeadLetter, DeadLetterQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use super::list::{ListParams, paging};
use super::presenters::BASE;
use super::{ApiResult, RestState, fail};
use crate::error::ServiceError;

/// Largest page of dead letters (each may hold a 64 KiB event): bigger sizes are clamped.
pub const MAX_PAGE_SIZE: i64 = 500;

/// The list's query parameters.
#[derive(Debug, Default, Deserialize)]
pub struct DeadLetterParams {
    page: Option<String>,
    size: Option<String>,
    consumer: Option<String>,
}

/// The REST shape of a dead letter: `{id, kind: "DeadLetter", href, received_at (RFC 3339),
/// origin, broker, consumer_name, resource_id, event_id, event_type, reason, event (the
/// CloudEvent as JSON, or null when it was over 64 KiB), event_bytes}`.
pub fn present(d: &DeadLetter) -> Value {
    let event = d.event.as_deref().map(|text| serde_json::from_str(text).unwrap_or_else(|_| json!(text)));
    json!({
        "id": d.id.to_string(),
        "kind": "DeadLetter",
        "href": format!("{BASE}/dead-letters/{}", d.id),
        "received_at": d.received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "origin": d.origin.as_str(),
        "broker": d.broker,
        "consumer_name": d.consumer_name,
        "resource_id": d.resource_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "reason": d.reason,
        "event": event,
        "event_bytes": d.event_bytes,
    })
}

/// `GET /dead-letters`: a `DeadLetterList` page.
pub(crate) async fn list(
    State(st): State<RestState>,
    headers: HeaderMap,
    query: Result<Query<DeadLetterParams>, QueryRejection>,
) -> ApiResult {
    let Query(params) = query.map_err(|e| {
        fail(&headers)(ServiceError::BadRequest(format!("invalid query string: {}", e.body_text())))
    })?;
    let list_params = ListParams { page: params.page, size: params.size, ..Default::default() };
    let mut paging = paging(&list_params).map_err(fail(&headers))?;
    paging.size = paging.size.min(MAX_PAGE_SIZE);
    let query = DeadLetterQuery { paging, consumer_name: params.consumer.filter(|c| !c.is_empty()) };
    let page = st.store.list_dead_letters(&query).await.map_err(|e| fail(&headers)(e.into()))?;
    let items = page.items.iter().map(present).collect();
    Ok(Json(super::presenters::list("DeadLetterList", page.page, page.total, items)).into_response())
}

/// The id in the path: a positive integer, else 404 as for any unknown id.
fn id(headers: &HeaderMap, raw: &str) -> Result<i64, super::ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| fail(headers)(ServiceError::NotFound(format!("dead letter {raw:?} not found"))))
}

/// `GET /dead-letters/{id}`.
pub(crate) async fn get(
    State(st): State<RestState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> ApiResult {
    let d = st.store.get_dead_letter(id(&headers, &raw)?).await.map_err(|e| fail(&headers)(e.into()))?;
    Ok(Json(present(&d)).into_response())
}

/// `DELETE /dead-letters/{id}`: 204; 404 for an unknown id.
pub(crate) async fn delete(
    State(st): State<RestState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> ApiResult {
    st.store.delete_dead_letter(id(&headers, &raw)?).await.map_err(|e| fail(&headers)(e.into()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
