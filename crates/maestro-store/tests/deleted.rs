//! Deleted bundles remembered for a while (docs/protocol.md §5.6), on every backend: the
//! agent's confirmed deletion removes the row and remembers the bundle in the same
//! transaction; a re-created bundle under the same id leaves the old deletion readable; the
//! retention forgets them.

use std::time::Duration;

use maestro_api::snowflake::Generator;
use maestro_store::{DynStore, NewConsumer, Resource, StatusOutcome};
use serde_json::json;

mod common;

use common::new_resource;

suite!(a_confirmed_deletion_is_remembered_until_pruned);

/// Marks `r` deleting and confirms the deletion as its agent would.
async fn delete(store: &DynStore, r: &Resource, ids: &Generator) {
    store.mark_deleting(&r.id).await.expect("mark").expect("known");
    let mut gone = common::status_write(r, ids, json!({"deleted": true}));
    gone.deleted = true;
    assert_eq!(store.apply_status(gone).await.expect("apply"), StatusOutcome::Deleted);
}

async fn a_confirmed_deletion_is_remembered_until_pruned(store: DynStore) {
    let ids = Generator::default();
    for c in ["c1", "c2"] {
        let new = NewConsumer { name: Some(c.into()), labels: Default::default() };
        store.create_consumer(new).await.expect("consumer");
    }
    let r1 = store.create_resource(new_resource("r1", "c1")).await.expect("r1");
    let r2 = store.create_resource(new_resource("r2", "c1")).await.expect("r2");
    let other = store.create_resource(new_resource("r3", "c2")).await.expect("r3");
    let c1 = || vec!["c1".to_owned()];
    assert!(store.deleted_resources(&c1(), 10).await.expect("list").is_empty(), "nothing deleted yet");
    store.mark_deleting("r2").await.expect("mark").expect("known");
    assert!(store.deleted_resource("r2").await.expect("read").is_none(), "deleting is not deleted");

    delete(&store, &r1, &ids).await;
    delete(&store, &r2, &ids).await;
    delete(&store, &other, &ids).await;
    let listed = store.deleted_resources(&c1(), 10).await.expect("list");
    let names: Vec<&str> = listed.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(names.len(), 2, "c1's two, not c2's: {names:?}");
    assert!(names.contains(&"r1") && names.contains(&"r2"), "{names:?}");
    let d1 = store.deleted_resource("r1").await.expect("read").expect("remembered");
    assert_eq!((d1.consumer_name.as_str(), d1.version), ("c1", r1.version));
    assert_eq!(d1.created_at.timestamp_micros(), r1.created_at.timestamp_micros(), "its incarnation");
    let now_ms = chrono::Utc::now().timestamp_millis();
    assert!((now_ms - d1.deleted_at_ms).abs() < 60_000, "deleted at {} (now {now_ms})", d1.deleted_at_ms);
    assert_eq!(store.deleted_resources(&c1(), 1).await.expect("list").len(), 1, "the limit holds");
    let both = vec!["c2".to_owned(), "c1".to_owned(), "c9".to_owned()];
    let per_consumer = store.deleted_resources(&both, 1).await.expect("list");
    let names: Vec<(&str, &str)> =
        per_consumer.iter().map(|d| (d.consumer_name.as_str(), d.id.as_str())).collect();
    // r1 and r2 may share a millisecond: either is c1's latest.
    assert!(
        matches!(names[..], [("c1", "r1" | "r2"), ("c2", "r3")]),
        "the limit holds per consumer, by consumer: {names:?}"
    );
    assert_eq!(store.deleted_resources(&both, 10).await.expect("list").len(), 3);
    assert!(store.deleted_resources(&[], 10).await.expect("no consumers").is_empty());

    let again = store.create_resource(new_resource("r1", "c1")).await.expect("re-created");
    assert_eq!(again.version, 1);
    assert_eq!(
        store.deleted_resource("r1").await.expect("read"),
        Some(d1),
        "the old deletion stays readable"
    );

    assert_eq!(store.prune_deleted_resources(Duration::from_secs(3600)).await.expect("prune"), 0);
    tokio::time::sleep(Duration::from_millis(5)).await; // deleted_at strictly before the cutoff
    assert_eq!(store.prune_deleted_resources(Duration::ZERO).await.expect("prune"), 3);
    assert!(store.deleted_resource("r2").await.expect("read").is_none(), "forgotten");
}
