//! REST object shapes (docs/protocol.md §12.3) and condition helpers.
//!
//! Deserialization is lenient: unknown fields are kept (in `extra`) so JSON/YAML output shows
//! everything the server sent, `null` lists read as empty, and unparsable timestamps read as
//! absent rather than failing the whole object.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use maestro_api::payload::{Condition, FieldValue, ManifestCondition};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let raw = Option::<Value>::deserialize(d)?;
    Ok(raw
        .as_ref()
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc)))
}

/// A paged list: `{"kind":"…List","page":1,"size":N,"total":T,"items":[…]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct List<T> {
    /// `ResourceBundleList` or `ConsumerList`.
    #[serde(default)]
    pub kind: String,
    /// The page number (1-based).
    #[serde(default)]
    pub page: u32,
    /// The number of items in this page.
    #[serde(default)]
    pub size: u32,
    /// The number of matching items over all pages.
    #[serde(default)]
    pub total: u64,
    /// The items.
    #[serde(default, deserialize_with = "null_default")]
    pub items: Vec<T>,
}

/// A resource bundle (one ManifestWork) as the REST API shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceBundle {
    /// The resource id (UUID).
    pub id: String,
    /// `ResourceBundle`.
    #[serde(default)]
    pub kind: String,
    /// `/api/maestro/v1/resource-bundles/{id}`.
    #[serde(default)]
    pub href: String,
    /// The work name.
    #[serde(default)]
    pub name: String,
    /// The consumer (cluster) name.
    #[serde(default)]
    pub consumer_name: String,
    /// Spec version: 1 on create, +1 on each spec change.
    #[serde(default)]
    pub version: i64,
    /// Creation time.
    #[serde(default, deserialize_with = "lenient_time", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Last update time.
    #[serde(default, deserialize_with = "lenient_time", skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Set once deletion was requested; the bundle disappears when the agent confirms.
    #[serde(default, deserialize_with = "lenient_time", skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Work metadata (ObjectMeta: labels, annotations…).
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: Map<String, Value>,
    /// The Kubernetes manifests.
    #[serde(default, deserialize_with = "null_default")]
    pub manifests: Vec<Value>,
    /// Per-manifest configuration (kept verbatim).
    #[serde(default, deserialize_with = "null_default")]
    pub manifest_configs: Vec<Value>,
    /// Delete option (kept verbatim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<Value>,
    /// The status last reported by the agent; `None` until it reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BundleStatus>,
    /// Any other fields the server sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A resource bundle status (Go field names `ObservedVersion`, `SequenceID`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BundleStatus {
    /// The spec version the agent reported this status for.
    #[serde(rename = "ObservedVersion", default)]
    pub observed_version: i64,
    /// The snowflake sequence id of the status event.
    #[serde(rename = "SequenceID", default)]
    pub sequence_id: String,
    /// Work-level conditions (Applied, Available, Progressing, Degraded, Deleted…).
    #[serde(default, deserialize_with = "null_default")]
    pub conditions: Vec<Condition>,
    /// Per-manifest status.
    #[serde(rename = "resourceStatus", default, deserialize_with = "null_default")]
    pub resource_status: Vec<ManifestCondition>,
    /// Any other fields (e.g. `manifestBundle`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One feedback value flattened for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedbackRow {
    /// `Kind namespace/name` of the manifest.
    pub resource: String,
    /// The feedback value name.
    pub name: String,
    /// The value as text (JSON text for `JsonRaw`).
    pub value: String,
}

impl ResourceBundle {
    /// The work-level condition `ty`, if reported.
    pub fn condition(&self, ty: &str) -> Option<&Condition> {
        self.status.as_ref()?.conditions.iter().find(|c| c.kind == ty)
    }

    /// True when condition `ty` is `True` (at any version).
    pub fn is_true(&self, ty: &str) -> bool {
        self.condition(ty).is_some_and(|c| c.status == "True")
    }

    /// True when the status was reported for the current spec version.
    pub fn status_is_current(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.observed_version == self.version)
    }

    /// True when condition `ty` is `True` for the current spec version: the status's observed
    /// version equals [`ResourceBundle::version`] and, if the condition carries an
    /// `observedGeneration`, that equals it too.
    pub fn is_true_at_current_version(&self, ty: &str) -> bool {
        self.status_is_current()
            && self.condition(ty).is_some_and(|c| {
                c.status == "True" && (c.observed_generation == 0 || c.observed_generation == self.version)
            })
    }

    /// True once deletion was requested.
    pub fn is_deleting(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// The work labels from `metadata.labels`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        string_map(self.metadata.get("labels"))
    }

    /// Every feedback value of every manifest, in manifest order.
    pub fn feedback(&self) -> Vec<FeedbackRow> {
        let Some(status) = &self.status else { return Vec::new() };
        let mut rows = Vec::new();
        for mc in &status.resource_status {
            for v in &mc.status_feedback.values {
                rows.push(FeedbackRow {
                    resource: describe_manifest(mc),
                    name: v.name.clone(),
                    value: field_value_text(&v.field_value),
                });
            }
        }
        rows
    }

    /// A one-line summary of the work-level conditions, e.g.
    /// `Applied=True Available=False (Reason: message)`; `no status reported` when none.
    pub fn condition_summary(&self) -> String {
        let Some(status) = &self.status else { return "no status reported".into() };
        if status.conditions.is_empty() {
            return format!("no conditions (observed version {})", status.observed_version);
        }
        let parts: Vec<String> = status.conditions.iter().map(condition_text).collect();
        format!("{} (observed version {})", parts.join(", "), status.observed_version)
    }
}

/// `Type=Status`, plus `[Reason: message]` when the condition is not `True`.
pub fn condition_text(c: &Condition) -> String {
    if c.status == "True" || (c.reason.is_empty() && c.message.is_empty()) {
        format!("{}={}", c.kind, c.status)
    } else {
        format!("{}={} [{}: {}]", c.kind, c.status, c.reason, c.message)
    }
}

/// `Kind namespace/name` (or `Kind name` when cluster-scoped) of a manifest status.
pub fn describe_manifest(mc: &ManifestCondition) -> String {
    let m = &mc.resource_meta;
    if m.namespace.is_empty() {
        format!("{} {}", m.kind, m.name)
    } else {
        format!("{} {}/{}", m.kind, m.namespace, m.name)
    }
}

/// A feedback value as text.
pub fn field_value_text(v: &FieldValue) -> String {
    v.to_string()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect()
        })
        .unwrap_or_default()
}

/// A consumer (a registered cluster).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Consumer {
    /// The consumer id (UUID).
    #[serde(default)]
    pub id: String,
    /// `Consumer`.
    #[serde(default)]
    pub kind: String,
    /// `/api/maestro/v1/consumers/{id}`.
    #[serde(default)]
    pub href: String,
    /// The unique consumer name (the cluster name agents use).
    #[serde(default)]
    pub name: String,
    /// Labels.
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    /// Creation time.
    #[serde(default, deserialize_with = "lenient_time", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Last update time.
    #[serde(default, deserialize_with = "lenient_time", skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// The Maestro error body:
/// `{"kind":"Error","id":"7","href":…,"code":"maestro-7","reason":"…","operation_id":…}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `Error`.
    #[serde(default)]
    pub kind: String,
    /// The numeric code as a string, e.g. `7`.
    #[serde(default)]
    pub id: String,
    /// `/api/maestro/v1/errors/{id}`.
    #[serde(default)]
    pub href: String,
    /// `maestro-<id>`.
    #[serde(default)]
    pub code: String,
    /// Human-readable reason.
    #[serde(default)]
    pub reason: String,
    /// The request's operation id, for log correlation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle() -> ResourceBundle {
        serde_json::from_value(json!({
            "id": "rid", "kind": "ResourceBundle", "href": "/x", "name": "web", "consumer_name": "c1",
            "version": 2, "created_at": "2024-03-01T10:00:00Z", "updated_at": "garbage",
            "metadata": {"labels": {"app": "web"}}, "manifests": [{"kind": "ConfigMap"}],
            "manifest_configs": null, "delete_option": {"propagationPolicy": "Foreground"},
            "extra_field": 1,
            "status": {"ObservedVersion": 2, "SequenceID": "1", "conditions": [
                {"type": "Applied", "status": "True", "lastTransitionTime": "2024-03-01T10:00:00Z", "reason": "AppliedManifestWorkComplete", "message": "ok"},
                {"type": "Available", "status": "False", "observedGeneration": 2, "lastTransitionTime": "2024-03-01T10:00:00Z", "reason": "NotReady", "message": "waiting"}],
              "resourceStatus": [{"resourceMeta": {"ordinal": 0, "version": "v1", "kind": "Deployment", "resource": "deployments", "name": "web", "namespace": "default"},
                "statusFeedback": {"values": [{"name": "replicas", "fieldValue": {"type": "Integer", "integer": 3}},
                                              {"name": "raw", "fieldValue": {"type": "JsonRaw", "jsonRaw": "{\"a\":1}"}}]},
                "conditions": null}]}
        }))
        .expect("bundle")
    }

    #[test]
    fn decodes_the_rest_shape_leniently() {
        let b = bundle();
        assert_eq!((b.version, b.name.as_str()), (2, "web"));
        assert!(b.created_at.is_some() && b.updated_at.is_none());
        assert_eq!(b.extra.get("extra_field"), Some(&json!(1)));
        assert_eq!(b.labels().get("app").map(String::as_str), Some("web"));
        let round = serde_json::to_value(&b).expect("ser");
        assert_eq!(round["status"]["ObservedVersion"], json!(2));
    }

    #[test]
    fn condition_helpers() {
        let mut b = bundle();
        assert!(b.is_true("Applied") && !b.is_true("Available") && !b.is_true("Missing"));
        assert!(b.is_true_at_current_version("Applied"));
        b.version = 3;
        assert!(!b.is_true_at_current_version("Applied"));
        assert!(b.condition_summary().starts_with("Applied=True, Available=False [NotReady: waiting]"));
        assert_eq!(ResourceBundle::default().condition_summary(), "no status reported");
    }

    #[test]
    fn feedback_is_flattened() {
        let rows = bundle().feedback();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].resource, "Deployment default/web");
        assert_eq!((rows[0].name.as_str(), rows[0].value.as_str()), ("replicas", "3"));
        assert_eq!(rows[1].value, "{\"a\":1}");
    }

    #[test]
    fn error_body_and_lists() {
        let e: ErrorBody = serde_json::from_value(
            json!({"kind":"Error","id":"7","href":"/e/7","code":"maestro-7","reason":"nope","operation_id":"op"}),
        )
        .expect("error");
        assert_eq!((e.code.as_str(), e.reason.as_str()), ("maestro-7", "nope"));
        let l: List<Consumer> =
            serde_json::from_value(json!({"kind":"ConsumerList","page":1,"size":0,"total":0,"items":null}))
                .expect("list");
        assert!(l.items.is_empty());
    }
}

/// An event the server set aside for good, with why (`GET /api/maestro/v1/dead-letters`;
/// docs/security.md, "Dead letters").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The dead letter's id (a number, as a string).
    #[serde(default)]
    pub id: String,
    /// When it was set aside.
    #[serde(default, deserialize_with = "lenient_time", skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    /// `status`, `spec_resync`, `agent` (events from agents) or `spec_publish` (a spec event
    /// the broker refused).
    #[serde(default)]
    pub origin: String,
    /// The broker backend.
    #[serde(default)]
    pub broker: String,
    /// The consumer, when known.
    #[serde(default)]
    pub consumer_name: Option<String>,
    /// The resource id, when known.
    #[serde(default)]
    pub resource_id: Option<String>,
    /// The CloudEvent id.
    #[serde(default)]
    pub event_id: Option<String>,
    /// The CloudEvent type.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Why it was set aside.
    #[serde(default)]
    pub reason: String,
    /// The CloudEvent as JSON; `null` when it was over 64 KiB.
    #[serde(default)]
    pub event: Option<serde_json::Value>,
    /// The event's size (bytes of JSON).
    #[serde(default)]
    pub event_bytes: u64,
}
