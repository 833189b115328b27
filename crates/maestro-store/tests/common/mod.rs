//! What the store test files share: the three backends and a macro running one case on each.

use maestro_api::snowflake::Generator;
use maestro_store::{DynStore, NewResource, Resource, StatusWrite, testing};
use serde_json::{Value, json};

/// A store plus whatever must live as long as it.
pub(crate) struct Backend {
    pub(crate) store: DynStore,
    _dir: Option<tempfile::TempDir>,
}

pub(crate) async fn sqlite_memory() -> Backend {
    let store = maestro_store::open("sqlite::memory:").await.expect("open sqlite::memory:");
    Backend { store, _dir: None }
}

pub(crate) async fn sqlite_file() -> Backend {
    let (dir, url) = testing::sqlite_file().await;
    let store = maestro_store::open(&url).await.expect("open sqlite file");
    Backend { store, _dir: Some(dir) }
}

pub(crate) async fn postgres() -> Backend {
    let url = testing::postgres_url().await;
    let store = maestro_store::open(&url).await.expect("open postgres");
    Backend { store, _dir: None }
}

/// `backend!(name: case, …)`: a module `name` with one test per case on that backend.
#[macro_export]
macro_rules! backend {
    ($backend:ident: $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = $crate::common::$backend().await;
                    super::$case(backend.store.clone()).await;
                }
            )*
        }
    };
}

/// `suite!(case, …)`: every case on SQLite in memory, SQLite on a file and PostgreSQL.
#[macro_export]
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        $crate::backend!(sqlite_memory: $($case),*);
        $crate::backend!(sqlite_file: $($case),*);
        $crate::backend!(postgres: $($case),*);
    };
}

/// An agent status of `r` at its version with `data`, under a fresh sequence id from `ids`.
#[allow(dead_code)] // not every test file writes statuses
pub(crate) fn status_write(r: &Resource, ids: &Generator, data: Value) -> StatusWrite {
    StatusWrite {
        resource_id: r.id.clone(),
        consumer_name: r.consumer_name.clone(),
        version: r.version,
        sequence_id: ids.next_string(),
        status_hash: None,
        event: json!({"specversion": "1.0", "resourceversion": r.version, "data": data}).to_string(),
        deleted: false,
    }
}

/// Resource `id` of `consumer` from `source-a`, with a small payload.
#[allow(dead_code)] // not every test file creates resources
pub(crate) fn new_resource(id: &str, consumer: &str) -> NewResource {
    NewResource {
        id: id.to_owned(),
        name: format!("name-{id}"),
        consumer_name: consumer.to_owned(),
        source: "source-a".to_owned(),
        payload: json!({"id": id, "data": {"manifests": [1]}}).into(),
    }
}
