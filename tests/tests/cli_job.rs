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

/// `delete --all` removes only this source's works of the consumer; `--any-source` removes the
/// other sources' works too (through REST), and other consumers' works stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_all_keeps_to_its_source_unless_any_source() {
    logging();
    let (_guard, url) = db_url(Db::Sqlite).await;
    let stack = LocalStack::start(StackConfig::new(&url)).await.unwrap();
    for c in ["cluster-1", "cluster-2"] {
        stack.rest.create_consumer(c, &Default::default()).await.unwrap();
    }
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/web-app.yaml");
    let apply = |consumer: &str| {
        ["apply".to_owned(), format!("--manifest-file={manifest}"), format!("--consumer={consumer}")]
    };
    for c in ["cluster-1", "cluster-2"] {
        let (code, stderr) = cli(&stack, &apply(c)).await;
        assert_eq!(code, 0, "{stderr}");
    }
    let other = maestro_client::manifestwork::read(manifest, Some("other-source")).unwrap();
    assert_ne!(stack.source.source_id(), "maestro-cli");
    stack.source.apply("cluster-1", &other).await.unwrap();
    let live = |consumer: &'static str| {
        let rest = stack.rest.clone();
        async move {
            let filter =
                maestro_client::BundleFilter { consumer: Some(consumer.into()), ..Default::default() };
            let all = rest.all_bundles(&filter).await.unwrap();
            all.into_iter().filter(|b| !b.is_deleting()).map(|b| b.name).collect::<Vec<_>>()
        }
    };
    let all = |extra: &str| {
        let mut args = vec!["delete".to_owned(), "--all".to_owned(), "--consumer=cluster-1".to_owned()];
        args.extend((!extra.is_empty()).then(|| extra.to_owned()));
        args
    };
    let (code, stderr) = cli(&stack, &all("")).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(live("cluster-1").await, ["other-source"], "only maestro-cli's work is deleted");
    let (code, stderr) = cli(&stack, &all("--any-source")).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(live("cluster-1").await.is_empty(), "every source's work is deleted");
    assert_eq!(live("cluster-2").await, ["web-app"], "another consumer's work stays");
    stack.shutdown().await;
}
