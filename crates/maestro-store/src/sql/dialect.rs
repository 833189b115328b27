//! The dialect of a [`super::SqlStore`]: the SQL differences between PostgreSQL and SQLite and
//! their set-up, as a sealed trait ([`sealed::Backend`], implemented in [`crate::postgres`] and
//! [`crate::sqlite`]), and the types its statements bind.

use chrono::{DateTime, Utc};

use crate::rules;

/// A SQL dialect the store runs on. Sealed: implemented for [`sqlx::Postgres`] and
/// [`sqlx::Sqlite`] only.
pub trait Dialect: sealed::Backend {}

impl<D: sealed::Backend> Dialect for D {}

pub(crate) mod sealed {
    //! What a dialect provides: crate-internal, so the trait is sealed (and its crate-private
    //! argument types never reach another crate).
    #![allow(unreachable_pub, private_interfaces)]

    use std::future::Future;
    use std::sync::Arc;

    use chrono::{DateTime, Utc};

    use crate::Result;
    use crate::feed::Signals;

    /// The SQL differences between the databases, and their set-up.
    pub trait Backend: sqlx::Database {
        /// [`crate::Store::kind`].
        const KIND: &'static str;
        /// The dialect of compiled searches (docs/rest.md, "Search language").
        const SEARCH: maestro_search::Dialect;
        /// A timestamp as bound: PostgreSQL `timestamptz`; SQLite RFC 3339 UTC text with
        /// fixed-width microseconds, so text order is time order.
        type Stamp: for<'q> sqlx::Encode<'q, Self> + sqlx::Type<Self> + Send;
        /// JSON text as bound for a JSON column: PostgreSQL `json` (validated and stored as
        /// sent, never parsed into `jsonb`); SQLite text.
        type Json<'a>: sqlx::Encode<'a, Self> + sqlx::Type<Self> + Send
        where
            Self: 'a;
        /// `t` as bound.
        fn stamp(t: DateTime<Utc>) -> Self::Stamp;
        /// `text` as bound.
        fn json(text: &str) -> Self::Json<'_>;
        /// Whether writers lock rows (`SELECT … FOR UPDATE`, PostgreSQL); otherwise a write
        /// transaction takes the database's write lock up front (`BEGIN IMMEDIATE`, SQLite).
        const ROW_LOCKS: bool;
        /// The columns of `status_events`, the JSON ones as text.
        const STATUS_EVENT: &'static str;
        /// Tests a column against the [`super::List`] bound as `$1`.
        const IN_LIST: &'static str;
        /// Marks done at `$2` the pending spec outbox rows whose seqs are the list `$1`.
        const COMPLETE_SPEC_EVENTS: &'static str;
        /// Whether the table `resource_totals` keeps the number of resources.
        const RESOURCE_TOTALS: bool;
        /// The database clock's now, in milliseconds since the Unix epoch (an expression).
        const NOW_MS: &'static str;
        /// A row's `created_at` in milliseconds since the Unix epoch (an expression).
        const CREATED_AT_MS: &'static str;
        /// A row source of the [`super::List`] bound as `$1`, one row per value in column
        /// `value`.
        const LIST_VALUES: &'static str;
        /// Appended to a `SELECT` that claims rows: lock them, skipping rows another
        /// transaction holds (PostgreSQL); nothing on SQLite (its writers hold the database).
        const SKIP_LOCKED: &'static str;
        /// Whether other processes (server instances) may write the database.
        const SHARED: bool;
        /// Whether a creation group is written in one statement
        /// ([`Backend::create_at_once`]); otherwise the store runs its transaction step by step.
        const CREATES_AT_ONCE: bool;

        /// Connects a pool to `url`. Errors: a malformed URL, an unreachable database.
        fn connect(url: &str) -> impl Future<Output = Result<sqlx::Pool<Self>>> + Send;

        /// Applies the pending migrations.
        fn migrate(pool: &sqlx::Pool<Self>) -> impl Future<Output = Result<()>> + Send;

        /// The number of rows a statement changed.
        fn affected(done: Self::QueryResult) -> u64;

        /// Starts telling other server instances of this store's commits and waking its feeds
        /// on theirs, until the returned sender is dropped; `None` when no other process
        /// writes the database.
        fn share_commits(
            pool: &sqlx::Pool<Self>,
            signals: &Arc<Signals>,
        ) -> Option<tokio_util::sync::DropGuard>;

        /// Writes a status group's rows: the changed rows' status columns, then the event rows
        /// in order, each copying its resource's spec payload, source and consumer inside the
        /// database. Returns each event row's `(seq, resource_id, payload text)` in any order,
        /// the payload empty unless the rows are fed.
        fn write_statuses<'a>(
            conn: &'a mut Self::Connection,
            rows: &'a super::StatusRows<'a>,
        ) -> impl Future<Output = Result<super::Returned>> + Send + 'a;

        /// Creates a group's resources and their `Create` outbox rows in ONE statement, outside
        /// any transaction of the caller's (PostgreSQL: data-modifying `WITH`); called only when
        /// [`Backend::CREATES_AT_ONCE`]. A resource is inserted only when its consumer exists
        /// and its id is new; each inserted row comes back (without its payload) with its outbox
        /// row's `seq`, in any order.
        fn create_at_once<'a>(
            pool: &'a sqlx::Pool<Self>,
            rows: &'a super::CreateRows<'a>,
        ) -> impl Future<Output = Result<Vec<(crate::Resource, i64)>>> + Send + 'a;
    }
}

/// A list bound as one parameter, matched with the dialect's `IN_LIST`: a PostgreSQL array
/// (`= ANY($1)`); SQLite JSON array text (`IN (SELECT value FROM json_each($1))`).
#[derive(Debug, Clone, Copy)]
pub struct List<'a, T>(pub &'a [T]);

/// A group of resources to create at once ([`sealed::Backend::create_at_once`]).
#[derive(Debug)]
pub(crate) struct CreateRows<'a> {
    /// The resources, ids distinct.
    pub(crate) ops: &'a [&'a crate::NewResource],
    /// The time written (`created_at`, `updated_at`).
    pub(crate) now: DateTime<Utc>,
    /// The instance claiming the outbox rows (they are fed to its dispatcher), if any.
    pub(crate) claimant: Option<&'a str>,
}

/// The `(seq, resource_id, payload text)` of each status event row a group appended.
pub(crate) type Returned = Vec<(i64, String, String)>;

/// A planned status group to write ([`sealed::Backend::write_statuses`]).
#[derive(Debug)]
pub(crate) struct StatusRows<'a> {
    /// The plan.
    pub(crate) plan: &'a rules::StatusGroupPlan,
    /// The status event text of each write the plan stores.
    pub(crate) texts: &'a [Option<&'a str>],
    /// The time written.
    pub(crate) now: DateTime<Utc>,
    /// Whether the event rows are fed (their payload text is returned).
    pub(crate) fed: bool,
}
