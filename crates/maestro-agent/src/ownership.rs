//! Ownership of applied resources by the AppliedManifestWork (docs/protocol.md §8.2, §8.3): which
//! resources the delete option lets the work own, how the owner is recorded on an object,
//! and whether a live object is owned.

use maestro_api::payload::{DeleteOption, PropagationPolicy};
use serde_json::{Value, json};

use crate::cluster::{APPLIED_WORK_API_VERSION, APPLIED_WORK_KIND, AppliedWorkRef, ObjectRef};

/// Annotation marking ownership on clusters without the AppliedManifestWork API (value: the
/// AppliedManifestWork name). Used instead of an owner reference, which the Kubernetes garbage
/// collector would otherwise act on.
pub const OWNER_ANNOTATION: &str = "maestro.open-cluster-management.io/applied-manifest-work";

/// The owner of a work's resources.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub(crate) applied_work: AppliedWorkRef,
    /// The AppliedManifestWork UID; `None` ⇒ ownership by [`OWNER_ANNOTATION`].
    pub(crate) uid: Option<String>,
}

impl Owner {
    /// Records ownership on a manifest before it is applied.
    pub(crate) fn mark(&self, manifest: &mut Value) {
        let Some(meta) = manifest.get_mut("metadata").and_then(Value::as_object_mut) else { return };
        match &self.uid {
            Some(uid) => {
                let reference = json!({"apiVersion": APPLIED_WORK_API_VERSION, "kind": APPLIED_WORK_KIND,
                    "name": self.applied_work.name, "uid": uid});
                let refs = meta.entry("ownerReferences").or_insert_with(|| json!([]));
                if !refs.is_array() {
                    *refs = json!([]);
                }
                if let Some(list) = refs.as_array_mut()
                    && !list.iter().any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                {
                    list.push(reference);
                }
            }
            None => {
                let ann = meta.entry("annotations").or_insert_with(|| json!({}));
                if let Some(a) = ann.as_object_mut() {
                    a.insert(OWNER_ANNOTATION.into(), json!(self.applied_work.name));
                }
            }
        }
    }

    /// True when the live object is owned by this AppliedManifestWork.
    pub(crate) fn owns(&self, live: &Value) -> bool {
        let by_ref = self.uid.as_deref().is_some_and(|uid| {
            live.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|l| l.iter().any(|r| r.get("uid").and_then(Value::as_str) == Some(uid)))
        });
        let by_annotation = live
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(OWNER_ANNOTATION))
            .and_then(Value::as_str)
            == Some(self.applied_work.name.as_str());
        by_ref || by_annotation
    }
}

/// True when the delete option lets the work own (and so delete) `object`: `Foreground` or
/// unset ⇒ all; `Orphan` ⇒ none; `SelectivelyOrphan` ⇒ all but the orphaning rules' targets.
pub(crate) fn owned_by_policy(option: Option<&DeleteOption>, object: &ObjectRef) -> bool {
    let Some(option) = option else { return true };
    match option.propagation_policy {
        PropagationPolicy::Foreground => true,
        PropagationPolicy::Orphan => false,
        PropagationPolicy::SelectivelyOrphan => !option.selectively_orphans.as_ref().is_some_and(|s| {
            s.orphaning_rules.iter().any(|r| {
                r.group == object.mapping.group
                    && r.resource == object.mapping.resource
                    && r.name == object.name
                    && r.namespace == object.namespace
            })
        }),
    }
}

/// The live object's `metadata.uid` (`""` when absent).
pub(crate) fn uid_of(live: &Value) -> &str {
    live.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default()
}
