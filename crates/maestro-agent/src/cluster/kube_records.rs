//! AppliedManifestWork records on a real API server (docs/protocol.md §8.3): listed (paged) for
//! a restarted agent, and written with two merge patches, the annotations on the object and
//! OCM's `status.appliedResources` / `status.evictionStartTime` on its status subresource.

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::kube::api_error;
use super::{
    AppliedWorkRecord, AppliedWorkRef, CREATION_TIMESTAMP_ANNOTATION, ObjectRef, RESOURCE_ID_ANNOTATION,
    RESOURCE_VERSION_ANNOTATION, ResourceMapping, STORE_IDENTITY_ANNOTATION,
};
use crate::error::ClusterError;
use crate::work::AppliedResource;

/// Objects per list page.
const PAGE: u32 = 500;

/// The records of `agent_id` (`spec.agentID`), every page of the list.
///
/// # Errors
/// API failures.
pub(super) async fn list(
    api: &Api<DynamicObject>,
    agent_id: &str,
) -> Result<Vec<AppliedWorkRecord>, ClusterError> {
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await.map_err(api_error)?;
        out.extend(page.items.iter().filter_map(parse).filter(|r| r.owner.agent_id == agent_id));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// One record from an AppliedManifestWork; `None` when its spec lacks the names.
fn parse(o: &DynamicObject) -> Option<AppliedWorkRecord> {
    let spec = o.data.get("spec")?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let owner = AppliedWorkRef {
        name: o.metadata.name.clone()?,
        hub_hash: s(spec, "hubHash"),
        agent_id: s(spec, "agentID"),
        work_name: s(spec, "manifestWorkName"),
    };
    let annotations = o.metadata.annotations.clone().unwrap_or_default();
    let status = o.data.get("status").cloned().unwrap_or(Value::Null);
    let applied = status["appliedResources"].as_array().map(|l| l.iter().map(applied_resource).collect());
    let eviction_start = status["evictionStartTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    Some(AppliedWorkRecord {
        resource_id: annotations
            .get(RESOURCE_ID_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| owner.work_name.clone()),
        store_identity: annotations.get(STORE_IDENTITY_ANNOTATION).cloned(),
        generation: annotations.get(RESOURCE_VERSION_ANNOTATION).and_then(|v| v.trim().parse().ok()),
        incarnation: annotations.get(CREATION_TIMESTAMP_ANNOTATION).cloned(),
        owner,
        applied: applied.unwrap_or_default(),
        eviction_start,
    })
}

/// An entry of `status.appliedResources` (OCM's `AppliedManifestResourceMeta`).
fn applied_resource(v: &Value) -> AppliedResource {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let namespace = s("namespace");
    AppliedResource {
        object: ObjectRef {
            mapping: ResourceMapping {
                group: s("group"),
                version: s("version"),
                kind: String::new(),
                resource: s("resource"),
                namespaced: !namespace.is_empty(),
            },
            namespace,
            name: s("name"),
        },
        uid: s("uid"),
    }
}

/// Writes `record`'s annotations, then its status. A missing AppliedManifestWork (404) is
/// not an error.
///
/// # Errors
/// API failures.
pub(super) async fn record(api: &Api<DynamicObject>, record: &AppliedWorkRecord) -> Result<(), ClusterError> {
    let name = &record.owner.name;
    let annotations = json!({"metadata": {"annotations": {
        RESOURCE_ID_ANNOTATION: record.resource_id,
        STORE_IDENTITY_ANNOTATION: record.store_identity,
        RESOURCE_VERSION_ANNOTATION: record.generation.map(|g| g.to_string()),
        CREATION_TIMESTAMP_ANNOTATION: record.incarnation,
    }}});
    let applied: Vec<Value> = record
        .applied
        .iter()
        .map(|r| {
            let m = &r.object.mapping;
            json!({"group": m.group, "version": m.version, "resource": m.resource,
                   "namespace": r.object.namespace, "name": r.object.name, "uid": r.uid})
        })
        .collect();
    let start = record.eviction_start.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let status = json!({"status": {"appliedResources": applied, "evictionStartTime": start}});
    let params = PatchParams::default();
    let absent = |r: Result<DynamicObject, kube::Error>| match r {
        Ok(_) => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(true),
        Err(e) => Err(api_error(e)),
    };
    if absent(api.patch(name, &params, &Patch::Merge(&annotations)).await)? {
        return Ok(());
    }
    absent(api.patch_status(name, &params, &Patch::Merge(&status)).await)?;
    Ok(())
}
