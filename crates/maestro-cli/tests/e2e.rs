//! End-to-end command tests against the in-process fake Maestro server.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../maestro-client/tests/support/mod.rs"]
mod support;

use std::io::Write;

use maestro_cli::results::{ResultStatus, StatusResult};
use maestro_client::resource_id;
use support::FakeServer;

const MANIFESTS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}\n---\n\
apiVersion: v1\nkind: Secret\nmetadata: {name: b, namespace: default}\n";

async fn cli(fake: &FakeServer, args: &[&str]) -> anyhow::Result<String> {
    let (out, result) = common::run_cli(&fake.http, &fake.grpc, args).await;
    result.map(|()| out)
}

fn manifest_file() -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(MANIFESTS.as_bytes()).unwrap();
    f
}

/// Waits (by polling shared state, no fixed sleeps) until `pred` holds for bundle `id`, then
/// runs `act`.
fn when_bundle(
    fake: &FakeServer,
    id: String,
    pred: fn(&serde_json::Value) -> bool,
    act: impl FnOnce(&FakeServer) + Send + 'static,
) {
    let state = fake.state.clone();
    let server = FakeServer { state: fake.state.clone(), http: fake.http.clone(), grpc: fake.grpc.clone() };
    tokio::spawn(async move {
        loop {
            if state.lock().unwrap().bundles.get(&id).is_some_and(pred) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        act(&server);
    });
}

#[tokio::test]
async fn apply_get_list_delete() {
    let fake = FakeServer::start().await;
    let file = manifest_file();
    let path = file.path().to_str().unwrap();
    let out = cli(&fake, &["apply", "-f", path, "-c", "c1", "--name", "web"]).await.unwrap();
    let id = resource_id("maestro-cli", "c1", "web");
    assert_eq!(out, format!("resource bundle web ({id}) created on consumer c1 at version 1\n"));
    let out = cli(&fake, &["apply", "-f", path, "-c", "c1", "--name", "web", "-o", "json"]).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["created"].as_bool(), v["version"].as_i64()), (Some(false), Some(2)));

    fake.set_status(&id, 2, &[("Applied", "True"), ("Available", "False")]);
    let out = cli(&fake, &["get", "--name", "web", "--consumer", "c1"]).await.unwrap();
    for needle in [
        "Name:       web",
        "Version:    2",
        "observed version 2 (current)",
        "Available",
        "ConfigMap default/a",
        "size",
        "3",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    let out = cli(&fake, &["get", "--id", &id, "-o", "yaml"]).await.unwrap();
    assert!(out.contains("consumer_name: c1"), "{out}");

    let out = cli(&fake, &["list", "--consumer", "c1"]).await.unwrap();
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CONSUMER", "VERSION", "APPLIED", "AVAILABLE", "DELETING", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..6], ["web", "c1", "2", "True", "False", "no"]);
    assert_eq!(cli(&fake, &["list", "--consumer", "other"]).await.unwrap(), "No resource bundles found.\n");
    // --search is sent as written, alone or joined with the other filters.
    let labels = "payload->'metadata'->'labels'->>'app' in ('web','api')";
    cli(&fake, &["list", "--search", labels]).await.unwrap();
    cli(&fake, &["list", "-c", "c1", "--search", labels]).await.unwrap();
    let out = cli(&fake, &["get", "--search", "name = 'web'", "-o", "json"]).await.unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["name"], "web", "{out}");
    let err = cli(&fake, &["get", "--search", "name = 'nope'"]).await.unwrap_err();
    assert!(err.to_string().contains("no resource bundle matches"), "{err}");
    let searches = fake.state.lock().unwrap().searches.clone();
    assert!(searches.contains(&labels.to_owned()), "{searches:?}");
    assert!(searches.contains(&format!("consumer_name = 'c1' and ({labels})")), "{searches:?}");

    let out = cli(&fake, &["delete", "-n", "web", "-c", "c1"]).await.unwrap();
    assert!(out.contains("marked for deletion"), "{out}");
    let out = cli(&fake, &["list"]).await.unwrap();
    assert!(out.lines().nth(1).unwrap().contains("yes"), "{out}");
}

#[tokio::test]
async fn apply_watch_waits_for_applied_and_available() {
    let fake = FakeServer::start().await;
    let file = manifest_file();
    let id = resource_id("maestro-cli", "c1", "web");
    when_bundle(
        &fake,
        id.clone(),
        |_| true,
        move |f| f.set_status(&id, 1, &[("Applied", "True"), ("Available", "True")]),
    );
    let out = cli(
        &fake,
        &[
            "apply",
            "-f",
            file.path().to_str().unwrap(),
            "-c",
            "c1",
            "-n",
            "web",
            "--watch",
            "--timeout",
            "20s",
        ],
    )
    .await
    .unwrap();
    assert!(out.contains("is applied and available at version 1"), "{out}");
}

#[tokio::test]
async fn apply_watch_fails_on_degraded() {
    let fake = FakeServer::start().await;
    let file = manifest_file();
    let id = resource_id("maestro-cli", "c1", "web");
    when_bundle(
        &fake,
        id.clone(),
        |_| true,
        move |f| f.set_status(&id, 1, &[("Applied", "True"), ("Degraded", "True")]),
    );
    let err = cli(
        &fake,
        &[
            "apply",
            "-f",
            file.path().to_str().unwrap(),
            "-c",
            "c1",
            "-n",
            "web",
            "--watch",
            "--timeout",
            "20s",
        ],
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("is degraded"), "{err:#}");
}

#[tokio::test]
async fn wait_times_out_with_the_last_state() {
    let fake = FakeServer::start().await;
    let file = manifest_file();
    cli(&fake, &["apply", "-f", file.path().to_str().unwrap(), "-c", "c1", "-n", "web"]).await.unwrap();
    let id = resource_id("maestro-cli", "c1", "web");
    fake.set_status(&id, 1, &[("Applied", "True"), ("Available", "False")]);
    let out = cli(&fake, &["wait", "-n", "web", "-c", "c1", "--condition", "Applied", "--timeout", "5s"])
        .await
        .unwrap();
    assert_eq!(out, "resource bundle web on consumer c1 is applied\n");
    let err = cli(
        &fake,
        &[
            "wait",
            "-n",
            "web",
            "-c",
            "c1",
            "--condition",
            "Available",
            "--timeout",
            "300ms",
            "--poll-interval",
            "50ms",
        ],
    )
    .await
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.starts_with("timed out after 0.300s waiting for resource bundle \"web\""), "{msg}");
    assert!(msg.contains("Available=False [R: m]"), "{msg}");
    let err = cli(&fake, &["wait", "-n", "nope", "-c", "c1", "--condition", "Applied", "--timeout", "1s"])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("not found"), "{err:#}");
}

#[tokio::test]
async fn delete_watch_and_wait_deleted() {
    let fake = FakeServer::start().await;
    let file = manifest_file();
    cli(&fake, &["apply", "-f", file.path().to_str().unwrap(), "-c", "c1", "-n", "web"]).await.unwrap();
    let id = resource_id("maestro-cli", "c1", "web");
    let rid = id.clone();
    when_bundle(&fake, id, |b| !b["deleted_at"].is_null(), move |f| f.remove(&rid));
    let out = cli(&fake, &["delete", "-n", "web", "-c", "c1", "--watch", "--timeout", "20s"]).await.unwrap();
    assert!(out.contains("deleted from consumer c1"), "{out}");
    let out = cli(&fake, &["wait", "-n", "web", "-c", "c1", "--condition", "Deleted", "--timeout", "1s"])
        .await
        .unwrap();
    assert!(out.contains("is deleted"), "{out}");
    // Deleting a work that is gone is not an error (retried Jobs are idempotent).
    let out = cli(&fake, &["delete", "-n", "web", "-c", "c1", "-o", "json"]).await.unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["state"], "absent", "{out}");
}

#[tokio::test]
async fn errors_name_the_file_and_endpoint() {
    let fake = FakeServer::start().await;
    let err = cli(&fake, &["apply", "-f", "/nonexistent/w.yaml", "-c", "c1"]).await.unwrap_err();
    assert!(format!("{err:#}").starts_with("/nonexistent/w.yaml: cannot read"), "{err:#}");
    let file = manifest_file();
    let err = cli(&fake, &["apply", "-f", file.path().to_str().unwrap(), "-c", "c1"]).await.unwrap_err();
    assert!(format!("{err:#}").contains("pass --name"), "{err:#}");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let dead_fake = FakeServer { state: fake.state.clone(), http: fake.http.clone(), grpc: addr.clone() };
    let err = cli(&dead_fake, &["apply", "-f", file.path().to_str().unwrap(), "-c", "c1", "-n", "w"])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains(&format!("cannot reach {addr}")), "{err:#}");
}

#[tokio::test]
async fn consumers() {
    let fake = FakeServer::start().await;
    let out = cli(&fake, &["consumer", "create", "c1", "-l", "env=dev"]).await.unwrap();
    assert_eq!(out, "consumer c1 created (id id-c1)\n");
    let out = cli(&fake, &["consumer", "list"]).await.unwrap();
    assert!(out.contains("env=dev") && out.starts_with("NAME"), "{out}");
    let out = cli(&fake, &["consumer", "get", "c1", "-o", "json"]).await.unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"], "id-c1");
    let err = cli(&fake, &["consumer", "create", "c1"]).await.unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    assert!(cli(&fake, &["consumer", "delete", "c1"]).await.unwrap().contains("deleted"));
}

/// `--http-token-file` and `--grpc-token-file` (with `--grpc-ca-file`) put the tokens on the
/// wire; an unreadable token file is an error naming the flag and the file.
#[tokio::test]
async fn token_files_are_sent() {
    use maestro_tls::testing::{TestPki, write_file};
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let (cert, key) = pki.server(&["localhost"]);
    let fake = FakeServer::start_with_grpc_tls(&cert, &key).await;
    let ca = pki.write_ca(dir.path());
    let http_token = write_file(dir.path(), "http.tok", "h-token\n");
    let grpc_token = write_file(dir.path(), "grpc.tok", "g-token\n");
    let file = manifest_file();
    let args = [
        "--http-token-file",
        http_token.to_str().unwrap(),
        "--grpc-token-file",
        grpc_token.to_str().unwrap(),
        "--grpc-ca-file",
        ca.to_str().unwrap(),
    ];
    let apply =
        [&args[..], &["apply", "-f", file.path().to_str().unwrap(), "-c", "c1", "-n", "web"]].concat();
    cli(&fake, &apply).await.unwrap();
    assert_eq!(fake.authorizations("rest"), [Some("Bearer h-token".to_owned())]);
    assert_eq!(fake.authorizations("grpc"), [Some("Bearer g-token".to_owned())]);
    let missing = dir.path().join("missing.tok");
    let err = cli(&fake, &["--http-token-file", missing.to_str().unwrap(), "list"]).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("--http-token-file") && msg.contains("missing.tok"), "{msg}");
}

const MANIFESTWORK: &str = "apiVersion: work.open-cluster-management.io/v1\nkind: ManifestWork\n\
metadata: {name: web}\nspec: {workload: {manifests: [\
{apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: default}}, \
{apiVersion: v1, kind: Secret, metadata: {name: b, namespace: default}}]}}\n";

/// The exit code, stdout and stderr of the real `maestro-cli` binary run with `args` (and the
/// `env` variables; `RESULTS_PATH` and the `MAESTRO_*` variables of the test's environment are
/// removed).
async fn binary(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_maestro-cli"));
    cmd.args(args).env_remove("RESULTS_PATH");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MAESTRO_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output()).await.unwrap().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap(), text(out.stdout), text(out.stderr))
}

/// `host:port` of an `http://host:port` endpoint.
fn host_port(url: &str) -> &str {
    url.strip_prefix("http://").unwrap()
}

fn read_result(path: &std::path::Path) -> StatusResult {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// HyperFleet's Job command line (issue 19): `host:port` endpoints, `--watch`, and a results
/// file that parses as a `StatusResult` with status Applied and the per-manifest status.
#[tokio::test]
async fn hyperfleet_job_command_line() {
    let fake = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work.yaml");
    std::fs::write(&work, MANIFESTWORK).unwrap();
    let results = dir.path().join("results/status.json");
    std::fs::create_dir(results.parent().unwrap()).unwrap();
    let id = resource_id("maestro-cli", "cluster-1", "web");
    when_bundle(
        &fake,
        id.clone(),
        |_| true,
        move |f| f.set_status(&id, 1, &[("Applied", "True"), ("Available", "True")]),
    );
    let grpc = format!("--grpc-endpoint={}", fake.grpc);
    let http = format!("--http-endpoint={}", host_port(&fake.http));
    let results_flag = format!("--results-path={}", results.display());
    let args = ["apply", "--manifest-file", work.to_str().unwrap(), "--consumer", "cluster-1", "--watch"];
    let (code, out, err) =
        binary(&[&args[..], &["--timeout=5m", &grpc, &http, &results_flag]].concat(), &[]).await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("is applied and available at version 1"), "{out}");
    let r = read_result(&results);
    assert_eq!((r.manifest_work_name.as_str(), r.consumer.as_str()), ("web", "cluster-1"));
    assert_eq!(r.status, ResultStatus::Applied, "{r:?}");
    assert_eq!(r.resources.len(), 2);
    assert_eq!((r.resources[0].kind.as_str(), r.resources[0].name.as_str()), ("ConfigMap", "a"));
    assert_eq!(r.resources[0].conditions[0].kind, "Applied");
    assert_eq!(r.resources[0].feedback[0].name, "size");
    assert_eq!((r.resources[1].kind.as_str(), r.resources[1].version.as_str()), ("Secret", "v1"));
    let leftovers: Vec<_> = std::fs::read_dir(results.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only status.json: {leftovers:?}");
}

/// Exit codes of the binary: 0 for deleting a missing work (with a warning), 3 on a timeout
/// (results status InProgress, path from `RESULTS_PATH`), 2 for a bad manifest file, 5 when
/// the server cannot be reached.
#[tokio::test]
async fn exit_codes() {
    let fake = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("status.json");
    let results_env = [("RESULTS_PATH", results.to_str().unwrap())];
    let endpoints = ["--grpc-endpoint", &fake.grpc, "--http-endpoint", host_port(&fake.http)];
    let with = |args: &[&'static str]| [&endpoints[..], args].concat();

    let (code, _, err) = binary(&with(&["delete", "-n", "nope", "-c", "c1"]), &results_env).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: resource bundle nope on consumer c1 not found"), "{err}");
    assert_eq!(read_result(&results).status, ResultStatus::Applied);

    let file = manifest_file();
    cli(&fake, &["apply", "-f", file.path().to_str().unwrap(), "-c", "c1", "-n", "web"]).await.unwrap();
    let wait = ["wait", "-n", "web", "-c", "c1", "--condition", "Available", "--timeout", "1s"];
    let (code, _, err) = binary(&with(&wait), &results_env).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("timed out after 1s"), "{err}");
    let r = read_result(&results);
    assert_eq!((r.status, r.resources.len()), (ResultStatus::InProgress, 2), "{r:?}");
    assert!(r.message.contains("timed out"), "{r:?}");

    let (code, _, err) = binary(&with(&["apply", "-f", "/nonexistent/w.yaml", "-c", "c1"]), &[]).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = binary(&with(&["list", "--status", "Ready"]), &[]).await;
    assert_eq!(code, 2, "{err}");

    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let (code, _, err) = binary(&["--http-endpoint", &addr, "list"], &[]).await;
    assert_eq!(code, 5, "{err}");
    let (code, out, _) = binary(&["version"], &[]).await;
    assert_eq!((code, out), (0, format!("maestro-cli {}\n", env!("CARGO_PKG_VERSION"))));
}

/// `list -o name`, `-o wide` and `--status`; `delete --dry-run` sends nothing; `delete --all`.
#[tokio::test]
async fn list_formats_status_and_delete_all() {
    let fake = FakeServer::start().await;
    let file = manifest_file();
    let path = file.path().to_str().unwrap();
    for (consumer, name) in [("c1", "web"), ("c1", "api"), ("c2", "db")] {
        cli(&fake, &["apply", "-f", path, "-c", consumer, "-n", name]).await.unwrap();
    }
    fake.set_status(
        &resource_id("maestro-cli", "c1", "web"),
        1,
        &[("Applied", "True"), ("Available", "True")],
    );
    let out = cli(&fake, &["list", "-o", "name"]).await.unwrap();
    let mut names: Vec<&str> = out.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["c1/api", "c1/web", "c2/db"]);
    let out = cli(&fake, &["list", "-o", "name", "--status", "Available"]).await.unwrap();
    assert_eq!(out, "c1/web\n");
    let out = cli(&fake, &["list", "-o", "name", "--status", "InProgress", "-c", "c1"]).await.unwrap();
    assert_eq!(out, "c1/api\n");
    let out = cli(&fake, &["list", "-o", "wide", "-c", "c2"]).await.unwrap();
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[7..], ["STATUS", "SOURCE", "ID", "MANIFESTS"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[row.len() - 4..],
        ["InProgress", "maestro-cli", &resource_id("maestro-cli", "c2", "db"), "2"]
    );

    let published = fake.state.lock().unwrap().published.len();
    let out = cli(&fake, &["delete", "--all", "-c", "c1", "--dry-run"]).await.unwrap();
    assert!(out.contains("2 resource bundle(s) would be deleted"), "{out}");
    let out = cli(&fake, &["delete", "-n", "db", "-c", "c2", "--dry-run"]).await.unwrap();
    assert!(out.contains("would be deleted"), "{out}");
    let file_dry =
        cli(&fake, &["apply", "-f", path, "-c", "c3", "-n", "x", "--dry-run", "-o", "json"]).await.unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&file_dry).unwrap()["dryRun"], true);
    assert_eq!(fake.state.lock().unwrap().published.len(), published, "dry runs publish nothing");

    let out = cli(&fake, &["delete", "--all", "-c", "c1"]).await.unwrap();
    assert_eq!(out, "2 resource bundle(s) marked for deletion on consumer c1\n");
    let out = cli(&fake, &["list", "-o", "name", "--status", "Deleting"]).await.unwrap();
    let mut names: Vec<&str> = out.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["c1/api", "c1/web"]);
}
