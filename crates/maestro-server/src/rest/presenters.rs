//! JSON shapes of the REST API (maestro-reference.md §2.3, `openapi/openapi.yaml` of Go
//! Maestro): Consumer, ResourceBundle (with its status decoded from the stored status event),
//! lists, and the error body.

use maestro_api::codec::data_as;
use maestro_api::{ext, json};
use maestro_store::{Consumer, Resource};

use serde::Serialize;
use serde_json::{Map, Value, json};

/// The API base path.
pub const BASE: &str = "/api/maestro/v1";

/// A consumer as JSON.
pub fn consumer(c: &Consumer) -> Value {
    json!({
        "id": c.id,
        "kind": "Consumer",
        "href": format!("{BASE}/consumers/{}", c.id),
        "name": c.name,
        "labels": c.labels,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    })
}

/// A resource bundle as JSON: spec parts from the stored spec event, status from the stored
/// status event (`ObservedVersion`, `SequenceID`, `conditions`, `resourceStatus`).
pub fn resource_bundle(r: &Resource) -> Value {
    let spec = json::from_value(r.payload.clone()).ok();
    let data =
        spec.as_ref().and_then(|ev| data_as::<Value>(ev, "ManifestBundle").ok()).unwrap_or(Value::Null);
    let mut metadata: Map<String, Value> =
        spec.as_ref().and_then(|ev| ext::metadata(ev).ok().flatten()).unwrap_or_default();
    metadata.insert("creationTimestamp".into(), json!(r.created_at));
    if let Some(d) = r.deleted_at {
        metadata.insert("deletionTimestamp".into(), json!(d));
    }
    let mut out = json!({
        "id": r.id,
        "kind": "ResourceBundle",
        "href": format!("{BASE}/resource-bundles/{}", r.id),
        "name": r.name,
        "consumer_name": r.consumer_name,
        "source": r.source,
        "version": r.version,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "metadata": metadata,
        "manifests": data.get("manifests").cloned().unwrap_or(json!([])),
        "manifest_configs": data.get("manifestConfigs").cloned().unwrap_or(json!([])),
        "delete_option": data.get("deleteOption").cloned().unwrap_or(json!({})),
    });
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
        "ObservedVersion": ext::resource_version(&ev).unwrap_or(0),
        "SequenceID": ext::get_str(&ev, ext::SEQUENCE_ID).unwrap_or_default(),
        "conditions": data.get("conditions").cloned().unwrap_or(Value::Null),
        "resourceStatus": data.get("resourceStatus").cloned().unwrap_or(json!([])),
    }))
}

/// A list body: `{kind, page, size, total, items}`.
pub fn list(kind: &str, page: i64, total: i64, items: Vec<Value>) -> Value {
    json!({ "kind": kind, "page": page, "size": items.len(), "total": total, "items": items })
}

/// The error body: `{kind:"Error", id, href, code:"maestro-<n>", reason, operation_id}`.
pub fn error(code: u16, reason: &str, operation_id: &str) -> Value {
    json!({
        "kind": "Error",
        "id": code.to_string(),
        "href": format!("{BASE}/errors/{code}"),
        "code": format!("maestro-{code}"),
        "reason": reason,
        "operation_id": operation_id,
    })
}

/// A list body serialized by reference: `{items, kind, page, size, total}` (the keys of
/// [`list`], in the same order).
#[derive(Debug, Serialize)]
pub struct ListJson<T: Serialize> {
    /// The items.
    pub items: Vec<T>,
    /// `ConsumerList` or `ResourceBundleList`.
    pub kind: &'static str,
    /// 1-based page.
    pub page: i64,
    /// Items on this page.
    pub size: usize,
    /// Items in all pages.
    pub total: i64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn list_json_has_the_keys_of_list() {
        let items = vec![json!({"a": 1})];
        let body = ListJson { size: 1, items: items.clone(), kind: "ResourceBundleList", page: 2, total: 7 };
        let want = serde_json::to_string(&list("ResourceBundleList", 2, 7, items)).unwrap();
        assert_eq!(serde_json::to_string(&body).unwrap(), want);
    }
}
