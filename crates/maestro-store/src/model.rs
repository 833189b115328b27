//! Stored rows and query types.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Consumer labels.
pub type Labels = BTreeMap<String, String>;

/// `as_str`, `parse` and `TryFrom<String>` of a unit enum stored as text, from its
/// `Variant => "text"` pairs.
macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $name {
            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }

            /// The inverse of `as_str`; `None` for any other text.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            /// [`Self::parse`]; the error names the unknown text.
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(&s).ok_or_else(|| format!("unknown {} {s:?}", stringify!($name)))
            }
        }
    };
}

/// A consumer (target cluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Consumer {
    /// UUID v4.
    pub id: String,
    /// Unique name (the `clustername` on the wire).
    pub name: String,
    /// Labels.
    #[sqlx(json)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
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
    /// The spec CloudEvent as structured JSON (`null` when a query did not read it). Shared:
    /// the rows a creation returns, the dispatcher's feed and its outgoing events refer to one
    /// tree instead of copying it at each hop.
    #[sqlx(default, try_from = "Value")]
    pub payload: Arc<Value>,
    /// The latest accepted status CloudEvent as structured JSON (`None` too when a query did
    /// not read it).
    #[sqlx(default)]
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
#[derive(Debug, Clone, sqlx::FromRow)]
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
    pub payload: StoredJson,
    /// The latest accepted status CloudEvent as structured JSON text.
    pub status: Option<StoredJson>,
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
            payload: Arc::new(serde_json::from_str(self.payload.get())?),
            status: self.status.as_ref().map(|s| serde_json::from_str(s.get())).transpose()?,
            status_hash: None,
            sequence_id: None,
            deleted_at: self.deleted_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// JSON text as the database returned it, not parsed on the way out: PostgreSQL's `json`
/// columns only hold valid JSON, and SQLite's hold what the store wrote (serialized trees).
/// Reading it as text spares a validating pass over every byte of every row of a list; a
/// reader that parses it (as [`RawResource::parse`] does) reports a JSON error should the
/// text not be JSON. Decodes from PostgreSQL `json`, `jsonb` and `text` and SQLite `TEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJson(Box<str>);

impl StoredJson {
    /// Wraps `text`, which the caller knows to be JSON (it is not checked).
    pub fn from_text(text: impl Into<Box<str>>) -> Self {
        StoredJson(text.into())
    }

    /// The stored text.
    pub fn get(&self) -> &str {
        &self.0
    }
}

impl sqlx::Type<sqlx::Postgres> for StoredJson {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("json")
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <sqlx::types::Json<()> as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            || <str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for StoredJson {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        use sqlx::{TypeInfo, ValueRef};
        let binary_jsonb = value.format() == sqlx::postgres::PgValueFormat::Binary
            && value.type_info().name().eq_ignore_ascii_case("jsonb");
        let mut bytes = value.as_bytes()?;
        if binary_jsonb {
            // jsonb's binary form is a version byte (1) and the text.
            match bytes.split_first() {
                Some((1, text)) => bytes = text,
                _ => return Err("unsupported jsonb binary format (expected version 1)".into()),
            }
        }
        Ok(StoredJson(std::str::from_utf8(bytes)?.into()))
    }
}

impl sqlx::Type<sqlx::Sqlite> for StoredJson {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <str as sqlx::Type<sqlx::Sqlite>>::type_info()
    }

    fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
        <str as sqlx::Type<sqlx::Sqlite>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for StoredJson {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        <&str as sqlx::Decode<sqlx::Sqlite>>::decode(value).map(|text| StoredJson(text.into()))
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
    /// The spec CloudEvent as structured JSON (shared with the row the creation returns).
    pub payload: Arc<Value>,
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

text_enum!(SpecAction { Create => "Create", Update => "Update", Delete => "Delete" });

/// A bundle deleted lately (docs/protocol.md §5.6): remembered from the moment its agent
/// confirmed the deletion until the retention forgets it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeletedResource {
    /// Resource id.
    pub id: String,
    /// Its consumer.
    pub consumer_name: String,
    /// Its last version.
    pub version: i64,
    /// When it was created (its incarnation, `metadata.creationTimestamp` on its specs).
    pub created_at: DateTime<Utc>,
    /// When its row was removed, ms since the Unix epoch (database clock).
    pub deleted_at_ms: i64,
}

/// A spec outbox row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SpecEventRow {
    /// Monotonic sequence number.
    pub seq: i64,
    /// The resource.
    pub resource_id: String,
    /// Its consumer.
    pub consumer_name: String,
    /// What happened.
    #[sqlx(try_from = "String")]
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

text_enum!(StatusEventKind { StatusUpdate => "StatusUpdate", StatusDelete => "StatusDelete" });

/// A status event row: what to stream to sources.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
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
    #[sqlx(try_from = "String")]
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
    /// `sequenceid`: must be newer than the stored one (docs/protocol.md §6.2).
    pub sequence_id: String,
    /// `statushash`.
    pub status_hash: Option<String>,
    /// The whole status CloudEvent as structured JSON text (stored as is). Its `data` member's
    /// text is compared with the stored status's to detect an unchanged status: the server
    /// writes both with the same serializer (docs/protocol.md §4.3).
    pub event: String,
    /// True when the status carries `Deleted=True` (docs/protocol.md §6.3).
    pub deleted: bool,
}

/// The result of [`crate::Store::apply_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOutcome {
    /// Stored; a `StatusUpdate` event row was appended.
    Stored,
    /// Same data as the stored status, reported for the same spec version; nothing written.
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

/// Where a dead letter was set aside (docs/security.md, "Dead letters").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterOrigin {
    /// An agent's status event the server could not store.
    Status,
    /// An agent's spec resync request the server refused.
    SpecResync,
    /// Any other event an agent sent that the server cannot handle.
    Agent,
    /// A spec event the broker refused for good: the bundle's change never reached the agent.
    SpecPublish,
}

// The stored (and REST) names.
text_enum!(DeadLetterOrigin {
    Status => "status",
    SpecResync => "spec_resync",
    Agent => "agent",
    SpecPublish => "spec_publish",
});

/// Input of [`crate::Store::add_dead_letter`]: an event set aside for good, with why. Text
/// fields may hold anything an attacker sent (NUL bytes, newlines, megabytes): the store
/// keeps control characters escaped and the event only up to [`MAX_DEAD_LETTER_EVENT_BYTES`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadLetter {
    /// Where it was set aside.
    pub origin: DeadLetterOrigin,
    /// The broker backend it came through or was refused by (`grpc`, `mqtt`, `pubsub`, …).
    pub broker: String,
    /// The event's `clustername` (the consumer), when it has one.
    pub consumer_name: Option<String>,
    /// The event's `resourceid`, when it has one.
    pub resource_id: Option<String>,
    /// The CloudEvent `id`.
    pub event_id: Option<String>,
    /// The CloudEvent `type`.
    pub event_type: Option<String>,
    /// Why it was set aside, for the operator (never shown to the sender).
    pub reason: String,
    /// The whole event as CloudEvents JSON text.
    pub event: String,
}

/// Events longer than this (bytes of CloudEvents JSON) are kept as their size only.
pub const MAX_DEAD_LETTER_EVENT_BYTES: usize = 64 * 1024;

/// A stored dead letter ([`crate::Store::list_dead_letters`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Row id (grows with time).
    pub id: i64,
    /// When it was set aside.
    pub received_at: DateTime<Utc>,
    /// Where it was set aside.
    pub origin: DeadLetterOrigin,
    /// The broker backend.
    pub broker: String,
    /// The consumer, when known.
    pub consumer_name: Option<String>,
    /// The resource id, when known.
    pub resource_id: Option<String>,
    /// The CloudEvent `id`.
    pub event_id: Option<String>,
    /// The CloudEvent `type`.
    pub event_type: Option<String>,
    /// Why it was set aside.
    pub reason: String,
    /// The event as CloudEvents JSON text; `None` when it was over
    /// [`MAX_DEAD_LETTER_EVENT_BYTES`].
    pub event: Option<String>,
    /// The size of the event's JSON text (bytes).
    pub event_bytes: i64,
}

/// Filters of [`crate::Store::list_dead_letters`]; newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadLetterQuery {
    /// Paging (size capped at 65,500 as every list).
    pub paging: Paging,
    /// Exact consumer name.
    pub consumer_name: Option<String>,
}

/// A server instance as the registry holds it ([`crate::Store::list_instances`],
/// docs/architecture.md §9). Times are milliseconds since the Unix epoch on the database's
/// clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ServerInstance {
    /// The instance id (`--instance-id`).
    pub id: String,
    /// When it registered (ms).
    pub started_at_ms: i64,
    /// When its lease ends unless renewed (ms); 0 after a graceful shutdown.
    pub lease_until_ms: i64,
    /// The last status event its fan-out delivered (`seq`).
    pub status_cursor: i64,
    /// Registered and its lease not passed.
    pub live: bool,
    /// Consumers it holds gRPC agent streams of.
    pub agent_consumers: i64,
}

/// The work waiting in the store, for the server's metrics ([`crate::Store::backlog`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Spec outbox rows not sent yet.
    pub pending_spec_events: i64,
    /// Age of the oldest of them, in milliseconds of the database's clock (0 when none).
    pub oldest_pending_ms: i64,
    /// Dead letters stored.
    pub dead_letters: i64,
}
