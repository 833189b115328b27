//! `POST /api/maestro/v1/consumers/{id}/wipe-confirmation`: an operator confirms that the works
//! the consumer's agent orphaned (the fleet-wipe guard, docs/operations.md §3.5) may be
//! deleted. This project's addition; a write, so it needs the REST role `admin`
//! ([`super::auth`]).
//!
//! Body (optional): `{"ttl_seconds": N}`, how long the confirmation holds (default 3600, at
//! most [`maestro_store::MAX_WIPE_CONFIRMATION`]). Answer 200: `{kind: "WipeConfirmation",
//! consumer_id, consumer_name, confirmed_until (RFC 3339), store_identity}`. While it holds,
//! the server's spec resync answers mark their deletions of works the store does not hold
//! `wipeconfirmed`, and the agent deletes them at its next resync.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use chrono::SecondsFormat;
use maestro_store::StoreError;
use serde_json::{Value, json};

use super::{ApiResult, RestState, ServiceError, fail, limits};

/// How long a confirmation holds when the request does not say.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The `ttl_seconds` of a request body (empty body: the default).
fn ttl(body: &[u8]) -> Result<Duration, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DEFAULT_TTL);
    }
    let body: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match body.get("ttl_seconds") {
        None | Some(Value::Null) => Ok(DEFAULT_TTL),
        Some(v) => v
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| format!("ttl_seconds must be a whole number of seconds, not {v}")),
    }
}

/// `POST /consumers/{id}/wipe-confirmation`.
pub(crate) async fn confirm(
    State(st): State<RestState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body = limits::body(&headers, body, st.limits.max_body_bytes)?;
    let ttl = ttl(&body).map_err(|e| {
        fail(&headers)(ServiceError::MalformedRequest(format!("Invalid request format: {e}")))
    })?;
    let consumer = st.store.get_consumer(&id).await.map_err(|e| fail(&headers)(e.into()))?;
    let until = st.store.confirm_wipe(&consumer.name, ttl).await.map_err(|e| match e {
        StoreError::Invalid(reason) => fail(&headers)(ServiceError::Validation(reason)),
        e => fail(&headers)(e.into()),
    })?;
    let identity = st.store.store_identity().await.map_err(|e| fail(&headers)(e.into()))?;
    tracing::warn!(consumer = %consumer.name, %until, "wipe confirmed: the agent deletes the works it orphaned at its next spec resync");
    Ok(Json(json!({
        "kind": "WipeConfirmation",
        "consumer_id": consumer.id,
        "consumer_name": consumer.name,
        "confirmed_until": until.to_rfc3339_opts(SecondsFormat::Secs, true),
        "store_identity": identity,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_defaults_and_refuses_what_is_not_seconds() {
        assert_eq!(ttl(b""), Ok(DEFAULT_TTL));
        assert_eq!(ttl(b"{}"), Ok(DEFAULT_TTL));
        assert_eq!(ttl(br#"{"ttl_seconds": 60}"#), Ok(Duration::from_secs(60)));
        assert!(ttl(br#"{"ttl_seconds": -1}"#).is_err());
        assert!(ttl(br#"{"ttl_seconds": "1h"}"#).is_err());
        assert!(ttl(b"[").is_err());
    }
}
