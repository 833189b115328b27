use super::*;

const WORK: &str = r#"
apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
metadata:
  name: web
  labels: {app: web}
  annotations: {note: "x"}
spec:
  workload:
    manifests:
      - apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: default}
        spec: {replicas: 1}
      - apiVersion: v1
        kind: ConfigMap
        metadata: {name: cfg, namespace: default}
  deleteOption:
    propagationPolicy: Orphan
  manifestConfigs:
    - resourceIdentifier: {group: apps, resource: deployments, name: web, namespace: default}
      feedbackRules:
        - type: JSONPaths
          jsonPaths: [{name: replicas, path: .status.replicas}]
  executor:
    subject: {type: ServiceAccount, serviceAccount: {namespace: default, name: sa}}
"#;

fn msg(r: Result<ManifestWorkInput>) -> String {
    r.expect_err("should fail").to_string()
}

#[test]
fn parses_a_manifestwork() {
    let w = parse("w.yaml", WORK, None).expect("parse");
    assert_eq!(w.name, "web");
    assert_eq!(w.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(w.bundle.manifests.len(), 2);
    assert!(w.bundle.delete_option.is_some());
    assert_eq!(w.bundle.manifest_configs.len(), 1);
    assert!(w.bundle.executor.is_some());
    let wire = serde_json::to_value(&w.bundle).expect("ser");
    assert!(wire.get("executer").is_some());
    let meta = w.metadata("c1", "rid");
    assert_eq!(meta.get("namespace"), Some(&json!("c1")));
    assert_eq!(meta.get("uid"), Some(&json!("rid")));
    // --name overrides
    assert_eq!(parse("w.yaml", WORK, Some("other")).expect("parse").name, "other");
}

#[test]
fn parses_multi_document_lists() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}\n---\n\
                apiVersion: v1\nkind: Secret\nmetadata: {name: b, namespace: default}\n---\n";
    let w = parse("m.yaml", text, Some("w1")).expect("parse");
    assert_eq!((w.name.as_str(), w.bundle.manifests.len()), ("w1", 2));
    let err = msg(parse("m.yaml", text, None));
    assert!(err.starts_with("m.yaml: missing work name"), "{err}");
}

#[test]
fn parses_json_and_yaml_lists_and_kind_list() {
    let json_list = r#"[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}},
                        {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}]"#;
    assert_eq!(parse("l.json", json_list, Some("w")).expect("json").bundle.manifests.len(), 2);
    let json_work = serde_json::to_string(&serde_json::json!({
        "apiVersion": MANIFESTWORK_API_VERSION, "kind": "ManifestWork", "metadata": {"name": "j"},
        "spec": {"workload": {"manifests": [{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}]}}
    }))
    .expect("json");
    assert_eq!(parse("w.json", &json_work, None).expect("json work").name, "j");
    let yaml_list = "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n";
    assert_eq!(parse("l.yaml", yaml_list, Some("w")).expect("yaml").bundle.manifests.len(), 1);
    let kind_list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n\
                     - apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n";
    assert_eq!(parse("k.yaml", kind_list, Some("w")).expect("list").bundle.manifests.len(), 2);
}

#[test]
fn invalid_yaml_reports_location() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: [unclosed\n";
    let err = msg(parse("bad.yaml", text, Some("w")));
    assert!(err.starts_with("bad.yaml: document 1: invalid YAML"), "{err}");
    assert!(err.contains("line"), "{err}");
    let second = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkey: : :\n  - x\n";
    let err = msg(parse("bad2.yaml", second, Some("w")));
    assert!(err.contains("document 2"), "{err}");
}

#[test]
fn empty_and_invalid_inputs() {
    assert!(msg(parse("e.yaml", "", Some("w"))).contains("no documents"));
    assert!(msg(parse("e.yaml", "---\n---\n", Some("w"))).contains("no documents"));
    assert!(msg(parse("e.yaml", "[]", Some("w"))).contains("list is empty"));
    let empty_work = "apiVersion: work.open-cluster-management.io/v1\nkind: ManifestWork\n\
                      metadata: {name: w}\nspec: {workload: {manifests: []}}\n";
    assert!(msg(parse("w.yaml", empty_work, None)).contains("manifests is empty"));
    let no_kind = "apiVersion: v1\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n";
    let err = msg(parse("n.yaml", no_kind, Some("w")));
    assert_eq!(err, "n.yaml: document 1: kind is required");
    let dup = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
    let err = msg(parse("d.yaml", dup, Some("w")));
    assert!(err.starts_with("d.yaml: document 2: duplicate"), "{err}");
    let err =
        msg(parse("x.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n", Some("Bad_Name")));
    assert!(err.contains("invalid work name"), "{err}");
}

#[test]
fn manifestwork_errors() {
    let mixed = format!("{WORK}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\n");
    assert!(msg(parse("m.yaml", &mixed, None)).contains("must be the only document"));
    let wrong_api = WORK.replace("work.open-cluster-management.io/v1", "v1");
    assert!(msg(parse("w.yaml", &wrong_api, None)).contains("apiVersion must be"));
    let no_name = WORK.replace("  name: web\n  labels", "  labels");
    assert!(msg(parse("w.yaml", &no_name, None)).contains("no metadata.name"));
    assert_eq!(parse("w.yaml", &no_name, Some("n")).expect("named").name, "n");
    let bad_manifest = WORK.replace("kind: ConfigMap", "kind: \"\"");
    let err = msg(parse("w.yaml", &bad_manifest, None));
    assert_eq!(err, "w.yaml: document 1: spec.workload.manifests[1]: kind is required");
}
