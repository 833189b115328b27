//! The intake handler called directly, through a transport that captures it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use maestro_agent::{Agent, AgentConfig, SimulatedCluster};
use maestro_api::Event;
use maestro_api::codec::SpecEventBuilder;
use maestro_transport::{AgentTransport, DynHandler, HandlerError, Subscribed};
use serde_json::json;
use tokio::sync::watch;

use crate::common::*;

struct Capture {
    handler: Mutex<Option<DynHandler>>,
    published: Mutex<Vec<Event>>,
    signal: watch::Sender<u64>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Capture")
    }
}

#[async_trait]
impl AgentTransport for Capture {
    fn backend(&self) -> &'static str {
        "capture"
    }
    fn consumer(&self) -> &str {
        "c1"
    }
    async fn publish(&self, event: &Event) -> maestro_transport::Result<()> {
        self.published.lock().expect("lock").push(event.clone());
        Ok(())
    }
    async fn start(&self, handler: DynHandler) -> maestro_transport::Result<()> {
        *self.handler.lock().expect("lock") = Some(handler);
        self.signal.send_modify(|n| *n += 1);
        Ok(())
    }
    fn subscribed(&self) -> Subscribed {
        self.signal.subscribe()
    }
    async fn close(&self) {}
}

#[tokio::test]
async fn malformed_and_foreign_specs() {
    let (signal, _) = watch::channel(0);
    let t = Arc::new(Capture { handler: Mutex::new(None), published: Mutex::new(vec![]), signal });
    let cluster = Arc::new(SimulatedCluster::new());
    let agent = Agent::new(AgentConfig::new("c1"), t.clone(), cluster.clone());
    let handle = agent.handle();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(agent.run(async { rx.await.unwrap_or(()) }));
    wait_until(|| t.handler.lock().expect("lock").is_some()).await;
    let handler = t.handler.lock().expect("lock").clone().expect("handler");
    let send = |e: Event| {
        let handler = handler.clone();
        async move { handler.handle(e).await }
    };
    // empty bundle, missing name, oversized: Permanent
    for bundle in [
        json!({"manifests":[]}),
        json!({"manifests":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}]}),
        json!({"manifests":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"x":"y".repeat(600*1024)}}]}),
    ] {
        let ev = SpecEventBuilder::new("maestro", "bad", 1, "c1").bundle_json(bundle).build();
        assert!(matches!(send(ev).await, Err(HandlerError::Permanent(_))));
    }
    let mut no_version = SpecEventBuilder::new("maestro", "bad", 1, "c1").bundle_json(cm_bundle("a")).build();
    no_version.remove_extension("resourceversion");
    assert!(matches!(send(no_version).await, Err(HandlerError::Permanent(_))));
    // another cluster: acknowledged and ignored
    let foreign = SpecEventBuilder::new("maestro", "w2", 1, "c2").bundle_json(cm_bundle("a")).build();
    assert_eq!(send(foreign).await, Ok(()));
    assert!(handle.works().is_empty());
    assert!(cluster.is_empty(), "nothing applied");
    // a valid one is applied
    let ok = SpecEventBuilder::new("maestro", "w1", 1, "c1").bundle_json(cm_bundle("a")).build();
    assert_eq!(send(ok).await, Ok(()));
    wait_until(|| cluster.len() == 1).await;
    let _ = tx.send(());
    run.await.expect("join").expect("run");
}
