//! The dead-letter table (docs/security.md, "Dead letters") on every store: hostile text is
//! stored escaped, big events are kept as their size, pages are newest first, pruning keeps
//! the table bounded.

mod common;

use maestro_store::{
    DeadLetterOrigin, DeadLetterQuery, DynStore, MAX_DEAD_LETTER_EVENT_BYTES, NewDeadLetter, Paging,
    StoreError,
};

suite!(hostile_text_is_stored_escaped, pages_filter_and_delete, pruning_bounds_the_table);

fn letter(consumer: &str, event: String) -> NewDeadLetter {
    NewDeadLetter {
        origin: DeadLetterOrigin::Status,
        broker: "mqtt".into(),
        consumer_name: Some(consumer.into()),
        resource_id: Some("r1".into()),
        event_id: Some("e1".into()),
        event_type: Some(
            "io.open-cluster-management.works.v1alpha1.manifestbundles.status.update_request".into(),
        ),
        reason: "bad".into(),
        event,
    }
}

/// A NUL byte is what makes PostgreSQL refuse a text value (SQLSTATE 22021): the dead letter
/// of such an event must still be stored, with the byte escaped, as must a newline.
async fn hostile_text_is_stored_escaped(store: DynStore) {
    let mut l = letter("c1", r#"{"id":"e1"}"#.into());
    l.resource_id = Some("r\0\nforged=1".into());
    l.reason = "line one\nline two".into();
    let id = store.add_dead_letter(l).await.expect("add");
    let got = store.get_dead_letter(id).await.expect("get");
    assert_eq!(got.resource_id.as_deref(), Some("r\\0\\nforged=1"));
    assert_eq!(got.reason, "line one\\nline two");
    assert_eq!(
        (got.origin, got.event.as_deref(), got.event_bytes),
        (DeadLetterOrigin::Status, Some(r#"{"id":"e1"}"#), 11)
    );

    let big = "x".repeat(MAX_DEAD_LETTER_EVENT_BYTES + 1);
    let id = store.add_dead_letter(letter("c1", big)).await.expect("add big");
    let got = store.get_dead_letter(id).await.expect("get big");
    assert_eq!((got.event, got.event_bytes), (None, MAX_DEAD_LETTER_EVENT_BYTES as i64 + 1));
}

async fn pages_filter_and_delete(store: DynStore) {
    let mut ids = Vec::new();
    for consumer in ["c1", "c2", "c1"] {
        ids.push(store.add_dead_letter(letter(consumer, "{}".into())).await.expect("add"));
    }
    let all = store.list_dead_letters(&DeadLetterQuery::default()).await.expect("list");
    assert_eq!(all.total, 3);
    assert_eq!(
        all.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1], ids[0]],
        "newest first"
    );
    let c1 = DeadLetterQuery { consumer_name: Some("c1".into()), paging: Paging { page: 2, size: 1 } };
    let page = store.list_dead_letters(&c1).await.expect("list c1");
    assert_eq!(
        (page.total, page.page, page.items.iter().map(|d| d.id).collect::<Vec<_>>()),
        (2, 2, vec![ids[0]])
    );
    let bad = DeadLetterQuery { paging: Paging { page: 0, size: 1 }, ..Default::default() };
    assert!(matches!(store.list_dead_letters(&bad).await, Err(StoreError::Invalid(_))));

    store.delete_dead_letter(ids[1]).await.expect("delete");
    assert!(matches!(store.delete_dead_letter(ids[1]).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.get_dead_letter(ids[1]).await, Err(StoreError::NotFound { .. })));
    assert_eq!(store.list_dead_letters(&DeadLetterQuery::default()).await.expect("list").total, 2);
}

async fn pruning_bounds_the_table(store: DynStore) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(store.add_dead_letter(letter("c1", "{}".into())).await.expect("add"));
    }
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    assert_eq!(store.prune_dead_letters(past, 3).await.expect("prune by count"), 2);
    let left = store.list_dead_letters(&DeadLetterQuery::default()).await.expect("list");
    assert_eq!(
        left.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3], ids[2]],
        "newest kept"
    );
    assert_eq!(store.prune_dead_letters(past, 3).await.expect("nothing more"), 0);
    let future = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(store.prune_dead_letters(future, 100).await.expect("prune by age"), 3);
}
