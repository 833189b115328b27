//! The main job end to end over real gRPC sockets, once on SQLite and once on PostgreSQL (see
//! `maestro_tests::main_job` for the scenario). The clusters are the product's simulated
//! clusters (no Kubernetes API server can run here).

use maestro::stack::StackConfig;
use maestro_tests::{Db, db_url, logging, main_job::main_job};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn main_job_on_sqlite() {
    logging();
    let (_guard, url) = db_url(Db::Sqlite).await;
    main_job(StackConfig::new(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn main_job_on_postgres() {
    logging();
    let (_guard, url) = db_url(Db::Postgres).await;
    main_job(StackConfig::new(&url)).await;
}
