//! Deleted bundles remembered for a while (docs/protocol.md §5.6): when an agent confirms a
//! deletion and the bundle's row goes ([`crate::Store::apply_status`]), its id, consumer, last
//! version and creation time are copied into `deleted_resources` in the same transaction, and
//! stay there until [`crate::Store::prune_deleted_resources`] removes them. Times are the
//! DATABASE's clock, as in [`crate::instances`]. Plain SQL both dialects read alike.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Encode, FromRow, IntoArguments, Pool, Type};

use crate::Result;
use crate::model::DeletedResource;
use crate::sql::{Dialect, List};

/// The columns of a [`DeletedResource`].
const COLUMNS: &str = "id, consumer_name, version, created_at, deleted_at_ms";

/// The statement, run before the rows go, that copies resources `id {list}` (bound first)
/// into `deleted_resources`, replacing an earlier deletion of the same id.
pub(crate) fn remember_sql<D: Dialect>() -> String {
    format!(
        "INSERT INTO deleted_resources ({COLUMNS}) \
         SELECT id, consumer_name, version, created_at, {now} FROM resources WHERE id {list} \
         ON CONFLICT (id) DO UPDATE SET consumer_name = excluded.consumer_name, \
         version = excluded.version, created_at = excluded.created_at, \
         deleted_at_ms = excluded.deleted_at_ms",
        now = D::NOW_MS,
        list = D::IN_LIST,
    )
}

/// The deleted-resource statements on `pool`.
pub(crate) struct Deleted<'a, D: Dialect> {
    pub(crate) pool: &'a Pool<D>,
}

impl<D: Dialect> Deleted<'_, D>
where
    D::Arguments: IntoArguments<D>,
    for<'c> &'c Pool<D>: sqlx::Executor<'c, Database = D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> List<'q, String>: Encode<'q, D> + Type<D>,
    for<'r> DeletedResource: FromRow<'r, D::Row>,
{
    /// The latest `limit` deletions of each of `consumers`' bundles, by consumer, each one's
    /// newest first.
    pub(crate) async fn of_consumers(
        &self,
        consumers: &[String],
        limit: i64,
    ) -> Result<Vec<DeletedResource>> {
        if consumers.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM (SELECT {COLUMNS}, ROW_NUMBER() OVER (PARTITION BY consumer_name \
             ORDER BY deleted_at_ms DESC, id) AS n FROM deleted_resources WHERE consumer_name {list}) AS d \
             WHERE n <= $2 ORDER BY consumer_name, deleted_at_ms DESC, id",
            list = D::IN_LIST
        );
        let q = sqlx::query_as(AssertSqlSafe(sql)).bind(List(consumers)).bind(limit.max(0));
        Ok(q.fetch_all(self.pool).await?)
    }

    /// The deletion of bundle `id`, if remembered.
    pub(crate) async fn one(&self, id: &str) -> Result<Option<DeletedResource>> {
        let sql = format!("SELECT {COLUMNS} FROM deleted_resources WHERE id = $1");
        Ok(sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_optional(self.pool).await?)
    }

    /// Forgets the deletions older than `keep`; returns how many.
    pub(crate) async fn prune(&self, keep: Duration) -> Result<u64> {
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let sql = format!("DELETE FROM deleted_resources WHERE deleted_at_ms < {} - $1", D::NOW_MS);
        let done = sqlx::query(AssertSqlSafe(sql)).bind(keep_ms).execute(self.pool).await?;
        Ok(D::affected(done))
    }
}
