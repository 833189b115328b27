//! One behaviour suite for every [`Store`] implementation, run against SQLite in memory,
//! SQLite on a file and PostgreSQL (`MAESTRO_TEST_DATABASE_URL`, see `maestro_store::testing`).

use std::sync::Arc;
use std::time::Duration;

use maestro_api::snowflake::Generator;
use maestro_store::{
    Change, ConsumerQuery, DynStore, Labels, NewConsumer, NewResource, Paging, Resource, ResourceQuery,
    SpecAction, SpecEventRow, StatusEventKind, StatusOutcome, StatusWrite, StoreError, testing,
};
use serde_json::{Value, json};

mod common;

use common::new_resource;

suite!(
    versions_start_bump_and_conflict,
    failed_writes_leave_data_and_outbox_unchanged,
    outbox_rows_complete_in_order,
    mark_deleting_is_idempotent,
    status_outcomes,
    the_same_status_for_a_new_version_is_stored,
    confirmed_delete_removes_row_and_pending_outbox,
    a_sequence_id_cannot_freeze_a_bundle,
    done_spec_events_are_pruned,
    consumer_crud,
    paging_and_filters,
    status_events_cursor_and_prune,
    concurrent_updates_serialize,
    signals_fire_after_commit,
    concurrent_writes_each_get_their_answer,
    a_refused_write_fails_alone,
    raw_lists_and_batch_reads_match_the_parsed_ones,
    the_status_feed_gives_the_stored_rows,
);

// ---- helpers ----

/// Applies one status per resource, all at once (so they share group commits), and checks
/// each was stored.
async fn store_statuses_concurrently(store: &DynStore, created: &[Resource], ids: &Generator) {
    let tasks: Vec<_> = created
        .iter()
        .map(|r| {
            let (store, w) = (Arc::clone(store), status(r, &ids.next_string(), json!({"applied": r.id})));
            tokio::spawn(async move { store.apply_status(w).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("join").expect("apply"), StatusOutcome::Stored);
    }
}

/// Stored JSON text as a tree.
fn parsed(text: &str) -> Value {
    serde_json::from_str(text).expect("stored JSON text")
}

async fn consumer(store: &DynStore, name: &str) {
    let new = NewConsumer { name: Some(name.to_owned()), labels: Labels::new() };
    store.create_consumer(new).await.expect("create consumer");
}

async fn pending(store: &DynStore) -> Vec<SpecEventRow> {
    store.pending_spec_events(1000).await.expect("pending")
}

/// `(resource id, action, version)` of the pending spec rows.
async fn pending_summary(store: &DynStore) -> Vec<(String, SpecAction, i64)> {
    pending(store).await.into_iter().map(|r| (r.resource_id, r.action, r.version)).collect()
}

fn status(r: &Resource, seq: &str, data: Value) -> StatusWrite {
    StatusWrite {
        resource_id: r.id.clone(),
        consumer_name: r.consumer_name.clone(),
        version: r.version,
        sequence_id: seq.to_owned(),
        status_hash: Some(format!("hash-{seq}")),
        event: json!({"specversion": "1.0", "sequenceid": seq, "resourceversion": r.version, "data": data})
            .to_string(),
        deleted: false,
    }
}

fn s(v: &str) -> String {
    v.to_owned()
}

// ---- cases ----

async fn versions_start_bump_and_conflict(store: DynStore) {
    consumer(&store, "c1").await;
    let created = store.create_resource(new_resource("r1", "c1")).await.expect("create");
    assert_eq!(created.version, 1);
    assert_eq!(created.name, "name-r1");
    assert!(created.deleted_at.is_none() && created.status.is_none());
    assert_eq!(store.get_resource("r1").await.expect("get"), created);

    let v2 = store.update_resource("r1", 1, json!({"v": 2})).await.expect("update v1");
    assert_eq!(v2.version, 2);
    assert_eq!(*v2.payload, json!({"v": 2}));

    let err = store.update_resource("r1", 1, json!({"v": 3})).await.expect_err("stale");
    let StoreError::Conflict(msg) = err else { panic!("want Conflict, got {err:?}") };
    assert!(msg.contains('1') && msg.contains('2'), "message names both versions: {msg}");

    let v3 = store.update_resource("r1", 0, json!({"v": 3})).await.expect("0 = latest");
    assert_eq!(v3.version, 3);

    let same = store.update_resource("r1", 3, json!({"v": 3})).await.expect("unchanged");
    assert_eq!(same, v3, "unchanged payload: no bump");
    let same = store.update_resource("r1", 0, json!({"v": 3})).await.expect("unchanged");
    assert_eq!(same.version, 3);
    assert_eq!(store.get_resource("r1").await.expect("get").version, 3);

    assert_eq!(
        pending_summary(&store).await,
        vec![
            (s("r1"), SpecAction::Create, 1),
            (s("r1"), SpecAction::Update, 2),
            (s("r1"), SpecAction::Update, 3)
        ]
    );
    let err = store.update_resource("nope", 0, json!({})).await.expect_err("unknown");
    assert!(matches!(err, StoreError::NotFound { kind: "resource", .. }), "{err:?}");
    store.migrate().await.expect("migrate again is a no-op");
}

async fn failed_writes_leave_data_and_outbox_unchanged(store: DynStore) {
    let err = store.create_resource(new_resource("r1", "ghost")).await.expect_err("unknown consumer");
    assert!(matches!(&err, StoreError::UnknownConsumer(c) if c == "ghost"), "{err:?}");
    assert!(matches!(store.get_resource("r1").await, Err(StoreError::NotFound { .. })));
    assert!(pending(&store).await.is_empty());

    consumer(&store, "c1").await;
    let created = store.create_resource(new_resource("r1", "c1")).await.expect("create");
    let mut again = new_resource("r1", "c1");
    again.payload = json!({"other": true}).into();
    let err = store.create_resource(again).await.expect_err("duplicate id");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let err = store.update_resource("r1", 7, json!({"v": 2})).await.expect_err("stale");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.get_resource("r1").await.expect("get"), created);
    assert_eq!(pending_summary(&store).await, vec![(s("r1"), SpecAction::Create, 1)]);
}

async fn raw_lists_and_batch_reads_match_the_parsed_ones(store: DynStore) {
    let ids = Generator::default();
    consumer(&store, "c1").await;
    consumer(&store, "c2").await;
    let r1 = store.create_resource(new_resource("r1", "c1")).await.expect("create");
    for (id, c) in [("r2", "c2"), ("r3", "c1")] {
        store.create_resource(new_resource(id, c)).await.expect("create");
    }
    let written = status(&r1, &ids.next_string(), json!({"a": 1}));
    assert_eq!(store.apply_status(written).await.expect("status"), StatusOutcome::Stored);
    store.mark_deleting("r3").await.expect("delete").expect("known");
    for query in [
        ResourceQuery::default(),
        ResourceQuery { consumer_name: Some("c1".into()), ..Default::default() },
        ResourceQuery { paging: Paging { page: 2, size: 1 }, ..Default::default() },
    ] {
        let parsed = store.list_resources(&query).await.expect("list");
        let raw = store.list_resources_raw(&query).await.expect("raw list");
        assert_eq!((raw.total, raw.page, raw.items.len()), (parsed.total, parsed.page, parsed.items.len()));
        for (raw, parsed) in raw.items.iter().zip(&parsed.items) {
            let back = raw.parse().expect("stored JSON");
            assert_eq!(
                (&back.id, &back.payload, &back.status),
                (&parsed.id, &parsed.payload, &parsed.status)
            );
            assert_eq!(
                (back.version, back.deleted_at, back.created_at, back.updated_at),
                (parsed.version, parsed.deleted_at, parsed.created_at, parsed.updated_at)
            );
        }
    }

    let mut got = store.get_resources(&[s("r3"), s("nope"), s("r1")]).await.expect("batch read");
    got.sort_by(|a, b| a.id.cmp(&b.id));
    let want = vec![store.get_resource("r1").await.expect("r1"), store.get_resource("r3").await.expect("r3")];
    assert_eq!(got, want);
    assert!(store.get_resources(&[]).await.expect("no ids").is_empty());

    // The outbox rows, oldest first, each with its resource now: r3's Create and Delete rows
    // both carry its current (deleting) state.
    let deliveries = store.pending_spec_deliveries(100).await.expect("deliveries");
    let summary: Vec<_> = deliveries
        .iter()
        .map(|p| {
            (
                p.event.resource_id.as_str(),
                p.event.action,
                p.resource.as_ref().map(|r| r.deleted_at.is_some()),
            )
        })
        .collect();
    let want_summary = vec![
        ("r1", SpecAction::Create, Some(false)),
        ("r2", SpecAction::Create, Some(false)),
        ("r3", SpecAction::Create, Some(true)),
        ("r3", SpecAction::Delete, Some(true)),
    ];
    assert_eq!(summary, want_summary);
    assert_eq!(deliveries[0].resource.as_deref(), Some(&want[0]));
    assert_eq!(deliveries.iter().map(|p| p.event.clone()).collect::<Vec<_>>(), pending(&store).await);
    let limited = store.pending_spec_deliveries(1).await.expect("limit");
    assert_eq!(limited.len(), 1);
}

async fn outbox_rows_complete_in_order(store: DynStore) {
    consumer(&store, "c1").await;
    for id in ["r1", "r2", "r3"] {
        store.create_resource(new_resource(id, "c1")).await.expect("create");
    }
    let rows = pending(&store).await;
    assert_eq!(rows.len(), 3);
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
    assert_eq!(rows[0].consumer_name, "c1");
    let first_two = store.pending_spec_events(2).await.expect("limit");
    assert_eq!(first_two, rows[..2].to_vec());

    store.complete_spec_events(&[rows[0].seq, rows[2].seq]).await.expect("complete");
    store.complete_spec_events(&[]).await.expect("complete nothing");
    assert_eq!(pending(&store).await, vec![rows[1].clone()]);
}

async fn mark_deleting_is_idempotent(store: DynStore) {
    consumer(&store, "c1").await;
    store.create_resource(new_resource("r1", "c1")).await.expect("create");
    store.update_resource("r1", 0, json!({"v": 2})).await.expect("update");
    assert_eq!(store.mark_deleting("nope").await.expect("unknown"), None);

    let deleting = store.mark_deleting("r1").await.expect("mark").expect("known");
    assert!(deleting.deleted_at.is_some());
    assert_eq!(deleting.version, 2, "a delete keeps the version");
    let again = store.mark_deleting("r1").await.expect("mark again").expect("known");
    assert_eq!(again, deleting, "idempotent");
    assert_eq!(store.get_resource("r1").await.expect("still visible"), deleting);

    let err = store.update_resource("r1", 0, json!({"v": 3})).await.expect_err("deleting");
    let StoreError::Conflict(msg) = err else { panic!("want Conflict, got {err:?}") };
    assert!(msg.contains("being deleted"), "{msg}");

    let actions: Vec<_> = pending_summary(&store).await.into_iter().map(|(_, a, v)| (a, v)).collect();
    assert_eq!(actions, vec![(SpecAction::Create, 1), (SpecAction::Update, 2), (SpecAction::Delete, 2)]);
    let page = store.list_resources(&ResourceQuery::default()).await.expect("list");
    assert_eq!(page.total, 1, "deleting resources are listed");
}

async fn status_outcomes(store: DynStore) {
    let ids = Generator::default();
    consumer(&store, "c1").await;
    let r = store.create_resource(new_resource("r1", "c1")).await.expect("create");

    let mut unknown = status(&r, &ids.next_string(), json!({"a": 1}));
    unknown.resource_id = "nope".into();
    assert_eq!(store.apply_status(unknown).await.expect("apply"), StatusOutcome::UnknownResource);

    let mut other = status(&r, &ids.next_string(), json!({"a": 1}));
    other.consumer_name = "c2".into();
    let want = StatusOutcome::ConsumerMismatch { expected: "c1".into() };
    assert_eq!(store.apply_status(other).await.expect("apply"), want);

    let mut old_version = status(&r, &ids.next_string(), json!({"a": 1}));
    old_version.version = 2;
    let StatusOutcome::Stale(msg) = store.apply_status(old_version).await.expect("apply") else {
        panic!("stale")
    };
    assert!(msg.contains('2') && msg.contains('1'), "{msg}");

    let old_seq = ids.next_string();
    let first_seq = ids.next_string();
    let first = status(&r, &first_seq, json!({"a": 1}));
    assert_eq!(store.apply_status(first.clone()).await.expect("apply"), StatusOutcome::Stored);
    let stored = store.get_resource("r1").await.expect("get");
    assert_eq!(stored.status, Some(parsed(&first.event)));
    assert_eq!(stored.status_hash, first.status_hash);
    assert_eq!(stored.sequence_id.as_deref(), Some(first_seq.as_str()));
    assert_eq!(stored.version, 1, "a status does not bump the version");

    let older = status(&r, &old_seq, json!({"a": 2}));
    assert!(matches!(store.apply_status(older).await.expect("apply"), StatusOutcome::Stale(_)));
    let equal = status(&r, &first_seq, json!({"a": 2}));
    assert!(matches!(store.apply_status(equal).await.expect("apply"), StatusOutcome::Stale(_)));
    let garbage = status(&r, "not-a-snowflake", json!({"a": 2}));
    assert!(matches!(store.apply_status(garbage).await.expect("apply"), StatusOutcome::Stale(_)));

    let same = status(&r, &ids.next_string(), json!({"a": 1}));
    assert_eq!(store.apply_status(same).await.expect("apply"), StatusOutcome::Unchanged);
    assert_eq!(store.get_resource("r1").await.expect("get"), stored, "unchanged writes nothing");

    let second = status(&r, &ids.next_string(), json!({"a": 2}));
    assert_eq!(store.apply_status(second.clone()).await.expect("apply"), StatusOutcome::Stored);

    let mut early_delete = status(&r, &ids.next_string(), json!({"a": 3}));
    early_delete.deleted = true;
    let StatusOutcome::Stale(msg) = store.apply_status(early_delete).await.expect("apply") else {
        panic!("stale")
    };
    assert!(msg.contains("not being deleted"), "{msg}");

    let events = store.status_events_after(0, 100).await.expect("events");
    assert_eq!(events.len(), 2, "only accepted statuses are events");
    assert!(
        events.iter().all(|e| e.kind == StatusEventKind::StatusUpdate && parsed(&e.payload) == *r.payload)
    );
    assert_eq!(
        (parsed(&events[0].status), parsed(&events[1].status)),
        (parsed(&first.event), parsed(&second.event))
    );
    assert_eq!((events[0].source.as_str(), events[0].consumer_name.as_str()), ("source-a", "c1"));
    assert_eq!(store.get_resource("r1").await.expect("get").version, 1);
}

/// A status with the same data as the stored one but for a newer spec version is stored, not
/// skipped as unchanged: the stored status then names the version the agent reported for, so
/// the bundle reads as observed at its current version. (An agent can tag the status of the
/// version before with the new version: it answers a status resync between taking a spec and
/// applying it.)
async fn the_same_status_for_a_new_version_is_stored(store: DynStore) {
    consumer(&store, "c1").await;
    let ids = Generator::default();
    let r = store.create_resource(new_resource("r1", "c1")).await.expect("create");
    let first = status(&r, &ids.next_string(), json!({"a": 1}));
    assert_eq!(store.apply_status(first).await.expect("apply"), StatusOutcome::Stored);
    let r = store.update_resource("r1", 1, json!({"v": 2})).await.expect("update");
    assert_eq!(r.version, 2);
    let again = status(&r, &ids.next_string(), json!({"a": 1}));
    assert_eq!(store.apply_status(again.clone()).await.expect("apply"), StatusOutcome::Stored);
    let stored = store.get_resource("r1").await.expect("get");
    assert_eq!(stored.status, Some(parsed(&again.event)), "the status for version 2 is held");
    let same = status(&r, &ids.next_string(), json!({"a": 1}));
    assert_eq!(store.apply_status(same).await.expect("apply"), StatusOutcome::Unchanged);
}

async fn confirmed_delete_removes_row_and_pending_outbox(store: DynStore) {
    let ids = Generator::default();
    consumer(&store, "c1").await;
    let r = store.create_resource(new_resource("r1", "c1")).await.expect("create");
    store.create_resource(new_resource("r2", "c1")).await.expect("create other");
    store.mark_deleting("r1").await.expect("mark").expect("known");

    // A confirmed deletion passes the version and sequence checks like any status: a bogus
    // `Deleted` (wrong version, stale or future sequence id) deletes nothing.
    let stored = status(&r, &ids.next_string(), json!({"deleting": true}));
    assert_eq!(store.apply_status(stored.clone()).await.expect("apply"), StatusOutcome::Stored);
    let before = store.get_resource("r1").await.expect("get");
    let future = ((chrono::Utc::now().timestamp_millis() + 3_600_000 - maestro_api::snowflake::EPOCH_MS)
        << 22)
        | (1 << 12);
    for (version, seq) in [(99, ids.next_string()), (1, stored.sequence_id.clone()), (1, future.to_string())]
    {
        let mut bogus = status(&r, &seq, json!({"deleted": true}));
        (bogus.version, bogus.deleted) = (version, true);
        let outcome = store.apply_status(bogus).await.expect("apply");
        assert!(matches!(outcome, StatusOutcome::Stale(_)), "version {version}, sequence {seq}: {outcome:?}");
        assert_eq!(store.get_resource("r1").await.expect("the row stays"), before);
    }
    let mut gone = status(&r, &ids.next_string(), json!({"deleted": true}));
    gone.deleted = true;
    assert_eq!(store.apply_status(gone.clone()).await.expect("apply"), StatusOutcome::Deleted);
    assert!(matches!(store.get_resource("r1").await, Err(StoreError::NotFound { .. })));
    assert_eq!(pending_summary(&store).await, vec![(s("r2"), SpecAction::Create, 1)]);
    let all = store.list_resources(&ResourceQuery::default()).await.expect("list");
    assert_eq!((all.total, all.items.len()), (1, 1), "the total follows a confirmed deletion");

    let events = store.status_events_after(0, 10).await.expect("events");
    assert_eq!(events.len(), 2, "the stored status, then the deletion");
    assert_eq!(events[1].kind, StatusEventKind::StatusDelete);
    assert_eq!(events[1].resource_id, "r1");
    assert_eq!(parsed(&events[1].payload), *r.payload);
    assert_eq!(parsed(&events[1].status), parsed(&gone.event));

    assert_eq!(store.apply_status(gone).await.expect("again"), StatusOutcome::UnknownResource);
}

async fn done_spec_events_are_pruned(store: DynStore) {
    consumer(&store, "c1").await;
    for i in 0..4 {
        store.create_resource(new_resource(&format!("r{i}"), "c1")).await.expect("create");
    }
    let seqs: Vec<i64> = pending(&store).await.iter().map(|r| r.seq).collect();
    store.complete_spec_events(&seqs[..3]).await.expect("complete");
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    assert_eq!(store.prune_spec_events(past, 10).await.expect("prune"), 0, "done too recently");
    let future = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(store.prune_spec_events(future, 2).await.expect("prune"), 2, "one batch");
    assert_eq!(store.prune_spec_events(future, 2).await.expect("prune"), 1);
    assert_eq!(store.prune_spec_events(future, 2).await.expect("prune"), 0);
    assert_eq!(pending_summary(&store).await, vec![(s("r3"), SpecAction::Create, 1)], "pending rows stay");
}

async fn a_sequence_id_cannot_freeze_a_bundle(store: DynStore) {
    let ids = Generator::default();
    consumer(&store, "c1").await;
    let r = store.create_resource(new_resource("r1", "c1")).await.expect("create");
    let first = status(&r, &ids.next_string(), json!({"a": 1}));
    assert_eq!(store.apply_status(first.clone()).await.expect("apply"), StatusOutcome::Stored);
    // The largest possible id, and one an hour ahead: refused, the stored status stays.
    let hour_ahead = ((chrono::Utc::now().timestamp_millis() + 3_600_000 - maestro_api::snowflake::EPOCH_MS)
        << 22)
        | (1 << 12);
    for seq in [i64::MAX.to_string(), hour_ahead.to_string()] {
        let outcome = store.apply_status(status(&r, &seq, json!({"a": 2}))).await.expect("apply");
        assert!(matches!(&outcome, StatusOutcome::Stale(m) if m.contains("future")), "{seq}: {outcome:?}");
    }
    let stored = store.get_resource("r1").await.expect("get");
    assert_eq!(
        (stored.status, stored.sequence_id),
        (Some(parsed(&first.event)), Some(first.sequence_id.clone()))
    );
    // Later real statuses are still taken.
    let next = status(&r, &ids.next_string(), json!({"a": 3}));
    assert_eq!(store.apply_status(next).await.expect("apply"), StatusOutcome::Stored);
    // A new spec version starts a new sequence: a status of version 2 is taken even though
    // its id is older than the stored one of version 1.
    let older_id = ids.next_string();
    let newer_id = ids.next_string();
    assert_eq!(
        store.apply_status(status(&r, &newer_id, json!({"a": 4}))).await.expect("apply"),
        StatusOutcome::Stored
    );
    let v2 = store.update_resource("r1", 1, json!({"spec": 2})).await.expect("update");
    assert_eq!(v2.version, 2);
    let outcome = store.apply_status(status(&v2, &older_id, json!({"a": 5}))).await.expect("apply");
    assert_eq!(outcome, StatusOutcome::Stored);
}

async fn consumer_crud(store: DynStore) {
    let labels = Labels::from([(s("env"), s("prod"))]);
    let named = NewConsumer { name: Some("cluster1".into()), labels: labels.clone() };
    let c = store.create_consumer(named.clone()).await.expect("create");
    assert_eq!((c.name.as_str(), &c.labels), ("cluster1", &labels));
    assert!(uuid_like(&c.id), "{}", c.id);
    let err = store.create_consumer(named).await.expect_err("name taken");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let unnamed = store.create_consumer(NewConsumer::default()).await.expect("create unnamed");
    assert_eq!(unnamed.name, unnamed.id, "name defaults to the id");

    assert_eq!(store.get_consumer(&c.id).await.expect("by id"), c);
    assert_eq!(store.get_consumer_by_name("cluster1").await.expect("by name"), c);
    let err = store.get_consumer("nope").await.expect_err("unknown");
    assert!(matches!(err, StoreError::NotFound { kind: "consumer", .. }), "{err:?}");

    let replaced = Labels::from([(s("tier"), s("gold"))]);
    let updated = store.set_consumer_labels(&c.id, replaced.clone()).await.expect("labels");
    assert_eq!(updated.labels, replaced, "labels are replaced, not merged");
    assert_eq!(store.get_consumer(&c.id).await.expect("get").labels, replaced);
    assert!(matches!(
        store.set_consumer_labels("nope", Labels::new()).await,
        Err(StoreError::NotFound { .. })
    ));

    let r = store.create_resource(new_resource("r1", "cluster1")).await.expect("create resource");
    store.mark_deleting("r1").await.expect("mark").expect("known");
    let err = store.delete_consumer(&c.id).await.expect_err("in use");
    assert!(matches!(&err, StoreError::ConsumerInUse(n) if n == "cluster1"), "{err:?}");
    assert!(store.get_consumer(&c.id).await.is_ok());

    let mut gone = status(&r, &Generator::default().next_string(), json!({}));
    gone.deleted = true;
    assert_eq!(store.apply_status(gone).await.expect("apply"), StatusOutcome::Deleted);
    store.delete_consumer(&c.id).await.expect("delete");
    assert!(matches!(store.get_consumer(&c.id).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.delete_consumer(&c.id).await, Err(StoreError::NotFound { .. })));
    let page = store.list_consumers(&ConsumerQuery::default()).await.expect("list");
    assert_eq!(page.items, vec![unnamed]);
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.chars().filter(|c| *c == '-').count() == 4
}

async fn paging_and_filters(store: DynStore) {
    consumer(&store, "c1").await;
    consumer(&store, "c2").await;
    for (id, c) in [("r1", "c1"), ("r2", "c2"), ("r3", "c1"), ("r4", "c2"), ("r5", "c1")] {
        let mut new = new_resource(id, c);
        if id == "r4" {
            new.source = "source-b".into();
        }
        store.create_resource(new).await.expect("create");
    }
    let list = |page, size| ResourceQuery { paging: Paging { page, size }, ..Default::default() };
    let ids = |items: &[Resource]| items.iter().map(|r| r.id.clone()).collect::<Vec<_>>();

    let p1 = store.list_resources(&list(1, 2)).await.expect("page 1");
    assert_eq!((ids(&p1.items), p1.total, p1.page), (vec![s("r1"), s("r2")], 5, 1));
    let p3 = store.list_resources(&list(3, 2)).await.expect("page 3");
    assert_eq!((ids(&p3.items), p3.total, p3.page), (vec![s("r5")], 5, 3));
    let p4 = store.list_resources(&list(4, 2)).await.expect("page 4");
    assert!(p4.items.is_empty() && p4.total == 5);
    let count = store.list_resources(&list(1, 0)).await.expect("size 0");
    assert!(count.items.is_empty() && count.total == 5);
    let huge = store.list_resources(&list(1, 1_000_000)).await.expect("clamped");
    assert_eq!(huge.items.len(), 5);
    for bad in [list(0, 10), list(-1, 10), list(1, -1)] {
        let err = store.list_resources(&bad).await.expect_err("invalid");
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    }

    let by_consumer = ResourceQuery { consumer_name: Some("c1".into()), ..Default::default() };
    let page = store.list_resources(&by_consumer).await.expect("filter");
    assert_eq!((ids(&page.items), page.total), (vec![s("r1"), s("r3"), s("r5")], 3));
    let both = ResourceQuery {
        consumer_name: Some("c2".into()),
        source: Some("source-b".into()),
        ..Default::default()
    };
    assert_eq!(ids(&store.list_resources(&both).await.expect("filter").items), vec![s("r4")]);
    let by_name = ResourceQuery { name: Some("name-r2".into()), ..Default::default() };
    assert_eq!(ids(&store.list_resources(&by_name).await.expect("filter").items), vec![s("r2")]);
    let by_id =
        ResourceQuery { id: Some("r3".into()), consumer_name: Some("c2".into()), ..Default::default() };
    assert_eq!(store.list_resources(&by_id).await.expect("filter").total, 0);

    searched_and_sorted_pages(&store).await;

    let of = |names: &[&str]| names.iter().map(|n| s(n)).collect::<Vec<_>>();
    let for_consumers = |names: &[&str]| {
        let (store, names) = (store.clone(), of(names));
        async move { store.resources_for_consumers(&names).await }
    };
    assert_eq!(ids(&for_consumers(&["c2"]).await.expect("for consumer")), vec![s("r2"), s("r4")]);
    let two = for_consumers(&["c2", "c1", "c9"]).await.expect("for consumers");
    assert_eq!(ids(&two), of(&["r1", "r2", "r3", "r4", "r5"]), "oldest first, whatever the consumer");
    assert!(for_consumers(&[]).await.expect("no consumers").is_empty());
    assert_eq!(ids(&store.resources_for_source("source-b").await.expect("for source")), vec![s("r4")]);
    assert!(for_consumers(&["c9"]).await.expect("none").is_empty());

    let consumers = |name: Option<&str>, size| ConsumerQuery {
        paging: Paging { page: 1, size },
        name: name.map(str::to_owned),
        ..Default::default()
    };
    let all = store.list_consumers(&consumers(None, 1)).await.expect("consumers");
    assert_eq!((all.items.len(), all.total, all.items[0].name.as_str()), (1, 2, "c1"));
    let c2 = store.list_consumers(&consumers(Some("c2"), 10)).await.expect("consumers");
    assert_eq!((c2.items.len(), c2.total), (1, 1));
    let by_id = ConsumerQuery { id: Some(c2.items[0].id.clone()), ..Default::default() };
    assert_eq!(store.list_consumers(&by_id).await.expect("by id").items, c2.items);
    assert!(matches!(store.list_consumers(&consumers(None, -5)).await, Err(StoreError::Invalid(_))));
}

/// Pages with a checked search and an order (docs/rest.md): the search joins the exact filters
/// by AND, the order is kept across pages with `id` breaking ties, and a bound value that
/// looks like SQL is only data. Resources r1–r5: r1, r3, r5 on c1; r2, r4 on c2; r4 of
/// `source-b`.
async fn searched_and_sorted_pages(store: &DynStore) {
    use maestro_search::{Table, compile, parse_order_by};
    let ids = |items: &[Resource]| items.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    let query = |search: &str, order: &str, page, size| ResourceQuery {
        paging: Paging { page, size },
        search: compile(search, Table::Resources).expect("search"),
        order: parse_order_by(order, Table::Resources).expect("order"),
        ..Default::default()
    };
    let or = query("name in ('name-r2', 'name-r4') or source = 'source-b' or id = 'r5'", "name desc", 1, 10);
    assert_eq!(ids(&store.list_resources(&or).await.expect("search").items), ["r5", "r4", "r2"]);
    let first = store.list_resources(&query("", "consumer_name desc, name", 1, 3)).await.expect("page 1");
    let second = store.list_resources(&query("", "consumer_name desc, name", 2, 3)).await.expect("page 2");
    assert_eq!(
        (ids(&first.items), ids(&second.items)),
        (vec![s("r2"), s("r4"), s("r1")], vec![s("r3"), s("r5")])
    );
    let anded = ResourceQuery {
        consumer_name: Some("c1".into()),
        ..query("version = 1 and not id = 'r1'", "", 1, 10)
    };
    let page = store.list_resources_raw(&anded).await.expect("raw");
    assert_eq!(
        (page.items.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), page.total),
        (vec!["r3", "r5"], 2)
    );
    let evil = query("name = 'x'' or ''1''=''1' or id = '''; delete from resources; --'", "", 1, 10);
    assert_eq!(store.list_resources(&evil).await.expect("evil").total, 0);
    assert_eq!(store.list_resources(&query("", "", 1, 0)).await.expect("count").total, 5);
    let consumers = ConsumerQuery {
        search: compile("name like 'c%' and created_at > '2000-01-01'", Table::Consumers).expect("search"),
        order: parse_order_by("name desc", Table::Consumers).expect("order"),
        ..Default::default()
    };
    let names: Vec<String> = store
        .list_consumers(&consumers)
        .await
        .expect("consumers")
        .items
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["c2", "c1"]);
}

async fn status_events_cursor_and_prune(store: DynStore) {
    let ids = Generator::default();
    consumer(&store, "c1").await;
    assert_eq!(store.last_status_event_seq().await.expect("last"), 0);
    let r = store.create_resource(new_resource("r1", "c1")).await.expect("create");
    for n in 0..4 {
        let w = status(&r, &ids.next_string(), json!({"n": n}));
        assert_eq!(store.apply_status(w).await.expect("apply"), StatusOutcome::Stored);
    }
    let all = store.status_events_after(0, 100).await.expect("all");
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let last = store.last_status_event_seq().await.expect("last");
    assert_eq!(last, all[3].seq);

    let next = store.status_events_after(all[0].seq, 1).await.expect("after first");
    assert_eq!(next, vec![all[1].clone()]);
    assert!(store.status_events_after(last, 10).await.expect("none").is_empty());

    assert_eq!(store.prune_status_events(all[1].seq).await.expect("prune"), 2);
    assert_eq!(store.status_events_after(0, 100).await.expect("rest"), all[2..].to_vec());
    assert_eq!(store.prune_status_events(all[1].seq).await.expect("prune again"), 0);

    let w = status(&r, &ids.next_string(), json!({"n": 9}));
    store.apply_status(w).await.expect("apply");
    let newest = store.last_status_event_seq().await.expect("last");
    assert!(newest > last, "sequence numbers keep growing");
}

async fn concurrent_updates_serialize(store: DynStore) {
    consumer(&store, "c1").await;
    store.create_resource(new_resource("r1", "c1")).await.expect("create");
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.update_resource("r1", 0, json!({"n": n})).await })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.expect("join").expect("update").version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=21).collect::<Vec<_>>(), "every update got its own version");
    assert_eq!(store.get_resource("r1").await.expect("get").version, 21);
    let updates: Vec<i64> = pending(&store)
        .await
        .into_iter()
        .filter(|r| r.action == SpecAction::Update)
        .map(|r| r.version)
        .collect();
    assert_eq!(updates, (2..=21).collect::<Vec<_>>(), "one Update row per bump, in commit order");
}

async fn signals_fire_after_commit(store: DynStore) {
    let wait = Duration::from_secs(10);
    let (mut spec, mut statuses) = (store.spec_changes(), store.status_changes());
    consumer(&store, "c1").await;
    let r = store.create_resource(new_resource("r1", "c1")).await.expect("create");
    // The change is kept for the next reader call even though nobody was waiting at commit time.
    tokio::time::timeout(wait, spec.next()).await.expect("spec change after create");

    let waiter = tokio::spawn(async move { tokio::time::timeout(wait, statuses.next()).await.map(|_| ()) });
    let w = status(&r, &Generator::default().next_string(), json!({"ok": true}));
    assert_eq!(store.apply_status(w).await.expect("apply"), StatusOutcome::Stored);
    waiter.await.expect("join").expect("status signal after apply_status");
}

/// Creates and statuses arriving together share transactions (group commit), yet each gets the
/// answer it would get alone: unknown consumers and repeated ids fail, the rest are stored
/// with one outbox row / one status event row each.
async fn concurrent_writes_each_get_their_answer(store: DynStore) {
    consumer(&store, "c1").await;
    let burst: Vec<NewResource> = (0..200)
        .map(|i| new_resource(&format!("r{i}"), "c1"))
        .chain((0..5).map(|i| new_resource(&format!("x{i}"), "nope")))
        .chain((0..5).map(|i| new_resource(&format!("r{i}"), "c1")))
        .collect();
    let tasks: Vec<_> = burst
        .into_iter()
        .map(|new| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { (new.id.clone(), store.create_resource(new).await) })
        })
        .collect();
    let (mut created, mut unknown, mut conflicts) = (Vec::new(), 0, 0);
    for task in tasks {
        match task.await.expect("join") {
            (_, Ok(r)) => created.push(r),
            (_, Err(StoreError::UnknownConsumer(c))) => {
                assert_eq!(c, "nope");
                unknown += 1;
            }
            (id, Err(StoreError::Conflict(msg))) => {
                assert!(msg.contains(&id), "{msg}");
                conflicts += 1;
            }
            (id, Err(e)) => panic!("create {id}: {e}"),
        }
    }
    assert_eq!((created.len(), unknown, conflicts), (200, 5, 5));
    let creates = pending(&store).await.into_iter().filter(|r| r.action == SpecAction::Create).count();
    assert_eq!(creates, 200, "one Create outbox row per created resource");
    let count_only = ResourceQuery { paging: Paging { page: 1, size: 0 }, ..Default::default() };
    let total = store.list_resources(&count_only).await.expect("count").total;
    assert_eq!(total, 200, "refused creations are not counted");

    let ids = Generator::default();
    store_statuses_concurrently(&store, &created, &ids).await;
    let events = store.status_events_after(0, 1000).await.expect("events");
    assert_eq!(events.len(), 200, "one status event row per stored status");
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let r7 = store.get_resource("r7").await.expect("get r7");
    assert_eq!(r7.status.and_then(|s| s.get("data").cloned()), Some(json!({"applied": "r7"})));
}

/// The status feed hands its one reader exactly the rows `status_events_after` reads back —
/// same `seq`s, texts and times, in commit order — including a confirmed deletion's row.
async fn the_status_feed_gives_the_stored_rows(store: DynStore) {
    let mut feed = store.status_changes();
    assert!(feed.has_rows(), "the first status feed hands over rows");
    assert!(!store.status_changes().has_rows(), "the feed has one reader");
    consumer(&store, "c1").await;
    let ids = Generator::default();
    let mut created = Vec::new();
    for i in 0..60 {
        created.push(store.create_resource(new_resource(&format!("r{i}"), "c1")).await.expect("create"));
    }
    store_statuses_concurrently(&store, &created, &ids).await;
    store.mark_deleting("r0").await.expect("mark").expect("known");
    let mut gone = status(&created[0], &ids.next_string(), json!({"deleted": true}));
    gone.deleted = true;
    assert_eq!(store.apply_status(gone).await.expect("apply"), StatusOutcome::Deleted);

    let stored = store.status_events_after(0, 1000).await.expect("events");
    assert_eq!(stored.len(), 61);
    let mut fed = Vec::new();
    while fed.len() < stored.len() {
        // A spurious wake-up (`Read`) is allowed; every row must still come as `Rows`.
        if let Change::Rows(batch) =
            tokio::time::timeout(Duration::from_secs(10), feed.next()).await.expect("a batch within 10 s")
        {
            fed.extend(batch);
        }
    }
    assert_eq!(fed, stored);
    assert_eq!(fed.last().map(|r| r.kind), Some(StatusEventKind::StatusDelete));
    assert!(feed.try_rows().is_none(), "nothing more was fed");
}

/// A write the database refuses (PostgreSQL `text` rejects the NUL character) fails alone:
/// the writes that shared its transaction are retried on their own and stored.
async fn a_refused_write_fails_alone(store: DynStore) {
    consumer(&store, "c1").await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let mut new = new_resource(&format!("r{i}"), "c1");
            if i == 25 {
                new.name = "nul \u{0} inside".to_owned();
            }
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create_resource(new).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("join"));
    }
    for (i, answer) in answers.iter().enumerate() {
        match (i, answer) {
            (25, Err(StoreError::Database(_))) if store.kind() == "postgres" => {}
            (25, other) if store.kind() == "postgres" => panic!("r25 must be refused: {other:?}"),
            (_, Ok(r)) => assert_eq!(r.id, format!("r{i}")),
            (_, Err(e)) => panic!("r{i}: {e}"),
        }
    }
    let stored = store.list_resources(&ResourceQuery::default()).await.expect("list").total;
    let want = if store.kind() == "postgres" { 49 } else { 50 };
    assert_eq!(stored, want);
    assert_eq!(pending(&store).await.len() as i64, want, "outbox rows only for stored resources");
}

// ---- backend-independent ----

#[tokio::test]
async fn open_rejects_unknown_schemes_without_leaking_passwords() {
    let err = maestro_store::open("mysql://user:secret@db:3306/maestro").await.expect_err("mysql");
    let StoreError::Invalid(msg) = &err else { panic!("want Invalid, got {err:?}") };
    assert!(msg.contains("unsupported database URL") && msg.contains("sqlite::memory:"), "{msg}");
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn redact_hides_passwords() {
    let red = maestro_store::redact("postgres://maestro:s3cret@db:5432/maestro?sslmode=require");
    assert!(!red.contains("s3cret") && red.contains("***") && red.contains("db:5432"), "{red}");
    assert_eq!(maestro_store::redact("sqlite::memory:"), "sqlite::memory:");
    assert_eq!(maestro_store::redact("postgres://db/maestro"), "postgres://db/maestro");
}

#[tokio::test]
async fn sqlite_file_keeps_data_across_reopen() {
    let (_dir, url) = testing::sqlite_file().await;
    let store = maestro_store::open(&url).await.expect("open");
    consumer(&store, "c1").await;
    store.create_resource(new_resource("r1", "c1")).await.expect("create");
    drop(store);
    let store = maestro_store::open(&url).await.expect("reopen");
    assert_eq!(store.kind(), "sqlite");
    assert_eq!(store.get_resource("r1").await.expect("persisted").version, 1);
    assert_eq!(pending(&store).await.len(), 1);
}
