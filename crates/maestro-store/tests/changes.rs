//! The change feeds (`Store::spec_changes`, `Store::status_changes`) on every backend, and on
//! PostgreSQL the wake-ups between two stores sharing one database (two server instances).

use std::time::Duration;

use maestro_api::snowflake::Generator;
use maestro_store::{
    Change, DynStore, FEED_CAPACITY, Feed, NewConsumer, NewResource, StatusOutcome, StatusWrite,
};
use serde_json::json;

mod common;

suite!(creations_are_fed_and_other_changes_wake, a_full_feed_wakes_its_reader, only_the_first_feed_gets_rows);

async fn next<T>(feed: &mut Feed<T>) -> Change<T> {
    tokio::time::timeout(Duration::from_secs(10), feed.next()).await.expect("a change within 10 s")
}

/// True when nothing changes for a while.
async fn quiet<T>(feed: &mut Feed<T>) -> bool {
    tokio::time::timeout(Duration::from_millis(300), feed.next()).await.is_err()
}

async fn setup(store: &DynStore, resources: usize) -> Vec<maestro_store::Resource> {
    store
        .create_consumer(NewConsumer { name: Some("c1".into()), ..Default::default() })
        .await
        .expect("consumer");
    let mut created = Vec::new();
    for i in 0..resources {
        let payload = json!({"specversion": "1.0", "id": format!("e{i}"), "data": {"n": i}});
        let new = NewResource {
            id: format!("r{i}"),
            name: format!("r{i}"),
            consumer_name: "c1".into(),
            source: "s1".into(),
            payload: payload.into(),
        };
        created.push(store.create_resource(new).await.expect("create"));
    }
    created
}

fn status(r: &maestro_store::Resource, ids: &Generator) -> StatusWrite {
    common::status_write(r, ids, json!({"applied": r.id}))
}

/// A creation is handed over with its resource, exactly as the outbox holds it; an update is
/// not fed but wakes the reader; a status is fed as the row `status_events_after` reads.
async fn creations_are_fed_and_other_changes_wake(store: DynStore) {
    let (mut specs, mut statuses) = (store.spec_changes(), store.status_changes());
    setup(&store, 1).await;
    let pending = store.pending_spec_deliveries(10).await.expect("pending");
    assert_eq!(next(&mut specs).await, Change::Rows(pending));
    let updated = store.update_resource("r0", 0, json!({"data": "new"})).await.expect("update");
    assert_eq!(next(&mut specs).await, Change::Read, "updates are read from the outbox");

    let outcome = store.apply_status(status(&updated, &Generator::default())).await.expect("status");
    assert_eq!(outcome, StatusOutcome::Stored);
    let stored = store.status_events_after(0, 10).await.expect("events");
    assert_eq!(next(&mut statuses).await, Change::Rows(stored));
    assert!(quiet(&mut specs).await && quiet(&mut statuses).await, "no other change");
}

/// A reader [`FEED_CAPACITY`] transactions behind gets the first ones and is woken for the
/// rest, which it reads from the store.
async fn a_full_feed_wakes_its_reader(store: DynStore) {
    let mut statuses = store.status_changes();
    let (created, ids) = (setup(&store, FEED_CAPACITY + 3).await, Generator::default());
    for r in &created {
        store.apply_status(status(r, &ids)).await.expect("status");
    }
    let mut fed = 0;
    while let Some(rows) = statuses.try_rows() {
        fed += rows.len();
    }
    assert_eq!(fed, FEED_CAPACITY);
    assert_eq!(next(&mut statuses).await, Change::Read);
    assert_eq!(store.status_events_after(0, 100).await.expect("events").len(), FEED_CAPACITY + 3);
}

/// A feed has one reader: a second feed of the same store gets the wake-ups only.
async fn only_the_first_feed_gets_rows(store: DynStore) {
    let (mut first, mut second) = (store.spec_changes(), store.spec_changes());
    setup(&store, 1).await;
    assert!(matches!(next(&mut first).await, Change::Rows(rows) if rows.len() == 1));
    store.update_resource("r0", 0, json!({"data": "new"})).await.expect("update");
    assert_eq!(next(&mut second).await, Change::Read);
    assert!(second.try_rows().is_none(), "no rows for a second reader");
}

/// Two stores on one PostgreSQL database (two server instances): a commit through one wakes
/// the other's feeds (`LISTEN`/`NOTIFY`), and a store is not woken by its own announcements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_wakes_this_one() {
    let url = maestro_store::testing::postgres_url().await;
    let (a, b) = (maestro_store::open(&url).await.expect("a"), maestro_store::open(&url).await.expect("b"));
    let (mut a_specs, mut b_specs, mut b_statuses) = (a.spec_changes(), b.spec_changes(), b.status_changes());
    let created = setup(&a, 1).await;
    assert!(
        matches!(next(&mut a_specs).await, Change::Rows(rows) if rows.len() == 1),
        "a feeds its own rows"
    );
    assert_eq!(next(&mut b_specs).await, Change::Read, "b reads a's outbox rows");
    a.apply_status(status(&created[0], &Generator::default())).await.expect("status");
    assert_eq!(next(&mut b_statuses).await, Change::Read, "b reads a's status events");
    assert!(quiet(&mut a_specs).await, "a is not woken by its own announcement");
}
