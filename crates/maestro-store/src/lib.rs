//! # maestro-store: persistence with a transactional outbox
//!
//! The [`Store`] trait and its implementation, the SQL store [`sql::SqlStore`], in two dialects:
//! [`sqlite::SqliteStore`] (embedded default: one file, or in-memory) and
//! [`postgres::PostgresStore`] (production). Readers learn of new rows through the store's
//! change feeds ([`Store::spec_changes`], [`Store::status_changes`]): in process, and on
//! PostgreSQL from other server instances too. Migrations live in `migrations/sqlite` and
//! `migrations/postgres` at the workspace root and are embedded with `sqlx::migrate!`.
//!
//! Rules every implementation keeps (docs/architecture.md §5, §6):
//! - every spec write (create, update, mark deleting) appends a spec outbox row
//!   ([`SpecEventRow`]) **in the same transaction** as the resource change;
//! - every accepted status write appends a status event row ([`StatusEventRow`]) in the same
//!   transaction;
//! - versions start at 1 and grow by one per spec change; an update naming another version
//!   is a [`StoreError::Conflict`] (0 means "latest", docs/protocol.md §6.1);
//! - deletion is soft (`deleted_at`) until the agent reports `Deleted`, then the row is removed;
//! - a failed call leaves the stored data unchanged.

/// `bind!(query, a, b, …)`: `query.bind(a).bind(b)…`, the values in parameter order.
macro_rules! bind {
    ($query:expr $(, $value:expr)* $(,)?) => {
        $query$(.bind($value))*
    };
}

mod dead_letters;
mod deleted;
mod feed;
mod group;
mod instances;
pub mod model;
pub mod postgres;
mod rules;
pub mod sql;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
mod wipe_guard;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use feed::{Change, Feed};
pub use instances::CLAIM_LEASE;
pub use model::*;
pub use wipe_guard::MAX_WIPE_CONFIRMATION;

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No row with that key.
    #[error("{kind} {key:?} not found")]
    NotFound {
        /// `consumer` or `resource`.
        kind: &'static str,
        /// The id or name looked up.
        key: String,
    },
    /// The write conflicts with the stored state (stale version, name taken, id exists,
    /// resource being deleted).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The consumer is still referenced by resources and cannot be deleted.
    #[error("consumer {0:?} still has resource bundles; delete them first")]
    ConsumerInUse(String),
    /// A resource names a consumer that does not exist.
    #[error("unknown consumer {0:?}")]
    UnknownConsumer(String),
    /// The input is invalid (e.g. a negative page).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored JSON could not be read back.
    #[error("corrupt stored JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl StoreError {
    /// True for failures that may succeed later: the database unreachable or restarting, a pool
    /// timeout, a serialization failure or deadlock, a busy SQLite file. An error the database
    /// raised about the data itself (PostgreSQL SQLSTATE classes 22 "data exception" such as a
    /// NUL byte in text, 23 integrity, 42 syntax or access; any SQLite error but BUSY, LOCKED
    /// and FULL) is permanent: retrying the same write can never succeed, and a broker that
    /// delivers in order would be stuck behind it (docs/security.md, "Bad input").
    pub fn is_retryable(&self) -> bool {
        let StoreError::Database(e) = self else { return false };
        match e {
            sqlx::Error::Database(db) => retryable_database_error(db.as_ref()),
            sqlx::Error::RowNotFound
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::Encode(_) => false,
            _ => true,
        }
    }
}

impl StoreError {
    /// True for failures that say nothing about the statement that met them: the database
    /// cannot be reached (a connection-level error: I/O, TLS, protocol, pool timed out or
    /// closed), is shutting down or refusing connections (PostgreSQL SQLSTATE class 08,
    /// 57P01–57P03, 53300), is out of disk (53100, SQLite FULL), or is busy with another writer
    /// (SQLite BUSY, LOCKED). Every outage is [retryable](Self::is_retryable); a retryable
    /// failure that is not an outage (a serialization failure, a deadlock, a statement timeout,
    /// out of memory) may belong to the write itself when it keeps coming back.
    pub fn is_outage(&self) -> bool {
        let StoreError::Database(e) = self else { return false };
        match e {
            sqlx::Error::Database(db) => outage_database_error(db.as_ref()),
            _ => self.is_retryable(),
        }
    }
}

/// [`StoreError::is_outage`] for an error the database itself reported.
fn outage_database_error(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let code = pg.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53100" | "53300");
    }
    let code = db.code().unwrap_or_default();
    code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 13))
}

/// Whether an error the database itself reported may go away: PostgreSQL SQLSTATE classes 08
/// (connection), 40 (transaction rollback), 53 (insufficient resources), 57 (operator
/// intervention) and 58 (system error); SQLite BUSY (5), LOCKED (6) and FULL (13, the disk is
/// full: like PostgreSQL's 53100, it goes away when space is freed), with their extended codes.
fn retryable_database_error(db: &dyn sqlx::error::DatabaseError) -> bool {
    let code = db.code().unwrap_or_default();
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return matches!(pg.code().get(..2), Some("08" | "40" | "53" | "57" | "58"));
    }
    code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 13))
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The persistence interface of the server. Implementations are cheap to clone behind an
/// `Arc` and safe to call concurrently.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;

    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;

    // ---- change feeds (docs/architecture.md §5) ----

    /// The feed of new spec outbox rows: the rows of this server's resource creations, each
    /// with the created resource, as [`Change::Rows`] (one committed transaction each, rows in
    /// `seq` order); [`Change::Read`] for rows to read with
    /// [`Store::pending_spec_deliveries`] instead: updates and deletions, creations not fed,
    /// and (PostgreSQL) any other server instance's. Fed rows stay pending in the outbox until
    /// [`Store::complete_spec_events`], as any other row.
    ///
    /// Only the first feed a store gives gets rows; later ones only wake-ups (a wrapping
    /// store forwards the call).
    fn spec_changes(&self) -> Feed<PendingSpec>;

    /// The feed of new status event rows: this server's as [`Change::Rows`] (one committed
    /// transaction each, in `seq` and commit order), [`Change::Read`] for rows to read with
    /// [`Store::status_events_after`] instead. A reader also reads when fed `seq`s jump (a
    /// rolled-back transaction leaves a gap; another instance's rows) and now and then (a
    /// lost wake-up). Only the first feed gets rows.
    fn status_changes(&self) -> Feed<StatusEventRow>;

    // ---- consumers ----

    /// Creates a consumer. The id is generated (UUID v4); the name defaults to the id.
    /// Errors: [`StoreError::Conflict`] when the name is taken.
    async fn create_consumer(&self, new: NewConsumer) -> Result<Consumer>;

    /// A consumer by id. Errors: [`StoreError::NotFound`].
    async fn get_consumer(&self, id: &str) -> Result<Consumer>;

    /// A consumer by name. Errors: [`StoreError::NotFound`].
    async fn get_consumer_by_name(&self, name: &str) -> Result<Consumer>;

    /// One page of consumers matching the query, in its order (default: creation time, then
    /// id). Errors: [`StoreError::Invalid`] for a bad page window.
    async fn list_consumers(&self, query: &ConsumerQuery) -> Result<Page<Consumer>>;

    /// Replaces a consumer's labels. Errors: [`StoreError::NotFound`].
    async fn set_consumer_labels(&self, id: &str, labels: Labels) -> Result<Consumer>;

    /// Deletes a consumer. Errors: [`StoreError::NotFound`]; [`StoreError::ConsumerInUse`]
    /// when any resource (even one being deleted) references it.
    async fn delete_consumer(&self, id: &str) -> Result<()>;

    // ---- resources (spec side) ----

    /// Inserts a resource at version 1 and appends a `Create` spec outbox row.
    /// Errors: [`StoreError::UnknownConsumer`]; [`StoreError::Conflict`] when the id exists.
    async fn create_resource(&self, new: NewResource) -> Result<Resource>;

    /// Replaces a resource's spec payload. `expected_version` 0 means "latest"; any other
    /// value must equal the stored version. An unchanged payload is a no-op (no version bump,
    /// no outbox row). Otherwise version + 1 and an `Update` outbox row.
    /// Errors: [`StoreError::NotFound`]; [`StoreError::Conflict`] on a stale version or when
    /// the resource is being deleted.
    async fn update_resource(
        &self,
        id: &str,
        expected_version: i64,
        payload: serde_json::Value,
    ) -> Result<Resource>;

    /// Marks a resource deleting (soft delete) and appends a `Delete` outbox row. Idempotent:
    /// an already-deleting resource is returned unchanged without a new row. `Ok(None)` when
    /// the id is unknown.
    async fn mark_deleting(&self, id: &str) -> Result<Option<Resource>>;

    /// A resource by id, including one being deleted. Errors: [`StoreError::NotFound`].
    async fn get_resource(&self, id: &str) -> Result<Resource>;

    /// The resources with these ids that exist (including deleting ones), in no particular
    /// order; unknown ids are left out. One query, however many ids (the spec dispatcher reads
    /// a whole outbox batch's resources with it).
    async fn get_resources(&self, ids: &[String]) -> Result<Vec<Resource>>;

    /// One page of resources (including deleting ones) matching the query, in its order
    /// (default: creation time, then id). Errors: [`StoreError::Invalid`] for a bad page
    /// window.
    async fn list_resources(&self, query: &ResourceQuery) -> Result<Page<Resource>>;

    /// The same page as [`Store::list_resources`] with the stored events as raw JSON text
    /// ([`RawResource`]), for listing many resources without parsing them.
    async fn list_resources_raw(&self, query: &ResourceQuery) -> Result<Page<RawResource>>;

    /// The ids of the same page as [`Store::list_resources`], in its order, with its total:
    /// the cheap first half of a streamed list (the rows follow with
    /// [`Store::get_resources_raw`] in chunks).
    async fn list_resource_ids(&self, query: &ResourceQuery) -> Result<Page<String>>;

    /// The resources with these ids as raw JSON text ([`RawResource`]), in no particular
    /// order; unknown ids are left out.
    async fn get_resources_raw(&self, ids: &[String]) -> Result<Vec<RawResource>>;

    /// Every resource of these consumers, including deleting ones (spec resync, status
    /// resync), oldest first (`created_at`, then id) whatever their consumer; one query, none
    /// for an empty list.
    async fn resources_for_consumers(&self, consumers: &[String]) -> Result<Vec<Resource>>;

    /// Every resource created by a source, including deleting ones (source status resync).
    async fn resources_for_source(&self, source: &str) -> Result<Vec<Resource>>;

    // ---- status side ----

    /// Applies an agent status under the acceptance rules of docs/architecture.md §5 in one
    /// transaction; see [`StatusOutcome`]. Accepted writes append a status event row.
    async fn apply_status(&self, write: StatusWrite) -> Result<StatusOutcome>;

    // ---- outbox ----

    /// Up to `limit` pending spec outbox rows, oldest first.
    async fn pending_spec_events(&self, limit: i64) -> Result<Vec<SpecEventRow>>;

    /// Up to `limit` pending spec outbox rows, oldest first, each with its resource's
    /// current state (`None` once the resource row is gone): two queries per batch instead of
    /// one resource read per row (the spec dispatcher, docs/architecture.md §5).
    async fn pending_spec_deliveries(&self, limit: i64) -> Result<Vec<PendingSpec>> {
        let events = self.pending_spec_events(limit).await?;
        with_resources(self, events).await
    }

    /// Marks spec outbox rows done.
    async fn complete_spec_events(&self, seqs: &[i64]) -> Result<()>;

    /// Up to `limit` status event rows with `seq > after`, oldest first.
    async fn status_events_after(&self, after: i64, limit: i64) -> Result<Vec<StatusEventRow>>;

    /// The highest status event `seq` (0 when none).
    async fn last_status_event_seq(&self) -> Result<i64>;

    /// Deletes status event rows with `seq <= upto`; returns how many.
    async fn prune_status_events(&self, upto: i64) -> Result<u64>;

    /// Deletes up to `limit` spec outbox rows marked done before `done_before`, oldest first;
    /// returns how many (the outbox stays bounded: docs/security.md, "Bad input"). Pending rows
    /// are never deleted.
    async fn prune_spec_events(&self, done_before: chrono::DateTime<chrono::Utc>, limit: i64) -> Result<u64>;

    // ---- dead letters (docs/security.md, "Dead letters") ----

    /// Stores an event set aside for good; returns its id. Control characters in its text
    /// fields are escaped and an event over [`MAX_DEAD_LETTER_EVENT_BYTES`] is kept as its size
    /// only, so any input can be stored.
    async fn add_dead_letter(&self, letter: NewDeadLetter) -> Result<i64>;

    /// One page of dead letters, newest first. Errors: [`StoreError::Invalid`] for a bad page
    /// window.
    async fn list_dead_letters(&self, query: &DeadLetterQuery) -> Result<Page<DeadLetter>>;

    /// One dead letter. Errors: [`StoreError::NotFound`].
    async fn get_dead_letter(&self, id: i64) -> Result<DeadLetter>;

    /// Deletes one dead letter (an operator dealt with it). Errors: [`StoreError::NotFound`].
    async fn delete_dead_letter(&self, id: i64) -> Result<()>;

    /// Deletes dead letters set aside before `before`, and all but the newest `keep`; returns
    /// how many.
    async fn prune_dead_letters(&self, before: chrono::DateTime<chrono::Utc>, keep: i64) -> Result<u64>;

    /// Checks the database answers (readiness).
    async fn ping(&self) -> Result<()>;

    /// The spec outbox backlog and the number of dead letters (the server's metrics).
    async fn backlog(&self) -> Result<Backlog>;

    // ---- the fleet-wipe guard (docs/operations.md §3.5) ----

    /// The store identity: an opaque random id (a UUID) created with the database, the same
    /// for every server instance and across restarts, another for a recreated or different
    /// database. The server puts it on its spec resync answers; agents refuse to delete works
    /// on the word of a store whose identity changed.
    async fn store_identity(&self) -> Result<String>;

    /// Records an operator's confirmation that the works the agent of `consumer` orphaned may
    /// be deleted, valid for `ttl` from now (database clock); replaces an earlier one. Returns
    /// when it ends. Errors: [`StoreError::Invalid`] for a `ttl` over 30 days.
    async fn confirm_wipe(&self, consumer: &str, ttl: Duration) -> Result<chrono::DateTime<chrono::Utc>>;

    /// Whether a confirmation of [`Store::confirm_wipe`] for `consumer` holds now.
    async fn wipe_confirmed(&self, consumer: &str) -> Result<bool>;

    // ---- deleted bundles (docs/protocol.md §5.6) ----

    /// The latest `limit` deletions of each consumer's bundles still remembered, by consumer
    /// name, each consumer's newest first; one query, none for an empty list. A bundle is
    /// remembered from the moment its agent's `Deleted` status removed its row
    /// ([`Store::apply_status`], same transaction) until [`Store::prune_deleted_resources`].
    async fn deleted_resources(&self, consumers: &[String], limit: i64) -> Result<Vec<DeletedResource>>;

    /// The remembered deletion of bundle `id`, if any (the id may be in use again: a source
    /// re-creates a bundle under the same id).
    async fn deleted_resource(&self, id: &str) -> Result<Option<DeletedResource>>;

    /// Forgets the deletions older than `keep` (database clock); returns how many.
    async fn prune_deleted_resources(&self, keep: Duration) -> Result<u64>;

    // ---- server instances (docs/architecture.md §9) ----
    // The defaults describe a store only one process uses (test wrappers); `SqlStore`
    // implements them all.

    /// Whether other server instances may share this database (PostgreSQL): the dispatcher
    /// then claims outbox rows ([`Store::claim_spec_deliveries`]) instead of taking every
    /// pending one. Default false.
    fn is_shared(&self) -> bool {
        false
    }

    /// The server instance registered with this store ([`Store::register_instance`]), if any.
    fn instance_id(&self) -> Option<String> {
        None
    }

    /// Registers this store's server instance `id` with a lease of `lease` from now and its
    /// status fan-out's cursor; from then on the store claims the spec rows it feeds to the
    /// dispatcher for it. Returns false, registering nothing, while a live instance (lease not
    /// passed) has this id. Errors: [`StoreError::Invalid`] when this store registered another
    /// id before.
    async fn register_instance(&self, id: &str, lease: Duration, status_cursor: i64) -> Result<bool> {
        let _ = (id, lease, status_cursor);
        Ok(true)
    }

    /// Renews the registered instance's lease to `lease` from now and records its status
    /// cursor. False when the lease had passed (others may have declared it dead and taken its
    /// work): register again. Errors: [`StoreError::Invalid`] when no instance is registered.
    async fn renew_instance(&self, lease: Duration, status_cursor: i64) -> Result<bool> {
        let _ = (lease, status_cursor);
        Ok(true)
    }

    /// Declares dead the instances whose lease passed, releases their outbox claims and
    /// forgets their agent streams; returns their ids.
    async fn expire_instances(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// The registered instance leaves (graceful shutdown): its claims released, its agent
    /// streams forgotten, its lease ended now. Errors: [`StoreError::Invalid`] when no
    /// instance is registered.
    async fn leave_instance(&self) -> Result<()> {
        Ok(())
    }

    /// Every known server instance, by id.
    async fn list_instances(&self) -> Result<Vec<ServerInstance>> {
        Ok(Vec::new())
    }

    /// Records that the registered instance now holds gRPC agent streams of the consumers
    /// `add`, and no longer of `remove`. Errors: [`StoreError::Invalid`] when no instance is
    /// registered.
    async fn hold_agent_streams(&self, add: &[String], remove: &[String]) -> Result<()> {
        let _ = (add, remove);
        Ok(())
    }

    /// [`Store::pending_spec_deliveries`] for one of several instances: claims up to `limit`
    /// pending rows for the registered instance (rows no live claim holds; with `held_only`,
    /// only of consumers it holds agent streams of), oldest first, with their resources.
    /// Default: [`Store::pending_spec_deliveries`].
    async fn claim_spec_deliveries(&self, limit: i64, held_only: bool) -> Result<Vec<PendingSpec>> {
        let _ = held_only;
        self.pending_spec_deliveries(limit).await
    }

    /// Releases the registered instance's claims on the pending rows `seqs` (it cannot deliver
    /// them) and tells the other instances.
    async fn release_spec_events(&self, seqs: &[i64]) -> Result<()> {
        let _ = seqs;
        Ok(())
    }

    /// Marks done the pending, unclaimed spec rows of consumers no live instance holds an agent
    /// stream of (gRPC broker: nobody can deliver them; the agent's spec resync on connect
    /// sends the state); returns how many.
    async fn complete_unheld_spec_events(&self) -> Result<u64> {
        Ok(0)
    }
}

/// `events` with their resources' current state: one read for the batch.
async fn with_resources<S: Store + ?Sized>(store: &S, events: Vec<SpecEventRow>) -> Result<Vec<PendingSpec>> {
    let mut ids: Vec<String> = events.iter().map(|e| e.resource_id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    let resources: std::collections::HashMap<String, Arc<Resource>> =
        store.get_resources(&ids).await?.into_iter().map(|r| (r.id.clone(), Arc::new(r))).collect();
    Ok(events
        .into_iter()
        .map(|event| {
            let resource = resources.get(&event.resource_id).cloned();
            PendingSpec { event, resource }
        })
        .collect())
}

/// Committed transactions a feed holds for its reader ([`Store::status_changes`],
/// [`Store::spec_changes`]) before it wakes it instead of handing over the next.
pub const FEED_CAPACITY: usize = 32;

/// One committed transaction's status event rows, in `seq` order ([`Store::status_changes`]).
pub type StatusFeedBatch = Vec<StatusEventRow>;

/// One committed transaction's spec outbox rows with their resources, in `seq` order
/// ([`Store::spec_changes`]).
pub type SpecFeedBatch = Vec<PendingSpec>;

/// A shared store.
pub type DynStore = Arc<dyn Store>;

/// Opens a store from a URL: `sqlite::memory:`, `sqlite://path/to/file.db` (created if
/// missing) or `postgres://…`. Runs migrations.
///
/// # Errors
/// [`StoreError::Invalid`] for an unknown scheme; database and migration errors.
pub async fn open(url: &str) -> Result<DynStore> {
    let store: DynStore = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(postgres::PostgresStore::connect(url).await?)
    } else if url.starts_with("sqlite:") {
        Arc::new(sqlite::SqliteStore::connect(url).await?)
    } else {
        return Err(StoreError::Invalid(format!(
            "unsupported database URL {:?}: use sqlite::memory:, sqlite://FILE or postgres://…",
            redact(url)
        )));
    };
    store.migrate().await?;
    Ok(store)
}

/// A URL with any password replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::StoreError;

    /// A full disk is SQLite's SQLITE_FULL, which goes away when space is freed: an agent's
    /// status refused by it must be retried, not set aside as a dead letter (the disk-full
    /// fault of docs/reliability.md lost statuses this way). `max_page_count` makes SQLite
    /// answer SQLITE_FULL exactly as a full file system does.
    #[tokio::test]
    async fn a_full_sqlite_database_is_retryable() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:").await.expect("connect");
        sqlx::query("CREATE TABLE t (v TEXT)").execute(&mut conn).await.expect("create");
        sqlx::query("PRAGMA max_page_count = 2").execute(&mut conn).await.expect("pragma");
        let big = "x".repeat(64 * 1024);
        let err =
            sqlx::query("INSERT INTO t VALUES (?)").bind(big).execute(&mut conn).await.expect_err("full");
        let err = StoreError::from(err);
        assert!(err.to_string().contains("full"), "{err}");
        assert!(err.is_retryable(), "{err}");
    }

    /// A constraint violation (SQLite 19) stays permanent.
    #[tokio::test]
    async fn a_constraint_violation_is_permanent() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:").await.expect("connect");
        sqlx::query("CREATE TABLE t (v TEXT NOT NULL)").execute(&mut conn).await.expect("create");
        let err = sqlx::query("INSERT INTO t VALUES (NULL)").execute(&mut conn).await.expect_err("null");
        assert!(!StoreError::from(err).is_retryable());
    }
}
