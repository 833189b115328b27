//! The PostgreSQL store (production, HA).
//!
//! Spec and status writes lock the resource row (`SELECT … FOR UPDATE`), so concurrent writers
//! of one resource serialize; resource creation holds a key-share lock on the consumer row so a
//! concurrent consumer delete cannot slip in between.
//!
//! Commits wake this process's dispatcher and fan-out in process only. No `NOTIFY` is sent:
//! nothing LISTENs yet (cross-instance wake-ups, architecture.md §5, come with HA), and a
//! transaction that notified takes PostgreSQL's notification queue lock at commit and holds it
//! through its WAL flush, so every such commit would wait for the one before it and none
//! could share a flush.
//!
//! Status event rows are read with a cursor (`status_events_after`), so their `seq`s must
//! become visible in order: appends take a transaction-scoped advisory lock
//! ([`STATUS_SEQ_LOCK`]) right before the insert and hold it through commit. Spec outbox rows
//! are read as "pending", not by cursor, and need no such lock.
//!
//! While the server's fan-out holds the status feed ([`Store::status_feed`]), the status event
//! insert returns each row's `seq` and spec payload, and the committed rows are fed to it, so
//! it does not read them back. Likewise, while the spec dispatcher holds the spec feed
//! ([`Store::spec_feed`]), resource creations hand it their outbox rows and resources.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use maestro_search::{Dialect, Param, Piece};
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Row, Transaction};
use tokio::sync::Notify;

use crate::group::{GroupCommit, group_fn};
use crate::rules::{self, PageQuery, Signals, UpdatePlan};
use crate::{
    Consumer, ConsumerQuery, Labels, NewConsumer, NewResource, Page, PendingSpec, RawResource, Resource,
    ResourceQuery, Result, SpecAction, SpecEventRow, StatusEventRow, StatusOutcome, StatusWrite, Store,
    StoreError,
};

/// Advisory lock key (transaction scope) serializing status event appends, so `seq` order is
/// commit order (ASCII "mstatseq").
pub const STATUS_SEQ_LOCK: i64 = 0x6d73_7461_7473_6571;
/// Pool size.
const POOL_SIZE: u32 = 16;
/// How long a request waits for a pooled connection before it fails (docs/security.md, "Bad
/// input": during a database outage requests fail fast and `/readyz` says so within 5 s).
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The server-side `statement_timeout` set on every connection unless the URL sets one
/// (`?options=-c%20statement_timeout%3D…`): no statement holds a connection longer.
pub const STATEMENT_TIMEOUT: &str = "30s";

/// The PostgreSQL [`Store`]. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    signals: Signals,
    creates: GroupCommit<NewResource, Resource>,
    statuses: GroupCommit<StatusWrite, StatusOutcome>,
}

type Tx = Transaction<'static, Postgres>;

impl PostgresStore {
    /// Connects a pool (up to 16 connections, [`ACQUIRE_TIMEOUT`], [`STATEMENT_TIMEOUT`]) to a
    /// `postgres://` URL and starts the group
    /// commit writers of resource creations and statuses (on the current Tokio runtime; see
    /// the `group` module). Does not migrate.
    ///
    /// # Errors
    /// [`StoreError::Database`] for a malformed URL or when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        let mut options: sqlx::postgres::PgConnectOptions = url.parse()?;
        if !url.contains("statement_timeout") {
            options = options.options([("statement_timeout", STATEMENT_TIMEOUT)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        let signals = Signals::default();
        let ctx = (pool.clone(), signals.clone());
        let creates =
            GroupCommit::start(group_fn(ctx.clone(), |(p, sig), ops: Arc<Vec<NewResource>>| async move {
                create_group(&p, &sig, &ops).await
            }));
        let statuses = GroupCommit::start(group_fn(ctx, |(p, sig), ops: Arc<Vec<StatusWrite>>| async move {
            status_group(&p, &sig, &ops).await
        }));
        Ok(PostgresStore { pool, signals, creates, statuses })
    }

    /// The connection pool (for tests and diagnostics).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The resource rows with these ids (one query; none for no ids).
    async fn rows_with_ids(&self, ids: &[String]) -> Result<Vec<PgRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query("SELECT * FROM resources WHERE id = ANY($1)").bind(ids).fetch_all(&self.pool).await?)
    }

    async fn consumer_where(&self, column: &'static str, key: &str) -> Result<Consumer> {
        let sql = match column {
            "id" => "SELECT * FROM consumers WHERE id = $1",
            _ => "SELECT * FROM consumers WHERE name = $1",
        };
        let row = sqlx::query(sql).bind(key).fetch_optional(&self.pool).await?;
        let row = row.ok_or_else(|| StoreError::NotFound { kind: "consumer", key: key.to_owned() })?;
        consumer_from_row(&row)
    }

    async fn resources_where(&self, column: &'static str, key: &str) -> Result<Vec<Resource>> {
        let sql = match column {
            "consumer_name" => "SELECT * FROM resources WHERE consumer_name = $1 ORDER BY created_at, id",
            _ => "SELECT * FROM resources WHERE source = $1 ORDER BY created_at, id",
        };
        let rows = sqlx::query(sql).bind(key).fetch_all(&self.pool).await?;
        rows.iter().map(resource_from_row).collect()
    }

    /// The number of rows `query` matches: for an unfiltered list of resources the count the
    /// triggers of migration 0004 keep in `resource_totals` (one row read instead of a scan of
    /// every row), else `COUNT(*)`.
    async fn total(&self, table: &str, query: &PageQuery<'_>) -> Result<i64> {
        if table == "resources" && query.is_unfiltered() {
            return Ok(sqlx::query_scalar("SELECT total FROM resource_totals").fetch_one(&self.pool).await?);
        }
        let mut count = QueryBuilder::<Postgres>::new(format!("SELECT COUNT(*) FROM {table}"));
        push_where(&mut count, query);
        Ok(count.build().fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// One page of a table: exact-match filters and a checked search, in `query`'s order
    /// (default `created_at, id`; `id` always breaks ties so pages never overlap).
    async fn page<T>(
        &self,
        table: &str,
        query: PageQuery<'_>,
        map: fn(&PgRow) -> Result<T>,
    ) -> Result<Page<T>> {
        let (limit, offset) = rules::page_window(query.paging)?;
        let total = self.total(table, &query).await?;
        let mut items = Vec::new();
        if limit > 0 {
            // A deferred join: the window is found on a narrow index where one fits the order
            // (docs/rest.md, "Ordering"), so the rows skipped by OFFSET are never read whole;
            // only the page's rows are. The window's ids are renamed so the outer ORDER BY's
            // bare column names all name the table's columns.
            let order = maestro_search::order_by_sql(query.order);
            let mut q = QueryBuilder::<Postgres>::new(format!(
                "SELECT t.* FROM {table} AS t JOIN (SELECT id AS page_id FROM {table}"
            ));
            push_where(&mut q, &query);
            q.push(format!(" ORDER BY {order} LIMIT ")).push_bind(limit).push(" OFFSET ").push_bind(offset);
            q.push(format!(") AS w ON t.id = w.page_id ORDER BY {order}"));
            let rows = q.build().fetch_all(&self.pool).await?;
            items = rows.iter().map(map).collect::<Result<_>>()?;
        }
        Ok(Page { items, total, page: query.paging.page })
    }

    /// The ids of one page of a table, in `query`'s order, with the total of [`Self::page`]
    /// (the window query of its deferred join, on its own).
    async fn page_ids(&self, table: &str, query: PageQuery<'_>) -> Result<Page<String>> {
        let (limit, offset) = rules::page_window(query.paging)?;
        let total = self.total(table, &query).await?;
        let mut items = Vec::new();
        if limit > 0 {
            let order = maestro_search::order_by_sql(query.order);
            let mut q = QueryBuilder::<Postgres>::new(format!("SELECT id FROM {table}"));
            push_where(&mut q, &query);
            q.push(format!(" ORDER BY {order} LIMIT ")).push_bind(limit).push(" OFFSET ").push_bind(offset);
            items = q.build_query_scalar().fetch_all(&self.pool).await?;
        }
        Ok(Page { items, total, page: query.paging.page })
    }
}

/// Commits `tx`, then fires `signal`.
async fn commit_and_signal(tx: Tx, signal: &Notify) -> Result<()> {
    tx.commit().await?;
    Signals::fire(signal);
    Ok(())
}

/// Creates a group of resources in one transaction (group commit): one consumer lookup, one
/// multi-row insert (`ON CONFLICT (id) DO NOTHING`: an existing id is a conflict for that
/// write only), one multi-row spec outbox insert.
async fn create_group(
    pool: &PgPool,
    signals: &Signals,
    ops: &[NewResource],
) -> Result<Vec<Result<Resource>>> {
    let mut tx = pool.begin().await?;
    let mut names: Vec<&str> = ops.iter().map(|op| op.consumer_name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let known: HashSet<String> =
        sqlx::query_scalar("SELECT name FROM consumers WHERE name = ANY($1) ORDER BY name FOR KEY SHARE")
            .bind(&names)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let (answers, insert) = rules::screen_creates(ops, &known);
    if insert.is_empty() {
        return Ok(rules::answer_creates(ops, answers, &insert, HashMap::new()));
    }
    let now = rules::now();
    let mut q = QueryBuilder::<Postgres>::new(
        "INSERT INTO resources (id, name, consumer_name, source, version, payload, created_at, updated_at) ",
    );
    q.push_values(insert.iter().filter_map(|&i| ops.get(i)), |mut b, op| {
        b.push_bind(&op.id)
            .push_bind(&op.name)
            .push_bind(&op.consumer_name)
            .push_bind(&op.source)
            .push_bind(1_i64)
            .push_bind(json_text(&op.payload))
            .push_unseparated("::json")
            .push_bind(now)
            .push_bind(now);
    });
    q.push(
        " ON CONFLICT (id) DO NOTHING RETURNING id, name, consumer_name, source, version, \
         'null'::json AS payload, status, status_hash, sequence_id, deleted_at, created_at, updated_at",
    );
    let rows = q.build().fetch_all(&mut *tx).await?;
    // The payloads are the ones just written: copied, not read back and parsed.
    let payloads: HashMap<&str, &Value> = ops.iter().map(|op| (op.id.as_str(), &op.payload)).collect();
    let created = rows
        .iter()
        .map(|row| {
            let r = resource_from_row(row)?;
            let payload = payloads.get(r.id.as_str()).map_or(Value::Null, |p| (*p).clone());
            Ok(Resource { payload, ..r })
        })
        .collect::<Result<Vec<_>>>()?;
    if !created.is_empty() {
        let fed = signals.spec_feed.wanted();
        let seqs = push_create_events(&mut tx, &created, now, fed).await?;
        tx.commit().await?;
        // Fed rows need no wake; anything not fed is found pending after the signal.
        let sent = fed && feed_creations(&created, seqs, now).is_some_and(|b| signals.spec_feed.send(b));
        if !sent {
            Signals::fire(&signals.spec);
        }
    }
    let created = created.into_iter().map(|r| (r.id.clone(), r)).collect();
    Ok(rules::answer_creates(ops, answers, &insert, created))
}

/// Appends the `Create` outbox rows of `created`; with `returning`, gives each row's
/// `(seq, resource_id)` (in no particular order), otherwise nothing.
async fn push_create_events(
    tx: &mut Tx,
    created: &[Resource],
    now: DateTime<Utc>,
    returning: bool,
) -> Result<Vec<(i64, String)>> {
    let mut q = QueryBuilder::<Postgres>::new(
        "INSERT INTO spec_events (resource_id, consumer_name, action, version, created_at) ",
    );
    q.push_values(created, |mut b, r| {
        b.push_bind(&r.id)
            .push_bind(&r.consumer_name)
            .push_bind(SpecAction::Create.as_str())
            .push_bind(r.version)
            .push_bind(now);
    });
    if !returning {
        q.build().execute(&mut **tx).await?;
        return Ok(Vec::new());
    }
    q.push(" RETURNING seq, resource_id");
    Ok(q.build_query_as::<(i64, String)>().fetch_all(&mut **tx).await?)
}

/// The spec feed's batch of a committed creation group: each outbox row with its resource, in
/// `seq` order. `None` (not fed: the rows are found pending) if the returned rows do not match
/// the created resources one to one, which cannot happen.
fn feed_creations(
    created: &[Resource],
    mut seqs: Vec<(i64, String)>,
    now: DateTime<Utc>,
) -> Option<Vec<PendingSpec>> {
    if seqs.len() != created.len() {
        return None;
    }
    seqs.sort_unstable_by_key(|(seq, _)| *seq);
    let by_id: HashMap<&str, &Resource> = created.iter().map(|r| (r.id.as_str(), r)).collect();
    seqs.into_iter()
        .map(|(seq, resource_id)| {
            let r = *by_id.get(resource_id.as_str())?;
            let event = SpecEventRow {
                seq,
                consumer_name: r.consumer_name.clone(),
                action: SpecAction::Create,
                version: r.version,
                created_at: now,
                resource_id,
            };
            Some(PendingSpec { event, resource: Some(Arc::new(r.clone())) })
        })
        .collect()
}

/// Applies a group of statuses in one transaction (group commit): the named rows are locked
/// in id order (two groups never deadlock), the acceptance rules run as if the writes came one
/// by one ([`rules::plan_status_group`]), then the changed rows are written, the status event
/// rows appended under [`STATUS_SEQ_LOCK`], and confirmed deletions removed (after the append,
/// which copies their spec payload).
async fn status_group(
    pool: &PgPool,
    signals: &Signals,
    writes: &[StatusWrite],
) -> Result<Vec<Result<StatusOutcome>>> {
    let mut tx = pool.begin().await?;
    let mut ids: Vec<&str> = writes.iter().map(|w| w.resource_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    // Every column but the spec payload, which the rules do not read: the status event rows
    // copy it inside the database (`push_status_events`).
    let rows = sqlx::query(
        "SELECT id, name, consumer_name, source, version, 'null'::json AS payload, status, \
         status_hash, sequence_id, deleted_at, created_at, updated_at \
         FROM resources WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let current =
        rows.iter().map(|row| resource_from_row(row).map(|r| (r.id.clone(), r))).collect::<Result<_>>()?;
    let plan = rules::plan_status_group(current, writes);
    if plan.events.is_empty() {
        return Ok(plan.outcomes.into_iter().map(Ok).collect());
    }
    let now = rules::now();
    let texts = plan.status_texts(writes, |v| Ok::<_, StoreError>(json_text(v)))?;
    if !plan.updated.is_empty() {
        // One statement for the whole group: the new columns as parallel arrays.
        let ids: Vec<&str> = plan.updated.iter().map(|(r, _)| r.id.as_str()).collect();
        let statuses: Vec<Option<&str>> = plan.updated.iter().map(|(_, w)| texts[*w].as_deref()).collect();
        let hashes: Vec<Option<&str>> = plan.updated.iter().map(|(r, _)| r.status_hash.as_deref()).collect();
        let sequences: Vec<Option<&str>> =
            plan.updated.iter().map(|(r, _)| r.sequence_id.as_deref()).collect();
        sqlx::query(
            "UPDATE resources AS r SET status = u.status, status_hash = u.status_hash, \
             sequence_id = u.sequence_id, updated_at = $5 \
             FROM UNNEST($1::text[], $2::text[]::json[], $3::text[], $4::text[]) AS u(id, status, status_hash, sequence_id) \
             WHERE r.id = u.id",
        )
        .bind(&ids)
        .bind(&statuses)
        .bind(&hashes)
        .bind(&sequences)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let fed = signals.status_feed.wanted();
    let returned = push_status_events(&mut tx, &plan.events, &texts, now, fed).await?;
    if !plan.deleted.is_empty() {
        sqlx::query("DELETE FROM spec_events WHERE resource_id = ANY($1) AND done_at IS NULL")
            .bind(&plan.deleted)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM resources WHERE id = ANY($1)").bind(&plan.deleted).execute(&mut *tx).await?;
    }
    commit_and_signal(tx, &signals.status).await?;
    if fed {
        signals.status_feed.send(feed_rows(&plan.events, &texts, returned, now));
    }
    Ok(plan.outcomes.into_iter().map(Ok).collect())
}

/// The status feed's rows of a committed group: the planned events with the `seq` and spec
/// payload the insert returned. Empty (nothing fed: the fan-out reads the rows back) if the
/// returned rows do not match the events one to one, which cannot happen.
fn feed_rows(
    events: &[rules::PlannedEvent],
    texts: &[Option<String>],
    mut returned: Vec<(i64, String, String)>,
    now: DateTime<Utc>,
) -> Vec<StatusEventRow> {
    // Inserted in event order under the sequence lock: `seq` order is event order.
    returned.sort_unstable_by_key(|(seq, _, _)| *seq);
    if returned.len() != events.len()
        || returned.iter().zip(events).any(|((_, id, _), e)| *id != e.resource.id)
    {
        tracing::error!(
            events = events.len(),
            returned = returned.len(),
            "status feed rows do not match; not fed"
        );
        return Vec::new();
    }
    let mut rows = Vec::with_capacity(events.len());
    for ((seq, resource_id, payload), e) in returned.into_iter().zip(events) {
        let Some(status) = texts.get(e.write).cloned().flatten() else { return Vec::new() };
        rows.push(StatusEventRow {
            seq,
            resource_id,
            source: e.resource.source.clone(),
            consumer_name: e.resource.consumer_name.clone(),
            kind: e.kind,
            payload,
            status,
            created_at: now,
        });
    }
    rows
}

/// `v` as JSON text, for a `json` column: bound as text and cast with `::json`, PostgreSQL only
/// validates it and stores it as is (a `jsonb` parameter would be parsed into `jsonb` first).
fn json_text(v: &Value) -> String {
    v.to_string()
}

/// Appends ` WHERE …` for the exact-match filters that are set and the search, all joined
/// by `AND`; nothing when neither is set. Every value is a bound parameter.
fn push_where(q: &mut QueryBuilder<Postgres>, query: &PageQuery<'_>) {
    let mut first = true;
    for (column, value) in query.filters {
        if let Some(value) = value {
            q.push(if first { " WHERE " } else { " AND " })
                .push(column)
                .push(" = ")
                .push_bind((*value).clone());
            first = false;
        }
    }
    if let Some(search) = query.search {
        q.push(if first { " WHERE " } else { " AND " });
        for piece in search.to_fragment(Dialect::Postgres).pieces {
            match piece {
                Piece::Sql(sql) => {
                    q.push(sql);
                }
                Piece::Bind(param) => push_param(q, param),
            }
        }
    }
}

/// Binds one search parameter (docs/rest.md, "Search language").
fn push_param(q: &mut QueryBuilder<Postgres>, param: Param) {
    match param {
        Param::Text(s) | Param::Json(s) => q.push_bind(s),
        Param::Int(i) => q.push_bind(i),
        Param::Real(r) => q.push_bind(r),
        Param::Time(t) => q.push_bind(t),
    };
}

fn consumer_from_row(row: &PgRow) -> Result<Consumer> {
    let labels: Value = row.try_get("labels")?;
    Ok(Consumer {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        labels: serde_json::from_value(labels)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn resource_from_row(row: &PgRow) -> Result<Resource> {
    Ok(Resource {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        consumer_name: row.try_get("consumer_name")?,
        source: row.try_get("source")?,
        version: row.try_get("version")?,
        payload: row.try_get("payload")?,
        status: row.try_get("status")?,
        status_hash: row.try_get("status_hash")?,
        sequence_id: row.try_get("sequence_id")?,
        deleted_at: row.try_get("deleted_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// `json` columns decode straight into raw text (no tree is built).
fn raw_resource_from_row(row: &PgRow) -> Result<RawResource> {
    let payload: Json<Box<RawValue>> = row.try_get("payload")?;
    let status: Option<Json<Box<RawValue>>> = row.try_get("status")?;
    Ok(RawResource {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        consumer_name: row.try_get("consumer_name")?,
        source: row.try_get("source")?,
        version: row.try_get("version")?,
        payload: payload.0,
        status: status.map(|s| s.0),
        deleted_at: row.try_get("deleted_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn spec_event_from_row(row: &PgRow) -> Result<SpecEventRow> {
    let action: String = row.try_get("action")?;
    Ok(SpecEventRow {
        seq: row.try_get("seq")?,
        resource_id: row.try_get("resource_id")?,
        consumer_name: row.try_get("consumer_name")?,
        action: rules::parse_action(&action)?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
    })
}

fn status_event_from_row(row: &PgRow) -> Result<StatusEventRow> {
    let kind: String = row.try_get("kind")?;
    Ok(StatusEventRow {
        seq: row.try_get("seq")?,
        resource_id: row.try_get("resource_id")?,
        source: row.try_get("source")?,
        consumer_name: row.try_get("consumer_name")?,
        kind: rules::parse_kind(&kind)?,
        payload: row.try_get("payload")?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The resource row, locked until the transaction ends.
async fn lock_resource(tx: &mut Tx, id: &str) -> Result<Option<Resource>> {
    let row = sqlx::query("SELECT * FROM resources WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(resource_from_row).transpose()
}

async fn push_spec_event(tx: &mut Tx, r: &Resource, action: SpecAction, now: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "INSERT INTO spec_events (resource_id, consumer_name, action, version, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&r.id)
    .bind(&r.consumer_name)
    .bind(action.as_str())
    .bind(r.version)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Appends status event rows, in order, each with its resource's spec payload, source and
/// consumer copied from the (locked, not yet deleted) resource row inside the database. It
/// first takes [`STATUS_SEQ_LOCK`] until the transaction ends, so status event `seq`s become
/// visible in increasing order and a reader's `status_events_after(cursor)` never skips a row
/// that commits late with a smaller `seq`; only the deletions of confirmed resources follow it.
///
/// With `returning`, gives each inserted row's `(seq, resource_id, spec payload text)` for the
/// status feed (in no particular order); otherwise nothing.
async fn push_status_events(
    tx: &mut Tx,
    events: &[rules::PlannedEvent],
    texts: &[Option<String>],
    now: DateTime<Utc>,
    returning: bool,
) -> Result<Vec<(i64, String, String)>> {
    macro_rules! insert {
        () => {
            "INSERT INTO status_events (resource_id, source, consumer_name, kind, payload, status, created_at) \
             SELECT r.id, r.source, r.consumer_name, u.kind, r.payload, u.status, $4 \
             FROM UNNEST($1::text[], $2::text[], $3::text[]::json[]) WITH ORDINALITY AS u(id, kind, status, ord) \
             JOIN resources r ON r.id = u.id ORDER BY u.ord"
        };
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(STATUS_SEQ_LOCK).execute(&mut **tx).await?;
    let ids: Vec<&str> = events.iter().map(|e| e.resource.id.as_str()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let statuses: Vec<Option<&str>> = events.iter().map(|e| texts[e.write].as_deref()).collect();
    let (inserted, returned) = if returning {
        let returned: Vec<(i64, String, String)> =
            sqlx::query_as(concat!(insert!(), " RETURNING seq, resource_id, payload::text"))
                .bind(&ids)
                .bind(&kinds)
                .bind(&statuses)
                .bind(now)
                .fetch_all(&mut **tx)
                .await?;
        (returned.len() as u64, returned)
    } else {
        let done = sqlx::query(insert!())
            .bind(&ids)
            .bind(&kinds)
            .bind(&statuses)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        (done.rows_affected(), Vec::new())
    };
    if inserted != events.len() as u64 {
        // Cannot happen: every event's row is locked by this transaction.
        return Err(StoreError::Conflict(format!(
            "{inserted} of {} status events found their resource row",
            events.len()
        )));
    }
    Ok(returned)
}

#[async_trait]
impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../../migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    fn spec_signal(&self) -> Arc<Notify> {
        self.signals.spec.clone()
    }

    fn status_signal(&self) -> Arc<Notify> {
        self.signals.status.clone()
    }

    fn status_feed(&self) -> Option<tokio::sync::mpsc::Receiver<crate::StatusFeedBatch>> {
        self.signals.status_feed.take()
    }

    fn spec_feed(&self) -> Option<tokio::sync::mpsc::Receiver<crate::SpecFeedBatch>> {
        self.signals.spec_feed.take()
    }

    async fn create_consumer(&self, new: NewConsumer) -> Result<Consumer> {
        let id = uuid::Uuid::new_v4().to_string();
        let name = new.name.unwrap_or_else(|| id.clone());
        let row = sqlx::query(
            "INSERT INTO consumers (id, name, labels, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT DO NOTHING RETURNING *",
        )
        .bind(&id)
        .bind(&name)
        .bind(Json(&new.labels))
        .bind(rules::now())
        .fetch_optional(&self.pool)
        .await?;
        let row =
            row.ok_or_else(|| StoreError::Conflict(format!("consumer name {name:?} is already taken")))?;
        consumer_from_row(&row)
    }

    async fn get_consumer(&self, id: &str) -> Result<Consumer> {
        self.consumer_where("id", id).await
    }

    async fn get_consumer_by_name(&self, name: &str) -> Result<Consumer> {
        self.consumer_where("name", name).await
    }

    async fn list_consumers(&self, query: &ConsumerQuery) -> Result<Page<Consumer>> {
        let filters = [("name", query.name.as_ref()), ("id", query.id.as_ref())];
        let page = PageQuery::new(query.paging, &filters, query.search.as_ref(), &query.order);
        self.page("consumers", page, consumer_from_row).await
    }

    async fn set_consumer_labels(&self, id: &str, labels: Labels) -> Result<Consumer> {
        let row = sqlx::query("UPDATE consumers SET labels = $2, updated_at = $3 WHERE id = $1 RETURNING *")
            .bind(id)
            .bind(Json(&labels))
            .bind(rules::now())
            .fetch_optional(&self.pool)
            .await?;
        let row = row.ok_or_else(|| StoreError::NotFound { kind: "consumer", key: id.to_owned() })?;
        consumer_from_row(&row)
    }

    async fn delete_consumer(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM consumers WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let name = name.ok_or_else(|| StoreError::NotFound { kind: "consumer", key: id.to_owned() })?;
        let in_use: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM resources WHERE consumer_name = $1)")
                .bind(&name)
                .fetch_one(&mut *tx)
                .await?;
        if in_use {
            return Err(StoreError::ConsumerInUse(name));
        }
        sqlx::query("DELETE FROM consumers WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_resource(&self, new: NewResource) -> Result<Resource> {
        self.creates.submit(new).await
    }

    async fn update_resource(&self, id: &str, expected_version: i64, payload: Value) -> Result<Resource> {
        let mut tx = self.pool.begin().await?;
        let current = lock_resource(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound { kind: "resource", key: id.to_owned() })?;
        let UpdatePlan::Bump(version) = rules::plan_update(&current, expected_version, &payload)? else {
            return Ok(current);
        };
        let now = rules::now();
        let row = sqlx::query(
            "UPDATE resources SET version = $2, payload = $3::json, updated_at = $4 WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(version)
        .bind(json_text(&payload))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let updated = resource_from_row(&row)?;
        push_spec_event(&mut tx, &updated, SpecAction::Update, now).await?;
        commit_and_signal(tx, &self.signals.spec).await?;
        Ok(updated)
    }

    async fn mark_deleting(&self, id: &str) -> Result<Option<Resource>> {
        let mut tx = self.pool.begin().await?;
        let Some(current) = lock_resource(&mut tx, id).await? else {
            return Ok(None);
        };
        if current.deleted_at.is_some() {
            return Ok(Some(current));
        }
        let now = rules::now();
        let row =
            sqlx::query("UPDATE resources SET deleted_at = $2, updated_at = $2 WHERE id = $1 RETURNING *")
                .bind(id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
        let deleting = resource_from_row(&row)?;
        push_spec_event(&mut tx, &deleting, SpecAction::Delete, now).await?;
        commit_and_signal(tx, &self.signals.spec).await?;
        Ok(Some(deleting))
    }

    async fn get_resource(&self, id: &str) -> Result<Resource> {
        let row =
            sqlx::query("SELECT * FROM resources WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        let row = row.ok_or_else(|| StoreError::NotFound { kind: "resource", key: id.to_owned() })?;
        resource_from_row(&row)
    }

    async fn get_resources(&self, ids: &[String]) -> Result<Vec<Resource>> {
        let rows = self.rows_with_ids(ids).await?;
        rows.iter().map(resource_from_row).collect()
    }

    async fn list_resources(&self, query: &ResourceQuery) -> Result<Page<Resource>> {
        let filters = rules::resource_filters(query);
        let page = PageQuery::new(query.paging, &filters, query.search.as_ref(), &query.order);
        self.page("resources", page, resource_from_row).await
    }

    async fn list_resources_raw(&self, query: &ResourceQuery) -> Result<Page<RawResource>> {
        let filters = rules::resource_filters(query);
        let page = PageQuery::new(query.paging, &filters, query.search.as_ref(), &query.order);
        self.page("resources", page, raw_resource_from_row).await
    }

    async fn list_resource_ids(&self, query: &ResourceQuery) -> Result<Page<String>> {
        let filters = rules::resource_filters(query);
        let page = PageQuery::new(query.paging, &filters, query.search.as_ref(), &query.order);
        self.page_ids("resources", page).await
    }

    async fn get_resources_raw(&self, ids: &[String]) -> Result<Vec<RawResource>> {
        let rows = self.rows_with_ids(ids).await?;
        rows.iter().map(raw_resource_from_row).collect()
    }

    async fn resources_for_consumer(&self, consumer: &str) -> Result<Vec<Resource>> {
        self.resources_where("consumer_name", consumer).await
    }

    async fn resources_for_source(&self, source: &str) -> Result<Vec<Resource>> {
        self.resources_where("source", source).await
    }

    async fn apply_status(&self, write: StatusWrite) -> Result<StatusOutcome> {
        self.statuses.submit(write).await
    }

    async fn pending_spec_events(&self, limit: i64) -> Result<Vec<SpecEventRow>> {
        let rows = sqlx::query("SELECT * FROM spec_events WHERE done_at IS NULL ORDER BY seq LIMIT $1")
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(spec_event_from_row).collect()
    }

    async fn complete_spec_events(&self, seqs: &[i64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        // Asynchronous commit (`synchronous_commit` off for this statement's transaction only,
        // set before the update runs): the dispatcher does not wait for a WAL flush per batch.
        // A crash may lose the last few hundred ms of marks; those rows are sent again after
        // the restart, and agents ignore a version they hold (protocol.md §6.1).
        sqlx::query(
            "WITH async AS (SELECT set_config('synchronous_commit', 'off', true)) \
             UPDATE spec_events SET done_at = $1 FROM async WHERE done_at IS NULL AND seq = ANY($2)",
        )
        .bind(rules::now())
        .bind(seqs.to_vec())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn status_events_after(&self, after: i64, limit: i64) -> Result<Vec<StatusEventRow>> {
        let rows = sqlx::query(
            "SELECT seq, resource_id, source, consumer_name, kind, payload::text AS payload, \
             status::text AS status, created_at FROM status_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(status_event_from_row).collect()
    }

    async fn last_status_event_seq(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM status_events")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn prune_status_events(&self, upto: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM status_events WHERE seq <= $1").bind(upto).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn prune_spec_events(&self, done_before: DateTime<Utc>, limit: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM spec_events WHERE seq IN (SELECT seq FROM spec_events \
             WHERE done_at IS NOT NULL AND done_at < $1 ORDER BY seq LIMIT $2)",
        )
        .bind(done_before)
        .bind(limit.max(0))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn add_dead_letter(&self, letter: crate::NewDeadLetter) -> Result<i64> {
        crate::dead_letters::pg::add(&self.pool, letter).await
    }

    async fn list_dead_letters(&self, query: &crate::DeadLetterQuery) -> Result<Page<crate::DeadLetter>> {
        crate::dead_letters::pg::list(&self.pool, query).await
    }

    async fn get_dead_letter(&self, id: i64) -> Result<crate::DeadLetter> {
        crate::dead_letters::pg::get(&self.pool, id).await
    }

    async fn delete_dead_letter(&self, id: i64) -> Result<()> {
        crate::dead_letters::pg::delete(&self.pool, id).await
    }

    async fn prune_dead_letters(&self, before: DateTime<Utc>, keep: i64) -> Result<u64> {
        crate::dead_letters::pg::prune(&self.pool, before, keep).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
