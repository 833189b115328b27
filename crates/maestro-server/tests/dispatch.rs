//! The spec dispatcher over the in-memory broker, on PostgreSQL (creations come through the
//! store's spec feed, the rest from the outbox) and on SQLite (outbox only): creations racing
//! with updates, creations while the broker is down, and rows pending from before the
//! dispatcher started all reach the agent, each version exactly once, and the outbox ends
//! with nothing pending.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use maestro_api::{Event, ext};
use maestro_server::dispatch::{self, DispatchConfig};
use maestro_store::{DynStore, NewConsumer, NewResource, testing};
use maestro_transport::memory::MemoryBroker;
use maestro_transport::retry::CancellationToken;
use maestro_transport::{AgentTransport, DynSourceTransport, EventHandler, HandlerError, SourceTransport};
use serde_json::json;
use tokio::sync::Notify;

/// Counts the spec events the agent receives per (resource id, version).
#[derive(Default)]
struct Received {
    seen: Mutex<HashMap<(String, i64), usize>>,
    changed: Notify,
}

#[async_trait]
impl EventHandler for Received {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let id = ext::resource_id(event).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let version = ext::resource_version(event).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()).entry((id, version)).or_default() += 1;
        self.changed.notify_waiters();
        Ok(())
    }
}

impl Received {
    fn snapshot(&self) -> HashMap<(String, i64), usize> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (20 s at most) until every `(id, version)` of `want` was received.
    async fn wait_for(&self, want: &[(String, i64)]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let changed = self.changed.notified();
            let seen = self.snapshot();
            let missing: Vec<_> = want.iter().filter(|k| !seen.contains_key(*k)).collect();
            if missing.is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("{} spec events never arrived, e.g. {:?}", missing.len(), missing.first());
            }
        }
    }
}

fn new_resource(id: &str) -> NewResource {
    NewResource {
        id: id.to_owned(),
        name: id.to_owned(),
        consumer_name: "c1".into(),
        source: "source-a".into(),
        payload: json!({"specversion": "1.0", "id": format!("ev-{id}"), "source": "source-a",
                        "type": "io.open-cluster-management.works.v1alpha1.manifestbundles.spec.create_request",
                        "data": {"manifests": [{"apiVersion": "v1", "kind": "ConfigMap"}]}}).into(),
    }
}

async fn create_all(store: &DynStore, ids: &[String]) {
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, new) = (store.clone(), new_resource(id));
            tokio::spawn(async move { store.create_resource(new).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("join").expect("create");
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

async fn every_version_once(store: DynStore) {
    every_version_once_through(store, |source| source).await;
}

/// [`every_version_once`] with the dispatcher's source transport built by `wrap` from the
/// in-memory broker's.
async fn every_version_once_through(
    store: DynStore,
    wrap: impl FnOnce(DynSourceTransport) -> DynSourceTransport,
) {
    store
        .create_consumer(NewConsumer { name: Some("c1".into()), labels: Default::default() })
        .await
        .expect("consumer");
    let broker = MemoryBroker::new();
    let received = Arc::new(Received::default());
    broker.agent("c1").start(received.clone()).await.expect("agent");
    let source: DynSourceTransport = wrap(broker.source());
    let (early, racing, outage) = (ids("p", 10), ids("r", 60), ids("q", 10));
    create_all(&store, &early).await;

    let stop = CancellationToken::new();
    let config = DispatchConfig { batch: 7, sweep: Duration::from_millis(50) };
    let task = tokio::spawn(dispatch::run(store.clone(), source, "maestro".into(), config, stop.clone()));
    // Creations race with updates, whose commit signals make the dispatcher read the outbox.
    let updates = {
        let store = store.clone();
        let early = early.clone();
        tokio::spawn(async move {
            for id in &early {
                store.update_resource(id, 0, json!({"specversion": "1.0", "v": 2})).await.expect("update");
            }
        })
    };
    create_all(&store, &racing).await;
    updates.await.expect("updates");
    // Creations while the broker is down stay pending and go out once it is back.
    broker.interrupt();
    create_all(&store, &outage).await;
    broker.resume();

    let mut want: Vec<(String, i64)> = early.iter().map(|id| (id.clone(), 2)).collect();
    want.extend(racing.iter().chain(&outage).map(|id| (id.clone(), 1)));
    received.wait_for(&want).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !store.pending_spec_events(1000).await.expect("pending").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "outbox rows still pending after 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    task.await.expect("dispatcher");
    let seen = received.snapshot();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert!(seen.keys().all(|(id, v)| *v == 1 || early.contains(id)), "unexpected versions: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_once_on_postgres() {
    let url = testing::postgres_url().await;
    every_version_once(maestro_store::open(&url).await.expect("open postgres")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_once_on_sqlite() {
    let (_dir, url) = testing::sqlite_file().await;
    every_version_once(maestro_store::open(&url).await.expect("open sqlite")).await;
}

/// A source transport that keeps no order ([`SourceTransport::publish_concurrency`] 8), over
/// the in-memory broker's, recording in `most` the most publishes it saw in flight at once;
/// each publish takes 2 ms, as a round trip to a broker would.
#[derive(Debug)]
struct Unordered {
    inner: DynSourceTransport,
    in_flight: AtomicUsize,
    most: Arc<AtomicUsize>,
}

#[async_trait]
impl SourceTransport for Unordered {
    fn backend(&self) -> &'static str {
        "unordered"
    }

    async fn publish(&self, event: &Event) -> maestro_transport::Result<()> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let result = self.inner.publish(event).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }

    async fn start(&self, handler: maestro_transport::DynHandler) -> maestro_transport::Result<()> {
        self.inner.start(handler).await
    }

    fn subscribed(&self) -> maestro_transport::Subscribed {
        self.inner.subscribed()
    }

    fn publish_concurrency(&self) -> usize {
        8
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

/// On a broker that keeps no order (Pub/Sub) the dispatcher has several publishes in flight,
/// and still sends every version once, through an outage, leaving nothing pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unordered_broker_gets_publishes_in_flight_together_on_sqlite() {
    let (_dir, url) = testing::sqlite_file().await;
    let store = maestro_store::open(&url).await.expect("open sqlite");
    let most = Arc::new(AtomicUsize::new(0));
    let seen = most.clone();
    every_version_once_through(store, move |inner| {
        Arc::new(Unordered { inner, in_flight: AtomicUsize::new(0), most: seen }) as DynSourceTransport
    })
    .await;
    let most = most.load(Ordering::SeqCst);
    assert!(most > 1, "publishes went one at a time (at most {most} in flight)");
    assert!(most <= 8, "{most} publishes in flight, over the transport's 8");
}
