//! The kube-rs cluster (feature `kube`): a real Kubernetes API server.
//!
//! Kinds are resolved with `kube::discovery::pinned_kind` (cached); `Update` is get → create,
//! or replace with merged metadata (skipped when the live object already contains every
//! desired field); `CreateOnly` creates or only patches the owner; `ServerSideApply` is an
//! apply patch with the field manager (and `force`); deletes carry a UID precondition and
//! background propagation. The AppliedManifestWork is created when its CRD is served.
//! `watch_kind` runs one kube-rs watcher per kind and agent (`kube_watch.rs`,
//! docs/protocol.md §8.5).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams, Preconditions,
    PropagationPolicy,
};
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, Config};
use serde_json::{Value, json};

use super::simulated::{merge_owner_refs, merge_update, meta_mut};
use super::{
    APPLIED_WORK_API_VERSION, APPLIED_WORK_KIND, AccessReview, AppliedWorkRecord, AppliedWorkRef, ApplyMode,
    Cluster, ObjectRef, ResourceMapping, WatchContext, split_api_version,
};
use super::{kube_access, kube_records};
use crate::error::ClusterError;
use crate::ownership::OWNER_ANNOTATION;

/// A cluster reached through kube-rs.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    /// The configuration the client was built from, to build clients impersonating a work's
    /// executor (`None` when built from a client alone: executor dry runs then fail).
    config: Option<std::sync::Arc<Config>>,
    /// The kube-rs watchers running, one per kind and agent (docs/protocol.md §8.5).
    watchers: std::sync::Arc<super::watching::WatcherSet>,
    mappings: std::sync::Arc<Mutex<HashMap<(String, String), ResourceMapping>>>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster").field("namespace", &self.client.default_namespace()).finish()
    }
}

pub(super) fn api_error(e: kube::Error) -> ClusterError {
    match e {
        kube::Error::Api(s) => ClusterError::Api { status: Some(s.code), message: s.message.clone() },
        other => ClusterError::Api { status: None, message: other.to_string() },
    }
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// `Api::get_opt`, with every 404 as absence. kube-rs takes only a `Status` with reason
/// `NotFound` for one, but the API server answers the path of a resource it no longer serves (a
/// CustomResourceDefinition removed since discovery) with a plain-text `404 page not found`,
/// which client-go (and so the OCM work agent) reads as NotFound too.
async fn get_opt(api: &Api<DynamicObject>, name: &str) -> Result<Option<DynamicObject>, ClusterError> {
    match api.get(name).await {
        Ok(o) => Ok(Some(o)),
        Err(e) if code(&e) == Some(404) => Ok(None),
        Err(e) => Err(api_error(e)),
    }
}

fn to_dynamic(v: Value) -> Result<DynamicObject, ClusterError> {
    serde_json::from_value(v).map_err(|e| ClusterError::InvalidManifest(e.to_string()))
}

fn to_value(o: &DynamicObject) -> Result<Value, ClusterError> {
    serde_json::to_value(o).map_err(|e| ClusterError::Api { status: None, message: e.to_string() })
}

/// True when every field of `want` (recursively for objects) has the same value in `have`.
fn is_subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            w.iter().all(|(k, v)| h.get(k).is_some_and(|hv| is_subset(v, hv)))
        }
        _ => want == have,
    }
}

impl KubeCluster {
    /// A cluster using `client`.
    pub fn new(client: Client) -> Self {
        KubeCluster { client, config: None, watchers: Default::default(), mappings: Default::default() }
    }

    /// The number of kube-rs watchers running: one per kind (group and resource) and watching
    /// agent, however many works or objects use the kind.
    pub fn watcher_count(&self) -> usize {
        self.watchers.count()
    }

    /// A cluster from the local kubeconfig or the in-cluster environment (`Config::infer`).
    ///
    /// # Errors
    /// [`ClusterError::Api`] when no configuration can be found or the client cannot be built.
    pub async fn infer() -> Result<Self, ClusterError> {
        let config =
            Config::infer().await.map_err(|e| ClusterError::Api { status: None, message: e.to_string() })?;
        Self::from_config(config)
    }

    /// A cluster from a kubeconfig file (`context` = `None` for the current context).
    ///
    /// # Errors
    /// [`ClusterError::Api`] when the file cannot be read or the client cannot be built.
    pub async fn from_kubeconfig(
        path: &std::path::Path,
        context: Option<String>,
    ) -> Result<Self, ClusterError> {
        let err = |e: String| ClusterError::Api { status: None, message: e };
        let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
        let options = kube::config::KubeConfigOptions { context, ..Default::default() };
        let config =
            Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| err(e.to_string()))?;
        Self::from_config(config)
    }

    /// A cluster from a kube-rs [`Config`].
    ///
    /// kube-rs's own retry of 429/503/504 answers is turned off (`default_retry`): it retries up
    /// to 15 times with a backoff growing to 1000 s, so one request to an aggregated API whose
    /// backend is down (a plain 503 without `Retry-After`, which client-go does not retry) held a
    /// reconcile worker for minutes. The agent retries failed applies itself, with its backoff.
    ///
    /// # Errors
    /// [`ClusterError::Api`] when the client cannot be built.
    pub fn from_config(mut config: Config) -> Result<Self, ClusterError> {
        config.default_retry = false;
        let client = Client::try_from(config.clone())
            .map_err(|e| ClusterError::Api { status: None, message: e.to_string() })?;
        Ok(KubeCluster { config: Some(std::sync::Arc::new(config)), ..Self::new(client) })
    }

    fn api(&self, object: &ObjectRef) -> Api<DynamicObject> {
        kube_access::dynamic_api(self.client.clone(), object)
    }

    async fn applied_work_api(&self) -> Result<Option<Api<DynamicObject>>, ClusterError> {
        match self.resolve(APPLIED_WORK_API_VERSION, APPLIED_WORK_KIND).await {
            Ok(m) => {
                Ok(Some(self.api(&ObjectRef { mapping: m, namespace: String::new(), name: String::new() })))
            }
            Err(ClusterError::UnknownKind { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn update(
        &self,
        api: &Api<DynamicObject>,
        object: &ObjectRef,
        manifest: Value,
    ) -> Result<Value, ClusterError> {
        let Some(live) = get_opt(api, &object.name).await? else {
            return self.create(api, manifest).await;
        };
        let live = to_value(&live)?;
        let mut desired = merge_update(&live, manifest);
        if let Some(m) = desired.as_object_mut() {
            m.remove("status");
        }
        meta_mut(&mut desired).remove("managedFields");
        let mut check = desired.clone();
        for k in ["resourceVersion", "generation"] {
            meta_mut(&mut check).remove(k);
        }
        if is_subset(&check, &live) {
            return Ok(live);
        }
        let replaced = api.replace(&object.name, &PostParams::default(), &to_dynamic(desired)?).await;
        // a 409 here is a stale resourceVersion: an ordinary (retried) API error
        to_value(&replaced.map_err(api_error)?)
    }

    async fn create(&self, api: &Api<DynamicObject>, manifest: Value) -> Result<Value, ClusterError> {
        let created = api.create(&PostParams::default(), &to_dynamic(manifest)?).await.map_err(api_error)?;
        to_value(&created)
    }

    async fn create_only(
        &self,
        api: &Api<DynamicObject>,
        object: &ObjectRef,
        manifest: Value,
    ) -> Result<Value, ClusterError> {
        let Some(live) = get_opt(api, &object.name).await? else {
            return self.create(api, manifest).await;
        };
        let live = to_value(&live)?;
        let mut next = live.clone();
        let meta = meta_mut(&mut next);
        merge_owner_refs(meta, manifest.get("metadata"));
        if let Some(owner) = manifest.pointer("/metadata/annotations").and_then(|a| a.get(OWNER_ANNOTATION)) {
            let ann = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = ann.as_object_mut() {
                a.insert(OWNER_ANNOTATION.into(), owner.clone());
            }
        }
        if next == live {
            return Ok(live);
        }
        let patch = json!({"metadata": {
            "ownerReferences": next.pointer("/metadata/ownerReferences").cloned().unwrap_or(Value::Null),
            "annotations": next.pointer("/metadata/annotations").cloned().unwrap_or(Value::Null),
        }});
        let patched = api.patch(&object.name, &PatchParams::default(), &Patch::Merge(&patch)).await;
        to_value(&patched.map_err(api_error)?)
    }
}

fn conflict_or(object: &ObjectRef, e: kube::Error) -> ClusterError {
    if code(&e) == Some(409) {
        return ClusterError::Conflict { object: object.to_string(), reason: api_error(e).to_string() };
    }
    api_error(e)
}

#[async_trait]
impl Cluster for KubeCluster {
    async fn resolve(&self, api_version: &str, kind: &str) -> Result<ResourceMapping, ClusterError> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(m) = self.mappings.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(m.clone());
        }
        let (group, version) = split_api_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let unknown = || ClusterError::UnknownKind { api_version: api_version.into(), kind: kind.into() };
        let (ar, caps) = match pinned_kind(&self.client, &gvk).await {
            Ok(found) => found,
            Err(kube::Error::Discovery(_)) => return Err(unknown()),
            Err(e) if code(&e) == Some(404) => return Err(unknown()),
            Err(e) => return Err(api_error(e)),
        };
        let mapping = ResourceMapping {
            group: ar.group,
            version: ar.version,
            kind: ar.kind,
            resource: ar.plural,
            namespaced: caps.scope == Scope::Namespaced,
        };
        self.mappings.lock().unwrap_or_else(|p| p.into_inner()).insert(key, mapping.clone());
        Ok(mapping)
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, ClusterError> {
        match get_opt(&self.api(object), &object.name).await? {
            Some(o) => Ok(Some(to_value(&o)?)),
            None => Ok(None),
        }
    }

    fn watch_kind(&self, mapping: &ResourceMapping, ctx: &WatchContext) -> bool {
        if self.watchers.claim(mapping, ctx) {
            super::kube_watch::spawn(self.client.clone(), mapping, ctx);
        }
        true
    }

    async fn apply(
        &self,
        object: &ObjectRef,
        mut manifest: Value,
        mode: &ApplyMode,
    ) -> Result<Value, ClusterError> {
        let api = self.api(object);
        if let Some(m) = manifest.as_object_mut() {
            m.insert("apiVersion".into(), json!(object.mapping.api_version()));
            m.insert("kind".into(), json!(object.mapping.kind));
        }
        match mode {
            ApplyMode::Update => self.update(&api, object, manifest).await,
            ApplyMode::CreateOnly => self.create_only(&api, object, manifest).await,
            ApplyMode::ServerSideApply { field_manager, force } => {
                let mut params = PatchParams::apply(field_manager);
                if *force {
                    params = params.force();
                }
                let patched = api.patch(&object.name, &params, &Patch::Apply(&manifest)).await;
                to_value(&patched.map_err(|e| conflict_or(object, e))?)
            }
        }
    }

    async fn delete(&self, object: &ObjectRef, uid: Option<&str>) -> Result<bool, ClusterError> {
        let params = DeleteParams {
            preconditions: uid.map(|u| Preconditions { uid: Some(u.to_owned()), resource_version: None }),
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match self.api(object).delete(&object.name, &params).await {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some(404) => Ok(false),
            Err(e) if code(&e) == Some(409) => Err(ClusterError::PreconditionFailed {
                object: object.to_string(),
                reason: api_error(e).to_string(),
            }),
            Err(e) => Err(api_error(e)),
        }
    }

    async fn applied_work_uid(&self, owner: &AppliedWorkRef) -> Result<Option<String>, ClusterError> {
        let Some(api) = self.applied_work_api().await? else { return Ok(None) };
        let uid_of = |o: &DynamicObject| o.metadata.uid.clone();
        if let Some(found) = get_opt(&api, &owner.name).await? {
            return Ok(uid_of(&found));
        }
        let amw = json!({"apiVersion": APPLIED_WORK_API_VERSION, "kind": APPLIED_WORK_KIND,
            "metadata": {"name": owner.name},
            "spec": {"hubHash": owner.hub_hash, "agentID": owner.agent_id, "manifestWorkName": owner.work_name}});
        let created = api.create(&PostParams::default(), &to_dynamic(amw)?).await.map_err(api_error)?;
        Ok(uid_of(&created))
    }

    async fn delete_applied_work(&self, owner: &AppliedWorkRef) -> Result<(), ClusterError> {
        let Some(api) = self.applied_work_api().await? else { return Ok(()) };
        match api.delete(&owner.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(404) => Ok(()),
            Err(e) => Err(api_error(e)),
        }
    }

    async fn review_access(&self, review: &AccessReview) -> Result<bool, ClusterError> {
        kube_access::review_access(&self.client, review).await
    }

    async fn dry_run_create_as(
        &self,
        user: &str,
        object: &ObjectRef,
        manifest: &Value,
    ) -> Result<(), ClusterError> {
        kube_access::dry_run_create_as(self.config.as_deref(), user, object, manifest).await
    }

    async fn list_applied_works(&self, agent_id: &str) -> Result<Vec<AppliedWorkRecord>, ClusterError> {
        let Some(api) = self.applied_work_api().await? else { return Ok(Vec::new()) };
        kube_records::list(&api, agent_id).await
    }

    async fn record_applied_work(&self, record: &AppliedWorkRecord) -> Result<(), ClusterError> {
        let Some(api) = self.applied_work_api().await? else { return Ok(()) };
        kube_records::record(&api, record).await
    }
}
