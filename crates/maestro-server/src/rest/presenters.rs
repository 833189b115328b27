//! JSON shapes of the REST API (maestro-reference.md §2.3, `openapi/openapi.yaml` of Go
//! Maestro): Consumer, ResourceBundle (with its status decoded from the stored status event),
//! lists, and the error body.

use maestro_api::codec::data_as;
use maestro_api::{ext, json};
use maestro_store::{Consumer, Resource};
use std::borrow::Cow;

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

/// A resource bundle serialized by reference from the stored row: the same JSON as
/// [`resource_bundle`] (same keys, same order), without building a JSON tree per bundle, for
/// lists (a 6,000-bundle list spent most of its time cloning and converting trees; see
/// docs/benchmarks.md). Rows whose stored events are not in the usual structured form fall back
/// to [`resource_bundle`].
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BundleJson<'a> {
    /// Read in place.
    Borrowed(Box<BorrowedBundle<'a>>),
    /// Built by [`resource_bundle`].
    Built(Value),
}

/// The fields of [`BundleJson::Borrowed`], declared in the sorted key order of
/// [`resource_bundle`]'s JSON map.
#[derive(Debug, Serialize)]
pub struct BorrowedBundle<'a> {
    consumer_name: &'a str,
    created_at: chrono::DateTime<chrono::Utc>,
    delete_option: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted_at: Option<chrono::DateTime<chrono::Utc>>,
    href: String,
    id: &'a str,
    kind: &'static str,
    manifest_configs: Cow<'a, Value>,
    manifests: Cow<'a, Value>,
    metadata: Map<String, Value>,
    name: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<BorrowedStatus<'a>>,
    updated_at: chrono::DateTime<chrono::Utc>,
    version: i64,
}

/// The `status` of a [`BorrowedBundle`] (keys in sorted order).
#[derive(Debug, Serialize)]
#[allow(non_snake_case)]
pub struct BorrowedStatus<'a> {
    ObservedVersion: i64,
    SequenceID: &'a str,
    conditions: Cow<'a, Value>,
    resourceStatus: Cow<'a, Value>,
}

/// `r` as list JSON (see [`BundleJson`]).
pub fn resource_bundle_json(r: &Resource) -> BundleJson<'_> {
    match borrowed_bundle(r) {
        Some(b) => BundleJson::Borrowed(Box::new(b)),
        None => BundleJson::Built(resource_bundle(r)),
    }
}

fn field<'a>(data: &'a Map<String, Value>, key: &str, default: Value) -> Cow<'a, Value> {
    data.get(key).map_or(Cow::Owned(default), Cow::Borrowed)
}

fn borrowed_bundle(r: &Resource) -> Option<BorrowedBundle<'_>> {
    let Value::Object(data) = r.payload.get("data")? else { return None };
    let mut metadata = match r.payload.get(ext::METADATA) {
        None => Map::new(),
        Some(Value::String(raw)) if raw.trim().is_empty() => Map::new(),
        Some(Value::String(raw)) => match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        },
        Some(_) => return None,
    };
    metadata.insert("creationTimestamp".into(), json!(r.created_at));
    if let Some(d) = r.deleted_at {
        metadata.insert("deletionTimestamp".into(), json!(d));
    }
    let status = match r.status.as_ref() {
        None => None,
        Some(stored) => Some(borrowed_status(stored)?),
    };
    Some(BorrowedBundle {
        consumer_name: &r.consumer_name,
        created_at: r.created_at,
        delete_option: field(data, "deleteOption", json!({})),
        deleted_at: r.deleted_at,
        href: format!("{BASE}/resource-bundles/{}", r.id),
        id: &r.id,
        kind: "ResourceBundle",
        manifest_configs: field(data, "manifestConfigs", json!([])),
        manifests: field(data, "manifests", json!([])),
        metadata,
        name: &r.name,
        source: &r.source,
        status,
        updated_at: r.updated_at,
        version: r.version,
    })
}

fn borrowed_status(stored: &Value) -> Option<BorrowedStatus<'_>> {
    let Value::Object(data) = stored.get("data")? else { return None };
    let version = match stored.get(ext::RESOURCE_VERSION) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let sequence_id = match stored.get(ext::SEQUENCE_ID) {
        None => "",
        Some(Value::String(s)) => s,
        Some(_) => return None,
    };
    Some(BorrowedStatus {
        ObservedVersion: version.filter(|n| i32::try_from(*n).is_ok()).unwrap_or(0),
        SequenceID: sequence_id,
        conditions: field(data, "conditions", Value::Null),
        resourceStatus: field(data, "resourceStatus", json!([])),
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
    use maestro_api::codec::{SpecEventBuilder, StatusEventBuilder};
    use maestro_api::payload::{ManifestBundle, ManifestBundleStatus};
    use maestro_api::types::Action;

    use super::*;

    fn stored(deleted: bool, with_status: bool) -> Resource {
        let mut meta = Map::new();
        meta.insert("name".into(), json!("web"));
        meta.insert("labels".into(), json!({"app": "web"}));
        let bundle = ManifestBundle {
            manifests: vec![json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})],
            ..Default::default()
        };
        let spec =
            SpecEventBuilder::new("maestro", "r1", 3, "c1").metadata(meta.clone()).bundle(&bundle).build();
        let status: ManifestBundleStatus = serde_json::from_value(json!({
            "conditions": [{"type": "Applied", "status": "True", "reason": "Done", "message": "ok",
                            "lastTransitionTime": "2024-01-01T00:00:00Z"}],
            "resourceStatus": [{"resourceMeta": {"kind": "ConfigMap", "name": "c"}, "conditions": []}]
        }))
        .unwrap();
        let status_event = StatusEventBuilder {
            source: "c1-work-agent",
            resource_id: "r1",
            resource_version: 3,
            cluster_name: "c1",
            original_source: "maestro",
            sequence_id: "1834773391719010304",
            status_hash: "abc",
            metadata: Some(&meta),
            action: Action::Update,
        }
        .build(&status);
        let now = chrono::Utc::now();
        Resource {
            id: "r1".into(),
            name: "web".into(),
            consumer_name: "c1".into(),
            source: "maestro".into(),
            version: 3,
            payload: json::to_value(&spec),
            status: with_status.then(|| json::to_value(&status_event)),
            status_hash: Some("abc".into()),
            sequence_id: Some("1834773391719010304".into()),
            deleted_at: deleted.then_some(now),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn list_json_is_byte_for_byte_the_built_json() {
        for (deleted, with_status) in [(false, true), (true, false), (false, false), (true, true)] {
            let r = stored(deleted, with_status);
            let fast = resource_bundle_json(&r);
            assert!(matches!(fast, BundleJson::Borrowed(_)), "the usual form is read in place");
            let built = serde_json::to_string(&resource_bundle(&r)).unwrap();
            assert_eq!(
                serde_json::to_string(&fast).unwrap(),
                built,
                "deleted={deleted} status={with_status}"
            );
        }
    }

    #[test]
    fn unusual_stored_events_fall_back_to_the_built_json() {
        let mut r = stored(false, true);
        r.payload["metadata"] = json!(42);
        let fast = resource_bundle_json(&r);
        assert!(matches!(fast, BundleJson::Built(_)));
        assert_eq!(serde_json::to_value(&fast).unwrap(), resource_bundle(&r));
    }

    #[test]
    fn list_json_has_the_keys_of_list() {
        let items = vec![json!({"a": 1})];
        let body = ListJson { size: 1, items: items.clone(), kind: "ResourceBundleList", page: 2, total: 7 };
        let want = serde_json::to_string(&list("ResourceBundleList", 2, 7, items)).unwrap();
        assert_eq!(serde_json::to_string(&body).unwrap(), want);
    }
}
