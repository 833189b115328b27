//! Dead letters and agent limits (docs/security.md, "Dead letters" and "Limits"), at the
//! server's ingestion handler and spec dispatcher on a real SQLite file store and the
//! in-memory broker:
//! - a malformed status, a status of another source, an unexpected event type, a spec resync
//!   request over the id limit or from an unregistered consumer are refused permanently and
//!   set aside as dead letters holding the event and the reason; the bundle is unchanged;
//! - spec resync answers to one consumer are at least the minimum interval apart, and a
//!   request waiting for its turn is replaced by a newer one;
//! - a spec event the broker refuses for good is set aside as a dead letter before its outbox
//!   row is marked done (before, it was marked done and dropped: silent loss).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use maestro_api::codec::{StatusEventBuilder, spec_resync_request};
use maestro_api::payload::{ManifestBundleStatus, ResourceVersion, ResourceVersionList};
use maestro_api::snowflake::Generator;
use maestro_api::types::{Action, EventType};
use maestro_api::{AttributesReader, Event, ext};
use maestro_server::ingest::{Ingest, IngestLimits};
use maestro_store::{DeadLetter, DeadLetterOrigin, DeadLetterQuery, DynStore, NewConsumer};
use maestro_transport::memory::MemoryBroker;
use maestro_transport::{AgentTransport, EventHandler, HandlerError};

mod common;

const SOURCE: &str = "maestro";
const RID: &str = "68ebf474-6709-48bb-b760-386181268060";

/// Records what the server publishes to an agent, with when.
#[derive(Default)]
struct Recorder(Mutex<Vec<(Instant, Event)>>);

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push((Instant::now(), event.clone()));
        Ok(())
    }
}

impl Recorder {
    fn events(&self) -> Vec<(Instant, Event)> {
        self.0.lock().unwrap().clone()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: DynStore,
    broker: MemoryBroker,
    agent: Arc<Recorder>,
}

async fn fixture(max_event_bytes: usize) -> Fixture {
    let (dir, url) = maestro_store::testing::sqlite_file().await;
    let store = maestro_store::open(&url).await.expect("open sqlite");
    store
        .create_consumer(NewConsumer { name: Some("c1".into()), labels: Default::default() })
        .await
        .expect("c1");
    let new = common::config_map_bundle(RID, "c1", SOURCE);
    store.create_resource(new).await.expect("resource");
    let broker = MemoryBroker::with_max_event_bytes(max_event_bytes);
    let agent = Arc::new(Recorder::default());
    broker.agent("c1").start(agent.clone()).await.expect("agent");
    Fixture { _dir: dir, store, broker, agent }
}

fn status(ids: &Generator, original_source: &str) -> Event {
    StatusEventBuilder {
        source: "c1-work-agent",
        resource_id: RID,
        resource_version: 1,
        cluster_name: "c1",
        original_source,
        sequence_id: &ids.next_string(),
        status_hash: "h",
        metadata: None,
        action: Action::Update,
    }
    .build(&ManifestBundleStatus::default())
}

fn resync(cluster: &str, ids: &[&str]) -> Event {
    let versions = ResourceVersionList {
        resource_versions: ids
            .iter()
            .map(|id| ResourceVersion { resource_id: (*id).into(), resource_version: 1 })
            .collect(),
    };
    spec_resync_request(&format!("{cluster}-work-agent"), cluster, &versions)
}

async fn letters(store: &DynStore) -> Vec<DeadLetter> {
    store.list_dead_letters(&DeadLetterQuery::default()).await.expect("dead letters").items
}

/// Every refused agent event is answered `Permanent` and leaves exactly one dead letter with
/// its reason and event; the bundle row stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_agent_events_become_dead_letters() {
    let fx = fixture(256 * 1024).await;
    let limits =
        IngestLimits { max_resync_ids: 3, max_resync_request_bytes: 2048, ..IngestLimits::default() };
    let ingest = Ingest::with_limits(fx.store.clone(), fx.broker.source(), SOURCE, limits);
    let before = fx.store.get_resource(RID).await.expect("bundle");
    let ids = Generator::default();

    let mut no_version = status(&ids, SOURCE);
    no_version.remove_extension(ext::RESOURCE_VERSION);
    let mut other_type = status(&ids, SOURCE);
    let spec_type = EventType::parse(other_type.ty()).unwrap().to_string().replace("status", "spec");
    maestro_api::AttributesWriter::set_type(&mut other_type, spec_type);
    let cases: Vec<(Event, DeadLetterOrigin, &str)> = vec![
        (no_version, DeadLetterOrigin::Status, "resourceversion"),
        (status(&ids, "someone-else"), DeadLetterOrigin::Status, "originalsource"),
        (other_type, DeadLetterOrigin::Agent, "unexpected event type"),
        (resync("c1", &["a", "b", "c", "d"]), DeadLetterOrigin::SpecResync, "over the limit of 3"),
        (resync("c1", &[&"x".repeat(2048)]), DeadLetterOrigin::SpecResync, "over the limit of 2048 bytes"),
        (resync("ghost", &[]), DeadLetterOrigin::SpecResync, "\"ghost\" is not registered"),
    ];
    for (i, (event, origin, reason)) in cases.iter().enumerate() {
        let answer = ingest.handle(event).await;
        assert!(
            matches!(&answer, Err(HandlerError::Permanent(r)) if r.contains(reason)),
            "case {i}: {answer:?}"
        );
        let all = letters(&fx.store).await;
        assert_eq!(all.len(), i + 1, "case {i}: one more dead letter");
        let d = &all[0];
        assert_eq!(
            (d.origin, d.broker.as_str(), d.event_id.as_deref()),
            (*origin, "memory", Some(event.id())),
            "case {i}"
        );
        assert!(d.reason.contains(reason), "case {i}: {}", d.reason);
        let kept: serde_json::Value =
            serde_json::from_str(d.event.as_deref().expect("event kept")).expect("json");
        assert_eq!(kept, maestro_api::json::to_value(event), "case {i}: the event as received");
    }
    assert_eq!(fx.store.get_resource(RID).await.expect("bundle"), before, "the bundle is unchanged");
    assert!(fx.agent.events().is_empty(), "no resync answer was sent");
}

/// Answers to one consumer start at least the minimum interval apart; of two requests that
/// wait for their turn, only the newer is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_answers_are_spaced_and_coalesced() {
    let fx = fixture(256 * 1024).await;
    let interval = Duration::from_millis(400);
    let limits = IngestLimits { resync_min_interval: interval, ..IngestLimits::default() };
    let ingest = Ingest::with_limits(fx.store.clone(), fx.broker.source(), SOURCE, limits);
    // Each request names one unknown id: its answer carries a delete for that id.
    let deleted = |events: &[(Instant, Event)]| -> Vec<(Instant, String)> {
        events
            .iter()
            .filter_map(|(t, e)| {
                ext::get_str(e, ext::RESOURCE_ID).filter(|id| id.starts_with('x')).map(|id| (*t, id))
            })
            .collect()
    };
    ingest.handle(&resync("c1", &["x1"])).await.expect("request taken");
    wait(|| async { (!deleted(&fx.agent.events()).is_empty()).then_some(()) }).await;
    // Two more at once: both wait for the interval; the newer replaces the older.
    for id in ["x2", "x3"] {
        ingest.handle(&resync("c1", &[id])).await.expect("request taken");
    }
    let got = wait(|| async {
        let d = deleted(&fx.agent.events());
        (d.len() >= 2).then_some(d)
    })
    .await;
    assert_eq!(
        got.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(),
        vec!["x1", "x3"],
        "x2 was replaced by x3"
    );
    assert!(
        got[1].0 - got[0].0 >= interval - Duration::from_millis(50),
        "answers {:?} apart",
        got[1].0 - got[0].0
    );
    assert_eq!(letters(&fx.store).await.len(), 0);
}

/// A spec event over the broker's limit (stored before the limit was lowered) is set aside as
/// a `spec_publish` dead letter and only then marked done; before the fix it was marked done
/// and dropped without a trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_the_broker_refuses_is_recorded_before_it_is_marked_done() {
    let fx = fixture(64).await; // smaller than any spec event
    let stop = maestro_transport::retry::CancellationToken::new();
    let dispatcher = tokio::spawn(maestro_server::dispatch::run(
        fx.store.clone(),
        fx.broker.source(),
        SOURCE.into(),
        maestro_server::dispatch::DispatchConfig::default(),
        stop.clone(),
    ));
    let d = wait(|| async { letters(&fx.store).await.into_iter().next() }).await;
    assert_eq!(
        (d.origin, d.consumer_name.as_deref(), d.resource_id.as_deref()),
        (DeadLetterOrigin::SpecPublish, Some("c1"), Some(RID))
    );
    assert!(d.reason.contains("version 1 refused by the broker"), "{}", d.reason);
    wait(|| async { fx.store.pending_spec_events(10).await.unwrap().is_empty().then_some(()) }).await;
    assert!(fx.agent.events().is_empty());
    stop.cancel();
    dispatcher.await.unwrap();
}

/// Waits (up to 10 s) for `f` to give a value.
async fn wait<T, Fut: std::future::Future<Output = Option<T>>>(f: impl Fn() -> Fut) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
