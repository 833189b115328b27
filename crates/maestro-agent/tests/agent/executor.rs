//! The work's executor (docs/protocol.md §8.6) on the simulated cluster with RBAC-like rules
//! (`SimulatedCluster::restrict_access`): a manifest its executor may not write is not applied
//! and reported with the OCM work agent's messages; RBAC objects need the escalate/bind right.

use maestro_agent::AccessRule;
use maestro_api::payload::ManifestBundleStatus;
use serde_json::{Value, json};

use crate::common::*;

const SA: &str = "system:serviceaccount:ns:deployer";

fn cm(namespace: &str, name: &str) -> Value {
    json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":namespace},"data":{"a":"1"}})
}

fn executor() -> Value {
    json!({"subject":{"type":"ServiceAccount","serviceAccount":{"namespace":"ns","name":"deployer"}}})
}

/// `verbs` on `resource` of `group` in `namespace` for the executor.
fn allow(verbs: &[&str], group: &str, resource: &str, namespace: &str) -> Vec<AccessRule> {
    verbs.iter().map(|v| AccessRule::new(SA, v, group, resource, namespace)).collect()
}

const WRITE: [&str; 5] = ["create", "update", "patch", "get", "delete"];

/// The `Applied` condition message of manifest `i`.
fn applied_message(st: &ManifestBundleStatus, i: usize) -> String {
    let c = st.resource_status[i].conditions.iter().find(|c| c.kind == "Applied").expect("Applied");
    format!("{} {} {}", c.status, c.reason, c.message)
}

fn failed(st: &ManifestBundleStatus) -> bool {
    st.condition("Applied").is_some_and(|c| c.status == "False")
}

/// Without rules for a namespace the executor may not write there: that manifest is refused
/// with OCM's message and retried later, the others are applied; granting the right and
/// publishing a new version applies it.
#[tokio::test]
async fn refused_manifest_is_reported_and_not_written() {
    let h = Harness::start("c1").await;
    h.cluster.restrict_access(allow(&WRITE, "", "configmaps", "default"));
    let bundle = json!({"manifests": [cm("default", "a"), cm("other", "b")], "executer": executor()});
    h.publish_spec("w1", 1, bundle.clone()).await;
    let st = decode(&h.wait_status("w1", failed).await).status;
    assert_eq!(applied_message(&st, 0), "True AppliedManifestComplete Apply manifest complete");
    assert_eq!(
        applied_message(&st, 1),
        "False AppliedManifestFailed Failed to apply manifest: \
         not allowed to apply the resource  configmaps, other b, will try again in 1m0s"
    );
    assert!(h.cluster.object("v1", "ConfigMap", "default", "a").is_some());
    assert!(h.cluster.object("v1", "ConfigMap", "other", "b").is_none(), "refused object not written");

    let mut rules = allow(&WRITE, "", "configmaps", "default");
    rules.extend(allow(&WRITE, "", "configmaps", "other"));
    h.cluster.restrict_access(rules);
    h.publish_spec("w1", 2, bundle).await;
    h.wait_event(|e| {
        is_status_for(e, "w1") && decode(e).resource_version == 2 && decode(e).status.is_true("Applied")
    })
    .await;
    assert!(h.cluster.object("v1", "ConfigMap", "other", "b").is_some());
    h.stop().await;
}

/// An object the work owns needs `delete` too (so its later deletion cannot be refused); with
/// the `Orphan` propagation policy the work owns nothing and `delete` is not asked.
#[tokio::test]
async fn delete_right_is_needed_only_for_owned_objects() {
    let h = Harness::start("c1").await;
    h.cluster.restrict_access(allow(&["create", "update", "patch", "get"], "", "configmaps", "default"));
    h.publish_spec("w1", 1, json!({"manifests": [cm("default", "a")], "executer": executor()})).await;
    let st = decode(&h.wait_status("w1", failed).await).status;
    assert!(applied_message(&st, 0).contains("not allowed to apply the resource  configmaps, default a"));
    assert!(h.cluster.object("v1", "ConfigMap", "default", "a").is_none());

    let orphan = json!({"manifests": [cm("default", "b")], "executer": executor(),
        "deleteOption": {"propagationPolicy": "Orphan"}});
    h.publish_spec("w2", 1, orphan).await;
    h.wait_status("w2", |s| s.is_true("Applied")).await;
    assert!(h.cluster.object("v1", "ConfigMap", "default", "b").is_some());
    h.stop().await;
}

/// A Role the executor may create but not `escalate` is refused as a permission escalation
/// (found by the impersonated dry run); with `escalate` it is applied.
#[tokio::test]
async fn rbac_objects_need_the_escalate_right() {
    let h = Harness::start("c1").await;
    let rbac = "rbac.authorization.k8s.io";
    h.cluster.restrict_access(allow(&WRITE, rbac, "roles", "default"));
    let role = json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role",
        "metadata":{"name":"reader","namespace":"default"},
        "rules":[{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]}]});
    let bundle = json!({"manifests": [role], "executer": executor()});
    h.publish_spec("w1", 1, bundle.clone()).await;
    let st = decode(&h.wait_status("w1", failed).await).status;
    assert_eq!(
        applied_message(&st, 0),
        "False AppliedManifestFailed Failed to apply manifest: not allowed to apply the resource \
         rbac.authorization.k8s.io roles, default reader, error: permission escalation, will try again in 1m0s"
    );
    assert!(h.cluster.object("rbac.authorization.k8s.io/v1", "Role", "default", "reader").is_none());

    let mut rules = allow(&WRITE, rbac, "roles", "default");
    rules.extend(allow(&["escalate"], rbac, "roles", "default"));
    h.cluster.restrict_access(rules);
    h.publish_spec("w1", 2, bundle).await;
    h.wait_event(|e| {
        is_status_for(e, "w1") && decode(e).resource_version == 2 && decode(e).status.is_true("Applied")
    })
    .await;
    assert!(h.cluster.object("rbac.authorization.k8s.io/v1", "Role", "default", "reader").is_some());
    h.stop().await;
}

/// Only a ServiceAccount subject with a ServiceAccount is an executor (OCM's messages); a work
/// without an executor is applied with the agent's own rights even when the cluster
/// restricts everyone else.
#[tokio::test]
async fn malformed_executors_are_reported_and_no_executor_is_unchecked() {
    let h = Harness::start("c1").await;
    h.cluster.restrict_access(Vec::new());
    let user = json!({"subject":{"type":"User","user":{"name":"bob"}}});
    h.publish_spec("w1", 1, json!({"manifests": [cm("default", "a")], "executer": user})).await;
    let st = decode(&h.wait_status("w1", failed).await).status;
    assert!(applied_message(&st, 0).ends_with("only support ServiceAccount type for the executor"));
    let nil = json!({"subject":{"type":"ServiceAccount"}});
    h.publish_spec("w2", 1, json!({"manifests": [cm("default", "b")], "executer": nil})).await;
    let st = decode(&h.wait_status("w2", failed).await).status;
    assert!(applied_message(&st, 0).ends_with("the executor service account is nil"));
    assert!(h.cluster.object("v1", "ConfigMap", "default", "a").is_none());

    h.publish_spec("w3", 1, json!({"manifests": [cm("default", "c")]})).await;
    h.wait_status("w3", |s| s.is_true("Applied")).await;
    assert!(h.cluster.object("v1", "ConfigMap", "default", "c").is_some());
    h.stop().await;
}
