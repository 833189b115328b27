//! Shared test harness: a memory broker whose source side records every event, an agent on
//! a simulated cluster, and condition waits with deadlines.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use maestro_agent::{
    Agent, AgentConfig, AgentHandle, ApplyMode, Cluster, ClusterError, ObjectRef, ResourceMapping,
    SimulatedCluster,
};
use maestro_api::codec::{SpecEventBuilder, StatusEvent, data_as, decode_status};
use maestro_api::payload::{ManifestBundleStatus, ResourceVersionList};
use maestro_api::types::Action;
use maestro_api::{AttributesReader, Event};
use maestro_transport::memory::{MemoryBroker, MemorySource};
use maestro_transport::{EventHandler, HandlerError, SourceTransport};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

pub const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
    notify: Notify,
}

impl Recorder {
    pub fn count(&self) -> usize {
        self.events.lock().expect("lock").len()
    }
    pub fn since(&self, mark: usize) -> Vec<Event> {
        self.events.lock().expect("lock")[mark..].to_vec()
    }
}

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        self.events.lock().expect("lock").push(event.clone());
        self.notify.notify_waiters();
        Ok(())
    }
}

pub struct Harness {
    pub broker: MemoryBroker,
    pub source: Arc<MemorySource>,
    pub rec: Arc<Recorder>,
    pub cluster: Arc<SimulatedCluster>,
    pub handle: AgentHandle,
    stop: Option<oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<()>>,
}

pub fn decode(e: &Event) -> StatusEvent {
    decode_status(e).expect("status event")
}

pub fn is_status_for(e: &Event, id: &str) -> bool {
    e.ty().contains(".status.") && decode_status(e).is_ok_and(|s| s.resource_id == id)
}

pub fn resync_versions(e: &Event) -> Vec<(String, i64)> {
    let l: ResourceVersionList = data_as(e, "ResourceVersionList").expect("versions");
    l.resource_versions.into_iter().map(|v| (v.resource_id, v.resource_version)).collect()
}

pub fn cm_bundle(name: &str) -> Value {
    json!({"manifests":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":"default"},"data":{"a":"1"}}]})
}

pub async fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met before the deadline");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Deletes a ConfigMap in the default namespace directly on the cluster.
pub async fn delete_behind_back(h: &Harness, name: &str) {
    let mapping = h.cluster.resolve("v1", "ConfigMap").await.expect("mapping");
    let oref = maestro_agent::ObjectRef { mapping, namespace: "default".into(), name: name.into() };
    assert!(h.cluster.delete(&oref, None).await.expect("delete"));
}

impl Harness {
    pub async fn start(consumer: &str) -> Harness {
        Self::start_with(AgentConfig::new(consumer)).await
    }

    pub async fn start_with(config: AgentConfig) -> Harness {
        let sim = Arc::new(SimulatedCluster::new());
        Self::start_on(config, sim.clone(), sim).await
    }

    /// Starts an agent on `cluster`; `sim` is only kept for inspection.
    pub async fn start_on(
        config: AgentConfig,
        sim: Arc<SimulatedCluster>,
        cluster: Arc<dyn Cluster>,
    ) -> Harness {
        let (h, first) = Self::start_restoring(config, sim, cluster).await;
        assert!(resync_versions(&first).is_empty(), "empty store after start");
        h
    }

    /// Starts an agent on `cluster`, which may hold AppliedManifestWork records of an earlier
    /// agent; returns it with its first spec resync request.
    pub async fn start_restoring(
        mut config: AgentConfig,
        sim: Arc<SimulatedCluster>,
        cluster: Arc<dyn Cluster>,
    ) -> (Harness, Event) {
        config.retry_delay = Duration::from_millis(20);
        config.max_retry_delay = Duration::from_millis(200);
        let broker = MemoryBroker::new();
        let source = broker.source();
        let rec = Arc::new(Recorder::default());
        source.start(rec.clone()).await.expect("source start");
        let agent = Agent::new(config.clone(), broker.agent(&config.consumer), cluster);
        let handle = agent.handle();
        let (tx, rx) = oneshot::channel();
        let join = tokio::spawn(async move {
            agent.run(async { rx.await.unwrap_or(()) }).await.expect("agent run");
        });
        let h = Harness { broker, source, rec, cluster: sim, handle, stop: Some(tx), join: Some(join) };
        let first = h.wait_event(|e| e.ty().ends_with("spec.resync_request")).await;
        (h, first)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            tokio::time::timeout(DEADLINE, j).await.expect("agent stops").expect("agent task");
        }
    }

    pub async fn publish_spec(&self, id: &str, version: i64, bundle: Value) {
        let mut meta = serde_json::Map::new();
        meta.insert("name".into(), json!(id));
        let ev = SpecEventBuilder::new("maestro", id, version, self.handle.consumer())
            .action(if version <= 1 { Action::Create } else { Action::Update })
            .metadata(meta)
            .bundle_json(bundle)
            .build();
        self.source.publish(&ev).await.expect("publish spec");
    }

    pub async fn publish_delete(&self, id: &str, version: i64) {
        let ev = SpecEventBuilder::new("maestro", id, version, self.handle.consumer())
            .action(Action::Delete)
            .deletion(chrono::Utc::now())
            .build();
        self.source.publish(&ev).await.expect("publish delete");
    }

    pub async fn wait_event(&self, pred: impl Fn(&Event) -> bool) -> Event {
        self.wait_event_after(0, pred).await
    }

    pub async fn wait_event_after(&self, mark: usize, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.rec.notify.notified();
            if let Some(e) = self.rec.since(mark).into_iter().find(|e| pred(e)) {
                return e;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "no matching event before the deadline; got {:#?}", self.summary());
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    pub async fn wait_until_events(&self, mark: usize, pred: impl Fn(&[Event]) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.rec.notify.notified();
            if pred(&self.rec.since(mark)) {
                return;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "events not seen before the deadline; got {:#?}", self.summary());
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    /// Waits for a status event of `id` whose status satisfies `pred`.
    pub async fn wait_status(&self, id: &str, pred: impl Fn(&ManifestBundleStatus) -> bool) -> Event {
        self.wait_event(|e| is_status_for(e, id) && pred(&decode(e).status)).await
    }

    fn summary(&self) -> Vec<String> {
        self.rec
            .since(0)
            .iter()
            .map(|e| match decode_status(e) {
                Ok(s) => format!(
                    "{} {} v{} {:?}",
                    e.ty().rsplit('.').next().unwrap_or_default(),
                    s.resource_id,
                    s.resource_version,
                    s.status
                        .conditions
                        .iter()
                        .map(|c| format!("{}={}", c.kind, c.status))
                        .collect::<Vec<_>>()
                ),
                Err(_) => e.ty().to_owned(),
            })
            .collect()
    }
}

/// The simulated cluster, with every apply held until the gate opens.
#[derive(Debug)]
pub struct Gated {
    inner: Arc<SimulatedCluster>,
    open: AtomicBool,
    opened: Notify,
    /// Told when an apply reaches the gate (the waiters made before it; no permit is kept).
    pub entered: Notify,
}

impl Gated {
    /// A closed gate in front of `inner`.
    pub fn new(inner: Arc<SimulatedCluster>) -> Arc<Self> {
        Arc::new(Gated { inner, open: AtomicBool::new(false), opened: Notify::new(), entered: Notify::new() })
    }

    /// Opens the gate: held applies go on, later ones pass.
    pub fn release(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.opened.notify_waiters();
    }

    /// Closes the gate again: later applies are held.
    #[allow(dead_code)] // used by some of the test crates sharing this module
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }
}

#[async_trait]
impl Cluster for Gated {
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
        let opened = self.opened.notified();
        self.entered.notify_waiters();
        if !self.open.load(Ordering::SeqCst) {
            opened.await;
        }
        self.inner.apply(object, manifest, mode).await
    }

    async fn delete(&self, object: &ObjectRef, uid: Option<&str>) -> Result<bool, ClusterError> {
        self.inner.delete(object, uid).await
    }
}
