//! The agents' clusters: each agent process runs on a simulated cluster kept in a journal
//! file (`maestro agent --cluster simulated --simulated-journal FILE`), which outlives the
//! process as a real cluster outlives a killed agent pod: the restarted agent replays it and
//! finds its objects and AppliedManifestWork records as it left them. The journal has one
//! line per write that changed an object, so reading it gives each object's write history with
//! the generation the workload wrote into it (`data.gen`): what the `stale` and `duplicates`
//! invariants read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use maestro_agent::{JournalEntry, read_journal};
use serde_json::Value;

/// One consumer's cluster, as its journal file.
#[derive(Debug, Clone)]
pub struct ClusterJournal {
    path: PathBuf,
}

/// What a cluster's journal says, read at one moment.
#[derive(Debug, Default)]
pub struct ClusterView {
    /// Per ConfigMap name: its `data.gen` now (`None` for an object without one); absent when
    /// deleted or never written.
    pub current: BTreeMap<String, Option<u64>>,
    /// Per ConfigMap name: the `data.gen` of every write that changed it, in order (`None` for
    /// a deletion).
    pub history: BTreeMap<String, Vec<Option<u64>>>,
}

impl ClusterJournal {
    /// The cluster kept at `path` (the agent creates the file).
    pub fn new(path: &Path) -> ClusterJournal {
        ClusterJournal { path: path.to_owned() }
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the journal now.
    ///
    /// # Errors
    /// When the file cannot be read or holds a line that is not a journal entry.
    pub fn read(&self) -> anyhow::Result<ClusterView> {
        let mut view = ClusterView::default();
        for entry in read_journal(&self.path)? {
            match entry {
                JournalEntry::Object(object) if object["kind"] == "ConfigMap" => {
                    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                    let generation = gen_of(&object);
                    view.current.insert(name.to_owned(), generation);
                    view.history.entry(name.to_owned()).or_default().push(generation);
                }
                JournalEntry::Deleted(key) if key.kind == "ConfigMap" => {
                    view.current.remove(&key.name);
                    view.history.entry(key.name).or_default().push(None);
                }
                _ => {}
            }
        }
        Ok(view)
    }
}

impl ClusterView {
    /// The `data.gen` of ConfigMap `name`, if it exists and has one.
    pub fn generation(&self, name: &str) -> Option<u64> {
        self.current.get(name).copied().flatten()
    }
}

fn gen_of(object: &Value) -> Option<u64> {
    object.pointer("/data/gen").and_then(Value::as_str).and_then(|g| g.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use maestro_agent::ObjectKey;
    use serde_json::json;

    fn config_map(name: &str, generation: u64) -> JournalEntry {
        JournalEntry::Object(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}, "data": {"gen": generation.to_string()}}))
    }

    /// The view follows the journal: each write and deletion of a ConfigMap in order, the
    /// current generation of the ones that exist; other kinds are not part of it.
    #[test]
    fn the_view_replays_writes_and_deletions_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cluster.jsonl");
        let entries = [
            config_map("a", 1),
            config_map("b", 1),
            config_map("a", 2),
            JournalEntry::Deleted(ObjectKey::new("v1", "ConfigMap", "default", "b")),
            JournalEntry::Object(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})),
            JournalEntry::Deleted(ObjectKey::new("v1", "Secret", "default", "s")),
        ];
        let text: String = entries.iter().map(|e| serde_json::to_string(e).expect("json") + "\n").collect();
        std::fs::write(&path, text).expect("write");
        let view = ClusterJournal::new(&path).read().expect("read");
        assert_eq!(view.generation("a"), Some(2));
        assert_eq!(view.generation("b"), None);
        assert_eq!(view.history["a"], vec![Some(1), Some(2)]);
        assert_eq!(view.history["b"], vec![Some(1), None]);
        assert!(!view.history.contains_key("s"), "only ConfigMaps");
    }
}
