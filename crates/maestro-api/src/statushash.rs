//! The status hash (protocol.md §5.4): lower-case hex SHA-256 over the compact JSON of the
//! work's `status` object with object keys sorted alphabetically (as Go marshals an
//! unstructured map). Sources treat it as opaque and echo it back in status resync requests.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::payload::ManifestBundleStatus;

/// Writes `v` as compact JSON with every object's keys sorted, independent of serde_json's
/// `preserve_order` feature.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The status hash of a work status: SHA-256 of the canonical JSON of
/// `{"conditions":[…],"resourceStatus":{"manifests":[…]}}` (the ManifestWork status shape).
/// The `manifestBundle` field is not part of the work status and is ignored.
pub fn status_hash(status: &ManifestBundleStatus) -> String {
    let mut obj = serde_json::Map::new();
    if !status.conditions.is_empty() {
        obj.insert("conditions".into(), serde_json::to_value(&status.conditions).unwrap_or(Value::Null));
    }
    if !status.resource_status.is_empty() {
        let manifests = serde_json::to_value(&status.resource_status).unwrap_or(Value::Null);
        obj.insert("resourceStatus".into(), serde_json::json!({ "manifests": manifests }));
    }
    sha256_hex(canonical_json(&Value::Object(obj)).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Condition;

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#).expect("json");
        assert_eq!(canonical_json(&v), r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#);
    }

    #[test]
    fn empty_status_hashes_as_empty_object() {
        assert_eq!(status_hash(&ManifestBundleStatus::default()), sha256_hex(b"{}"));
    }

    #[test]
    fn hash_changes_with_status_and_ignores_bundle() {
        let mut s = ManifestBundleStatus::default();
        s.conditions.push(Condition { kind: "Applied".into(), status: "True".into(), ..Default::default() });
        let h1 = status_hash(&s);
        s.manifest_bundle = Some(Default::default());
        assert_eq!(h1, status_hash(&s));
        s.conditions[0].status = "False".into();
        assert_ne!(h1, status_hash(&s));
        assert_eq!(h1.len(), 64);
    }
}
