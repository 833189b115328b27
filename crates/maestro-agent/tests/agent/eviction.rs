//! Works that vanish from the source (docs/protocol.md §8.3) on the simulated cluster, which
//! keeps AppliedManifestWork records: the eviction grace period, its cancellation by a spec,
//! and a restarted agent that restores its works from the records, adopts the ones the
//! store still holds without re-creating anything, and keeps the objects of the ones a new
//! store lost.

use std::sync::Arc;
use std::time::Duration;

use maestro_agent::wipe_guard::{ORPHANED, REASON_IDENTITY};
use maestro_agent::{AgentConfig, SimulatedCluster};
use maestro_transport::SourceTransport;
use serde_json::Value;

use crate::common::*;
use crate::wipe_guard::{send_deletes, spec};

/// The agent's configuration; the start-up hold is off (these tests play a server that sends
/// no counted resync answer), except in the tests of the hold, which use [`holding`].
fn config(grace: Duration) -> AgentConfig {
    let mut config = holding(grace);
    config.startup_hold = Duration::ZERO;
    config
}

/// [`config`] with the start-up hold at its default.
fn holding(grace: Duration) -> AgentConfig {
    let mut config = AgentConfig::new("c1");
    config.eviction_grace_period = grace;
    config.orphan_recheck_interval = Duration::from_millis(100);
    config
}

/// The uid of ConfigMap `name`, if it exists.
fn uid(sim: &SimulatedCluster, name: &str) -> Option<Value> {
    sim.object("v1", "ConfigMap", "default", name).map(|o| o["metadata"]["uid"].clone())
}

/// Starts an agent on `sim` and gives it works `w0..w{n}` from store `store`, all Applied.
async fn holding_on(n: usize, config: AgentConfig, sim: Arc<SimulatedCluster>, store: &str) -> Harness {
    let (h, _) = Harness::start_restoring(config, sim.clone(), sim).await;
    for i in 0..n {
        h.source.publish(&spec(&h, &format!("w{i}"), store)).await.expect("publish");
    }
    for i in 0..n {
        h.wait_status(&format!("w{i}"), |s| s.is_true("Applied")).await;
    }
    h
}

fn eviction_recorded(sim: &SimulatedCluster, id: &str) -> bool {
    sim.applied_works().iter().any(|r| r.resource_id == id && r.eviction_start.is_some())
}

/// A work the store no longer holds keeps its objects for the grace period (recorded in its
/// AppliedManifestWork), then is deleted.
#[tokio::test]
async fn a_vanished_work_is_deleted_after_the_grace_period() {
    let grace = Duration::from_millis(1500);
    let sim = Arc::new(SimulatedCluster::new());
    let h = holding_on(4, config(grace), sim.clone(), "store-a").await;
    send_deletes(&h, &["w0"], (Some("store-a"), Some(1), false)).await;
    wait_until(|| h.handle.work("w0").is_some_and(|w| w.eviction_start.is_some())).await;
    let start = h.handle.work("w0").and_then(|w| w.eviction_start).expect("start");
    assert!(uid(&sim, "w0").is_some(), "kept during the grace period");
    wait_until(|| eviction_recorded(&sim, "w0")).await;
    h.wait_status("w0", |s| s.is_true("Deleted")).await;
    let grace = chrono::Duration::from_std(grace).expect("grace");
    assert!(chrono::Utc::now() >= start + grace, "not deleted before the grace period ended");
    assert!(uid(&sim, "w0").is_none());
    assert!(!sim.applied_works().iter().any(|r| r.resource_id == "w0"), "its record is gone");
    assert_eq!(sim.len(), 3, "the other works keep theirs");
    h.stop().await;
}

/// A spec for the work during its grace period cancels the eviction: nothing re-created.
#[tokio::test]
async fn a_spec_cancels_the_eviction() {
    let sim = Arc::new(SimulatedCluster::new());
    let h = holding_on(3, config(Duration::from_secs(3600)), sim.clone(), "store-a").await;
    let before = uid(&sim, "w0").expect("object");
    send_deletes(&h, &["w0"], (Some("store-a"), Some(1), false)).await;
    wait_until(|| eviction_recorded(&sim, "w0")).await;
    h.source.publish(&spec(&h, "w0", "store-a")).await.expect("publish");
    wait_until(|| h.handle.work("w0").is_some_and(|w| w.eviction_start.is_none())).await;
    wait_until(|| !eviction_recorded(&sim, "w0")).await;
    assert_eq!(uid(&sim, "w0"), Some(before), "not re-created");
    h.stop().await;
}

/// A restarted agent restores its works from the records (listed at version 0 in its spec
/// resync request): the ones the store still holds are adopted in place, the one it lost
/// starts its eviction.
#[tokio::test]
async fn a_restarted_agent_adopts_its_recorded_works() {
    let sim = Arc::new(SimulatedCluster::new());
    let h = holding_on(4, config(Duration::from_secs(3600)), sim.clone(), "store-a").await;
    h.stop().await;
    let uids: Vec<Option<Value>> = (0..4).map(|i| uid(&sim, &format!("w{i}"))).collect();

    let (h, first) =
        Harness::start_restoring(config(Duration::from_secs(3600)), sim.clone(), sim.clone()).await;
    let listed = resync_versions(&first);
    assert_eq!(listed, (0..4).map(|i| (format!("w{i}"), 0)).collect::<Vec<_>>(), "restored at version 0");
    assert!(h.handle.works().iter().all(|w| w.restored));
    for i in 0..3 {
        h.source.publish(&spec(&h, &format!("w{i}"), "store-a")).await.expect("publish");
    }
    send_deletes(&h, &["w3"], (Some("store-a"), Some(1), false)).await;
    for i in 0..3 {
        h.wait_status(&format!("w{i}"), |s| s.is_true("Applied")).await;
    }
    wait_until(|| h.handle.work("w3").is_some_and(|w| w.eviction_start.is_some())).await;
    let after: Vec<Option<Value>> = (0..4).map(|i| uid(&sim, &format!("w{i}"))).collect();
    assert_eq!(after, uids, "nothing re-created, nothing deleted yet");
    assert!(h.handle.works().iter().all(|w| !w.restored));
    h.stop().await;
}

/// The records carry the store identity: a restarted agent answered by a new store that
/// lost every work orphans them all and deletes nothing, even with no grace period.
#[tokio::test]
async fn a_restarted_agent_keeps_what_a_new_store_lost() {
    let sim = Arc::new(SimulatedCluster::new());
    let h = holding_on(3, config(Duration::ZERO), sim.clone(), "store-a").await;
    h.stop().await;
    let (h, _) = Harness::start_restoring(config(Duration::ZERO), sim.clone(), sim.clone()).await;
    send_deletes(&h, &["w0", "w1", "w2"], (Some("store-b"), Some(3), false)).await;
    for id in ["w0", "w1", "w2"] {
        let ev = h.wait_status(id, |s| s.is_true(ORPHANED)).await;
        assert_eq!(decode(&ev).status.condition(ORPHANED).expect("condition").reason, REASON_IDENTITY);
        // The server refuses a status of no source: the orphan reports to the answer's.
        assert_eq!(decode(&ev).original_source, "maestro");
    }
    assert_eq!(sim.len(), 3, "every object kept");
    h.stop().await;
}

/// A restored work the source deletes (a delete spec, not a resync's unknown deletion) is
/// deleted, and its `Deleted` status names the source as `originalsource`: the server
/// refuses statuses from any other source, so an empty one left the bundle deleting forever
/// (found by the end-to-end main job: restart of an agent whose bundle was deleted meanwhile).
#[tokio::test]
async fn a_restored_work_deleted_by_its_source_reports_to_that_source() {
    let sim = Arc::new(SimulatedCluster::new());
    let h = holding_on(2, config(Duration::from_secs(3600)), sim.clone(), "store-a").await;
    h.stop().await;
    let (h, _) = Harness::start_restoring(config(Duration::from_secs(3600)), sim.clone(), sim.clone()).await;
    h.publish_delete("w0", 2).await;
    let ev = h.wait_status("w0", |s| s.is_true("Deleted")).await;
    assert_eq!(maestro_api::ext::get_str(&ev, maestro_api::ext::ORIGINAL_SOURCE).as_deref(), Some("maestro"));
    assert!(uid(&sim, "w0").is_none(), "its objects are deleted");
    assert!(uid(&sim, "w1").is_some(), "the other work keeps its objects");
    h.stop().await;
}

const FIRST: &str = "2026-01-01T00:00:00.000001Z";

/// Version `version` of work `id` from store `store`, its ConfigMap holding `a: <version>`;
/// a resync answer when `resync`; of the bundle incarnation created at [`FIRST`].
fn versioned(h: &Harness, id: &str, version: i64, store: &str, resync: bool) -> maestro_api::Event {
    reborn(h, id, version, store, resync, FIRST)
}

/// [`versioned`] of the bundle incarnation created at `created`.
fn reborn(
    h: &Harness,
    id: &str,
    version: i64,
    store: &str,
    resync: bool,
    created: &str,
) -> maestro_api::Event {
    use maestro_api::codec::SpecEventBuilder;
    use maestro_api::types::Action;
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), serde_json::json!(id));
    meta.insert("creationTimestamp".into(), serde_json::json!(created));
    let data = serde_json::json!({"a": version.to_string()});
    let manifest = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": id, "namespace": "default"}, "data": data});
    let action = if resync { Action::ResyncResponse } else { Action::Update };
    let mut ev = SpecEventBuilder::new("maestro", id, version, h.handle.consumer())
        .action(action)
        .metadata(meta)
        .bundle_json(serde_json::json!({"manifests": [manifest]}))
        .build();
    maestro_api::ext::set_str(&mut ev, maestro_api::ext::STORE_ID, store);
    ev
}

/// Applies work `w0` at version 1 (of the incarnation [`FIRST`], store `store-a`) on `sim`
/// with an agent of `config`, which is stopped once its record names that version.
async fn applied_and_stopped(sim: &Arc<SimulatedCluster>, config: AgentConfig) {
    let (h, _) = Harness::start_restoring(config, sim.clone(), sim.clone()).await;
    h.source.publish(&versioned(&h, "w0", 1, "store-a", false)).await.expect("publish");
    wait_until(|| sim.applied_works().iter().any(|r| r.resource_id == "w0" && r.generation == Some(1))).await;
    h.stop().await;
}

/// The source's deletion of bundle `id` (incarnation [`FIRST`]) at `version`, as the server
/// sends it for a bundle deleted lately (docs/protocol.md §5.6).
fn deleted_by_source(id: &str, version: i64) -> maestro_api::Event {
    use maestro_api::codec::SpecEventBuilder;
    use maestro_api::types::Action;
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), serde_json::json!(id));
    meta.insert("creationTimestamp".into(), serde_json::json!(FIRST));
    SpecEventBuilder::new("maestro", id, version, "c1")
        .action(Action::Delete)
        .metadata(meta)
        .deletion(chrono::Utc::now())
        .build()
}

fn data_a(sim: &SimulatedCluster, name: &str) -> Option<String> {
    sim.object("v1", "ConfigMap", "default", name).and_then(|o| o["data"]["a"].as_str().map(str::to_owned))
}

/// A restarted agent drops a late spec of its store older than the version it applied, a
/// resync answer too (an at-least-once broker resends, after newer events, what a dead
/// subscriber never acknowledged; the restarted agent has no memory of the event ids it
/// took), while a bundle re-created under the same id (another `creationTimestamp`) and a
/// spec of another store are applied at any version. Found by the
/// fault-injection suite (kill -9 of the agents and their clock skew on the Pub/Sub
/// emulator: objects written at gen 1, 3, 2, 3, and 1, 2, 1, 2 from a late resync answer).
#[tokio::test]
async fn a_restarted_agent_drops_a_late_older_spec_of_its_store() {
    let sim = Arc::new(SimulatedCluster::new());
    let (h, _) = Harness::start_restoring(config(Duration::from_secs(3600)), sim.clone(), sim.clone()).await;
    for version in 1..=3 {
        h.source.publish(&versioned(&h, "w0", version, "store-a", false)).await.expect("publish");
    }
    wait_until(|| data_a(&sim, "w0").as_deref() == Some("3")).await;
    wait_until(|| sim.applied_works().iter().any(|r| r.resource_id == "w0" && r.generation == Some(3))).await;
    h.stop().await;

    let (h, _) = Harness::start_restoring(config(Duration::from_secs(3600)), sim.clone(), sim.clone()).await;
    h.source.publish(&versioned(&h, "w0", 2, "store-a", false)).await.expect("the late update");
    // A later event proves the late one was handled (in order) before it.
    h.source.publish(&spec(&h, "w1", "store-a")).await.expect("publish");
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    assert_eq!(data_a(&sim, "w0").as_deref(), Some("3"), "no rollback to version 2");

    h.source.publish(&versioned(&h, "w0", 1, "store-a", true)).await.expect("a late resync answer");
    h.source.publish(&spec(&h, "w2", "store-a")).await.expect("publish");
    h.wait_status("w2", |s| s.is_true("Applied")).await;
    assert_eq!(data_a(&sim, "w0").as_deref(), Some("3"), "no rollback to version 1");
    assert!(h.handle.work("w0").is_some_and(|w| w.restored), "still waiting for the store's answer");
    h.source.publish(&versioned(&h, "w0", 3, "store-a", true)).await.expect("the store's answer");
    wait_until(|| h.handle.work("w0").is_some_and(|w| !w.restored && w.generation == 3)).await;
    h.stop().await;

    let (h, _) = Harness::start_restoring(config(Duration::from_secs(3600)), sim.clone(), sim.clone()).await;
    let again = reborn(&h, "w0", 1, "store-a", false, "2026-01-02T00:00:00.000001Z");
    h.source.publish(&again).await.expect("re-created by its source");
    wait_until(|| data_a(&sim, "w0").as_deref() == Some("1")).await;
    h.source.publish(&versioned(&h, "w0", 2, "store-a", false)).await.expect("the old incarnation");
    h.source.publish(&spec(&h, "w3", "store-a")).await.expect("publish");
    h.wait_status("w3", |s| s.is_true("Applied")).await;
    assert_eq!(data_a(&sim, "w0").as_deref(), Some("1"), "the old incarnation's late update is dropped");
    h.stop().await;

    let (h, _) = Harness::start_restoring(config(Duration::from_secs(3600)), sim.clone(), sim.clone()).await;
    h.source.publish(&versioned(&h, "w0", 1, "store-b", false)).await.expect("another store");
    wait_until(|| h.handle.work("w0").is_some_and(|w| !w.restored && w.generation == 1)).await;
    h.stop().await;
}

/// A restored work its source deletes is remembered as deleted: a late spec of it (the broker
/// redelivers what the dead agent took) does not re-create it. Found by the fault-injection
/// suite (kill -9 of the agents on the Pub/Sub emulator: objects written at gen 1, deleted,
/// then written at gen 2).
#[tokio::test]
async fn a_restored_work_deleted_by_its_source_stays_deleted() {
    let sim = Arc::new(SimulatedCluster::new());
    applied_and_stopped(&sim, config(Duration::from_secs(3600))).await;

    let (h, _) = Harness::start_restoring(config(Duration::from_secs(3600)), sim.clone(), sim.clone()).await;
    let mut delete = deleted_by_source("w0", 2);
    maestro_api::ext::set_str(&mut delete, maestro_api::ext::STORE_ID, "store-a");
    h.source.publish(&delete).await.expect("the source deletes it");
    h.wait_status("w0", |s| s.is_true("Deleted")).await;
    wait_until(|| h.handle.work("w0").is_none()).await;
    h.source.publish(&versioned(&h, "w0", 2, "store-a", false)).await.expect("the late update");
    h.source.publish(&spec(&h, "w1", "store-a")).await.expect("publish");
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    assert!(h.handle.work("w0").is_none(), "not re-created");
    assert!(data_a(&sim, "w0").is_none(), "its object stays deleted");
    h.stop().await;
}

/// A plain spec published before the agent started, of a work it does not hold, is dropped:
/// a broker redelivers what a dead agent took, after the bundle may have been deleted (and the
/// dead agent's memory of that deletion is gone). The agent asks for a spec resync instead;
/// a resync answer, whatever its time and even with the dropped event's id, and a spec
/// published after the start are applied.
/// Found by the fault-injection suite (agents restarted twice 3 s apart on the Pub/Sub
/// emulator: objects written at gen 1, deleted, then written at gen 1 again).
#[tokio::test]
async fn a_spec_published_before_the_agent_started_creates_no_work() {
    use maestro_api::{AttributesReader, AttributesWriter};
    let sim = Arc::new(SimulatedCluster::new());
    let (h, _) = Harness::start_restoring(config(Duration::from_secs(3600)), sim.clone(), sim.clone()).await;
    let mark = h.rec.count();
    let before_start = chrono::Utc::now() - chrono::Duration::seconds(60);
    let mut late = versioned(&h, "w5", 1, "store-a", false);
    late.set_time(Some(before_start));
    h.source.publish(&late).await.expect("the late create");
    h.source.publish(&spec(&h, "w1", "store-a")).await.expect("publish");
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    assert!(h.handle.work("w5").is_none(), "no work from a spec published before the start");
    assert!(data_a(&sim, "w5").is_none());
    h.wait_event_after(mark, |e| e.ty().ends_with("spec.resync_request")).await;

    // The answer is the stored event again: same id as the dropped one, yet not a redelivery.
    let mut answer = versioned(&h, "w5", 1, "store-a", true);
    answer.set_id(late.id());
    answer.set_time(Some(before_start));
    h.source.publish(&answer).await.expect("the resync answer");
    wait_until(|| data_a(&sim, "w5").as_deref() == Some("1")).await;
    h.stop().await;
}

/// Marks `ev` as one of the `total` spec events of a resync answer (what this project's
/// server stamps, docs/protocol.md §5.2).
fn in_answer(mut ev: maestro_api::Event, total: usize) -> maestro_api::Event {
    maestro_api::ext::set_str(&mut ev, maestro_api::ext::RESYNC_EVENTS, total.to_string());
    maestro_api::ext::set_str(&mut ev, maestro_api::ext::STORE_ID, "store-a");
    ev
}

/// A restarted agent (its works restored from records of this project's server) keeps plain
/// specs of works it does not hold aside until its first spec resync answer is complete: the
/// answer's deletion of a bundle deleted meanwhile (docs/protocol.md §5.6) drops the late spec
/// of it, and a new bundle's spec is taken once the answer is in. The late spec's time is
/// after the agent's start (its clock runs behind the server's), so the time rule does not
/// drop it. Found by the fault-injection suite (agents' clock 5 min behind, on the Pub/Sub
/// emulator and on Mosquitto: objects written at gen 1, deleted, written at gen 1 again).
#[tokio::test]
async fn a_restarted_agent_holds_plain_specs_until_its_resync_answer_is_complete() {
    let sim = Arc::new(SimulatedCluster::new());
    let grace = Duration::from_secs(3600);
    applied_and_stopped(&sim, holding(grace)).await;

    let (h, _) = Harness::start_restoring(holding(grace), sim.clone(), sim.clone()).await;
    h.source.publish(&versioned(&h, "gone", 1, "store-a", false)).await.expect("the late create");
    h.source.publish(&versioned(&h, "new", 1, "store-a", false)).await.expect("a new bundle");
    // A spec of a work the agent holds is taken at once; handled in order after the two above.
    h.source.publish(&versioned(&h, "w0", 2, "store-a", false)).await.expect("publish");
    wait_until(|| data_a(&sim, "w0").as_deref() == Some("2")).await;
    assert!(h.handle.work("gone").is_none() && h.handle.work("new").is_none(), "both kept aside");

    let deleted_lately = deleted_by_source("gone", 1);
    h.source.publish(&in_answer(versioned(&h, "w0", 2, "store-a", true), 2)).await.expect("answer");
    h.source.publish(&in_answer(deleted_lately, 2)).await.expect("answer");
    wait_until(|| data_a(&sim, "new").as_deref() == Some("1")).await;
    assert!(data_a(&sim, "gone").is_none(), "the late spec of a deleted bundle created nothing");
    assert!(h.handle.work("gone").is_none_or(|w| w.deleting), "and holds no live work");
    h.stop().await;
}

/// A start-up hold whose answer never comes ends after its limit: the specs kept aside are
/// taken then.
#[tokio::test]
async fn a_start_up_hold_without_an_answer_ends_after_its_limit() {
    let sim = Arc::new(SimulatedCluster::new());
    applied_and_stopped(&sim, holding(Duration::from_secs(3600))).await;

    let mut config = holding(Duration::from_secs(3600));
    config.startup_hold = Duration::from_millis(500);
    let (h, _) = Harness::start_restoring(config, sim.clone(), sim.clone()).await;
    let started = std::time::Instant::now();
    h.source.publish(&versioned(&h, "new", 1, "store-a", false)).await.expect("a new bundle");
    wait_until(|| data_a(&sim, "new").as_deref() == Some("1")).await;
    assert!(started.elapsed() >= Duration::from_millis(400), "kept until the hold's limit");
    h.stop().await;
}

/// During the start-up hold, a resync answer to a request the agent did not send (its killed
/// predecessor's, delivered late) is kept aside like a plain spec: the agent's own answer
/// names the bundle deleted since, and the late answer's spec of it is then dropped. Found by
/// the fault-injection soak (agents restarted with their clock 5 min behind, Pub/Sub emulator:
/// an object written at gen 1, deleted, written at gen 1 again from a late resync answer).
#[tokio::test]
async fn a_late_answer_to_a_predecessors_request_is_kept_aside() {
    use maestro_api::AttributesReader;
    let sim = Arc::new(SimulatedCluster::new());
    let grace = Duration::from_secs(3600);
    applied_and_stopped(&sim, holding(grace)).await;

    let (h, request) = Harness::start_restoring(holding(grace), sim.clone(), sim.clone()).await;
    let mut late = in_answer(versioned(&h, "gone", 1, "store-a", true), 1);
    maestro_api::ext::set_str(&mut late, maestro_api::ext::RESYNC_ANSWER, "a-predecessors-request");
    h.source.publish(&late).await.expect("the late answer");
    h.source.publish(&versioned(&h, "w0", 2, "store-a", false)).await.expect("publish");
    wait_until(|| data_a(&sim, "w0").as_deref() == Some("2")).await;
    assert!(h.handle.work("gone").is_none(), "the late answer created nothing yet");

    let deleted_lately = deleted_by_source("gone", 1);
    for ev in [versioned(&h, "w0", 2, "store-a", true), deleted_lately] {
        let mut ev = in_answer(ev, 2);
        maestro_api::ext::set_str(&mut ev, maestro_api::ext::RESYNC_ANSWER, request.id());
        h.source.publish(&ev).await.expect("the agent's own answer");
    }
    h.source.publish(&versioned(&h, "new", 1, "store-a", false)).await.expect("a new bundle");
    wait_until(|| data_a(&sim, "new").as_deref() == Some("1")).await;
    assert!(data_a(&sim, "gone").is_none(), "the late answer's spec of a deleted bundle created nothing");
    assert!(h.handle.work("gone").is_none_or(|w| w.deleting));
    h.stop().await;
}

/// A restored work does not know its source until a spec of it arrives, so it answers no
/// status resync request and publishes no status until then: a status carrying
/// `originalsource: ""` is nobody's, and the server sets it aside as a dead letter. Found by
/// the fault-injection suite (agents' clock 5 min behind on Mosquitto/SQLite, which restarts
/// the agents: 12 dead letters "has originalsource \"\", not this server's").
#[tokio::test]
async fn a_restored_work_publishes_no_status_before_it_knows_its_source() {
    use maestro_api::AttributesReader;
    use maestro_api::codec::status_resync_request;
    use maestro_api::payload::StatusHashList;
    let sim = Arc::new(SimulatedCluster::new());
    applied_and_stopped(&sim, config(Duration::from_secs(3600))).await;

    let (h, _) = Harness::start_restoring(config(Duration::from_secs(3600)), sim.clone(), sim.clone()).await;
    assert!(h.handle.work("w0").is_some_and(|w| w.restored), "w0 restored from its record");
    h.source.publish(&spec(&h, "w1", "store-a")).await.expect("publish");
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    let mark = h.rec.count();
    h.source
        .publish(&status_resync_request("maestro", h.handle.consumer(), &StatusHashList::default()))
        .await
        .expect("a status resync request for every work");
    h.wait_event_after(mark, |e| e.ty().ends_with("status.resync_response") && is_status_for(e, "w1")).await;
    // The source adopts w0; its status (with its source) comes after what the resync sent.
    h.source.publish(&versioned(&h, "w0", 1, "store-a", true)).await.expect("the store's answer");
    let adopted = h.wait_status("w0", |_| true).await;
    assert_eq!(decode(&adopted).original_source, "maestro");
    let nobodys: Vec<String> = h
        .rec
        .since(0)
        .iter()
        .filter(|e| e.ty().contains(".status."))
        .filter_map(decode_status_lenient)
        .filter(|(_, source)| source.is_empty())
        .map(|(id, _)| id)
        .collect();
    assert!(nobodys.is_empty(), "statuses without a source: {nobodys:?}");
    h.stop().await;
}

/// (resource id, originalsource) of a status event.
fn decode_status_lenient(e: &maestro_api::Event) -> Option<(String, String)> {
    let id = maestro_api::ext::get_str(e, maestro_api::ext::RESOURCE_ID)?;
    Some((id, maestro_api::ext::get_str(e, maestro_api::ext::ORIGINAL_SOURCE).unwrap_or_default()))
}
