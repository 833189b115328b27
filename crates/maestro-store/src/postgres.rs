//! The PostgreSQL store (production): [`PostgresStore`], the SQL store of [`crate::sql`] in
//! PostgreSQL's dialect. One server instance per database until high availability lands
//! (docs/architecture.md §9); the cross-instance wake-ups below are its first part.
//!
//! Spec and status writes lock the resource row (`SELECT … FOR UPDATE`), so concurrent writers
//! of one resource serialize; resource creation holds a key-share lock on the consumer row (the
//! foreign key's) so a concurrent consumer delete cannot slip in between. Lists are bound as
//! arrays (`= ANY($1)`); a creation group is one statement (its resources and their outbox rows,
//! a data-modifying `WITH`, in one round trip), and so are a status group's update, sequence
//! lock and event rows.
//!
//! Status event rows are read with a cursor (`status_events_after`), so their `seq`s must
//! become visible in order: appends take a transaction-scoped advisory lock
//! ([`STATUS_SEQ_LOCK`]) right before the insert and hold it through commit. Spec outbox rows
//! are read as "pending", not by cursor, and need no such lock.
//!
//! Commits wake this process's feed readers in process (`crate::feed`). Other server instances
//! sharing the database (HA) hear of them through `LISTEN`/`NOTIFY` on [`SPEC_CHANNEL`] and
//! [`STATUS_CHANNEL`], the payload naming the notifying store (a store ignores its own): a task
//! per store LISTENs on a connection of its own and wakes the feeds; another NOTIFYs after
//! commits, at most once per channel per [`ANNOUNCE_EVERY`], in a transaction of its own with
//! asynchronous commit. The data transactions never NOTIFY themselves: a transaction that
//! notifies takes PostgreSQL's notification queue lock at commit and holds it through its WAL
//! flush, so every such commit would wait for the one before it and none could share a flush;
//! and no write waits for the announcement. A lost announcement (a crash right after a commit,
//! the database unreachable) delays the other instances' readers until their periodic sweep.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgConnection, PgHasArrayType, PgListener, PgPoolOptions, PgQueryResult, PgTypeInfo,
};
use sqlx::{Encode, PgPool, Postgres, Type};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::Result;
use crate::feed::{Signals, fire};
use crate::instances::{CLAIM_LEASE, ms};
use crate::sql::{CreateRows, List, NO_PAYLOAD, Returned, SqlStore, StatusRows, sealed};

/// The PostgreSQL [`crate::Store`]. Cheap to share behind an `Arc`; [`SqlStore::connect`]
/// connects a pool (up to 16 connections, [`ACQUIRE_TIMEOUT`], [`STATEMENT_TIMEOUT`]) to a
/// `postgres://` URL.
pub type PostgresStore = SqlStore<Postgres>;

/// Advisory lock key (transaction scope) serializing status event appends, so `seq` order is
/// commit order (ASCII "mstatseq").
pub const STATUS_SEQ_LOCK: i64 = 0x6d73_7461_7473_6571;
/// Pool size.
const POOL_SIZE: u32 = 16;

/// The URL query parameter that sets the pool size (connections this process opens; default
/// 16): `postgres://…?max_connections=50` (`maestro server --db-max-open-connections`). It is
/// taken out of the URL before the driver reads it.
pub const MAX_CONNECTIONS_PARAM: &str = "max_connections";

/// `url` without [`MAX_CONNECTIONS_PARAM`], and the pool size it asked for.
///
/// # Errors
/// [`StoreError::Invalid`] for a size that is not a positive number.
fn pool_size(url: &str) -> Result<(String, u32)> {
    let Ok(mut parsed) = url::Url::parse(url) else { return Ok((url.to_owned(), POOL_SIZE)) };
    let (mut size, mut kept) = (POOL_SIZE, Vec::new());
    for (k, v) in parsed.query_pairs().into_owned() {
        if k == MAX_CONNECTIONS_PARAM {
            size = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                crate::StoreError::Invalid(format!(
                    "{MAX_CONNECTIONS_PARAM}={v:?} in the database URL is not a positive number"
                ))
            })?;
        } else {
            kept.push((k, v));
        }
    }
    if size == POOL_SIZE && kept.len() == parsed.query_pairs().count() {
        return Ok((url.to_owned(), size));
    }
    parsed.set_query(None);
    if !kept.is_empty() {
        parsed.query_pairs_mut().extend_pairs(kept);
    }
    Ok((parsed.to_string(), size))
}
/// How long a request waits for a pooled connection before it fails (docs/security.md, "Bad
/// input": during a database outage requests fail fast and `/readyz` says so within 5 s).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// The server-side `statement_timeout` set on every connection unless the URL sets one
/// (`?options=-c%20statement_timeout%3D…`): no statement holds a connection longer.
pub const STATEMENT_TIMEOUT: &str = "30s";
/// The channel announcing new spec outbox rows to other server instances.
pub const SPEC_CHANNEL: &str = "maestro_spec_events";
/// The channel announcing new status event rows to other server instances.
pub const STATUS_CHANNEL: &str = "maestro_status_events";
/// The shortest time between two announcements of one store (commits in between share one).
pub const ANNOUNCE_EVERY: Duration = Duration::from_millis(10);
/// How long the listener waits before connecting again after its connection failed.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);
/// The type `json` (`pg_type.oid`).
const JSON_OID: Oid = Oid(114);

// The trait is sealed: its crate-private argument types never reach another crate.
#[allow(private_interfaces)]
impl sealed::Backend for Postgres {
    type Stamp = DateTime<Utc>;
    type Json<'a> = JsonText<'a>;
    const KIND: &'static str = "postgres";
    const SEARCH: maestro_search::Dialect = maestro_search::Dialect::Postgres;
    const ROW_LOCKS: bool = true;
    const STATUS_EVENT: &'static str = "seq, resource_id, source, consumer_name, kind, \
         payload::text AS payload, \
         status::text AS status, created_at";
    const IN_LIST: &'static str = "= ANY($1)";
    // Asynchronous commit (`synchronous_commit` off for this statement's transaction only, set
    // before the update runs): the dispatcher does not wait for a WAL flush per batch. A crash
    // may lose the last few hundred ms of marks; those rows are sent again after the restart,
    // and agents ignore a version they hold (docs/protocol.md §6.1).
    const COMPLETE_SPEC_EVENTS: &'static str = "WITH async AS \
         (SELECT set_config('synchronous_commit', 'off', true)) \
         UPDATE spec_events SET done_at = $2 FROM async WHERE done_at IS NULL AND seq = ANY($1)";
    const RESOURCE_TOTALS: bool = true;
    // The transaction's start time: one value for every row a statement touches.
    const NOW_MS: &'static str = "(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT";
    const CREATED_AT_MS: &'static str = "(EXTRACT(EPOCH FROM created_at) * 1000)::BIGINT";
    const LIST_VALUES: &'static str = "UNNEST($1) AS t(value)";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const SHARED: bool = true;
    const CREATES_AT_ONCE: bool = true;

    fn stamp(t: DateTime<Utc>) -> DateTime<Utc> {
        t
    }

    fn json(text: &str) -> JsonText<'_> {
        JsonText(text)
    }

    async fn connect(url: &str) -> Result<PgPool> {
        let (url, size) = pool_size(url)?;
        let mut options: sqlx::postgres::PgConnectOptions = url.parse()?;
        if !url.contains("statement_timeout") {
            options = options.options([("statement_timeout", STATEMENT_TIMEOUT)]);
        }
        let pool = PgPoolOptions::new().max_connections(size).acquire_timeout(ACQUIRE_TIMEOUT);
        Ok(pool.connect_with(options).await?)
    }

    async fn migrate(pool: &PgPool) -> Result<()> {
        Ok(sqlx::migrate!("../../migrations/postgres").run(pool).await?)
    }

    fn affected(done: PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn share_commits(pool: &PgPool, signals: &Arc<Signals>) -> Option<DropGuard> {
        let stop = CancellationToken::new();
        let me = uuid::Uuid::new_v4().simple().to_string();
        // One connection of its own: the listener holds it for good.
        let own = PgPoolOptions::new().max_connections(1).idle_timeout(None).max_lifetime(None);
        let own = own.acquire_timeout(ACQUIRE_TIMEOUT).connect_lazy_with((*pool.connect_options()).clone());
        tokio::spawn(listen(own, me.clone(), signals.clone(), stop.clone()));
        tokio::spawn(announce(pool.clone(), me, signals.clone(), stop.clone()));
        Some(stop.drop_guard())
    }

    /// One statement for the whole group (one round trip), the columns bound as parallel
    /// arrays: the changed rows' status columns are updated, then the sequence lock
    /// [`STATUS_SEQ_LOCK`] is taken (it reads the whole update's count first), then the event
    /// rows are appended (the insert joins the lock's row, so no `seq` is drawn before the
    /// lock is held). The lock is held until the transaction ends, so status event `seq`s
    /// become visible in increasing order and a reader's `status_events_after(cursor)` never
    /// skips a row that commits late with a smaller `seq` (only the deletions of confirmed
    /// resources follow in the transaction). The insert reads the rows as they were before the
    /// update (one statement, one snapshot): it copies only what the update leaves alone.
    async fn write_statuses<'a>(conn: &'a mut PgConnection, rows: &'a StatusRows<'a>) -> Result<Returned> {
        let StatusRows { plan, texts, now, fed } = *rows;
        // Each status text is sent once (`$1`, by write); rows and events name theirs by its
        // 1-based position, so a text both updated and appended does not travel twice.
        let position = |w: usize| i64::try_from(w).map_or(0, |w| w + 1);
        let (ids, writes, hashes, sequences): (Vec<_>, Vec<_>, Vec<_>, Vec<_>) = plan
            .updated
            .iter()
            .map(|(r, w)| (r.id.as_str(), position(*w), r.status_hash.as_deref(), r.sequence_id.as_deref()))
            .collect();
        let (event_ids, kinds, event_writes): (Vec<_>, Vec<_>, Vec<_>) = plan
            .events
            .iter()
            .map(|e| (e.resource.id.as_str(), e.kind.as_str(), position(e.write)))
            .collect();
        // The payload text only when it is fed: otherwise every row would carry it back.
        let sql = "WITH t AS MATERIALIZED (SELECT * FROM UNNEST($1::text[]::json[]) WITH ORDINALITY AS t(status, w)), \
                   updated AS (UPDATE resources AS r SET status = t.status, \
                   status_hash = u.status_hash, sequence_id = u.sequence_id, updated_at = $6 \
                   FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[]) \
                   AS u(id, w, status_hash, sequence_id) JOIN t ON t.w = u.w WHERE r.id = u.id RETURNING 1), \
                   locked AS (SELECT pg_advisory_xact_lock($7) FROM (SELECT count(*) FROM updated) AS done) \
                   INSERT INTO status_events \
                   (resource_id, source, consumer_name, kind, payload, status, created_at) \
                   SELECT r.id, r.source, r.consumer_name, e.kind, r.payload, t.status, $6 \
                   FROM UNNEST($8::text[], $9::text[], $10::int8[]) WITH ORDINALITY AS e(id, kind, w, ord) \
                   JOIN t ON t.w = e.w JOIN resources r ON r.id = e.id CROSS JOIN locked ORDER BY e.ord \
                   RETURNING seq, resource_id, CASE WHEN $11 THEN payload::text ELSE '' END";
        let q = bind!(sqlx::query_as(sql), &texts, &ids, &writes, &hashes, &sequences, now, STATUS_SEQ_LOCK);
        Ok(bind!(q, &event_ids, &kinds, &event_writes, fed).fetch_all(conn).await?)
    }

    /// One round trip instead of five (`BEGIN`, the consumers' check, two inserts, `COMMIT`):
    /// the statement is atomic on its own, its consumer test is re-checked by the foreign key
    /// (which takes the same key-share lock the step-by-step check took), and the columns are
    /// bound as parallel arrays, so every group size shares one prepared statement.
    async fn create_at_once<'a>(
        pool: &'a PgPool,
        rows: &'a CreateRows<'a>,
    ) -> Result<Vec<(crate::Resource, i64)>> {
        let CreateRows { ops, now, claimant } = *rows;
        let texts: Vec<String> = ops.iter().map(|op| op.payload.to_string()).collect();
        let column = |f: fn(&crate::NewResource) -> &str| ops.iter().map(|op| f(op)).collect::<Vec<_>>();
        let (ids, names) = (column(|op| &op.id), column(|op| &op.name));
        let (consumers, sources) = (column(|op| &op.consumer_name), column(|op| &op.source));
        let q = bind!(sqlx::query_as(CREATE_AT_ONCE.as_str()), &ids, &names, &consumers, &sources, &texts);
        let created: Vec<Created> =
            bind!(q, now, crate::SpecAction::Create.as_str(), claimant, ms(CLAIM_LEASE))
                .fetch_all(pool)
                .await?;
        Ok(created.into_iter().map(|c| (c.resource, c.seq)).collect())
    }
}

/// The statement of [`sealed::Backend::create_at_once`]: `$1`–`$5` the new rows' ids, names,
/// consumers, sources and payload texts (arrays), `$6` the time, `$7` the outbox action,
/// `$8` the claiming instance or `NULL`, `$9` the claim lease in ms.
static CREATE_AT_ONCE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH ins AS (INSERT INTO resources \
             (id, name, consumer_name, source, version, payload, created_at, updated_at) \
             SELECT v.id, v.name, v.consumer_name, v.source, 1, v.payload, $6, $6 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]::json[]) \
             WITH ORDINALITY AS v(id, name, consumer_name, source, payload, ord) \
             WHERE EXISTS (SELECT 1 FROM consumers c WHERE c.name = v.consumer_name) ORDER BY v.ord \
             ON CONFLICT (id) DO NOTHING RETURNING {NO_PAYLOAD}), \
             ev AS (INSERT INTO spec_events \
             (resource_id, consumer_name, action, version, created_at, claimed_by, claim_until_ms) \
             SELECT id, consumer_name, $7, version, created_at, $8, \
             CASE WHEN $8::text IS NULL THEN NULL ELSE {now_ms} + $9 END FROM ins \
             RETURNING seq, resource_id) \
             SELECT ins.*, ev.seq FROM ins JOIN ev ON ev.resource_id = ins.id",
        now_ms = <Postgres as sealed::Backend>::NOW_MS
    )
});

/// A resource row [`sealed::Backend::create_at_once`] inserted, with its outbox row's `seq`.
#[derive(sqlx::FromRow)]
struct Created {
    #[sqlx(flatten)]
    resource: crate::Resource,
    seq: i64,
}

/// Listens for the other instances' announcements until `stop` (the store dropped), waking
/// the feeds on each. After a lost connection it listens again [`RELISTEN_AFTER`] later (not
/// at once: a database being dropped would wait for the new connection), then wakes the feeds
/// once for the announcements it missed.
async fn listen(pool: PgPool, me: String, signals: Arc<Signals>, stop: CancellationToken) {
    let mut again = false;
    loop {
        let Some(lost) = stop.run_until_cancelled(listen_until_lost(&pool, &me, &signals, again)).await
        else {
            return;
        };
        tracing::debug!(error = ?lost, "LISTEN connection lost; listening again soon");
        again = true;
        if stop.run_until_cancelled(tokio::time::sleep(RELISTEN_AFTER)).await.is_none() {
            return;
        }
    }
}

/// One LISTEN connection's life; returns why it ended (`None`: the connection closed).
async fn listen_until_lost(pool: &PgPool, me: &str, signals: &Signals, again: bool) -> Option<sqlx::Error> {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(e) => return Some(e),
    };
    listener.eager_reconnect(false);
    if let Err(e) = listener.listen_all([SPEC_CHANNEL, STATUS_CHANNEL]).await {
        return Some(e);
    }
    if again {
        signals.wake_all();
    }
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) if n.payload() == me => {}
            Ok(Some(n)) if n.channel() == SPEC_CHANNEL => fire(&signals.spec.wake()),
            Ok(Some(_)) => fire(&signals.status.wake()),
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

/// Until `stop`, NOTIFYs the channels of the kinds this store committed since the last
/// announcement, at most once per [`ANNOUNCE_EVERY`].
async fn announce(pool: PgPool, me: String, signals: Arc<Signals>, stop: CancellationToken) {
    while stop.run_until_cancelled(signals.outbound.notified()).await.is_some() {
        let due = [
            (SPEC_CHANNEL, signals.spec.take_unannounced()),
            (STATUS_CHANNEL, signals.status.take_unannounced()),
        ];
        let channels: Vec<&str> =
            due.into_iter().filter_map(|(channel, due)| due.then_some(channel)).collect();
        if !channels.is_empty() {
            let sent = sqlx::query(
                "SELECT set_config('synchronous_commit', 'off', true), pg_notify(c, $2) \
                 FROM UNNEST($1::text[]) AS c",
            )
            .bind(&channels)
            .bind(&me)
            .execute(&pool)
            .await;
            if let Err(e) = sent {
                tracing::debug!(error = %e, "announcing commits to other server instances failed");
            }
        }
        if stop.run_until_cancelled(tokio::time::sleep(ANNOUNCE_EVERY)).await.is_none() {
            return;
        }
    }
}

/// JSON text bound as `json` (the dialect's `Json`).
#[derive(Debug, Clone, Copy)]
pub struct JsonText<'a>(&'a str);

impl Type<Postgres> for JsonText<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(JSON_OID)
    }
}

impl Encode<'_, Postgres> for JsonText<'_> {
    /// `json`'s binary form is its text: PostgreSQL validates it and stores it as sent.
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

impl<T: PgHasArrayType> Type<Postgres> for List<'_, T> {
    fn type_info() -> PgTypeInfo {
        T::array_type_info()
    }
}

impl<'q, T> Encode<'q, Postgres> for List<'_, T>
where
    for<'a> &'a [T]: Encode<'q, Postgres>,
{
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        self.0.encode_by_ref(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_size_is_taken_out_of_the_url() {
        let (url, size) = pool_size("postgres://u@h:5/db?sslmode=disable&max_connections=50").expect("size");
        assert_eq!((url.as_str(), size), ("postgres://u@h:5/db?sslmode=disable", 50));
        let (url, size) = pool_size("postgres://u@h/db?max_connections=3").expect("size");
        assert_eq!((url.as_str(), size), ("postgres://u@h/db", 3));
        let plain = "postgres://u:p@h/db?sslmode=require";
        assert_eq!(pool_size(plain).expect("size"), (plain.to_owned(), POOL_SIZE));
        assert!(pool_size("postgres://h/db?max_connections=0").is_err());
        assert!(pool_size("postgres://h/db?max_connections=many").is_err());
    }
}
