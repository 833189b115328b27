//! The outbox and the status event log stay bounded under a long run (docs/security.md, "Bad
//! input"): the real server on SQLite and PostgreSQL with the in-memory broker and an agent
//! that answers every spec event with a status, 30 rounds of updates to 20 bundles; done spec
//! outbox rows and fanned-out status event rows are pruned as the run goes, so once it is quiet
//! both tables are empty although 620 rows of each were written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use maestro_api::codec::StatusEventBuilder;
use maestro_api::payload::{Condition, ManifestBundleStatus};
use maestro_api::snowflake::Generator;
use maestro_api::types::Action;
use maestro_api::{Event, ext};
use maestro_server::ServerConfig;
use maestro_server::retention::RetentionConfig;
use maestro_store::{DynStore, NewConsumer, NewResource};
use maestro_transport::memory::{MemoryAgent, MemoryBroker};
use maestro_transport::{AgentTransport, EventHandler, HandlerError};
use serde_json::json;

const BUNDLES: usize = 20;
const ROUNDS: i64 = 30;

/// Answers every spec event with an `Applied` status at its version.
struct EchoAgent {
    transport: Arc<MemoryAgent>,
    ids: Generator,
}

#[async_trait]
impl EventHandler for EchoAgent {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let (Ok(id), Ok(version)) = (ext::resource_id(event), ext::resource_version(event)) else {
            return Ok(()); // status resync requests
        };
        let mut status = ManifestBundleStatus::default();
        // The message names the version: an unchanged status would not be stored again.
        let message = format!("applied version {version}");
        status.conditions.push(Condition {
            kind: "Applied".into(),
            status: "True".into(),
            message,
            ..Default::default()
        });
        let ev = StatusEventBuilder {
            source: "c1-work-agent",
            resource_id: &id,
            resource_version: version,
            cluster_name: "c1",
            original_source: "maestro",
            sequence_id: &self.ids.next_string(),
            status_hash: "",
            metadata: None,
            action: Action::Update,
        }
        .build(&status);
        self.transport.publish(&ev).await.map_err(|e| HandlerError::Retryable(e.to_string()))
    }
}

fn payload(id: &str, round: i64) -> serde_json::Value {
    json!({
        "specversion": "1.0", "id": format!("{id}-{round}"), "source": "maestro",
        "type": "io.open-cluster-management.works.v1alpha1.manifestbundles.spec.create_request",
        "resourceid": id, "resourceversion": 1, "clustername": "c1",
        "datacontenttype": "application/json",
        "data": {"manifests": [{"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": id, "namespace": "default"}, "data": {"round": round.to_string()}}]}
    })
}

/// The `resourceversion` of a bundle's stored status.
fn status_version(r: &maestro_store::Resource) -> Option<i64> {
    r.status.as_ref()?.get("resourceversion")?.as_i64()
}

/// Rows in `table`, counted through a connection of the store's own kind.
async fn count(url: &str, table: &'static str) -> i64 {
    let sql = match table {
        "spec_events" => "SELECT COUNT(*) FROM spec_events",
        _ => "SELECT COUNT(*) FROM status_events",
    };
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.expect("pg");
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await.expect("count");
        pool.close().await;
        n
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await.expect("count");
        pool.close().await;
        n
    }
}

async fn wait<T, Fut: std::future::Future<Output = Option<T>>>(what: &str, f: impl Fn() -> Fut) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn tables_stay_bounded(url: String) {
    let store: DynStore = maestro_store::open(&url).await.expect("store");
    store
        .create_consumer(NewConsumer { name: Some("c1".into()), labels: Default::default() })
        .await
        .expect("c1");
    let broker = MemoryBroker::new();
    let agent = broker.agent("c1");
    agent
        .start(Arc::new(EchoAgent { transport: agent.clone(), ids: Generator::default() }))
        .await
        .expect("agent");
    let config = ServerConfig {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        retention: RetentionConfig {
            interval: Duration::from_millis(100),
            keep_done_for: Duration::ZERO,
            batch: 50,
            status_events_prune_every: Duration::from_millis(100),
            ..RetentionConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = maestro_server::start(config, store.clone(), broker.source()).await.expect("server");

    let ids: Vec<String> = (0..BUNDLES).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for id in &ids {
        let new = NewResource {
            id: id.clone(),
            name: id.clone(),
            consumer_name: "c1".into(),
            source: "maestro".into(),
            payload: payload(id, 0).into(),
        };
        store.create_resource(new).await.expect("create");
    }
    for round in 1..=ROUNDS {
        for id in &ids {
            store.update_resource(id, 0, payload(id, round)).await.expect("update");
        }
        wait("every bundle's status at the round's version", || async {
            let all = store.get_resources(&ids).await.ok()?;
            all.iter().all(|r| r.version == round + 1 && status_version(r) == Some(round + 1)).then_some(())
        })
        .await;
    }
    let written = BUNDLES as i64 * (ROUNDS + 1);
    wait("both tables pruned empty", || async {
        (count(&url, "spec_events").await == 0 && count(&url, "status_events").await == 0).then_some(())
    })
    .await;
    // The rows were written: the bundles hold the last round's versions and statuses.
    assert!(store.get_resources(&ids).await.unwrap().iter().all(|r| r.version == written / BUNDLES as i64));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_stay_bounded_on_sqlite() {
    let (_dir, url) = maestro_store::testing::sqlite_file().await;
    tables_stay_bounded(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_stay_bounded_on_postgres() {
    tables_stay_bounded(maestro_store::testing::postgres_url().await).await;
}
