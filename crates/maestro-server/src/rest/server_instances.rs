//! `GET /api/maestro/v1/server-instances`: the server instance registry (docs/architecture.md
//! §9), every instance sharing this database with its lease and whether it is live. It names
//! the fleet's servers, so it needs the REST role `admin` ([`super::auth`]).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use chrono::{SecondsFormat, TimeZone, Utc};
use maestro_store::ServerInstance;
use serde_json::{Value, json};

use super::presenters::BASE;
use super::{ApiResult, RestState, fail};

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds); `null` for 0 (a lease ended
/// by a graceful shutdown) or a value out of range.
fn time(ms: i64) -> Value {
    match Utc.timestamp_millis_opt(ms).single().filter(|_| ms > 0) {
        Some(t) => json!(t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        None => Value::Null,
    }
}

/// The REST shape of an instance: `{id, kind: "ServerInstance", href, started_at,
/// lease_until (RFC 3339, null once it left), ready (registered and its lease not passed),
/// status_cursor (the last status event its fan-out delivered), agent_consumers (consumers
/// whose gRPC agents are connected to it)}`.
pub fn present(i: &ServerInstance) -> Value {
    json!({
        "id": i.id,
        "kind": "ServerInstance",
        "href": format!("{BASE}/server-instances/{}", i.id),
        "started_at": time(i.started_at_ms),
        "lease_until": time(i.lease_until_ms),
        "ready": i.live,
        "status_cursor": i.status_cursor,
        "agent_consumers": i.agent_consumers,
    })
}

/// `GET /server-instances`: a `ServerInstanceList` of every known instance (one page).
pub(crate) async fn list(State(st): State<RestState>, headers: HeaderMap) -> ApiResult {
    let instances = st.store.list_instances().await.map_err(|e| fail(&headers)(e.into()))?;
    let total = i64::try_from(instances.len()).unwrap_or(i64::MAX);
    let items = instances.iter().map(present).collect();
    Ok(Json(super::presenters::list("ServerInstanceList", 1, total, items)).into_response())
}
