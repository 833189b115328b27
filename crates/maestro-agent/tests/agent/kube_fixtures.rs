//! Every Kubernetes API call `KubeCluster` makes, replayed from recorded exchanges
//! (`tests/fixtures/kube/*.json`, format in that directory's README.md) by a fake API server
//! (axum on 127.0.0.1:0).
//!
//! **This is a fake.** No Kubernetes API server can run on this machine (no kube-apiserver,
//! envtest, kwok, kind or Docker engine), so the answers are not captured from a live server:
//! they reproduce the real API server's answers from the Kubernetes sources named in each
//! fixture's `sources` — the `Status` shapes of k8s.io/apimachinery `pkg/api/errors/errors.go`
//! (`NewNotFound`, `NewAlreadyExists`, `NewConflict`, `NewApplyConflict`, `NewForbidden`), the
//! server-side apply conflict of `pkg/util/managedfields/internal/conflict.go`
//! (`FieldManagerConflict` causes), the UID-precondition conflicts of k8s.io/apiserver
//! `pkg/registry/rest/delete.go` and of the storage layer, the plain-text `404 page not found`
//! of `pkg/util/notfoundhandler` and the plain-text 503 of kube-aggregator — checked against
//! API server answers quoted in public issues and logs.
//!
//! The fake asserts each request kube-rs sends against its exchange (verb, path, the exact
//! query parameters such as `fieldManager`, `force` and the absence of `dryRun`, the content
//! type, and the body's fields such as the delete preconditions), then answers with the
//! recording. The tests check which [`ClusterError`] each answer becomes, and, for the cases
//! where it matters, the condition the agent then reports.
//!
//! The watch of `feedbackScrapeType: Watch` (kube-rs's runtime watcher: a list, then a watch
//! answered with a streamed body of watch events, bookmarks included) is replayed from
//! `watch.json`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use maestro_agent::{
    AgentConfig, AppliedWorkRef, ApplyMode, ChangeSink, Cluster, ClusterError, KubeCluster, OWNER_ANNOTATION,
    ObjectRef, ResourceMapping, SimulatedCluster, WatchContext, WatchKey,
};
use serde_json::{Value, json};

use crate::common::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kube");
const UID_A1: &str = "0d5c3a8e-7f41-4d0b-9a6e-2b1f9c7e4a10";
const UID_A2: &str = "5e2f8c1a-3b7d-4e9f-8a6c-1d0b2e3f4a59";
const UID_POD: &str = "c4b1e2d3-9f8a-4b7c-8d6e-5f4a3b2c1d0e";
const UID_AMW: &str = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

/// One recorded exchange of a fixture file.
struct Exchange {
    phase: String,
    repeat: bool,
    request: Value,
    response: Value,
    used: bool,
}

/// The replay state: the exchanges, the current phase, which exchanges answered (in order) and
/// every request that did not match its recording.
#[derive(Default)]
struct Replay {
    exchanges: Vec<Exchange>,
    phase: String,
    served: Vec<usize>,
    failures: Vec<String>,
}

type Shared = Arc<Mutex<Replay>>;

fn load(name: &str, vars: &[(&str, &str)]) -> Vec<Exchange> {
    let path = format!("{FIXTURES}/{name}.json");
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (k, v) in vars {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    assert!(!text.contains("{{"), "{path}: a placeholder was not given");
    let file: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let list = file["exchanges"].as_array().unwrap_or_else(|| panic!("{path}: no exchanges"));
    list.iter()
        .map(|x| Exchange {
            phase: x["phase"].as_str().unwrap_or("main").to_owned(),
            repeat: x["repeat"] == true,
            request: x["request"].clone(),
            response: x["response"].clone(),
            used: false,
        })
        .collect()
}

/// True when `have` holds every field of `want` (objects recursively, anything else equal).
fn contains(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            w.iter().all(|(k, v)| h.get(k).is_some_and(|hv| contains(v, hv)))
        }
        _ => want == have,
    }
}

/// What in a request differs from the recorded one (beyond verb and path, already matched).
fn differences(
    want: &Value,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &Value,
) -> Vec<String> {
    let mut out = Vec::new();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    for (name, value) in want["headers"].as_object().into_iter().flatten() {
        let have = headers.get(name.as_str()).and_then(|v| v.to_str().ok());
        if have != value.as_str() {
            out.push(format!("header {name} {have:?}, recorded {value}"));
        }
    }
    let want_query: BTreeMap<String, String> = want["query"]
        .as_object()
        .map(|q| q.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default();
    if &want_query != query {
        out.push(format!("query {query:?}, recorded {want_query:?}"));
    }
    if let Some(ct) = want["contentType"].as_str()
        && !content_type.starts_with(ct)
    {
        out.push(format!("content type {content_type:?}, recorded {ct:?}"));
    }
    if let Some(b) = want.get("body")
        && !contains(b, body)
    {
        out.push(format!("body {body}, recorded to contain {b}"));
    }
    for p in want["absent"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if body.pointer(p).is_some() {
            out.push(format!("body has {p}, recorded absent: {body}"));
        }
    }
    out
}

/// A watch answer (`stream`): the headers at once, then each event as one JSON line, as the
/// API server streams them; with `streamAfterPhase` the events wait until the test moves to
/// that phase, and with `hold` the body then stays open (no end of the watch during the test).
fn streamed_response(status: StatusCode, r: &Value, replay: &Shared) -> Response {
    use futures::StreamExt;
    let lines: Vec<Result<Bytes, std::io::Error>> =
        r["stream"].as_array().into_iter().flatten().map(|e| Ok(Bytes::from(format!("{e}\n")))).collect();
    let (gate, replay) = (r["streamAfterPhase"].as_str().map(str::to_owned), replay.clone());
    let opened = async move {
        while gate.as_ref().is_some_and(|p| *p != replay.lock().expect("lock").phase) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let events = futures::stream::once(async move {
        opened.await;
        futures::stream::iter(lines)
    })
    .flatten();
    let tail =
        if r["hold"] == true { futures::stream::pending().boxed() } else { futures::stream::empty().boxed() };
    let body = axum::body::Body::from_stream(events.chain(tail));
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn recorded_response(r: &Value, replay: &Shared) -> Response {
    let code = r["status"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if r.get("stream").is_some() {
        return streamed_response(status, r, replay);
    }
    match r["text"].as_str() {
        // as Go's http.Error / http.NotFound write it
        Some(text) => (
            status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            text.to_owned(),
        )
            .into_response(),
        None => (status, axum::Json(r["body"].clone())).into_response(),
    }
}

async fn serve(
    State(replay): State<Shared>,
    method: Method,
    uri: Uri,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut r = replay.lock().expect("lock");
    let path = uri.path();
    let phase = r.phase.clone();
    // A list and a watch share verb and path: `watch=true` tells them apart.
    let watch = query.iter().any(|(k, v)| k == "watch" && v == "true");
    let found = r.exchanges.iter().position(|x| {
        !x.used
            && x.phase == phase
            && x.request["method"] == method.as_str()
            && x.request["path"] == path
            && (x.request["query"]["watch"] == "true") == watch
    });
    let Some(i) = found else {
        let msg = format!("unexpected request {method} {uri} in phase {phase:?}");
        eprintln!("kube fixture: {msg}");
        r.failures.push(msg.clone());
        let status = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":msg,"code":500});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(status)).into_response();
    };
    let query_map: BTreeMap<String, String> = query.iter().cloned().collect();
    if query_map.len() != query.len() {
        r.failures.push(format!("{method} {uri}: a query parameter is repeated"));
    }
    let body: Value =
        if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
    for d in differences(&r.exchanges[i].request, &query_map, &headers, &body) {
        let msg = format!("exchange {i} ({method} {path}): {d}");
        eprintln!("kube fixture: {msg}");
        r.failures.push(msg);
    }
    r.served.push(i);
    let x = &mut r.exchanges[i];
    x.used = !x.repeat;
    recorded_response(&x.response, &replay)
}

/// A fake API server replaying one fixture file, and a `KubeCluster` talking to it.
struct Fixture {
    name: String,
    replay: Shared,
    cluster: KubeCluster,
}

async fn fixture(name: &str, vars: &[(&str, &str)]) -> Fixture {
    let replay: Shared = Arc::new(Mutex::new(Replay {
        exchanges: load(name, vars),
        phase: "main".into(),
        ..Default::default()
    }));
    let app = axum::Router::new().fallback(serve).with_state(replay.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let config = kube::Config::new(format!("http://{addr}").parse().expect("uri"));
    Fixture { name: name.into(), replay, cluster: KubeCluster::from_config(config).expect("client") }
}

impl Fixture {
    /// Later requests are answered by the exchanges of `phase`.
    fn phase(&self, phase: &str) {
        self.replay.lock().expect("lock").phase = phase.into();
    }

    /// Every request matched its recording and every one-time exchange answered.
    fn assert_done(&self) {
        let r = self.replay.lock().expect("lock");
        assert!(r.failures.is_empty(), "{}: {:#?}", self.name, r.failures);
        let unused: Vec<String> = r
            .exchanges
            .iter()
            .enumerate()
            .filter(|(_, x)| !x.repeat && !x.used)
            .map(|(i, x)| format!("{i}: {} {}", x.request["method"], x.request["path"]))
            .collect();
        assert!(unused.is_empty(), "{}: exchanges never requested: {unused:#?}", self.name);
    }

    /// How many requests exchange `i` answered.
    fn served(&self, i: usize) -> usize {
        self.replay.lock().expect("lock").served.iter().filter(|&&s| s == i).count()
    }

    /// [`Fixture::assert_done`], and the requests came in the file's order.
    fn assert_done_in_order(&self) {
        self.assert_done();
        let r = self.replay.lock().expect("lock");
        let expected: Vec<usize> = (0..r.exchanges.len()).collect();
        assert_eq!(r.served, expected, "{}: requests out of the recorded order", self.name);
    }
}

fn mapping(group: &str, version: &str, kind: &str, resource: &str, namespaced: bool) -> ResourceMapping {
    ResourceMapping {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        resource: resource.into(),
        namespaced,
    }
}

fn object(mapping: ResourceMapping, namespace: &str, name: &str) -> ObjectRef {
    ObjectRef { mapping, namespace: namespace.into(), name: name.into() }
}

fn cm_ref(name: &str) -> ObjectRef {
    object(mapping("", "v1", "ConfigMap", "configmaps", true), "default", name)
}

fn cm(name: &str, value: &str) -> Value {
    json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":"default"},"data":{"k":value}})
}

fn api_status(e: &ClusterError) -> Option<u16> {
    match e {
        ClusterError::Api { status, .. } => *status,
        _ => None,
    }
}

#[tokio::test]
async fn discovery_maps_kinds_unknown_groups_and_unavailable_apis() {
    let f = fixture("discovery", &[]).await;
    let c = &f.cluster;
    assert_eq!(
        c.resolve("v1", "ConfigMap").await.expect("cm"),
        mapping("", "v1", "ConfigMap", "configmaps", true)
    );
    // the subresources `namespaces/finalize` and `namespaces/status` share the kind: skipped
    assert_eq!(
        c.resolve("v1", "Namespace").await.expect("ns"),
        mapping("", "v1", "Namespace", "namespaces", false)
    );
    let deployments = mapping("apps", "v1", "Deployment", "deployments", true);
    assert_eq!(c.resolve("apps/v1", "Deployment").await.expect("deployments"), deployments);
    assert_eq!(c.resolve("apps/v1", "Deployment").await.expect("cached"), deployments);
    let e = c.resolve("example.com/v1", "Widget").await.expect_err("group not served");
    assert!(matches!(e, ClusterError::UnknownKind { .. }), "{e:?}");
    let e = c.resolve("batch/v1", "Widget").await.expect_err("kind not in the group");
    assert!(matches!(e, ClusterError::UnknownKind { .. }), "{e:?}");
    // an aggregated API whose backend is down is not an unknown kind: a (retried) API error
    let e = c.resolve("metrics.k8s.io/v1beta1", "PodMetrics").await.expect_err("503");
    assert_eq!(api_status(&e), Some(503), "{e:?}");
    assert!(e.to_string().contains("service unavailable"), "{e}");
    f.assert_done_in_order();
}

#[tokio::test]
async fn get_maps_found_absent_and_forbidden() {
    let f = fixture("get", &[]).await;
    let c = &f.cluster;
    let live = c.get(&cm_ref("a")).await.expect("get").expect("found");
    assert_eq!((live["metadata"]["uid"].as_str(), live["data"]["k"].as_str()), (Some(UID_A1), Some("1")));
    assert_eq!(c.get(&cm_ref("missing")).await.expect("NotFound is absence"), None);
    // a CRD removed since discovery: the plain-text 404 is absence too, not an error that
    // would make the deletion of a work holding such objects retry for ever
    let widget = object(mapping("example.com", "v1", "Widget", "widgets", true), "default", "w");
    assert_eq!(c.get(&widget).await.expect("plain-text 404 is absence"), None);
    let pod = object(mapping("", "v1", "Pod", "pods", true), "kube-system", "p");
    let e = c.get(&pod).await.expect_err("forbidden");
    assert_eq!(api_status(&e), Some(403), "{e:?}");
    assert!(e.to_string().contains("cannot get resource \"pods\""), "{e}");
    f.assert_done_in_order();
}

#[tokio::test]
async fn update_strategy_creates_skips_and_replaces() {
    let f = fixture("update", &[]).await;
    let c = &f.cluster;
    let created = c.apply(&cm_ref("a"), cm("a", "1"), &ApplyMode::Update).await.expect("create");
    assert_eq!(created["metadata"]["uid"], UID_A1);
    let same = c.apply(&cm_ref("a"), cm("a", "1"), &ApplyMode::Update).await.expect("no-op");
    assert_eq!(same["metadata"]["resourceVersion"], "1001", "nothing written");
    let replaced = c.apply(&cm_ref("a"), cm("a", "2"), &ApplyMode::Update).await.expect("replace");
    assert_eq!(
        (replaced["metadata"]["resourceVersion"].as_str(), replaced["data"]["k"].as_str()),
        (Some("1002"), Some("2"))
    );
    f.assert_done_in_order();
}

#[tokio::test]
async fn update_strategy_conflicts_are_retryable_api_errors() {
    let f = fixture("update_conflicts", &[]).await;
    let c = &f.cluster;
    let e = c.apply(&cm_ref("a"), cm("a", "1"), &ApplyMode::Update).await.expect_err("AlreadyExists");
    assert_eq!(e, ClusterError::Api { status: Some(409), message: "configmaps \"a\" already exists".into() });
    let e = c.apply(&cm_ref("a"), cm("a", "2"), &ApplyMode::Update).await.expect_err("stale resourceVersion");
    assert_eq!(api_status(&e), Some(409), "{e:?}");
    assert!(e.to_string().contains("the object has been modified"), "{e}");
    f.assert_done_in_order();
}

#[tokio::test]
async fn create_only_creates_or_only_adds_the_owner() {
    let f = fixture("create_only", &[]).await;
    let c = &f.cluster;
    let owned = |name: &str| {
        let mut m = cm(name, "9");
        m["metadata"]["annotations"] = json!({OWNER_ANNOTATION: "hub-w1"});
        m
    };
    let created = c.apply(&cm_ref("a"), owned("a"), &ApplyMode::CreateOnly).await.expect("create");
    assert_eq!(created["data"]["k"], "9");
    let kept = c.apply(&cm_ref("b"), owned("b"), &ApplyMode::CreateOnly).await.expect("own");
    assert_eq!(kept["data"]["k"], "1", "CreateOnly never writes the spec");
    assert_eq!(kept["metadata"]["annotations"], json!({"note": "theirs", OWNER_ANNOTATION: "hub-w1"}));
    let again = c.apply(&cm_ref("b"), owned("b"), &ApplyMode::CreateOnly).await.expect("owned already");
    assert_eq!(again["metadata"]["resourceVersion"], "1006", "nothing written");
    f.assert_done_in_order();
}

#[tokio::test]
async fn server_side_apply_sends_field_manager_and_maps_field_conflicts() {
    let f = fixture("server_side_apply", &[]).await;
    let c = &f.cluster;
    let forced = ApplyMode::ServerSideApply { field_manager: "work-agent".into(), force: true };
    let applied = c.apply(&cm_ref("a"), cm("a", "2"), &forced).await.expect("apply");
    assert_eq!(applied["metadata"]["managedFields"][0]["manager"], "work-agent");
    let polite = ApplyMode::ServerSideApply { field_manager: "work-agent".into(), force: false };
    let e = c.apply(&cm_ref("a"), cm("a", "3"), &polite).await.expect_err("field conflict");
    let ClusterError::Conflict { object, reason } = &e else { panic!("not a Conflict: {e:?}") };
    assert_eq!(object, &cm_ref("a").to_string());
    assert!(
        reason.ends_with(
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .data.k"
        ),
        "{reason}"
    );
    f.assert_done_in_order();
}

#[tokio::test]
async fn delete_sends_uid_precondition_and_maps_answers() {
    let f = fixture("delete", &[]).await;
    let c = &f.cluster;
    let a = cm_ref("a");
    assert!(c.delete(&a, Some(UID_A1)).await.expect("deleted"));
    assert!(!c.delete(&a, Some(UID_A1)).await.expect("already gone"));
    for marker in ["does not match the UID in record", "Precondition failed: UID in precondition"] {
        let e = c.delete(&a, Some(UID_A1)).await.expect_err("replaced object");
        let ClusterError::PreconditionFailed { object, reason } = &e else {
            panic!("not PreconditionFailed: {e:?}")
        };
        assert_eq!(object, &a.to_string());
        assert!(reason.contains(marker) && reason.contains(UID_A2), "{reason}");
    }
    // graceful deletion answers with the object (deletionTimestamp set), not a Status
    let pod = object(mapping("", "v1", "Pod", "pods", true), "default", "p");
    assert!(c.delete(&pod, Some(UID_POD)).await.expect("graceful delete"));
    assert!(c.delete(&cm_ref("b"), None).await.expect("delete without precondition"));
    f.assert_done_in_order();
}

fn owner() -> AppliedWorkRef {
    AppliedWorkRef {
        name: "hub-w1".into(),
        hub_hash: "hub".into(),
        agent_id: "c1-work-agent".into(),
        work_name: "w1".into(),
    }
}

#[tokio::test]
async fn applied_manifest_work_is_created_found_and_deleted() {
    let f = fixture("applied_work", &[]).await;
    let c = &f.cluster;
    assert_eq!(c.applied_work_uid(&owner()).await.expect("create").as_deref(), Some(UID_AMW));
    assert_eq!(c.applied_work_uid(&owner()).await.expect("found").as_deref(), Some(UID_AMW));
    c.delete_applied_work(&owner()).await.expect("deleted");
    c.delete_applied_work(&owner()).await.expect("already gone is success");
    let e = c.applied_work_uid(&owner()).await.expect_err("created concurrently");
    assert_eq!(api_status(&e), Some(409), "{e:?}");
    assert!(e.to_string().contains("already exists"), "{e}");
    f.assert_done_in_order();
}

/// The records a restarted agent reads back (docs/protocol.md §8.3), over two list pages and
/// only of its agent id, and a record written: annotations, then status; gone is no error.
#[tokio::test]
async fn applied_manifest_work_records_are_listed_and_written() {
    let f = fixture("applied_work_records", &[]).await;
    let c = &f.cluster;
    let records = c.list_applied_works("c1-work-agent").await.expect("list");
    assert_eq!(records.len(), 2, "{records:#?}");
    let (first, second) = (&records[0], &records[1]);
    assert_eq!((first.owner.clone(), first.resource_id.as_str()), (owner(), "id-1"));
    assert_eq!(first.store_identity.as_deref(), Some("store-a"));
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z").expect("time");
    assert_eq!(first.eviction_start, Some(start.with_timezone(&chrono::Utc)));
    let applied: Vec<(String, bool, String, String)> = first
        .applied
        .iter()
        .map(|r| {
            (
                r.object.to_string(),
                r.object.mapping.namespaced,
                r.object.mapping.version.clone(),
                r.uid.clone(),
            )
        })
        .collect();
    assert_eq!(
        applied,
        vec![
            ("configmaps./default/a".into(), true, "v1".into(), UID_A1.into()),
            ("clusterroles.rbac.authorization.k8s.io/reader".into(), false, "v1".into(), UID_A2.into()),
        ]
    );
    assert_eq!((second.resource_id.as_str(), second.store_identity.clone()), ("w2", None));
    assert!(second.applied.is_empty() && second.eviction_start.is_none());

    let mut record = second.clone();
    record.store_identity = Some("store-a".into());
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-05T11:00:00Z").expect("time");
    record.eviction_start = Some(start.with_timezone(&chrono::Utc));
    c.record_applied_work(&record).await.expect("recorded");
    record.owner.name = "hub-gone".into();
    c.record_applied_work(&record).await.expect("a missing AppliedManifestWork is no error");
    f.assert_done_in_order();
}

#[tokio::test]
async fn applied_manifest_work_absent_without_its_crd() {
    let f = fixture("applied_work_absent", &[]).await;
    assert_eq!(f.cluster.applied_work_uid(&owner()).await.expect("no CRD"), None);
    f.cluster.delete_applied_work(&owner()).await.expect("nothing to delete");
    f.assert_done_in_order();
}

/// An agent of consumer `c1` on a fixture's fake API server. No status sync or resync ticks
/// during the test: every request comes from the spec events the test publishes.
async fn agent_on(name: &str) -> (Fixture, Harness) {
    let mut config = AgentConfig::new("c1");
    config.status_sync_interval = Duration::from_secs(3600);
    config.resync_interval = None;
    let hub = config.hub_hash();
    let amw = format!("{hub}-w1");
    let f = fixture(name, &[("AMW", &amw), ("HUB", &hub)]).await;
    let h = Harness::start_on(config, Arc::new(SimulatedCluster::new()), Arc::new(f.cluster.clone())).await;
    (f, h)
}

fn manifest_condition<'a>(
    st: &'a maestro_api::payload::ManifestBundleStatus,
    ty: &str,
) -> Option<&'a maestro_api::payload::Condition> {
    st.resource_status.first().and_then(|m| m.conditions.iter().find(|c| c.kind == ty))
}

#[tokio::test]
async fn agent_reports_a_server_side_apply_field_conflict() {
    let (f, h) = agent_on("agent_ssa_conflict").await;
    let config = json!({"resourceIdentifier":{"group":"","resource":"configmaps","name":"a","namespace":"default"},
        "updateStrategy":{"type":"ServerSideApply"}});
    h.publish_spec("w1", 1, json!({"manifests":[cm("a", "2")], "manifestConfigs":[config]})).await;
    let ev =
        h.wait_status("w1", |s| manifest_condition(s, "Applied").is_some_and(|c| c.status == "False")).await;
    let st = decode(&ev).status;
    let applied = manifest_condition(&st, "Applied").expect("Applied");
    assert_eq!(applied.reason, "AppliedManifestFailed");
    assert!(applied.message.starts_with("Failed to apply manifest: conflict on "), "{}", applied.message);
    assert!(
        applied.message.ends_with(
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .data.k"
        ),
        "{}",
        applied.message
    );
    assert_eq!(st.condition("Applied").map(|c| c.status.as_str()), Some("False"));
    assert_eq!(manifest_condition(&st, "Available").map(|c| c.status.as_str()), Some("True"), "it exists");
    h.stop().await;
    f.assert_done();
}

#[tokio::test]
async fn agent_retries_after_already_exists_and_replaces() {
    let (f, h) = agent_on("agent_create_race").await;
    h.publish_spec("w1", 1, json!({"manifests":[cm("a", "1")]})).await;
    h.wait_status("w1", |s| s.is_true("Applied") && s.is_true("Available")).await;
    h.stop().await;
    // the POST answered AlreadyExists and the PUT at the live resourceVersion was sent
    f.assert_done();
}

#[tokio::test]
async fn agent_delete_leaves_a_replaced_object_alone() {
    let (f, h) = agent_on("agent_delete_replaced").await;
    h.publish_spec("w1", 1, json!({"manifests":[cm("a", "1")]})).await;
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    f.phase("delete");
    h.publish_delete("w1", 1).await;
    h.wait_status("w1", |s| s.is_true("Deleted")).await;
    h.stop().await;
    // one DELETE (UID precondition failed); the replacement was read, never deleted
    f.assert_done();
}

#[tokio::test]
async fn agent_owns_by_applied_manifest_work_and_deletes_it_last() {
    let (f, h) = agent_on("agent_applied_work").await;
    h.publish_spec("w1", 1, json!({"manifests":[cm("a", "1")]})).await;
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    f.phase("delete");
    h.publish_delete("w1", 1).await;
    h.wait_status("w1", |s| s.is_true("Deleted")).await;
    h.stop().await;
    f.assert_done();
}

/// The executor's access checks (docs/protocol.md §8.6): a `SubjectAccessReview` per question
/// (allowed, then refused), and the dry-run create impersonating the executor that finds a
/// permission escalation (403) or an existing object (409).
#[tokio::test]
async fn executor_access_reviews_and_impersonated_dry_runs() {
    let f = fixture("executor_access", &[]).await;
    let sa = "system:serviceaccount:ns:deployer";
    let review = |namespace: &str| maestro_agent::AccessReview {
        user: sa.into(),
        groups: vec![
            "system:serviceaccounts".into(),
            "system:authenticated".into(),
            "system:serviceaccounts:ns".into(),
        ],
        verb: "create".into(),
        mapping: mapping("", "v1", "ConfigMap", "configmaps", true),
        namespace: namespace.into(),
        name: "a".into(),
    };
    assert!(f.cluster.review_access(&review("default")).await.expect("review"));
    assert!(!f.cluster.review_access(&review("kube-system")).await.expect("review"));
    let roles = mapping("rbac.authorization.k8s.io", "v1", "Role", "roles", true);
    let role = |name: &str| {
        json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":name,"namespace":"default"},
               "rules":[{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]}]})
    };
    let escalation =
        f.cluster.dry_run_create_as(sa, &object(roles.clone(), "default", "reader"), &role("reader")).await;
    let err = escalation.expect_err("forbidden");
    assert_eq!(api_status(&err), Some(403), "{err}");
    let exists = f.cluster.dry_run_create_as(sa, &object(roles, "default", "viewer"), &role("viewer")).await;
    assert_eq!(api_status(&exists.expect_err("exists")), Some(409));
    f.assert_done_in_order();
}

/// Records every change a watcher delivers, in order.
#[derive(Debug, Default)]
struct Changes {
    seen: Mutex<Vec<WatchKey>>,
}

impl ChangeSink for Changes {
    fn changed(&self, object: &WatchKey) {
        self.seen.lock().expect("lock").push(object.clone());
    }
}

impl Changes {
    fn names(&self) -> Vec<(String, String)> {
        self.seen.lock().expect("lock").iter().map(|k| (k.namespace.clone(), k.name.clone())).collect()
    }
}

/// kube-rs's watcher on the fake server (`watch.json`): one list, then one watch from the
/// list's resourceVersion with bookmarks allowed, whatever the number of `watch_kind` calls;
/// the listed object, then each ADDED, MODIFIED and DELETED object reaches the sink, the
/// BOOKMARK does not; cancelling the context stops the watcher.
#[tokio::test]
async fn watch_lists_then_streams_changes_and_skips_bookmarks() {
    use maestro_transport::retry::{CancellationToken, TaskTracker};
    let f = fixture("watch", &[]).await;
    let changes = Arc::new(Changes::default());
    let (cancel, tasks) = (CancellationToken::new(), TaskTracker::new());
    let ctx = WatchContext::new(changes.clone(), cancel.clone(), tasks.clone());
    let configmaps = mapping("", "v1", "ConfigMap", "configmaps", true);
    assert!(f.cluster.watch_kind(&configmaps, &ctx), "kube-rs can watch");
    assert!(f.cluster.watch_kind(&configmaps, &ctx), "asked again: the same watcher");
    assert_eq!(f.cluster.watcher_count(), 1);
    wait_until(|| changes.names().len() >= 4).await;
    let expected = [("default", "a"), ("default", "b"), ("default", "a"), ("other", "c")]
        .map(|(ns, n)| (ns.to_owned(), n.to_owned()));
    assert_eq!(changes.names(), expected, "list, ADDED, MODIFIED, (BOOKMARK: nothing), DELETED");
    let first = changes.seen.lock().expect("lock")[0].clone();
    assert_eq!(
        first,
        WatchKey {
            group: "".into(),
            resource: "configmaps".into(),
            namespace: "default".into(),
            name: "a".into()
        }
    );
    cancel.cancel();
    tasks.close();
    tokio::time::timeout(DEADLINE, tasks.wait()).await.expect("the watcher stops when cancelled");
    assert_eq!(f.cluster.watcher_count(), 0);
    f.assert_done_in_order();
}

/// `feedbackScrapeType: Watch` through the agent on the fake server (`agent_watch.json`): after
/// the apply the agent watches ConfigMaps (list, then watch); the MODIFIED event streamed once
/// the test moves to phase `changed` makes it read the object again and publish the new
/// feedback value, with the status sync an hour away.
#[tokio::test]
async fn agent_publishes_watched_feedback_on_a_modified_event() {
    let (f, h) = agent_on("agent_watch").await;
    let config = json!({"resourceIdentifier":{"group":"","resource":"configmaps","name":"a","namespace":"default"},
        "feedbackRules":[{"type":"JSONPaths","jsonPaths":[{"name":"k","path":".data.k"}]}],
        "feedbackScrapeType":"Watch"});
    h.publish_spec("w1", 1, json!({"manifests":[cm("a", "1")], "manifestConfigs":[config]})).await;
    let k = |s: &maestro_api::payload::ManifestBundleStatus| {
        s.resource_status
            .first()
            .and_then(|m| m.status_feedback.values.iter().find(|v| v.name == "k"))
            .map(|v| v.field_value.clone())
    };
    let string = |v: &str| Some(maestro_api::payload::FieldValue::String { string: v.into() });
    h.wait_status("w1", |s| s.is_true("Applied") && k(s) == string("1")).await;
    // The watch is open and the listed object was read again (exchanges 6 and 4).
    wait_until(|| f.served(6) == 1 && f.served(4) >= 1).await;
    f.phase("changed");
    h.wait_status("w1", |s| k(s) == string("2")).await;
    h.stop().await;
    f.assert_done();
}
