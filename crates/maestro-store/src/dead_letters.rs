//! The dead-letter table (docs/security.md, "Dead letters"): what a row holds and how it is
//! read. Its statements (`crate::sql`) are plain SQL that SQLite and PostgreSQL read alike
//! (times are milliseconds since the epoch).

use chrono::{DateTime, TimeZone, Utc};
use sqlx::{Encode, FromRow, IntoArguments, Pool, Type};

use crate::sql::Dialect;
use crate::{
    DeadLetter, DeadLetterOrigin, DeadLetterQuery, MAX_DEAD_LETTER_EVENT_BYTES, NewDeadLetter, Page, Result,
    StoreError, rules,
};

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound { kind: "dead letter", key: id.to_string() }
}

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

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for DeadLetter
where
    &'r str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    /// Reads a dead letter from a row of `SELECT *`.
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        let origin: String = row.try_get("origin")?;
        let ms: i64 = row.try_get("received_at_ms")?;
        let bad = |what: String| sqlx::Error::Decode(what.into());
        Ok(DeadLetter {
            id: row.try_get("id")?,
            received_at: Utc
                .timestamp_millis_opt(ms)
                .single()
                .ok_or_else(|| bad(format!("stored dead letter time {ms} ms is out of range")))?,
            origin: DeadLetterOrigin::parse(&origin)
                .ok_or_else(|| bad(format!("stored dead letter has unknown origin {origin:?}")))?,
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
}

/// The dead-letter statements on `pool`.
pub(crate) struct DeadLetters<'a, D: Dialect>(pub(crate) &'a Pool<D>);

impl<D: Dialect> DeadLetters<'_, D>
where
    D::Arguments: IntoArguments<D>,
    for<'c> &'c Pool<D>: sqlx::Executor<'c, Database = D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    for<'q> Option<&'q str>: Encode<'q, D> + Type<D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'r> DeadLetter: FromRow<'r, D::Row>,
    for<'r> (i64,): FromRow<'r, D::Row>,
{
    pub(crate) async fn add(&self, letter: NewDeadLetter) -> Result<i64> {
        let r = Row::new(letter);
        let sql = "INSERT INTO dead_letters (received_at_ms, origin, broker, consumer_name, resource_id, \
                   event_id, event_type, reason, event, event_bytes) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id";
        let q = bind!(
            sqlx::query_scalar(sql),
            r.received_at_ms,
            r.origin,
            r.broker.as_str(),
            r.consumer_name.as_deref(),
            r.resource_id.as_deref(),
            r.event_id.as_deref(),
            r.event_type.as_deref(),
            r.reason.as_str(),
            r.event.as_deref(),
            r.event_bytes,
        );
        Ok(q.fetch_one(self.0).await?)
    }

    pub(crate) async fn list(&self, query: &DeadLetterQuery) -> Result<Page<DeadLetter>> {
        let (limit, offset) = rules::page_window(query.paging)?;
        let consumer = query.consumer_name.as_deref();
        let sql = "SELECT COUNT(*) FROM dead_letters WHERE ($1 IS NULL OR consumer_name = $1)";
        let total = sqlx::query_scalar(sql).bind(consumer).fetch_one(self.0).await?;
        let sql = "SELECT * FROM dead_letters WHERE ($1 IS NULL OR consumer_name = $1) \
                   ORDER BY id DESC LIMIT $2 OFFSET $3";
        let items = bind!(sqlx::query_as(sql), consumer, limit, offset).fetch_all(self.0).await?;
        Ok(Page { items, total, page: query.paging.page })
    }

    pub(crate) async fn get(&self, id: i64) -> Result<DeadLetter> {
        let sql = "SELECT * FROM dead_letters WHERE id = $1";
        sqlx::query_as(sql).bind(id).fetch_optional(self.0).await?.ok_or_else(|| not_found(id))
    }

    pub(crate) async fn delete(&self, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM dead_letters WHERE id = $1").bind(id).execute(self.0).await?;
        match D::affected(done) {
            0 => Err(not_found(id)),
            _ => Ok(()),
        }
    }

    pub(crate) async fn prune(&self, before: DateTime<Utc>, keep: i64) -> Result<u64> {
        let sql = "DELETE FROM dead_letters WHERE received_at_ms < $1 OR id <= \
                   (SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET $2)";
        let q = bind!(sqlx::query(sql), before.timestamp_millis(), keep.max(0));
        Ok(D::affected(q.execute(self.0).await?))
    }
}

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
