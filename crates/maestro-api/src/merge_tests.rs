use serde_json::json;

use super::*;

fn cm(name: &str, data: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": {"v": data}})
}

fn bundle(manifests: Vec<Value>) -> ManifestBundle {
    ManifestBundle { manifests, ..Default::default() }
}

fn names(b: &ManifestBundle) -> Vec<String> {
    b.manifests
        .iter()
        .map(|m| format!("{}={}", m["metadata"]["name"].as_str().unwrap_or(""), m["data"]["v"]))
        .collect()
}

#[test]
fn identity_and_key() {
    let d =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "a"}});
    let id = ManifestIdentity::of(&d).expect("identity");
    assert_eq!(id.key(), "apps/v1/Deployment/a/web");
    assert_eq!(id.to_string(), "Deployment a/web (apps/v1)");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}});
    assert_eq!(ManifestIdentity::of(&ns).expect("identity").to_string(), "Namespace a (v1)");
    assert_eq!(ManifestIdentity::of(&json!({"kind": "X"})), Err("no apiVersion".to_owned()));
}

#[test]
fn writers_add_replace_and_remove_only_their_own() {
    let empty = BTreeMap::new();
    let a = merge(&bundle(vec![]), &empty, &bundle(vec![cm("a1", "1")]), "a").expect("a");
    let b = merge(&a.bundle, &a.managers, &bundle(vec![cm("b1", "1"), cm("b2", "1")]), "b").expect("b");
    assert_eq!(names(&b.bundle), ["a1=\"1\"", "b1=\"1\"", "b2=\"1\""]);
    // a replaces a1 and adds a2; b's manifests stay.
    let a2 = merge(&b.bundle, &b.managers, &bundle(vec![cm("a2", "1"), cm("a1", "2")]), "a").expect("a2");
    assert_eq!(names(&a2.bundle), ["a1=\"2\"", "b1=\"1\"", "b2=\"1\"", "a2=\"1\""]);
    // b drops b1: only b1 goes.
    let b2 = merge(&a2.bundle, &a2.managers, &bundle(vec![cm("b2", "1")]), "b").expect("b2");
    assert_eq!(names(&b2.bundle), ["a1=\"2\"", "b2=\"1\"", "a2=\"1\""]);
    assert_eq!(b2.managers.values().filter(|m| *m == "a").count(), 2);
    assert_eq!(b2.managers.get("/v1/ConfigMap/ns/b1"), None);
}

#[test]
fn another_managers_manifest_is_not_taken_over() {
    let a = merge(&bundle(vec![]), &BTreeMap::new(), &bundle(vec![cm("x", "1")]), "a").expect("a");
    let err = merge(&a.bundle, &a.managers, &bundle(vec![cm("x", "2")]), "b").expect_err("owned");
    assert!(matches!(err, MergeError::OwnedByOther { ref owner, .. } if owner == "a"), "{err}");
    // An unmanaged manifest (from a plain apply) may be taken over.
    let plain = bundle(vec![cm("x", "1")]);
    let b = merge(&plain, &BTreeMap::new(), &bundle(vec![cm("x", "2")]), "b").expect("take over");
    assert_eq!(b.managers.get("/v1/ConfigMap/ns/x").map(String::as_str), Some("b"));
}

#[test]
fn bad_writer_input_is_refused() {
    let empty = BTreeMap::new();
    assert_eq!(merge(&bundle(vec![]), &empty, &bundle(vec![]), ""), Err(MergeError::EmptyManager));
    let dup = bundle(vec![cm("x", "1"), cm("x", "2")]);
    assert!(matches!(merge(&bundle(vec![]), &empty, &dup, "a"), Err(MergeError::Duplicate(_))));
    let anon = bundle(vec![json!({"kind": "ConfigMap"})]);
    assert!(matches!(
        merge(&bundle(vec![]), &empty, &anon, "a"),
        Err(MergeError::NoIdentity { index: 0, .. })
    ));
}

#[test]
fn managers_round_trip_through_metadata() {
    let mut meta = Map::new();
    meta.insert("annotations".into(), json!({"keep": "me"}));
    let m: BTreeMap<String, String> = [("k".to_owned(), "a".to_owned())].into();
    set_managers(&mut meta, &m);
    assert_eq!(managers(&meta), m);
    assert_eq!(meta["annotations"]["keep"], "me");
    set_managers(&mut meta, &BTreeMap::new());
    assert_eq!(meta["annotations"], json!({"keep": "me"}));
    let mut bare = Map::new();
    set_managers(&mut bare, &BTreeMap::new());
    assert!(bare.is_empty());
}

#[test]
fn overlay_replaces_by_identity_and_appends() {
    let current = bundle(vec![cm("a", "1"), cm("b", "1")]);
    let out = overlay(&current, &bundle(vec![cm("b", "2"), cm("c", "1")]));
    assert_eq!(names(&out), ["a=\"1\"", "b=\"2\"", "c=\"1\""]);
}

#[test]
fn claim_records_every_manifest_and_config() {
    let mut b = bundle(vec![cm("a", "1"), json!({"kind": "NoIdentity"})]);
    b.manifest_configs.push(ManifestConfigOption {
        resource_identifier: crate::payload::ResourceIdentifier {
            resource: "configmaps".into(),
            name: "a".into(),
            namespace: "ns".into(),
            ..Default::default()
        },
        ..Default::default()
    });
    let m = claim(&b, "w");
    assert_eq!(
        m.keys().map(String::as_str).collect::<Vec<_>>(),
        ["/v1/ConfigMap/ns/a", "config:/configmaps/ns/a"]
    );
    assert!(m.values().all(|v| v == "w"));
}
