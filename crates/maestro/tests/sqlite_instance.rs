//! SQLite serves one server instance (docs/operations.md §3.1): a second `maestro
//! server` on the same file is refused with a clear message until the first has stopped.

use std::net::SocketAddr;

use maestro::broker::BrokerKind;
use maestro::server::{ServerSettings, defaults, start};

fn settings(db_url: &str) -> ServerSettings {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut s = defaults(db_url, BrokerKind::Grpc);
    (s.server.http_addr, s.server.grpc_addr, s.broker.grpc_bind) = (any, any, any);
    s
}

#[tokio::test]
async fn a_second_server_on_one_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("maestro.db").display());
    let first = start(&settings(&url)).await.expect("the first server starts");
    let err = format!("{:#}", start(&settings(&url)).await.expect_err("a second server on the same file"));
    assert!(err.contains("is in use by another maestro server"), "{err}");
    assert!(err.contains("use PostgreSQL for several instances"), "{err}");
    first.server.shutdown().await;
    let again = start(&settings(&url)).await.expect("a server starts once the first stopped");
    again.server.shutdown().await;
    let other = tempfile::tempdir().expect("temp dir");
    let other_url = format!("sqlite://{}", other.path().join("maestro.db").display());
    let (a, b) = (start(&settings(&other_url)).await, start(&settings("sqlite::memory:")).await);
    a.expect("another file").server.shutdown().await;
    b.expect("an in-memory database").server.shutdown().await;
}
