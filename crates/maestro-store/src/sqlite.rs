//! The embedded SQLite store: [`SqliteStore`], the SQL store of [`crate::sql`] in SQLite's
//! dialect, on one file (WAL) or an in-memory database.
//!
//! Write transactions start with `BEGIN IMMEDIATE`, so a transaction that reads then writes
//! takes the database write lock up front and never fails with an `SQLITE_BUSY` lock-upgrade
//! deadlock; concurrent writers queue on the busy timeout instead (and need no row locks).
//! Timestamps are stored as RFC 3339 UTC text with fixed-width microseconds; JSON as text;
//! lists are bound as JSON array text (`IN (SELECT value FROM json_each($1))`). A status group
//! writes its rows one statement each: they run in process, without round trips. Only this
//! process writes the database, so its feeds need nothing but the in-process wakes.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    SqliteArgumentsBuffer, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteQueryResult, SqliteTypeInfo,
};
use sqlx::{Encode, Sqlite, SqlitePool, Type};

use crate::Result;
use crate::feed::Signals;
use crate::sql::{CreateRows, List, Returned, SqlStore, StatusRows, sealed};

/// The SQLite [`crate::Store`]. Cheap to share behind an `Arc`; [`SqlStore::connect`] opens
/// `sqlite::memory:` (a private in-memory database, served by one connection so every call
/// sees the same data) or `sqlite://path` (created if missing; WAL journal, synchronous
/// FULL). Foreign keys are on; the busy timeout is 30 s.
pub type SqliteStore = SqlStore<Sqlite>;

/// The database file a `sqlite:` URL names, as sqlx reads the URL; `None` for an in-memory
/// database, another scheme, or a URL sqlx cannot parse (opening it fails later, with the
/// reason).
pub fn database_file(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_path_buf())
}

/// How long a connection waits for the write lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pool size for a file database (readers run in parallel under WAL; writers queue). Each
/// connection costs 4–7.5 MiB of RSS (its worker thread's malloc arena, page and statement
/// caches); 4 instead of 8 held 6,010 bundles in 65 instead of 87 MiB with no loss of
/// throughput on 2 cores (docs/benchmarks.md, fourth round).
const FILE_POOL_SIZE: u32 = 4;

// The trait is sealed: its crate-private argument types never reach another crate.
#[allow(private_interfaces)]
impl sealed::Backend for Sqlite {
    type Stamp = String;
    type Json<'a> = &'a str;
    const KIND: &'static str = "sqlite";
    const SEARCH: maestro_search::Dialect = maestro_search::Dialect::Sqlite;
    const ROW_LOCKS: bool = false;
    const STATUS_EVENT: &'static str = "*";
    const IN_LIST: &'static str = "IN (SELECT value FROM json_each($1))";
    const COMPLETE_SPEC_EVENTS: &'static str = "UPDATE spec_events SET done_at = $2 \
         WHERE done_at IS NULL AND seq IN (SELECT value FROM json_each($1))";
    const RESOURCE_TOTALS: bool = false;
    // Milliseconds from the Julian day number (every SQLite version has `julianday`).
    const NOW_MS: &'static str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
    const CREATED_AT_MS: &'static str = "CAST((julianday(created_at) - 2440587.5) * 86400000.0 AS INTEGER)";
    const LIST_VALUES: &'static str = "json_each($1)";
    const SKIP_LOCKED: &'static str = "";
    const SHARED: bool = false;
    // No data-modifying `WITH`; its statements run in process anyway.
    const CREATES_AT_ONCE: bool = false;

    fn stamp(t: DateTime<Utc>) -> String {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    fn json(text: &str) -> &str {
        text
    }

    /// A file pool drops a connection that comes back still "in a transaction": when a write
    /// fails with SQLITE_FULL (disk full) SQLite rolls the transaction back by itself, the
    /// driver's `ROLLBACK` then fails ("no transaction is active") and the connection's
    /// transaction depth stays at 1, so every later `BEGIN IMMEDIATE` on it would fail — the
    /// store stayed broken after the disk had room again (docs/reliability.md, disk full).
    async fn connect(url: &str) -> Result<SqlitePool> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let opts = SqliteConnectOptions::from_str(url)?.foreign_keys(true).busy_timeout(BUSY_TIMEOUT);
        let pool = match memory {
            // The in-memory database lives as long as its one connection: never recycle it.
            true => SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None),
            false => SqlitePoolOptions::new().max_connections(FILE_POOL_SIZE).before_acquire(|conn, _| {
                Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
            }),
        };
        let opts =
            if memory { opts } else { opts.create_if_missing(true).journal_mode(SqliteJournalMode::Wal) };
        Ok(pool.connect_with(opts).await?)
    }

    async fn migrate(pool: &SqlitePool) -> Result<()> {
        Ok(sqlx::migrate!("../../migrations/sqlite").run(pool).await?)
    }

    fn affected(done: SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    fn share_commits(_: &SqlitePool, _: &Arc<Signals>) -> Option<tokio_util::sync::DropGuard> {
        None
    }

    /// One statement per row: they run in process, without round trips.
    async fn write_statuses<'a>(
        conn: &'a mut SqliteConnection,
        rows: &'a StatusRows<'a>,
    ) -> Result<Returned> {
        let StatusRows { plan, texts, now, fed } = *rows;
        for (r, w) in &plan.updated {
            let sql = "UPDATE resources SET status = $2, status_hash = $3, sequence_id = $4, updated_at = $5 \
                       WHERE id = $1";
            let q = bind!(sqlx::query(sql), r.id.as_str(), texts[*w], r.status_hash.as_deref());
            bind!(q, r.sequence_id.as_deref(), Self::stamp(now)).execute(&mut *conn).await?;
        }
        let mut returned = Vec::with_capacity(plan.events.len());
        for e in &plan.events {
            // The payload text only when it is fed.
            let sql = "INSERT INTO status_events \
                       (resource_id, source, consumer_name, kind, payload, status, created_at) \
                       SELECT id, source, consumer_name, $2, payload, $3, $4 FROM resources WHERE id = $1 \
                       RETURNING seq, resource_id, CASE WHEN $5 THEN payload ELSE '' END";
            let q = bind!(sqlx::query_as(sql), e.resource.id.as_str(), e.kind.as_str(), texts[e.write]);
            returned.extend(bind!(q, Self::stamp(now), fed).fetch_optional(&mut *conn).await?);
        }
        Ok(returned)
    }

    /// Not called ([`sealed::Backend::CREATES_AT_ONCE`] is false): refuses.
    async fn create_at_once<'a>(
        _: &'a SqlitePool,
        _: &'a CreateRows<'a>,
    ) -> Result<Vec<(crate::Resource, i64)>> {
        Err(crate::StoreError::Invalid("SQLite writes a creation group step by step".into()))
    }
}

impl<T> Type<Sqlite> for List<'_, T> {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }
}

impl<T: Serialize> Encode<'_, Sqlite> for List<'_, T> {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(serde_json::to_string(self.0)?, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;

    /// After a write transaction fails with SQLITE_FULL, every connection of the pool can begin
    /// a write transaction again (the disk-full fault left one connection unable to, for good).
    /// `max_page_count` on one connection makes SQLite answer SQLITE_FULL as a full disk does.
    #[tokio::test]
    async fn a_disk_full_write_leaves_no_connection_stuck_in_a_transaction() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("full.db").display());
        let pool = <Sqlite as sealed::Backend>::connect(&url).await.expect("connect");
        sqlx::query("CREATE TABLE t (v TEXT)").execute(&pool).await.expect("create");
        let mut conn = pool.acquire().await.expect("acquire");
        sqlx::query("PRAGMA max_page_count = 3").execute(&mut *conn).await.expect("cap");
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await.expect("begin");
        sqlx::query("INSERT INTO t VALUES ('small')").execute(&mut *tx).await.expect("small insert");
        let big = "x".repeat(256 * 1024);
        let err =
            sqlx::query("INSERT INTO t VALUES (?)").bind(big).execute(&mut *tx).await.expect_err("full");
        assert!(StoreError::from(err).is_retryable());
        drop(tx);
        drop(conn);
        let mut all = Vec::new();
        for _ in 0..FILE_POOL_SIZE {
            let mut conn = pool.acquire().await.expect("acquire");
            sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
                .await
                .expect("a connection of the pool cannot begin a transaction")
                .rollback()
                .await
                .expect("rollback");
            all.push(conn);
        }
    }

    #[test]
    fn timestamps_sort_as_text() {
        let a = DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z").expect("ts").to_utc();
        let b = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.5Z").expect("ts").to_utc();
        let text = <Sqlite as sealed::Backend>::stamp;
        assert_eq!(text(a), "2024-01-02T03:04:05.000000Z");
        assert!(text(a) < text(b));
    }
}
