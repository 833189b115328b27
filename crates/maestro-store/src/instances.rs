//! Several server instances on one database (docs/architecture.md §9): the instance registry
//! (`server_instances`: a lease renewed by heartbeats, declared dead when it passes), spec
//! outbox claims (`spec_events.claimed_by` / `claim_until_ms`: one instance dispatches a row,
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL) and which instance holds which consumer's gRPC agent
//! streams (`agent_streams`). Every time is in milliseconds of the DATABASE's clock
//! ([`crate::sql`]'s `NOW_MS`), so the instances' own clocks need not agree. The statements
//! are plain SQL both dialects read alike; SQLite, which serves one instance, keeps the same
//! bookkeeping so one code path serves both.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Encode, FromRow, IntoArguments, Pool, Type};

use crate::sql::{Dialect, List};
use crate::{Result, ServerInstance, SpecEventRow};

/// How long a claim on spec outbox rows holds (ms) if its instance neither completes nor
/// releases them: the bound for an instance that is alive but stuck. A dead instance's claims
/// go sooner, when its lease is declared passed.
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// How long the row of an instance declared dead is kept, for operators to see (ms).
const FORGET_DEAD_AFTER_MS: i64 = 24 * 3600 * 1000;

/// The statements of one registered instance `id` on `pool`.
pub(crate) struct Instances<'a, D: Dialect> {
    pub(crate) pool: &'a Pool<D>,
    pub(crate) id: &'a str,
}

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl<D: Dialect> Instances<'_, D>
where
    D::Arguments: IntoArguments<D>,
    for<'c> &'c Pool<D>: sqlx::Executor<'c, Database = D>,
    for<'c> &'c mut D::Connection: sqlx::Executor<'c, Database = D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> List<'q, String>: Encode<'q, D> + Type<D>,
    for<'q> List<'q, i64>: Encode<'q, D> + Type<D>,
    for<'r> (String,): FromRow<'r, D::Row>,
    for<'r> ServerInstance: FromRow<'r, D::Row>,
    for<'r> SpecEventRow: FromRow<'r, D::Row>,
{
    /// Registers the instance with a lease of `lease` from now and its fan-out's status
    /// cursor. False when a live instance (lease not passed) has this id, on a database other
    /// processes share (on SQLite the only server process takes its row over: a previous run
    /// that crashed need not be waited for).
    pub(crate) async fn register(&self, lease: Duration, status_cursor: i64) -> Result<bool> {
        let now = D::NOW_MS;
        let takeover = if D::SHARED { "FALSE" } else { "TRUE" };
        let sql = format!(
            "INSERT INTO server_instances (id, ready, started_at_ms, lease_until_ms, status_cursor) \
             VALUES ($1, TRUE, {now}, {now} + $2, $3) \
             ON CONFLICT (id) DO UPDATE SET ready = TRUE, started_at_ms = excluded.started_at_ms, \
             lease_until_ms = excluded.lease_until_ms, status_cursor = excluded.status_cursor \
             WHERE server_instances.lease_until_ms < {now} OR NOT server_instances.ready OR {takeover} \
             RETURNING id"
        );
        let q = sqlx::query_as::<D, (String,)>(AssertSqlSafe(sql)).bind(self.id).bind(ms(lease));
        Ok(q.bind(status_cursor).fetch_optional(self.pool).await?.is_some())
    }

    /// Renews the lease and records the status cursor. False when the lease had passed (the
    /// instance may have been declared dead, its claims and agent streams released): register
    /// again.
    pub(crate) async fn renew(&self, lease: Duration, status_cursor: i64) -> Result<bool> {
        let now = D::NOW_MS;
        let sql = format!(
            "UPDATE server_instances SET lease_until_ms = {now} + $2, status_cursor = $3 \
             WHERE id = $1 AND ready AND lease_until_ms >= {now} RETURNING id"
        );
        let q = sqlx::query_as::<D, (String,)>(AssertSqlSafe(sql)).bind(self.id).bind(ms(lease));
        Ok(q.bind(status_cursor).fetch_optional(self.pool).await?.is_some())
    }

    /// Declares dead every instance whose lease passed (`ready` false), releases their spec
    /// outbox claims and forgets their agent streams, so live instances take over their work;
    /// forgets instances dead for a day. Returns the ids declared dead now.
    pub(crate) async fn expire(&self) -> Result<Vec<String>> {
        let now = D::NOW_MS;
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "UPDATE server_instances SET ready = FALSE WHERE ready AND lease_until_ms < {now} RETURNING id"
        );
        let dead: Vec<String> = sqlx::query_as::<D, (String,)>(AssertSqlSafe(sql))
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|(id,)| id)
            .collect();
        if !dead.is_empty() {
            let release = format!(
                "UPDATE spec_events SET claimed_by = NULL, claim_until_ms = NULL \
                 WHERE done_at IS NULL AND claimed_by {}",
                D::IN_LIST
            );
            sqlx::query(AssertSqlSafe(release)).bind(List(&dead)).execute(&mut *tx).await?;
            let streams = format!("DELETE FROM agent_streams WHERE instance_id {}", D::IN_LIST);
            sqlx::query(AssertSqlSafe(streams)).bind(List(&dead)).execute(&mut *tx).await?;
        }
        let forget = format!(
            "DELETE FROM server_instances WHERE NOT ready AND lease_until_ms < {now} - {FORGET_DEAD_AFTER_MS}"
        );
        sqlx::query(AssertSqlSafe(forget)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(dead)
    }

    /// Leaves for good (a graceful shutdown): releases this instance's claims, forgets its
    /// agent streams and ends its lease now, so the others take over at once.
    pub(crate) async fn leave(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let release = "UPDATE spec_events SET claimed_by = NULL, claim_until_ms = NULL \
                       WHERE done_at IS NULL AND claimed_by = $1";
        sqlx::query(release).bind(self.id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM agent_streams WHERE instance_id = $1")
            .bind(self.id)
            .execute(&mut *tx)
            .await?;
        let end = "UPDATE server_instances SET ready = FALSE, lease_until_ms = 0 WHERE id = $1";
        sqlx::query(end).bind(self.id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every known instance, by id (dead ones are forgotten a day after their lease passed).
    pub(crate) async fn list(&self) -> Result<Vec<ServerInstance>> {
        let now = D::NOW_MS;
        let sql = format!(
            "SELECT i.id, i.started_at_ms, i.lease_until_ms, i.status_cursor, \
             CASE WHEN i.ready AND i.lease_until_ms >= {now} THEN TRUE ELSE FALSE END AS live, \
             (SELECT COUNT(*) FROM agent_streams a WHERE a.instance_id = i.id) AS agent_consumers \
             FROM server_instances i ORDER BY i.id"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql)).fetch_all(self.pool).await?)
    }

    /// Records that this instance now holds gRPC agent streams of the consumers `add` and no
    /// longer of `remove`.
    pub(crate) async fn hold_agent_streams(&self, add: &[String], remove: &[String]) -> Result<()> {
        if !add.is_empty() {
            // `WHERE TRUE`: SQLite would read `ON CONFLICT` as a join constraint without it.
            let sql = format!(
                "INSERT INTO agent_streams (consumer_name, instance_id) \
                 SELECT value, $2 FROM {} WHERE TRUE ON CONFLICT DO NOTHING",
                D::LIST_VALUES
            );
            sqlx::query(AssertSqlSafe(sql)).bind(List(add)).bind(self.id).execute(self.pool).await?;
        }
        if !remove.is_empty() {
            let sql =
                format!("DELETE FROM agent_streams WHERE instance_id = $2 AND consumer_name {}", D::IN_LIST);
            sqlx::query(AssertSqlSafe(sql)).bind(List(remove)).bind(self.id).execute(self.pool).await?;
        }
        Ok(())
    }

    /// Claims up to `limit` pending spec outbox rows, oldest first (in `seq` order): rows no
    /// live claim holds (another instance's claim holds until its lease, or until that
    /// instance is declared dead), and with `held_only` only those of consumers this instance
    /// holds agent streams of. Rows other transactions have locked are skipped (PostgreSQL).
    pub(crate) async fn claim(&self, limit: i64, held_only: bool) -> Result<Vec<SpecEventRow>> {
        let now = D::NOW_MS;
        let held = if held_only {
            " AND consumer_name IN (SELECT consumer_name FROM agent_streams WHERE instance_id = $1)"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE spec_events SET claimed_by = $1, claim_until_ms = {now} + $2 \
             WHERE seq IN (SELECT seq FROM spec_events WHERE done_at IS NULL \
             AND (claim_until_ms IS NULL OR claim_until_ms < {now} OR claimed_by = $1){held} \
             ORDER BY seq LIMIT $3{}) RETURNING *",
            D::SKIP_LOCKED
        );
        let q = sqlx::query_as::<D, SpecEventRow>(AssertSqlSafe(sql)).bind(self.id).bind(ms(CLAIM_LEASE));
        let mut rows = q.bind(limit.max(0)).fetch_all(self.pool).await?;
        rows.sort_unstable_by_key(|r| r.seq);
        Ok(rows)
    }

    /// Releases this instance's claims on the pending rows `seqs` (it cannot deliver them).
    pub(crate) async fn release(&self, seqs: &[i64]) -> Result<()> {
        let sql = format!(
            "UPDATE spec_events SET claimed_by = NULL, claim_until_ms = NULL \
             WHERE claimed_by = $2 AND done_at IS NULL AND seq {}",
            D::IN_LIST
        );
        sqlx::query(AssertSqlSafe(sql)).bind(List(seqs)).bind(self.id).execute(self.pool).await?;
        Ok(())
    }
}

/// Marks done, at `done_at` (the dialect's stamp, bound as `$1`), the pending unclaimed spec
/// outbox rows of consumers no live instance holds an agent stream of: with the gRPC broker
/// nobody can deliver them, and the agent's spec resync on connect sends the current state.
pub(crate) fn complete_unheld_sql<D: Dialect>() -> String {
    let now = D::NOW_MS;
    format!(
        "UPDATE spec_events SET done_at = $1 WHERE done_at IS NULL \
         AND (claim_until_ms IS NULL OR claim_until_ms < {now}) \
         AND consumer_name NOT IN (SELECT a.consumer_name FROM agent_streams a \
         JOIN server_instances i ON i.id = a.instance_id WHERE i.ready AND i.lease_until_ms >= {now})"
    )
}

/// Deletes the status event rows up to `$1` that every live instance's fan-out has delivered
/// (its recorded cursor); with no live instance recorded, up to `$1`.
pub(crate) fn prune_status_events_sql<D: Dialect>() -> String {
    let now = D::NOW_MS;
    format!(
        "DELETE FROM status_events WHERE seq <= $1 AND seq <= COALESCE((SELECT MIN(status_cursor) \
         FROM server_instances WHERE ready AND lease_until_ms >= {now}), $1)"
    )
}

/// The statements of [`crate::Store::backlog`]: pending spec outbox rows, the age of the
/// oldest in ms of the database's clock (0 when none), dead letters.
pub(crate) fn backlog_sql<D: Dialect>() -> [String; 3] {
    let (now, created) = (D::NOW_MS, D::CREATED_AT_MS);
    [
        "SELECT COUNT(*) FROM spec_events WHERE done_at IS NULL".to_owned(),
        format!(
            "SELECT COALESCE(MAX({now} - {created}), 0) FROM (SELECT created_at FROM spec_events \
             WHERE done_at IS NULL ORDER BY seq LIMIT 1) oldest"
        ),
        "SELECT COUNT(*) FROM dead_letters".to_owned(),
    ]
}
