//! The status hash (docs/protocol.md §5.4): lower-case hex SHA-256 over the compact JSON of the
//! work's `status` object with object keys sorted alphabetically (as Go marshals an
//! unstructured map). Sources treat it as opaque and echo it back in status resync requests.

use std::io::{self, Write};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::payload::ManifestBundleStatus;

/// Writes `v` as compact JSON with every object's keys sorted, independent of serde_json's
/// `preserve_order` feature.
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail; the output is JSON, so UTF-8.
    let _ = write_canonical(v, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Streams the canonical JSON of `v` into `out`: keys and scalars are written by serde_json's
/// own escaping straight into `out`, with no intermediate strings, and an object's keys are
/// only sorted when its map does not already iterate them in order (serde_json's default map
/// is a `BTreeMap`, so they usually are).
fn write_canonical<W: Write>(v: &Value, out: &mut W) -> io::Result<()> {
    match v {
        Value::Object(m) => {
            out.write_all(b"{")?;
            if m.keys().is_sorted() {
                write_entries(m.iter(), out)?;
            } else {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                write_entries(entries.into_iter(), out)?;
            }
            out.write_all(b"}")
        }
        Value::Array(a) => {
            out.write_all(b"[")?;
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(x, out)?;
            }
            out.write_all(b"]")
        }
        other => serde_json::to_writer(out, other).map_err(io::Error::other),
    }
}

fn write_entries<'a, W: Write>(
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
    out: &mut W,
) -> io::Result<()> {
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, k).map_err(io::Error::other)?;
        out.write_all(b":")?;
        write_canonical(v, out)?;
    }
    Ok(())
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
    // The digest is an `io::Write` (sha2's `std` feature); writing to it cannot fail.
    let mut hasher = Sha256::new();
    let _ = write_canonical(&Value::Object(obj), &mut hasher);
    hex::encode(hasher.finalize())
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

    /// The hash streamed into the digest is the SHA-256 of the canonical text, escapes and
    /// non-ASCII included.
    #[test]
    fn streamed_hash_is_the_hash_of_the_canonical_text() {
        let mut s = ManifestBundleStatus::default();
        s.conditions.push(Condition {
            kind: "Applied".into(),
            status: "True".into(),
            message: "quote \" backslash \\ tab \t é <>&".into(),
            ..Default::default()
        });
        let text = r#"{"conditions":[{"lastTransitionTime":"","message":"quote \" backslash \\ tab \t é <>&","reason":"","status":"True","type":"Applied"}]}"#;
        let mut obj = serde_json::Map::new();
        obj.insert("conditions".into(), serde_json::to_value(&s.conditions).expect("value"));
        let canonical = canonical_json(&Value::Object(obj));
        assert_eq!(status_hash(&s), sha256_hex(canonical.as_bytes()));
        let reparsed: Value = serde_json::from_str(&canonical).expect("canonical JSON parses");
        assert_eq!(canonical_json(&reparsed), canonical);
        assert_eq!(canonical, text);
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
