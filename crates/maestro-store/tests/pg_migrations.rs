//! Upgrading a PostgreSQL database written under the first schema (`jsonb` payloads and
//! statuses) to the `json` columns of `0002_json_columns.sql` keeps every stored bundle, and
//! the store reads and writes it afterwards (and the row count of `0004_resource_totals.sql`
//! starts at the rows already stored). Needs `MAESTRO_TEST_DATABASE_URL` (real
//! PostgreSQL; `scripts/test.sh` starts one).

use maestro_store::{Paging, ResourceQuery, StatusOutcome, StatusWrite, testing};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

fn payload(i: u32) -> Value {
    json!({"id": format!("e-{i}"), "data": {"manifests": [{"kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")}}]},
           "metadata": {"name": format!("w-{i}"), "resourceVersion": "1"}, "specversion": "1.0"})
}

/// Writes a consumer and three bundles (one with a status) with the first schema only.
async fn first_schema_database(url: &str) {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await.expect("connect");
    sqlx::migrate!("../../migrations/postgres").run_to(1, &pool).await.expect("migration 0001");
    sqlx::query("INSERT INTO consumers (id, name, labels, created_at, updated_at) VALUES ('c-id', 'c1', '{}', now(), now())")
        .execute(&pool)
        .await
        .expect("consumer");
    for i in 0..3u32 {
        let status =
            (i == 1).then(|| json!({"data": {"conditions": [{"type": "Applied", "status": "True"}]}}));
        sqlx::query(
            "INSERT INTO resources (id, name, consumer_name, source, version, payload, status, status_hash, \
             sequence_id, created_at, updated_at) \
             VALUES ($1, $2, 'c1', 'src', 1, $3::jsonb, $4::jsonb, NULL, $5, now() + $6 * interval '1 ms', now())",
        )
        .bind(format!("r{i}"))
        .bind(format!("w-{i}"))
        .bind(payload(i).to_string())
        .bind(status.map(|s| s.to_string()))
        .bind((i == 1).then_some("1834773391719010304"))
        .bind(f64::from(i))
        .execute(&pool)
        .await
        .expect("resource");
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonb_rows_survive_the_json_migration() {
    let url = testing::postgres_url().await;
    first_schema_database(&url).await;
    let store = maestro_store::open(&url).await.expect("open and migrate");

    let pool = PgPoolOptions::new().max_connections(1).connect(&url).await.expect("connect");
    let types: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_name IN ('payload', 'status') ORDER BY table_name, column_name",
    )
    .fetch_all(&pool)
    .await
    .expect("column types");
    assert_eq!(types.len(), 4, "payload/status columns: {types:?}");
    assert!(types.iter().all(|(_, t)| t == "json"), "payload/status columns after migrating: {types:?}");

    for i in 0..3u32 {
        let r = store.get_resource(&format!("r{i}")).await.expect("migrated bundle");
        assert_eq!(*r.payload, payload(i), "payload of r{i}");
        assert_eq!(r.status.is_some(), i == 1, "status of r{i}");
    }
    let raw = store
        .list_resources_raw(&ResourceQuery { paging: Paging { page: 1, size: 10 }, ..Default::default() })
        .await
        .expect("raw list");
    let ids: Vec<&str> = raw.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r0", "r1", "r2"]);
    assert_eq!(raw.total, 3, "0004_resource_totals.sql counts the rows that were there");
    let parsed: Value = serde_json::from_str(raw.items[2].payload.get()).expect("raw payload is JSON");
    assert_eq!(parsed, payload(2));

    // A newer status for the migrated row is stored over the jsonb-era one.
    let data = json!({"conditions": [{"type": "Available", "status": "True"}]});
    let write = StatusWrite {
        resource_id: "r1".into(),
        consumer_name: "c1".into(),
        version: 1,
        sequence_id: "1834773391719010305".into(),
        status_hash: Some("h2".into()),
        event: json!({"specversion": "1.0", "data": data}).to_string(),
        deleted: false,
    };
    assert_eq!(store.apply_status(write).await.expect("status"), StatusOutcome::Stored);
    let r1 = store.get_resource("r1").await.expect("r1");
    assert_eq!(
        r1.status.and_then(|s| s.pointer("/data/conditions/0/type").cloned()),
        Some(json!("Available"))
    );
}

/// `drop_postgres_database` removes a database even while a store still holds connections to
/// it (the benchmark harness drops each run's database this way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_in_use_is_dropped() {
    let admin = std::env::var(testing::DATABASE_URL_ENV).expect("MAESTRO_TEST_DATABASE_URL");
    let url = testing::fresh_postgres_database(&admin, "maestro_test_drop").await.expect("create");
    let store = maestro_store::open(&url).await.expect("open and migrate");
    store.ping().await.expect("the store is connected");
    let name = url.rsplit('/').next().expect("a database name").to_owned();
    testing::drop_postgres_database(&admin, &url).await.expect("drop");
    let pool = PgPoolOptions::new().max_connections(1).connect(&admin).await.expect("connect");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 0, "{name} is still there");
    assert!(testing::drop_postgres_database(&admin, "postgres://127.0.0.1/").await.is_err());
}
