//! Graceful agent shutdown (docs/architecture.md, "Tasks, shutdown and retries"): an apply in
//! flight when the shutdown signal comes is finished, not cut off half-way, and an apply that
//! never returns holds the shutdown only until its timeout. The cluster is the simulated one
//! (no Kubernetes API server runs here) behind a gate that holds every apply.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use maestro_agent::{
    AgentConfig, ApplyMode, Cluster, ClusterError, ObjectRef, ResourceMapping, SimulatedCluster,
};
use serde_json::Value;
use tokio::sync::Notify;

/// The simulated cluster, with every apply held until the gate opens.
#[derive(Debug)]
struct Gated {
    inner: Arc<SimulatedCluster>,
    open: AtomicBool,
    opened: Notify,
    entered: Notify,
}

impl Gated {
    fn new(inner: Arc<SimulatedCluster>) -> Arc<Self> {
        Arc::new(Gated { inner, open: AtomicBool::new(false), opened: Notify::new(), entered: Notify::new() })
    }

    fn release(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.opened.notify_waiters();
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
        self.entered.notify_one();
        if !self.open.load(Ordering::SeqCst) {
            opened.await;
        }
        self.inner.apply(object, manifest, mode).await
    }

    async fn delete(&self, object: &ObjectRef, uid: Option<&str>) -> Result<bool, ClusterError> {
        self.inner.delete(object, uid).await
    }
}

async fn start(shutdown_timeout: Duration) -> (Harness, Arc<Gated>, Arc<SimulatedCluster>) {
    let sim = Arc::new(SimulatedCluster::new());
    let gated = Gated::new(sim.clone());
    let mut config = AgentConfig::new("cluster1");
    config.shutdown_timeout = shutdown_timeout;
    let h = Harness::start_on(config, sim.clone(), gated.clone()).await;
    (h, gated, sim)
}

async fn configmap(sim: &SimulatedCluster, name: &str) -> Option<Value> {
    let mapping = sim.resolve("v1", "ConfigMap").await.expect("mapping");
    let oref = ObjectRef { mapping, namespace: "default".into(), name: name.into() };
    sim.get(&oref).await.expect("get")
}

/// Shutdown waits for the apply in flight, which completes once the cluster answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_in_flight_finishes_before_the_agent_stops() {
    let (h, gated, sim) = start(DEADLINE).await;
    let entered = gated.entered.notified();
    h.publish_spec("w1", 1, cm_bundle("cm-in-flight")).await;
    tokio::time::timeout(DEADLINE, entered).await.expect("the apply started");
    let stopping = tokio::spawn(h.stop());
    // The shutdown signal is in; the apply is still held by the cluster.
    tokio::task::yield_now().await;
    assert!(!stopping.is_finished(), "the agent stopped with an apply in flight");
    gated.release();
    tokio::time::timeout(DEADLINE, stopping).await.expect("the agent stops").expect("stop task");
    assert!(configmap(&sim, "cm-in-flight").await.is_some(), "the apply in flight was cut off");
}

/// An apply that never returns holds the shutdown only until the agent's shutdown timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_that_never_returns_holds_shutdown_only_until_its_timeout() {
    let limit = Duration::from_millis(300);
    let (h, gated, _sim) = start(limit).await;
    let entered = gated.entered.notified();
    h.publish_spec("w1", 1, cm_bundle("cm-stuck")).await;
    tokio::time::timeout(DEADLINE, entered).await.expect("the apply started");
    let started = tokio::time::Instant::now();
    h.stop().await; // fails the test when it takes longer than DEADLINE
    assert!(started.elapsed() >= limit, "stopped before the timeout: {:?}", started.elapsed());
}
