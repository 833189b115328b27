//! Condition rules (`manifestConfigs[].conditionRules`, docs/protocol.md §8.4) end to end: the
//! simulated cluster's objects are changed behind the agent's back and a status sync reads them.

use std::time::Duration;

use maestro_agent::ObjectKey;
use maestro_api::payload::{Condition, ManifestBundleStatus};
use serde_json::{Value, json};

use crate::common::*;

fn job(name: &str) -> Value {
    json!({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":name,"namespace":"default"},
           "spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox"}]}}}})
}

fn cm(name: &str, mode: &str) -> Value {
    json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":"default"},"data":{"mode":mode}})
}

fn config(group: &str, resource: &str, name: &str, rules: Value) -> Value {
    json!({"resourceIdentifier":{"group":group,"resource":resource,"name":name,"namespace":"default"},
           "conditionRules":rules})
}

fn well_known_complete() -> Value {
    json!([{"type":"WellKnownConditions","condition":"Complete"}])
}

/// The manifest `i`'s condition `kind`.
fn mcond<'a>(s: &'a ManifestBundleStatus, i: usize, kind: &str) -> Option<&'a Condition> {
    s.resource_status.get(i)?.conditions.iter().find(|c| c.kind == kind)
}

fn has(s: &ManifestBundleStatus, i: usize, kind: &str, status: &str) -> bool {
    mcond(s, i, kind).is_some_and(|c| c.status == status)
}

/// A condition as JSON without its `lastTransitionTime`, which is checked to be RFC 3339.
fn shape(c: &Condition) -> Value {
    let mut v = serde_json::to_value(c).expect("condition json");
    let t = v.as_object_mut().and_then(|m| m.remove("lastTransitionTime")).expect("lastTransitionTime");
    let t = t.as_str().expect("string");
    assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
    v
}

/// Sets a Job's status on the simulated cluster.
fn set_job_status(h: &Harness, name: &str, status: Value) {
    let key = ObjectKey::new("batch/v1", "Job", "default", name);
    assert!(h.cluster.modify(&key, |o| o["status"] = status));
}

/// Syncs and waits for a status of `id`, published after `mark`, that satisfies `pred`.
async fn sync_until(
    h: &Harness,
    id: &str,
    pred: impl Fn(&ManifestBundleStatus) -> bool,
) -> ManifestBundleStatus {
    let mark = h.rec.count();
    h.handle.sync_now();
    decode(&h.wait_event_after(mark, |e| is_status_for(e, id) && pred(&decode(e).status)).await).status
}

#[tokio::test]
async fn well_known_job_complete_then_running_then_failed() {
    let h = Harness::start("c1").await;
    let bundle = json!({"manifests":[job("migrate")],
        "manifestConfigs":[config("batch", "jobs", "migrate", well_known_complete())]});
    h.publish_spec("w1", 1, bundle).await;
    // the simulated cluster completes Jobs at once
    let ev = h.wait_status("w1", |s| has(s, 0, "Complete", "True") && s.is_true("Complete")).await;
    let st = decode(&ev).status;
    let kinds: Vec<&str> = st.resource_status[0].conditions.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["Applied", "Available", "StatusFeedbackSynced", "Complete"]);
    // golden: the shape OCM's work agent produces (reader_test.go "Job complete", the work-level
    // roll-up of one manifest keeps its message)
    assert_eq!(
        shape(mcond(&st, 0, "Complete").expect("manifest Complete")),
        json!({"type":"Complete","status":"True","observedGeneration":1,
               "reason":"ConditionRuleEvaluated","message":"Job is finished"})
    );
    assert_eq!(
        shape(st.condition("Complete").expect("work Complete")),
        json!({"type":"Complete","status":"True","observedGeneration":1,
               "reason":"ConditionRulesAggregated","message":"Job is finished"})
    );
    assert!(st.is_true("Applied") && st.is_true("Available"));
    // nothing changed: a sync publishes nothing (rule conditions keep their transition time)
    let before = h.rec.count();
    h.handle.sync_now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.rec.count(), before, "unchanged status must not be republished");

    set_job_status(&h, "migrate", json!({"active":1}));
    let st = sync_until(&h, "w1", |s| has(s, 0, "Complete", "False")).await;
    let c = mcond(&st, 0, "Complete").expect("Complete");
    assert_eq!((c.reason.as_str(), c.message.as_str()), ("ConditionRuleEvaluated", "Job is not finished"));
    let w = st.condition("Complete").expect("work Complete");
    assert_eq!((w.status.as_str(), w.message.as_str()), ("False", "Job is not finished"));

    set_job_status(&h, "migrate", json!({"failed":1,"conditions":[{"type":"Failed","status":"True"}]}));
    let st = sync_until(&h, "w1", |s| has(s, 0, "Complete", "True")).await;
    assert_eq!(mcond(&st, 0, "Complete").map(|c| c.message.as_str()), Some("Job is finished"));
    assert!(st.is_true("Complete"));
    h.stop().await;
}

#[tokio::test]
async fn cel_rules_with_message_expression() {
    let h = Harness::start("c1").await;
    let rules = json!([
        {"type":"CEL","condition":"Enabled","celExpressions":["has(object.data.mode)","object.data.mode == 'on'"],
         "messageExpression":"result ? 'mode is ' + object.data.mode : object.metadata.name + ' is off'"},
        {"type":"CEL","condition":"Labelled","celExpressions":["has(object.metadata.labels)"]}
    ]);
    let bundle = json!({"manifests":[cm("on", "on"), cm("off", "off")],
        "manifestConfigs":[config("", "configmaps", "*", rules)]});
    h.publish_spec("w1", 1, bundle).await;
    let ev = h.wait_status("w1", |s| has(s, 0, "Enabled", "True") && has(s, 1, "Enabled", "False")).await;
    let st = decode(&ev).status;
    assert_eq!(
        shape(mcond(&st, 0, "Enabled").expect("Enabled")),
        json!({"type":"Enabled","status":"True","observedGeneration":1,
               "reason":"ConditionRuleEvaluated","message":"mode is on"})
    );
    assert_eq!(mcond(&st, 1, "Enabled").map(|c| c.message.as_str()), Some("off is off"));
    // no message, no messageExpression: OCM's default message
    let labelled = mcond(&st, 0, "Labelled").expect("Labelled");
    assert_eq!((labelled.status.as_str(), labelled.message.as_str()), ("False", "Manifest is not Labelled"));
    // work level: False wins; two manifests ⇒ the generic message
    assert_eq!(
        shape(st.condition("Enabled").expect("work Enabled")),
        json!({"type":"Enabled","status":"False","observedGeneration":1,
               "reason":"ConditionRulesAggregated","message":"Aggregated from 2 manifest conditions"})
    );
    h.stop().await;
}

#[tokio::test]
async fn bad_rules_become_conditions_and_the_agent_keeps_working() {
    let h = Harness::start("c1").await;
    let bad = json!([
        {"type":"CEL","condition":"Syntax","celExpressions":["object.("]},
        {"type":"CEL","condition":"Missing","celExpressions":["object.status.nothing == 1"]},
        {"type":"CEL","condition":"NotBool","celExpressions":["object.data.mode"]},
        {"type":"Magic","condition":"Magic"},
        42
    ]);
    let good = json!([{"type":"CEL","condition":"Enabled","celExpressions":["object.data.mode == 'on'"]}]);
    let bundle = json!({"manifests":[cm("bad", "on"), cm("good", "on")],
        "manifestConfigs":[config("", "configmaps", "bad", bad), config("", "configmaps", "good", good)]});
    h.publish_spec("w1", 1, bundle).await;
    let ev = h.wait_status("w1", |s| s.is_true("Applied") && has(s, 1, "Enabled", "True")).await;
    let st = decode(&ev).status;
    let c = |kind: &str| mcond(&st, 0, kind).cloned().expect(kind);
    let syntax = c("Syntax");
    assert_eq!((syntax.status.as_str(), syntax.reason.as_str()), ("False", "ConditionRuleExpressionError"));
    assert!(syntax.message.starts_with("ERROR: <input>:1:"), "{}", syntax.message);
    assert_eq!(c("Missing").message, "no such key: status");
    assert_eq!(
        (c("NotBool").reason, c("NotBool").message),
        ("ConditionRuleExpressionError".into(), "expected bool result, got string".into())
    );
    assert_eq!(
        shape(&c("Magic")),
        json!({"type":"Magic","status":"Unknown","observedGeneration":1,
               "reason":"ConditionRuleInvalid","message":"unrecognized condition rule type Magic"})
    );
    let invalid = c("InvalidConditionRule");
    assert_eq!((invalid.status.as_str(), invalid.reason.as_str()), ("Unknown", "ConditionRuleInvalid"));
    assert_eq!(
        invalid.message,
        "conditionRules[4]: invalid condition rule: a condition rule must be an object"
    );
    // the manifest itself is fine, and so is the other one and the work
    assert!(has(&st, 0, "Applied", "True") && has(&st, 0, "Available", "True"));
    assert!(st.is_true("Applied") && st.is_true("Available"));
    assert_eq!(st.condition("Syntax").map(|c| c.status.as_str()), Some("False"));
    assert!(h.cluster.object("v1", "ConfigMap", "default", "bad").is_some());
    // the agent goes on with other works
    h.publish_spec("w2", 1, cm_bundle("after")).await;
    h.wait_status("w2", |s| s.is_true("Applied")).await;
    h.stop().await;
}

#[tokio::test]
async fn work_roll_up_and_rules_removed_by_a_new_generation() {
    let h = Harness::start("c1").await;
    let progressing = json!({"type":"CEL","condition":"Progressing","celExpressions":["has(object.status.active) && object.status.active > 0"]});
    let rules = json!([{"type":"WellKnownConditions","condition":"Complete"}, progressing]);
    let bundle = json!({"manifests":[job("a"), job("b")],
        "manifestConfigs":[config("batch", "jobs", "*", rules)]});
    h.publish_spec("w1", 1, bundle.clone()).await;
    let ev = h.wait_status("w1", |s| s.is_true("Complete")).await;
    let st = decode(&ev).status;
    let work = st.condition("Complete").expect("Complete");
    assert_eq!(work.message, "Aggregated from 2 manifest conditions");
    assert_eq!(st.condition("Progressing").map(|c| c.status.as_str()), Some("False"));
    // one Job runs again: Complete False (False wins), Progressing True (True wins)
    set_job_status(&h, "b", json!({"active":1}));
    let st = sync_until(&h, "w1", |s| s.condition("Complete").is_some_and(|c| c.status == "False")).await;
    assert_eq!(st.condition("Progressing").map(|c| c.status.as_str()), Some("True"));
    assert_eq!(st.condition("Progressing").map(|c| c.reason.as_str()), Some("ConditionRulesAggregated"));
    // generation 2 drops the rules: their conditions go from the manifests and the work
    let mut v2 = bundle;
    v2["manifestConfigs"] = json!([]);
    h.publish_spec("w1", 2, v2).await;
    let ev = h.wait_event(|e| is_status_for(e, "w1") && decode(e).resource_version == 2).await;
    let st = decode(&ev).status;
    assert!(st.condition("Complete").is_none() && st.condition("Progressing").is_none());
    assert!(st.resource_status.iter().all(|m| m.conditions.len() == 3), "{:?}", st.resource_status);
    assert!(st.is_true("Applied"));
    h.stop().await;
}

/// OCM keeps the rule conditions of a manifest whose object cannot be read: a finished Job that
/// its TTL removed stays `Complete`.
#[tokio::test]
async fn rule_conditions_kept_while_the_object_is_gone() {
    let h = Harness::start("c1").await;
    let bundle = json!({"manifests":[job("once")],
        "manifestConfigs":[config("batch", "jobs", "once", well_known_complete())]});
    h.publish_spec("w1", 1, bundle).await;
    h.wait_status("w1", |s| s.is_true("Complete")).await;
    let mapping = maestro_agent::Cluster::resolve(&*h.cluster, "batch/v1", "Job").await.expect("mapping");
    let oref = maestro_agent::ObjectRef { mapping, namespace: "default".into(), name: "once".into() };
    assert!(maestro_agent::Cluster::delete(&*h.cluster, &oref, None).await.expect("delete"));
    let st = sync_until(&h, "w1", |s| has(s, 0, "Available", "False")).await;
    assert!(has(&st, 0, "Complete", "True"), "{:?}", st.resource_status[0].conditions);
    assert!(st.is_true("Complete"));
    h.stop().await;
}
