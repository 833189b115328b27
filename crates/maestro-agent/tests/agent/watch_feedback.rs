//! `feedbackScrapeType: Watch` on the simulated cluster (docs/protocol.md §8.5): the status of a
//! watched manifest follows its object at once, a polled one only at the status sync; one
//! watcher per kind however many works; deleted works and works no longer watching leave the
//! registry. The periodic status sync is one hour away in every test.

use std::time::Duration;

use maestro_agent::{AgentConfig, ObjectKey, WatchKey};
use maestro_api::payload::{FieldValue, ManifestBundleStatus};
use serde_json::{Value, json};

use crate::common::*;

/// An agent whose periodic status sync and re-apply never come during a test; one reconcile
/// worker, so queued works are handled in order.
async fn start() -> Harness {
    let mut config = AgentConfig::new("c1");
    config.status_sync_interval = Duration::from_secs(3600);
    config.resync_interval = None;
    config.workers = 1;
    Harness::start_with(config).await
}

/// A bundle of one Deployment `name` with `WellKnownStatus` feedback, scraped as `scrape`
/// (`None`: no `feedbackScrapeType`, i.e. `Poll`).
fn deployment_bundle(name: &str, scrape: Option<&str>) -> Value {
    let mut config = json!({
        "resourceIdentifier": {"group": "apps", "resource": "deployments", "name": name, "namespace": "default"},
        "feedbackRules": [{"type": "WellKnownStatus"}]
    });
    if let Some(s) = scrape {
        config["feedbackScrapeType"] = json!(s);
    }
    json!({
        "manifests": [{"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}],
        "manifestConfigs": [config]
    })
}

/// A bundle of ConfigMap `name` whose config says `scrape`.
fn cm_watch_bundle(name: &str, scrape: &str) -> Value {
    let mut b = cm_bundle(name);
    b["manifestConfigs"] = json!([{
        "resourceIdentifier": {"group": "", "resource": "configmaps", "name": name, "namespace": "default"},
        "feedbackScrapeType": scrape
    }]);
    b
}

fn ready_replicas(s: &ManifestBundleStatus) -> Option<i64> {
    let values = &s.resource_status.first()?.status_feedback.values;
    values.iter().find(|v| v.name == "ReadyReplicas").and_then(|v| match v.field_value {
        FieldValue::Integer { integer } => Some(integer),
        _ => None,
    })
}

fn stored_ready(h: &Harness, id: &str) -> Option<i64> {
    h.handle.work(id).and_then(|w| w.status).as_ref().and_then(ready_replicas)
}

fn set_ready(h: &Harness, name: &str, ready: i64) {
    let key = ObjectKey::new("apps/v1", "Deployment", "default", name);
    assert!(h.cluster.modify(&key, |o| o["status"]["readyReplicas"] = json!(ready)), "{name} exists");
}

fn cm_key(name: &str) -> WatchKey {
    WatchKey {
        group: "".into(),
        resource: "configmaps".into(),
        namespace: "default".into(),
        name: name.into(),
    }
}

#[tokio::test]
async fn watched_feedback_follows_the_object_and_polled_waits_for_the_sync() {
    let h = start().await;
    h.publish_spec("watched", 1, deployment_bundle("watched", Some("Watch"))).await;
    h.publish_spec("polled", 1, deployment_bundle("polled", Some("Poll"))).await;
    h.wait_status("watched", |s| ready_replicas(s) == Some(2)).await;
    h.wait_status("polled", |s| ready_replicas(s) == Some(2)).await;
    // Both objects are of one watched kind; only the watched one is registered.
    set_ready(&h, "polled", 0);
    set_ready(&h, "watched", 1);
    h.wait_status("watched", |s| ready_replicas(s) == Some(1)).await;
    // One worker takes queued works in order: had the change of `polled` queued its work (it
    // came first), that reconcile would be over by now.
    assert_eq!(stored_ready(&h, "polled"), Some(2), "a polled manifest waits for the status sync");
    set_ready(&h, "watched", 3);
    h.wait_status("watched", |s| ready_replicas(s) == Some(3)).await;
    assert_eq!(stored_ready(&h, "polled"), Some(2), "still waiting for the status sync");
    h.handle.sync_now();
    h.wait_status("polled", |s| ready_replicas(s) == Some(0)).await;
    // Conditions follow too: the watched object deleted behind the agent's back.
    let mark = h.rec.count();
    let key = ObjectKey::new("apps/v1", "Deployment", "default", "watched");
    let mapping = maestro_agent::cluster::known_mapping("apps/v1", "Deployment").expect("mapping");
    let oref = maestro_agent::ObjectRef { mapping, namespace: key.namespace, name: key.name };
    assert!(maestro_agent::Cluster::delete(&*h.cluster, &oref, None).await.expect("delete"));
    h.wait_event_after(mark, |e| {
        is_status_for(e, "watched")
            && decode(e).status.condition("Available").is_some_and(|c| c.status == "False")
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn one_watcher_per_kind_however_many_works() {
    let h = start().await;
    assert_eq!(h.cluster.watcher_count(), 0, "nothing watched before a work asks");
    for i in 0..5 {
        h.publish_spec(&format!("cm{i}"), 1, cm_watch_bundle(&format!("cm{i}"), "Watch")).await;
    }
    for i in 0..3 {
        let name = format!("dep{i}");
        h.publish_spec(&name, 1, deployment_bundle(&name, Some("Watch"))).await;
    }
    h.publish_spec(
        "svc",
        1,
        json!({"manifests": [{"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "svc", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}]}),
    )
    .await;
    for id in ["cm0", "cm1", "cm2", "cm3", "cm4", "dep0", "dep1", "dep2", "svc"] {
        h.wait_status(id, |s| s.is_true("Applied")).await;
    }
    wait_until(|| h.handle.watched().len() == 8).await;
    assert_eq!(h.cluster.watcher_count(), 2, "ConfigMaps and Deployments, none for the polled Service");
    let watched = h.handle.watched();
    assert_eq!(watched[0], (cm_key("cm0"), vec!["cm0".to_owned()]));
    // A work applied again (a new generation) asks again: still one watcher per kind.
    h.publish_spec("cm0", 2, cm_watch_bundle("cm0", "Watch")).await;
    h.wait_event(|e| is_status_for(e, "cm0") && decode(e).resource_version == 2).await;
    assert_eq!(h.cluster.watcher_count(), 2);
    let cluster = h.cluster.clone();
    h.stop().await;
    assert_eq!(cluster.watcher_count(), 0, "watchers end with their agent");
}

#[tokio::test]
async fn deleted_or_polling_works_leave_the_registry() {
    let h = start().await;
    let mut orphaning = cm_watch_bundle("a", "Watch");
    orphaning["deleteOption"] = json!({"propagationPolicy": "Orphan"});
    h.publish_spec("w1", 1, orphaning).await;
    h.publish_spec("w2", 1, cm_watch_bundle("b", "Watch")).await;
    h.wait_status("w1", |s| s.is_true("Applied")).await;
    h.wait_status("w2", |s| s.is_true("Applied")).await;
    wait_until(|| h.handle.watched().len() == 2).await;
    assert_eq!(
        h.handle.watched(),
        [(cm_key("a"), vec!["w1".to_owned()]), (cm_key("b"), vec!["w2".to_owned()])]
    );
    // w2 goes back to polling: its object is no longer watched.
    h.publish_spec("w2", 2, cm_watch_bundle("b", "Poll")).await;
    h.wait_event(|e| is_status_for(e, "w2") && decode(e).resource_version == 2).await;
    wait_until(|| h.handle.watched().len() == 1).await;
    // w1 deleted (its object orphaned, so it stays on the cluster): no work is queued for it.
    h.publish_delete("w1", 1).await;
    h.wait_status("w1", |s| s.is_true("Deleted")).await;
    assert!(h.handle.watched().is_empty(), "{:?}", h.handle.watched());
    wait_until(|| h.handle.work("w1").is_none()).await;
    assert!(h.cluster.object("v1", "ConfigMap", "default", "a").is_some(), "orphaned");
    let mark = h.rec.count();
    assert!(
        h.cluster.modify(&ObjectKey::new("v1", "ConfigMap", "default", "a"), |o| o["data"]["a"] = json!("2"))
    );
    // A later work's status is published; nothing was published for w1 meanwhile.
    h.publish_spec("w3", 1, cm_watch_bundle("c", "Watch")).await;
    h.wait_status("w3", |s| s.is_true("Applied")).await;
    assert!(!h.rec.since(mark).iter().any(|e| is_status_for(e, "w1")), "w1 is gone");
    assert!(h.handle.work("w1").is_none());
    h.stop().await;
}
