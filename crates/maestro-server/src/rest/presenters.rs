//! JSON shapes of the REST API, exactly Go Maestro's OpenAPI schemas (docs/rest.md,
//! "Response shapes"; our copy is `openapi/openapi.yaml` of this crate): Consumer,
//! ResourceBundle (with its status decoded from the stored status event), lists, and the
//! error body. Go's generated client decodes list items with unknown keys disallowed, so no
//! object carries a key its schema does not declare, and empty optional keys are left out as
//! Go leaves them out.

use maestro_api::codec::data_as;
use maestro_api::{ext, json};
use maestro_store::{Consumer, Resource};

use serde_json::{Map, Value, json};

use crate::error::ErrorCode;

/// The API base path.
pub const BASE: &str = "/api/maestro/v1";

/// The keys a Consumer may show (Go's `Consumer` schema), in the order of the schema.
pub const CONSUMER_KEYS: [&str; 7] = ["id", "kind", "href", "name", "labels", "created_at", "updated_at"];

/// The keys a ResourceBundle may show (Go's `ResourceBundle` schema), in the order of the
/// schema.
pub const RESOURCE_BUNDLE_KEYS: [&str; 14] = [
    "id",
    "kind",
    "href",
    "name",
    "consumer_name",
    "version",
    "created_at",
    "updated_at",
    "deleted_at",
    "metadata",
    "manifests",
    "delete_option",
    "manifest_configs",
    "status",
];

/// A consumer as JSON: `{id, kind, href, name, labels, created_at, updated_at}`, without
/// `labels` when there are none.
pub fn consumer(c: &Consumer) -> Value {
    let mut out = json!({
        "id": c.id,
        "kind": "Consumer",
        "href": format!("{BASE}/consumers/{}", c.id),
        "name": c.name,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    });
    if !c.labels.is_empty() {
        out["labels"] = json!(c.labels);
    }
    out
}

/// True for the values Go leaves out of a bundle: JSON `null`, `{}` and `[]`.
pub(crate) fn is_empty_json(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A resource bundle as JSON: spec parts from the stored spec event, status from the stored
/// status event (`ObservedVersion`, `SequenceID`, `conditions`, `resourceStatus`).
///
/// The keys are those of Go's `ResourceBundle` schema; `deleted_at` (not deleting),
/// `status` (no status yet), `delete_option` (absent or `{}`) and `manifest_configs` (absent
/// or `[]`) are left out when empty, and a missing `manifests` reads as `[]`. `version` is an
/// `int32` in Go's client: a spec version counts updates of one bundle and stays far below
/// 2^31 in practice.
pub fn resource_bundle(r: &Resource) -> Value {
    let spec = json::from_value_ref(&r.payload).ok();
    let data =
        spec.as_ref().and_then(|ev| data_as::<Value>(ev, "ManifestBundle").ok()).unwrap_or(Value::Null);
    let mut metadata: Map<String, Value> =
        spec.as_ref().and_then(|ev| ext::metadata(ev).ok().flatten()).unwrap_or_default();
    metadata.insert("creationTimestamp".into(), json!(r.created_at));
    if let Some(d) = r.deleted_at {
        metadata.insert("deletionTimestamp".into(), json!(d));
    }
    let part = |key: &str| data.get(key).filter(|v| !is_empty_json(v)).cloned();
    let mut out = json!({
        "id": r.id,
        "kind": "ResourceBundle",
        "href": format!("{BASE}/resource-bundles/{}", r.id),
        "name": r.name,
        "consumer_name": r.consumer_name,
        "version": r.version,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "metadata": metadata,
        "manifests": data.get("manifests").filter(|v| !v.is_null()).cloned().unwrap_or(json!([])),
    });
    if let Some(configs) = part("manifestConfigs") {
        out["manifest_configs"] = configs;
    }
    if let Some(option) = part("deleteOption") {
        out["delete_option"] = option;
    }
    if let Some(d) = r.deleted_at {
        out["deleted_at"] = json!(d);
    }
    if let Some(status) = r.status.as_ref().and_then(status_json) {
        out["status"] = status;
    }
    out
}

fn status_json(stored: &Value) -> Option<Value> {
    let ev = json::from_value(stored.clone()).ok()?;
    let data: Value = data_as(&ev, "ManifestBundleStatus").ok()?;
    Some(json!({
        // int32 as Go's; out of range reads as 0, as in `raw::raw_status`.
        "ObservedVersion": ext::resource_version(&ev).ok().filter(|n| i32::try_from(*n).is_ok()).unwrap_or(0),
        "SequenceID": ext::get_str(&ev, ext::SEQUENCE_ID).unwrap_or_default(),
        "conditions": data.get("conditions").cloned().unwrap_or(Value::Null),
        "resourceStatus": data.get("resourceStatus").cloned().unwrap_or(json!([])),
    }))
}

/// A list body: `{kind, page, size, total, items}`.
pub fn list(kind: &str, page: i64, total: i64, items: Vec<Value>) -> Value {
    json!({ "kind": kind, "page": page, "size": items.len(), "total": total, "items": items })
}

/// The error body: `{kind:"Error", id:"<n>", href:".../errors/<n>", code:"maestro-<n>", reason,
/// operation_id}`; without `operation_id` when `None` (the entries of the catalogue).
pub fn error(code: ErrorCode, reason: &str, operation_id: Option<&str>) -> Value {
    let n = code.code;
    let mut out = json!({
        "kind": "Error",
        "id": n.to_string(),
        "href": format!("{BASE}/errors/{n}"),
        "code": format!("maestro-{n}"),
        "reason": reason,
    });
    if let Some(op) = operation_id {
        out["operation_id"] = json!(op);
    }
    out
}

/// The catalogue entry `code` as an Error with its default reason.
pub fn error_entry(code: ErrorCode) -> Value {
    error(code, code.reason, None)
}

/// The error catalogue as an ErrorList: every code of [`ErrorCode::ALL`], on one page.
pub fn error_list() -> Value {
    let items: Vec<Value> = ErrorCode::ALL.into_iter().map(error_entry).collect();
    let total = i64::try_from(items.len()).unwrap_or(i64::MAX);
    list("ErrorList", 1, total, items)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn consumer_labels_show_only_when_set() {
        let now = chrono::Utc::now();
        let mut c = Consumer {
            id: "u1".into(),
            name: "c1".into(),
            labels: Default::default(),
            created_at: now,
            updated_at: now,
        };
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&consumer(&c)), ["created_at", "href", "id", "kind", "name", "updated_at"]);
        c.labels.insert("env".into(), "dev".into());
        let shown = consumer(&c);
        assert!(keys(&shown).iter().all(|k| CONSUMER_KEYS.contains(&k.as_str())));
        assert_eq!(
            (shown["labels"].clone(), shown["href"].clone()),
            (json!({"env": "dev"}), json!(format!("{BASE}/consumers/u1")))
        );
    }

    #[test]
    fn errors_name_their_code_three_ways() {
        let body = error(ErrorCode::FAILED_TO_PARSE_SEARCH, "bad search", Some("op-1"));
        assert_eq!(
            body,
            json!({"kind": "Error", "id": "23", "href": "/api/maestro/v1/errors/23", "code": "maestro-23",
                   "reason": "bad search", "operation_id": "op-1"})
        );
        let list = error_list();
        assert_eq!((list["kind"].as_str(), list["page"].as_i64()), (Some("ErrorList"), Some(1)));
        assert_eq!((list["size"].as_u64(), list["total"].as_u64()), (Some(13), Some(13)));
        assert_eq!(list["items"][3], error_entry(ErrorCode::NOT_FOUND));
        assert_eq!(list["items"][3]["reason"], json!("Resource not found"));
        assert!(list["items"].as_array().unwrap().iter().all(|e| e.get("operation_id").is_none()));
    }
}
