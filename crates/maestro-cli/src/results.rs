//! The `--results-path` file (README.md, "maestro-cli"): a [`StatusResult`] JSON written
//! atomically (temporary file in the same directory, fsync, rename) when `apply`, `delete` or
//! `wait` ends, on success, failure and timeout alike.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use maestro_api::payload::{Condition, FeedbackValue};
use maestro_client::ResourceBundle;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The outcome recorded in [`StatusResult::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultStatus {
    /// The command reached its goal (apply/wait: the condition holds; delete: done).
    Applied,
    /// The command failed (failed condition, conflict, unreachable server, bad input).
    Failed,
    /// Not finished: a timeout, or `apply` without `--watch`.
    InProgress,
}

/// One manifest of the work with its reported status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceResult {
    /// API group (empty for the core group).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The conditions the agent reported for this manifest.
    pub conditions: Vec<Condition>,
    /// The status feedback values the agent reported for this manifest.
    pub feedback: Vec<FeedbackValue>,
}

/// The results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResult {
    /// The work name.
    pub manifest_work_name: String,
    /// The consumer (cluster) name.
    pub consumer: String,
    /// The outcome.
    pub status: ResultStatus,
    /// A one-line explanation (the error message on failure).
    pub message: String,
    /// When the file was written (RFC 3339).
    pub timestamp: String,
    /// Per manifest, in spec order (empty when the work is not known).
    pub resources: Vec<ResourceResult>,
}

/// `(group, version)` of an `apiVersion`.
fn group_version(api_version: &str) -> (String, String) {
    match api_version.split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), api_version.to_owned()),
    }
}

/// The manifests of `bundle` with the per-manifest status reported for them (by ordinal).
pub fn resources(bundle: &ResourceBundle) -> Vec<ResourceResult> {
    let statuses = bundle.status.as_ref().map(|s| s.resource_status.as_slice()).unwrap_or_default();
    let text = |v: &Value, ptr: &str| v.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_owned();
    bundle
        .manifests
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (group, version) = group_version(&text(m, "/apiVersion"));
            let status = statuses.iter().find(|s| usize::try_from(s.resource_meta.ordinal).ok() == Some(i));
            ResourceResult {
                group,
                version,
                kind: text(m, "/kind"),
                namespace: text(m, "/metadata/namespace"),
                name: text(m, "/metadata/name"),
                conditions: status.map(|s| s.conditions.clone()).unwrap_or_default(),
                feedback: status.map(|s| s.status_feedback.values.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

impl StatusResult {
    /// A result stamped now, with the resources of `bundle` when known.
    pub fn new(
        name: &str,
        consumer: &str,
        status: ResultStatus,
        message: String,
        bundle: Option<&ResourceBundle>,
    ) -> Self {
        StatusResult {
            manifest_work_name: name.to_owned(),
            consumer: consumer.to_owned(),
            status,
            message,
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            resources: bundle.map(resources).unwrap_or_default(),
        }
    }
}

/// Writes `result` to `path` atomically: a temporary file in the same directory is written,
/// synced to disk and renamed over `path`, so readers see the old file, no file, or the whole
/// new one.
///
/// # Errors
/// I/O errors, naming the path.
pub fn write_atomic(path: &Path, result: &StatusResult) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new().prefix(".status-").suffix(".tmp").tempfile_in(dir)?;
        serde_json::to_writer_pretty(&mut tmp, result)?;
        tmp.write_all(b"\n")?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        // Make the rename itself durable (best effort: not every platform syncs directories).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().with_context(|| format!("writing the results file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle() -> ResourceBundle {
        serde_json::from_value(json!({
            "id": "rid", "name": "web", "consumer_name": "c1", "version": 2,
            "manifests": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns"}},
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}
            ],
            "status": {"ObservedVersion": 2, "conditions": [], "resourceStatus": [{
                "resourceMeta": {"ordinal": 0, "group": "apps", "version": "v1", "kind": "Deployment"},
                "statusFeedback": {"values": [{"name": "ready", "fieldValue": {"type": "Integer", "integer": 1}}]},
                "conditions": [{"type": "Applied", "status": "True", "lastTransitionTime": "2024-03-01T10:00:00Z", "reason": "R", "message": "m"}]
            }]}
        }))
        .expect("bundle")
    }

    #[test]
    fn resources_follow_the_manifests_with_their_status() {
        let r = StatusResult::new("web", "c1", ResultStatus::Applied, "ok".into(), Some(&bundle()));
        assert_eq!(r.resources.len(), 2);
        let d = &r.resources[0];
        assert_eq!((d.group.as_str(), d.version.as_str(), d.kind.as_str()), ("apps", "v1", "Deployment"));
        assert_eq!((d.namespace.as_str(), d.name.as_str()), ("ns", "d"));
        assert_eq!((d.conditions.len(), d.feedback.len()), (1, 1));
        let n = &r.resources[1];
        assert_eq!((n.group.as_str(), n.version.as_str(), n.namespace.as_str()), ("", "v1", ""));
        assert!(n.conditions.is_empty());
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["manifestWorkName"], "web");
        assert_eq!(v["status"], "Applied");
        assert!(chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().expect("ts")).is_ok());
    }

    /// The file is replaced whole: it parses after every write, and no temporary file is left.
    #[test]
    fn written_atomically() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("status.json");
        assert!(!path.exists());
        for (status, message) in [(ResultStatus::InProgress, "first"), (ResultStatus::Failed, "second")] {
            let r = StatusResult::new("web", "c1", status, message.into(), Some(&bundle()));
            write_atomic(&path, &r).expect("write");
            let back: StatusResult =
                serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("parses");
            assert_eq!(back, r);
        }
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(names, ["status.json"]);
        let err = write_atomic(
            &dir.path().join("missing/s.json"),
            &StatusResult::new("w", "c", ResultStatus::Failed, String::new(), None),
        );
        assert!(format!("{:#}", err.expect_err("no dir")).contains("missing/s.json"));
    }
}
