//! The server instance registry, spec outbox claims and agent stream holders
//! (docs/architecture.md §9): on every backend with one store, and on PostgreSQL with two
//! stores sharing one database (two server instances).

use std::sync::Arc;
use std::time::Duration;

use maestro_api::snowflake::Generator;
use maestro_store::{DynStore, NewConsumer, NewResource};
use serde_json::json;

mod common;

suite!(
    an_instance_registers_renews_and_leaves,
    status_events_are_pruned_up_to_the_lowest_live_cursor,
    the_backlog_counts_pending_rows_and_dead_letters
);

const LEASE: Duration = Duration::from_secs(30);

async fn consumer(store: &DynStore, name: &str) {
    store
        .create_consumer(NewConsumer { name: Some(name.into()), ..Default::default() })
        .await
        .expect("consumer");
}

async fn resource(store: &DynStore, id: &str, consumer: &str) -> maestro_store::Resource {
    let payload = json!({"specversion": "1.0", "id": id, "data": {}});
    let new = NewResource {
        id: id.into(),
        name: id.into(),
        consumer_name: consumer.into(),
        source: "s1".into(),
        payload: payload.into(),
    };
    store.create_resource(new).await.expect("create")
}

fn seqs(rows: &[maestro_store::PendingSpec]) -> Vec<i64> {
    rows.iter().map(|p| p.event.seq).collect()
}

/// Registration refuses an id a live instance holds (PostgreSQL); the registry lists the instance with the
/// consumers it holds agent streams of; after leaving it is not live and may register again.
async fn an_instance_registers_renews_and_leaves(store: DynStore) {
    assert!(store.renew_instance(LEASE, 0).await.is_err(), "renewing before registering is an error");
    assert!(store.register_instance("a", LEASE, 0).await.expect("register"));
    // A live id is refused where other processes share the database; SQLite's one server
    // process takes its row over (a crashed run need not be waited for).
    let again = store.register_instance("a", LEASE, 0).await.expect("register");
    assert_eq!(again, !store.is_shared(), "registering a live id again");
    assert!(store.register_instance("b", LEASE, 0).await.is_err(), "one store serves one instance");
    store.hold_agent_streams(&["c1".into(), "c2".into()], &[]).await.expect("hold");
    store.hold_agent_streams(&["c3".into()], &["c2".into()]).await.expect("hold");
    assert!(store.renew_instance(LEASE, 7).await.expect("renew"));
    let listed = store.list_instances().await.expect("list");
    assert_eq!(listed.len(), 1);
    let a = &listed[0];
    assert_eq!((a.id.as_str(), a.live, a.agent_consumers, a.status_cursor), ("a", true, 2, 7));
    assert!(a.lease_until_ms > a.started_at_ms);
    store.leave_instance().await.expect("leave");
    let a = store.list_instances().await.expect("list").remove(0);
    assert_eq!((a.live, a.agent_consumers), (false, 0));
    assert!(!store.renew_instance(LEASE, 7).await.expect("renew"), "a lease that ended is not renewed");
    assert!(store.register_instance("a", LEASE, 0).await.expect("register again"));
    assert!(store.expire_instances().await.expect("expire").is_empty(), "nobody's lease passed");
}

/// Pruning keeps the status event rows a live instance's fan-out has not delivered.
async fn status_events_are_pruned_up_to_the_lowest_live_cursor(store: DynStore) {
    consumer(&store, "c1").await;
    let r = resource(&store, "r1", "c1").await;
    let ids = Generator::new(1);
    for n in 0..3 {
        store.apply_status(common::status_write(&r, &ids, json!({"n": n}))).await.expect("status");
    }
    let last = store.last_status_event_seq().await.expect("last");
    assert!(store.register_instance("a", LEASE, last - 2).await.expect("register"));
    assert_eq!(store.prune_status_events(last).await.expect("prune"), 1, "only up to the cursor");
    assert!(store.renew_instance(LEASE, last).await.expect("renew"));
    assert_eq!(store.prune_status_events(last).await.expect("prune"), 2);
}

/// The backlog counts the outbox rows not sent, the age of the oldest (database clock), and
/// the dead letters.
async fn the_backlog_counts_pending_rows_and_dead_letters(store: DynStore) {
    assert_eq!(store.backlog().await.expect("backlog"), maestro_store::Backlog::default());
    consumer(&store, "c1").await;
    resource(&store, "r1", "c1").await;
    resource(&store, "r2", "c1").await;
    tokio::time::sleep(Duration::from_millis(20)).await; // the oldest row ages
    let backlog = store.backlog().await.expect("backlog");
    assert_eq!((backlog.pending_spec_events, backlog.dead_letters), (2, 0));
    assert!((15..60_000).contains(&backlog.oldest_pending_ms), "{backlog:?}");
    let pending = store.pending_spec_events(10).await.expect("pending");
    store.complete_spec_events(&[pending[0].seq]).await.expect("complete");
    assert_eq!(store.backlog().await.expect("backlog").pending_spec_events, 1);
    store.complete_spec_events(&[pending[1].seq]).await.expect("complete");
    let letter = maestro_store::NewDeadLetter {
        origin: maestro_store::DeadLetterOrigin::Agent,
        broker: "mqtt".into(),
        consumer_name: None,
        resource_id: None,
        event_id: None,
        event_type: None,
        reason: "test".into(),
        event: "{}".into(),
    };
    store.add_dead_letter(letter).await.expect("dead letter");
    let backlog = store.backlog().await.expect("backlog");
    assert_eq!(
        backlog,
        maestro_store::Backlog { pending_spec_events: 0, oldest_pending_ms: 0, dead_letters: 1 }
    );
}

/// Two instances on one PostgreSQL database: a row one claims the other skips until it is
/// released or its instance is declared dead; `held_only` claims only rows of consumers the
/// instance holds agent streams of; unclaimed rows of consumers nobody holds are completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_outbox() {
    let url = maestro_store::testing::postgres_url().await;
    let a = maestro_store::open(&url).await.expect("open a");
    let b = maestro_store::open(&url).await.expect("open b");
    assert!(a.is_shared());
    consumer(&a, "c1").await;
    consumer(&a, "c2").await;
    for i in 0..3 {
        resource(&a, &format!("r{i}"), "c1").await;
    }
    resource(&a, "r3", "c2").await;
    assert!(a.register_instance("a", Duration::from_millis(300), 0).await.expect("register a"));
    assert!(b.register_instance("b", LEASE, 0).await.expect("register b"));
    let mine = a.claim_spec_deliveries(2, false).await.expect("a claims");
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|p| p.resource.is_some()), "claimed rows come with their resources");
    let theirs = b.claim_spec_deliveries(10, false).await.expect("b claims");
    assert_eq!(theirs.len(), 2, "b skips a's claims");
    assert!(seqs(&theirs).iter().all(|s| !seqs(&mine).contains(s)));
    assert_eq!(
        seqs(&a.claim_spec_deliveries(10, false).await.expect("again")),
        seqs(&mine),
        "a keeps its own"
    );
    a.release_spec_events(&seqs(&mine)[..1]).await.expect("release");
    assert_eq!(seqs(&b.claim_spec_deliveries(10, false).await.expect("b claims")).len(), 3);

    // a's lease passes: b declares it dead and takes its claim.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(b.expire_instances().await.expect("expire"), vec!["a".to_owned()]);
    assert_eq!(b.claim_spec_deliveries(10, false).await.expect("b claims").len(), 4);
    assert!(!a.renew_instance(LEASE, 0).await.expect("renew"), "a lost its lease");
    assert!(a.register_instance("a", LEASE, 0).await.expect("a registers again"));

    // Only rows of held consumers with `held_only`; b's claims are released when it leaves.
    b.leave_instance().await.expect("b leaves");
    a.hold_agent_streams(&["c1".into()], &[]).await.expect("hold");
    let held = a.claim_spec_deliveries(10, true).await.expect("held only");
    assert_eq!(held.len(), 3);
    assert!(held.iter().all(|p| p.event.consumer_name == "c1"));
    a.release_spec_events(&seqs(&held)).await.expect("release");
    assert_eq!(a.complete_unheld_spec_events().await.expect("complete"), 1, "c2's row: nobody holds c2");
    assert_eq!(a.pending_spec_events(10).await.expect("pending").len(), 3);
}

/// Creations while an instance's dispatcher reads the spec feed (PostgreSQL writes a group in
/// one statement): the feed hands over each created row with its resource, in `seq` order; the
/// rows are claimed by that instance, so the other one skips them; and a group's unknown
/// consumer and existing id are answered as when written one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fed_creations_are_claimed_by_their_instance() {
    let url = maestro_store::testing::postgres_url().await;
    let a = maestro_store::open(&url).await.expect("open a");
    let b = maestro_store::open(&url).await.expect("open b");
    assert!(a.register_instance("a", LEASE, 0).await.expect("register a"));
    assert!(b.register_instance("b", LEASE, 0).await.expect("register b"));
    consumer(&a, "c1").await;
    resource(&a, "old", "c1").await;
    let mut feed = a.spec_changes();
    let new = |id: &str, consumer: &str| NewResource {
        id: id.into(),
        name: id.into(),
        consumer_name: consumer.into(),
        source: "s1".into(),
        payload: json!({"id": id}).into(),
    };
    let (r1, r2, ghost, old) = tokio::join!(
        a.create_resource(new("r1", "c1")),
        a.create_resource(new("r2", "c1")),
        a.create_resource(new("x", "ghost")),
        a.create_resource(new("old", "c1")),
    );
    assert_eq!((r1.expect("r1").id, r2.expect("r2").id), ("r1".into(), "r2".into()));
    assert!(
        matches!(&ghost, Err(maestro_store::StoreError::UnknownConsumer(c)) if c == "ghost"),
        "{ghost:?}"
    );
    assert!(matches!(&old, Err(maestro_store::StoreError::Conflict(_))), "{old:?}");
    let mut fed = Vec::new();
    while fed.len() < 2 {
        let change = tokio::time::timeout(Duration::from_secs(10), feed.next()).await;
        if let maestro_store::Change::Rows(rows) = change.expect("the feed hands the rows over in time") {
            fed.extend(rows);
        }
    }
    assert!(fed.windows(2).all(|w| w[0].event.seq < w[1].event.seq), "fed in seq order");
    assert!(fed.iter().all(|p| p.resource.as_ref().is_some_and(|r| r.payload["id"] == p.event.resource_id)));
    let mut fed_ids: Vec<_> = fed.iter().map(|p| p.event.resource_id.as_str()).collect();
    fed_ids.sort_unstable();
    assert_eq!(fed_ids, ["r1", "r2"]);
    let theirs = b.claim_spec_deliveries(10, false).await.expect("b claims");
    assert_eq!(seqs(&theirs).len(), 1, "b gets the row created before the feed, not a's fed ones");
}

/// Two instances storing statuses at once (PostgreSQL; each group one transaction under the
/// status sequence lock): a reader following `status_events_after(cursor)` meanwhile, as the
/// fan-out does, sees every status event row, each once, in `seq` order — no row commits
/// after a larger `seq` was readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cursor_reader_misses_no_status_event_of_two_instances() {
    const N: usize = 300;
    let url = maestro_store::testing::postgres_url().await;
    let a = maestro_store::open(&url).await.expect("open a");
    let b = maestro_store::open(&url).await.expect("open b");
    consumer(&a, "c1").await;
    let mut created = Vec::new();
    for i in 0..N {
        created.push(resource(&a, &format!("r{i}"), "c1").await);
    }
    // Each instance stores its half one status at a time: many small groups, each a chance
    // for the two instances' transactions to draw `seq`s in one order and commit in the other.
    let ids = Arc::new(Generator::default());
    let writers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(half, store)| {
            let (ids, mine): (_, Vec<_>) =
                (ids.clone(), created.iter().skip(half).step_by(2).cloned().collect());
            tokio::spawn(async move {
                for r in mine {
                    let write = maestro_store::StatusWrite {
                        resource_id: r.id.clone(),
                        consumer_name: r.consumer_name.clone(),
                        version: r.version,
                        sequence_id: ids.next_string(),
                        status_hash: None,
                        event: json!({"specversion": "1.0", "data": {"id": r.id}}).to_string(),
                        deleted: false,
                    };
                    let outcome = store.apply_status(write).await.expect("apply");
                    assert_eq!(outcome, maestro_store::StatusOutcome::Stored);
                }
            })
        })
        .collect();
    let (mut cursor, mut seen) = (0, std::collections::HashSet::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "the writers finish in time");
        let written = writers.iter().all(tokio::task::JoinHandle::is_finished);
        let rows = a.status_events_after(cursor, 50).await.expect("read");
        if written && rows.is_empty() {
            break;
        }
        for row in rows {
            assert!(row.seq > cursor);
            cursor = row.seq;
            assert!(seen.insert(row.resource_id), "each row once");
        }
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    assert_eq!(seen.len(), N, "the cursor reader saw every status event row");
}
