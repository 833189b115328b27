//! Bundles deleted lately (docs/protocol.md §5.6) at the server's ingestion handler, on a real
//! SQLite file store and the in-memory broker:
//! - a spec resync answer carries a `spec.delete_request` (with the bundle's incarnation) for
//!   each of the consumer's bundles deleted lately, listed by the agent or not, and none for
//!   a bundle re-created under the same id; they are not counted as unknown deletions;
//! - a status of a work the store no longer holds, deleted lately (an agent re-created it from
//!   a late spec), gets that deletion sent again to its consumer; a `Deleted` status, or one
//!   from another consumer, does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use maestro_api::codec::{StatusEventBuilder, spec_resync_request};
use maestro_api::payload::{Condition, ManifestBundleStatus, ResourceVersion, ResourceVersionList};
use maestro_api::snowflake::Generator;
use maestro_api::types::Action;
use maestro_api::{AttributesReader, Event, ext};
use maestro_server::ingest::{Ingest, IngestLimits};
use maestro_store::{DynStore, NewConsumer, Resource, StatusOutcome, StatusWrite};
use maestro_transport::memory::MemoryBroker;
use maestro_transport::{AgentTransport, EventHandler, HandlerError};
use serde_json::json;

mod common;

const SOURCE: &str = "maestro";

/// Records what the server publishes to an agent.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: DynStore,
    broker: MemoryBroker,
    agent: Arc<Recorder>,
    ids: Generator,
}

impl Fixture {
    /// Consumers `c1` and `c2`; `c1` holds `live`, and `gone` and `back` were deleted (their
    /// agent confirmed), `back` then re-created under the same id.
    async fn new() -> Fixture {
        let (dir, url) = maestro_store::testing::sqlite_file().await;
        let store = maestro_store::open(&url).await.expect("open sqlite");
        for c in ["c1", "c2"] {
            store
                .create_consumer(NewConsumer { name: Some(c.into()), labels: Default::default() })
                .await
                .expect(c);
        }
        let broker = MemoryBroker::new();
        let agent = Arc::new(Recorder::default());
        broker.agent("c1").start(agent.clone()).await.expect("agent");
        let fx = Fixture { _dir: dir, store, broker, agent, ids: Generator::default() };
        fx.store.create_resource(common::config_map_bundle("live", "c1", SOURCE)).await.expect("live");
        for id in ["gone", "back"] {
            let r = fx.store.create_resource(common::config_map_bundle(id, "c1", SOURCE)).await.expect(id);
            fx.confirm_deletion(&r).await;
        }
        fx.store.create_resource(common::config_map_bundle("back", "c1", SOURCE)).await.expect("re-created");
        fx
    }

    async fn confirm_deletion(&self, r: &Resource) {
        self.store.mark_deleting(&r.id).await.expect("mark").expect("known");
        let write = StatusWrite {
            resource_id: r.id.clone(),
            consumer_name: r.consumer_name.clone(),
            version: r.version,
            sequence_id: self.ids.next_string(),
            status_hash: None,
            event: json!({"specversion": "1.0"}).to_string(),
            deleted: true,
        };
        assert_eq!(self.store.apply_status(write).await.expect("apply"), StatusOutcome::Deleted);
    }

    fn ingest(&self) -> Arc<Ingest> {
        Ingest::with_limits(self.store.clone(), self.broker.source(), SOURCE, IngestLimits::default())
    }

    /// A status of work `id` from the agent of `consumer`, with condition `condition` true.
    fn status(&self, id: &str, consumer: &str, condition: &str) -> Event {
        let mut status = ManifestBundleStatus::default();
        status.conditions.push(Condition {
            kind: condition.into(),
            status: "True".into(),
            ..Default::default()
        });
        StatusEventBuilder {
            source: &format!("{consumer}-work-agent"),
            resource_id: id,
            resource_version: 1,
            cluster_name: consumer,
            original_source: SOURCE,
            sequence_id: &self.ids.next_string(),
            status_hash: "h",
            metadata: None,
            action: Action::Update,
        }
        .build(&status)
    }
}

async fn wait_for(agent: &Recorder, what: &str, pred: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = agent.events();
        if pred(&events) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within 10 s: {:?}",
            events.iter().map(summary).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(type suffix, resource id)` of an event.
fn summary(e: &Event) -> (String, String) {
    let ty = e.ty().rsplit('.').take(2).collect::<Vec<_>>().join("<");
    (ty, ext::get_str(e, ext::RESOURCE_ID).unwrap_or_default())
}

fn deletion_of<'a>(events: &'a [Event], id: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| {
            ext::get_str(e, ext::RESOURCE_ID).as_deref() == Some(id)
                && e.extension(ext::DELETION_TIMESTAMP).is_some()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_answer_carries_the_deletions_of_bundles_deleted_lately() {
    let fx = Fixture::new().await;
    let listed = |id: &str| ResourceVersion { resource_id: id.into(), resource_version: 1 };
    let request = ResourceVersionList { resource_versions: vec![listed("gone"), listed("stranger")] };
    let ingest = fx.ingest(); // kept: dropping it aborts the answer
    let request_event = spec_resync_request("c1-work-agent", "c1", &request);
    ingest.handle(&request_event).await.expect("request taken");
    let events = wait_for(&fx.agent, "answer", |e| {
        !deletion_of(e, "stranger").is_empty() && !deletion_of(e, "gone").is_empty()
    })
    .await;

    let gone = deletion_of(&events, "gone");
    assert_eq!(gone.len(), 1, "one deletion of gone");
    assert!(gone[0].ty().ends_with(".spec.delete_request"), "{}", gone[0].ty());
    let created = fx.store.deleted_resource("gone").await.expect("read").expect("remembered").created_at;
    let meta = ext::metadata(gone[0]).expect("metadata").expect("present");
    assert_eq!(
        meta["creationTimestamp"],
        json!(created.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    );
    let stranger = deletion_of(&events, "stranger");
    assert!(stranger[0].ty().ends_with(".spec.resync_response"), "an unknown deletion");
    assert_eq!(ext::get_str(stranger[0], ext::RESYNC_DELETES).as_deref(), Some("1"), "gone is not unknown");
    assert!(deletion_of(&events, "back").is_empty(), "back is live again: not deleted");
    assert!(deletion_of(&events, "live").is_empty());
    assert!(
        events.iter().any(|e| ext::get_str(e, ext::RESOURCE_ID).as_deref() == Some("back")),
        "back is sent as live"
    );
    // Sent last, so the whole answer is in: each of its spec events counts them (§5.2).
    let answer: Vec<&Event> = events.iter().filter(|e| e.ty().contains(".spec.")).collect();
    let totals: std::collections::HashSet<Option<String>> =
        answer.iter().map(|e| ext::get_str(e, ext::RESYNC_EVENTS)).collect();
    assert_eq!(totals, std::collections::HashSet::from([Some(answer.len().to_string())]));
    let ids: std::collections::HashSet<Option<String>> =
        answer.iter().map(|e| ext::get_str(e, ext::RESYNC_ANSWER)).collect();
    let request_id = maestro_api::AttributesReader::id(&request_event).to_owned();
    assert_eq!(ids, std::collections::HashSet::from([Some(request_id)]), "the request's id on every event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_re_created_from_a_late_spec_is_deleted_again() {
    let fx = Fixture::new().await;
    let ingest = fx.ingest();
    // Neither a Deleted status nor another consumer's status sends anything.
    ingest.handle(&fx.status("gone", "c1", "Deleted")).await.expect("taken");
    ingest.handle(&fx.status("gone", "c2", "Applied")).await.expect("taken");
    ingest.handle(&fx.status("never-was", "c1", "Applied")).await.expect("taken");
    ingest.handle(&fx.status("gone", "c1", "Applied")).await.expect("taken");
    let events = wait_for(&fx.agent, "deletion of gone", |e| !deletion_of(e, "gone").is_empty()).await;
    assert_eq!(
        events.len(),
        1,
        "only the deletion of gone: {:?}",
        events.iter().map(summary).collect::<Vec<_>>()
    );
    assert!(events[0].ty().ends_with(".spec.delete_request"));
    assert_eq!(ext::get_str(&events[0], ext::CLUSTER_NAME).as_deref(), Some("c1"));
}
