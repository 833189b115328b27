//! The embedded SQLite store: one file (WAL) or an in-memory database.
//!
//! Write transactions start with `BEGIN IMMEDIATE`, so a transaction that reads then writes
//! takes the database write lock up front and never fails with an `SQLITE_BUSY` lock-upgrade
//! deadlock; concurrent writers queue on the busy timeout instead. Timestamps are stored as
//! RFC 3339 UTC text with fixed-width microseconds; JSON as text.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use maestro_search::{Dialect, Param, Piece};
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use tokio::sync::Notify;

use crate::group::{GroupCommit, group_fn};
use crate::rules::{self, PageQuery, Signals, UpdatePlan};
use crate::{
    Consumer, ConsumerQuery, Labels, NewConsumer, NewResource, Page, RawResource, Resource, ResourceQuery,
    Result, SpecAction, SpecEventRow, StatusEventRow, StatusOutcome, StatusWrite, Store, StoreError,
};

/// How long a connection waits for the write lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pool size for a file database (readers run in parallel under WAL; writers queue). Each
/// connection costs 4–7.5 MiB of RSS (its worker thread's malloc arena, page and statement
/// caches); 4 instead of 8 held 6,010 bundles in 65 instead of 87 MiB with no loss of
/// throughput on 2 cores (docs/benchmarks.md, fourth round).
const FILE_POOL_SIZE: u32 = 4;
/// Most bind parameters per statement in batched statements.
const BATCH: usize = 500;

/// The SQLite [`Store`]. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    signals: Signals,
    creates: GroupCommit<NewResource, Resource>,
    statuses: GroupCommit<StatusWrite, StatusOutcome>,
}

type Tx = Transaction<'static, Sqlite>;

impl SqliteStore {
    /// Opens `sqlite::memory:` (a private in-memory database, served by one connection so
    /// every call sees the same data) or `sqlite://path` (created if missing; WAL journal,
    /// synchronous FULL). Foreign keys are on; the busy timeout is 30 s. Does not migrate.
    ///
    /// # Errors
    /// [`StoreError::Database`] for a malformed URL or when the database cannot be opened.
    pub async fn connect(url: &str) -> Result<Self> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut opts = SqliteConnectOptions::from_str(url)?.foreign_keys(true).busy_timeout(BUSY_TIMEOUT);
        let pool = if memory {
            // The in-memory database lives as long as its one connection: never recycle it.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(opts)
                .await?
        } else {
            opts = opts.create_if_missing(true).journal_mode(SqliteJournalMode::Wal);
            SqlitePoolOptions::new().max_connections(FILE_POOL_SIZE).connect_with(opts).await?
        };
        let signals = Signals::default();
        let ctx = (pool.clone(), signals.clone());
        let creates =
            GroupCommit::start(group_fn(ctx.clone(), |(p, sig), ops: Arc<Vec<NewResource>>| async move {
                create_group(&p, &sig, &ops).await
            }));
        let statuses = GroupCommit::start(group_fn(ctx, |(p, sig), ops: Arc<Vec<StatusWrite>>| async move {
            status_group(&p, &sig, &ops).await
        }));
        Ok(SqliteStore { pool, signals, creates, statuses })
    }

    /// The connection pool (for tests and diagnostics).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction holding the write lock.
    async fn write_tx(&self) -> Result<Tx> {
        write_tx(&self.pool).await
    }

    /// The resource rows with these ids (one query; none for no ids).
    async fn rows_with_ids(&self, ids: &[String]) -> Result<Vec<SqliteRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query("SELECT * FROM resources WHERE id IN (SELECT value FROM json_each($1))")
            .bind(serde_json::to_string(ids)?)
            .fetch_all(&self.pool)
            .await?)
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

    /// One page of a table: exact-match filters and a checked search, in `query`'s order
    /// (default `created_at, id`; `id` always breaks ties so pages never overlap).
    async fn page<T>(
        &self,
        table: &str,
        query: PageQuery<'_>,
        map: fn(&SqliteRow) -> Result<T>,
    ) -> Result<Page<T>> {
        let (limit, offset) = rules::page_window(query.paging)?;
        let mut count = QueryBuilder::<Sqlite>::new(format!("SELECT COUNT(*) FROM {table}"));
        push_where(&mut count, &query);
        let total: i64 = count.build().fetch_one(&self.pool).await?.try_get(0)?;
        let mut items = Vec::new();
        if limit > 0 {
            // A deferred join: the window is found on a narrow index where one fits the order
            // (docs/rest.md, "Ordering"), so the rows skipped by OFFSET are never read whole;
            // only the page's rows are. The window's ids are renamed so the outer ORDER BY's
            // bare column names all name the table's columns.
            let order = maestro_search::order_by_sql(query.order);
            let mut q = QueryBuilder::<Sqlite>::new(format!(
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
        let mut count = QueryBuilder::<Sqlite>::new(format!("SELECT COUNT(*) FROM {table}"));
        push_where(&mut count, &query);
        let total: i64 = count.build().fetch_one(&self.pool).await?.try_get(0)?;
        let mut items = Vec::new();
        if limit > 0 {
            let order = maestro_search::order_by_sql(query.order);
            let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT id FROM {table}"));
            push_where(&mut q, &query);
            q.push(format!(" ORDER BY {order} LIMIT ")).push_bind(limit).push(" OFFSET ").push_bind(offset);
            items = q.build_query_scalar().fetch_all(&self.pool).await?;
        }
        Ok(Page { items, total, page: query.paging.page })
    }
}

/// Appends ` WHERE …` for the exact-match filters that are set and the search, all joined
/// by `AND`; nothing when neither is set. Every value is a bound parameter.
fn push_where(q: &mut QueryBuilder<Sqlite>, query: &PageQuery<'_>) {
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
        for piece in search.to_fragment(Dialect::Sqlite).pieces {
            match piece {
                Piece::Sql(sql) => {
                    q.push(sql);
                }
                Piece::Bind(param) => push_param(q, param),
            }
        }
    }
}

fn json_text(v: &Value) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

fn parse_json(s: &str) -> Result<Value> {
    Ok(serde_json::from_str(s)?)
}

fn ts(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>> {
    let text: String = row.try_get(column)?;
    parse_ts(&text)
}

fn opt_ts(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.try_get(column)?;
    text.as_deref().map(parse_ts).transpose()
}

fn parse_ts(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| rules::decode_error(format!("bad stored timestamp {text:?}: {e}")))
}

/// Binds one search parameter (docs/rest.md, "Search language").
fn push_param(q: &mut QueryBuilder<Sqlite>, param: Param) {
    match param {
        Param::Text(s) | Param::Json(s) => q.push_bind(s),
        Param::Int(i) => q.push_bind(i),
        Param::Real(r) => q.push_bind(r),
        Param::Time(t) => q.push_bind(rules::sqlite_ts(t)),
    };
}

fn consumer_from_row(row: &SqliteRow) -> Result<Consumer> {
    let labels: String = row.try_get("labels")?;
    Ok(Consumer {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        labels: serde_json::from_str(&labels)?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

fn resource_from_row(row: &SqliteRow) -> Result<Resource> {
    let payload: String = row.try_get("payload")?;
    let status: Option<String> = row.try_get("status")?;
    Ok(Resource {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        consumer_name: row.try_get("consumer_name")?,
        source: row.try_get("source")?,
        version: row.try_get("version")?,
        payload: parse_json(&payload)?,
        status: status.as_deref().map(parse_json).transpose()?,
        status_hash: row.try_get("status_hash")?,
        sequence_id: row.try_get("sequence_id")?,
        deleted_at: opt_ts(row, "deleted_at")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

fn raw_resource_from_row(row: &SqliteRow) -> Result<RawResource> {
    let payload: String = row.try_get("payload")?;
    let status: Option<String> = row.try_get("status")?;
    Ok(RawResource {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        consumer_name: row.try_get("consumer_name")?,
        source: row.try_get("source")?,
        version: row.try_get("version")?,
        payload: RawValue::from_string(payload)?,
        status: status.map(RawValue::from_string).transpose()?,
        deleted_at: opt_ts(row, "deleted_at")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

fn spec_event_from_row(row: &SqliteRow) -> Result<SpecEventRow> {
    let action: String = row.try_get("action")?;
    Ok(SpecEventRow {
        seq: row.try_get("seq")?,
        resource_id: row.try_get("resource_id")?,
        consumer_name: row.try_get("consumer_name")?,
        action: rules::parse_action(&action)?,
        version: row.try_get("version")?,
        created_at: ts(row, "created_at")?,
    })
}

fn status_event_from_row(row: &SqliteRow) -> Result<StatusEventRow> {
    let kind: String = row.try_get("kind")?;
    Ok(StatusEventRow {
        seq: row.try_get("seq")?,
        resource_id: row.try_get("resource_id")?,
        source: row.try_get("source")?,
        consumer_name: row.try_get("consumer_name")?,
        kind: rules::parse_kind(&kind)?,
        payload: row.try_get("payload")?,
        status: row.try_get("status")?,
        created_at: ts(row, "created_at")?,
    })
}

async fn fetch_resource(tx: &mut Tx, id: &str) -> Result<Option<Resource>> {
    let row = sqlx::query("SELECT * FROM resources WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
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
    .bind(rules::sqlite_ts(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Starts a write transaction holding the write lock.
async fn write_tx(pool: &SqlitePool) -> Result<Tx> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// Creates a group of resources in one transaction (group commit; see the `group` module).
async fn create_group(
    pool: &SqlitePool,
    signals: &Signals,
    ops: &[NewResource],
) -> Result<Vec<Result<Resource>>> {
    let mut tx = write_tx(pool).await?;
    let mut known = HashSet::new();
    for op in ops {
        if known.contains(&op.consumer_name) {
            continue;
        }
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM consumers WHERE name = $1)")
            .bind(&op.consumer_name)
            .fetch_one(&mut *tx)
            .await?;
        if exists {
            known.insert(op.consumer_name.clone());
        }
    }
    let (answers, insert) = rules::screen_creates(ops, &known);
    let now = rules::now();
    let mut created = HashMap::new();
    for op in insert.iter().filter_map(|&i| ops.get(i)) {
        let row = sqlx::query(
            "INSERT INTO resources (id, name, consumer_name, source, version, payload, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 1, $5, $6, $6) ON CONFLICT (id) DO NOTHING \
             RETURNING id, name, consumer_name, source, version, 'null' AS payload, status, status_hash, \
             sequence_id, deleted_at, created_at, updated_at",
        )
        .bind(&op.id)
        .bind(&op.name)
        .bind(&op.consumer_name)
        .bind(&op.source)
        .bind(json_text(&op.payload)?)
        .bind(rules::sqlite_ts(now))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            // The payload is the one just written: copied, not read back and parsed.
            let r = Resource { payload: op.payload.clone(), ..resource_from_row(&row)? };
            push_spec_event(&mut tx, &r, SpecAction::Create, now).await?;
            created.insert(r.id.clone(), r);
        }
    }
    if !created.is_empty() {
        tx.commit().await?;
        Signals::fire(&signals.spec);
    }
    Ok(rules::answer_creates(ops, answers, &insert, created))
}

/// Applies a group of statuses in one transaction (group commit), under the acceptance rules
/// applied as if the writes came one by one ([`rules::plan_status_group`]).
async fn status_group(
    pool: &SqlitePool,
    signals: &Signals,
    writes: &[StatusWrite],
) -> Result<Vec<Result<StatusOutcome>>> {
    let mut tx = write_tx(pool).await?;
    let mut current = HashMap::new();
    for w in writes {
        if current.contains_key(&w.resource_id) {
            continue;
        }
        if let Some(r) = fetch_resource(&mut tx, &w.resource_id).await? {
            current.insert(r.id.clone(), r);
        }
    }
    let plan = rules::plan_status_group(current, writes);
    if plan.events.is_empty() {
        return Ok(plan.outcomes.into_iter().map(Ok).collect());
    }
    let now = rules::sqlite_ts(rules::now());
    let texts = plan.status_texts(writes, json_text)?;
    for (r, w) in &plan.updated {
        sqlx::query(
            "UPDATE resources SET status = $2, status_hash = $3, sequence_id = $4, updated_at = $5 WHERE id = $1",
        )
        .bind(&r.id)
        .bind(texts[*w].as_deref())
        .bind(&r.status_hash)
        .bind(&r.sequence_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    for id in &plan.deleted {
        sqlx::query("DELETE FROM spec_events WHERE resource_id = $1 AND done_at IS NULL")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM resources WHERE id = $1").bind(id).execute(&mut *tx).await?;
    }
    for e in &plan.events {
        sqlx::query(
            "INSERT INTO status_events (resource_id, source, consumer_name, kind, payload, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&e.resource.id)
        .bind(&e.resource.source)
        .bind(&e.resource.consumer_name)
        .bind(e.kind.as_str())
        .bind(json_text(&e.resource.payload)?)
        .bind(texts[e.write].as_deref())
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Signals::fire(&signals.status);
    Ok(plan.outcomes.into_iter().map(Ok).collect())
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../../migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    fn spec_signal(&self) -> Arc<Notify> {
        self.signals.spec.clone()
    }

    fn status_signal(&self) -> Arc<Notify> {
        self.signals.status.clone()
    }

    async fn create_consumer(&self, new: NewConsumer) -> Result<Consumer> {
        let id = uuid::Uuid::new_v4().to_string();
        let name = new.name.unwrap_or_else(|| id.clone());
        let now = rules::sqlite_ts(rules::now());
        let row = sqlx::query(
            "INSERT INTO consumers (id, name, labels, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT DO NOTHING RETURNING *",
        )
        .bind(&id)
        .bind(&name)
        .bind(serde_json::to_string(&new.labels)?)
        .bind(now)
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
            .bind(serde_json::to_string(&labels)?)
            .bind(rules::sqlite_ts(rules::now()))
            .fetch_optional(&self.pool)
            .await?;
        let row = row.ok_or_else(|| StoreError::NotFound { kind: "consumer", key: id.to_owned() })?;
        consumer_from_row(&row)
    }

    async fn delete_consumer(&self, id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM consumers WHERE id = $1")
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
        let mut tx = self.write_tx().await?;
        let current = fetch_resource(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound { kind: "resource", key: id.to_owned() })?;
        let UpdatePlan::Bump(version) = rules::plan_update(&current, expected_version, &payload)? else {
            return Ok(current);
        };
        let now = rules::now();
        let row = sqlx::query(
            "UPDATE resources SET version = $2, payload = $3, updated_at = $4 WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(version)
        .bind(json_text(&payload)?)
        .bind(rules::sqlite_ts(now))
        .fetch_one(&mut *tx)
        .await?;
        let updated = resource_from_row(&row)?;
        push_spec_event(&mut tx, &updated, SpecAction::Update, now).await?;
        tx.commit().await?;
        Signals::fire(&self.signals.spec);
        Ok(updated)
    }

    async fn mark_deleting(&self, id: &str) -> Result<Option<Resource>> {
        let mut tx = self.write_tx().await?;
        let Some(current) = fetch_resource(&mut tx, id).await? else {
            return Ok(None);
        };
        if current.deleted_at.is_some() {
            return Ok(Some(current));
        }
        let now = rules::now();
        let row =
            sqlx::query("UPDATE resources SET deleted_at = $2, updated_at = $2 WHERE id = $1 RETURNING *")
                .bind(id)
                .bind(rules::sqlite_ts(now))
                .fetch_one(&mut *tx)
                .await?;
        let deleting = resource_from_row(&row)?;
        push_spec_event(&mut tx, &deleting, SpecAction::Delete, now).await?;
        tx.commit().await?;
        Signals::fire(&self.signals.spec);
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
        let now = rules::sqlite_ts(rules::now());
        let mut tx = self.write_tx().await?;
        for chunk in seqs.chunks(BATCH) {
            let mut q = QueryBuilder::<Sqlite>::new("UPDATE spec_events SET done_at = ");
            q.push_bind(now.clone()).push(" WHERE done_at IS NULL AND seq IN (");
            let mut list = q.separated(", ");
            for seq in chunk {
                list.push_bind(*seq);
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn status_events_after(&self, after: i64, limit: i64) -> Result<Vec<StatusEventRow>> {
        let rows = sqlx::query("SELECT * FROM status_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(status_event_from_row).collect()
    }

    async fn last_status_event_seq(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM status_events")
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
        .bind(rules::sqlite_ts(done_before))
        .bind(limit.max(0))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn add_dead_letter(&self, letter: crate::NewDeadLetter) -> Result<i64> {
        crate::dead_letters::sqlite::add(&self.pool, letter).await
    }

    async fn list_dead_letters(&self, query: &crate::DeadLetterQuery) -> Result<Page<crate::DeadLetter>> {
        crate::dead_letters::sqlite::list(&self.pool, query).await
    }

    async fn get_dead_letter(&self, id: i64) -> Result<crate::DeadLetter> {
        crate::dead_letters::sqlite::get(&self.pool, id).await
    }

    async fn delete_dead_letter(&self, id: i64) -> Result<()> {
        crate::dead_letters::sqlite::delete(&self.pool, id).await
    }

    async fn prune_dead_letters(&self, before: DateTime<Utc>, keep: i64) -> Result<u64> {
        crate::dead_letters::sqlite::prune(&self.pool, before, keep).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
