//! The fleet-wipe guard's rules (docs/operations.md §3.5), against the in-memory broker: a
//! resync answer's deletions of works the store does not hold are deleted below the share
//! and with the same store identity, orphaned otherwise; a confirmed deletion deletes; a
//! Go server's answer (no count) is decided after the settle time; a spec adopts an orphan.

use maestro_agent::AgentConfig;
use maestro_agent::wipe_guard::{ORPHANED, REASON_IDENTITY, REASON_SHARE};
use maestro_api::Event;
use maestro_api::codec::SpecEventBuilder;
use maestro_api::ext;
use maestro_api::types::Action;
use maestro_transport::SourceTransport;

use crate::common::*;

/// A spec event of work `id` from a store of identity `store`.
pub(crate) fn spec(h: &Harness, id: &str, store: &str) -> Event {
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), serde_json::json!(id));
    let mut ev = SpecEventBuilder::new("maestro", id, 1, h.handle.consumer())
        .metadata(meta)
        .bundle_json(cm_bundle(id))
        .build();
    ext::set_str(&mut ev, ext::STORE_ID, store);
    ev
}

/// A resync answer's deletion of `id`, a work the store does not hold; `marks` = (store
/// identity, count of deletions in the answer, confirmed), each omitted when `None`/false.
pub(crate) fn unknown_delete(h: &Harness, id: &str, marks: (Option<&str>, Option<usize>, bool)) -> Event {
    let mut ev = SpecEventBuilder::new("maestro", id, 1, h.handle.consumer())
        .action(Action::ResyncResponse)
        .deletion(chrono::Utc::now())
        .build();
    if let Some(store) = marks.0 {
        ext::set_str(&mut ev, ext::STORE_ID, store);
    }
    if let Some(n) = marks.1 {
        ext::set_str(&mut ev, ext::RESYNC_DELETES, n.to_string());
    }
    if marks.2 {
        ext::set_str(&mut ev, ext::WIPE_CONFIRMED, "true");
    }
    ev
}

/// Starts an agent and gives it works `w0..w{n}` from store `store`, all Applied. No eviction
/// grace period: a deletion the guard lets through deletes at once (eviction.rs has its tests).
async fn holding(n: usize, mut config: AgentConfig, store: &str) -> Harness {
    config.eviction_grace_period = std::time::Duration::ZERO;
    let h = Harness::start_with(config).await;
    for i in 0..n {
        h.source.publish(&spec(&h, &format!("w{i}"), store)).await.expect("publish");
    }
    for i in 0..n {
        h.wait_status(&format!("w{i}"), |s| s.is_true("Applied")).await;
    }
    h
}

/// Sends one resync answer's deletions of the unknown works `ids`, each with `marks`.
pub(crate) async fn send_deletes(h: &Harness, ids: &[&str], marks: (Option<&str>, Option<usize>, bool)) {
    for id in ids {
        h.source.publish(&unknown_delete(h, id, marks)).await.expect("publish");
    }
}

fn orphaned(h: &Harness, reason: &str) -> usize {
    h.handle.works().iter().filter(|w| w.orphaned.as_deref() == Some(reason)).count()
}

#[tokio::test]
async fn half_or_less_is_deleted_more_is_orphaned() {
    let h = holding(4, AgentConfig::new("c1"), "store-a").await;
    // 2 of 4 is not more than 50%: deleted.
    send_deletes(&h, &["w0", "w1"], (Some("store-a"), Some(2), false)).await;
    h.wait_status("w0", |s| s.is_true("Deleted")).await;
    h.wait_status("w1", |s| s.is_true("Deleted")).await;
    assert_eq!(h.cluster.len(), 2);
    // Then 2 of the 2 left is more than 50%: orphaned, objects kept, reported.
    send_deletes(&h, &["w2", "w3"], (Some("store-a"), Some(2), false)).await;
    for id in ["w2", "w3"] {
        let ev = h.wait_status(id, |s| s.is_true(ORPHANED)).await;
        let st = decode(&ev).status;
        let c = st.condition(ORPHANED).expect("condition");
        assert_eq!(c.reason, REASON_SHARE);
        assert!(c.message.contains("would delete 2 of the 2 works"), "{}", c.message);
        assert!(st.is_true("Applied"), "the other conditions stay");
    }
    assert_eq!(h.cluster.len(), 2, "the orphans' objects are kept");
    h.stop().await;
}

#[tokio::test]
async fn a_changed_store_identity_orphans_even_one_work() {
    let h = holding(3, AgentConfig::new("c1"), "store-a").await;
    send_deletes(&h, &["w0"], (Some("store-b"), Some(1), false)).await;
    let ev = h.wait_status("w0", |s| s.is_true(ORPHANED)).await;
    assert_eq!(decode(&ev).status.condition(ORPHANED).expect("condition").reason, REASON_IDENTITY);
    assert_eq!(h.cluster.len(), 3);
    // The operator's confirmation deletes it.
    send_deletes(&h, &["w0"], (Some("store-b"), Some(1), true)).await;
    h.wait_status("w0", |s| s.is_true("Deleted")).await;
    assert_eq!(h.cluster.len(), 2);
    // The confirmed store is now the one synced with: below the share, deletions go through.
    send_deletes(&h, &["w1"], (Some("store-b"), Some(1), false)).await;
    h.wait_status("w1", |s| s.is_true("Deleted")).await;
    h.stop().await;
}

#[tokio::test]
async fn a_go_servers_answer_is_decided_after_the_settle_time() {
    let h = holding(3, AgentConfig::new("c1"), "store-a").await;
    // No store identity, no count: two of three are gathered, then orphaned as a whole.
    send_deletes(&h, &["w0", "w1"], (None, None, false)).await;
    wait_until(|| orphaned(&h, REASON_SHARE) == 2).await;
    assert_eq!(h.cluster.len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn the_share_rule_can_be_turned_off_and_a_spec_adopts_an_orphan() {
    let mut config = AgentConfig::new("c1");
    config.wipe_guard_percent = 100;
    let h = holding(2, config, "store-a").await;
    send_deletes(&h, &["w0", "w1"], (Some("store-a"), Some(2), false)).await;
    h.wait_status("w0", |s| s.is_true("Deleted")).await;
    h.wait_status("w1", |s| s.is_true("Deleted")).await;

    // An orphan published again (version 1 from a new store) is adopted in place.
    let h = holding(1, AgentConfig::new("c2"), "store-a").await;
    let uid = h.cluster.objects()[0]["metadata"]["uid"].clone();
    send_deletes(&h, &["w0"], (Some("store-b"), Some(1), false)).await;
    h.wait_status("w0", |s| s.is_true(ORPHANED)).await;
    let mark = h.rec.count();
    h.source.publish(&spec(&h, "w0", "store-b")).await.expect("publish");
    h.wait_event_after(mark, |e| {
        is_status_for(e, "w0")
            && decode(e).status.condition(ORPHANED).is_none()
            && decode(e).status.is_true("Applied")
    })
    .await;
    assert!(h.handle.work("w0").expect("work").orphaned.is_none());
    assert_eq!(h.cluster.objects()[0]["metadata"]["uid"], uid, "not re-created");
    h.stop().await;
}

/// A store restored from backup resends the stored spec events with the ids the agent took
/// before: a work orphaned meanwhile is adopted by the repeated event at the version it holds
/// (dropping it as a redelivery left it orphaned for good).
#[tokio::test]
async fn a_resent_event_adopts_an_orphan_at_its_version() {
    let h = Harness::start("c1").await;
    let first = spec(&h, "w0", "store-a");
    h.source.publish(&first).await.expect("publish");
    h.wait_status("w0", |s| s.is_true("Applied")).await;
    send_deletes(&h, &["w0"], (Some("store-b"), Some(1), false)).await;
    h.wait_status("w0", |s| s.is_true(ORPHANED)).await;
    let mark = h.rec.count();
    h.source.publish(&first).await.expect("the same event again");
    h.wait_event_after(mark, |e| is_status_for(e, "w0") && decode(e).status.condition(ORPHANED).is_none())
        .await;
    assert!(h.handle.work("w0").expect("work").orphaned.is_none());
    assert_eq!(h.cluster.len(), 1, "its objects kept");
    h.stop().await;
}

/// A work orphaned while a reconcile of it is in flight keeps its `Orphaned` condition: the
/// reconcile's status, computed before the work was orphaned, does not replace it. One worker,
/// so a later work's apply proves the held reconcile ended. Found by the end-to-end suite
/// under load: one of 100 works was reported without `Orphaned` after a store change, and the
/// wipe-guard test waited 120 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_orphaned_during_its_reconcile_keeps_the_orphaned_condition() {
    use std::sync::Arc;
    let sim = Arc::new(maestro_agent::SimulatedCluster::new());
    let gated = Gated::new(sim.clone());
    gated.release();
    let mut config = AgentConfig::new("c1");
    config.workers = 1;
    let h = Harness::start_on(config, sim, gated.clone()).await;
    h.source.publish(&spec(&h, "w0", "store-a")).await.expect("publish");
    h.wait_status("w0", |s| s.is_true("Applied")).await;

    gated.close();
    let entered = gated.entered.notified();
    let mut v2 = SpecEventBuilder::new("maestro", "w0", 2, h.handle.consumer())
        .bundle_json(cm_bundle("w0-v2"))
        .build();
    ext::set_str(&mut v2, ext::STORE_ID, "store-a");
    h.source.publish(&v2).await.expect("publish");
    tokio::time::timeout(DEADLINE, entered).await.expect("the apply of version 2 is held");
    send_deletes(&h, &["w0"], (Some("store-b"), Some(1), false)).await;
    wait_until(|| h.handle.work("w0").is_some_and(|w| w.orphaned.is_some())).await;

    gated.release();
    h.source.publish(&spec(&h, "w1", "store-a")).await.expect("publish");
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    let w0 = h.handle.work("w0").expect("w0");
    let status = w0.status.expect("status");
    assert!(status.is_true(ORPHANED), "the Orphaned condition was replaced: {:?}", status.conditions);
}
