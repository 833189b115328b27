//! Graceful agent shutdown (docs/architecture.md, "Tasks, shutdown and retries"): an apply in
//! flight when the shutdown signal comes is finished, not cut off half-way, and an apply that
//! never returns holds the shutdown only until its timeout. The cluster is the simulated one
//! (no Kubernetes API server runs here) behind a gate that holds every apply.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use maestro_agent::{AgentConfig, Cluster, ObjectRef, SimulatedCluster};
use serde_json::Value;

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
