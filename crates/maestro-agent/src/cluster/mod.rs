//! The target cluster as the agent sees it (docs/architecture.md §8).
//!
//! [`Cluster`] is the narrow interface the reconciler needs: resolve a kind to its resource,
//! get an object, watch a kind (`feedbackScrapeType: Watch`, module `watching`), apply one with
//! an [`ApplyMode`], delete one with a UID precondition, and manage the AppliedManifestWork
//! owner. Implementations:
//! - [`SimulatedCluster`] (always available): an in-process cluster that stores objects and
//!   fabricates realistic status, for demos and fleet simulation;
//! - [`KubeCluster`](crate::KubeCluster) (feature `kube`): a real API server through kube-rs.

mod access;
mod journal;
mod kinds;
#[cfg(feature = "kube")]
mod kube;
#[cfg(feature = "kube")]
mod kube_access;
#[cfg(feature = "kube")]
mod kube_records;
#[cfg(feature = "kube")]
mod kube_watch;
mod simulated;
mod watching;

use std::fmt::Debug;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::ClusterError;
pub use access::AccessRule;
pub use journal::{JournalEntry, JournalError, JournaledCluster, read_journal};
pub use kinds::{known_mapping, split_api_version};
#[cfg(feature = "kube")]
pub use kube::KubeCluster;
pub use simulated::{ObjectKey, SimulatedCluster};
pub use watching::{ChangeSink, WatchContext, WatchKey};

/// The REST mapping of a kind: group, version, plural resource and scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ResourceMapping {
    /// API group (`""` for the core group).
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Lower-case plural resource, e.g. `deployments`.
    pub resource: String,
    /// True for namespaced kinds, false for cluster-scoped ones.
    pub namespaced: bool,
}

impl ResourceMapping {
    /// The `apiVersion` string: `<group>/<version>`, or `<version>` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }
}

/// One object on the cluster: its mapping plus namespace (`""` when cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ObjectRef {
    /// How the kind maps to a resource.
    pub mapping: ResourceMapping,
    /// Namespace; `""` for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = &self.mapping.group;
        let r = &self.mapping.resource;
        if self.namespace.is_empty() {
            write!(f, "{r}.{g}/{}", self.name)
        } else {
            write!(f, "{r}.{g}/{}/{}", self.namespace, self.name)
        }
    }
}

/// How an object is written (docs/protocol.md §8.2). `ReadOnly` manifests are never written, so
/// the reconciler only calls [`Cluster::get`] for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyMode {
    /// Create if missing, else update: labels, annotations and owner references are merged
    /// with the live object's, finalizers kept; nothing is written when nothing changed.
    Update,
    /// Create if missing, else only make sure the owner references of the manifest are set.
    CreateOnly,
    /// Kubernetes server-side apply with this field manager; `force` takes over conflicting
    /// fields owned by other managers.
    ServerSideApply {
        /// The field manager (protocol default `work-agent`).
        field_manager: String,
        /// Force ownership of conflicting fields.
        force: bool,
    },
}

/// The AppliedManifestWork that owns a work's resources (docs/protocol.md §8.3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedWorkRef {
    /// `<hubHash>-<workName>`.
    pub name: String,
    /// Hex SHA-256 of the hub host.
    pub hub_hash: String,
    /// The agent id.
    pub agent_id: String,
    /// The ManifestWork name on the agent (the resource id for Maestro).
    pub work_name: String,
}

/// What the agent keeps in an AppliedManifestWork besides its spec ([`AppliedWorkRef`]), so
/// that a restarted agent knows the works it applied (docs/protocol.md §8.3): the resource id,
/// store identity, applied version and incarnation (annotations), the applied resources and the eviction
/// start (OCM's `status.appliedResources` and `status.evictionStartTime`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedWorkRecord {
    /// The AppliedManifestWork.
    pub owner: AppliedWorkRef,
    /// The work's resource id (annotation [`RESOURCE_ID_ANNOTATION`]; the work name when
    /// absent).
    pub resource_id: String,
    /// The identity of the store that last published the work, when known (annotation
    /// [`STORE_IDENTITY_ANNOTATION`]).
    pub store_identity: Option<String>,
    /// The spec version (`resourceversion`) last applied, when known (annotation
    /// [`RESOURCE_VERSION_ANNOTATION`]): a restarted agent drops late specs older than it
    /// from the same store (docs/protocol.md §8.3).
    pub generation: Option<i64>,
    /// The bundle's incarnation applied, its `metadata.creationTimestamp`, when known
    /// (annotation [`CREATION_TIMESTAMP_ANNOTATION`]; docs/protocol.md §8.3).
    pub incarnation: Option<String>,
    /// The resources applied, with their UIDs. Read back from a real cluster, an entry's
    /// `mapping.kind` is empty (OCM's record has none) and `namespaced` is whether it has a
    /// namespace.
    pub applied: Vec<crate::work::AppliedResource>,
    /// When the work was found gone from the source (eviction starts), RFC 3339 UTC.
    pub eviction_start: Option<chrono::DateTime<chrono::Utc>>,
}

/// AppliedManifestWork annotation holding the work's resource id.
pub const RESOURCE_ID_ANNOTATION: &str = "maestro.open-cluster-management.io/resource-id";
/// AppliedManifestWork annotation holding the identity of the store that published the work
/// (docs/protocol.md §5.5).
pub const STORE_IDENTITY_ANNOTATION: &str = "maestro.open-cluster-management.io/store-identity";
/// AppliedManifestWork annotation holding the spec version last applied, a decimal integer
/// (docs/protocol.md §8.3).
pub const RESOURCE_VERSION_ANNOTATION: &str = "maestro.open-cluster-management.io/resource-version";
/// AppliedManifestWork annotation holding the `metadata.creationTimestamp` of the bundle
/// applied (docs/protocol.md §8.3).
pub const CREATION_TIMESTAMP_ANNOTATION: &str = "maestro.open-cluster-management.io/creation-timestamp";

/// `apiVersion` of the AppliedManifestWork owner.
pub const APPLIED_WORK_API_VERSION: &str = "work.open-cluster-management.io/v1";
/// `kind` of the AppliedManifestWork owner.
pub const APPLIED_WORK_KIND: &str = "AppliedManifestWork";

/// A question for the cluster's authorizer, as a Kubernetes `SubjectAccessReview`
/// (`authorization.k8s.io/v1`): may `user`, member of `groups`, do `verb` on the object?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessReview {
    /// The user, e.g. `system:serviceaccount:<namespace>:<name>`.
    pub user: String,
    /// The user's groups.
    pub groups: Vec<String>,
    /// The verb: `create`, `update`, `patch`, `get`, `delete`, …
    pub verb: String,
    /// The object's mapping (group, version, resource).
    pub mapping: ResourceMapping,
    /// Namespace, `""` for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// The target cluster. All methods are called concurrently from several reconcile workers.
#[async_trait]
pub trait Cluster: Send + Sync + Debug {
    /// Resolves `apiVersion`/`kind` to its resource mapping (discovery).
    ///
    /// # Errors
    /// [`ClusterError::UnknownKind`] when the cluster does not serve the kind.
    async fn resolve(&self, api_version: &str, kind: &str) -> Result<ResourceMapping, ClusterError>;

    /// Reads an object; `None` when it does not exist.
    ///
    /// # Errors
    /// [`ClusterError::Api`] on API failures.
    async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, ClusterError>;

    /// Watches the objects of `mapping`'s kind for `ctx` (`feedbackScrapeType: Watch`,
    /// docs/protocol.md §8.5): every object of the kind listed when the watch (re)starts, then
    /// added, modified or deleted, is delivered to the context's [`ChangeSink`] as a
    /// [`WatchKey`]. One watcher runs per
    /// kind (group and resource) and context, started by the first call; later calls for the
    /// same kind return at once. Watchers stop when the context is cancelled.
    ///
    /// Returns false when this cluster cannot watch (the default): the objects are then only
    /// polled. A watcher that fails later (a forbidden or broken watch) is restarted with
    /// backoff by the implementation, not reported here.
    fn watch_kind(&self, mapping: &ResourceMapping, ctx: &WatchContext) -> bool {
        let _ = (mapping, ctx);
        false
    }

    /// Writes `manifest` (already carrying the owner references the agent wants) with `mode`
    /// and returns the live object afterwards (with `metadata.uid`).
    ///
    /// # Errors
    /// [`ClusterError::Conflict`] for server-side apply conflicts; others on API failures.
    async fn apply(
        &self,
        object: &ObjectRef,
        manifest: Value,
        mode: &ApplyMode,
    ) -> Result<Value, ClusterError>;

    /// Deletes an object (background propagation) if its UID equals `uid` (when given).
    /// Returns false when the object did not exist.
    ///
    /// # Errors
    /// [`ClusterError::PreconditionFailed`] when the UID differs; others on API failures.
    async fn delete(&self, object: &ObjectRef, uid: Option<&str>) -> Result<bool, ClusterError>;

    /// Makes sure the AppliedManifestWork exists and returns its UID, used in owner
    /// references. `None` means the cluster has no AppliedManifestWork API: the agent then
    /// marks ownership with the [`crate::OWNER_ANNOTATION`] annotation instead. The default
    /// returns a UUIDv5 of the name (no object is stored).
    ///
    /// # Errors
    /// API failures.
    async fn applied_work_uid(&self, owner: &AppliedWorkRef) -> Result<Option<String>, ClusterError> {
        Ok(Some(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, owner.name.as_bytes()).to_string()))
    }

    /// Removes the AppliedManifestWork after the work's resources were deleted. Default: no-op.
    ///
    /// # Errors
    /// API failures.
    async fn delete_applied_work(&self, _owner: &AppliedWorkRef) -> Result<(), ClusterError> {
        Ok(())
    }

    /// Asks the cluster's authorizer `review` (a `SubjectAccessReview`, for a work's executor:
    /// docs/protocol.md §8.6). Default: allowed, for a cluster without authorization.
    ///
    /// # Errors
    /// API failures.
    async fn review_access(&self, review: &AccessReview) -> Result<bool, ClusterError> {
        let _ = review;
        Ok(true)
    }

    /// Creates `manifest` as `user` (impersonated) in dry-run mode, to find out whether the
    /// authorizer lets `user` write it: RBAC objects granting more than `user` holds are
    /// refused (escalation), which a `SubjectAccessReview` cannot tell. `Ok` when allowed or
    /// when the object already exists. Default: `Ok`.
    ///
    /// # Errors
    /// [`ClusterError::Api`] with status 403 when refused; other API failures.
    async fn dry_run_create_as(
        &self,
        user: &str,
        object: &ObjectRef,
        manifest: &Value,
    ) -> Result<(), ClusterError> {
        let _ = (user, object, manifest);
        Ok(())
    }

    /// The AppliedManifestWork records of agent `agent_id` (every hub hash), for a restarted
    /// agent (docs/protocol.md §8.3). Default: none (a cluster that keeps no records).
    ///
    /// # Errors
    /// API failures.
    async fn list_applied_works(&self, agent_id: &str) -> Result<Vec<AppliedWorkRecord>, ClusterError> {
        let _ = agent_id;
        Ok(Vec::new())
    }

    /// Writes `record` into its AppliedManifestWork (which [`Cluster::applied_work_uid`]
    /// created): annotations, applied resources, eviction start. Default: no-op.
    ///
    /// # Errors
    /// API failures; a missing AppliedManifestWork is not one (nothing to record on).
    async fn record_applied_work(&self, record: &AppliedWorkRecord) -> Result<(), ClusterError> {
        let _ = record;
        Ok(())
    }
}
