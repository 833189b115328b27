//! Parsing `--manifest-file` input into a work: name, metadata and [`ManifestBundle`].
//!
//! Accepted inputs (YAML or JSON):
//! - a ManifestWork (`apiVersion: work.open-cluster-management.io/v1`, `kind: ManifestWork`,
//!   `metadata {name, labels, annotations}`, `spec {workload {manifests}, deleteOption,
//!   manifestConfigs, executor}`), which must be the only document;
//! - a plain list of manifests: a YAML multi-document stream, a YAML/JSON list, or a
//!   `kind: List` object with `items` (lists are flattened). The work name must then come
//!   from the caller (`--name`).
//!
//! Every error names the file, the (1-based) document and, for YAML syntax errors, the line
//! and column.

use std::collections::BTreeMap;

use maestro_api::payload::ManifestBundle;
use maestro_api::validate::{is_dns1123_subdomain, validate_manifests};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ClientError, Result};

/// The ManifestWork `apiVersion`.
pub const MANIFESTWORK_API_VERSION: &str = "work.open-cluster-management.io/v1";
/// The ManifestWork `kind`.
pub const MANIFESTWORK_KIND: &str = "ManifestWork";

/// A work ready to publish.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ManifestWorkInput {
    /// The work name (a DNS-1123 subdomain); with the source id and consumer it determines
    /// the resource id.
    pub name: String,
    /// Work labels (`metadata.labels`).
    pub labels: BTreeMap<String, String>,
    /// Work annotations (`metadata.annotations`).
    pub annotations: BTreeMap<String, String>,
    /// The spec: manifests, delete option, manifest configs, executor.
    pub bundle: ManifestBundle,
}

impl ManifestWorkInput {
    /// The `metadata` extension for this work: the ObjectMeta with `name`, `namespace` (the
    /// consumer), `uid` (the resource id), `resourceVersion` `"0"`, and labels/annotations when
    /// set.
    pub fn metadata(&self, consumer: &str, resource_id: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        m.insert("namespace".into(), json!(consumer));
        m.insert("uid".into(), json!(resource_id));
        m.insert("resourceVersion".into(), json!("0"));
        if !self.labels.is_empty() {
            m.insert("labels".into(), json!(self.labels));
        }
        if !self.annotations.is_empty() {
            m.insert("annotations".into(), json!(self.annotations));
        }
        m
    }
}

/// Parses `text` read from `file` (used only in messages). `name` overrides the
/// ManifestWork's `metadata.name` and is required for plain manifest lists.
///
/// # Errors
/// [`ClientError::ManifestFile`] naming the file, document and problem: bad YAML/JSON (with
/// line and column), no documents, a ManifestWork mixed with other documents, missing or
/// invalid name, empty or invalid manifests (per
/// [`maestro_api::validate::validate_manifests`]).
pub fn parse(file: &str, text: &str, name: Option<&str>) -> Result<ManifestWorkInput> {
    let err = |message: String| ClientError::ManifestFile { file: file.to_owned(), message };
    let docs = parse_documents(text).map_err(err)?;
    if docs.is_empty() {
        return Err(err("no documents found (the file is empty)".into()));
    }
    let work_at = docs.iter().position(|(_, d)| is_manifestwork(d));
    let mut work = match work_at {
        Some(at) if docs.len() > 1 => {
            return Err(err(format!(
                "document {}: a ManifestWork must be the only document in the file ({} found)",
                docs[at].0,
                docs.len()
            )));
        }
        Some(_) => from_manifestwork(&docs[0].1).map_err(|m| err(format!("document {}: {m}", docs[0].0)))?,
        None => from_manifest_list(&docs).map_err(err)?,
    };
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        work.name = n.to_owned();
    }
    if work.name.is_empty() {
        return Err(err(if work_at.is_some() {
            "the ManifestWork has no metadata.name; set one or pass --name".into()
        } else {
            "missing work name: the file is a list of manifests, not a ManifestWork; pass --name".into()
        }));
    }
    if !is_dns1123_subdomain(&work.name) {
        return Err(err(format!(
            "invalid work name {:?}: must be a DNS-1123 subdomain (lower-case alphanumerics, '-' and '.')",
            work.name
        )));
    }
    Ok(work)
}

/// Splits the input into non-empty documents, each with its 1-based document number.
fn parse_documents(text: &str) -> std::result::Result<Vec<(usize, Value)>, String> {
    let trimmed = text.trim_start();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && let Ok(v) = serde_json::from_str::<Value>(text)
    {
        return Ok(vec![(1, v)]);
    }
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let yaml = serde_yaml_ng::Value::deserialize(de)
            .map_err(|e| format!("document {}: invalid YAML: {e}", i + 1))?;
        if yaml.is_null() {
            continue;
        }
        let v = serde_json::to_value(&yaml)
            .map_err(|e| format!("document {}: cannot be represented as JSON: {e}", i + 1))?;
        docs.push((i + 1, v));
    }
    Ok(docs)
}

fn is_manifestwork(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some(MANIFESTWORK_KIND)
}

fn string_map(v: Option<&Value>, what: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!("{what}.{k} must be a string, got {other}")),
            })
            .collect(),
        Some(other) => Err(format!("{what} must be a map of strings, got {other}")),
    }
}

fn from_manifestwork(doc: &Value) -> std::result::Result<ManifestWorkInput, String> {
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if api_version != MANIFESTWORK_API_VERSION {
        return Err(format!(
            "ManifestWork apiVersion must be {MANIFESTWORK_API_VERSION:?}, got {api_version:?}"
        ));
    }
    let meta = doc.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_owned();
    let labels = string_map(meta.and_then(|m| m.get("labels")), "metadata.labels")?;
    let annotations = string_map(meta.and_then(|m| m.get("annotations")), "metadata.annotations")?;
    let spec = doc.get("spec").and_then(Value::as_object).ok_or("ManifestWork has no spec")?;
    let manifests = spec
        .get("workload")
        .and_then(|w| w.get("manifests"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if manifests.is_empty() {
        return Err("spec.workload.manifests is empty: a work needs at least one manifest".into());
    }
    let mut payload = Map::new();
    payload.insert("manifests".into(), Value::Array(manifests));
    for (from, to) in
        [("deleteOption", "deleteOption"), ("manifestConfigs", "manifestConfigs"), ("executor", "executer")]
    {
        if let Some(v) = spec.get(from).filter(|v| !v.is_null()) {
            payload.insert(to.into(), v.clone());
        }
    }
    let bundle: ManifestBundle =
        serde_json::from_value(Value::Object(payload)).map_err(|e| format!("invalid spec: {e}"))?;
    check_manifests(&bundle.manifests, |i| format!("spec.workload.manifests[{i}]"))?;
    Ok(ManifestWorkInput { name, labels, annotations, bundle })
}

fn from_manifest_list(docs: &[(usize, Value)]) -> std::result::Result<ManifestWorkInput, String> {
    let mut manifests = Vec::new();
    let mut origins = Vec::new();
    for (doc_no, doc) in docs {
        let (items, is_list) = match doc {
            Value::Array(items) => (items.clone(), true),
            Value::Object(o) if o.get("kind").and_then(Value::as_str) == Some("List") => {
                (o.get("items").and_then(Value::as_array).cloned().unwrap_or_default(), true)
            }
            other => (vec![other.clone()], false),
        };
        for (j, item) in items.into_iter().enumerate() {
            origins.push(if is_list {
                format!("document {doc_no}, item {}", j + 1)
            } else {
                format!("document {doc_no}")
            });
            manifests.push(item);
        }
    }
    if manifests.is_empty() {
        return Err("no manifests found: the list is empty".into());
    }
    check_manifests(&manifests, |i| origins.get(i).cloned().unwrap_or_else(|| format!("manifest {i}")))?;
    Ok(ManifestWorkInput { bundle: ManifestBundle { manifests, ..Default::default() }, ..Default::default() })
}

/// Validates each manifest alone (to name where it came from), then the whole list (for
/// duplicates).
fn check_manifests(manifests: &[Value], origin: impl Fn(usize) -> String) -> std::result::Result<(), String> {
    for (i, m) in manifests.iter().enumerate() {
        if is_manifestwork(m) {
            return Err(format!("{}: a ManifestWork cannot be nested in a manifest list", origin(i)));
        }
        validate_manifests(std::slice::from_ref(m))
            .map_err(|e| format!("{}: {}", origin(i), strip_index(&e)))?;
    }
    validate_manifests(manifests).map_err(|e| {
        let msg = e.to_string();
        let at = msg.split("manifest ").nth(1).and_then(|s| s.split(':').next()?.parse::<usize>().ok());
        match at {
            Some(i) => format!("{}: {}", origin(i), strip_index(&e)),
            None => msg,
        }
    })
}

/// `invalid resource bundle: manifest 0: kind is required` → `kind is required`.
fn strip_index(e: &maestro_api::Error) -> String {
    match e {
        maestro_api::Error::InvalidBundle(m) => m
            .split_once(": ")
            .filter(|(p, _)| p.starts_with("manifest "))
            .map_or(m.as_str(), |(_, r)| r)
            .to_owned(),
        other => other.to_string(),
    }
}

/// Reads and parses a manifest file (`-` reads stdin).
///
/// # Errors
/// [`ClientError::ManifestFile`] when the file cannot be read, plus everything [`parse`]
/// returns.
pub fn read(path: &str, name: Option<&str>) -> Result<ManifestWorkInput> {
    let text =
        if path == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(path) }
            .map_err(|e| ClientError::ManifestFile {
            file: path.to_owned(),
            message: format!("cannot read: {e}"),
        })?;
    parse(if path == "-" { "<stdin>" } else { path }, &text, name)
}

#[cfg(test)]
#[path = "manifestwork_tests.rs"]
mod tests;
