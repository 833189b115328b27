//! `diff`: the desired work (a file) against the stored one, as unified diffs; exits 1 when
//! they differ and 0 when equal, like `kubectl diff`.
//!
//! Manifests are paired by [`ManifestIdentity`] (group, version, kind, namespace, name) and
//! each is rendered as YAML with sorted keys, so key order and JSON/YAML spelling never show
//! as changes. Only what the user can set is compared: the manifests, the work's labels and
//! annotations (not the manager record [`MANAGERS_ANNOTATION`] that merge applies maintain,
//! nor `name`, `namespace`, `uid` and the other metadata the server and client fill in), the
//! manifest configs and the delete option. Server defaults are applied to both sides before
//! comparing: a missing delete option is `Foreground`, and configs are read through their
//! typed form so that `null` and empty lists compare equal. The executor is not compared
//! (the REST view does not show it).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use maestro_api::merge::{MANAGERS_ANNOTATION, ManifestIdentity};
use maestro_api::payload::{DeleteOption, ManifestConfigOption};
use maestro_client::{ManifestWorkInput, ResourceBundle, manifestwork, resource_id};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::cli::DiffArgs;
use crate::commands::Context;
use crate::exit::CliError;
use crate::output::structured;

/// One difference between the stored and the desired work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Change {
    /// What differs: a manifest (`Kind namespace/name (group/version)`), `metadata`,
    /// `spec.manifestConfigs` or `spec.deleteOption`.
    object: String,
    /// `changed`, `added` (only desired) or `removed` (only stored).
    change: &'static str,
    /// The unified diff, headers included.
    diff: String,
}

/// Runs `diff`: prints one unified diff per differing object (nothing when equal; `-o
/// json|yaml` prints `{id, name, consumer, exists, equal, changes}`).
///
/// # Errors
/// [`CliError::failed`] (exit 1) when the works differ; manifest file errors (exit 2),
/// connection and server errors.
pub(crate) async fn run(ctx: &Context, args: &DiffArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let desired = manifestwork::read(&args.manifest_file, args.name.as_deref())?;
    let id = resource_id(&ctx.source_id, &args.consumer, &desired.name);
    let stored = ctx.rest()?.find_bundle(&id).await?;
    if stored.as_ref().is_some_and(ResourceBundle::is_deleting) {
        eprintln!("warning: resource bundle {} on consumer {} is being deleted", desired.name, args.consumer);
    }
    let changes = compare(stored.as_ref(), &desired);
    let summary = json!({
        "id": id, "name": desired.name, "consumer": args.consumer, "exists": stored.is_some(),
        "equal": changes.is_empty(), "changes": changes,
    });
    if !structured(out, ctx.output, &summary)? {
        for c in &changes {
            write!(out, "{}", c.diff)?;
        }
    }
    let what = format!("resource bundle {} on consumer {}", desired.name, args.consumer);
    if changes.is_empty() {
        eprintln!("{what} matches {}", args.manifest_file);
        return Ok(());
    }
    let count = |kind: &str| changes.iter().filter(|c| c.change == kind).count();
    let state = if stored.is_some() { "differs from" } else { "does not exist yet; everything is added by" };
    Err(CliError::failed(format!(
        "{what} {state} {}: {} changed, {} added, {} removed",
        args.manifest_file,
        count("changed"),
        count("added"),
        count("removed")
    ))
    .into())
}

/// Every difference from `stored` (`None`: the work does not exist) to `desired`: metadata,
/// then manifests in desired order, removed manifests in stored order, manifest configs and
/// the delete option.
fn compare(stored: Option<&ResourceBundle>, desired: &ManifestWorkInput) -> Vec<Change> {
    let mut changes = Vec::new();
    let old_meta = stored.map_or(Value::Null, stored_metadata);
    let new_meta = user_metadata(&desired.labels, &desired.annotations);
    changes.extend(section("metadata", &old_meta, &new_meta));
    changes
        .extend(compare_manifests(stored.map_or(&[], |b| b.manifests.as_slice()), &desired.bundle.manifests));
    let old_configs = stored.map_or(Value::Null, |b| normalized_configs(&b.manifest_configs));
    let new_configs = serde_json::to_value(&desired.bundle.manifest_configs).unwrap_or(Value::Null);
    changes.extend(section("spec.manifestConfigs", &old_configs, &new_configs));
    let (old_delete, new_delete) = match stored {
        // A new work: show the delete option only if the file sets one.
        None => (Value::Null, desired.bundle.delete_option.as_ref().map_or(Value::Null, to_value)),
        Some(b) => {
            (stored_delete_option(b), to_value(&desired.bundle.delete_option.clone().unwrap_or_default()))
        }
    };
    changes.extend(section("spec.deleteOption", &old_delete, &new_delete));
    changes
}

/// `v` as JSON (`null` if it cannot be represented).
fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `{labels, annotations}` with the empty ones left out (`null` when both are empty).
fn user_metadata(labels: &BTreeMap<String, String>, annotations: &BTreeMap<String, String>) -> Value {
    let mut m = Map::new();
    if !labels.is_empty() {
        m.insert("labels".into(), json!(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), json!(annotations));
    }
    if m.is_empty() { Value::Null } else { Value::Object(m) }
}

/// The user-settable metadata of a stored work: labels and annotations except
/// [`MANAGERS_ANNOTATION`].
fn stored_metadata(b: &ResourceBundle) -> Value {
    let strings = |key: &str| -> BTreeMap<String, String> {
        let Some(map) = b.metadata.get(key).and_then(Value::as_object) else { return BTreeMap::new() };
        map.iter()
            .filter(|(k, _)| k.as_str() != MANAGERS_ANNOTATION)
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect()
    };
    user_metadata(&strings("labels"), &strings("annotations"))
}

/// The stored configs read through [`ManifestConfigOption`] (defaults filled, `null` lists
/// dropped); a config that does not parse is compared as stored.
fn normalized_configs(configs: &[Value]) -> Value {
    Value::Array(
        configs
            .iter()
            .map(|raw| {
                serde_json::from_value::<ManifestConfigOption>(raw.clone())
                    .map_or_else(|_| raw.clone(), |c| to_value(&c))
            })
            .collect(),
    )
}

/// The stored delete option with defaults (`Foreground` when absent); one that does not
/// parse is compared as stored.
fn stored_delete_option(b: &ResourceBundle) -> Value {
    match &b.delete_option {
        None | Some(Value::Null) => to_value(&DeleteOption::default()),
        Some(raw) => {
            serde_json::from_value::<DeleteOption>(raw.clone()).map_or_else(|_| raw.clone(), |d| to_value(&d))
        }
    }
}

/// The identity label of a manifest (`manifest #i` when it has none).
fn label(m: &Value, i: usize) -> (String, String) {
    match ManifestIdentity::of(m) {
        Ok(id) => (id.key(), id.to_string()),
        Err(_) => (format!("#{i}"), format!("manifest #{i}")),
    }
}

/// The manifest changes: desired manifests paired with stored ones by identity, in desired
/// order, then the stored manifests the file no longer lists.
fn compare_manifests(stored: &[Value], desired: &[Value]) -> Vec<Change> {
    let mut by_key: HashMap<String, &Value> = HashMap::new();
    let stored_labels: Vec<(String, String)> = stored.iter().enumerate().map(|(i, m)| label(m, i)).collect();
    for ((key, _), m) in stored_labels.iter().zip(stored) {
        by_key.entry(key.clone()).or_insert(m);
    }
    let mut changes = Vec::new();
    for (i, m) in desired.iter().enumerate() {
        let (key, name) = label(m, i);
        let old = by_key.remove(&key).cloned().unwrap_or(Value::Null);
        changes.extend(section(&name, &old, m));
    }
    for ((key, name), m) in stored_labels.iter().zip(stored) {
        if by_key.remove(key).is_some() {
            changes.extend(section(name, m, &Value::Null));
        }
    }
    changes
}

/// The change of `object` from `old` to `new` (`null` or empty: absent on that side), `None`
/// when equal.
fn section(object: &str, old: &Value, new: &Value) -> Option<Change> {
    let (old_text, new_text) = (yaml(old), yaml(new));
    if old_text == new_text {
        return None;
    }
    let change = match (old_text.is_empty(), new_text.is_empty()) {
        (true, _) => "added",
        (_, true) => "removed",
        _ => "changed",
    };
    let diff = similar::TextDiff::from_lines(&old_text, &new_text)
        .unified_diff()
        .context_radius(3)
        .header(&format!("stored/{object}"), &format!("desired/{object}"))
        .to_string();
    Some(Change { object: object.to_owned(), change, diff })
}

/// `v` as YAML with every map's keys sorted; empty for `null` and empty lists/maps.
fn yaml(v: &Value) -> String {
    let empty = match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if empty {
        return String::new();
    }
    serde_yaml_ng::to_string(&sorted(v)).unwrap_or_else(|e| format!("<cannot render as YAML: {e}>\n"))
}

/// `v` with the keys of every map inserted in sorted order (so the order holds whether or
/// not serde_json preserves insertion order).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ConfigMap `name` with `data.k`.
    fn cm(name: &str, data: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"k": data}})
    }

    /// A stored work as the server shows it: server-filled metadata, `null` configs, the default delete option.
    fn stored(manifests: Vec<Value>) -> ResourceBundle {
        serde_json::from_value(json!({
            "id": "rid", "name": "web", "consumer_name": "c1", "version": 1,
            "metadata": {"name": "web", "namespace": "c1", "uid": "rid", "resourceVersion": "0",
                         "annotations": {MANAGERS_ANNOTATION: "{}"}},
            "manifests": manifests, "manifest_configs": null,
            "delete_option": {"propagationPolicy": "Foreground"}
        }))
        .expect("bundle")
    }

    /// A desired work `web` with only `manifests`.
    fn desired(manifests: Vec<Value>) -> ManifestWorkInput {
        ManifestWorkInput {
            name: "web".into(),
            bundle: maestro_api::payload::ManifestBundle { manifests, ..Default::default() },
            ..Default::default()
        }
    }

    /// Server-filled metadata and defaults, and key order, are not differences.
    #[test]
    fn server_defaults_and_key_order_are_no_difference() {
        let reordered = json!({"data": {"k": "1"}, "metadata": {"namespace": "default", "name": "a"}, "kind": "ConfigMap", "apiVersion": "v1"});
        let changes = compare(Some(&stored(vec![cm("a", "1")])), &desired(vec![reordered]));
        assert_eq!(changes, []);
    }

    /// Manifests pair by identity: a reordered list shows changes, additions and removals, not a shift.
    #[test]
    fn manifests_pair_by_identity_not_position() {
        let changes = compare(
            Some(&stored(vec![cm("a", "1"), cm("b", "1")])),
            &desired(vec![cm("c", "1"), cm("a", "2")]),
        );
        let kinds: Vec<(&str, &str)> = changes.iter().map(|c| (c.object.as_str(), c.change)).collect();
        assert_eq!(
            kinds,
            [
                ("ConfigMap default/c (v1)", "added"),
                ("ConfigMap default/a (v1)", "changed"),
                ("ConfigMap default/b (v1)", "removed")
            ]
        );
        assert!(changes[1].diff.contains("-  k: '1'\n+  k: '2'\n"), "{}", changes[1].diff);
        assert!(
            changes[1]
                .diff
                .starts_with("--- stored/ConfigMap default/a (v1)\n+++ desired/ConfigMap default/a (v1)\n")
        );
    }

    /// Against a missing work everything the file sets is added.
    #[test]
    fn a_missing_work_adds_everything() {
        let mut d = desired(vec![cm("a", "1")]);
        d.labels.insert("app".into(), "web".into());
        let changes = compare(None, &d);
        let kinds: Vec<(&str, &str)> = changes.iter().map(|c| (c.object.as_str(), c.change)).collect();
        assert_eq!(kinds, [("metadata", "added"), ("ConfigMap default/a (v1)", "added")]);
    }
}
