//! Manifest identity and the merge apply (docs/cli.md, "Merge apply").
//!
//! Several writers (HyperFleet adapters, say) may share one resource bundle. A **merge apply**
//! by a writer named `manager` adds or replaces only the manifests it lists, identified by
//! [`ManifestIdentity`] (group, version, kind, namespace, name), and removes only those
//! manifests that the same manager applied before and no longer lists. Which manager applied
//! which manifest is recorded in the work's metadata annotation [`MANAGERS_ANNOTATION`] as a
//! JSON object `{"<identity key>": "<manager>"}`, so it is stored atomically with the bundle,
//! visible in the REST view and needs no schema change. Manifest configs
//! (`manifestConfigs`) follow the same rule, keyed `config:<group>/<resource>/<namespace>/<name>`.
//!
//! A merge never takes over what another manager recorded: listing a manifest (or config)
//! owned by another manager is a [`MergeError::OwnedByOther`]. Manifests without a recorded
//! manager (written by a plain apply) may be taken over.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::payload::{ManifestBundle, ManifestConfigOption};

/// The metadata annotation recording each manifest's (and manifest config's) manager: a JSON
/// object mapping [`ManifestIdentity::key`] (or a config key) to the manager name.
pub const MANAGERS_ANNOTATION: &str = "maestro.open-cluster-management.io/manifest-managers";

/// Why a merge could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// A manifest lacks what its identity needs.
    #[error("manifest {index}: {message}")]
    NoIdentity {
        /// 0-based position in the writer's list.
        index: usize,
        /// What is missing.
        message: String,
    },
    /// The writer lists the same identity twice.
    #[error("manifest {0} is listed twice")]
    Duplicate(String),
    /// The writer lists a manifest or config that another manager applied.
    #[error("{what} is managed by {owner:?}; manager {manager:?} may not replace it")]
    OwnedByOther {
        /// The manifest or config.
        what: String,
        /// Its recorded manager.
        owner: String,
        /// The writer.
        manager: String,
    },
    /// The manager name is empty.
    #[error("the manager name is empty")]
    EmptyManager,
}

/// A manifest's identity: API group (`""` for core), version, kind, namespace (`""` when
/// cluster-scoped or unset) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManifestIdentity {
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ManifestIdentity {
    /// The identity of `manifest` from `apiVersion`, `kind`, `metadata.namespace` and
    /// `metadata.name`.
    ///
    /// # Errors
    /// A message naming the missing field (`apiVersion`, `kind`, `metadata.name`).
    pub fn of(manifest: &Value) -> Result<Self, String> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        let api_version = text(manifest.get("apiVersion"));
        let kind = text(manifest.get("kind"));
        let meta = manifest.get("metadata");
        let name = text(meta.and_then(|m| m.get("name")));
        let namespace = text(meta.and_then(|m| m.get("namespace")));
        for (field, value) in [("apiVersion", &api_version), ("kind", &kind), ("metadata.name", &name)] {
            if value.is_empty() {
                return Err(format!("no {field}"));
            }
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), api_version),
        };
        Ok(ManifestIdentity { group, version, kind, namespace, name })
    }

    /// The key used in [`MANAGERS_ANNOTATION`]: `group/version/kind/namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}/{}/{}/{}", self.group, self.version, self.kind, self.namespace, self.name)
    }
}

impl fmt::Display for ManifestIdentity {
    /// `Kind namespace/name (group/version)`, or `Kind name (v1)` when cluster-scoped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let api = if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        };
        if self.namespace.is_empty() {
            write!(f, "{} {} ({api})", self.kind, self.name)
        } else {
            write!(f, "{} {}/{} ({api})", self.kind, self.namespace, self.name)
        }
    }
}

/// The key of a manifest config in [`MANAGERS_ANNOTATION`].
fn config_key(c: &ManifestConfigOption) -> String {
    let r = &c.resource_identifier;
    format!("config:{}/{}/{}/{}", r.group, r.resource, r.namespace, r.name)
}

/// The managers recorded in a work's `metadata` (empty when absent or unreadable).
pub fn managers(metadata: &Map<String, Value>) -> BTreeMap<String, String> {
    metadata
        .get("annotations")
        .and_then(|a| a.get(MANAGERS_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// Records `managers` in `metadata`'s annotations (removing the annotation when empty).
pub fn set_managers(metadata: &mut Map<String, Value>, managers: &BTreeMap<String, String>) {
    let annotations = metadata.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    if let Value::Object(a) = annotations {
        if managers.is_empty() {
            a.remove(MANAGERS_ANNOTATION);
        } else {
            let text = serde_json::to_string(managers).unwrap_or_default();
            a.insert(MANAGERS_ANNOTATION.to_owned(), Value::String(text));
        }
    }
    if metadata.get("annotations").and_then(Value::as_object).is_some_and(Map::is_empty) {
        metadata.remove("annotations");
    }
}

/// The identity keys of `manifests` in order; manifests without an identity get a key no
/// other manifest can have (`#<index>`), so they are kept as they are.
fn keys_of(manifests: &[Value]) -> Vec<String> {
    manifests
        .iter()
        .enumerate()
        .map(|(i, m)| ManifestIdentity::of(m).map_or_else(|_| format!("#{i}"), |id| id.key()))
        .collect()
}

/// The result of [`merge`].
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The merged bundle.
    pub bundle: ManifestBundle,
    /// The managers to record.
    pub managers: BTreeMap<String, String>,
}

/// Merges `incoming`, applied by `manager`, into `current` whose managers are `recorded`:
/// current manifests keep their order (the writer's replace theirs in place), the writer's new
/// manifests follow in the writer's order, and manifests `manager` recorded before but no
/// longer lists are removed; the same for manifest configs. `deleteOption` and the executor
/// are the writer's when given, else the current ones. Recorded managers of manifests no
/// longer present are dropped.
///
/// # Errors
/// [`MergeError`]: an empty manager, a writer's manifest without identity, an identity listed
/// twice, or a manifest or config owned by another manager.
pub fn merge(
    current: &ManifestBundle,
    recorded: &BTreeMap<String, String>,
    incoming: &ManifestBundle,
    manager: &str,
) -> Result<Merged, MergeError> {
    if manager.is_empty() {
        return Err(MergeError::EmptyManager);
    }
    let mine = writer_manifests(incoming)?;
    let mut managers = BTreeMap::new();
    let mut manifests = Vec::new();
    let mut placed = BTreeSet::new();
    for (key, manifest) in keys_of(&current.manifests).into_iter().zip(&current.manifests) {
        let owner = recorded.get(&key);
        if let Some(new) = mine.get(&key) {
            not_owned_by_other(owner, &key, manager, new.1)?;
            manifests.push(new.1.clone());
            managers.insert(key.clone(), manager.to_owned());
            placed.insert(key);
        } else if owner.is_some_and(|o| o == manager) {
            // Applied by this manager before and no longer listed: removed.
        } else {
            if let Some(o) = owner {
                managers.insert(key.clone(), o.clone());
            }
            manifests.push(manifest.clone());
        }
    }
    let mut new: Vec<_> = mine.into_iter().filter(|(k, _)| !placed.contains(k)).collect();
    new.sort_by_key(|(_, (index, _))| *index);
    for (key, (_, manifest)) in new {
        manifests.push(manifest.clone());
        managers.insert(key, manager.to_owned());
    }
    let manifest_configs = merge_configs(current, recorded, incoming, manager, &mut managers)?;
    let bundle = ManifestBundle {
        manifests,
        delete_option: incoming.delete_option.clone().or_else(|| current.delete_option.clone()),
        manifest_configs,
        executor: incoming.executor.clone().or_else(|| current.executor.clone()),
    };
    Ok(Merged { bundle, managers })
}

/// The managers of every manifest and config of `bundle` when one writer, `manager`, applies
/// all of it (a plain apply with a manager). Manifests without identity are not recorded.
pub fn claim(bundle: &ManifestBundle, manager: &str) -> BTreeMap<String, String> {
    let mut managers: BTreeMap<String, String> = keys_of(&bundle.manifests)
        .into_iter()
        .filter(|k| !k.starts_with('#'))
        .map(|k| (k, manager.to_owned()))
        .collect();
    managers.extend(bundle.manifest_configs.iter().map(|c| (config_key(c), manager.to_owned())));
    managers
}

/// The writer's manifests by identity key, with their positions.
fn writer_manifests(incoming: &ManifestBundle) -> Result<BTreeMap<String, (usize, &Value)>, MergeError> {
    let mut mine = BTreeMap::new();
    for (index, m) in incoming.manifests.iter().enumerate() {
        let id = ManifestIdentity::of(m).map_err(|message| MergeError::NoIdentity { index, message })?;
        if mine.insert(id.key(), (index, m)).is_some() {
            return Err(MergeError::Duplicate(id.to_string()));
        }
    }
    Ok(mine)
}

/// Refuses to replace what another manager recorded.
fn not_owned_by_other(
    owner: Option<&String>,
    key: &str,
    manager: &str,
    manifest: &Value,
) -> Result<(), MergeError> {
    match owner {
        Some(o) if o != manager => Err(MergeError::OwnedByOther {
            what: ManifestIdentity::of(manifest)
                .map_or_else(|_| key.to_owned(), |id| format!("manifest {id}")),
            owner: o.clone(),
            manager: manager.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// [`merge`] for manifest configs, recording their managers in `managers`.
fn merge_configs(
    current: &ManifestBundle,
    recorded: &BTreeMap<String, String>,
    incoming: &ManifestBundle,
    manager: &str,
    managers: &mut BTreeMap<String, String>,
) -> Result<Vec<ManifestConfigOption>, MergeError> {
    let mut mine: BTreeMap<String, &ManifestConfigOption> = BTreeMap::new();
    for c in &incoming.manifest_configs {
        if mine.insert(config_key(c), c).is_some() {
            return Err(MergeError::Duplicate(config_key(c)));
        }
    }
    let mut out = Vec::new();
    for c in &current.manifest_configs {
        let key = config_key(c);
        let owner = recorded.get(&key);
        if let Some(new) = mine.remove(&key) {
            if let Some(o) = owner.filter(|o| *o != manager) {
                return Err(MergeError::OwnedByOther {
                    what: key,
                    owner: o.clone(),
                    manager: manager.to_owned(),
                });
            }
            out.push(new.clone());
            managers.insert(key, manager.to_owned());
        } else if owner.is_some_and(|o| o == manager) {
            // Dropped by its manager.
        } else {
            if let Some(o) = owner {
                managers.insert(key, o.clone());
            }
            out.push(c.clone());
        }
    }
    for c in &incoming.manifest_configs {
        let key = config_key(c);
        if mine.remove(&key).is_some() {
            out.push(c.clone());
            managers.insert(key, manager.to_owned());
        }
    }
    Ok(out)
}

/// Merges `incoming` into `current` by identity without managers (what `maestro-cli build`
/// does on the client): each incoming manifest replaces the current one with its identity in
/// place or is appended; nothing is removed. Manifest configs likewise by resource identifier.
pub fn overlay(current: &ManifestBundle, incoming: &ManifestBundle) -> ManifestBundle {
    let keys = keys_of(&current.manifests);
    let mut manifests = current.manifests.clone();
    for (i, m) in incoming.manifests.iter().enumerate() {
        let key = ManifestIdentity::of(m).map_or_else(|_| format!("new#{i}"), |id| id.key());
        match keys.iter().position(|k| *k == key) {
            Some(at) => manifests[at] = m.clone(),
            None => manifests.push(m.clone()),
        }
    }
    let mut manifest_configs = current.manifest_configs.clone();
    for c in &incoming.manifest_configs {
        match manifest_configs.iter().position(|e| config_key(e) == config_key(c)) {
            Some(at) => manifest_configs[at] = c.clone(),
            None => manifest_configs.push(c.clone()),
        }
    }
    ManifestBundle {
        manifests,
        delete_option: incoming.delete_option.clone().or_else(|| current.delete_option.clone()),
        manifest_configs,
        executor: incoming.executor.clone().or_else(|| current.executor.clone()),
    }
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
