//! End-to-end tests of the agent: the in-memory broker as the source side, the simulated
//! cluster as the target. Every wait is on a condition with a deadline.

mod common;

use std::time::Duration;

use common::*;
use maestro_api::codec::{SpecEventBuilder, status_resync_request};
use maestro_api::payload::{FieldValue, StatusHash, StatusHashList};
use maestro_api::{AttributesReader, ext};
use maestro_transport::SourceTransport;
use serde_json::json;

fn web_bundle(replicas: i64) -> serde_json::Value {
    json!({
        "manifests": [
            {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},
             "spec":{"replicas":replicas,"paused":false,"selector":{"matchLabels":{"app":"web"}},
                     "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}}},
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},
             "spec":{"ports":[{"port":80}]}},
            {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"web-config","namespace":"default"},
             "data":{"k":"v"}}
        ],
        "manifestConfigs": [{
            "resourceIdentifier":{"group":"apps","resource":"deployments","name":"web","namespace":"*"},
            "feedbackRules":[
                {"type":"WellKnownStatus"},
                {"type":"JSONPaths","jsonPaths":[
                    {"name":"replicas","path":".spec.replicas"},
                    {"name":"name","path":".metadata.name"},
                    {"name":"paused","path":".spec.paused"},
                    {"name":"conditions","path":".status.conditions"},
                    {"name":"wrongVersion","version":"v2","path":".spec.replicas"},
                    {"name":"missing","path":".status.nothing"}
                ]}
            ]
        }]
    })
}

#[tokio::test]
async fn applies_bundle_and_reports_conditions_and_feedback() {
    let h = Harness::start("c1").await;
    h.publish_spec("w1", 1, web_bundle(2)).await;
    let ev = h.wait_status("w1", |s| s.is_true("Applied") && s.is_true("Available")).await;
    let st = decode(&ev);
    assert_eq!(st.resource_version, 1);
    assert_eq!(st.cluster_name, "c1");
    assert_eq!(st.original_source, "maestro");
    assert_eq!(ev.source().to_string(), "c1-work-agent");
    assert_eq!(st.status_hash.as_deref(), Some(maestro_api::statushash::status_hash(&st.status).as_str()));
    assert!(ext::get_str(&ev, ext::METADATA).is_some_and(|m| m.contains("\"uid\":\"w1\"")));
    let applied = st.status.condition("Applied").expect("Applied");
    assert_eq!(
        (applied.reason.as_str(), applied.message.as_str()),
        ("AppliedManifestWorkComplete", "Apply manifest work complete")
    );
    assert_eq!(applied.observed_generation, 1);
    assert_eq!(st.status.condition("Available").map(|c| c.reason.as_str()), Some("ResourcesAvailable"));
    assert_eq!(st.status.resource_status.len(), 3);
    let dep = &st.status.resource_status[0];
    assert_eq!(
        (
            dep.resource_meta.group.as_str(),
            dep.resource_meta.resource.as_str(),
            dep.resource_meta.kind.as_str()
        ),
        ("apps", "deployments", "Deployment")
    );
    let kinds: Vec<(&str, &str)> =
        dep.conditions.iter().map(|c| (c.kind.as_str(), c.reason.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("Applied", "AppliedManifestComplete"),
            ("Available", "ResourceAvailable"),
            ("StatusFeedbackSynced", "StatusFeedbackSynced")
        ]
    );
    let fb = |name: &str| {
        dep.status_feedback.values.iter().find(|v| v.name == name).map(|v| v.field_value.clone())
    };
    assert_eq!(fb("ReadyReplicas"), Some(FieldValue::Integer { integer: 2 }));
    assert_eq!(fb("AvailableReplicas"), Some(FieldValue::Integer { integer: 2 }));
    assert_eq!(fb("replicas"), Some(FieldValue::Integer { integer: 2 }));
    assert_eq!(fb("name"), Some(FieldValue::String { string: "web".into() }));
    assert_eq!(fb("paused"), Some(FieldValue::Boolean { boolean: false }));
    assert!(matches!(fb("conditions"), Some(FieldValue::JsonRaw { json_raw }) if json_raw.starts_with("[{")));
    assert_eq!(fb("wrongVersion"), None);
    assert_eq!(fb("missing"), None);
    let svc = &st.status.resource_status[1];
    assert_eq!(svc.conditions[2].reason, "NoStatusFeedbackSynced");
    // ownership: owner reference to the AppliedManifestWork
    let d = h.cluster.object("apps/v1", "Deployment", "default", "web").expect("deployment");
    assert_eq!(d["metadata"]["ownerReferences"][0]["kind"], "AppliedManifestWork");
    assert_eq!(h.handle.work("w1").map(|w| w.applied.len()), Some(3));
    // a periodic sync with nothing changed publishes nothing
    let before = h.rec.count();
    h.handle.sync_now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.rec.count(), before, "unchanged status must not be republished");
    h.stop().await;
}

#[tokio::test]
async fn update_gc_stale_and_other_cluster() {
    let h = Harness::start("c1").await;
    h.publish_spec("w1", 1, web_bundle(1)).await;
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    // v2 drops the ConfigMap and scales to 3
    let mut v2 = web_bundle(3);
    v2["manifests"].as_array_mut().expect("array").pop();
    h.publish_spec("w1", 2, v2).await;
    let ev = h.wait_event(|e| is_status_for(e, "w1") && decode(e).resource_version == 2).await;
    assert_eq!(decode(&ev).status.resource_status.len(), 2);
    wait_until(|| h.cluster.object("v1", "ConfigMap", "default", "web-config").is_none()).await;
    let d = h.cluster.object("apps/v1", "Deployment", "default", "web").expect("deployment");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["status"]["readyReplicas"], 3);
    // stale v1 ignored
    h.publish_spec("w1", 1, web_bundle(1)).await;
    // a spec for another cluster (broadcast, clustername "") is ignored
    let other = SpecEventBuilder::new("maestro", "w9", 1, "").bundle_json(web_bundle(1)).build();
    h.source.publish(&other).await.expect("publish");
    h.publish_spec("marker", 1, cm_bundle("marker")).await;
    h.wait_status("marker", |s| s.is_true("Applied")).await;
    assert_eq!(h.handle.work("w1").map(|w| w.generation), Some(2));
    assert!(h.handle.work("w9").is_none());
    assert_eq!(
        h.cluster.object("apps/v1", "Deployment", "default", "web").expect("dep")["spec"]["replicas"],
        3
    );
    assert!(h.cluster.object("v1", "ConfigMap", "default", "web-config").is_none());
    h.stop().await;
}

#[tokio::test]
async fn delete_removes_resources_and_reports_deleted() {
    let h = Harness::start("c1").await;
    h.publish_spec("w1", 1, web_bundle(1)).await;
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    assert_eq!(h.cluster.len(), 3);
    h.publish_delete("w1", 1).await;
    let ev = h.wait_status("w1", |s| s.is_true("Deleted")).await;
    let st = decode(&ev);
    let c = st.status.condition("Deleted").expect("Deleted");
    assert_eq!(
        (c.reason.as_str(), c.message.as_str()),
        ("ManifestsDeleted", "The manifests are deleted from the cluster c1")
    );
    assert_eq!(st.resource_version, 1);
    assert!(h.cluster.is_empty());
    wait_until(|| h.handle.work("w1").is_none()).await;
    // unknown id
    h.publish_delete("ghost", 4).await;
    let ev = h.wait_status("ghost", |s| s.is_true("Deleted")).await;
    assert_eq!(decode(&ev).resource_version, 4);
    h.stop().await;
}

#[tokio::test]
async fn orphan_and_selective_orphan_keep_objects() {
    let h = Harness::start("c1").await;
    let mut b = web_bundle(1);
    b["deleteOption"] = json!({"propagationPolicy":"Orphan"});
    h.publish_spec("w1", 1, b).await;
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    let d = h.cluster.object("apps/v1", "Deployment", "default", "web").expect("deployment");
    assert!(d["metadata"].get("ownerReferences").is_none(), "orphaned resources are not owned");
    h.publish_delete("w1", 1).await;
    h.wait_status("w1", |s| s.is_true("Deleted")).await;
    assert_eq!(h.cluster.len(), 3);

    let mut b = cm_bundle("a");
    b["manifests"].as_array_mut().expect("array").push(cm_bundle("b")["manifests"][0].clone());
    b["deleteOption"] = json!({"propagationPolicy":"SelectivelyOrphan","selectivelyOrphans":{"orphaningRules":[
        {"group":"","resource":"configmaps","namespace":"default","name":"b"}]}});
    h.publish_spec("w2", 1, b).await;
    h.wait_status("w2", |s| s.is_true("Applied")).await;
    h.publish_delete("w2", 1).await;
    h.wait_status("w2", |s| s.is_true("Deleted")).await;
    assert!(h.cluster.object("v1", "ConfigMap", "default", "a").is_none());
    assert!(h.cluster.object("v1", "ConfigMap", "default", "b").is_some());
    h.stop().await;
}

#[tokio::test]
async fn spec_resync_on_every_subscribe_and_status_resync() {
    let h = Harness::start("c1").await;
    // the first resync request (empty) was awaited by Harness::start
    h.publish_spec("w1", 1, cm_bundle("a")).await;
    h.publish_spec("w2", 3, cm_bundle("b")).await;
    let s1 = h.wait_status("w1", |s| s.is_true("Applied")).await;
    h.wait_status("w2", |s| s.is_true("Applied")).await;
    h.broker.interrupt();
    h.broker.resume();
    let ev = h.wait_event(|e| e.ty().ends_with("spec.resync_request") && resync_versions(e).len() == 2).await;
    assert_eq!(resync_versions(&ev), [("w1".to_owned(), 1), ("w2".to_owned(), 3)]);
    assert_eq!(ext::get_str(&ev, ext::CLUSTER_NAME).as_deref(), Some("c1"));
    // status resync: w1's hash is current, w2's is not ⇒ only w2 is resent
    let h1 = decode(&s1).status_hash.expect("hash");
    let list = StatusHashList {
        status_hashes: vec![
            StatusHash { resource_id: "w1".into(), status_hash: h1 },
            StatusHash { resource_id: "w2".into(), status_hash: "stale".into() },
        ],
    };
    let mark = h.rec.count();
    h.source.publish(&status_resync_request("maestro", "c1", &list)).await.expect("publish");
    let ev = h.wait_event_after(mark, |e| e.ty().ends_with("status.resync_response")).await;
    assert_eq!(decode(&ev).resource_id, "w2");
    // empty list ⇒ every work
    let mark = h.rec.count();
    h.source
        .publish(&status_resync_request("maestro", "c1", &StatusHashList::default()))
        .await
        .expect("publish");
    h.wait_until_events(mark, |evs| {
        evs.iter().filter(|e| e.ty().ends_with("status.resync_response")).count() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let responses =
        h.rec.since(mark).into_iter().filter(|e| e.ty().ends_with("status.resync_response")).count();
    assert_eq!(responses, 2, "w1 was not resent by the first request");
    h.stop().await;
}

#[tokio::test]
async fn status_published_after_outage() {
    let h = Harness::start("c1").await;
    h.publish_spec("w1", 1, cm_bundle("a")).await;
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    // a status change while the broker is down is delivered after it comes back
    let mark = h.rec.count();
    h.broker.interrupt();
    // remove the object behind the agent's back: Available flips to False
    delete_behind_back(&h, "a").await;
    h.handle.sync_now();
    wait_until(|| h.handle.work("w1").is_some_and(|w| w.status.is_some_and(|s| !s.is_true("Available"))))
        .await;
    assert_eq!(h.rec.count(), mark, "nothing can be published while interrupted");
    h.broker.resume();
    let ev = h.wait_status("w1", |s| s.condition("Available").is_some_and(|c| c.status == "False")).await;
    let c = decode(&ev).status.condition("Available").cloned().expect("Available");
    assert_eq!(
        (c.reason.as_str(), c.message.as_str()),
        ("ResourcesNotAvailable", "1 of 1 resources are not available")
    );
    h.stop().await;
}

#[tokio::test]
async fn published_events_carry_increasing_sequence_ids() {
    let h = Harness::start("c1").await;
    h.publish_spec("w1", 1, cm_bundle("a")).await;
    h.publish_spec("w1", 2, cm_bundle("b")).await;
    h.wait_event(|e| {
        is_status_for(e, "w1") && decode(e).resource_version == 2 && decode(e).status.is_true("Applied")
    })
    .await;
    let ids: Vec<String> =
        h.rec.since(0).iter().filter(|e| is_status_for(e, "w1")).map(|e| decode(e).sequence_id).collect();
    for pair in ids.windows(2) {
        assert!(maestro_api::snowflake::is_newer(&pair[1], Some(&pair[0])).expect("node 1"));
    }
    h.stop().await;
}

/// Through a transport's in-order delivery: a spec from an unknown source is dropped (not
/// retried, not blocking) and the next spec from the accepted source is applied.
#[tokio::test]
async fn unknown_source_does_not_block_the_next_spec() {
    let h = Harness::start("c1").await;
    let rogue = SpecEventBuilder::new("rogue", "w1", 1, "c1").bundle_json(cm_bundle("evil")).build();
    h.source.publish(&rogue).await.expect("publish rogue");
    h.publish_spec("w2", 1, cm_bundle("good")).await;
    let ev = h.wait_status("w2", |s| s.is_true("Applied")).await;
    assert_eq!(decode(&ev).original_source, "maestro");
    assert!(h.handle.work("w1").is_none(), "the rogue spec was not stored");
    assert_eq!(h.cluster.len(), 1, "only the legitimate ConfigMap exists");
    assert!(!h.rec.since(0).iter().any(|e| is_status_for(e, "w1")), "no status for the rogue work");
    h.stop().await;
}

#[path = "agent/condition_rules.rs"]
mod condition_rules;
#[path = "agent/deletion_and_ssa.rs"]
mod deletion_and_ssa;
#[path = "agent/eviction.rs"]
mod eviction;
#[path = "agent/executor.rs"]
mod executor;
#[path = "agent/intake.rs"]
mod intake;
#[cfg(feature = "kube")]
#[path = "agent/kube.rs"]
mod kube;
#[cfg(feature = "kube")]
#[path = "agent/kube_fixtures.rs"]
mod kube_fixtures;
#[path = "agent/strategies.rs"]
mod strategies;
#[path = "agent/watch_feedback.rs"]
mod watch_feedback;
#[path = "agent/wipe_guard.rs"]
mod wipe_guard;
