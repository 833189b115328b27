//! Bundle validation.
//!
//! - [`validate_bundle`]: the agent-side check of docs/protocol.md §4.1 (sdk-go validator): manifests
//!   non-empty, total size ≤ [`MAX_BUNDLE_BYTES`], every manifest an object with a non-empty
//!   `metadata.name` and no `generateName`.
//! - [`validate_manifests`]: the stricter server-side check Maestro applies on create/update
//!   (docs/protocol.md §12.3).

use std::collections::HashSet;

use serde_json::Value;

use crate::payload::ManifestBundle;
use crate::{Error, Result};

/// Maximum total manifest size accepted by the agent: 500 KiB (docs/protocol.md §4.1).
pub const MAX_BUNDLE_BYTES: usize = 500 * 1024;

fn bad(msg: String) -> Error {
    Error::InvalidBundle(msg)
}

/// The agent-side validation of docs/protocol.md §4.1.
///
/// # Errors
/// [`Error::InvalidBundle`] naming the first problem found.
pub fn validate_bundle(bundle: &ManifestBundle) -> Result<()> {
    if bundle.manifests.is_empty() {
        return Err(bad("manifests must not be empty".into()));
    }
    let mut total = 0usize;
    for (i, m) in bundle.manifests.iter().enumerate() {
        total += serde_json::to_vec(m).map(|v| v.len()).unwrap_or(0);
        let meta = m
            .get("metadata")
            .and_then(Value::as_object)
            .ok_or_else(|| bad(format!("manifest {i}: missing metadata")))?;
        if meta.get("generateName").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
            return Err(bad(format!("manifest {i}: generateName is not allowed")));
        }
        if meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(bad(format!("manifest {i}: metadata.name is required")));
        }
    }
    if total > MAX_BUNDLE_BYTES {
        return Err(bad(format!("manifests total {total} bytes, over the {MAX_BUNDLE_BYTES}-byte limit")));
    }
    Ok(())
}

/// True for a DNS-1123 label: lower-case alphanumerics and `-`, 1–63 chars, alphanumeric at
/// both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// True for a DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 chars.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// True for a DNS-1035 label (a DNS-1123 label starting with a letter).
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// The server-side validation of docs/protocol.md §12.3: non-empty; each manifest has an
/// `apiVersion` (group a DNS-1123 subdomain, version a DNS-1035 label), a `kind` and a
/// `metadata.name`; a namespace, if given, is a DNS-1123 label; `generateName`,
/// `resourceVersion` and `deletionGracePeriodSeconds` are forbidden; no two manifests share
/// apiVersion/kind/namespace/name.
///
/// # Errors
/// [`Error::InvalidBundle`] naming the manifest index and the problem.
pub fn validate_manifests(manifests: &[Value]) -> Result<()> {
    if manifests.is_empty() {
        return Err(bad("manifests must not be empty".into()));
    }
    let mut seen = HashSet::new();
    for (i, m) in manifests.iter().enumerate() {
        let key = validate_manifest(i, m)?;
        if !seen.insert(key.clone()) {
            return Err(bad(format!("manifest {i}: duplicate of an earlier manifest ({key})")));
        }
    }
    Ok(())
}

fn validate_manifest(i: usize, m: &Value) -> Result<String> {
    let obj = m.as_object().ok_or_else(|| bad(format!("manifest {i}: not an object")))?;
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(format!("manifest {i}: apiVersion is required")))?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if (!group.is_empty() && !is_dns1123_subdomain(group)) || !is_dns1035_label(version) {
        return Err(bad(format!("manifest {i}: invalid apiVersion {api_version:?}")));
    }
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(format!("manifest {i}: kind is required")))?;
    let meta = obj
        .get("metadata")
        .and_then(Value::as_object)
        .ok_or_else(|| bad(format!("manifest {i}: metadata is required")))?;
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(format!("manifest {i}: metadata.name is required")))?;
    for forbidden in ["generateName", "resourceVersion", "deletionGracePeriodSeconds"] {
        if meta.contains_key(forbidden) {
            return Err(bad(format!("manifest {i}: metadata.{forbidden} is not allowed")));
        }
    }
    let namespace = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
    if !namespace.is_empty() && !is_dns1123_label(namespace) {
        return Err(bad(format!("manifest {i}: invalid namespace {namespace:?}")));
    }
    Ok(format!("{api_version}/{kind}/{namespace}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(name: &str) -> Value {
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":"default"}})
    }

    #[test]
    fn agent_validation() {
        assert!(validate_bundle(&ManifestBundle::default()).is_err());
        let ok = ManifestBundle { manifests: vec![cm("a")], ..Default::default() };
        assert!(validate_bundle(&ok).is_ok());
        let gen_name = ManifestBundle {
            manifests: vec![
                json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","generateName":"x-"}}),
            ],
            ..Default::default()
        };
        assert!(validate_bundle(&gen_name).is_err());
        let no_name = ManifestBundle {
            manifests: vec![json!({"kind":"ConfigMap","metadata":{}})],
            ..Default::default()
        };
        assert!(validate_bundle(&no_name).is_err());
        let big = ManifestBundle {
            manifests: vec![
                json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"x":"y".repeat(MAX_BUNDLE_BYTES)}}),
            ],
            ..Default::default()
        };
        let err = validate_bundle(&big).expect_err("oversized").to_string();
        assert!(err.contains("limit"), "{err}");
    }

    #[test]
    fn server_validation() {
        assert!(validate_manifests(&[cm("a"), cm("b")]).is_ok());
        assert!(validate_manifests(&[]).is_err());
        assert!(validate_manifests(&[cm("a"), cm("a")]).expect_err("dup").to_string().contains("duplicate"));
        assert!(validate_manifests(&[json!({"kind":"ConfigMap","metadata":{"name":"a"}})]).is_err());
        assert!(
            validate_manifests(&[json!({"apiVersion":"Apps/v1","kind":"X","metadata":{"name":"a"}})])
                .is_err()
        );
        assert!(
            validate_manifests(&[
                json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"1"}})
            ])
            .is_err()
        );
        assert!(
            validate_manifests(&[
                json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"Bad_NS"}})
            ])
            .is_err()
        );
        assert!(
            validate_manifests(&[
                json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"a"}})
            ])
            .is_ok()
        );
    }
}
