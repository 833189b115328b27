//! The store's part of the fleet-wipe guard (docs/operations.md §3.5): the store identity
//! (`store_identity`, one row made by the migration) and operators' wipe confirmations
//! (`wipe_confirmations`). Times are milliseconds of the DATABASE's clock, as in
//! [`crate::instances`]. Plain SQL both dialects read alike.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::{AssertSqlSafe, Encode, FromRow, IntoArguments, Pool, Type};

use crate::sql::Dialect;
use crate::{Result, StoreError};

/// Longest confirmation an operator may give.
pub const MAX_WIPE_CONFIRMATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The wipe-guard statements on `pool`.
pub(crate) struct WipeGuard<'a, D: Dialect> {
    pub(crate) pool: &'a Pool<D>,
}

impl<D: Dialect> WipeGuard<'_, D>
where
    D::Arguments: IntoArguments<D>,
    for<'c> &'c Pool<D>: sqlx::Executor<'c, Database = D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'r> (String,): FromRow<'r, D::Row>,
    for<'r> (i64,): FromRow<'r, D::Row>,
    for<'r> (bool,): FromRow<'r, D::Row>,
{
    /// The identity row the migration made. Errors: [`StoreError::Invalid`] when it is
    /// missing (someone deleted it: the guard cannot work without it).
    pub(crate) async fn identity(&self) -> Result<String> {
        let row: Option<(String,)> = sqlx::query_as("SELECT id FROM store_identity WHERE singleton = 1")
            .fetch_optional(self.pool)
            .await?;
        row.map(|(id,)| id).ok_or_else(|| {
            StoreError::Invalid("the store identity row is missing (table store_identity)".into())
        })
    }

    /// Upserts the confirmation of `consumer` for `ttl`; returns its end.
    pub(crate) async fn confirm(&self, consumer: &str, ttl: Duration) -> Result<DateTime<Utc>> {
        if ttl > MAX_WIPE_CONFIRMATION {
            return Err(StoreError::Invalid(format!(
                "a wipe confirmation lasts at most {} s, not {} s",
                MAX_WIPE_CONFIRMATION.as_secs(),
                ttl.as_secs()
            )));
        }
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let now = D::NOW_MS;
        let sql = format!(
            "INSERT INTO wipe_confirmations (consumer_name, confirmed_at_ms, until_ms) \
             VALUES ($1, {now}, {now} + $2) ON CONFLICT (consumer_name) DO UPDATE \
             SET confirmed_at_ms = excluded.confirmed_at_ms, until_ms = excluded.until_ms \
             RETURNING until_ms"
        );
        let (until,): (i64,) =
            sqlx::query_as(AssertSqlSafe(sql)).bind(consumer).bind(ttl_ms).fetch_one(self.pool).await?;
        Utc.timestamp_millis_opt(until)
            .single()
            .ok_or_else(|| StoreError::Invalid(format!("confirmation end {until} ms is out of range")))
    }

    /// Whether a confirmation of `consumer` holds now.
    pub(crate) async fn confirmed(&self, consumer: &str) -> Result<bool> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM wipe_confirmations WHERE consumer_name = $1 AND until_ms > {})",
            D::NOW_MS
        );
        let (confirmed,): (bool,) =
            sqlx::query_as(AssertSqlSafe(sql)).bind(consumer).fetch_one(self.pool).await?;
        Ok(confirmed)
    }
}
