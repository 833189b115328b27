//! Shared helpers of the cross-crate integration and end-to-end tests (real gRPC sockets,
//! real SQLite files and a real PostgreSQL server; see scripts/test.sh).

#![allow(clippy::unwrap_used)]

pub mod broker_restart;
pub mod contract;
pub mod main_job;

use std::future::Future;
use std::time::{Duration, Instant};

use maestro_api::pb::{PublishRequest, cloud_event_service_client::CloudEventServiceClient};
use maestro_api::{Event, grpc};

/// A reqwest client builder, with rustls' ring provider installed as the process default first
/// (reqwest is built without a bundled provider and panics without one).
pub fn http_builder() -> reqwest::ClientBuilder {
    maestro_tls::install_process_provider();
    reqwest::Client::builder()
}

/// A reqwest client with default settings (see [`http_builder`]).
pub fn http() -> reqwest::Client {
    http_builder().build().expect("an HTTP client")
}

/// GET `url` with a fresh client (see [`http_builder`]).
pub async fn http_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http().get(url).send().await
}

/// Default deadline of a wait.
/// Generous because the Pub/Sub emulator can hold a message on a StreamingPull stream its
/// client closed for several 10 s stream ack deadlines before redelivering it.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Installs a test log subscriber once (`RUST_LOG` controls it; default `warn`).
pub fn logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// The two stores every end-to-end test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server of `MAESTRO_TEST_DATABASE_URL`.
    Postgres,
}

/// A database URL for `db`; keep the returned guard alive for the test's duration.
pub async fn db_url(db: Db) -> (Option<tempfile::TempDir>, String) {
    match db {
        Db::Sqlite => {
            let (dir, url) = maestro_store::testing::sqlite_file().await;
            (Some(dir), url)
        }
        Db::Postgres => (None, maestro_store::testing::postgres_url().await),
    }
}

/// Polls `f` until it returns `Some`, or panics naming `what` after `DEADLINE`.
pub async fn wait_for<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_within(what, DEADLINE, f).await
}

/// [`wait_for`] with its own deadline.
pub async fn wait_for_within<T, F, Fut>(what: &str, deadline: Duration, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes a raw event to the source-facing gRPC service at `addr`.
pub async fn publish_raw(addr: std::net::SocketAddr, event: &Event) -> Result<(), tonic::Status> {
    publish_proto(addr, grpc::to_proto(event)).await
}

/// Publishes a raw protobuf CloudEvent to the source-facing gRPC service at `addr`.
pub async fn publish_proto(
    addr: std::net::SocketAddr,
    event: maestro_api::pb::CloudEvent,
) -> Result<(), tonic::Status> {
    let mut client = CloudEventServiceClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    client.publish(PublishRequest { event: Some(event) }).await.map(|_| ())
}

/// The `maestro-cli` binary built by the same `cargo test --workspace` / `nextest` run (next to
/// the test binary's directory).
///
/// # Panics
/// When it was not built.
pub fn cli_binary() -> std::path::PathBuf {
    workspace_binary("maestro-cli")
}

/// The `maestro` binary built by the same run, as [`cli_binary`].
///
/// # Panics
/// When it was not built.
pub fn maestro_binary() -> std::path::PathBuf {
    workspace_binary("maestro")
}

fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target profile dir");
    let bin = dir.join(name);
    assert!(bin.exists(), "{} not built: run the workspace tests (scripts/test.sh)", bin.display());
    bin
}
