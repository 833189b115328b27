//! Golden tests of `describe`, `diff`, `validate` and `list -o wide` output against the
//! in-process fake Maestro server, and every exit code (0–5) of the real binary.
//!
//! The expected output lives in `tests/golden/<name>.txt`. Time-dependent text (ages such as
//! `(731d ago)`, temporary paths) is normalized before comparing; the fake server's
//! timestamps are fixed and resource ids are UUIDv5 of source, consumer and name, so both are
//! kept as they are. Run with `UPDATE_GOLDEN=1` to rewrite the files from the current output
//! (then review the change).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "../../maestro-client/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use maestro_api::merge::MANAGERS_ANNOTATION;
use maestro_cli::{ExitStatus, exit_status};
use maestro_client::resource_id;
use serde_json::{Value, json};
use support::FakeServer;

/// The work `describe` and `diff` start from: labels, an annotation, a ConfigMap and a
/// Deployment with a server-side-apply config and a feedback rule, and delete option Orphan.
const WORK: &str = r"apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
metadata:
  name: web
  labels: {app: web}
  annotations: {team: payments}
spec:
  deleteOption: {propagationPolicy: Orphan}
  manifestConfigs:
  - resourceIdentifier: {group: apps, resource: deployments, namespace: default, name: web}
    updateStrategy: {type: ServerSideApply}
    feedbackRules:
    - type: JSONPaths
      jsonPaths: [{name: readyReplicas, path: .status.readyReplicas}]
  workload:
    manifests:
    - apiVersion: v1
      kind: ConfigMap
      metadata: {name: a, namespace: default}
      data: {color: blue, size: '3'}
    - apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web, namespace: default}
      spec:
        replicas: 2
        selector: {matchLabels: {app: web}}
        template:
          metadata: {labels: {app: web}}
          spec:
            containers: [{name: web, image: 'nginx:1.25'}]
";

/// [`WORK`] changed: another label, ConfigMap data changed, the Deployment replaced by a
/// Secret, no manifest configs and the default delete option. Keys are in another order,
/// which is no difference.
const CHANGED: &str = r"kind: ManifestWork
apiVersion: work.open-cluster-management.io/v1
metadata:
  name: web
  labels: {app: web, tier: frontend}
  annotations: {team: payments}
spec:
  workload:
    manifests:
    - kind: ConfigMap
      apiVersion: v1
      metadata: {namespace: default, name: a}
      data: {size: '3', color: green}
    - apiVersion: v1
      kind: Secret
      metadata: {name: creds, namespace: default}
      stringData: {password: hunter2}
";

/// A ManifestWork with several problems of every kind `validate` reports.
const INVALID: &str = r"apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
metadata: {name: Web_1}
spec:
  workload:
    manifests:
    - {kind: ConfigMap, metadata: {name: a}}
    - {apiVersion: v1, kind: Secret, metadata: {name: b, generateName: b-}}
    - {apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: default}}
    - {apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: default}}
    - {apiVersion: v1, kind: ConfigMap, metadata: {name: d, namespace: Bad_NS}}
  manifestConfigs:
  - resourceIdentifier: {resource: configmaps}
    updateStrategy: {type: Replace}
    feedbackRules:
    - {type: JSONPaths, jsonPaths: [{name: size}]}
    - {type: Everything}
";

/// Runs the CLI in-process with the fake's endpoints; returns what it wrote and its result.
async fn cli(fake: &FakeServer, args: &[&str]) -> (String, anyhow::Result<()>) {
    common::run_cli(&fake.http, &fake.grpc, args).await
}

/// Like [`cli`], failing the test when the command fails.
async fn cli_ok(fake: &FakeServer, args: &[&str]) -> String {
    let (out, result) = cli(fake, args).await;
    if let Err(e) = result {
        panic!("maestro-cli {args:?} failed: {e:#}\n{out}");
    }
    out
}

/// The exit code, stdout and stderr of the real binary run with `args` (the `MAESTRO_*` and
/// `RESULTS_PATH` variables of the test's environment are removed).
async fn binary(args: &[&str]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_maestro-cli"));
    cmd.args(args).env_remove("RESULTS_PATH");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MAESTRO_")) {
        cmd.env_remove(k);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.unwrap().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap(), text(out.stdout), text(out.stderr))
}

/// Writes `text` to `name` in `dir` and returns the path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Changes bundle `id` in the fake's state.
fn edit(fake: &FakeServer, id: &str, f: impl FnOnce(&mut Value)) {
    let mut st = fake.state.lock().unwrap();
    f(st.bundles.get_mut(id).unwrap_or_else(|| panic!("no bundle {id}")));
}

/// A condition as the agent reports it.
fn condition(ty: &str, status: &str, at: &str, reason: &str, message: &str) -> Value {
    json!({"type": ty, "status": status, "lastTransitionTime": at, "reason": reason, "message": message})
}

/// `text` with ages (`(3d ago)`) replaced by `(<age> ago)`.
fn normalize_ages(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('(') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let unit = after.as_bytes().get(digits).copied();
        let is_age = digits > 0
            && matches!(unit, Some(b's' | b'm' | b'h' | b'd'))
            && after[digits + 1..].starts_with(" ago)");
        if is_age {
            out.push_str("(<age> ago)");
            rest = &after[digits + 1 + " ago)".len()..];
        } else {
            out.push('(');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Compares `actual` with `tests/golden/<name>.txt` (rewrites it with `UPDATE_GOLDEN=1`).
fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.txt"));
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display()));
    if actual != expected {
        let diff = similar::TextDiff::from_lines(&expected, actual)
            .unified_diff()
            .header(&format!("golden/{name}.txt"), "actual")
            .to_string();
        panic!("output differs from {} (UPDATE_GOLDEN=1 accepts it):\n{diff}", path.display());
    }
}

/// Applies [`WORK`] as `web` on `c1` twice (version 2), then sets what the agent and the
/// server would have recorded: a status with stale and current conditions, per-manifest
/// conditions and feedback, a status entry of a manifest no longer in the spec, recorded
/// managers, an update time and a deletion request. Returns the resource id.
async fn described_work(fake: &FakeServer, dir: &Path) -> String {
    let work = write(dir, "work.yaml", WORK);
    for _ in 0..2 {
        cli_ok(fake, &["apply", "-f", work.to_str().unwrap(), "-c", "c1"]).await;
    }
    let id = resource_id("maestro-cli", "c1", "web");
    let managers =
        json!({"/v1/ConfigMap/default/a": "adapter-a", "apps/v1/Deployment/default/web": "adapter-b"});
    edit(fake, &id, |b| {
        b["metadata"]["annotations"][MANAGERS_ANNOTATION] = json!(managers.to_string());
        b["updated_at"] = json!("2024-03-01T10:05:00Z");
        b["deleted_at"] = json!("2024-03-01T10:10:00Z");
        b["status"] = json!({"ObservedVersion": 2, "SequenceID": "7", "conditions": [
            condition("Applied", "True", "2024-03-01T10:01:00Z", "AppliedManifestWorkComplete", "Apply manifest work complete"),
            condition("Available", "False", "2024-03-01T10:00:30Z", "ResourcesNotAvailable", "1 of 2 resources are not available"),
        ], "resourceStatus": [
            {"resourceMeta": {"ordinal": 0, "version": "v1", "kind": "ConfigMap", "resource": "configmaps", "name": "a", "namespace": "default"},
             "conditions": [condition("Applied", "True", "2024-03-01T10:00:20Z", "AppliedManifestComplete", "Apply manifest complete"),
                            condition("Available", "True", "2024-03-01T10:00:25Z", "ResourceAvailable", "Resource is available")]},
            {"resourceMeta": {"ordinal": 1, "group": "apps", "version": "v1", "kind": "Deployment", "resource": "deployments", "name": "web", "namespace": "default"},
             "statusFeedback": {"values": [{"name": "readyReplicas", "fieldValue": {"type": "Integer", "integer": 1}}]},
             "conditions": [condition("Applied", "True", "2024-03-01T10:00:40Z", "AppliedManifestComplete", "Apply manifest complete"),
                            condition("Available", "False", "2024-03-01T10:00:45Z", "MinimumReplicasUnavailable", "Deployment does not have minimum availability")]},
            {"resourceMeta": {"ordinal": 2, "version": "v1", "kind": "Secret", "resource": "secrets", "name": "old", "namespace": "default"},
             "conditions": []}]});
        b["status"]["conditions"][1]["observedGeneration"] = json!(1);
    });
    id
}

/// `describe`: the full text, the same work by `--id`, the REST object with `-o json`, and a
/// missing work (exit 1).
#[tokio::test]
async fn describe_output() {
    let fake = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let id = described_work(&fake, dir.path()).await;
    let out = cli_ok(&fake, &["describe", "--name", "web", "--consumer", "c1"]).await;
    assert_golden("describe", &normalize_ages(&out));
    assert_eq!(cli_ok(&fake, &["describe", "--id", &id]).await, out);
    let json: Value =
        serde_json::from_str(&cli_ok(&fake, &["describe", "--id", &id, "-o", "json"]).await).unwrap();
    assert_eq!((json["id"].as_str(), json["version"].as_i64()), (Some(id.as_str()), Some(2)));

    let (_, result) = cli(&fake, &["describe", "-n", "nope", "-c", "c1"]).await;
    let err = result.unwrap_err();
    assert!(format!("{err:#}").contains("not found"), "{err:#}");
    assert_eq!(exit_status(&err), ExitStatus::Failed);
}

/// `diff`: equal (exit 0, no output), changed (exit 1, one diff per change) and a work that
/// does not exist yet (exit 1, everything added).
#[tokio::test]
async fn diff_output() {
    let fake = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let work = write(dir.path(), "work.yaml", WORK);
    let work = work.to_str().unwrap();
    cli_ok(&fake, &["apply", "-f", work, "-c", "c1"]).await;

    let (out, result) = cli(&fake, &["diff", "-f", work, "-c", "c1"]).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(out, "", "equal works print nothing");

    let changed = write(dir.path(), "changed.yaml", CHANGED);
    let (out, result) = cli(&fake, &["diff", "-f", changed.to_str().unwrap(), "-c", "c1"]).await;
    let err = result.unwrap_err();
    assert_eq!(exit_status(&err), ExitStatus::Failed);
    assert!(format!("{err}").ends_with("3 changed, 1 added, 2 removed"), "{err}");
    assert_golden("diff_changed", &out);

    let (out, result) = cli(&fake, &["diff", "-f", work, "-c", "c1", "-n", "new-web"]).await;
    assert_eq!(exit_status(&result.unwrap_err()), ExitStatus::Failed);
    assert_golden("diff_new", &out);

    let (out, result) =
        cli(&fake, &["diff", "-f", changed.to_str().unwrap(), "-c", "c1", "-o", "json"]).await;
    assert!(result.is_err());
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["exists"].as_bool(), v["equal"].as_bool()), (Some(true), Some(false)), "{v}");
    let objects: Vec<(&str, &str)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["object"].as_str().unwrap(), c["change"].as_str().unwrap()))
        .collect();
    assert_eq!(
        objects,
        [
            ("metadata", "changed"),
            ("ConfigMap default/a (v1)", "changed"),
            ("Secret default/creds (v1)", "added"),
            ("Deployment default/web (apps/v1)", "removed"),
            ("spec.manifestConfigs", "removed"),
            ("spec.deleteOption", "changed"),
        ]
    );
}

/// `list -o wide`: one work in each status, with creation times set relative to now so the
/// AGE column is stable.
#[tokio::test]
async fn list_wide_output() {
    let fake = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let list = write(
        dir.path(),
        "list.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}\n",
    );
    let now = chrono::Utc::now();
    let works = [
        (
            "web",
            vec![("Applied", "True"), ("Available", "True")],
            chrono::Duration::hours(5) + chrono::Duration::minutes(30),
        ),
        (
            "api",
            vec![("Applied", "True"), ("Degraded", "True")],
            chrono::Duration::days(2) + chrono::Duration::hours(1),
        ),
        ("db", vec![], chrono::Duration::days(40)),
        ("cache", vec![("Applied", "True")], chrono::Duration::hours(1) + chrono::Duration::minutes(30)),
        ("old", vec![("Applied", "True")], chrono::Duration::days(3) + chrono::Duration::hours(1)),
    ];
    for (name, conditions, age) in works {
        cli_ok(&fake, &["apply", "-f", list.to_str().unwrap(), "-c", "c1", "-n", name]).await;
        let id = resource_id("maestro-cli", "c1", name);
        if !conditions.is_empty() {
            fake.set_status(&id, 1, &conditions);
        }
        edit(&fake, &id, |b| {
            b["created_at"] = json!((now - age).to_rfc3339());
            if name == "old" {
                b["deleted_at"] = json!("2024-03-01T10:00:00Z");
            }
        });
    }
    let out = cli_ok(&fake, &["list", "-o", "wide", "-c", "c1"]).await;
    assert_golden("list_wide", &out);
}

/// `validate`: a valid work, every problem of an invalid one (exit 2), `-o json`, and
/// `--consumer` checked over REST.
#[tokio::test]
async fn validate_output() {
    let fake = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let work = write(dir.path(), "work.yaml", WORK);
    let work = work.to_str().unwrap();
    let out = cli_ok(&fake, &["validate", "-f", work]).await;
    assert_eq!(out, format!("{work}: valid ManifestWork web with 2 manifest(s)\n"));

    let invalid = write(dir.path(), "invalid.yaml", INVALID);
    let invalid = invalid.to_str().unwrap();
    let (out, result) = cli(&fake, &["validate", "-f", invalid]).await;
    let err = result.unwrap_err();
    assert_eq!(exit_status(&err), ExitStatus::Usage);
    assert_eq!(err.to_string(), format!("{invalid}: 9 problem(s) found"));
    assert_golden("validate_invalid", &out.replace(invalid, "invalid.yaml"));

    let (out, result) = cli(&fake, &["validate", "-f", invalid, "-o", "json"]).await;
    assert!(result.is_err());
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["valid"].as_bool(), v["manifests"].as_u64()), (Some(false), Some(5)), "{v}");
    assert_eq!(v["errors"].as_array().unwrap().len(), 9, "{v}");

    let (out, result) = cli(&fake, &["validate", "-f", work, "-c", "c1"]).await;
    assert_eq!(exit_status(&result.unwrap_err()), ExitStatus::Usage);
    assert!(out.ends_with("  - consumer \"c1\" does not exist\n"), "{out}");
    cli_ok(&fake, &["consumer", "create", "c1"]).await;
    let v: Value =
        serde_json::from_str(&cli_ok(&fake, &["validate", "-f", work, "-c", "c1", "-o", "json"]).await)
            .unwrap();
    assert_eq!(v, json!({"file": work, "valid": true, "name": "web", "manifests": 2, "errors": []}));
}

/// The binary run against `fake`'s endpoints, with works `web`, `broken` and `gone` on `c1`
/// applied from [`WORK`] (written in `dir` with [`CHANGED`] and [`INVALID`]).
struct Binary<'a> {
    /// The fake server.
    fake: &'a FakeServer,
    /// Where the input files are.
    dir: &'a Path,
}

impl Binary<'_> {
    /// Writes the input files and applies the works (each apply must exit 0).
    async fn setup<'a>(fake: &'a FakeServer, dir: &'a Path) -> Binary<'a> {
        for (name, text) in [("work.yaml", WORK), ("changed.yaml", CHANGED), ("invalid.yaml", INVALID)] {
            write(dir, name, text);
        }
        let b = Binary { fake, dir };
        for name in ["web", "broken", "gone"] {
            let (code, _, err) = b.run(&["apply", "-f", &b.file("work.yaml"), "-c", "c1", "-n", name]).await;
            assert_eq!(code, 0, "{err}");
        }
        b
    }

    /// The path of input file `name`.
    fn file(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// Runs the binary with the fake's endpoints and `args`.
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let endpoints = ["--grpc-endpoint", &self.fake.grpc, "--http-endpoint", &self.fake.http];
        binary(&[&endpoints[..], args].concat()).await
    }
}

/// Exit codes 0–2 of the binary: 0 success (`describe`, an equal `diff`), 1 a failed
/// condition (`wait` on a Degraded work, a `diff` that differs), 2 an invalid file and bad
/// flags.
#[tokio::test]
async fn exit_codes_success_failed_usage() {
    let fake = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let b = Binary::setup(&fake, dir.path()).await;
    let (code, out, err) = b.run(&["describe", "-n", "web", "-c", "c1"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Name:           web\n"), "{out}");
    let (code, out, err) = b.run(&["diff", "-f", &b.file("work.yaml"), "-c", "c1", "-n", "web"]).await;
    assert_eq!((code, out.as_str()), (0, ""), "{err}");

    let broken = resource_id("maestro-cli", "c1", "broken");
    fake.set_status(&broken, 1, &[("Applied", "True"), ("Degraded", "True")]);
    let wait = ["wait", "-n", "broken", "-c", "c1", "--condition", "Applied", "--timeout", "20s"];
    let (code, _, err) = b.run(&wait).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is degraded"), "{err}");
    let (code, out, err) = b.run(&["diff", "-f", &b.file("changed.yaml"), "-c", "c1"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(out.starts_with("--- stored/metadata\n+++ desired/metadata\n"), "{out}");
    assert!(err.contains("differs from"), "{err}");

    let (code, out, err) = b.run(&["validate", "-f", &b.file("invalid.yaml")]).await;
    assert_eq!(code, 2, "{err}");
    assert!(out.contains("problem(s):") && err.contains("9 problem(s) found"), "{out}\n{err}");
    let (code, _, err) = b.run(&["describe", "--id", "x", "--name", "web"]).await;
    assert_eq!(code, 2, "{err}");
}

/// Exit codes 3–5 of the binary: 3 a `wait` that times out, 4 `apply` of a work being
/// deleted, 5 an endpoint nobody listens on (a port bound and released).
#[tokio::test]
async fn exit_codes_timeout_conflict_unreachable() {
    let fake = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let b = Binary::setup(&fake, dir.path()).await;
    let wait = ["wait", "-n", "web", "-c", "c1", "--condition", "Available", "--timeout", "1s"];
    let (code, _, err) = b.run(&wait).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("timed out after 1s"), "{err}");

    let gone = resource_id("maestro-cli", "c1", "gone");
    edit(&fake, &gone, |b| b["deleted_at"] = json!("2024-03-01T10:00:00Z"));
    let (code, _, err) = b.run(&["apply", "-f", &b.file("work.yaml"), "-c", "c1", "-n", "gone"]).await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("conflict"), "{err}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (code, _, err) = binary(&["--http-endpoint", &addr, "describe", "-n", "web", "-c", "c1"]).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
}
