//! The transport conformance suite: one public entry point, [`run_all`], that every backend's
//! tests call with a [`Harness`] over real connections. It checks the contract of the crate
//! docs: delivery and routing by consumer, per-consumer order, redelivery after a retryable
//! handler failure, dropping after a permanent one, size limits, fast publish failure while
//! disconnected, and reconnect with a fresh "subscribed" signal.
//!
//! Failures panic with a message naming the broken rule (this is test support code).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use maestro_api::codec::{SpecEventBuilder, StatusEventBuilder};
use maestro_api::payload::ManifestBundleStatus;
use maestro_api::types::Action;
use maestro_api::{AttributesReader, Event, ext};
use serde_json::json;
use tokio::sync::Notify;

use crate::{DynAgentTransport, DynSourceTransport, Error, EventHandler, HandlerError, Subscribed};

/// How long any single expectation may take.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// What a backend's test provides: fresh endpoints on one broker and a way to take the broker
/// (or the connection to it) down and back up.
#[async_trait]
pub trait Harness: Send {
    /// The size limit the endpoints were configured with (bytes of structured JSON).
    fn max_event_bytes(&self) -> usize;
    /// A new, not yet started, source endpoint (called once).
    async fn source(&mut self) -> DynSourceTransport;
    /// A new, not yet started, agent endpoint for `consumer` (called once per consumer).
    async fn agent(&mut self, consumer: &str) -> DynAgentTransport;
    /// Takes the broker down (or cuts every connection to it).
    async fn interrupt(&mut self);
    /// Brings the broker back.
    async fn resume(&mut self);
}

/// A handler that records what it accepted and fails on request.
#[derive(Default)]
pub struct Recorder {
    state: Mutex<RecState>,
    notify: Notify,
}

#[derive(Default)]
struct RecState {
    acked: Vec<Event>,
    attempts: HashMap<String, u32>,
    retry_plan: HashMap<String, u32>,
    permanent: HashSet<String>,
}

impl Recorder {
    /// A new recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder::default())
    }

    /// Makes the next `times` deliveries of event `id` fail with a retryable error.
    pub fn fail_retryable(&self, id: &str, times: u32) {
        self.state.lock().unwrap().retry_plan.insert(id.to_owned(), times);
    }

    /// Makes every delivery of event `id` fail permanently.
    pub fn fail_permanently(&self, id: &str) {
        self.state.lock().unwrap().permanent.insert(id.to_owned());
    }

    /// The ids acknowledged so far, in order.
    pub fn acked_ids(&self) -> Vec<String> {
        self.state.lock().unwrap().acked.iter().map(|e| e.id().to_owned()).collect()
    }

    /// How many times event `id` was delivered.
    pub fn attempts(&self, id: &str) -> u32 {
        self.state.lock().unwrap().attempts.get(id).copied().unwrap_or(0)
    }

    /// Waits until `pred` holds for the acknowledged events.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Event]) -> bool) {
        let start = Instant::now();
        loop {
            let notified = self.notify.notified();
            if pred(&self.state.lock().unwrap().acked) {
                return;
            }
            let left = DEADLINE.checked_sub(start.elapsed()).unwrap_or_default();
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                panic!("conformance: timed out waiting for {what}; acked: {:?}", self.acked_ids());
            }
        }
    }
}

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let mut st = self.state.lock().unwrap();
        let id = event.id().to_owned();
        *st.attempts.entry(id.clone()).or_default() += 1;
        if st.permanent.contains(&id) {
            return Err(HandlerError::Permanent("planned".into()));
        }
        if let Some(n) = st.retry_plan.get_mut(&id).filter(|n| **n > 0) {
            *n -= 1;
            return Err(HandlerError::Retryable("planned".into()));
        }
        st.acked.push(event.clone());
        drop(st);
        self.notify.notify_waiters();
        Ok(())
    }
}

fn spec(id: &str, cluster: &str, version: i64) -> Event {
    let bundle = json!({"manifests":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"default"}}]});
    let mut ev = SpecEventBuilder::new("maestro", "conformance", version, cluster)
        .action(Action::Update)
        .bundle_json(bundle)
        .build();
    maestro_api::AttributesWriter::set_id(&mut ev, id.to_owned());
    ev
}

fn status(id: &str, cluster: &str, version: i64) -> Event {
    let seq = (version << 22 | 1 << 12).to_string();
    let mut ev = StatusEventBuilder {
        source: "conformance-agent",
        resource_id: "conformance",
        resource_version: version,
        cluster_name: cluster,
        original_source: "maestro",
        sequence_id: &seq,
        status_hash: "0",
        metadata: None,
        action: Action::Update,
    }
    .build(&ManifestBundleStatus::default());
    maestro_api::AttributesWriter::set_id(&mut ev, id.to_owned());
    ev
}

async fn wait_subscribed(sig: &mut Subscribed, above: u64, what: &str) {
    let res = tokio::time::timeout(DEADLINE, sig.wait_for(|v| *v > above)).await;
    assert!(matches!(res, Ok(Ok(_))), "conformance: {what} never signalled subscribed (> {above})");
}

/// Publishes, retrying retryable errors (e.g. a subscription not yet registered) until the
/// deadline.
async fn publish_retry<F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) if e.is_retryable() && start.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("conformance: publishing {what} failed: {e}"),
        }
    }
}

struct Setup {
    source: DynSourceTransport,
    agents: Vec<(DynAgentTransport, Arc<Recorder>)>,
    source_rec: Arc<Recorder>,
}

async fn setup<H: Harness>(h: &mut H) -> Setup {
    let source = h.source().await;
    let source_rec = Recorder::new();
    source.start(source_rec.clone()).await.expect("source start");
    let mut agents = Vec::new();
    for consumer in ["conformance-a", "conformance-b"] {
        let agent = h.agent(consumer).await;
        let rec = Recorder::new();
        agent.start(rec.clone()).await.expect("agent start");
        wait_subscribed(&mut agent.subscribed(), 0, consumer).await;
        agents.push((agent, rec));
    }
    wait_subscribed(&mut source.subscribed(), 0, "source").await;
    assert!(
        matches!(source.start(Recorder::new()).await, Err(Error::AlreadyStarted { .. })),
        "conformance: a second start must fail with AlreadyStarted"
    );
    Setup { source, agents, source_rec }
}

/// Runs every check against the harness's broker. Panics on the first broken rule.
pub async fn run_all<H: Harness>(h: &mut H) {
    let s = setup(h).await;
    delivery_routing_and_order(&s).await;
    redelivery_after_retryable_failure(&s).await;
    permanent_failure_drops(&s).await;
    size_limit(&s, h.max_event_bytes()).await;
    reconnect(&s, h).await;
    for (a, _) in &s.agents {
        a.close().await;
    }
    s.source.close().await;
}

async fn delivery_routing_and_order(s: &Setup) {
    let (a, rec_a) = (&s.agents[0].0, &s.agents[0].1);
    let rec_b = &s.agents[1].1;
    let n = 20;
    for v in 1..=n {
        for c in ["conformance-a", "conformance-b"] {
            let ev = spec(&format!("order-{c}-{v}"), c, v);
            publish_retry("spec", || s.source.publish(&ev)).await;
        }
    }
    for (rec, c) in [(rec_a, "conformance-a"), (rec_b, "conformance-b")] {
        let prefix = format!("order-{c}-");
        rec.wait_for("ordered specs", |evs| {
            evs.iter().filter(|e| e.id().starts_with(&prefix)).count() >= n as usize
        })
        .await;
        let ids: Vec<String> = rec.acked_ids().into_iter().filter(|i| i.starts_with("order-")).collect();
        let want: Vec<String> = (1..=n).map(|v| format!("{prefix}{v}")).collect();
        assert_eq!(ids, want, "conformance: {c} must receive exactly its own specs, in order");
    }
    for v in 1..=n {
        let ev = status(&format!("status-order-{v}"), "conformance-a", v);
        publish_retry("status", || a.publish(&ev)).await;
    }
    s.source_rec
        .wait_for("ordered statuses", |evs| {
            evs.iter().filter(|e| e.id().starts_with("status-order-")).count() >= n as usize
        })
        .await;
    let ids: Vec<String> =
        s.source_rec.acked_ids().into_iter().filter(|i| i.starts_with("status-order-")).collect();
    let want: Vec<String> = (1..=n).map(|v| format!("status-order-{v}")).collect();
    assert_eq!(ids, want, "conformance: statuses must arrive in order");
    let st = s.source_rec.acked_ids();
    let ev = s.source_rec.state.lock().unwrap().acked.iter().find(|e| e.id() == "status-order-1").cloned();
    assert_eq!(st.len(), st.iter().collect::<HashSet<_>>().len(), "conformance: no duplicate statuses");
    let ev = ev.expect("first status");
    assert_eq!(
        ext::get_str(&ev, ext::SEQUENCE_ID),
        Some((1i64 << 22 | 1 << 12).to_string()),
        "extensions survive"
    );
}

async fn redelivery_after_retryable_failure(s: &Setup) {
    let rec_a = &s.agents[0].1;
    rec_a.fail_retryable("redeliver-x", 2);
    for id in ["redeliver-x", "redeliver-y"] {
        let ev = spec(id, "conformance-a", 1);
        publish_retry("spec", || s.source.publish(&ev)).await;
    }
    rec_a.wait_for("redelivered spec", |evs| evs.iter().any(|e| e.id() == "redeliver-y")).await;
    assert_eq!(rec_a.attempts("redeliver-x"), 3, "conformance: a failed spec delivery must be redelivered");
    let ids = rec_a.acked_ids();
    let pos = |id: &str| ids.iter().position(|i| i == id);
    assert!(pos("redeliver-x") < pos("redeliver-y"), "conformance: redelivery must keep order");

    s.source_rec.fail_retryable("redeliver-p", 2);
    let agent = &s.agents[0].0;
    for id in ["redeliver-p", "redeliver-q"] {
        let ev = status(id, "conformance-a", 1);
        publish_retry("status", || agent.publish(&ev)).await;
    }
    s.source_rec.wait_for("redelivered status", |evs| evs.iter().any(|e| e.id() == "redeliver-q")).await;
    assert!(
        s.source_rec.attempts("redeliver-p") >= 3,
        "conformance: a failed status delivery must be redelivered"
    );
    let ids = s.source_rec.acked_ids();
    let pos = |id: &str| ids.iter().position(|i| i == id);
    assert!(pos("redeliver-p") < pos("redeliver-q"), "conformance: status redelivery must keep order");
}

async fn permanent_failure_drops(s: &Setup) {
    let rec_a = &s.agents[0].1;
    rec_a.fail_permanently("drop-z");
    for id in ["drop-z", "drop-w"] {
        let ev = spec(id, "conformance-a", 1);
        publish_retry("spec", || s.source.publish(&ev)).await;
    }
    rec_a.wait_for("event after a dropped one", |evs| evs.iter().any(|e| e.id() == "drop-w")).await;
    assert_eq!(rec_a.attempts("drop-z"), 1, "conformance: a permanently rejected event is not redelivered");
}

async fn size_limit(s: &Setup, limit: usize) {
    let mut big = spec("too-large", "conformance-a", 1);
    let padding = "x".repeat(limit + 1);
    let bundle = json!({"manifests":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"x":padding}}]});
    big.set_data("application/json", maestro_api::Data::Json(bundle));
    let err = s.source.publish(&big).await.expect_err("oversized spec must be refused");
    assert!(matches!(err, Error::TooLarge { .. }), "conformance: expected TooLarge, got {err}");
    assert!(!err.is_retryable(), "conformance: TooLarge is not retryable");
    let mut big_status = status("too-large-status", "conformance-a", 1);
    big_status.set_data(
        "application/json",
        maestro_api::Data::Json(json!({"conditions":[], "pad": "x".repeat(limit + 1)})),
    );
    let err = s.agents[0].0.publish(&big_status).await.expect_err("oversized status must be refused");
    assert!(matches!(err, Error::TooLarge { .. }), "conformance: expected TooLarge, got {err}");
}

async fn reconnect<H: Harness>(s: &Setup, h: &mut H) {
    let agent = &s.agents[0].0;
    let mut sig = agent.subscribed();
    let before = *sig.borrow_and_update();
    h.interrupt().await;
    // The client may need a moment to notice; once it has, publish must fail fast.
    let start = Instant::now();
    loop {
        let ev = status("while-down", "conformance-a", 1);
        let t = Instant::now();
        match agent.publish(&ev).await {
            Err(e) => {
                assert!(
                    e.is_retryable(),
                    "conformance: publish while disconnected must be retryable, got {e}"
                );
                assert!(
                    t.elapsed() < Duration::from_secs(5),
                    "conformance: publish while disconnected took {:?}",
                    t.elapsed()
                );
                break;
            }
            Ok(()) if start.elapsed() < DEADLINE => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(()) => panic!("conformance: publish kept succeeding after the broker went down"),
        }
    }
    h.resume().await;
    wait_subscribed(&mut sig, before, "agent after reconnect").await;
    let ev = spec("after-reconnect", "conformance-a", 1);
    publish_retry("spec after reconnect", || s.source.publish(&ev)).await;
    s.agents[0]
        .1
        .wait_for("spec after reconnect", |evs| evs.iter().any(|e| e.id() == "after-reconnect"))
        .await;
    let ev = status("status-after-reconnect", "conformance-a", 1);
    publish_retry("status after reconnect", || agent.publish(&ev)).await;
    s.source_rec
        .wait_for("status after reconnect", |evs| evs.iter().any(|e| e.id() == "status-after-reconnect"))
        .await;
}
