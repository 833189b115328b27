//! The agents' clusters: a [`SimulatedCluster`] per consumer that outlives its agent (as a
//! real cluster outlives a killed agent pod), wrapped so that every write that changes an
//! object is recorded with the generation the workload wrote into it (`data.gen`). The
//! history is what the `stale` and `duplicates` invariants read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use maestro_agent::{
    AccessReview, AppliedWorkRecord, AppliedWorkRef, ApplyMode, Cluster, ClusterError, ObjectRef,
    ResourceMapping, SimulatedCluster,
};
use serde_json::Value;

/// One consumer's cluster and its write history.
#[derive(Debug, Default)]
pub struct RecordingCluster {
    inner: SimulatedCluster,
    /// Per object name: the `data.gen` of every write that changed it, in order (`None` for a
    /// deletion).
    history: Mutex<BTreeMap<String, Vec<Option<u64>>>>,
}

impl RecordingCluster {
    /// An empty cluster.
    pub fn new() -> Arc<RecordingCluster> {
        Arc::new(RecordingCluster::default())
    }

    /// The `data.gen` of ConfigMap `name` in namespace `default`, if it exists.
    pub fn generation(&self, name: &str) -> Option<u64> {
        self.inner.object("v1", "ConfigMap", "default", name).as_ref().and_then(gen_of)
    }

    /// A copy of the history.
    pub fn history(&self) -> BTreeMap<String, Vec<Option<u64>>> {
        self.history.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note(&self, name: &str, generation: Option<u64>) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.entry(name.to_owned()).or_default().push(generation);
    }
}

fn gen_of(object: &Value) -> Option<u64> {
    object.pointer("/data/gen").and_then(Value::as_str).and_then(|g| g.parse().ok())
}

fn revision(object: Option<&Value>) -> Option<String> {
    object.and_then(|o| o.pointer("/metadata/resourceVersion")).and_then(Value::as_str).map(str::to_owned)
}

#[async_trait]
impl Cluster for RecordingCluster {
    async fn resolve(&self, api_version: &str, kind: &str) -> Result<ResourceMapping, ClusterError> {
        self.inner.resolve(api_version, kind).await
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, ClusterError> {
        self.inner.get(object).await
    }

    async fn apply(
        &self,
        object: &ObjectRef,
        manifest: Value,
        mode: &ApplyMode,
    ) -> Result<Value, ClusterError> {
        let before = revision(self.inner.get(object).await?.as_ref());
        let live = self.inner.apply(object, manifest, mode).await?;
        if revision(Some(&live)) != before {
            self.note(&object.name, gen_of(&live));
        }
        Ok(live)
    }

    async fn delete(&self, object: &ObjectRef, uid: Option<&str>) -> Result<bool, ClusterError> {
        let deleted = self.inner.delete(object, uid).await?;
        if deleted {
            self.note(&object.name, None);
        }
        Ok(deleted)
    }

    async fn applied_work_uid(&self, owner: &AppliedWorkRef) -> Result<Option<String>, ClusterError> {
        self.inner.applied_work_uid(owner).await
    }

    async fn delete_applied_work(&self, owner: &AppliedWorkRef) -> Result<(), ClusterError> {
        self.inner.delete_applied_work(owner).await
    }

    async fn list_applied_works(&self, agent_id: &str) -> Result<Vec<AppliedWorkRecord>, ClusterError> {
        self.inner.list_applied_works(agent_id).await
    }

    async fn record_applied_work(&self, record: &AppliedWorkRecord) -> Result<(), ClusterError> {
        self.inner.record_applied_work(record).await
    }

    async fn review_access(&self, review: &AccessReview) -> Result<bool, ClusterError> {
        self.inner.review_access(review).await
    }
}
