//! The intake handler called directly, through a transport that captures it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use maestro_agent::{Agent, AgentConfig, SimulatedCluster};
use maestro_api::codec::{SpecEventBuilder, status_resync_request};
use maestro_api::payload::StatusHashList;
use maestro_api::{AttributesReader, Event};
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

/// An agent on a [`Capture`] transport and a simulated cluster, with its handler captured.
struct Direct {
    t: Arc<Capture>,
    cluster: Arc<SimulatedCluster>,
    handle: maestro_agent::AgentHandle,
    handler: DynHandler,
    stop: tokio::sync::oneshot::Sender<()>,
    run: tokio::task::JoinHandle<Result<(), maestro_agent::AgentError>>,
}

impl Direct {
    async fn start(config: AgentConfig) -> Direct {
        let (signal, _) = watch::channel(0);
        let t = Arc::new(Capture { handler: Mutex::new(None), published: Mutex::new(vec![]), signal });
        let cluster = Arc::new(SimulatedCluster::new());
        let agent = Agent::new(config, t.clone(), cluster.clone());
        let handle = agent.handle();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(agent.run(async { rx.await.unwrap_or(()) }));
        wait_until(|| t.handler.lock().expect("lock").is_some()).await;
        let handler = t.handler.lock().expect("lock").clone().expect("handler");
        Direct { t, cluster, handle, handler, stop, run }
    }

    async fn send(&self, e: Event) -> Result<(), HandlerError> {
        self.handler.handle(&e).await
    }

    fn published(&self, ty_suffix: &str) -> Vec<Event> {
        self.t
            .published
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| e.ty().ends_with(ty_suffix))
            .cloned()
            .collect()
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.run.await.expect("join").expect("run");
    }
}

fn spec(source: &str, id: &str, version: i64, name: &str) -> Event {
    SpecEventBuilder::new(source, id, version, "c1").bundle_json(cm_bundle(name)).build()
}

/// A spec from a source the agent does not accept is refused permanently (dropped, never
/// redelivered) and not applied, whether it creates a work or updates one; the next spec from
/// the accepted source is applied.
#[tokio::test]
async fn specs_from_unknown_sources_are_refused() {
    let d = Direct::start(AgentConfig::new("c1")).await;
    let refused = d.send(spec("rogue", "w1", 1, "evil")).await;
    assert!(matches!(&refused, Err(HandlerError::Permanent(r)) if r.contains("\"rogue\"")), "{refused:?}");
    assert!(d.handle.works().is_empty(), "nothing stored from the rogue source");
    assert_eq!(d.send(spec("maestro", "w1", 1, "good")).await, Ok(()));
    wait_until(|| d.handle.work("w1").is_some_and(|w| w.generation == 1) && d.cluster.len() == 1).await;
    // a rogue update (higher version) and delete of an existing work are refused too
    let update = d.send(spec("Maestro", "w1", 2, "evil")).await;
    assert!(matches!(update, Err(HandlerError::Permanent(_))), "source ids compare exactly");
    let delete = SpecEventBuilder::new("rogue", "w1", 2, "c1").deletion(chrono::Utc::now()).build();
    assert!(matches!(d.send(delete).await, Err(HandlerError::Permanent(_))));
    let w1 = d.handle.work("w1").expect("w1");
    assert_eq!((w1.generation, w1.deleting), (1, false), "rogue update/delete not applied");
    // the next legitimate update still is
    assert_eq!(d.send(spec("maestro", "w1", 2, "good2")).await, Ok(()));
    wait_until(|| d.handle.work("w1").is_some_and(|w| w.generation == 2)).await;
    d.stop().await;
}

/// Several accepted source ids; a status resync request from another source gets no answer.
#[tokio::test]
async fn accepted_sources_are_configurable_and_resync_requests_checked() {
    let mut config = AgentConfig::new("c1");
    config.accepted_sources = vec!["maestro-a".into(), "maestro-b".into()];
    let d = Direct::start(config).await;
    assert!(matches!(d.send(spec("maestro", "w0", 1, "x")).await, Err(HandlerError::Permanent(_))));
    assert_eq!(d.send(spec("maestro-a", "w1", 1, "a")).await, Ok(()));
    assert_eq!(d.send(spec("maestro-b", "w2", 1, "b")).await, Ok(()));
    wait_until(|| d.handle.works().len() == 2).await;
    let all = StatusHashList::default();
    let rogue = d.send(status_resync_request("rogue", "c1", &all)).await;
    assert!(matches!(rogue, Err(HandlerError::Permanent(_))), "{rogue:?}");
    // refused synchronously, before any response is spawned: only the accepted request's
    // responses (one per work) ever appear
    assert_eq!(d.send(status_resync_request("maestro-b", "c1", &all)).await, Ok(()));
    wait_until(|| d.published("status.resync_response").len() == 2).await;
    d.stop().await;
}

/// No accepted source id is a configuration error at start.
#[tokio::test]
async fn empty_accepted_sources_is_refused() {
    let mut config = AgentConfig::new("c1");
    config.accepted_sources.clear();
    let (signal, _) = watch::channel(0);
    let t = Arc::new(Capture { handler: Mutex::new(None), published: Mutex::new(vec![]), signal });
    let agent = Agent::new(config, t, Arc::new(SimulatedCluster::new()));
    let err = agent.run(std::future::pending()).await.expect_err("refused");
    assert!(err.to_string().contains("accepted_sources"), "{err}");
}

#[tokio::test]
async fn malformed_and_foreign_specs() {
    let d = Direct::start(AgentConfig::new("c1")).await;
    let (handle, cluster) = (d.handle.clone(), d.cluster.clone());
    let send = |e: Event| d.send(e);
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
    d.stop().await;
}
