//! The dead-letter table (docs/security.md, "Dead letters"), shared by both stores: its
//! statements are plain SQL that SQLite and PostgreSQL read alike (times are milliseconds
//! since the epoch), so one macro implements it over either pool.

use chrono::{DateTime, TimeZone, Utc};

use crate::rules::page_window;
use crate::{
    DeadLetter, DeadLetterOrigin, DeadLetterQuery, MAX_DEAD_LETTER_EVENT_BYTES, NewDeadLetter, Page,
};
use crate::{Result, StoreError};

/// Longest stored text field (consumer, resource id, event id and type), in bytes before
/// escaping; longer values are cut (they are only for reading).
const MAX_FIELD_BYTES: usize = 512;
/// Longest stored reason, in bytes before escaping.
const MAX_REASON_BYTES: usize = 4096;

/// `s` cut to at most `max` bytes (on a character boundary) with its control characters
/// escaped as Rust does (`\n`, `\u{0}`): a NUL byte cannot reach a PostgreSQL text column
/// (that is what made some of these events poison), and a newline cannot forge a log line.
pub(crate) fn clean(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end);
    for c in s[..end].chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// The row values of a [`NewDeadLetter`]: cleaned fields and the event kept only when small.
pub(crate) struct Row {
    pub(crate) received_at_ms: i64,
    pub(crate) origin: &'static str,
    pub(crate) broker: String,
    pub(crate) consumer_name: Option<String>,
    pub(crate) resource_id: Option<String>,
    pub(crate) event_id: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) reason: String,
    pub(crate) event: Option<String>,
    pub(crate) event_bytes: i64,
}

impl Row {
    pub(crate) fn new(letter: NewDeadLetter) -> Self {
        let field = |v: Option<String>| v.map(|s| clean(&s, MAX_FIELD_BYTES));
        let event_bytes = i64::try_from(letter.event.len()).unwrap_or(i64::MAX);
        // The event is CloudEvents JSON text: serde_json escapes control characters in it, so
        // it holds no raw NUL.
        let event = (letter.event.len() <= MAX_DEAD_LETTER_EVENT_BYTES).then_some(letter.event);
        Row {
            received_at_ms: Utc::now().timestamp_millis(),
            origin: letter.origin.as_str(),
            broker: clean(&letter.broker, MAX_FIELD_BYTES),
            consumer_name: field(letter.consumer_name),
            resource_id: field(letter.resource_id),
            event_id: field(letter.event_id),
            event_type: field(letter.event_type),
            reason: clean(&letter.reason, MAX_REASON_BYTES),
            event,
            event_bytes,
        }
    }
}

/// Reads a dead letter from a row of `SELECT *`.
pub(crate) fn from_row<R>(row: &R) -> Result<DeadLetter>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let origin: String = row.try_get("origin")?;
    let ms: i64 = row.try_get("received_at_ms")?;
    Ok(DeadLetter {
        id: row.try_get("id")?,
        received_at: from_ms(ms)?,
        origin: DeadLetterOrigin::parse(&origin).ok_or_else(|| {
            StoreError::Invalid(format!("stored dead letter has unknown origin {origin:?}"))
        })?,
        broker: row.try_get("broker")?,
        consumer_name: row.try_get("consumer_name")?,
        resource_id: row.try_get("resource_id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        reason: row.try_get("reason")?,
        event: row.try_get("event")?,
        event_bytes: row.try_get("event_bytes")?,
    })
}

fn from_ms(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Invalid(format!("stored dead letter time {ms} ms is out of range")))
}

/// The page window of a dead-letter query: `(limit, offset)`.
pub(crate) fn window(query: &DeadLetterQuery) -> Result<(i64, i64)> {
    page_window(query.paging)
}

/// Builds a [`Page`] of dead letters.
pub(crate) fn page(items: Vec<DeadLetter>, total: i64, query: &DeadLetterQuery) -> Page<DeadLetter> {
    Page { items, total, page: query.paging.page }
}

/// Defines a module `$name` of the dead-letter statements over a `$pool` (the stores'
/// `Store` methods call them: an `#[async_trait]` impl cannot hold macro-made methods).
macro_rules! dead_letter_statements {
    ($name:ident, $pool:ty) => {
        pub(crate) mod $name {
            use crate::{DeadLetter, DeadLetterQuery, NewDeadLetter, Page, Result, StoreError};

            pub(crate) async fn add(pool: &$pool, letter: NewDeadLetter) -> Result<i64> {
                let r = super::Row::new(letter);
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO dead_letters (received_at_ms, origin, broker, consumer_name, resource_id, \
                 event_id, event_type, reason, event, event_bytes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind(r.received_at_ms)
                .bind(r.origin)
                .bind(r.broker)
                .bind(r.consumer_name)
                .bind(r.resource_id)
                .bind(r.event_id)
                .bind(r.event_type)
                .bind(r.reason)
                .bind(r.event)
                .bind(r.event_bytes)
                .fetch_one(pool)
                .await?;
                Ok(id)
            }

            pub(crate) async fn list(pool: &$pool, query: &DeadLetterQuery) -> Result<Page<DeadLetter>> {
                let (limit, offset) = super::window(query)?;
                let consumer = query.consumer_name.as_deref();
                let total: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM dead_letters WHERE ($1 IS NULL OR consumer_name = $1)",
                )
                .bind(consumer)
                .fetch_one(pool)
                .await?;
                let rows = sqlx::query(
                    "SELECT * FROM dead_letters WHERE ($1 IS NULL OR consumer_name = $1) \
                 ORDER BY id DESC LIMIT $2 OFFSET $3",
                )
                .bind(consumer)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
                let items = rows.iter().map(super::from_row).collect::<Result<Vec<_>>>()?;
                Ok(super::page(items, total, query))
            }

            pub(crate) async fn get(pool: &$pool, id: i64) -> Result<DeadLetter> {
                let row = sqlx::query("SELECT * FROM dead_letters WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
                    .ok_or_else(|| StoreError::NotFound { kind: "dead letter", key: id.to_string() })?;
                super::from_row(&row)
            }

            pub(crate) async fn delete(pool: &$pool, id: i64) -> Result<()> {
                let done =
                    sqlx::query("DELETE FROM dead_letters WHERE id = $1").bind(id).execute(pool).await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound { kind: "dead letter", key: id.to_string() });
                }
                Ok(())
            }

            pub(crate) async fn prune(
                pool: &$pool,
                before: chrono::DateTime<chrono::Utc>,
                keep: i64,
            ) -> Result<u64> {
                let done = sqlx::query(
                    "DELETE FROM dead_letters WHERE received_at_ms < $1 OR id <= \
                 (SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET $2)",
                )
                .bind(before.timestamp_millis())
                .bind(keep.max(0))
                .execute(pool)
                .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

dead_letter_statements!(pg, sqlx::PgPool);
dead_letter_statements!(sqlite, sqlx::SqlitePool);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_escapes_controls_and_cuts_on_a_char_boundary() {
        assert_eq!(clean("a\0b\nc", 100), "a\\0b\\nc");
        assert_eq!(clean("héllo", 2), "h");
        assert_eq!(clean("ok", 100), "ok");
    }
}
