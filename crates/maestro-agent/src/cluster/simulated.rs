//! The simulated cluster (docs/architecture.md §8): an in-process store of Kubernetes objects that
//! behaves enough like an API server for the agent (UIDs, resourceVersion, generation, owner
//! references, server-side apply conflicts, UID delete preconditions) and fabricates the
//! status a healthy cluster would report: Deployments become ready, Jobs complete, Pods run.
//! A product feature (demo, fleet simulation), not a test double.
//!
//! It can watch (`feedbackScrapeType: Watch`, docs/protocol.md §8.5): every write, delete,
//! [`SimulatedCluster::insert`] and [`SimulatedCluster::modify`] (how a status change is
//! simulated) that changes an object is delivered at once to the contexts watching its kind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::access::{self, AccessRule};
use super::kinds::{fallback_mapping, known_mapping, split_api_version};
use super::watching::WatcherSet;
use super::{
    AccessReview, AppliedWorkRecord, AppliedWorkRef, ApplyMode, Cluster, ObjectRef, ResourceMapping,
    WatchContext, WatchKey,
};
use crate::error::ClusterError;

/// The storage key of a simulated object: API group, kind, namespace (`""` when
/// cluster-scoped) and name. The version is not part of the key: one object is served in every
/// version of its group, as on a real cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ObjectKey {
    /// API group (`""` for core).
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace, `""` for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `apiVersion`/`kind`/`namespace`/`name`.
    pub fn new(api_version: &str, kind: &str, namespace: &str, name: &str) -> Self {
        ObjectKey {
            group: split_api_version(api_version).0.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    pub(super) fn of(object: &ObjectRef) -> Self {
        ObjectKey {
            group: object.mapping.group.clone(),
            kind: object.mapping.kind.clone(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
        }
    }
}

/// An in-process simulated cluster. Cheap to share behind an `Arc`; all methods are
/// synchronous under one short-lived lock.
#[derive(Debug, Default)]
pub struct SimulatedCluster {
    objects: Mutex<BTreeMap<ObjectKey, Value>>,
    revision: AtomicU64,
    /// Authorization: `None` allows everything; otherwise only what a rule allows
    /// ([`SimulatedCluster::restrict_access`]).
    access: Mutex<Option<Vec<AccessRule>>>,
    /// AppliedManifestWork records by name (docs/protocol.md §8.3).
    applied_works: Mutex<BTreeMap<String, AppliedWorkRecord>>,
    /// The kinds watched, one entry per kind and agent (docs/protocol.md §8.5).
    watchers: WatcherSet,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl SimulatedCluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, access reviews and impersonated writes are allowed only as `rules` say
    /// (a cluster with RBAC); before, everything is allowed. The agent's own writes are never
    /// restricted (it runs as cluster admin).
    pub fn restrict_access(&self, rules: Vec<AccessRule>) {
        *self.access.lock().unwrap_or_else(|p| p.into_inner()) = Some(rules);
    }

    fn access_rules(&self) -> Option<Vec<AccessRule>> {
        self.access.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every AppliedManifestWork record, ordered by name.
    pub fn applied_works(&self) -> Vec<AppliedWorkRecord> {
        self.records().values().cloned().collect()
    }

    fn records(&self) -> MutexGuard<'_, BTreeMap<String, AppliedWorkRecord>> {
        self.applied_works.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<ObjectKey, Value>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_revision(&self) -> String {
        (self.revision.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }

    /// The number of watchers running: one per kind (group and resource) and watching agent,
    /// however many works or objects use the kind.
    pub fn watcher_count(&self) -> usize {
        self.watchers.count()
    }

    /// Tells the watchers of `object`'s kind that it changed.
    fn changed(&self, object: &ObjectRef) {
        self.watchers.deliver(&WatchKey::from(object));
    }

    /// A snapshot of every stored object, ordered by group, kind, namespace and name.
    pub fn objects(&self) -> Vec<Value> {
        self.lock().values().cloned().collect()
    }

    /// The number of stored objects.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no object is stored.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// One stored object, by `apiVersion`, `kind`, namespace (`""` for cluster-scoped) and name.
    pub fn object(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock().get(&ObjectKey::new(api_version, kind, namespace, name)).cloned()
    }

    /// Stores an object as if someone other than the agent created it (replacing any object
    /// with the same key) and returns it with uid, resourceVersion and fabricated status.
    ///
    /// # Errors
    /// [`ClusterError::InvalidManifest`] without `apiVersion`, `kind` or `metadata.name`.
    pub fn insert(&self, object: Value) -> Result<Value, ClusterError> {
        let (api_version, kind, name, namespace) = identity(&object)?;
        let mapping = self.mapping_for(&api_version, &kind);
        let ns = if mapping.namespaced { namespace } else { String::new() };
        let oref = ObjectRef { mapping, namespace: ns, name };
        let created = self.create_object(&oref, object);
        self.lock().insert(ObjectKey::of(&oref), created.clone());
        self.changed(&oref);
        Ok(created)
    }

    /// Puts `object` back as it was stored (uid, resourceVersion and status kept), for a
    /// cluster replayed from its journal ([`super::JournaledCluster`]); later writes get
    /// higher resourceVersions. Watchers are not told.
    ///
    /// # Errors
    /// [`ClusterError::InvalidManifest`] without `apiVersion`, `kind` or `metadata.name`.
    pub(super) fn restore_object(&self, object: Value) -> Result<(), ClusterError> {
        let (api_version, kind, name, namespace) = identity(&object)?;
        let revision = str_at(&object, "/metadata/resourceVersion").parse::<u64>().unwrap_or(0);
        self.revision.fetch_max(revision, Ordering::Relaxed);
        self.lock().insert(ObjectKey::new(&api_version, &kind, &namespace, &name), object);
        Ok(())
    }

    /// Removes the object stored under `key` (a journal's deletion); no watcher is told.
    pub(super) fn forget_object(&self, key: &ObjectKey) {
        self.lock().remove(key);
    }

    /// Puts an AppliedManifestWork record back (a journal's record).
    pub(super) fn restore_record(&self, record: AppliedWorkRecord) {
        self.records().insert(record.owner.name.clone(), record);
    }

    /// Removes the AppliedManifestWork record `name` (a journal's removal).
    pub(super) fn forget_record(&self, name: &str) {
        self.records().remove(name);
    }

    /// The AppliedManifestWork record `name`, if stored.
    pub(super) fn record(&self, name: &str) -> Option<AppliedWorkRecord> {
        self.records().get(name).cloned()
    }

    /// Changes a stored object in place (e.g. to simulate drift, an outage of a workload or a
    /// status change); returns false when there is no such object. The resourceVersion is
    /// bumped and the watchers of its kind are told.
    pub fn modify(&self, key: &ObjectKey, f: impl FnOnce(&mut Value)) -> bool {
        let rv = self.next_revision();
        let mut objects = self.lock();
        let Some(obj) = objects.get_mut(key) else { return false };
        f(obj);
        set_meta(obj, "resourceVersion", json!(rv));
        let (api_version, kind) = (str_at(obj, "/apiVersion"), str_at(obj, "/kind"));
        drop(objects);
        let mapping = self.mapping_for(&api_version, &kind);
        self.changed(&ObjectRef { mapping, namespace: key.namespace.clone(), name: key.name.clone() });
        true
    }

    fn mapping_for(&self, api_version: &str, kind: &str) -> ResourceMapping {
        known_mapping(api_version, kind)
            .or_else(|| self.crd_mapping(api_version, kind))
            .unwrap_or_else(|| fallback_mapping(api_version, kind))
    }

    /// A mapping from a stored CustomResourceDefinition (`spec.group`, `spec.names`, `spec.scope`).
    fn crd_mapping(&self, api_version: &str, kind: &str) -> Option<ResourceMapping> {
        let (group, version) = split_api_version(api_version);
        let objects = self.lock();
        objects.iter().filter(|(k, _)| k.kind == "CustomResourceDefinition").find_map(|(_, crd)| {
            let spec = crd.get("spec")?;
            let names = spec.get("names")?;
            (spec.get("group")?.as_str()? == group && names.get("kind")?.as_str()? == kind).then(|| {
                ResourceMapping {
                    group: group.to_owned(),
                    version: version.to_owned(),
                    kind: kind.to_owned(),
                    resource: names.get("plural").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
                }
            })
        })
    }

    fn create_object(&self, object: &ObjectRef, mut manifest: Value) -> Value {
        if let Some(map) = manifest.as_object_mut() {
            map.remove("status");
            map.insert("apiVersion".into(), json!(object.mapping.api_version()));
            map.insert("kind".into(), json!(object.mapping.kind));
        }
        let meta = meta_mut(&mut manifest);
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("resourceVersion".into(), json!(self.next_revision()));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("name".into(), json!(object.name));
        if object.namespace.is_empty() {
            meta.remove("namespace");
        } else {
            meta.insert("namespace".into(), json!(object.namespace));
        }
        for k in ["deletionTimestamp", "deletionGracePeriodSeconds", "generateName"] {
            meta.remove(k);
        }
        fabricate_status(&mut manifest);
        manifest
    }

    fn write(&self, object: &ObjectRef, manifest: Value, mode: &ApplyMode) -> Result<Value, ClusterError> {
        let key = ObjectKey::of(object);
        let existing = self.lock().get(&key).cloned();
        let before = existing.as_ref().map(|live| str_at(live, "/metadata/resourceVersion"));
        let result = match (existing, mode) {
            (None, ApplyMode::ServerSideApply { field_manager, .. }) => {
                let mut created = self.create_object(object, manifest);
                record_manager(&mut created, field_manager);
                created
            }
            (None, _) => self.create_object(object, manifest),
            (Some(live), ApplyMode::Update) => self.finish_write(&live, merge_update(&live, manifest)),
            (Some(live), ApplyMode::CreateOnly) => {
                let mut next = live.clone();
                merge_owner_refs(meta_mut(&mut next), manifest.get("metadata"));
                self.finish_write(&live, next)
            }
            (Some(live), ApplyMode::ServerSideApply { field_manager, force }) => {
                let next = server_side_apply(object, &live, manifest, field_manager, *force)?;
                self.finish_write(&live, next)
            }
        };
        let changed = before.is_none_or(|rv| rv != str_at(&result, "/metadata/resourceVersion"));
        self.lock().insert(key, result.clone());
        if changed {
            self.changed(object);
        }
        Ok(result)
    }

    /// Bumps resourceVersion (and generation when anything outside metadata/status changed)
    /// when `next` differs from `live`, and refreshes the fabricated status.
    fn finish_write(&self, live: &Value, mut next: Value) -> Value {
        if comparable(live) == comparable(&next) {
            return live.clone();
        }
        let spec_changed = without(live, &["metadata", "status"]) != without(&next, &["metadata", "status"]);
        let generation = live.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
        let meta = meta_mut(&mut next);
        meta.insert("resourceVersion".into(), json!(self.next_revision()));
        meta.insert("generation".into(), json!(if spec_changed { generation + 1 } else { generation }));
        fabricate_status(&mut next);
        next
    }
}

#[async_trait]
impl Cluster for SimulatedCluster {
    async fn resolve(&self, api_version: &str, kind: &str) -> Result<ResourceMapping, ClusterError> {
        if api_version.is_empty() || kind.is_empty() {
            return Err(ClusterError::UnknownKind { api_version: api_version.into(), kind: kind.into() });
        }
        Ok(self.mapping_for(api_version, kind))
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, ClusterError> {
        Ok(self.lock().get(&ObjectKey::of(object)).cloned())
    }

    fn watch_kind(&self, mapping: &ResourceMapping, ctx: &WatchContext) -> bool {
        if self.watchers.claim(mapping, ctx) {
            tracing::debug!(group = %mapping.group, resource = %mapping.resource, "simulated watch started");
        }
        true
    }

    async fn apply(
        &self,
        object: &ObjectRef,
        manifest: Value,
        mode: &ApplyMode,
    ) -> Result<Value, ClusterError> {
        self.write(object, manifest, mode)
    }

    async fn delete(&self, object: &ObjectRef, uid: Option<&str>) -> Result<bool, ClusterError> {
        let key = ObjectKey::of(object);
        let mut objects = self.lock();
        let Some(live) = objects.get(&key) else { return Ok(false) };
        let live_uid = live.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
        if let Some(uid) = uid.filter(|u| *u != live_uid) {
            return Err(ClusterError::PreconditionFailed {
                object: object.to_string(),
                reason: format!("uid {uid} does not match the live uid {live_uid}"),
            });
        }
        objects.remove(&key);
        drop(objects);
        self.changed(object);
        Ok(true)
    }

    async fn applied_work_uid(&self, owner: &AppliedWorkRef) -> Result<Option<String>, ClusterError> {
        self.records().entry(owner.name.clone()).or_insert_with(|| AppliedWorkRecord {
            owner: owner.clone(),
            resource_id: owner.work_name.clone(),
            store_identity: None,
            generation: None,
            incarnation: None,
            applied: Vec::new(),
            eviction_start: None,
        });
        Ok(Some(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, owner.name.as_bytes()).to_string()))
    }

    async fn delete_applied_work(&self, owner: &AppliedWorkRef) -> Result<(), ClusterError> {
        self.records().remove(&owner.name);
        Ok(())
    }

    async fn list_applied_works(&self, agent_id: &str) -> Result<Vec<AppliedWorkRecord>, ClusterError> {
        Ok(self.records().values().filter(|r| r.owner.agent_id == agent_id).cloned().collect())
    }

    async fn record_applied_work(&self, record: &AppliedWorkRecord) -> Result<(), ClusterError> {
        if let Some(stored) = self.records().get_mut(&record.owner.name) {
            *stored = record.clone();
        }
        Ok(())
    }

    async fn review_access(&self, review: &AccessReview) -> Result<bool, ClusterError> {
        Ok(self.access_rules().is_none_or(|rules| access::allows(&rules, review)))
    }

    async fn dry_run_create_as(
        &self,
        user: &str,
        object: &ObjectRef,
        _manifest: &Value,
    ) -> Result<(), ClusterError> {
        let Some(rules) = self.access_rules() else { return Ok(()) };
        let m = &object.mapping;
        let create = AccessReview {
            user: user.to_owned(),
            groups: Vec::new(),
            verb: "create".into(),
            mapping: m.clone(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
        };
        if !access::allows(&rules, &create)
            || !access::may_escalate(&rules, user, &m.group, &m.resource, &object.namespace)
        {
            return Err(ClusterError::Api {
                status: Some(403),
                message: format!("{user} cannot create {object}: forbidden"),
            });
        }
        Ok(())
    }
}

/// The string at JSON pointer `p` of `v`, `""` when absent.
fn str_at(v: &Value, p: &str) -> String {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// `(apiVersion, kind, name, namespace)` of a manifest.
fn identity(object: &Value) -> Result<(String, String, String, String), ClusterError> {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (api_version, kind, name) = (s("/apiVersion"), s("/kind"), s("/metadata/name"));
    if api_version.is_empty() || kind.is_empty() || name.is_empty() {
        return Err(ClusterError::InvalidManifest("apiVersion, kind and metadata.name are required".into()));
    }
    Ok((api_version, kind, name, s("/metadata/namespace")))
}

pub(super) fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let map = object.as_object_mut().expect("object ensured above");
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("object ensured above")
}

fn set_meta(object: &mut Value, key: &str, value: Value) {
    meta_mut(object).insert(key.into(), value);
}

fn without(v: &Value, keys: &[&str]) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
    v
}

/// The object without the fields the server maintains, for change detection.
fn comparable(v: &Value) -> Value {
    let mut v = without(v, &["status"]);
    let meta = meta_mut(&mut v);
    meta.remove("resourceVersion");
    meta.remove("generation");
    meta.remove("managedFields");
    v
}

/// Update semantics: the desired object replaces the live one, but labels and annotations are
/// merged (desired wins), owner references unioned, finalizers, uid and timestamps kept.
pub(super) fn merge_update(live: &Value, desired: Value) -> Value {
    let mut next = without(&desired, &["status"]);
    let live_meta = live.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let meta = meta_mut(&mut next);
    for key in ["labels", "annotations"] {
        let mut merged = live_meta.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
        if let Some(want) = meta.get(key).and_then(Value::as_object) {
            merged.extend(want.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if !merged.is_empty() {
            meta.insert(key.into(), Value::Object(merged));
        }
    }
    let desired_meta = Value::Object(meta.clone());
    if let Some(refs) = live_meta.get("ownerReferences") {
        meta.insert("ownerReferences".into(), refs.clone());
    } else {
        meta.remove("ownerReferences");
    }
    merge_owner_refs(meta, Some(&desired_meta));
    for key in ["uid", "creationTimestamp", "resourceVersion", "generation", "finalizers", "managedFields"] {
        match live_meta.get(key) {
            Some(v) => meta.insert(key.into(), v.clone()),
            None => meta.remove(key),
        };
    }
    if let (Some(m), Some(status)) = (next.as_object_mut(), live.get("status")) {
        m.insert("status".into(), status.clone());
    }
    next
}

/// Adds the owner references of `desired_meta` missing (by uid) from `meta`.
pub(super) fn merge_owner_refs(meta: &mut Map<String, Value>, desired_meta: Option<&Value>) {
    let Some(want) = desired_meta.and_then(|m| m.get("ownerReferences")).and_then(Value::as_array) else {
        return;
    };
    let refs = meta.entry("ownerReferences").or_insert_with(|| json!([]));
    if !refs.is_array() {
        *refs = json!([]);
    }
    let Some(list) = refs.as_array_mut() else { return };
    for r in want {
        if !list.iter().any(|x| x.get("uid") == r.get("uid")) {
            list.push(r.clone());
        }
    }
}

fn record_manager(object: &mut Value, manager: &str) {
    let entry = json!({"manager": manager, "operation": "Apply", "time": now()});
    let meta = meta_mut(object);
    let fields = meta.entry("managedFields").or_insert_with(|| json!([]));
    if let Some(list) = fields.as_array_mut() {
        list.retain(|m| m.get("manager").and_then(Value::as_str) != Some(manager));
        list.push(entry);
    }
}

/// Server-side apply: the desired fields are merged into the live object (maps recursively,
/// lists and scalars replaced). Changing a value last applied by another field manager is a
/// conflict unless `force`.
fn server_side_apply(
    object: &ObjectRef,
    live: &Value,
    desired: Value,
    manager: &str,
    force: bool,
) -> Result<Value, ClusterError> {
    let others = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|m| m.get("manager").and_then(Value::as_str) != Some(manager)));
    let mut next = live.clone();
    let mut conflicts = Vec::new();
    let desired = without(&desired, &["status", "apiVersion", "kind"]);
    deep_merge(&mut next, &desired, "", &mut conflicts);
    conflicts.retain(|p| !p.starts_with(".metadata.ownerReferences"));
    if others && !force && !conflicts.is_empty() {
        return Err(ClusterError::Conflict {
            object: object.to_string(),
            reason: format!("Apply failed with {} conflicts: {}", conflicts.len(), conflicts.join(", ")),
        });
    }
    if let Some(live_refs) = live.pointer("/metadata/ownerReferences").cloned() {
        let meta = meta_mut(&mut next);
        let wanted = Value::Object(meta.clone());
        meta.insert("ownerReferences".into(), live_refs);
        merge_owner_refs(meta, Some(&wanted));
    }
    record_manager(&mut next, manager);
    Ok(next)
}

fn deep_merge(target: &mut Value, patch: &Value, path: &str, conflicts: &mut Vec<String>) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                let sub = format!("{path}.{k}");
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v, &sub, conflicts);
                    }
                    Some(existing) => {
                        if existing != v {
                            conflicts.push(sub);
                        }
                        *existing = v.clone();
                    }
                    None => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn int_at(object: &Value, pointer: &str, default: i64) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(default)
}

fn condition(ty: &str, reason: &str, message: &str) -> Value {
    let t = now();
    json!({"type": ty, "status": "True", "reason": reason, "message": message,
           "lastTransitionTime": t, "lastUpdateTime": t})
}

/// Fabricates the status a healthy cluster would report for the common workload kinds.
fn fabricate_status(object: &mut Value) {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
    let generation = int_at(object, "/metadata/generation", 1);
    let status = match kind.as_str() {
        "Deployment" | "StatefulSet" | "ReplicaSet" => {
            let r = int_at(object, "/spec/replicas", 1);
            let mut s = json!({"observedGeneration": generation, "replicas": r, "readyReplicas": r,
                "availableReplicas": r, "updatedReplicas": r});
            if kind == "Deployment" {
                s["conditions"] = json!([
                    condition(
                        "Available",
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability."
                    ),
                    condition(
                        "Progressing",
                        "NewReplicaSetAvailable",
                        "ReplicaSet has successfully progressed."
                    ),
                ]);
            } else {
                s["currentReplicas"] = json!(r);
            }
            s
        }
        "DaemonSet" => json!({"observedGeneration": generation, "desiredNumberScheduled": 1,
            "currentNumberScheduled": 1, "numberReady": 1, "numberAvailable": 1,
            "updatedNumberScheduled": 1, "numberMisscheduled": 0}),
        "Job" => {
            let c = int_at(object, "/spec/completions", 1);
            json!({"succeeded": c, "active": 0, "ready": 0, "startTime": now(), "completionTime": now(),
                "conditions": [condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                               condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods")]})
        }
        "Pod" => json!({"phase": "Running", "podIP": "10.0.0.10", "startTime": now(), "conditions": [
            condition("Initialized", "", ""), condition("Ready", "", ""),
            condition("ContainersReady", "", ""), condition("PodScheduled", "", "")]}),
        "Namespace" => json!({"phase": "Active"}),
        "PersistentVolumeClaim" => json!({"phase": "Bound"}),
        "Service" => json!({"loadBalancer": {}}),
        "CustomResourceDefinition" => json!({"conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted")],
            "acceptedNames": object.pointer("/spec/names").cloned().unwrap_or(Value::Null)}),
        _ => return,
    };
    if let Some(m) = object.as_object_mut() {
        m.insert("status".into(), status);
    }
}
