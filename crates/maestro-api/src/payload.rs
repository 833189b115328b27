//! CloudEvent data payloads (docs/protocol.md §4), with the exact JSON field names of sdk-go and the
//! OCM `work/v1` API (including the `executer` spelling and the flat `resourceStatus` list).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Deserializes `null` as the type's default (Go writes `null` for nil slices).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Spec payload: `ManifestBundle` (docs/protocol.md §4.1). Maps 1:1 onto `ManifestWork.spec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ManifestBundle {
    /// Raw Kubernetes objects. Required; always serialized.
    #[serde(default, deserialize_with = "null_default")]
    pub manifests: Vec<Value>,
    /// How applied resources are treated when the work is deleted.
    #[serde(rename = "deleteOption", default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<DeleteOption>,
    /// Per-manifest configuration: update strategy, feedback rules, condition rules.
    #[serde(
        rename = "manifestConfigs",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub manifest_configs: Vec<ManifestConfigOption>,
    /// The executor subject (note the wire spelling `executer`).
    #[serde(rename = "executer", default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Value>,
}

/// `DeleteOption` (docs/protocol.md §4.1).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeleteOption {
    /// `Foreground` (default), `Orphan` or `SelectivelyOrphan`.
    #[serde(rename = "propagationPolicy", default)]
    pub propagation_policy: PropagationPolicy,
    /// Resources to orphan with `SelectivelyOrphan`.
    #[serde(rename = "selectivelyOrphans", default, skip_serializing_if = "Option::is_none")]
    pub selectively_orphans: Option<SelectivelyOrphan>,
    /// Used by hub GC of complete works, not by the agent. Seconds.
    #[serde(rename = "ttlSecondsAfterFinished", default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i64>,
}

/// The delete propagation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PropagationPolicy {
    /// Delete every applied resource (default).
    #[default]
    Foreground,
    /// Leave every applied resource on the cluster.
    Orphan,
    /// Leave only the resources named by the orphaning rules.
    SelectivelyOrphan,
}

/// `selectivelyOrphans`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SelectivelyOrphan {
    /// Resources to orphan.
    #[serde(rename = "orphaningRules", default, deserialize_with = "null_default")]
    pub orphaning_rules: Vec<ResourceIdentifier>,
}

/// A resource identifier: group, resource (plural), name, namespace. Name and namespace accept
/// `*` wildcards in manifest configs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResourceIdentifier {
    /// API group (`""` for the core group).
    #[serde(default)]
    pub group: String,
    /// Lower-case plural resource, e.g. `deployments`.
    #[serde(default)]
    pub resource: String,
    /// Object name (wildcards allowed in configs).
    #[serde(default)]
    pub name: String,
    /// Object namespace (`""` for cluster-scoped; wildcards allowed in configs).
    #[serde(default)]
    pub namespace: String,
}

/// `ManifestConfigOption` (docs/protocol.md §4.1).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ManifestConfigOption {
    /// Which manifest this configures.
    #[serde(rename = "resourceIdentifier")]
    pub resource_identifier: ResourceIdentifier,
    /// Status feedback rules.
    #[serde(
        rename = "feedbackRules",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub feedback_rules: Vec<FeedbackRule>,
    /// Update strategy (default `Update`).
    #[serde(rename = "updateStrategy", default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<UpdateStrategy>,
    /// Condition rules (kept verbatim).
    #[serde(
        rename = "conditionRules",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub condition_rules: Vec<Value>,
    /// `Poll` (default) or `Watch`.
    #[serde(rename = "feedbackScrapeType", default, skip_serializing_if = "Option::is_none")]
    pub feedback_scrape_type: Option<String>,
}

/// `UpdateStrategy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UpdateStrategy {
    /// The strategy type.
    #[serde(rename = "type", default)]
    pub kind: UpdateStrategyType,
    /// Server-side apply settings.
    #[serde(rename = "serverSideApply", default, skip_serializing_if = "Option::is_none")]
    pub server_side_apply: Option<ServerSideApplyConfig>,
}

/// The update strategy type (docs/protocol.md §8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UpdateStrategyType {
    /// Create or update (default).
    #[default]
    Update,
    /// Create if missing, never update.
    CreateOnly,
    /// Kubernetes server-side apply.
    ServerSideApply,
    /// Never write; read for status and feedback only.
    ReadOnly,
}

/// `serverSideApply` settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ServerSideApplyConfig {
    /// Force ownership of conflicting fields.
    #[serde(default)]
    pub force: bool,
    /// Field manager (default `work-agent`).
    #[serde(rename = "fieldManager", default, skip_serializing_if = "String::is_empty")]
    pub field_manager: String,
    /// Fields to ignore (kept verbatim).
    #[serde(
        rename = "ignoreFields",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ignore_fields: Vec<Value>,
}

/// A status feedback rule.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FeedbackRule {
    /// `WellKnownStatus` or `JSONPaths`.
    #[serde(rename = "type")]
    pub kind: FeedbackRuleType,
    /// Paths for `JSONPaths`.
    #[serde(
        rename = "jsonPaths",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub json_paths: Vec<JsonPath>,
}

/// The feedback rule type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FeedbackRuleType {
    /// The per-kind well-known status fields (docs/protocol.md §8.5).
    #[default]
    WellKnownStatus,
    /// Explicit kubectl-style JSON paths.
    #[serde(rename = "JSONPaths")]
    JsonPaths,
}

/// One named JSON path of a `JSONPaths` rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JsonPath {
    /// Feedback value name.
    pub name: String,
    /// Optional API version the object must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// kubectl JSONPath, e.g. `.status.readyReplicas`.
    pub path: String,
}

/// Status payload: `ManifestBundleStatus` (docs/protocol.md §4.3).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ManifestBundleStatus {
    /// The spec, filled by Maestro's source-facing gRPC server.
    #[serde(rename = "manifestBundle", default, skip_serializing_if = "Option::is_none")]
    pub manifest_bundle: Option<ManifestBundle>,
    /// Work-level conditions (Go may send `null`).
    #[serde(default, deserialize_with = "null_default")]
    pub conditions: Vec<Condition>,
    /// Per-manifest status, a FLAT list.
    #[serde(
        rename = "resourceStatus",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_status: Vec<ManifestCondition>,
}

impl ManifestBundleStatus {
    /// The work-level condition of the given type.
    pub fn condition(&self, ty: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == ty)
    }

    /// True when the work-level condition `ty` has status `True`.
    pub fn is_true(&self, ty: &str) -> bool {
        self.condition(ty).is_some_and(|c| c.status == "True")
    }
}

/// A `metav1.Condition`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Condition {
    /// Condition type, e.g. `Applied`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The generation the condition was computed for.
    #[serde(rename = "observedGeneration", default, skip_serializing_if = "is_zero")]
    pub observed_generation: i64,
    /// RFC 3339, second precision.
    #[serde(rename = "lastTransitionTime", default)]
    pub last_transition_time: String,
    /// CamelCase reason.
    #[serde(default)]
    pub reason: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Per-manifest status (`ManifestCondition`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ManifestCondition {
    /// Which manifest.
    #[serde(rename = "resourceMeta")]
    pub resource_meta: ManifestResourceMeta,
    /// Feedback values; serialized as `{}` when empty.
    #[serde(rename = "statusFeedback", default)]
    pub status_feedback: StatusFeedback,
    /// Per-manifest conditions.
    #[serde(default, deserialize_with = "null_default")]
    pub conditions: Vec<Condition>,
}

/// `ManifestResourceMeta`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ManifestResourceMeta {
    /// Index of the manifest in the spec.
    #[serde(default)]
    pub ordinal: i32,
    /// API group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Plural resource.
    #[serde(default)]
    pub resource: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// `StatusFeedbackResult`: `{"values":[…]}`, or `{}` when empty.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StatusFeedback {
    /// The values.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<FeedbackValue>,
}

/// One feedback value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackValue {
    /// Name from the rule.
    pub name: String,
    /// The typed value.
    #[serde(rename = "fieldValue")]
    pub field_value: FieldValue,
}

/// A typed feedback value: `{"type":"Integer","integer":3}` etc. (docs/protocol.md §4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum FieldValue {
    /// An int64.
    Integer {
        /// The value.
        integer: i64,
    },
    /// A string.
    String {
        /// The value.
        string: String,
    },
    /// A boolean.
    Boolean {
        /// The value.
        boolean: bool,
    },
    /// Any other JSON, as a JSON string.
    JsonRaw {
        /// The JSON text.
        #[serde(rename = "jsonRaw")]
        json_raw: String,
    },
}

impl std::fmt::Display for FieldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::Integer { integer } => write!(f, "{integer}"),
            FieldValue::String { string } => f.write_str(string),
            FieldValue::Boolean { boolean } => write!(f, "{boolean}"),
            FieldValue::JsonRaw { json_raw } => f.write_str(json_raw),
        }
    }
}

/// Spec resync request payload: `{"resourceVersions":[…]}` (docs/protocol.md §4.4).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResourceVersionList {
    /// The versions the agent holds (always an array, `[]` when empty).
    #[serde(rename = "resourceVersions", default, deserialize_with = "null_default")]
    pub resource_versions: Vec<ResourceVersion>,
}

/// One `{resourceID, resourceVersion}` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceVersion {
    /// Resource id.
    #[serde(rename = "resourceID")]
    pub resource_id: String,
    /// Version (a JSON number).
    #[serde(rename = "resourceVersion")]
    pub resource_version: i64,
}

/// Status resync request payload: `{"statusHashes":[…]}` (docs/protocol.md §4.4).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusHashList {
    /// The hashes the source holds (always an array).
    #[serde(rename = "statusHashes", default, deserialize_with = "null_default")]
    pub status_hashes: Vec<StatusHash>,
}

/// One `{resourceID, statusHash}` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusHash {
    /// Resource id.
    #[serde(rename = "resourceID")]
    pub resource_id: String,
    /// Lower-case hex SHA-256.
    #[serde(rename = "statusHash")]
    pub status_hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bundle_uses_wire_field_names() {
        let v = json!({
            "manifests": [{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"default"}}],
            "deleteOption": {"propagationPolicy":"SelectivelyOrphan","selectivelyOrphans":{"orphaningRules":[{"group":"","resource":"configmaps","name":"a","namespace":"default"}]}},
            "manifestConfigs": [{
                "resourceIdentifier":{"group":"apps","resource":"deployments","name":"web","namespace":"default"},
                "feedbackRules":[{"type":"JSONPaths","jsonPaths":[{"name":"status","path":".status"}]}],
                "updateStrategy":{"type":"ServerSideApply","serverSideApply":{"force":true,"fieldManager":"maestro-agent"}}
            }],
            "executer": {"subject":{"type":"ServiceAccount","serviceAccount":{"namespace":"ns","name":"sa"}}}
        });
        let b: ManifestBundle = serde_json::from_value(v.clone()).expect("decode");
        assert_eq!(
            b.delete_option.as_ref().map(|d| d.propagation_policy),
            Some(PropagationPolicy::SelectivelyOrphan)
        );
        let cfg = &b.manifest_configs[0];
        assert_eq!(cfg.update_strategy.as_ref().map(|u| u.kind), Some(UpdateStrategyType::ServerSideApply));
        assert_eq!(cfg.feedback_rules[0].kind, FeedbackRuleType::JsonPaths);
        assert!(b.executor.is_some());
        assert_eq!(serde_json::to_value(&b).expect("encode"), v);
    }

    #[test]
    fn status_is_flat_with_empty_feedback_object() {
        let s = ManifestBundleStatus {
            manifest_bundle: None,
            conditions: vec![],
            resource_status: vec![ManifestCondition::default()],
        };
        let v = serde_json::to_value(&s).expect("encode");
        assert_eq!(v["resourceStatus"][0]["statusFeedback"], json!({}));
        assert!(v["resourceStatus"].is_array());
        let back: ManifestBundleStatus =
            serde_json::from_value(json!({"conditions": null, "resourceStatus":[{"resourceMeta":{"ordinal":0},"statusFeedback":{},"conditions":null}]}))
                .expect("null conditions accepted");
        assert!(back.conditions.is_empty());
    }

    #[test]
    fn feedback_values_are_typed() {
        let v = json!([
            {"name":"ReadyReplicas","fieldValue":{"type":"Integer","integer":2}},
            {"name":"phase","fieldValue":{"type":"String","string":"Running"}},
            {"name":"ok","fieldValue":{"type":"Boolean","boolean":true}},
            {"name":"status","fieldValue":{"type":"JsonRaw","jsonRaw":"{\"a\":1}"}}
        ]);
        let vals: Vec<FeedbackValue> = serde_json::from_value(v.clone()).expect("decode");
        assert_eq!(vals[0].field_value, FieldValue::Integer { integer: 2 });
        assert_eq!(serde_json::to_value(&vals).expect("encode"), v);
    }

    #[test]
    fn resync_payloads_use_numbers_and_arrays() {
        let l = ResourceVersionList::default();
        assert_eq!(serde_json::to_string(&l).expect("encode"), r#"{"resourceVersions":[]}"#);
        let l: ResourceVersionList =
            serde_json::from_str(r#"{"resourceVersions":[{"resourceID":"a","resourceVersion":3}]}"#)
                .expect("decode");
        assert_eq!(l.resource_versions[0].resource_version, 3);
        let h = StatusHashList {
            status_hashes: vec![StatusHash { resource_id: "a".into(), status_hash: "ff".into() }],
        };
        assert_eq!(
            serde_json::to_string(&h).expect("encode"),
            r#"{"statusHashes":[{"resourceID":"a","statusHash":"ff"}]}"#
        );
    }
}
