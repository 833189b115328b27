//! A simulated cluster that outlives its agent process ([`JournaledCluster`]; `maestro agent
//! --cluster simulated --simulated-journal FILE`). Every change the agent makes — an object
//! written or deleted, an AppliedManifestWork record written or removed — is appended to the
//! file as one JSON line ([`JournalEntry`]); opening the file again replays it, so a restarted
//! agent finds the cluster as its predecessor left it, as a real cluster outlives a killed
//! agent pod. The fault-injection harness (docs/reliability.md) reads the same file
//! ([`read_journal`]) to check what each cluster applied, in order.
//!
//! Each line goes out in one `write` with no fsync: a killed process loses nothing it wrote
//! (the kernel holds it); a torn last line (the machine crashed) is skipped on replay.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use super::{
    AccessReview, AppliedWorkRecord, AppliedWorkRef, ApplyMode, Cluster, ObjectKey, ObjectRef,
    ResourceMapping, SimulatedCluster, WatchContext,
};
use crate::error::ClusterError;

/// One line of a journal.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalEntry {
    /// An object as a write left it (uid, resourceVersion and fabricated status included).
    Object(Value),
    /// An object deleted.
    Deleted(ObjectKey),
    /// An AppliedManifestWork record as written.
    Record(AppliedWorkRecord),
    /// An AppliedManifestWork record removed, by name.
    Unrecorded(String),
}

/// Why a journal cannot be read or opened.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file cannot be read, created or appended to.
    #[error("journal {path}: {source}")]
    Io {
        /// The journal.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A complete line is not a [`JournalEntry`] (the file is not a journal, or was edited).
    #[error("journal {path}, line {line}: {source}")]
    Parse {
        /// The journal.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads the entries of the journal at `path`, in order; a missing file has none. A last line
/// without its newline that does not parse (torn by a crash) is skipped.
///
/// # Errors
/// [`JournalError::Io`] when the file exists but cannot be read; [`JournalError::Parse`] for
/// a complete line that is not an entry.
pub fn read_journal(path: &Path) -> Result<Vec<JournalEntry>, JournalError> {
    read_entries(path).map(|(entries, _)| entries)
}

/// [`read_journal`], with the length in bytes of the part that holds complete lines.
fn read_entries(path: &Path) -> Result<(Vec<JournalEntry>, u64), JournalError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(source) => return Err(JournalError::Io { path: path.to_owned(), source }),
    };
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let mut entries = Vec::new();
    for (i, line) in text[..complete].lines().enumerate() {
        let entry = serde_json::from_str(line).map_err(|source| JournalError::Parse {
            path: path.to_owned(),
            line: i + 1,
            source,
        })?;
        entries.push(entry);
    }
    Ok((entries, complete as u64))
}

/// A [`SimulatedCluster`] whose changes are journaled to a file (see the module doc).
#[derive(Debug)]
pub struct JournaledCluster {
    inner: SimulatedCluster,
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl JournaledCluster {
    /// Opens the journal at `path` (created when missing), replays it and appends to it from
    /// now on; a torn last line is cut off first.
    ///
    /// # Errors
    /// [`JournalError`] when it cannot be read, replayed or opened for appending.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let inner = SimulatedCluster::new();
        let (entries, complete) = read_entries(path)?;
        for (i, entry) in entries.into_iter().enumerate() {
            replay(&inner, entry).map_err(|e| JournalError::Parse {
                path: path.to_owned(),
                line: i + 1,
                source: serde::de::Error::custom(e),
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|file| file.set_len(complete).map(|()| file))
            .map_err(|source| JournalError::Io { path: path.to_owned(), source })?;
        Ok(JournaledCluster { inner, path: path.to_owned(), file: Mutex::new(file) })
    }

    /// The cluster's current state.
    pub fn simulated(&self) -> &SimulatedCluster {
        &self.inner
    }

    fn append(&self, entry: &JournalEntry) -> Result<(), ClusterError> {
        let mut line = serde_json::to_vec(entry).map_err(|e| journal_failed(&self.path, &e))?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&line).map_err(|e| journal_failed(&self.path, &e))
    }

    fn append_record(&self, name: &str) -> Result<(), ClusterError> {
        match self.inner.record(name) {
            Some(record) => self.append(&JournalEntry::Record(record)),
            None => Ok(()),
        }
    }
}

fn journal_failed(path: &Path, e: &dyn std::fmt::Display) -> ClusterError {
    ClusterError::Api {
        status: None,
        message: format!("writing the simulated cluster's journal {}: {e}", path.display()),
    }
}

fn replay(cluster: &SimulatedCluster, entry: JournalEntry) -> Result<(), ClusterError> {
    match entry {
        JournalEntry::Object(object) => cluster.restore_object(object)?,
        JournalEntry::Deleted(key) => cluster.forget_object(&key),
        JournalEntry::Record(record) => cluster.restore_record(record),
        JournalEntry::Unrecorded(name) => cluster.forget_record(&name),
    }
    Ok(())
}

fn revision(object: Option<&Value>) -> Option<&str> {
    object.and_then(|o| o.pointer("/metadata/resourceVersion")).and_then(Value::as_str)
}

#[async_trait]
impl Cluster for JournaledCluster {
    async fn resolve(&self, api_version: &str, kind: &str) -> Result<ResourceMapping, ClusterError> {
        self.inner.resolve(api_version, kind).await
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, ClusterError> {
        self.inner.get(object).await
    }

    fn watch_kind(&self, mapping: &ResourceMapping, ctx: &WatchContext) -> bool {
        self.inner.watch_kind(mapping, ctx)
    }

    async fn apply(
        &self,
        object: &ObjectRef,
        manifest: Value,
        mode: &ApplyMode,
    ) -> Result<Value, ClusterError> {
        let before = self.inner.get(object).await?;
        let live = self.inner.apply(object, manifest, mode).await?;
        if revision(Some(&live)) != revision(before.as_ref()) {
            self.append(&JournalEntry::Object(live.clone()))?;
        }
        Ok(live)
    }

    async fn delete(&self, object: &ObjectRef, uid: Option<&str>) -> Result<bool, ClusterError> {
        let deleted = self.inner.delete(object, uid).await?;
        if deleted {
            self.append(&JournalEntry::Deleted(ObjectKey::of(object)))?;
        }
        Ok(deleted)
    }

    async fn applied_work_uid(&self, owner: &AppliedWorkRef) -> Result<Option<String>, ClusterError> {
        let known = self.inner.record(&owner.name).is_some();
        let uid = self.inner.applied_work_uid(owner).await?;
        if !known {
            self.append_record(&owner.name)?;
        }
        Ok(uid)
    }

    async fn delete_applied_work(&self, owner: &AppliedWorkRef) -> Result<(), ClusterError> {
        self.inner.delete_applied_work(owner).await?;
        self.append(&JournalEntry::Unrecorded(owner.name.clone()))
    }

    async fn review_access(&self, review: &AccessReview) -> Result<bool, ClusterError> {
        self.inner.review_access(review).await
    }

    async fn dry_run_create_as(
        &self,
        user: &str,
        object: &ObjectRef,
        manifest: &Value,
    ) -> Result<(), ClusterError> {
        self.inner.dry_run_create_as(user, object, manifest).await
    }

    async fn list_applied_works(&self, agent_id: &str) -> Result<Vec<AppliedWorkRecord>, ClusterError> {
        self.inner.list_applied_works(agent_id).await
    }

    async fn record_applied_work(&self, record: &AppliedWorkRecord) -> Result<(), ClusterError> {
        self.inner.record_applied_work(record).await?;
        self.append_record(&record.owner.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn temp_path() -> PathBuf {
        std::env::temp_dir().join(format!("maestro-journal-{}.jsonl", uuid::Uuid::new_v4()))
    }

    fn owner() -> AppliedWorkRef {
        AppliedWorkRef {
            name: "h-w1".into(),
            hub_hash: "h".into(),
            agent_id: "a1".into(),
            work_name: "w1".into(),
        }
    }

    async fn config_map(cluster: &JournaledCluster, name: &str, value: &str) -> (ObjectRef, Value) {
        let mapping = cluster.resolve("v1", "ConfigMap").await.expect("mapping");
        let object = ObjectRef { mapping, namespace: "default".into(), name: name.into() };
        let manifest = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}, "data": {"v": value}});
        let live = cluster.apply(&object, manifest, &ApplyMode::Update).await.expect("apply");
        (object, live)
    }

    /// A reopened journal gives back the objects (uid and resourceVersion kept) and records
    /// the agent left, forgets what it deleted, and numbers later writes after the replayed
    /// ones; a torn last line is skipped.
    #[tokio::test]
    async fn a_reopened_journal_restores_the_cluster() {
        let path = temp_path();
        let cluster = JournaledCluster::open(&path).expect("open");
        let (_, first) = config_map(&cluster, "a", "1").await;
        let (_, kept) = config_map(&cluster, "a", "2").await;
        assert_ne!(first["metadata"]["resourceVersion"], kept["metadata"]["resourceVersion"]);
        let (gone, _) = config_map(&cluster, "b", "1").await;
        assert!(cluster.delete(&gone, None).await.expect("delete"));
        cluster.applied_work_uid(&owner()).await.expect("record");
        let mut record = cluster.list_applied_works("a1").await.expect("list").remove(0);
        record.store_identity = Some("store-a".into());
        record.generation = Some(2);
        cluster.record_applied_work(&record).await.expect("record");
        drop(cluster);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"object\":"))
            .expect("torn");

        let again = JournaledCluster::open(&path).expect("reopen");
        assert_eq!(again.simulated().object("v1", "ConfigMap", "default", "a"), Some(kept.clone()));
        assert_eq!(again.simulated().object("v1", "ConfigMap", "default", "b"), None);
        assert_eq!(again.list_applied_works("a1").await.expect("list"), vec![record]);
        let (_, next) = config_map(&again, "c", "1").await;
        let rv = |v: &Value| v["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse::<u64>().ok());
        assert!(rv(&next) > rv(&kept), "later writes come after the replayed ones");
        let entries = read_journal(&path).expect("read");
        let objects = entries.iter().filter(|e| matches!(e, JournalEntry::Object(_))).count();
        assert_eq!(objects, 4, "one line per write that changed an object");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_complete_line_that_is_not_an_entry_is_refused() {
        let path = temp_path();
        std::fs::write(&path, "{\"unknown\": 1}\n").expect("write");
        let err = JournaledCluster::open(&path).expect_err("refused");
        assert!(matches!(err, JournalError::Parse { line: 1, .. }), "{err}");
        let _ = std::fs::remove_file(&path);
    }
}
