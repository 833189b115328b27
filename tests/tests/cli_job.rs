//! The HyperFleet Job contract of `maestro-cli` against the real server and a real (simulated
//! cluster) agent: the seed's Job command line with `host:port` endpoints writes a results file
//! that parses as a `StatusResult` with status Applied and exits 0; `delete --watch` of the work
//! exits 0, and a second delete (a Job retry) warns and exits 0 too (README.md, "maestro-cli").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use maestro::stack::{LocalStack, StackConfig};
use maestro_tests::{Db, cli_binary, db_url, logging};
use serde_json::Value;

/// Runs `maestro-cli` with the endpoints of `stack` as `host:port` (no scheme, as the Job
/// template passes them) in a blocking thread; returns the exit code and stderr.
async fn cli(stack: &LocalStack, args: &[String]) -> (i32, String) {
    let mut cmd = Command::new(cli_binary());
    cmd.arg(format!("--grpc-endpoint=localhost:{}", stack.grpc_addr().port()))
        .arg(format!("--http-endpoint=localhost:{}", stack.http_addr().port()))
        .args(args)
        .env_remove("RESULTS_PATH");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("maestro-cli runs")).await.unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hyperfleet_job_command_line_works_against_the_real_server() {
    logging();
    let (_guard, url) = db_url(Db::Sqlite).await;
    let mut stack = LocalStack::start(StackConfig::new(&url)).await.unwrap();
    stack.rest.create_consumer("cluster-1", &Default::default()).await.unwrap();
    stack.start_agent("cluster-1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("status.json");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/web-app.yaml");

    let apply = [
        "apply".to_owned(),
        format!("--manifest-file={manifest}"),
        "--consumer=cluster-1".to_owned(),
        "--watch".to_owned(),
        "--timeout=2m".to_owned(),
        format!("--results-path={}", results.display()),
    ];
    let (code, stderr) = cli(&stack, &apply).await;
    assert_eq!(code, 0, "apply: {stderr}");
    let status: Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).expect("StatusResult JSON");
    assert_eq!(
        (status["manifestWorkName"].as_str(), status["consumer"].as_str(), status["status"].as_str()),
        (Some("web-app"), Some("cluster-1"), Some("Applied")),
        "{status:#}"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(status["timestamp"].as_str().unwrap()).is_ok());
    let resources = status["resources"].as_array().expect("resources");
    assert!(
        !resources.is_empty() && resources.iter().all(|r| r["kind"].is_string() && r["name"].is_string())
    );

    let delete = [
        "delete".to_owned(),
        "--name=web-app".to_owned(),
        "--consumer=cluster-1".to_owned(),
        "--watch".to_owned(),
    ];
    let (code, stderr) = cli(&stack, &delete).await;
    assert_eq!(code, 0, "delete: {stderr}");
    let (code, stderr) = cli(&stack, &delete).await;
    assert_eq!(code, 0, "a retried delete: {stderr}");
    assert!(stderr.contains("warning"), "{stderr}");
    stack.shutdown().await;
}
