//! The agent's in-memory work store: one [`Work`] per resource id (the ManifestWork plus its
//! AppliedManifestWork bookkeeping), and the public [`WorkSnapshot`] view of it.

use std::sync::Arc;

use maestro_api::payload::{ManifestBundle, ManifestBundleStatus};
use serde_json::{Map, Value};

use crate::cluster::ObjectRef;

/// A resource the agent applied for a work (AppliedManifestWork `status.appliedResources`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedResource {
    /// The object.
    pub object: ObjectRef,
    /// Its UID when it was applied.
    pub uid: String,
}

impl AppliedResource {
    /// Identity for garbage collection: group, resource, namespace, name (not version).
    pub(crate) fn same_target(&self, other: &ObjectRef) -> bool {
        let a = &self.object;
        a.mapping.group == other.mapping.group
            && a.mapping.resource == other.mapping.resource
            && a.namespace == other.namespace
            && a.name == other.name
    }
}

/// One work held by the agent.
#[derive(Debug, Clone)]
pub(crate) struct Work {
    pub(crate) uid: String,
    pub(crate) name: String,
    pub(crate) generation: i64,
    pub(crate) original_source: String,
    pub(crate) metadata: Map<String, Value>,
    /// The bundle of the spec it holds, shared with the reconcile snapshots taken of it (a
    /// reconcile reads it without copying its manifests).
    pub(crate) bundle: Option<Arc<ManifestBundle>>,
    pub(crate) deleting: bool,
    /// Resources deleted and `Deleted` status set: dropped once that status is published.
    pub(crate) finalized: bool,
    /// Bumped on every accepted spec change, to detect changes during a reconcile.
    pub(crate) spec_rev: u64,
    pub(crate) needs_apply: bool,
    pub(crate) status: Option<ManifestBundleStatus>,
    pub(crate) status_hash: Option<String>,
    pub(crate) published_hash: Option<String>,
    pub(crate) last_published: Option<ManifestBundleStatus>,
    pub(crate) applied: Vec<AppliedResource>,
    pub(crate) attempts: u32,
    /// The trace context of the latest spec, then of its apply: the statuses published for
    /// it carry it (docs/operations.md §4.6).
    pub(crate) trace: Option<maestro_transport::trace::TraceContext>,
    /// Set by the fleet-wipe guard (docs/operations.md §3.5): the store no longer holds this
    /// work but the agent keeps its objects; never applied nor deleted until the sources
    /// publish it again (adopted) or an operator confirms.
    pub(crate) orphaned: Option<crate::wipe_guard::Orphan>,
    /// Known only from its AppliedManifestWork record (a restarted agent): no bundle yet; the
    /// spec resync answer adopts or deletes it (docs/protocol.md §8.3).
    pub(crate) restored: bool,
    /// When the work was found gone from the source: its objects are deleted once the
    /// eviction grace period has passed since, unless a source publishes it again.
    pub(crate) eviction_start: Option<chrono::DateTime<chrono::Utc>>,
    /// The AppliedManifestWork record last written for this work.
    pub(crate) recorded: Option<crate::cluster::AppliedWorkRecord>,
}

impl Work {
    pub(crate) fn new(uid: String, generation: i64) -> Self {
        Work {
            name: uid.clone(),
            uid,
            generation,
            original_source: String::new(),
            metadata: Map::new(),
            bundle: None,
            deleting: false,
            finalized: false,
            spec_rev: 0,
            needs_apply: true,
            status: None,
            status_hash: None,
            published_hash: None,
            last_published: None,
            applied: Vec::new(),
            attempts: 0,
            trace: None,
            orphaned: None,
            restored: false,
            eviction_start: None,
            recorded: None,
        }
    }

    /// Neither applied nor deleted for now: orphaned by the fleet-wipe guard, or vanished
    /// from the source (restored from a record, or waiting for its eviction).
    pub(crate) fn on_hold(&self) -> bool {
        self.orphaned.is_some() || self.eviction_start.is_some() || self.restored
    }

    /// The bundle incarnation this work holds (`metadata.creationTimestamp` of its spec, or
    /// of its record when restored), when known.
    pub(crate) fn incarnation(&self) -> Option<&str> {
        crate::seen::incarnation(Some(&self.metadata))
            .or_else(|| self.recorded.as_ref().and_then(|r| r.incarnation.as_deref()))
    }

    /// Whether the work knows the source it came from. A work restored from its
    /// AppliedManifestWork record does not until a spec of it arrives: a status event needs
    /// `originalsource` (docs/protocol.md §3.2), and one carrying `""` would be refused by the
    /// server as nobody's, so such a work's statuses wait.
    pub(crate) fn source_known(&self) -> bool {
        !self.original_source.is_empty()
    }

    /// A restored work learns its source from a spec of it (a deletion, or a resync answer's
    /// deletion through the fleet-wipe guard): its statuses then go to that source
    /// (docs/protocol.md §3.2, §8.3). A known source is kept.
    pub(crate) fn learn_source(&mut self, source: &str) {
        if !self.source_known() {
            source.clone_into(&mut self.original_source);
        }
    }

    /// True when the current status has not been published (acknowledged by the transport).
    pub(crate) fn unpublished(&self) -> bool {
        self.status_hash.is_some() && self.status_hash != self.published_hash
    }

    pub(crate) fn snapshot(&self) -> WorkSnapshot {
        WorkSnapshot {
            id: self.uid.clone(),
            name: self.name.clone(),
            generation: self.generation,
            deleting: self.deleting,
            status: self.status.clone(),
            status_hash: self.status_hash.clone(),
            last_published: self.last_published.clone(),
            published_hash: self.published_hash.clone(),
            applied: self.applied.clone(),
            orphaned: self.orphaned.as_ref().map(|o| o.reason.to_owned()),
            restored: self.restored,
            eviction_start: self.eviction_start,
        }
    }
}

/// A read-only view of one work, from [`crate::AgentHandle`].
#[derive(Debug, Clone, PartialEq)]
pub struct WorkSnapshot {
    /// The resource id (work UID).
    pub id: String,
    /// The work name (`metadata.name`, default the resource id).
    pub name: String,
    /// The generation: the last accepted spec `resourceversion`.
    pub generation: i64,
    /// True once a delete was received.
    pub deleting: bool,
    /// The current status, once computed.
    pub status: Option<ManifestBundleStatus>,
    /// The status hash of [`WorkSnapshot::status`].
    pub status_hash: Option<String>,
    /// The last status the transport accepted.
    pub last_published: Option<ManifestBundleStatus>,
    /// The hash of [`WorkSnapshot::last_published`].
    pub published_hash: Option<String>,
    /// The resources applied for this work (the AppliedManifestWork view).
    pub applied: Vec<AppliedResource>,
    /// The reason of the `Orphaned` condition when the fleet-wipe guard orphaned this work
    /// (`StoreIdentityChanged` or `ResyncDeleteShareExceeded`, docs/operations.md §3.5).
    pub orphaned: Option<String>,
    /// Restored from its AppliedManifestWork record by a restarted agent, and not yet
    /// published again by a source (docs/protocol.md §8.3).
    pub restored: bool,
    /// When the work was found gone from the source: its objects are deleted once
    /// [`crate::AgentConfig::eviction_grace_period`] has passed since.
    pub eviction_start: Option<chrono::DateTime<chrono::Utc>>,
}
