//! # maestro-agent: the Maestro work agent
//!
//! Receives resource bundles (ManifestWorks) for one consumer through an
//! [`maestro_transport::AgentTransport`], applies them on a [`Cluster`] and publishes their
//! status, following the OCM work agent (`docs/protocol.md` §5, §6, §8): update
//! strategies, AppliedManifestWork ownership and garbage collection, delete options, the exact
//! condition types/reasons/messages, status feedback, status and spec resync.
//!
//! Module map:
//! - [`config`]: [`AgentConfig`] and defaults.
//! - `agent`: [`Agent`] (run loop, background tasks) and [`AgentHandle`] (inspection).
//! - `intake`: the transport's event handler: accepted sources, upsert rules (§6.1), status
//!   resync (§5.3).
//! - `reconcile`: apply per strategy, garbage collection, reading back for status (§8.2–§8.3).
//! - `eviction`: AppliedManifestWork records, works restored from them by a restarted agent,
//!   and the eviction grace period of works gone from the source (§8.3).
//! - `executor`: the work's executor ServiceAccount and its access checks before each apply
//!   (§8.6).
//! - `delete`: work deletion and the `Deleting`/`Deleted` statuses (§6.3).
//! - `ignore_fields`: server-side apply `ignoreFields` and the spec hash that skips unchanged
//!   applies (§8.2).
//! - [`conditions`]: condition strings and transition-time handling (§8.4).
//! - `condition_rules`: `conditionRules` (`WellKnownConditions`, `CEL`) evaluated on the live
//!   objects, and their roll-up to the work (§8.4).
//! - [`feedback`]: `WellKnownStatus` and `JSONPaths` feedback (§8.5).
//! - `watch`: `feedbackScrapeType: Watch`: the registry of watched objects and their works,
//!   queued when the cluster reports a change (§8.5).
//! - `status`: status events, the publisher with retry, the spec resync request (§5.1).
//! - [`wipe_guard`]: the fleet-wipe guard: orphan instead of deleting works a store lost
//!   (docs/operations.md §3.5).
//! - [`cluster`]: the [`Cluster`] trait, the [`SimulatedCluster`], and (feature `kube`)
//!   [`KubeCluster`].

mod agent;
pub mod cluster;
mod condition_rules;
pub mod conditions;
pub mod config;
mod delete;
mod error;
mod eviction;
mod executor;
pub mod feedback;
mod ignore_fields;
mod intake;
pub mod metrics;
mod ownership;
mod queue;
mod reconcile;
mod seen;
mod startup_hold;
mod status;
mod watch;
pub mod wipe_guard;
mod work;

pub use agent::{Agent, AgentHandle};
#[cfg(feature = "kube")]
pub use cluster::KubeCluster;
pub use cluster::{
    AccessReview, AccessRule, AppliedWorkRecord, AppliedWorkRef, ApplyMode, ChangeSink, Cluster,
    JournalEntry, JournalError, JournaledCluster, ObjectKey, ObjectRef, ResourceMapping, SimulatedCluster,
    WatchContext, WatchKey, read_journal,
};
pub use config::AgentConfig;
pub use error::{AgentError, ClusterError, ConfigError};
pub use ownership::OWNER_ANNOTATION;
pub use work::{AppliedResource, WorkSnapshot};
