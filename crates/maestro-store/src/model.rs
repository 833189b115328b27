//! Stored rows and query types.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Consumer labels.
pub type Labels = BTreeMap<String, String>;

/// A consumer (target cluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consumer {
    /// UUID v4.
    pub id: String,
    /// Unique name (the `clustername` on the wire).
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Input of [`crate::Store::create_consumer`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewConsumer {
    /// Name; defaults to the generated id.
    pub name: Option<String>,
    /// Labels.
    pub labels: Labels,
}

/// A resource bundle row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Resource id (the `resourceid` extension).
    pub id: String,
    /// Display name (the work's `metadata.name` as the source sent it, else the id).
    pub name: String,
    /// Consumer name.
    pub consumer_name: String,
    /// Source id of the creator.
    pub source: String,
    /// Spec version: 1, +1 per spec change.
    pub version: i64,
    /// The spec CloudEvent as structured JSON.
    pub payload: Value,
    /// The latest accepted status CloudEvent as structured JSON.
    pub status: Option<Value>,
    /// The `statushash` of that status.
    pub status_hash: Option<String>,
    /// The `sequenceid` of that status.
    pub sequence_id: Option<String>,
    /// Set while the resource is being deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change (spec or status).
    pub updated_at: DateTime<Utc>,
}

/// A resource row with its stored events kept as the JSON text the database returned (not
/// parsed into trees): what [`crate::Store::list_resources_raw`] reads for the REST list,
/// where parsing thousands of events dominated the time (docs/benchmarks.md). The text may
/// hold insignificant whitespace (rows written while PostgreSQL's columns were `jsonb` do).
#[derive(Debug, Clone)]
pub struct RawResource {
    /// Resource id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Consumer name.
    pub consumer_name: String,
    /// Source id of the creator.
    pub source: String,
    /// Spec version.
    pub version: i64,
    /// The spec CloudEvent as structured JSON text.
    pub payload: Box<serde_json::value::RawValue>,
    /// The latest accepted status CloudEvent as structured JSON text.
    pub status: Option<Box<serde_json::value::RawValue>>,
    /// Set while the resource is being deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change (spec or status).
    pub updated_at: DateTime<Utc>,
}

impl RawResource {
    /// The same row with its events parsed into trees (`status_hash` and `sequence_id` are
    /// not read by [`crate::Store::list_resources_raw`] and come back `None`).
    ///
    /// # Errors
    /// When the stored text is not JSON (the database guarantees it is).
    pub fn parse(&self) -> Result<Resource, serde_json::Error> {
        Ok(Resource {
            id: self.id.clone(),
            name: self.name.clone(),
            consumer_name: self.consumer_name.clone(),
            source: self.source.clone(),
            version: self.version,
            payload: serde_json::from_str(self.payload.get())?,
            status: self.status.as_deref().map(|s| serde_json::from_str(s.get())).transpose()?,
            status_hash: None,
            sequence_id: None,
            deleted_at: self.deleted_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Input of [`crate::Store::create_resource`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewResource {
    /// Resource id (from the source's `resourceid`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Consumer name; must exist.
    pub consumer_name: String,
    /// Source id.
    pub source: String,
    /// The spec CloudEvent as structured JSON.
    pub payload: Value,
}

/// Paging shared by list queries: `page` is 1-based; `size` 0 returns only the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// 1-based page number.
    pub page: i64,
    /// Page size (0 = count only).
    pub size: i64,
}

impl Default for Paging {
    /// Page 1, size 100 (Maestro's defaults).
    fn default() -> Self {
        Paging { page: 1, size: 100 }
    }
}

/// Filters and order of [`crate::Store::list_consumers`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerQuery {
    /// Paging.
    pub paging: Paging,
    /// Exact name.
    pub name: Option<String>,
    /// Exact id.
    pub id: Option<String>,
    /// A checked search on the `consumers` table (docs/rest.md, "Search language"), joined
    /// with the exact filters by `AND`.
    pub search: Option<maestro_search::Filter>,
    /// The sort order (docs/rest.md, "Ordering"); empty means `created_at, id`. `id` always
    /// breaks ties.
    pub order: Vec<maestro_search::OrderTerm>,
}

/// Filters and order of [`crate::Store::list_resources`]; all given filters must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceQuery {
    /// Paging.
    pub paging: Paging,
    /// Exact consumer name.
    pub consumer_name: Option<String>,
    /// Exact source.
    pub source: Option<String>,
    /// Exact name.
    pub name: Option<String>,
    /// Exact id.
    pub id: Option<String>,
    /// A checked search on the `resources` table (docs/rest.md, "Search language"), joined
    /// with the exact filters by `AND`.
    pub search: Option<maestro_search::Filter>,
    /// The sort order (docs/rest.md, "Ordering"); empty means `created_at, id`. `id` always
    /// breaks ties.
    pub order: Vec<maestro_search::OrderTerm>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Total matching rows.
    pub total: i64,
    /// The page number served.
    pub page: i64,
}

/// What a spec outbox row asks the dispatcher to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpecAction {
    /// The resource was created.
    Create,
    /// The spec changed.
    Update,
    /// The resource is being deleted.
    Delete,
}

impl SpecAction {
    /// Stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecAction::Create => "Create",
            SpecAction::Update => "Update",
            SpecAction::Delete => "Delete",
        }
    }

    /// Parses stored text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Create" => SpecAction::Create,
            "Update" => SpecAction::Update,
            "Delete" => SpecAction::Delete,
            _ => return None,
        })
    }
}

/// A spec outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecEventRow {
    /// Monotonic sequence number.
    pub seq: i64,
    /// The resource.
    pub resource_id: String,
    /// Its consumer.
    pub consumer_name: String,
    /// What happened.
    pub action: SpecAction,
    /// The resource version written by that change.
    pub version: i64,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
}

/// A pending spec outbox row with its resource's current state, as the spec dispatcher
/// reads them ([`crate::Store::pending_spec_deliveries`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingSpec {
    /// The outbox row.
    pub event: SpecEventRow,
    /// The resource now; `None` when its row is gone (deletion already confirmed). Rows of
    /// one resource in a batch share it.
    pub resource: Option<std::sync::Arc<Resource>>,
}

/// The kind of a status event row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusEventKind {
    /// A new status was stored.
    StatusUpdate,
    /// The agent confirmed deletion; the resource row is gone.
    StatusDelete,
}

impl StatusEventKind {
    /// Stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusEventKind::StatusUpdate => "StatusUpdate",
            StatusEventKind::StatusDelete => "StatusDelete",
        }
    }

    /// Parses stored text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "StatusUpdate" => StatusEventKind::StatusUpdate,
            "StatusDelete" => StatusEventKind::StatusDelete,
            _ => return None,
        })
    }
}

/// A status event row: what to stream to sources.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEventRow {
    /// Monotonic sequence number.
    pub seq: i64,
    /// The resource.
    pub resource_id: String,
    /// The resource's source (who to stream it to).
    pub source: String,
    /// Its consumer.
    pub consumer_name: String,
    /// Update or delete.
    pub kind: StatusEventKind,
    /// The resource's spec CloudEvent at the time, as its stored JSON text (not parsed: the
    /// fan-out splices its bundle into the source's event as text).
    pub payload: String,
    /// The status CloudEvent, as its stored JSON text.
    pub status: String,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
}

/// Input of [`crate::Store::apply_status`]: an agent's status, already decoded and checked
/// for `originalsource` by the server.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusWrite {
    /// `resourceid`.
    pub resource_id: String,
    /// `clustername` of the event: must equal the resource's consumer.
    pub consumer_name: String,
    /// `resourceversion`: must equal the stored version (ignored for a deletion).
    pub version: i64,
    /// `sequenceid`: must be newer than the stored one (protocol.md §6.2).
    pub sequence_id: String,
    /// `statushash`.
    pub status_hash: Option<String>,
    /// The whole status CloudEvent as structured JSON.
    pub event: Value,
    /// The event's `data` (ManifestBundleStatus JSON), compared to detect unchanged statuses.
    pub data: Value,
    /// True when the status carries `Deleted=True` (protocol.md §6.3).
    pub deleted: bool,
}

/// The result of [`crate::Store::apply_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOutcome {
    /// Stored; a `StatusUpdate` event row was appended.
    Stored,
    /// Same data as the stored status; nothing written.
    Unchanged,
    /// The resource was being deleted and the agent confirmed it: the row is gone and a
    /// `StatusDelete` event row was appended.
    Deleted,
    /// No such resource (e.g. already deleted): ignored.
    UnknownResource,
    /// The event's consumer is not the resource's consumer: ignored.
    ConsumerMismatch {
        /// The resource's consumer.
        expected: String,
    },
    /// Not applied, with the reason (stale version, old sequence id, `Deleted` for a
    /// resource that is not being deleted, …).
    Stale(String),
}
