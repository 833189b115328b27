//! `KubeCluster` against a small fake Kubernetes API server (axum on 127.0.0.1:0) serving
//! discovery (`/api/v1`, `/apis/apps/v1`) and the object endpoints the agent calls.
//!
//! No Kubernetes API server can run on this machine (no kube-apiserver, envtest, kwok or
//! Docker), so this is HTTP-level coverage only: it checks the requests kube-rs sends (paths,
//! verbs, field manager, force, UID preconditions) and the handling of the answers, not real
//! API server semantics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maestro_agent::{
    AgentConfig, ApplyMode, Cluster, ClusterError, KubeCluster, ObjectRef, SimulatedCluster,
};
use serde_json::{Value, json};

use crate::common::*;

#[derive(Default)]
struct Fake {
    objects: Mutex<HashMap<String, Value>>,
    log: Mutex<Vec<String>>,
    rv: Mutex<u64>,
}

type Shared = Arc<Fake>;

fn status(code: u16, reason: &str) -> Response {
    let body = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":reason,"reason":reason,"code":code});
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body))
        .into_response()
}

fn resources(gv: &str, list: &[(&str, &str, bool)]) -> Response {
    let res: Vec<Value> = list
        .iter()
        .map(|(name, kind, ns)| {
            json!({"name":name,"singularName":"","namespaced":ns,"kind":kind,
            "verbs":["create","delete","get","list","patch","update","watch"]})
        })
        .collect();
    axum::Json(json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion":gv,"resources":res}))
        .into_response()
}

async fn handle(State(fake): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    fake.log.lock().expect("lock").push(format!("{method} {path}?{query}"));
    match path.as_str() {
        "/api/v1" => {
            return resources("v1", &[("configmaps", "ConfigMap", true), ("namespaces", "Namespace", false)]);
        }
        "/apis/apps/v1" => return resources("apps/v1", &[("deployments", "Deployment", true)]),
        _ => {}
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // .../namespaces/{ns}/{resource}[/{name}] or cluster-scoped .../{resource}[/{name}]
    let (collection, name) = match segs.iter().position(|s| *s == "namespaces") {
        Some(i) if segs.len() > i + 2 => (segs[..i + 3].join("/"), segs.get(i + 3).copied()),
        _ if segs.len() >= 3 && segs[0] == "api" => (segs[..3].join("/"), segs.get(3).copied()),
        _ if segs.len() >= 4 && segs[0] == "apis" => (segs[..4].join("/"), segs.get(4).copied()),
        _ => return status(404, "NotFound"),
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let next_rv = || {
        let mut rv = fake.rv.lock().expect("lock");
        *rv += 1;
        rv.to_string()
    };
    let mut objects = fake.objects.lock().expect("lock");
    match (method.as_str(), name) {
        ("POST", None) => {
            let n = body["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let key = format!("{collection}/{n}");
            if objects.contains_key(&key) {
                return status(409, "AlreadyExists");
            }
            let mut obj = body;
            obj["metadata"]["uid"] = json!(format!("uid-{n}-{}", next_rv()));
            obj["metadata"]["resourceVersion"] = json!(next_rv());
            objects.insert(key, obj.clone());
            (StatusCode::CREATED, axum::Json(obj)).into_response()
        }
        ("GET", Some(n)) => match objects.get(&format!("{collection}/{n}")) {
            Some(o) => axum::Json(o.clone()).into_response(),
            None => status(404, "NotFound"),
        },
        ("PUT", Some(n)) => {
            let mut obj = body;
            obj["metadata"]["resourceVersion"] = json!(next_rv());
            objects.insert(format!("{collection}/{n}"), obj.clone());
            axum::Json(obj).into_response()
        }
        ("PATCH", Some(n)) => {
            let key = format!("{collection}/{n}");
            let mut obj = objects
                .get(&key)
                .cloned()
                .unwrap_or_else(|| json!({"metadata":{"uid": format!("uid-{n}-ssa")}}));
            merge(&mut obj, &body);
            obj["metadata"]["resourceVersion"] = json!(next_rv());
            objects.insert(key, obj.clone());
            axum::Json(obj).into_response()
        }
        ("DELETE", Some(n)) => {
            let key = format!("{collection}/{n}");
            let Some(live) = objects.get(&key) else { return status(404, "NotFound") };
            if let Some(uid) = body.pointer("/preconditions/uid").and_then(Value::as_str)
                && live["metadata"]["uid"].as_str() != Some(uid)
            {
                return status(409, "Conflict");
            }
            objects.remove(&key);
            axum::Json(json!({"kind":"Status","apiVersion":"v1","status":"Success","code":200}))
                .into_response()
        }
        _ => status(405, "MethodNotAllowed"),
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        _ => *target = patch.clone(),
    }
}

async fn fake_cluster() -> (Shared, KubeCluster) {
    let fake: Shared = Arc::default();
    let app = axum::Router::new().fallback(handle).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let config = kube::Config::new(format!("http://{addr}").parse().expect("uri"));
    (fake, KubeCluster::from_config(config).expect("client"))
}

fn cm(value: &str) -> Value {
    json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"default"},"data":{"k":value}})
}

#[tokio::test]
async fn kube_cluster_speaks_the_api() {
    let (fake, cluster) = fake_cluster().await;
    let m = cluster.resolve("apps/v1", "Deployment").await.expect("discovery");
    assert_eq!((m.resource.as_str(), m.namespaced), ("deployments", true));
    let ns = cluster.resolve("v1", "Namespace").await.expect("discovery");
    assert!(!ns.namespaced);
    let err = cluster.resolve("example.com/v1", "Widget").await.expect_err("unknown group");
    assert!(matches!(err, ClusterError::UnknownKind { .. }), "{err:?}");
    let oref = ObjectRef {
        mapping: cluster.resolve("v1", "ConfigMap").await.expect("cm"),
        namespace: "default".into(),
        name: "a".into(),
    };
    assert!(cluster.get(&oref).await.expect("get").is_none());
    let created = cluster.apply(&oref, cm("1"), &ApplyMode::Update).await.expect("create");
    let uid = created["metadata"]["uid"].as_str().expect("uid").to_owned();
    let unchanged = cluster.apply(&oref, cm("1"), &ApplyMode::Update).await.expect("noop");
    assert_eq!(unchanged["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);
    let updated = cluster.apply(&oref, cm("2"), &ApplyMode::Update).await.expect("replace");
    assert_eq!(
        (updated["data"]["k"].as_str(), updated["metadata"]["uid"].as_str()),
        (Some("2"), Some(uid.as_str()))
    );
    let kept = cluster.apply(&oref, cm("3"), &ApplyMode::CreateOnly).await.expect("create-only");
    assert_eq!(kept["data"]["k"], "2");
    let ssa = ApplyMode::ServerSideApply { field_manager: "work-agent".into(), force: true };
    let applied = cluster.apply(&oref, cm("4"), &ssa).await.expect("ssa");
    assert_eq!(applied["data"]["k"], "4");
    let err = cluster.delete(&oref, Some("other-uid")).await.expect_err("precondition");
    assert!(matches!(err, ClusterError::PreconditionFailed { .. }), "{err:?}");
    assert!(cluster.delete(&oref, Some(&uid)).await.expect("delete"));
    assert!(!cluster.delete(&oref, Some(&uid)).await.expect("already gone"));
    let log = fake.log.lock().expect("lock").clone();
    let has = |s: &str| log.iter().any(|l| l.starts_with(s));
    assert!(has("GET /api/v1?") && has("GET /apis/apps/v1?"), "{log:#?}");
    assert!(has("POST /api/v1/namespaces/default/configmaps?"), "{log:#?}");
    assert!(has("PUT /api/v1/namespaces/default/configmaps/a?"), "{log:#?}");
    assert!(
        log.iter().any(|l| l.starts_with("PATCH /api/v1/namespaces/default/configmaps/a?")
            && l.contains("fieldManager=work-agent")
            && l.contains("force=true")),
        "{log:#?}"
    );
    assert!(has("DELETE /api/v1/namespaces/default/configmaps/a?"), "{log:#?}");
}

#[tokio::test]
async fn agent_on_kube_cluster_applies_and_deletes() {
    let (fake, cluster) = fake_cluster().await;
    let h =
        Harness::start_on(AgentConfig::new("c1"), Arc::new(SimulatedCluster::new()), Arc::new(cluster)).await;
    h.publish_spec("w1", 1, cm_bundle("x")).await;
    h.wait_status("w1", |s| s.is_true("Applied") && s.is_true("Available")).await;
    let stored = fake
        .objects
        .lock()
        .expect("lock")
        .get("api/v1/namespaces/default/configmaps/x")
        .cloned()
        .expect("stored");
    // no AppliedManifestWork API on this server: ownership by annotation, no owner reference
    assert_eq!(
        stored["metadata"]["annotations"][maestro_agent::OWNER_ANNOTATION]
            .as_str()
            .map(|s| s.ends_with("-w1")),
        Some(true)
    );
    assert!(stored["metadata"].get("ownerReferences").is_none());
    h.publish_delete("w1", 1).await;
    h.wait_status("w1", |s| s.is_true("Deleted")).await;
    assert!(fake.objects.lock().expect("lock").is_empty());
    h.stop().await;
}
