//! Several writers sharing one ManifestWork (the HyperFleet "Pattern C" hazard) through
//! `maestro-cli` processes against the real server, on SQLite and PostgreSQL
//! (docs/cli.md, "Merge apply"):
//! - 8 writers each adding its own manifest 25 times with `apply --merge --manager` → all 200
//!   manifests present at the end, each recorded for its writer, and the version is exactly
//!   the number of writes;
//! - the same with plain `apply --manager` (no merge) → every run either succeeds or reports a
//!   conflict (exit 4), never a silent loss: every writer's last successful list is stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use maestro::stack::{LocalStack, StackConfig};
use maestro_tests::{Db, cli_binary, db_url, logging};

const WRITERS: usize = 8;
const ROUNDS: usize = 25;
const WORK: &str = "shared";
const CONSUMER: &str = "cluster-1";

/// Writes writer `w`'s manifest list for round `round`: ConfigMaps `w<w>-0` … `w<w>-<round>`.
fn manifests(dir: &Path, w: usize, round: usize) -> String {
    let docs: Vec<String> = (0..=round)
        .map(|r| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: w{w}-{r}, namespace: default}}\ndata: {{writer: \"{w}\"}}\n"))
        .collect();
    let path = dir.join(format!("w{w}-{round}.yaml"));
    std::fs::write(&path, docs.join("---\n")).unwrap();
    path.display().to_string()
}

/// Runs `maestro-cli apply` for writer `w`, round `round`, with `extra` flags; returns the
/// exit code and stderr.
fn apply(stack_ports: (u16, u16), dir: &Path, w: usize, round: usize, extra: &[&str]) -> (i32, String) {
    let out = Command::new(cli_binary())
        .arg(format!("--grpc-endpoint=localhost:{}", stack_ports.0))
        .arg(format!("--http-endpoint=localhost:{}", stack_ports.1))
        .args(["apply", "--consumer", CONSUMER, "--name", WORK, "--manager", &format!("w{w}")])
        .arg(format!("--manifest-file={}", manifests(dir, w, round)))
        .args(extra)
        .env_remove("RESULTS_PATH")
        .output()
        .expect("maestro-cli runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs every writer's rounds concurrently (one thread per writer); returns each writer's
/// exit codes and stderr per round.
async fn race(stack: &LocalStack, extra: &'static [&'static str]) -> Vec<Vec<(i32, String)>> {
    let ports = (stack.grpc_addr().port(), stack.http_addr().port());
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                (0..ROUNDS).map(|r| apply(ports, dir.path(), w, r, extra)).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut results = Vec::new();
    for w in writers {
        results.push(w.await.unwrap());
    }
    results
}

/// The stored bundle's manifest names and recorded managers, and its version.
async fn stored(stack: &LocalStack) -> (BTreeSet<String>, BTreeMap<String, String>, i64) {
    let b = stack.rest.get_bundle_by_name("maestro-cli", CONSUMER, WORK).await.unwrap();
    let names = b.manifests.iter().map(|m| m["metadata"]["name"].as_str().unwrap().to_owned()).collect();
    (names, maestro_api::merge::managers(&b.metadata), b.version)
}

async fn start(db: Db) -> (Option<tempfile::TempDir>, LocalStack) {
    logging();
    let (guard, url) = db_url(db).await;
    let stack = LocalStack::start(StackConfig::new(&url)).await.unwrap();
    stack.rest.create_consumer(CONSUMER, &Default::default()).await.unwrap();
    (guard, stack)
}

async fn merge_writers_lose_nothing(db: Db) {
    let (_guard, stack) = start(db).await;
    let results = race(&stack, &["--merge"]).await;
    for (w, runs) in results.iter().enumerate() {
        for (r, (code, stderr)) in runs.iter().enumerate() {
            assert_eq!(*code, 0, "writer {w} round {r}: {stderr}");
        }
    }
    let (names, managers, version) = stored(&stack).await;
    let want: BTreeSet<String> =
        (0..WRITERS).flat_map(|w| (0..ROUNDS).map(move |r| format!("w{w}-{r}"))).collect();
    assert_eq!(names, want, "every writer's every manifest is present");
    for (key, manager) in &managers {
        let name = key.rsplit('/').next().unwrap();
        assert_eq!(name.split('-').next(), Some(manager.as_str()), "{key} recorded for {manager}");
    }
    assert_eq!(managers.len(), WRITERS * ROUNDS);
    assert_eq!(version, i64::try_from(WRITERS * ROUNDS).unwrap(), "one version per write");
    stack.shutdown().await;
}

async fn plain_writers_conflict_but_never_lose(db: Db) {
    let (_guard, stack) = start(db).await;
    let results = race(&stack, &[]).await;
    let (names, _, _) = stored(&stack).await;
    let mut conflicts = 0;
    for (w, runs) in results.iter().enumerate() {
        for (r, (code, stderr)) in runs.iter().enumerate() {
            assert!(*code == 0 || *code == 4, "writer {w} round {r}: exit {code}: {stderr}");
            if *code == 4 {
                conflicts += 1;
                assert!(stderr.contains("conflict") || stderr.contains("would remove"), "{stderr}");
            }
        }
        if let Some(last_ok) = runs.iter().rposition(|(code, _)| *code == 0) {
            for r in 0..=last_ok {
                assert!(names.contains(&format!("w{w}-{r}")), "writer {w}'s w{w}-{r} was lost silently");
            }
        }
    }
    assert!(conflicts > 0, "seven writers would have removed the first writer's manifests");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_writers_lose_nothing_sqlite() {
    merge_writers_lose_nothing(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_writers_lose_nothing_postgres() {
    merge_writers_lose_nothing(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_writers_conflict_but_never_lose_sqlite() {
    plain_writers_conflict_but_never_lose(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_writers_conflict_but_never_lose_postgres() {
    plain_writers_conflict_but_never_lose(Db::Postgres).await;
}

/// Runs `maestro-cli` with `args` against `stack`; returns the exit code, stdout and stderr.
fn cli(stack: &LocalStack, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(cli_binary())
        .arg(format!("--grpc-endpoint=localhost:{}", stack.grpc_addr().port()))
        .arg(format!("--http-endpoint=localhost:{}", stack.http_addr().port()))
        .args(args)
        .env_remove("RESULTS_PATH")
        .output()
        .expect("maestro-cli runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// `build` merges manifests into the stored work by identity (printing or applying it at the
/// version read); a plain apply that would drop another manager's manifests is a conflict
/// unless forced; a library apply at a stale version is a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_and_plain_apply_never_drop_silently() {
    let (_guard, stack) = start(Db::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (manifests(dir.path(), 0, 0), manifests(dir.path(), 1, 0));
    let base = ["--consumer", CONSUMER, "--name", WORK];
    let (code, _, err) =
        cli(&stack, &[&["apply", "--manifest-file", &a, "--manager", "w0"][..], &base].concat());
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&stack, &[&["build", "--manifest-file", &b][..], &base].concat());
    assert_eq!(code, 0, "{err}");
    let built: serde_json::Value = serde_yaml_ng::from_str(&out).unwrap();
    let names: Vec<&str> = built["spec"]["workload"]["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!((built["kind"].as_str(), names), (Some("ManifestWork"), vec!["w0-0", "w1-0"]));
    assert_eq!(stored(&stack).await.2, 1, "build without --apply changes nothing");

    let (code, _, err) = cli(&stack, &[&["build", "--apply", "--manifest-file", &b][..], &base].concat());
    assert_eq!(code, 0, "{err}");
    let (names, _, version) = stored(&stack).await;
    assert_eq!(
        (names.into_iter().collect::<Vec<_>>(), version),
        (vec!["w0-0".to_owned(), "w1-0".to_owned()], 2)
    );

    // A plain apply of b alone would drop w0's manifest: refused, then forced.
    let (code, _, err) = cli(&stack, &[&["apply", "--manifest-file", &b][..], &base].concat());
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("w0-0") && err.contains("\"w0\""), "{err}");
    let (code, _, err) = cli(&stack, &[&["apply", "--manifest-file", &b, "--force"][..], &base].concat());
    assert_eq!(code, 0, "{err}");
    assert_eq!(stored(&stack).await.0.into_iter().collect::<Vec<_>>(), ["w1-0"]);

    // The library refuses to write over a version other than the one the caller read.
    let work = maestro_client::manifestwork::read(&a, Some("stale")).unwrap();
    stack.source.apply(CONSUMER, &work).await.unwrap();
    stack.source.apply(CONSUMER, &work).await.unwrap();
    let options = maestro_client::ApplyOptions { expected_version: Some(1), ..Default::default() };
    let err = stack.source.apply_with(CONSUMER, &work, &options).await.unwrap_err();
    assert!(matches!(err, maestro_client::ClientError::Conflict { .. }), "{err}");
    stack.shutdown().await;
}
