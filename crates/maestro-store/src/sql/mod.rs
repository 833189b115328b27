//! The SQL store: ONE implementation of [`Store`] for both databases, [`SqlStore<D>`] over a
//! sqlx database `D` that is a [`Dialect`]: [`sqlx::Postgres`] ([`crate::postgres`], production,
//! HA) or [`sqlx::Sqlite`] ([`crate::sqlite`], embedded default).
//!
//! Why generic over sqlx's database types rather than one macro-made copy per backend (or
//! sqlx `Any`): the code is type-checked and formatted once, and each backend keeps its native
//! types and statement caches. The SQL both databases read alike is written once, here.
//! Values whose encoding differs are bound as the dialect's types (a timestamp: `timestamptz`
//! or fixed-width RFC 3339 text; JSON text: `json` or text; a [`List`]: an array or JSON array
//! text), so those statements are the same text on both. What really differs is the
//! dialect's (`sealed::Backend`): a few fragments (row locks or `BEGIN IMMEDIATE`, matching a
//! bound list), the batched statements of a status group (PostgreSQL binds arrays and
//! `UNNEST`s them in one round trip; SQLite runs one statement per row in process),
//! connecting, migrating, and the cross-instance wake-ups of the feeds. The price of generics:
//! what `D` must bind and decode is listed twice, on the helpers' impl and on the `Store` impl
//! (Rust does not carry such bounds over from a trait).
//!
//! Writes keep the rules of the crate doc: the resource change and its spec outbox row (or the
//! status and its status event row) commit in one transaction; resource creations and statuses
//! go through group commit (`crate::group`). After a commit the rows go to the feeds
//! (`crate::feed`): handed to their reader in process, else its wake fires, and other instances
//! are told (PostgreSQL `NOTIFY`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use maestro_search::{Param, Piece};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Encode, Executor, FromRow, IntoArguments, Pool, QueryBuilder, Transaction, Type};

use crate::dead_letters::DeadLetters;
use crate::deleted::Deleted;
use crate::feed::{Feed, Signals, feed_creations, feed_rows};
use crate::group::{GroupCommit, group_fn};
use crate::instances::{CLAIM_LEASE, Instances};
use crate::rules::{self, PageQuery, UpdatePlan};
use crate::wipe_guard::WipeGuard;
use crate::{
    Backlog, Consumer, ConsumerQuery, DeadLetter, DeadLetterQuery, DeletedResource, NewConsumer,
    NewDeadLetter, NewResource, Page, PendingSpec, RawResource, Resource, ResourceQuery, Result,
    ServerInstance, SpecAction, SpecEventRow, StatusEventRow, StatusOutcome, StatusWrite, Store, StoreError,
};

mod dialect;

pub(crate) use dialect::{CreateRows, Returned, StatusRows, sealed};
pub use dialect::{Dialect, List};

/// The columns of a resource row but its spec payload (read back as `null`).
pub(crate) const NO_PAYLOAD: &str = "id, name, consumer_name, source, version, status, status_hash, sequence_id, \
                          deleted_at, created_at, \
     updated_at";

/// What the group commit writers share with the store: the pool and the feeds.
type Db<D> = (Pool<D>, Arc<Signals>);

/// The [`Store`] on dialect `D`. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqlStore<D: Dialect> {
    pool: Pool<D>,
    signals: Arc<Signals>,
    creates: GroupCommit<NewResource, Resource>,
    statuses: GroupCommit<StatusWrite, StatusOutcome>,
    /// Stops the tasks sharing commits with other instances when the store is dropped.
    _shared: Option<tokio_util::sync::DropGuard>,
}

type Tx<D> = Transaction<'static, D>;

/// `select` locking its rows in `mode` (`UPDATE`, `KEY SHARE`) until the transaction ends, on a
/// dialect with row locks; as is on the others (their write transactions hold the database).
fn locked<D: Dialect>(select: &str, mode: &str) -> String {
    if D::ROW_LOCKS { format!("{select} FOR {mode}") } else { select.to_owned() }
}

fn not_found(kind: &'static str, key: impl ToString) -> StoreError {
    StoreError::NotFound { kind, key: key.to_string() }
}

// The bounds (repeated on the `Store` impl): `D` binds and reads what the store does; both
// dialects meet them.
#[expect(private_bounds, reason = "the store's own row types; both dialects decode them")]
impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    for<'q> Option<&'q str>: Encode<'q, D> + Type<D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> f64: Encode<'q, D> + Type<D>,
    for<'q> List<'q, &'q str>: Encode<'q, D> + Type<D>,
    for<'q> List<'q, String>: Encode<'q, D> + Type<D>,
    for<'q> List<'q, i64>: Encode<'q, D> + Type<D>,
    for<'q> Json<&'q crate::Labels>: Encode<'q, D> + Type<D>,
    for<'r> Consumer: FromRow<'r, D::Row>,
    for<'r> Resource: FromRow<'r, D::Row>,
    for<'r> rules::LockedRow: FromRow<'r, D::Row>,
    for<'r> RawResource: FromRow<'r, D::Row>,
    for<'r> SpecEventRow: FromRow<'r, D::Row>,
    for<'r> StatusEventRow: FromRow<'r, D::Row>,
    for<'r> DeletedResource: FromRow<'r, D::Row>,
    for<'r> DeadLetter: FromRow<'r, D::Row>,
    for<'r> (i64,): FromRow<'r, D::Row>,
    for<'r> (String,): FromRow<'r, D::Row>,
    for<'r> (bool,): FromRow<'r, D::Row>,
    for<'r> (i64, String): FromRow<'r, D::Row>,
{
    /// Connects to `url` (the dialect's pool and settings: [`crate::postgres`],
    /// [`crate::sqlite`]), starts the group commit writers of resource creations and statuses
    /// on the current Tokio runtime (see the `group` module) and, on PostgreSQL, the
    /// cross-instance wake-ups. Does not migrate.
    ///
    /// # Errors
    /// [`StoreError::Database`] for a malformed URL or when the database cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        let (pool, signals) = (D::connect(url).await?, Arc::<Signals>::default());
        let _shared = D::share_commits(&pool, &signals);
        let db: Db<D> = (pool.clone(), signals.clone());
        let creates = GroupCommit::start(group_fn(db.clone(), Self::create_group));
        let statuses = GroupCommit::start(group_fn(db, Self::status_group));
        Ok(SqlStore { pool, signals, creates, statuses, _shared })
    }

    /// The connection pool (for tests and diagnostics).
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
    }

    /// The registered instance's statements. Errors: [`StoreError::Invalid`] before
    /// [`Store::register_instance`].
    fn instance(&self) -> Result<Instances<'_, D>> {
        let id =
            self.signals.claimant.get().ok_or_else(|| {
                StoreError::Invalid("no server instance is registered with this store".into())
            })?;
        Ok(Instances { pool: &self.pool, id })
    }

    /// Starts a write transaction.
    async fn begin(pool: &Pool<D>) -> Result<Tx<D>> {
        Ok(pool.begin_with(if D::ROW_LOCKS { "BEGIN" } else { "BEGIN IMMEDIATE" }).await?)
    }

    /// The rows `select` (one parameter, `key`) reads.
    async fn rows<T>(&self, select: &'static str, key: &str) -> Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, D::Row> + Send + Unpin,
    {
        Ok(sqlx::query_as(select).bind(key).fetch_all(&self.pool).await?)
    }

    /// The row `select` (one parameter, `key`) reads. Errors: [`StoreError::NotFound`] naming
    /// `kind` and `key`.
    async fn one<T>(&self, kind: &'static str, select: &'static str, key: &str) -> Result<T>
    where
        T: for<'r> FromRow<'r, D::Row> + Send + Unpin,
    {
        sqlx::query_as(select).bind(key).fetch_optional(&self.pool).await?.ok_or_else(|| not_found(kind, key))
    }

    /// The resource rows whose `column` is in `keys`, then `order` (one query; none for no
    /// keys).
    async fn rows_in<T: for<'r> FromRow<'r, D::Row> + Send + Unpin>(
        &self,
        column: &str,
        keys: &[String],
        order: &str,
    ) -> Result<Vec<T>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT * FROM resources WHERE {column} {}{order}", D::IN_LIST);
        Ok(sqlx::query_as(AssertSqlSafe(sql)).bind(List(keys)).fetch_all(&self.pool).await?)
    }

    /// Starts a write transaction and reads the resource row `id`, locked until it ends.
    async fn lock_resource(&self, id: &str) -> Result<(Tx<D>, Option<Resource>)> {
        let mut tx = Self::begin(&self.pool).await?;
        let sql = locked::<D>("SELECT * FROM resources WHERE id = $1", "UPDATE");
        let row = sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *tx).await?;
        Ok((tx, row))
    }

    /// Appends the spec outbox row of the change `action` that made `r` (at its `updated_at`),
    /// commits, and wakes the dispatcher (such rows are never fed).
    async fn commit_spec_event(&self, mut tx: Tx<D>, r: &Resource, action: SpecAction) -> Result<()> {
        let sql = "INSERT INTO spec_events (resource_id, consumer_name, action, version, created_at) \
                   VALUES ($1, $2, $3, $4, $5)";
        let q = bind!(
            sqlx::query(sql),
            r.id.as_str(),
            r.consumer_name.as_str(),
            action.as_str(),
            r.version,
            D::stamp(r.updated_at)
        );
        q.execute(&mut *tx).await?;
        tx.commit().await?;
        self.signals.spec.committed(None);
        Ok(())
    }

    /// Appends ` WHERE …` for the exact-match filters that are set and the search, all joined
    /// by `AND`; nothing when neither is set. Every value is a bound parameter.
    fn push_where(q: &mut QueryBuilder<D>, query: &PageQuery<'_>) {
        let mut first = true;
        for (column, value) in query.filters {
            if let Some(value) = value {
                q.push(if first { " WHERE " } else { " AND " })
                    .push(column)
                    .push(" = ")
                    .push_bind(value.as_str());
                first = false;
            }
        }
        let Some(search) = query.search else { return };
        q.push(if first { " WHERE " } else { " AND " });
        for piece in search.to_fragment(D::SEARCH).pieces {
            // Search parameters (docs/rest.md, "Search language").
            match piece {
                Piece::Sql(sql) => q.push(sql),
                Piece::Bind(Param::Text(s) | Param::Json(s)) => q.push_bind(s.as_str()),
                Piece::Bind(Param::Int(i)) => q.push_bind(i),
                Piece::Bind(Param::Real(r)) => q.push_bind(r),
                Piece::Bind(Param::Time(t)) => q.push_bind(D::stamp(t)),
            };
        }
    }

    /// The number of rows `query` matches: for an unfiltered list of resources the count the
    /// triggers of PostgreSQL's migration 0004 keep in `resource_totals` (one row read instead
    /// of a scan of every row), else `COUNT(*)`.
    async fn total(&self, table: &str, query: &PageQuery<'_>) -> Result<i64> {
        if D::RESOURCE_TOTALS && table == "resources" && query.is_unfiltered() {
            return Ok(sqlx::query_scalar("SELECT total FROM resource_totals").fetch_one(&self.pool).await?);
        }
        let mut count = QueryBuilder::<D>::new(format!("SELECT COUNT(*) FROM {table}"));
        Self::push_where(&mut count, query);
        Ok(count.build_query_scalar().fetch_one(&self.pool).await?)
    }

    /// One page of a table: exact-match filters and a checked search, in `query`'s order
    /// (default `created_at, id`; `id` always breaks ties so pages never overlap). With
    /// `ids_only` the rows are `(id,)`: the window query alone.
    async fn page<T: for<'r> FromRow<'r, D::Row> + Send + Unpin>(
        &self,
        table: &str,
        query: PageQuery<'_>,
        ids_only: bool,
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
            let mut q = QueryBuilder::<D>::new(match ids_only {
                true => format!("SELECT id FROM {table}"),
                false => format!("SELECT t.* FROM {table} AS t JOIN (SELECT id AS page_id FROM {table}"),
            });
            Self::push_where(&mut q, &query);
            q.push(format!(" ORDER BY {order} LIMIT ")).push_bind(limit).push(" OFFSET ").push_bind(offset);
            if !ids_only {
                q.push(format!(") AS w ON t.id = w.page_id ORDER BY {order}"));
            }
            items = q.build_query_as().fetch_all(&self.pool).await?;
        }
        Ok(Page { items, total, page: query.paging.page })
    }

    /// A page of resources ([`Self::page`]).
    async fn resource_page<T>(&self, query: &ResourceQuery, ids_only: bool) -> Result<Page<T>>
    where
        T: for<'r> FromRow<'r, D::Row> + Send + Unpin,
    {
        let (paging, filters, search, order) =
            (query.paging, &rules::resource_filters(query), query.search.as_ref(), &query.order[..]);
        self.page("resources", PageQuery { paging, filters, search, order }, ids_only).await
    }

    /// Creates a group of resources in one transaction (group commit): one consumer lookup
    /// (PostgreSQL: key-share locked, so a concurrent consumer delete cannot slip in between),
    /// one multi-row insert (`ON CONFLICT (id) DO NOTHING`: an existing id is a conflict for
    /// that write only), one multi-row spec outbox insert.
    async fn create_group(
        (pool, signals): Db<D>,
        ops: Arc<Vec<NewResource>>,
    ) -> Result<Vec<Result<Resource>>> {
        if D::CREATES_AT_ONCE {
            return Self::create_at_once(&pool, &signals, &ops).await;
        }
        let mut tx = Self::begin(&pool).await?;
        let mut names: Vec<&str> = ops.iter().map(|op| op.consumer_name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let sql = locked::<D>(
            &format!("SELECT name FROM consumers WHERE name {} ORDER BY name", D::IN_LIST),
            "KEY SHARE",
        );
        let known: Vec<String> =
            sqlx::query_scalar(AssertSqlSafe(sql)).bind(List(&names)).fetch_all(&mut *tx).await?;
        let (answers, insert) = rules::screen_creates(&ops, Some(&known.into_iter().collect()));
        let mut created = HashMap::new();
        if !insert.is_empty() {
            let todo: Vec<&NewResource> = insert.iter().filter_map(|&i| ops.get(i)).collect();
            let rows = Self::insert_resources(&mut tx, &todo).await?;
            if !rows.is_empty() {
                let fed = signals.spec.wanted();
                let claimant = signals.claimant.get().map(String::as_str).filter(|_| fed);
                let seqs = Self::push_create_events(&mut tx, &rows, fed, claimant).await?;
                tx.commit().await?;
                // Fed rows need no wake; anything not fed is found pending after the wake.
                signals.spec.committed(if fed { feed_creations(&rows, seqs) } else { None });
            }
            created = rows.into_iter().map(|r| (r.id.clone(), r)).collect();
        }
        Ok(rules::answer_creates(&ops, answers, &insert, created))
    }

    /// [`Self::create_group`] in one statement, on a dialect that can
    /// ([`sealed::Backend::create_at_once`]). A write that was not
    /// inserted is answered after the statement: its consumer unknown (read then, without a
    /// lock: a consumer registered in between makes it "already exists"), else its id exists;
    /// when that read fails, with a retryable database error (it was not written).
    async fn create_at_once(
        pool: &Pool<D>,
        signals: &Signals,
        ops: &[NewResource],
    ) -> Result<Vec<Result<Resource>>> {
        let (mut answers, insert) = rules::screen_creates(ops, None);
        let todo: Vec<&NewResource> = insert.iter().filter_map(|&i| ops.get(i)).collect();
        let fed = signals.spec.wanted();
        let claimant = signals.claimant.get().map(String::as_str).filter(|_| fed);
        let rows = CreateRows { ops: &todo, now: rules::now(), claimant };
        let inserted = D::create_at_once(pool, &rows).await?;
        let payloads: HashMap<&str, &Arc<Value>> =
            todo.iter().map(|op| (op.id.as_str(), &op.payload)).collect();
        let mut seqs = Vec::with_capacity(inserted.len());
        let created: Vec<Resource> = inserted
            .into_iter()
            .map(|(r, seq)| {
                seqs.push((seq, r.id.clone()));
                let payload = payloads.get(r.id.as_str()).map_or_else(Arc::default, |p| Arc::clone(p));
                Resource { payload, ..r }
            })
            .collect();
        if !created.is_empty() {
            signals.spec.committed(if fed { feed_creations(&created, seqs) } else { None });
        }
        let created: HashMap<String, Resource> = created.into_iter().map(|r| (r.id.clone(), r)).collect();
        let missing: Vec<&str> = todo
            .iter()
            .filter(|op| !created.contains_key(&op.id))
            .map(|op| op.consumer_name.as_str())
            .collect();
        if !missing.is_empty() {
            let sql = format!("SELECT name FROM consumers WHERE name {}", D::IN_LIST);
            let known: std::result::Result<Vec<String>, _> =
                sqlx::query_scalar(AssertSqlSafe(sql)).bind(List(&missing)).fetch_all(pool).await;
            // Never an error for the whole group: its other writes are committed.
            let known = known.map_err(|e| e.to_string());
            let known = known.as_deref().map_err(String::as_str);
            rules::unknown_consumers(ops, &mut answers, &insert, &created, known);
        }
        Ok(rules::answer_creates(ops, answers, &insert, created))
    }

    /// Inserts `ops` at version 1 (one statement); returns the rows inserted (an id that
    /// exists already is skipped), with the payloads just written: copied, not read back.
    async fn insert_resources(conn: &mut D::Connection, ops: &[&NewResource]) -> Result<Vec<Resource>> {
        let now = rules::now();
        let payloads: HashMap<&str, (&Arc<Value>, String)> =
            ops.iter().map(|op| (op.id.as_str(), (&op.payload, op.payload.to_string()))).collect();
        let mut q = QueryBuilder::<D>::new(
            "INSERT INTO resources \
             (id, name, consumer_name, source, version, payload, created_at, updated_at) ",
        );
        q.push_values(ops, |mut b, op| {
            let payload = payloads.get(op.id.as_str()).map_or("null", |(_, text)| text.as_str());
            b.push_bind(op.id.as_str()).push_bind(op.name.as_str()).push_bind(op.consumer_name.as_str());
            b.push_bind(op.source.as_str()).push_bind(1_i64).push_bind(D::json(payload));
            b.push_bind(D::stamp(now)).push_bind(D::stamp(now));
        });
        q.push(format!(" ON CONFLICT (id) DO NOTHING RETURNING {NO_PAYLOAD}"));
        let rows: Vec<Resource> = q.build_query_as().fetch_all(conn).await?;
        let payload =
            |r: &Resource| payloads.get(r.id.as_str()).map_or_else(Arc::default, |(v, _)| Arc::clone(v));
        Ok(rows.into_iter().map(|r| Resource { payload: payload(&r), ..r }).collect())
    }

    /// Appends the `Create` outbox rows of `created` (one statement); with `returning`, gives
    /// each row's `(seq, resource_id)` (in no particular order), otherwise nothing. Rows fed
    /// to this instance's dispatcher are claimed by it (`claimant`), so other instances leave
    /// them alone (docs/architecture.md §9).
    async fn push_create_events(
        conn: &mut D::Connection,
        created: &[Resource],
        returning: bool,
        claimant: Option<&str>,
    ) -> Result<Vec<(i64, String)>> {
        let claim = claimant.map(|id| (id, format!("{} + {}", D::NOW_MS, CLAIM_LEASE.as_millis())));
        let mut q = QueryBuilder::<D>::new(match claim {
            None => "INSERT INTO spec_events (resource_id, consumer_name, action, version, created_at) ",
            Some(_) => {
                "INSERT INTO spec_events (resource_id, consumer_name, action, version, created_at, \
                        claimed_by, claim_until_ms) "
            }
        });
        q.push_values(created, |mut b, r| {
            b.push_bind(r.id.as_str())
                .push_bind(r.consumer_name.as_str())
                .push_bind(SpecAction::Create.as_str());
            b.push_bind(r.version).push_bind(D::stamp(r.created_at));
            if let Some((id, until)) = &claim {
                b.push_bind(*id).push(until);
            }
        });
        if !returning {
            q.build().execute(conn).await?;
            return Ok(Vec::new());
        }
        q.push(" RETURNING seq, resource_id");
        Ok(q.build_query_as().fetch_all(conn).await?)
    }

    /// Applies a group of statuses in one transaction (group commit): the named rows are read
    /// (PostgreSQL: locked, in id order, so two groups never deadlock), the acceptance rules
    /// run as if the writes came one by one ([`rules::plan_status_group`]), then the changed
    /// rows are written, the status event rows appended, and confirmed deletions removed
    /// (after the append, which copies their spec payload).
    async fn status_group(
        (pool, signals): Db<D>,
        writes: Arc<Vec<StatusWrite>>,
    ) -> Result<Vec<Result<StatusOutcome>>> {
        let mut tx = Self::begin(&pool).await?;
        let mut ids: Vec<&str> = writes.iter().map(|w| w.resource_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let list = D::IN_LIST;
        let columns = rules::LOCKED_ROW;
        let sql =
            locked::<D>(&format!("SELECT {columns} FROM resources WHERE id {list} ORDER BY id"), "UPDATE");
        let rows: Vec<rules::LockedRow> =
            sqlx::query_as(AssertSqlSafe(sql)).bind(List(&ids)).fetch_all(&mut *tx).await?;
        let plan =
            rules::plan_status_group(rows.into_iter().map(|r| (r.row.id.clone(), r)).collect(), &writes);
        if plan.events.is_empty() {
            return Ok(plan.outcomes.into_iter().map(Ok).collect());
        }
        let (texts, now, fed) = (plan.status_texts(&writes), rules::now(), signals.status.wanted());
        let returned =
            D::write_statuses(&mut tx, &StatusRows { plan: &plan, texts: &texts, now, fed }).await?;
        if returned.len() != plan.events.len() {
            // Cannot happen: every event's row was read by this transaction.
            let (inserted, n) = (returned.len(), plan.events.len());
            return Err(StoreError::Conflict(format!(
                "{inserted} of {n} status events found their resource row"
            )));
        }
        if !plan.deleted.is_empty() {
            let pending = format!("DELETE FROM spec_events WHERE resource_id {list} AND done_at IS NULL");
            sqlx::query(AssertSqlSafe(pending)).bind(List(&plan.deleted)).execute(&mut *tx).await?;
            let remember = crate::deleted::remember_sql::<D>();
            sqlx::query(AssertSqlSafe(remember)).bind(List(&plan.deleted)).execute(&mut *tx).await?;
            let rows = format!("DELETE FROM resources WHERE id {list}");
            sqlx::query(AssertSqlSafe(rows)).bind(List(&plan.deleted)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        signals.status.committed(if fed { feed_rows(&plan.events, &texts, returned, now) } else { None });
        Ok(plan.outcomes.into_iter().map(Ok).collect())
    }
}

#[async_trait]
impl<D: Dialect> Store for SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    for<'q> Option<&'q str>: Encode<'q, D> + Type<D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> f64: Encode<'q, D> + Type<D>,
    for<'q> List<'q, &'q str>: Encode<'q, D> + Type<D>,
    for<'q> List<'q, String>: Encode<'q, D> + Type<D>,
    for<'q> List<'q, i64>: Encode<'q, D> + Type<D>,
    for<'q> Json<&'q crate::Labels>: Encode<'q, D> + Type<D>,
    for<'r> Consumer: FromRow<'r, D::Row>,
    for<'r> Resource: FromRow<'r, D::Row>,
    for<'r> rules::LockedRow: FromRow<'r, D::Row>,
    for<'r> RawResource: FromRow<'r, D::Row>,
    for<'r> SpecEventRow: FromRow<'r, D::Row>,
    for<'r> StatusEventRow: FromRow<'r, D::Row>,
    for<'r> DeletedResource: FromRow<'r, D::Row>,
    for<'r> DeadLetter: FromRow<'r, D::Row>,
    for<'r> (i64,): FromRow<'r, D::Row>,
    for<'r> (String,): FromRow<'r, D::Row>,
    for<'r> ServerInstance: FromRow<'r, D::Row>,
    for<'r> (bool,): FromRow<'r, D::Row>,
    for<'r> (i64, String): FromRow<'r, D::Row>,
{
    fn kind(&self) -> &'static str {
        D::KIND
    }

    async fn migrate(&self) -> Result<()> {
        D::migrate(&self.pool).await
    }

    fn spec_changes(&self) -> Feed<PendingSpec> {
        Feed::new(self.signals.spec.take(), self.signals.spec.wake())
    }

    fn status_changes(&self) -> Feed<StatusEventRow> {
        Feed::new(self.signals.status.take(), self.signals.status.wake())
    }

    async fn create_consumer(&self, new: NewConsumer) -> Result<Consumer> {
        let id = uuid::Uuid::new_v4().to_string();
        let name = new.name.unwrap_or_else(|| id.clone());
        let sql = "INSERT INTO consumers (id, name, labels, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $4) \
                   ON CONFLICT DO NOTHING RETURNING *";
        let q =
            bind!(sqlx::query_as(sql), id.as_str(), name.as_str(), Json(&new.labels), D::stamp(rules::now()));
        let row = q.fetch_optional(&self.pool).await?;
        row.ok_or_else(|| StoreError::Conflict(format!("consumer name {name:?} is already taken")))
    }

    async fn get_consumer(&self, id: &str) -> Result<Consumer> {
        self.one("consumer", "SELECT * FROM consumers WHERE id = $1", id).await
    }

    async fn get_consumer_by_name(&self, name: &str) -> Result<Consumer> {
        self.one("consumer", "SELECT * FROM consumers WHERE name = $1", name).await
    }

    async fn list_consumers(&self, query: &ConsumerQuery) -> Result<Page<Consumer>> {
        let filters = &[("name", query.name.as_ref()), ("id", query.id.as_ref())];
        let (paging, search, order) = (query.paging, query.search.as_ref(), &query.order[..]);
        self.page("consumers", PageQuery { paging, filters, search, order }, false).await
    }

    async fn set_consumer_labels(&self, id: &str, labels: crate::Labels) -> Result<Consumer> {
        let sql = "UPDATE consumers SET labels = $2, updated_at = $3 WHERE id = $1 RETURNING *";
        let q = bind!(sqlx::query_as(sql), id, Json(&labels), D::stamp(rules::now()));
        q.fetch_optional(&self.pool).await?.ok_or_else(|| not_found("consumer", id))
    }

    async fn delete_consumer(&self, id: &str) -> Result<()> {
        let mut tx = Self::begin(&self.pool).await?;
        let sql = locked::<D>("SELECT name FROM consumers WHERE id = $1", "UPDATE");
        let name: Option<String> =
            sqlx::query_scalar(AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *tx).await?;
        let name = name.ok_or_else(|| not_found("consumer", id))?;
        let sql = "SELECT EXISTS (SELECT 1 FROM resources WHERE consumer_name = $1)";
        if sqlx::query_scalar(sql).bind(name.as_str()).fetch_one(&mut *tx).await? {
            return Err(StoreError::ConsumerInUse(name));
        }
        sqlx::query("DELETE FROM consumers WHERE id = $1").bind(id).execute(&mut *tx).await?;
        Ok(tx.commit().await?)
    }

    async fn create_resource(&self, new: NewResource) -> Result<Resource> {
        self.creates.submit(new).await
    }

    async fn update_resource(&self, id: &str, expected_version: i64, payload: Value) -> Result<Resource> {
        let (mut tx, current) = self.lock_resource(id).await?;
        let current = current.ok_or_else(|| not_found("resource", id))?;
        let UpdatePlan::Bump(version) = rules::plan_update(&current, expected_version, &payload)? else {
            return Ok(current);
        };
        let (text, now) = (payload.to_string(), D::stamp(rules::now()));
        // The payload just written is not read back (as for creations).
        let sql = format!(
            "UPDATE resources SET version = $2, payload = $3, updated_at = $4 WHERE id = $1 RETURNING {NO_PAYLOAD}"
        );
        let row: Resource = bind!(sqlx::query_as(AssertSqlSafe(sql)), id, version, D::json(&text), now)
            .fetch_one(&mut *tx)
            .await?;
        let updated = Resource { payload: Arc::new(payload), ..row };
        self.commit_spec_event(tx, &updated, SpecAction::Update).await?;
        Ok(updated)
    }

    async fn mark_deleting(&self, id: &str) -> Result<Option<Resource>> {
        let (mut tx, current) = self.lock_resource(id).await?;
        let Some(current) = current else { return Ok(None) };
        if current.deleted_at.is_some() {
            return Ok(Some(current));
        }
        let sql = "UPDATE resources SET deleted_at = $2, updated_at = $2 WHERE id = $1 RETURNING *";
        let deleting = bind!(sqlx::query_as(sql), id, D::stamp(rules::now())).fetch_one(&mut *tx).await?;
        self.commit_spec_event(tx, &deleting, SpecAction::Delete).await?;
        Ok(Some(deleting))
    }

    async fn get_resource(&self, id: &str) -> Result<Resource> {
        self.one("resource", "SELECT * FROM resources WHERE id = $1", id).await
    }

    async fn get_resources(&self, ids: &[String]) -> Result<Vec<Resource>> {
        self.rows_in("id", ids, "").await
    }

    async fn list_resources(&self, query: &ResourceQuery) -> Result<Page<Resource>> {
        self.resource_page(query, false).await
    }

    async fn list_resources_raw(&self, query: &ResourceQuery) -> Result<Page<RawResource>> {
        self.resource_page(query, false).await
    }

    async fn list_resource_ids(&self, query: &ResourceQuery) -> Result<Page<String>> {
        let Page { items, total, page } = self.resource_page::<(String,)>(query, true).await?;
        Ok(Page { items: items.into_iter().map(|(id,)| id).collect(), total, page })
    }

    async fn get_resources_raw(&self, ids: &[String]) -> Result<Vec<RawResource>> {
        self.rows_in("id", ids, "").await
    }

    async fn resources_for_consumers(&self, consumers: &[String]) -> Result<Vec<Resource>> {
        self.rows_in("consumer_name", consumers, " ORDER BY created_at, id").await
    }

    async fn resources_for_source(&self, source: &str) -> Result<Vec<Resource>> {
        self.rows("SELECT * FROM resources WHERE source = $1 ORDER BY created_at, id", source).await
    }

    async fn apply_status(&self, write: StatusWrite) -> Result<StatusOutcome> {
        self.statuses.submit(write).await
    }

    async fn pending_spec_events(&self, limit: i64) -> Result<Vec<SpecEventRow>> {
        let sql = "SELECT * FROM spec_events WHERE done_at IS NULL ORDER BY seq LIMIT $1";
        Ok(sqlx::query_as(sql).bind(limit.max(0)).fetch_all(&self.pool).await?)
    }

    async fn complete_spec_events(&self, seqs: &[i64]) -> Result<()> {
        if !seqs.is_empty() {
            let q = bind!(sqlx::query(D::COMPLETE_SPEC_EVENTS), List(seqs), D::stamp(rules::now()));
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn status_events_after(&self, after: i64, limit: i64) -> Result<Vec<StatusEventRow>> {
        let sql =
            format!("SELECT {} FROM status_events WHERE seq > $1 ORDER BY seq LIMIT $2", D::STATUS_EVENT);
        Ok(bind!(sqlx::query_as(AssertSqlSafe(sql)), after, limit.max(0)).fetch_all(&self.pool).await?)
    }

    async fn last_status_event_seq(&self) -> Result<i64> {
        let sql = "SELECT COALESCE(MAX(seq), 0) FROM status_events";
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }

    async fn prune_status_events(&self, upto: i64) -> Result<u64> {
        let sql = crate::instances::prune_status_events_sql::<D>();
        Ok(D::affected(sqlx::query(AssertSqlSafe(sql)).bind(upto).execute(&self.pool).await?))
    }

    async fn prune_spec_events(&self, done_before: DateTime<Utc>, limit: i64) -> Result<u64> {
        let sql = "DELETE FROM spec_events WHERE seq IN (SELECT seq FROM spec_events \
                   WHERE done_at IS NOT NULL AND done_at < $1 ORDER BY seq LIMIT $2)";
        let q = bind!(sqlx::query(sql), D::stamp(done_before), limit.max(0));
        Ok(D::affected(q.execute(&self.pool).await?))
    }

    // Dead letters: `crate::dead_letters`.

    async fn add_dead_letter(&self, letter: NewDeadLetter) -> Result<i64> {
        DeadLetters(&self.pool).add(letter).await
    }

    async fn list_dead_letters(&self, query: &DeadLetterQuery) -> Result<Page<DeadLetter>> {
        DeadLetters(&self.pool).list(query).await
    }

    async fn get_dead_letter(&self, id: i64) -> Result<DeadLetter> {
        DeadLetters(&self.pool).get(id).await
    }

    async fn delete_dead_letter(&self, id: i64) -> Result<()> {
        DeadLetters(&self.pool).delete(id).await
    }

    async fn prune_dead_letters(&self, before: DateTime<Utc>, keep: i64) -> Result<u64> {
        DeadLetters(&self.pool).prune(before, keep).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn backlog(&self) -> Result<Backlog> {
        let [pending, oldest, letters] = crate::instances::backlog_sql::<D>();
        let count = |sql| sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)).fetch_one(&self.pool);
        let (pending_spec_events, oldest_pending_ms, dead_letters) =
            (count(pending).await?, count(oldest).await?, count(letters).await?);
        Ok(Backlog { pending_spec_events, oldest_pending_ms, dead_letters })
    }

    // The fleet-wipe guard: `crate::wipe_guard`.

    async fn store_identity(&self) -> Result<String> {
        WipeGuard { pool: &self.pool }.identity().await
    }

    async fn confirm_wipe(&self, consumer: &str, ttl: Duration) -> Result<chrono::DateTime<chrono::Utc>> {
        WipeGuard { pool: &self.pool }.confirm(consumer, ttl).await
    }

    async fn wipe_confirmed(&self, consumer: &str) -> Result<bool> {
        WipeGuard { pool: &self.pool }.confirmed(consumer).await
    }

    async fn deleted_resources(&self, consumers: &[String], limit: i64) -> Result<Vec<DeletedResource>> {
        Deleted { pool: &self.pool }.of_consumers(consumers, limit).await
    }

    async fn deleted_resource(&self, id: &str) -> Result<Option<DeletedResource>> {
        Deleted { pool: &self.pool }.one(id).await
    }

    async fn prune_deleted_resources(&self, keep: Duration) -> Result<u64> {
        Deleted { pool: &self.pool }.prune(keep).await
    }

    // Server instances: `crate::instances`.

    fn is_shared(&self) -> bool {
        D::SHARED
    }

    fn instance_id(&self) -> Option<String> {
        self.signals.claimant.get().cloned()
    }

    async fn register_instance(&self, id: &str, lease: Duration, status_cursor: i64) -> Result<bool> {
        let claimant = self.signals.claimant.get_or_init(|| id.to_owned());
        if claimant != id {
            return Err(StoreError::Invalid(format!("this store serves instance {claimant:?}, not {id:?}")));
        }
        Instances { pool: &self.pool, id }.register(lease, status_cursor).await
    }

    async fn renew_instance(&self, lease: Duration, status_cursor: i64) -> Result<bool> {
        self.instance()?.renew(lease, status_cursor).await
    }

    async fn expire_instances(&self) -> Result<Vec<String>> {
        let dead = Instances { pool: &self.pool, id: "" }.expire().await?;
        if !dead.is_empty() {
            self.signals.spec.committed(None);
        }
        Ok(dead)
    }

    async fn leave_instance(&self) -> Result<()> {
        self.instance()?.leave().await?;
        self.signals.spec.announce();
        Ok(())
    }

    async fn list_instances(&self) -> Result<Vec<ServerInstance>> {
        Instances { pool: &self.pool, id: "" }.list().await
    }

    async fn hold_agent_streams(&self, add: &[String], remove: &[String]) -> Result<()> {
        self.instance()?.hold_agent_streams(add, remove).await
    }

    async fn claim_spec_deliveries(&self, limit: i64, held_only: bool) -> Result<Vec<PendingSpec>> {
        let events = self.instance()?.claim(limit, held_only).await?;
        crate::with_resources(self, events).await
    }

    async fn release_spec_events(&self, seqs: &[i64]) -> Result<()> {
        if !seqs.is_empty() {
            self.instance()?.release(seqs).await?;
            self.signals.spec.announce();
        }
        Ok(())
    }

    async fn complete_unheld_spec_events(&self) -> Result<u64> {
        let sql = crate::instances::complete_unheld_sql::<D>();
        let q = sqlx::query(AssertSqlSafe(sql)).bind(D::stamp(rules::now()));
        Ok(D::affected(q.execute(&self.pool).await?))
    }
}
