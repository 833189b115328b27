//! Update strategies on the simulated cluster: CreateOnly, ReadOnly, ServerSideApply.

use maestro_agent::{ApplyMode, Cluster};
use serde_json::json;

use crate::common::*;

fn cm(name: &str, value: &str) -> serde_json::Value {
    json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":"default"},"data":{"a":value}})
}

fn strategy(name: &str, s: serde_json::Value) -> serde_json::Value {
    json!({"resourceIdentifier":{"group":"","resource":"configmaps","name":name,"namespace":"default"},"updateStrategy":s})
}

#[tokio::test]
async fn create_only_and_read_only() {
    let h = Harness::start("c1").await;
    h.cluster.insert(cm("existing", "old")).expect("insert");
    h.cluster.insert(cm("watched", "theirs")).expect("insert");
    let bundle = json!({
        "manifests": [cm("existing", "new"), cm("watched", "ours"), cm("absent", "x")],
        "manifestConfigs": [
            strategy("existing", json!({"type":"CreateOnly"})),
            strategy("watched", json!({"type":"ReadOnly"})),
            strategy("absent", json!({"type":"ReadOnly"})),
        ]
    });
    h.publish_spec("w1", 1, bundle).await;
    let ev = h.wait_status("w1", |s| s.is_true("Applied")).await;
    let st = decode(&ev).status;
    let existing = h.cluster.object("v1", "ConfigMap", "default", "existing").expect("cm");
    assert_eq!(existing["data"]["a"], "old", "CreateOnly never updates");
    assert_eq!(existing["metadata"]["ownerReferences"][0]["kind"], "AppliedManifestWork", "but owns");
    let watched = h.cluster.object("v1", "ConfigMap", "default", "watched").expect("cm");
    assert_eq!(watched["data"]["a"], "theirs", "ReadOnly never writes");
    assert!(watched["metadata"].get("ownerReferences").is_none());
    assert!(h.cluster.object("v1", "ConfigMap", "default", "absent").is_none());
    let avail = |i: usize| st.resource_status[i].conditions[1].reason.clone();
    assert_eq!(
        (avail(0), avail(1), avail(2)),
        ("ResourceAvailable".into(), "ResourceAvailable".into(), "ResourceNotAvailable".into())
    );
    assert_eq!(
        st.condition("Available").map(|c| c.message.as_str()),
        Some("1 of 3 resources are not available")
    );
    // the work is deleted: read-only objects are not touched
    h.publish_delete("w1", 1).await;
    h.wait_status("w1", |s| s.is_true("Deleted")).await;
    assert!(h.cluster.object("v1", "ConfigMap", "default", "watched").is_some());
    assert!(
        h.cluster.object("v1", "ConfigMap", "default", "existing").is_none(),
        "owned CreateOnly object deleted"
    );
    h.stop().await;
}

#[tokio::test]
async fn server_side_apply_conflicts_unless_forced() {
    let h = Harness::start("c1").await;
    let mapping = h.cluster.resolve("v1", "ConfigMap").await.expect("mapping");
    let oref = maestro_agent::ObjectRef { mapping, namespace: "default".into(), name: "shared".into() };
    let other = ApplyMode::ServerSideApply { field_manager: "someone-else".into(), force: false };
    h.cluster.apply(&oref, cm("shared", "theirs"), &other).await.expect("seed");
    let ssa = |force: bool| {
        json!({"manifests":[cm("shared", "ours")],
               "manifestConfigs":[strategy("shared", json!({"type":"ServerSideApply","serverSideApply":{"force":force}}))]})
    };
    h.publish_spec("w1", 1, ssa(false)).await;
    let ev = h.wait_status("w1", |s| s.condition("Applied").is_some_and(|c| c.status == "False")).await;
    let st = decode(&ev).status;
    let c = &st.resource_status[0].conditions[0];
    assert_eq!(c.reason, "AppliedManifestFailed");
    assert!(c.message.starts_with("Failed to apply manifest: conflict"), "{}", c.message);
    assert_eq!(h.cluster.object("v1", "ConfigMap", "default", "shared").expect("cm")["data"]["a"], "theirs");
    h.publish_spec("w1", 2, ssa(true)).await;
    h.wait_event(|e| {
        is_status_for(e, "w1") && decode(e).resource_version == 2 && decode(e).status.is_true("Applied")
    })
    .await;
    let live = h.cluster.object("v1", "ConfigMap", "default", "shared").expect("cm");
    assert_eq!(live["data"]["a"], "ours");
    let managers: Vec<&str> = live["metadata"]["managedFields"]
        .as_array()
        .expect("managed fields")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"work-agent"), "{managers:?}");
    h.stop().await;
}

#[tokio::test]
async fn simulated_cluster_fabricates_status_and_honours_uid_precondition() {
    let c = maestro_agent::SimulatedCluster::new();
    let job = c
        .insert(json!({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j","namespace":"ns"},"spec":{"completions":3}}))
        .expect("job");
    assert_eq!(job["status"]["succeeded"], 3);
    let pod = c
        .insert(json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ns"}}))
        .expect("pod");
    assert_eq!(pod["status"]["phase"], "Running");
    let ns = c
        .insert(json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"ns","namespace":"ignored"}}))
        .expect("ns");
    assert_eq!(ns["status"]["phase"], "Active");
    assert!(ns["metadata"].get("namespace").is_none(), "cluster-scoped");
    let ds = c
        .insert(json!({"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"d","namespace":"ns"}}))
        .expect("ds");
    assert_eq!(ds["status"]["numberReady"], 1);
    // a CRD teaches the cluster a new kind's plural and scope
    c.insert(json!({"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"widgets.example.com"},
        "spec":{"group":"example.com","scope":"Cluster","names":{"kind":"Widget","plural":"widgetz"}}})).expect("crd");
    let m = c.resolve("example.com/v1", "Widget").await.expect("mapping");
    assert_eq!((m.resource.as_str(), m.namespaced), ("widgetz", false));
    assert_eq!(c.resolve("example.com/v1", "Gadget").await.expect("fallback").resource, "gadgets");
    // UID precondition
    let mapping = c.resolve("batch/v1", "Job").await.expect("mapping");
    let oref = maestro_agent::ObjectRef { mapping, namespace: "ns".into(), name: "j".into() };
    let err = c.delete(&oref, Some("not-the-uid")).await.expect_err("precondition");
    assert!(matches!(err, maestro_agent::ClusterError::PreconditionFailed { .. }));
    let uid = job["metadata"]["uid"].as_str().expect("uid");
    assert!(c.delete(&oref, Some(uid)).await.expect("delete"));
    assert!(!c.delete(&oref, Some(uid)).await.expect("gone"));
    // Update bumps generation only when the spec changes
    let dm = c.resolve("apps/v1", "Deployment").await.expect("mapping");
    let d = maestro_agent::ObjectRef { mapping: dm, namespace: "ns".into(), name: "web".into() };
    let dep = |r: i64| json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"ns","labels":{"a":"1"}},"spec":{"replicas":r}});
    let v1 = c.apply(&d, dep(1), &ApplyMode::Update).await.expect("create");
    let same = c.apply(&d, dep(1), &ApplyMode::Update).await.expect("noop");
    assert_eq!(v1["metadata"]["resourceVersion"], same["metadata"]["resourceVersion"]);
    let v2 = c.apply(&d, dep(4), &ApplyMode::Update).await.expect("update");
    assert_eq!(
        (v2["metadata"]["generation"].as_i64(), v2["status"]["readyReplicas"].as_i64()),
        (Some(2), Some(4))
    );
    assert_eq!(v2["metadata"]["uid"], v1["metadata"]["uid"]);
}

/// A broker that redelivers a spec event late (at least once; the Pub/Sub emulator resends
/// what it gave a dead stream after newer events) must not make the agent apply it again: a
/// redelivered create after the work's deletion would re-create its objects, a redelivered
/// update to a work on hold would roll it back. Found by the fault-injection suite
/// (`maestro-faults`, a cut of the agents' link on the Pub/Sub emulator).
#[tokio::test]
async fn a_redelivered_spec_event_is_dropped() {
    use maestro_api::codec::SpecEventBuilder;
    use maestro_api::types::Action;
    use maestro_transport::SourceTransport;
    let h = Harness::start("c1").await;
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), json!("w1"));
    let create = SpecEventBuilder::new("maestro", "w1", 1, "c1")
        .action(Action::Create)
        .metadata(meta)
        .bundle_json(json!({"manifests": [cm("late", "1")]}))
        .build();
    h.source.publish(&create).await.expect("publish");
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    h.publish_delete("w1", 1).await;
    h.wait_status("w1", |s| s.is_true("Deleted")).await;
    wait_until(|| h.handle.work("w1").is_none()).await;
    let mark = h.rec.count();
    h.source.publish(&create).await.expect("the same event again");
    // A later event proves the redelivery was handled (in order) before it.
    h.publish_spec("w2", 1, json!({"manifests": [cm("after", "1")]})).await;
    h.wait_status("w2", |s| s.is_true("Applied")).await;
    assert!(h.handle.work("w1").is_none(), "the deleted work is not re-created");
    assert!(h.cluster.object("v1", "ConfigMap", "default", "late").is_none());
    assert!(!h.rec.since(mark).iter().any(|e| is_status_for(e, "w1")), "no status for it either");
    h.stop().await;
}

/// A late spec of a deleted bundle that the agent never took (a first delivery, not a
/// redelivery: the Pub/Sub emulator gave the update to a dead stream and delivered it again
/// only after the deletion) must not re-create the work; the same bundle re-created by its
/// source (same resource id, new `creationTimestamp`) must. Found by the fault-injection suite
/// (`maestro-faults`, a cut of the agents' link on the Pub/Sub emulator: an object re-created
/// after its deletion).
#[tokio::test]
async fn a_late_spec_of_a_deleted_bundle_is_dropped_and_a_recreated_one_applied() {
    use maestro_api::codec::SpecEventBuilder;
    use maestro_transport::SourceTransport;
    let h = Harness::start("c1").await;
    let spec = |version: i64, created: &str, value: &str| {
        let mut meta = serde_json::Map::new();
        meta.insert("name".into(), json!("w1"));
        meta.insert("creationTimestamp".into(), json!(created));
        SpecEventBuilder::new("maestro", "w1", version, "c1")
            .metadata(meta)
            .bundle_json(json!({"manifests": [cm("reborn", value)]}))
            .build()
    };
    h.source.publish(&spec(1, "2026-01-01T00:00:00.000001Z", "1")).await.expect("publish");
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    let late = spec(2, "2026-01-01T00:00:00.000001Z", "2");
    h.publish_delete("w1", 2).await;
    h.wait_status("w1", |s| s.is_true("Deleted")).await;
    wait_until(|| h.handle.work("w1").is_none()).await;
    let mark = h.rec.count();
    h.source.publish(&late).await.expect("the late update");
    // A later event proves the late one was handled (in order) before it.
    h.publish_spec("w2", 1, json!({"manifests": [cm("after", "1")]})).await;
    h.wait_status("w2", |s| s.is_true("Applied")).await;
    assert!(h.handle.work("w1").is_none(), "the deleted work is not re-created");
    assert!(h.cluster.object("v1", "ConfigMap", "default", "reborn").is_none());
    assert!(!h.rec.since(mark).iter().any(|e| is_status_for(e, "w1")), "no status for it either");
    h.source.publish(&spec(1, "2026-01-01T00:00:09.000002Z", "3")).await.expect("re-created");
    wait_until(|| {
        h.cluster.object("v1", "ConfigMap", "default", "reborn").is_some_and(|o| o["data"]["a"] == "3")
    })
    .await;
    h.stop().await;
}

/// The server resends a stored spec event with its id, and a store written behind the
/// server's back may keep that id at a new version: a new version under a seen id is applied,
/// not dropped as a redelivery (found by the end-to-end main job: an outbox row written while
/// the server was down never reached the agent).
#[tokio::test]
async fn a_seen_event_id_at_a_new_version_is_applied() {
    use maestro_api::AttributesWriter;
    use maestro_api::codec::SpecEventBuilder;
    use maestro_transport::SourceTransport;
    let h = Harness::start("c1").await;
    let event = |version: i64, value: &str| {
        let mut meta = serde_json::Map::new();
        meta.insert("name".into(), json!("w1"));
        let mut ev = SpecEventBuilder::new("maestro", "w1", version, "c1")
            .metadata(meta)
            .bundle_json(json!({"manifests": [cm("same-id", value)]}))
            .build();
        ev.set_id("one-id");
        ev
    };
    h.source.publish(&event(1, "1")).await.expect("publish");
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    h.source.publish(&event(2, "2")).await.expect("publish");
    wait_until(|| {
        h.cluster.object("v1", "ConfigMap", "default", "same-id").is_some_and(|o| o["data"]["a"] == "2")
    })
    .await;
    h.stop().await;
}
