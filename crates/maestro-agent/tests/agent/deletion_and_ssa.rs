//! The `Deleting` condition before `Deleted` (docs/protocol.md §6.3), manifests that are
//! `Complete` not being updated, and server-side apply `ignoreFields` with the spec-hash skip
//! (§8.2), end to end on the simulated cluster. Golden condition shapes are OCM's work agent's.

use std::time::Duration;

use maestro_agent::ObjectKey;
use maestro_api::payload::{Condition, ManifestBundleStatus};
use serde_json::{Value, json};

use crate::common::*;

const HASH_ANNOTATION: &str = "open-cluster-management.io/config-spec-hash";

/// A condition as JSON without its `lastTransitionTime`, which is checked to be RFC 3339.
fn shape(c: &Condition) -> Value {
    let mut v = serde_json::to_value(c).expect("condition json");
    let t = v.as_object_mut().and_then(|m| m.remove("lastTransitionTime")).expect("lastTransitionTime");
    let t = t.as_str().expect("string");
    assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
    v
}

fn has(s: &ManifestBundleStatus, kind: &str) -> bool {
    s.condition(kind).is_some_and(|c| c.status == "True")
}

/// The manifest `i`'s condition `kind`.
fn mcond<'a>(s: &'a ManifestBundleStatus, i: usize, kind: &str) -> Option<&'a Condition> {
    s.resource_status.get(i)?.conditions.iter().find(|c| c.kind == kind)
}

/// The status events of `id` published after `mark`, in order.
fn statuses_after(h: &Harness, mark: usize, id: &str) -> Vec<ManifestBundleStatus> {
    h.rec.since(mark).iter().filter(|e| is_status_for(e, id)).map(|e| decode(e).status).collect()
}

fn config(resource: &str, name: &str, extra: Value) -> Value {
    let group = if resource == "deployments" {
        "apps"
    } else if resource == "jobs" {
        "batch"
    } else {
        ""
    };
    let mut c =
        json!({"resourceIdentifier":{"group":group,"resource":resource,"name":name,"namespace":"default"}});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

fn ssa(ignore_fields: Value) -> Value {
    json!({"updateStrategy":{"type":"ServerSideApply","serverSideApply":{"force":true,"ignoreFields":ignore_fields}}})
}

fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":"default"},"data":data})
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},
           "spec":{"replicas":replicas,"selector":{"matchLabels":{"app":"web"}},
                   "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":image}]}}}})
}

fn job(image: &str) -> Value {
    json!({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"once","namespace":"default"},
           "spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":image}]}}}})
}

fn live(h: &Harness, api_version: &str, kind: &str, name: &str) -> Value {
    h.cluster.object(api_version, kind, "default", name).unwrap_or_else(|| panic!("{kind} {name} exists"))
}

fn hash_of(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(HASH_ANNOTATION))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Publishes `bundle` at `version` and returns the first status of that version that is applied.
async fn apply_version(h: &Harness, id: &str, version: i64, bundle: Value) -> ManifestBundleStatus {
    let mark = h.rec.count();
    h.publish_spec(id, version, bundle).await;
    let ev = h
        .wait_event_after(mark, |e| {
            is_status_for(e, id) && decode(e).resource_version == version && has(&decode(e).status, "Applied")
        })
        .await;
    decode(&ev).status
}

/// OCM's finalizer sets `Deleting` (reason `WorkDeleting`) and publishes it before it deletes
/// anything; `Deleted` follows once the resources are gone, and still carries `Deleting`.
#[tokio::test]
async fn deleting_is_published_before_anything_is_deleted() {
    let h = Harness::start("c1").await;
    h.publish_spec("w1", 1, cm_bundle("a")).await;
    h.wait_status("w1", |s| has(s, "Applied")).await;
    let mark = h.rec.count();
    h.publish_delete("w1", 1).await;
    // The delete is queued for the agent; nothing ran yet (current-thread runtime): from now on
    // no status can be published.
    h.broker.interrupt();
    wait_until(|| h.handle.work("w1").and_then(|w| w.status).is_some_and(|s| has(&s, "Deleting"))).await;
    // Retries run every 20–200 ms here: none may delete while `Deleting` is unpublished.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        h.cluster.object("v1", "ConfigMap", "default", "a").is_some(),
        "deleted before Deleting went out"
    );
    assert!(statuses_after(&h, mark, "w1").is_empty());
    h.broker.resume();
    h.wait_status("w1", |s| has(s, "Deleted")).await;
    assert!(h.cluster.is_empty());
    let statuses = statuses_after(&h, mark, "w1");
    let first = statuses.first().expect("a status after the delete");
    assert!(has(first, "Deleting") && first.condition("Deleted").is_none(), "{first:?}");
    assert!(statuses.iter().all(|s| has(s, "Deleting")), "every status while deleting has Deleting");
    let last = statuses.last().expect("the Deleted status");
    // golden: ManifestWorkFinalizeController's condition, then sdk-go's ResourceDeleted
    assert_eq!(
        shape(last.condition("Deleting").expect("Deleting")),
        json!({"type":"Deleting","status":"True","observedGeneration":1,
               "reason":"WorkDeleting","message":"ManifestWork is being deleted"})
    );
    assert_eq!(
        shape(last.condition("Deleted").expect("Deleted")),
        json!({"type":"Deleted","status":"True","observedGeneration":1,
               "reason":"ManifestsDeleted","message":"The manifests are deleted from the cluster c1"})
    );
    assert_eq!(
        last.condition("Deleting").map(|c| &c.last_transition_time),
        first.condition("Deleting").map(|c| &c.last_transition_time),
        "Deleting does not flip"
    );
    assert!(has(last, "Applied"), "the conditions from before the deletion are kept");
    wait_until(|| h.handle.work("w1").is_none()).await;
    h.stop().await;
}

/// A work the agent never applied (no AppliedManifestWork in OCM) goes straight to `Deleted`.
#[tokio::test]
async fn unknown_work_is_deleted_without_deleting() {
    let h = Harness::start("c1").await;
    h.publish_delete("ghost", 3).await;
    let ev = h.wait_status("ghost", |s| has(s, "Deleted")).await;
    let kinds: Vec<String> = decode(&ev).status.conditions.iter().map(|c| c.kind.clone()).collect();
    assert_eq!(kinds, ["Deleted"]);
    assert_eq!(statuses_after(&h, 0, "ghost").len(), 1);
    h.stop().await;
}

/// OCM's applyOneManifest: a manifest whose previous status has `Complete`=True is not written
/// again; its `Applied` condition is the plain success one, and it stays tracked for deletion.
#[tokio::test]
async fn complete_manifest_is_not_updated() {
    let h = Harness::start("c1").await;
    let rules = json!({"conditionRules":[{"type":"WellKnownConditions","condition":"Complete"}]});
    let bundle = |image: &str, mode: &str| {
        json!({"manifests":[job(image), cm("settings", json!({"mode":mode}))],
               "manifestConfigs":[config("jobs", "once", rules.clone())]})
    };
    h.publish_spec("w1", 1, bundle("busybox:1", "a")).await;
    h.wait_status("w1", |s| has(s, "Complete") && has(s, "Applied")).await;
    let st = apply_version(&h, "w1", 2, bundle("busybox:2", "b")).await;
    let image =
        live(&h, "batch/v1", "Job", "once").pointer("/spec/template/spec/containers/0/image").cloned();
    assert_eq!(image, Some(json!("busybox:1")), "the Complete Job was updated");
    assert_eq!(live(&h, "v1", "ConfigMap", "settings")["data"]["mode"], "b", "others are still applied");
    // golden: buildAppliedStatusCondition without error
    assert_eq!(
        shape(mcond(&st, 0, "Applied").expect("Applied")),
        json!({"type":"Applied","status":"True","observedGeneration":2,
               "reason":"AppliedManifestComplete","message":"Apply manifest complete"})
    );
    assert_eq!(h.handle.work("w1").map(|w| w.applied.len()), Some(2), "the Job stays tracked");
    h.publish_delete("w1", 2).await;
    h.wait_status("w1", |s| has(s, "Deleted")).await;
    assert!(h.cluster.is_empty(), "the Complete Job is deleted with the work");
    h.stop().await;
}

/// `OnSpokePresent`: the fields are applied when the object is created, and left out of every
/// later apply, so the cluster's values stay.
#[tokio::test]
async fn ignore_fields_on_spoke_present_keeps_the_cluster_value() {
    let h = Harness::start("c1").await;
    let ignore = json!([{"condition":"OnSpokePresent","jsonPaths":[".spec.replicas"]}]);
    let bundle = |replicas: i64, image: &str| {
        json!({"manifests":[deployment(replicas, image)],
               "manifestConfigs":[config("deployments", "web", ssa(ignore.clone()))]})
    };
    h.publish_spec("w1", 1, bundle(2, "nginx:1")).await;
    h.wait_status("w1", |s| has(s, "Applied")).await;
    let created = live(&h, "apps/v1", "Deployment", "web");
    assert_eq!(created["spec"]["replicas"], 2, "created with the ignored field");
    let h1 = hash_of(&created).expect("spec hash annotation");
    assert!(h1.len() == 32 && h1.chars().all(|c| c.is_ascii_hexdigit()), "{h1}");
    let key = ObjectKey::new("apps/v1", "Deployment", "default", "web");
    assert!(h.cluster.modify(&key, |o| o["spec"]["replicas"] = json!(5)));

    let st = apply_version(&h, "w1", 2, bundle(3, "nginx:2")).await;
    let d = live(&h, "apps/v1", "Deployment", "web");
    assert_eq!(d["spec"]["replicas"], 5, "the cluster's replicas were overwritten");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:2");
    let h2 = hash_of(&d).expect("hash");
    assert_ne!(h1, h2);
    assert_eq!(mcond(&st, 0, "Applied").map(|c| c.reason.as_str()), Some("AppliedManifestComplete"));
    // only the ignored field changes: same hash
    apply_version(&h, "w1", 3, bundle(4, "nginx:2")).await;
    let d = live(&h, "apps/v1", "Deployment", "web");
    assert_eq!((d["spec"]["replicas"].clone(), hash_of(&d)), (json!(5), Some(h2)));
    h.stop().await;
}

/// `OnSpokeChange`: the fields stay in the manifest, but an object whose spec hash matches is
/// not applied again, so changes made on the cluster stay until the manifest changes.
#[tokio::test]
async fn ignore_fields_on_spoke_change_skips_unchanged_manifests() {
    let h = Harness::start("c1").await;
    let ignore = json!([{"condition":"OnSpokeChange","jsonPaths":[".data.mode"]}]);
    let bundle = |other: &str| {
        json!({"manifests":[cm("tuned", json!({"mode":"ours","other":other})), cm("plain", json!({"mode":"ours"}))],
               "manifestConfigs":[config("configmaps", "tuned", ssa(ignore.clone())),
                                  config("configmaps", "plain", ssa(json!([])))]})
    };
    h.publish_spec("w1", 1, bundle("x")).await;
    h.wait_status("w1", |s| has(s, "Applied")).await;
    assert!(hash_of(&live(&h, "v1", "ConfigMap", "tuned")).is_some());
    assert!(hash_of(&live(&h, "v1", "ConfigMap", "plain")).is_none(), "no ignoreFields, no hash");
    for name in ["tuned", "plain"] {
        let key = ObjectKey::new("v1", "ConfigMap", "default", name);
        assert!(h.cluster.modify(&key, |o| o["data"]["mode"] = json!("theirs")));
    }
    // the same manifests again: only the one without ignoreFields is corrected
    apply_version(&h, "w1", 2, bundle("x")).await;
    assert_eq!(live(&h, "v1", "ConfigMap", "plain")["data"]["mode"], "ours");
    let tuned = live(&h, "v1", "ConfigMap", "tuned");
    assert_eq!(tuned["data"]["mode"], "theirs", "an unchanged manifest was applied again");
    assert_eq!(tuned["metadata"]["ownerReferences"][0]["kind"], "AppliedManifestWork");
    // a changed manifest is applied whole, the OnSpokeChange field included
    apply_version(&h, "w1", 3, bundle("y")).await;
    let tuned = live(&h, "v1", "ConfigMap", "tuned");
    assert_eq!(tuned["data"], json!({"mode":"ours","other":"y"}));
    h.stop().await;
}

/// An entry that is not an `IgnoreField` fails the manifest with OCM's ignoreFields reason; a
/// JSONPath that does not parse is skipped, as the Go agent only logs it.
#[tokio::test]
async fn ignore_fields_errors() {
    let h = Harness::start("c1").await;
    let bundle = json!({"manifests":[cm("bad", json!({"a":"1"})), cm("badpath", json!({"a":"1"}))],
        "manifestConfigs":[
            config("configmaps", "bad", ssa(json!([{"condition":"OnSpokePresent","jsonPaths":".data.a"}]))),
            config("configmaps", "badpath", ssa(json!([{"condition":"OnSpokePresent","jsonPaths":[".data[?(", "data.a"]}])))]});
    h.publish_spec("w1", 1, bundle).await;
    let ev = h.wait_status("w1", |s| s.condition("Applied").is_some_and(|c| c.status == "False")).await;
    let st = decode(&ev).status;
    // golden: buildAppliedStatusCondition with an IgnoreFieldError
    assert_eq!(
        shape(mcond(&st, 0, "Applied").expect("Applied")),
        json!({"type":"Applied","status":"False","observedGeneration":1,
               "reason":"AppliedManifestSSAIgnoreFieldError",
               "message":"Failed to process ignoreFields: ignoreFields[0]: jsonPaths is not a list of strings"})
    );
    assert_eq!(mcond(&st, 1, "Applied").map(|c| c.status.as_str()), Some("True"));
    assert_eq!(st.condition("Applied").map(|c| c.reason.as_str()), Some("AppliedManifestWorkFailed"));
    assert!(h.cluster.object("v1", "ConfigMap", "default", "bad").is_none());
    assert_eq!(live(&h, "v1", "ConfigMap", "badpath")["data"], json!({"a":"1"}));
    h.stop().await;
}
