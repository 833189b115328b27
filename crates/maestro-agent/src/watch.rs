//! `feedbackScrapeType: Watch` on the agent side (docs/protocol.md §8.5).
//!
//! After each reconcile, [`track`] records which objects of the work are watched: those of the
//! manifests whose matching manifest config says `Watch`. It asks the cluster to watch their
//! kinds ([`crate::Cluster::watch_kind`]: one watcher per kind, however many works use it) and
//! keeps a registry object → works. When the cluster reports a change of an object, the works
//! registered for it are queued (urgent); their reconcile rebuilds the status from the live
//! objects without applying anything (nothing asks for an apply). Changes of objects nobody
//! registered are dropped. A work that no longer watches an object, is deleted, or whose
//! cluster cannot watch is removed from the registry. Watched works are still polled by the
//! periodic status sync, like every other work.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use crate::agent::Shared;
use crate::cluster::{ChangeSink, WatchContext, WatchKey};
use crate::reconcile::Resolved;

/// The `feedbackScrapeType` value that asks for event-driven status (`Poll` is the default).
pub(crate) const WATCH: &str = "Watch";

/// The objects watched and the works that want them.
#[derive(Debug, Default)]
struct Registry {
    by_object: HashMap<WatchKey, BTreeSet<String>>,
    by_work: HashMap<String, BTreeSet<WatchKey>>,
    /// Kinds (group, resource) the cluster cannot watch, logged once.
    unsupported: HashSet<(String, String)>,
}

impl Registry {
    /// Replaces the objects watched for `work` by `keys` (none removes the work).
    fn set(&mut self, work: &str, keys: BTreeSet<WatchKey>) {
        let old = self.by_work.remove(work).unwrap_or_default();
        for gone in old.difference(&keys) {
            if let Some(works) = self.by_object.get_mut(gone) {
                works.remove(work);
                if works.is_empty() {
                    self.by_object.remove(gone);
                }
            }
        }
        for key in &keys {
            self.by_object.entry(key.clone()).or_default().insert(work.to_owned());
        }
        if !keys.is_empty() {
            self.by_work.insert(work.to_owned(), keys);
        }
    }
}

/// The agent's watch state: the registry and the context handed to the cluster (made on
/// first use, as it needs the agent's `Arc`).
#[derive(Debug, Default)]
pub(crate) struct Watches {
    registry: Mutex<Registry>,
    context: OnceLock<WatchContext>,
}

impl Watches {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The works registered for `key`, ordered by id.
    pub(crate) fn works_for(&self, key: &WatchKey) -> Vec<String> {
        self.lock().by_object.get(key).map(|w| w.iter().cloned().collect()).unwrap_or_default()
    }

    /// Every watched object with its works, ordered.
    pub(crate) fn snapshot(&self) -> Vec<(WatchKey, Vec<String>)> {
        let registry = self.lock();
        let mut list: Vec<(WatchKey, Vec<String>)> =
            registry.by_object.iter().map(|(k, w)| (k.clone(), w.iter().cloned().collect())).collect();
        list.sort();
        list
    }

    /// Removes work `id` from the registry (deleted, or nothing of it watched any more).
    pub(crate) fn forget(&self, id: &str) {
        let mut registry = self.lock();
        if registry.by_work.contains_key(id) {
            registry.set(id, BTreeSet::new());
        }
    }

    fn context(&self, shared: &Arc<Shared>) -> &WatchContext {
        self.context.get_or_init(|| {
            let sink = Arc::new(Sink { shared: Arc::downgrade(shared) });
            WatchContext::new(sink, shared.cancel.clone(), shared.tasks.clone())
        })
    }
}

/// Queues the works registered for each changed object. Holds the agent weakly: the cluster
/// (owned by the agent) keeps the sink.
#[derive(Debug)]
struct Sink {
    shared: Weak<Shared>,
}

impl ChangeSink for Sink {
    fn changed(&self, object: &WatchKey) {
        let Some(shared) = self.shared.upgrade() else { return };
        for id in shared.watches.works_for(object) {
            tracing::debug!(resource_id = %id, group = %object.group, resource = %object.resource,
                namespace = %object.namespace, name = %object.name, "watched object changed");
            shared.queue.add(&id);
        }
    }
}

/// Records the watched objects of work `id` after a reconcile resolved its manifests: those
/// whose config says `Watch` and whose kind the cluster can watch (it is asked to, once per
/// kind). Call without holding the works lock.
pub(crate) fn track(shared: &Arc<Shared>, id: &str, resolved: &[Resolved]) {
    let mut wanted = resolved.iter().filter(|r| r.watch).filter_map(|r| r.object.as_ref().ok()).peekable();
    if wanted.peek().is_none() {
        shared.watches.forget(id);
        return;
    }
    let ctx = shared.watches.context(shared);
    let mut keys = BTreeSet::new();
    let mut unsupported = Vec::new();
    for object in wanted {
        if shared.cluster.watch_kind(&object.mapping, ctx) {
            keys.insert(WatchKey::from(object));
        } else {
            unsupported.push((object.mapping.group.clone(), object.mapping.resource.clone()));
        }
    }
    let mut registry = shared.watches.lock();
    for kind in unsupported {
        if registry.unsupported.insert(kind.clone()) {
            tracing::info!(group = %kind.0, resource = %kind.1,
                "the cluster cannot watch this kind: feedbackScrapeType Watch falls back to polling");
        }
    }
    registry.set(id, keys);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> WatchKey {
        WatchKey { group: "".into(), resource: "configmaps".into(), namespace: "d".into(), name: name.into() }
    }

    #[test]
    fn registry_tracks_works_per_object() {
        let mut r = Registry::default();
        r.set("w1", [key("a"), key("b")].into());
        r.set("w2", [key("a")].into());
        assert_eq!(r.by_object[&key("a")].iter().collect::<Vec<_>>(), ["w1", "w2"]);
        r.set("w1", [key("b")].into());
        assert_eq!(r.by_object[&key("a")].iter().collect::<Vec<_>>(), ["w2"]);
        r.set("w2", BTreeSet::new());
        assert!(!r.by_object.contains_key(&key("a")), "nobody watches a");
        assert!(!r.by_work.contains_key("w2"));
        assert_eq!(r.by_object.len(), 1);
    }
}
