//! `updateStrategy.serverSideApply.ignoreFields` (docs/protocol.md §8.2): fields of a manifest
//! the server-side apply leaves to the cluster, and the spec hash that skips applies while the
//! manifest is unchanged.
//!
//! An entry is `{"condition": "OnSpokePresent" | "OnSpokeChange", "jsonPaths": [...]}`:
//! - `OnSpokePresent` (and any condition other than `OnSpokeChange`, as the API's default):
//!   the paths are removed from the manifest applied to an existing object; an object that
//!   does not exist yet is created with them.
//! - `OnSpokeChange`: the paths stay in the manifest.
//!
//! With any entry, the hash of the manifest (without the `OnSpokePresent` paths) is written in
//! the [`CONFIG_SPEC_HASH_ANNOTATION`] annotation, and an object that already carries that
//! hash is not applied again: changes made on the cluster are kept until the manifest changes.
//! The hash is the hex MD5 of the manifest printed as Go's `%v` prints an unstructured object
//! (`&{map[apiVersion:v1 kind:ConfigMap ...]}`), so both agents compute the same value for a
//! manifest without server-maintained metadata.
//!
//! A path is split at its last `.`: the part before it is a kubectl JSONPath (empty for the
//! root) selecting objects, the last part the key removed from each of them. A path that does
//! not parse removes nothing (logged), as in the Go agent; an entry that is not of the shape
//! above fails the manifest's apply.

use serde_json::{Map, Value};

/// Annotation carrying the spec hash of a manifest applied with `ignoreFields`.
pub(crate) const CONFIG_SPEC_HASH_ANNOTATION: &str = "open-cluster-management.io/config-spec-hash";

/// The condition under which fields are kept in the applied manifest.
const ON_SPOKE_CHANGE: &str = "OnSpokeChange";

/// An `ignoreFields` entry that cannot be read; the `Display` text goes into the manifest's
/// `Applied` condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IgnoreFieldsError {
    /// The entry at `index` is not of the `IgnoreField` shape.
    #[error("ignoreFields[{index}]: {reason}")]
    Invalid {
        /// Position of the entry in `ignoreFields`.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One `ignoreFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IgnoreField {
    condition: String,
    json_paths: Vec<String>,
}

/// A manifest prepared for a server-side apply with `ignoreFields`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Prepared {
    /// The spec hash, also in the [`CONFIG_SPEC_HASH_ANNOTATION`] of both manifests.
    pub(crate) hash: String,
    /// The whole manifest: applied when the object does not exist.
    pub(crate) full: Value,
    /// Without the `OnSpokePresent` paths: applied to an existing object.
    pub(crate) trimmed: Value,
}

/// Prepares `manifest` for the `ignore_fields` entries (verbatim from the wire); `Ok(None)`
/// when there are none.
///
/// # Errors
/// [`IgnoreFieldsError::Invalid`] for an entry that cannot be read.
pub(crate) fn prepare(
    manifest: &Value,
    ignore_fields: &[Value],
) -> Result<Option<Prepared>, IgnoreFieldsError> {
    if ignore_fields.is_empty() {
        return Ok(None);
    }
    let fields = ignore_fields.iter().enumerate().map(|(i, v)| parse(i, v)).collect::<Result<Vec<_>, _>>()?;
    let mut trimmed = manifest.clone();
    for field in fields.iter().filter(|f| f.condition != ON_SPOKE_CHANGE) {
        for path in &field.json_paths {
            remove_json_path(&mut trimmed, path);
        }
    }
    let hash = spec_hash(&trimmed);
    let mut full = manifest.clone();
    set_hash(&mut trimmed, &hash);
    set_hash(&mut full, &hash);
    Ok(Some(Prepared { hash, full, trimmed }))
}

/// True when the live object carries `hash`: the manifest did not change since it was applied.
pub(crate) fn unchanged(live: &Value, hash: &str) -> bool {
    live.pointer("/metadata/annotations")
        .and_then(|a| a.get(CONFIG_SPEC_HASH_ANNOTATION))
        .and_then(Value::as_str)
        == Some(hash)
}

/// Removes every `metadata.creationTimestamp: null`, at any depth (pod templates too): a null
/// creation time is sent by some clients and would otherwise make each apply a change.
pub(crate) fn strip_null_creation_timestamps(value: &mut Value) {
    let Some(map) = value.as_object_mut() else { return };
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut)
        && meta.get("creationTimestamp").is_some_and(Value::is_null)
    {
        meta.remove("creationTimestamp");
    }
    for child in map.values_mut() {
        match child {
            Value::Object(_) => strip_null_creation_timestamps(child),
            Value::Array(items) => items.iter_mut().for_each(strip_null_creation_timestamps),
            _ => {}
        }
    }
}

fn parse(index: usize, entry: &Value) -> Result<IgnoreField, IgnoreFieldsError> {
    let invalid = |reason| IgnoreFieldsError::Invalid { index, reason };
    let obj = entry.as_object().ok_or_else(|| invalid("not an object"))?;
    let condition = match obj.get("condition") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(invalid("condition is not a string")),
    };
    let json_paths = match obj.get("jsonPaths") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|p| p.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("jsonPaths is not a list of strings"))?,
        Some(_) => return Err(invalid("jsonPaths is not a list of strings")),
    };
    Ok(IgnoreField { condition, json_paths })
}

/// Removes the key after the last `.` of `path` from every object the part before it selects.
fn remove_json_path(object: &mut Value, path: &str) {
    let key = path.rsplit('.').next().unwrap_or(path);
    let parent = path.strip_suffix(&format!(".{key}")).unwrap_or(path);
    let Some(query) = parent_query(parent) else {
        tracing::warn!(path, "ignoreFields: the path does not select anything; ignored");
        return;
    };
    let compiled = match serde_json_path::JsonPath::parse(&query) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(path, error = %e, "ignoreFields: invalid JSONPath; ignored");
            return;
        }
    };
    let pointers: Vec<String> =
        compiled.query_located(object).locations().map(|l| l.to_json_pointer()).collect();
    for pointer in pointers {
        if let Some(map) = object.pointer_mut(&pointer).and_then(Value::as_object_mut) {
            map.remove(key);
        }
    }
}

/// The RFC 9535 query of a kubectl JSONPath: `""`, `$` and `@` are the root; otherwise it must
/// start with `.` or `[` (a bare name is no kubectl path).
fn parent_query(parent: &str) -> Option<String> {
    let p = parent.trim();
    let rest = p.strip_prefix('$').or_else(|| p.strip_prefix('@')).unwrap_or(p);
    if rest.is_empty() {
        return Some("$".to_owned());
    }
    (rest.starts_with('.') || rest.starts_with('[')).then(|| format!("${rest}"))
}

fn set_hash(manifest: &mut Value, hash: &str) {
    let Some(root) = manifest.as_object_mut() else { return };
    let meta = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else { return };
    let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    if let Some(a) = annotations.as_object_mut() {
        a.insert(CONFIG_SPEC_HASH_ANNOTATION.to_owned(), Value::String(hash.to_owned()));
    }
}

/// The spec hash of a manifest: hex MD5 of Go's `%v` of the unstructured object.
pub(crate) fn spec_hash(manifest: &Value) -> String {
    let mut printed = String::from("&{");
    go_print(manifest, &mut printed);
    printed.push('}');
    hex::encode(md5(printed.as_bytes()))
}

/// Appends `value` as Go's `%v` prints the decoded JSON: maps as `map[k:v ...]` with sorted
/// keys, lists as `[a b]`, null as `<nil>`, integers in decimal, other numbers as `%g`.
fn go_print(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => out.push_str(&i.to_string()),
            None => go_float(n.as_f64().unwrap_or_default(), out),
        },
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_print(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push_str("map[");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                go_print(&map[k.as_str()], out);
            }
            out.push(']');
        }
    }
}

/// Go's `%v` of a float64: the shortest digits, in exponent form (`1e+06`, `1.5e-05`) when the
/// decimal exponent is below -4 or at least 6.
fn go_float(f: f64, out: &mut String) {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or_default();
    if (-4..6).contains(&exp) {
        out.push_str(&f.to_string());
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        out.push_str(&format!("{mantissa}e{sign}{:02}", exp.unsigned_abs()));
    }
}

/// MD5 (the `md-5` crate). Not for security: it only detects that a manifest changed, and is
/// the hash the Go agent writes in the same annotation.
fn md5(data: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(data).into()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn md5_matches_rfc_1321() {
        let cases = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex::encode(md5(input.as_bytes())), want, "{input:?}");
        }
    }

    #[test]
    fn prints_like_go() {
        let v = json!({"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a","labels":null},
            "data":{"b":"2","a":"1"},"list":[1,"x",{"k":true}],"f":[1.5,1e6,0.0001,0.00001,123456.0,2.0],"e":[],"m":{}});
        let mut out = String::new();
        go_print(&v, &mut out);
        assert_eq!(
            out,
            "map[apiVersion:v1 data:map[a:1 b:2] e:[] f:[1.5 1e+06 0.0001 1e-05 123456 2] kind:ConfigMap \
             list:[1 x map[k:true]] m:map[] metadata:map[labels:<nil> name:a]]"
        );
        let cm = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}});
        let printed = "&{map[apiVersion:v1 kind:ConfigMap metadata:map[name:a]]}";
        assert_eq!(spec_hash(&cm), hex::encode(md5(printed.as_bytes())));
    }

    #[test]
    fn removes_paths_as_the_go_agent() {
        let mut v = json!({"metadata":{"name":"d","labels":{"a":"1","b":"2"}},
            "spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"c","image":"x"},{"name":"d","image":"y"}]}}}});
        remove_json_path(&mut v, ".spec.replicas");
        remove_json_path(&mut v, ".metadata.labels.a");
        remove_json_path(&mut v, ".spec.template.spec.containers[*].image");
        remove_json_path(&mut v, ".spec.missing.field");
        remove_json_path(&mut v, "metadata.name"); // not a kubectl path: nothing
        remove_json_path(&mut v, ".spec[?("); // does not parse: nothing
        assert_eq!(
            v,
            json!({"metadata":{"name":"d","labels":{"b":"2"}},
                "spec":{"template":{"spec":{"containers":[{"name":"c"},{"name":"d"}]}}}})
        );
        remove_json_path(&mut v, ".spec");
        assert_eq!(v, json!({"metadata":{"name":"d","labels":{"b":"2"}}}));
    }

    #[test]
    fn prepare_trims_present_fields_and_hashes() {
        let m = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
            "spec":{"replicas":3,"paused":false}});
        assert_eq!(prepare(&m, &[]), Ok(None));
        let present = [json!({"condition":"OnSpokePresent","jsonPaths":[".spec.replicas"]})];
        let p = prepare(&m, &present).expect("valid").expect("some");
        assert_eq!(p.trimmed.pointer("/spec"), Some(&json!({"paused":false})));
        assert_eq!(p.full.pointer("/spec/replicas"), Some(&json!(3)));
        let mut plain = m.clone();
        remove_json_path(&mut plain, ".spec.replicas");
        assert_eq!(p.hash, spec_hash(&plain), "hashed without the ignored field, before annotating");
        assert!(unchanged(&p.trimmed, &p.hash) && unchanged(&p.full, &p.hash));
        let change = [json!({"condition":"OnSpokeChange","jsonPaths":[".spec.replicas"]})];
        let c = prepare(&m, &change).expect("valid").expect("some");
        assert_eq!(c.trimmed.pointer("/spec/replicas"), Some(&json!(3)));
        assert_eq!(c.hash, spec_hash(&m));
        let bad = [json!({"condition":"OnSpokeChange","jsonPaths":[3]})];
        let err = prepare(&m, &bad).expect_err("invalid");
        assert_eq!(err.to_string(), "ignoreFields[0]: jsonPaths is not a list of strings");
    }

    #[test]
    fn strips_null_creation_timestamps() {
        let mut v = json!({"metadata":{"creationTimestamp":null,"name":"d"},
            "spec":{"template":{"metadata":{"creationTimestamp":null}},"list":[{"metadata":{"creationTimestamp":null}}]},
            "other":{"metadata":{"creationTimestamp":"2024-01-01T00:00:00Z"}}});
        strip_null_creation_timestamps(&mut v);
        assert_eq!(
            v,
            json!({"metadata":{"name":"d"},"spec":{"template":{"metadata":{}},"list":[{"metadata":{}}]},
                "other":{"metadata":{"creationTimestamp":"2024-01-01T00:00:00Z"}}})
        );
    }
}
