//! Watching objects for `feedbackScrapeType: Watch` (docs/protocol.md §8.5): the key of a
//! changed object ([`WatchKey`]), where a cluster delivers it ([`ChangeSink`]), what an agent
//! hands a cluster to watch for it ([`WatchContext`]), and the per-kind bookkeeping both
//! cluster implementations share ([`WatcherSet`]: one watcher per kind and context, however
//! many works or objects use the kind).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use maestro_transport::retry::{CancellationToken, TaskTracker};

use super::{ObjectRef, ResourceMapping};

/// The identity of a watched object: API group (`""` for core), lower-case plural resource,
/// namespace (`""` for cluster-scoped objects) and name. The version is not part of it: one
/// object is served in every version of its group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchKey {
    /// API group (`""` for core).
    pub group: String,
    /// Plural resource, e.g. `configmaps`.
    pub resource: String,
    /// Namespace; `""` for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl WatchKey {
    /// The key of an object of `mapping`'s kind.
    pub fn new(mapping: &ResourceMapping, namespace: &str, name: &str) -> Self {
        WatchKey {
            group: mapping.group.clone(),
            resource: mapping.resource.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl From<&ObjectRef> for WatchKey {
    fn from(o: &ObjectRef) -> Self {
        WatchKey::new(&o.mapping, &o.namespace, &o.name)
    }
}

/// Receives the keys of the objects a cluster saw added, modified or deleted. Called from the
/// cluster's watcher tasks (or, for the simulated cluster, from the writing call): it must be
/// quick and must not block.
pub trait ChangeSink: Send + Sync + Debug {
    /// One object of a watched kind changed.
    fn changed(&self, object: &WatchKey);
}

/// Next [`WatchContext`] id.
static NEXT_CONTEXT: AtomicU64 = AtomicU64::new(1);

/// What an agent hands [`super::Cluster::watch_kind`]: the sink of its changes, and its
/// cancellation token and task tracker. A cluster's watcher tasks run on the tracker and end
/// when the token is cancelled (the agent stops), so shutdown waits for them.
#[derive(Debug, Clone)]
pub struct WatchContext {
    id: u64,
    sink: Arc<dyn ChangeSink>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl WatchContext {
    /// A context delivering to `sink`, whose watchers stop when `cancel` is cancelled and run
    /// on `tasks`. Every context has its own id: the watchers of one context are not shared
    /// with another's (two agents on one cluster each get their own).
    pub fn new(sink: Arc<dyn ChangeSink>, cancel: CancellationToken, tasks: TaskTracker) -> Self {
        WatchContext { id: NEXT_CONTEXT.fetch_add(1, Ordering::Relaxed), sink, cancel, tasks }
    }

    /// The sink changes are delivered to.
    pub fn sink(&self) -> &Arc<dyn ChangeSink> {
        &self.sink
    }

    /// Cancelled when the watchers of this context must stop.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Where this context's watcher tasks are spawned.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }
}

/// One live watcher: its kind (group and resource), for one context.
type WatcherId = (u64, String, String);

/// The watchers a cluster runs: one per kind (group and resource) and [`WatchContext`].
/// Entries whose context was cancelled are dropped, so an agent started again on the same
/// cluster gets new watchers.
#[derive(Debug, Default)]
pub(crate) struct WatcherSet {
    live: Mutex<HashMap<WatcherId, WatchContext>>,
}

impl WatcherSet {
    fn lock(&self) -> MutexGuard<'_, HashMap<WatcherId, WatchContext>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a watcher of `mapping`'s kind for `ctx`. Returns true when there was none, i.e.
    /// the caller must start one now; false when one runs already.
    pub(crate) fn claim(&self, mapping: &ResourceMapping, ctx: &WatchContext) -> bool {
        let mut live = self.lock();
        live.retain(|_, c| !c.cancel.is_cancelled());
        let id = (ctx.id, mapping.group.clone(), mapping.resource.clone());
        if live.contains_key(&id) {
            return false;
        }
        live.insert(id, ctx.clone());
        true
    }

    /// The number of watchers running (contexts not cancelled).
    pub(crate) fn count(&self) -> usize {
        self.lock().values().filter(|c| !c.cancel.is_cancelled()).count()
    }

    /// Delivers a change of `key` to every live context watching its kind. Call without
    /// holding other locks: the sinks take their own.
    pub(crate) fn deliver(&self, key: &WatchKey) {
        let sinks: Vec<Arc<dyn ChangeSink>> = self
            .lock()
            .iter()
            .filter(|((_, g, r), c)| *g == key.group && *r == key.resource && !c.cancel.is_cancelled())
            .map(|(_, c)| c.sink.clone())
            .collect();
        for sink in sinks {
            sink.changed(key);
        }
    }
}
