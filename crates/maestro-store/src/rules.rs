//! The store's rules, apart from SQL: the acceptance rules of spec updates and statuses
//! (docs/architecture.md §5), group planning, paging and timestamps.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::{Paging, Resource, Result, StatusEventKind, StatusOutcome, StatusWrite, StoreError};

/// Largest page size served; bigger sizes are clamped (Maestro's limit).
pub(crate) const MAX_PAGE_SIZE: i64 = 65_500;

/// The current time truncated to microseconds (the precision both databases keep), so a
/// returned row equals the same row read back.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// `(limit, offset)` of a page. Errors: [`StoreError::Invalid`] for page < 1 or size < 0.
/// Sizes above [`MAX_PAGE_SIZE`] are clamped.
pub(crate) fn page_window(paging: Paging) -> Result<(i64, i64)> {
    if paging.page < 1 {
        return Err(StoreError::Invalid(format!("page must be at least 1, got {}", paging.page)));
    }
    if paging.size < 0 {
        return Err(StoreError::Invalid(format!("size must not be negative, got {}", paging.size)));
    }
    let size = paging.size.min(MAX_PAGE_SIZE);
    let offset = (paging.page - 1).saturating_mul(size);
    Ok((size, offset))
}

/// What an update does to a locked resource row.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UpdatePlan {
    /// Same payload: return the row as is.
    Unchanged,
    /// Write the payload at this new version and append an `Update` outbox row.
    Bump(i64),
}

/// Applies the spec update rules to the current row (docs/protocol.md §12.6).
/// Errors: [`StoreError::Conflict`] when deleting or on a stale expected version.
pub(crate) fn plan_update(current: &Resource, expected_version: i64, payload: &Value) -> Result<UpdatePlan> {
    if current.deleted_at.is_some() {
        return Err(StoreError::Conflict(format!("resource {:?} is being deleted", current.id)));
    }
    if expected_version != 0 && expected_version != current.version {
        return Err(StoreError::Conflict(format!(
            "resource {:?}: the update names version {expected_version} but the stored version is {}",
            current.id, current.version
        )));
    }
    if *current.payload == *payload {
        return Ok(UpdatePlan::Unchanged);
    }
    Ok(UpdatePlan::Bump(current.version + 1))
}

/// What a status write does to a locked resource row.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StatusPlan {
    /// Nothing to write; answer this outcome.
    Skip(StatusOutcome),
    /// Hard-delete the row, drop its pending spec outbox rows, append `StatusDelete`.
    HardDelete,
    /// Store the status and append `StatusUpdate`.
    Store,
}

/// Applies the status acceptance rules (docs/security.md, "Bad input"; protocol §6) to the
/// current row, if any, whose stored status event is `status` (the row's, or that of an earlier
/// write of the same group); `data` is the write's data text ([`HeldStatus::of_text`]). Every
/// status, `Deleted` included, must be for the stored version and carry a sequence id that is
/// a snowflake not from the future and newer than the stored one when the stored status is for
/// the same version: a bogus `Deleted` cannot hard-delete a bundle, and a sequence id from the
/// far future cannot freeze a bundle's status past the next spec version.
pub(crate) fn plan_status(
    current: Option<&Resource>,
    status: Option<HeldStatus<'_>>,
    write: &StatusWrite,
    data: Option<&str>,
) -> StatusPlan {
    let Some(current) = current else {
        return StatusPlan::Skip(StatusOutcome::UnknownResource);
    };
    if current.consumer_name != write.consumer_name {
        return StatusPlan::Skip(StatusOutcome::ConsumerMismatch { expected: current.consumer_name.clone() });
    }
    if write.version != current.version {
        return StatusPlan::Skip(StatusOutcome::Stale(format!(
            "status is for version {} but the stored version is {}",
            write.version, current.version
        )));
    }
    if let Err(reason) = check_sequence(current, status, write) {
        return StatusPlan::Skip(StatusOutcome::Stale(reason));
    }
    if write.deleted {
        if current.deleted_at.is_none() {
            return StatusPlan::Skip(StatusOutcome::Stale(
                "Deleted reported for a resource that is not being deleted".to_owned(),
            ));
        }
        return StatusPlan::HardDelete;
    }
    // Unchanged only when reported for the same version: the same data for a newer version is
    // stored, so the held status names the version the agent observed.
    if status.is_some_and(|s| s.version == Some(write.version) && s.data.is_some() && s.data == data) {
        return StatusPlan::Skip(StatusOutcome::Unchanged);
    }
    StatusPlan::Store
}

/// How far in the future a sequence id's timestamp may be (agents' clocks drift).
pub(crate) const MAX_SEQUENCE_SKEW_MS: i64 = 10 * 60 * 1000;

/// Checks `write.sequence_id`: a snowflake whose time is at most [`MAX_SEQUENCE_SKEW_MS`] ahead
/// of now, and newer than the stored one unless the stored status names another version (a new
/// spec version starts a new sequence). The error is the reason.
fn check_sequence(
    current: &Resource,
    status: Option<HeldStatus<'_>>,
    write: &StatusWrite,
) -> std::result::Result<(), String> {
    let now_ms = Utc::now().timestamp_millis();
    maestro_api::snowflake::check_not_future(&write.sequence_id, now_ms, MAX_SEQUENCE_SKEW_MS)
        .map_err(|e| e.to_string())?;
    let stored_version = status.and_then(|s| s.version);
    if stored_version.is_some_and(|v| v != write.version) {
        return Ok(());
    }
    match maestro_api::snowflake::is_newer(&write.sequence_id, current.sequence_id.as_deref()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "sequence id {} is not newer than the stored {}",
            write.sequence_id,
            current.sequence_id.as_deref().unwrap_or("")
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// The status a row holds, as the acceptance rules read it: its `data` as JSON text and the
/// spec version it was reported for. Data are compared as text: every stored status event is
/// the server's own serialization of a JSON tree (compact, keys sorted), so equal texts are
/// equal trees and the reverse. A status stored in another form (whitespace or key order of
/// the `jsonb` columns of old PostgreSQL schemas) reads as changed, and is stored once more.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeldStatus<'a> {
    data: Option<&'a str>,
    version: Option<i64>,
}

/// The members of a status event the acceptance rules read; the others are skipped unparsed.
#[derive(serde::Deserialize)]
struct StatusMembers<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    resourceversion: Option<&'a RawValue>,
}

impl<'a> HeldStatus<'a> {
    /// The status event text stored in a row, or of a write: nothing is known of text that
    /// is not a JSON object (no data, no version), so it never reads as unchanged; neither
    /// does a status whose data is absent or `null`.
    pub(crate) fn of_text(event: &'a str) -> Self {
        match serde_json::from_str::<StatusMembers<'a>>(event) {
            Ok(m) => HeldStatus {
                data: m.data.map(RawValue::get),
                version: m.resourceversion.and_then(|v| version_of(&serde_json::from_str(v.get()).ok()?)),
            },
            Err(_) => HeldStatus { data: None, version: None },
        }
    }

    /// The status of `write`, whose data text is `data` (the write's [`HeldStatus::of_text`]).
    fn of_write(write: &StatusWrite, data: Option<&'a str>) -> Self {
        HeldStatus { data, version: Some(write.version) }
    }
}

/// A `resourceversion` attribute as stored: a JSON number or a decimal string.
fn version_of(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// A resource row a status group locked: the row without its status event (`status` is
/// `None`), and that event's text as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LockedRow {
    /// The row.
    #[sqlx(flatten)]
    pub(crate) row: Resource,
    /// The stored status event's text (column `held`).
    pub(crate) held: Option<crate::StoredJson>,
}

/// The columns of a [`LockedRow`].
pub(crate) const LOCKED_ROW: &str = "id, name, consumer_name, source, version, status AS held, status_hash, \
                                     sequence_id, deleted_at, created_at, updated_at";

/// One status event row a status group appends, in order.
#[derive(Debug)]
pub(crate) struct PlannedEvent {
    /// The resource as it was when the status was accepted (id, source, consumer, payload;
    /// its `status` is not carried).
    pub(crate) resource: Resource,
    /// `StatusUpdate` or `StatusDelete`.
    pub(crate) kind: StatusEventKind,
    /// Index of the write whose status event this row holds.
    pub(crate) write: usize,
}

/// What a group of status writes does to its locked rows, as if applied one by one in order
/// (docs/architecture.md §5): a later write of the same resource sees the earlier one's effect.
#[derive(Debug, Default)]
pub(crate) struct StatusGroupPlan {
    /// One outcome per write, in order.
    pub(crate) outcomes: Vec<StatusOutcome>,
    /// Rows whose status changed, with their final hash and sequence id (their `status` is not
    /// carried) and the index of the write whose status event they now hold (none of them
    /// deleted later).
    pub(crate) updated: Vec<(Resource, usize)>,
    /// Ids of rows to hard-delete (with their pending spec outbox rows).
    pub(crate) deleted: Vec<String>,
    /// Status event rows to append, in order.
    pub(crate) events: Vec<PlannedEvent>,
}

impl StatusGroupPlan {
    /// The status event of each write the plan stores, as JSON text (the write's own, not
    /// copied, however many rows hold it); `None` for the writes it does not store. Every
    /// write an updated row holds also has its event row, so the events name them all.
    pub(crate) fn status_texts<'w>(&self, writes: &'w [StatusWrite]) -> Vec<Option<&'w str>> {
        let mut texts = vec![None; writes.len()];
        for i in self.events.iter().map(|e| e.write) {
            texts[i] = Some(writes[i].event.as_str());
        }
        texts
    }
}

/// Plans a status group over the current rows of the resources it names (`current`, keyed by
/// id; a missing id is an unknown resource). No status event is copied: the plan refers to
/// the writes by index.
pub(crate) fn plan_status_group(
    mut current: std::collections::HashMap<String, LockedRow>,
    writes: &[StatusWrite],
) -> StatusGroupPlan {
    let mut plan = StatusGroupPlan::default();
    // Rows whose status changed in this group: id -> the write now holding it.
    let mut dirty: Vec<(String, usize)> = Vec::new();
    // Each write's data text, read once.
    let data: Vec<Option<&str>> = writes.iter().map(|w| HeldStatus::of_text(&w.event).data).collect();
    for (i, write) in writes.iter().enumerate() {
        let held = dirty.iter().find(|(id, _)| id == &write.resource_id);
        let locked = current.get(&write.resource_id);
        let held = match held {
            Some((_, w)) => Some(HeldStatus::of_write(&writes[*w], data[*w])),
            None => locked.and_then(|r| r.held.as_ref()).map(|text| HeldStatus::of_text(text.get())),
        };
        let outcome = match plan_status(locked.map(|r| &r.row), held, write, data[i]) {
            StatusPlan::Skip(outcome) => outcome,
            StatusPlan::Store => match current.get_mut(&write.resource_id).map(|r| &mut r.row) {
                Some(row) => {
                    row.status_hash = write.status_hash.clone();
                    row.sequence_id = Some(write.sequence_id.clone());
                    plan.events.push(PlannedEvent {
                        resource: row.clone(),
                        kind: StatusEventKind::StatusUpdate,
                        write: i,
                    });
                    match dirty.iter_mut().find(|(id, _)| id == &write.resource_id) {
                        Some(d) => d.1 = i,
                        None => dirty.push((write.resource_id.clone(), i)),
                    }
                    StatusOutcome::Stored
                }
                None => StatusOutcome::UnknownResource,
            },
            StatusPlan::HardDelete => match current.remove(&write.resource_id).map(|r| r.row) {
                Some(row) => {
                    dirty.retain(|(id, _)| id != &row.id);
                    plan.deleted.push(row.id.clone());
                    plan.events.push(PlannedEvent {
                        resource: row,
                        kind: StatusEventKind::StatusDelete,
                        write: i,
                    });
                    StatusOutcome::Deleted
                }
                None => StatusOutcome::UnknownResource,
            },
        };
        plan.outcomes.push(outcome);
    }
    plan.updated = dirty.into_iter().filter_map(|(id, w)| current.remove(&id).map(|r| (r.row, w))).collect();
    plan
}

/// Splits a group of new resources: `Err` answers for writes refused before any SQL (unknown
/// consumer when `known_consumers` is given, an id repeated within the group: the first one
/// wins), and the indexes of the writes to insert.
pub(crate) fn screen_creates(
    ops: &[crate::NewResource],
    known_consumers: Option<&std::collections::HashSet<String>>,
) -> (Vec<Option<Result<Resource>>>, Vec<usize>) {
    let mut answers: Vec<Option<Result<Resource>>> = Vec::with_capacity(ops.len());
    let mut insert = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        if known_consumers.is_some_and(|known| !known.contains(&op.consumer_name)) {
            answers.push(Some(Err(StoreError::UnknownConsumer(op.consumer_name.clone()))));
        } else if !seen.insert(op.id.as_str()) {
            answers.push(Some(Err(exists(&op.id))));
        } else {
            answers.push(None);
            insert.push(i);
        }
    }
    (answers, insert)
}

/// The conflict of creating a resource whose id exists.
pub(crate) fn exists(id: &str) -> StoreError {
    StoreError::Conflict(format!("resource {id:?} already exists"))
}

/// Answers the writes of a create group that were to be inserted (`insert`) but were not
/// (`created` has no row of their id) and whose consumer is not among `known` (the consumers
/// that exist): "unknown consumer". When reading the consumers failed (`Err`, its message),
/// every such write gets a retryable database error instead: it was not written, and trying
/// it again is answered from the database as it is then.
pub(crate) fn unknown_consumers(
    ops: &[crate::NewResource],
    answers: &mut [Option<Result<Resource>>],
    insert: &[usize],
    created: &std::collections::HashMap<String, Resource>,
    known: std::result::Result<&[String], &str>,
) {
    for &i in insert {
        let (Some(op), Some(slot)) = (ops.get(i), answers.get_mut(i)) else { continue };
        if created.contains_key(&op.id) {
            continue;
        }
        match known {
            Ok(known) if known.contains(&op.consumer_name) => {}
            Ok(_) => *slot = Some(Err(StoreError::UnknownConsumer(op.consumer_name.clone()))),
            Err(reason) => {
                let e =
                    std::io::Error::other(format!("reading the consumers of a write not created: {reason}"));
                *slot = Some(Err(StoreError::Database(sqlx::Error::Io(e))));
            }
        }
    }
}

/// Fills the answers of the inserted writes of a create group from the rows the insert
/// returned (keyed by id); an id with no row existed already.
pub(crate) fn answer_creates(
    ops: &[crate::NewResource],
    mut answers: Vec<Option<Result<Resource>>>,
    insert: &[usize],
    mut created: std::collections::HashMap<String, Resource>,
) -> Vec<Result<Resource>> {
    for &i in insert {
        if let (Some(op), Some(slot @ None)) = (ops.get(i), answers.get_mut(i)) {
            *slot = Some(created.remove(&op.id).ok_or_else(|| exists(&op.id)));
        }
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(StoreError::Invalid("unanswered write".into()))))
        .collect()
}

/// What one list page asks the store for: paging, exact-match `(column, value)` filters (unset
/// ones skipped), a checked search, and the order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageQuery<'a> {
    /// The page window.
    pub(crate) paging: Paging,
    /// `column = value` filters; `None` values are skipped.
    pub(crate) filters: &'a [(&'static str, Option<&'a String>)],
    /// A checked search (docs/rest.md, "Search language"), joined with the filters by `AND`.
    pub(crate) search: Option<&'a maestro_search::Filter>,
    /// The sort order; empty means `created_at, id`.
    pub(crate) order: &'a [maestro_search::OrderTerm],
}

impl PageQuery<'_> {
    /// True when nothing filters the rows (no exact filter set, no search): the page's total
    /// is the table's row count.
    pub(crate) fn is_unfiltered(&self) -> bool {
        self.search.is_none() && self.filters.iter().all(|(_, value)| value.is_none())
    }
}

/// The exact-match filters of a resource query, as `(column, value)` pairs.
pub(crate) fn resource_filters(query: &crate::ResourceQuery) -> [(&'static str, Option<&String>); 4] {
    [
        ("consumer_name", query.consumer_name.as_ref()),
        ("source", query.source.as_ref()),
        ("name", query.name.as_ref()),
        ("id", query.id.as_ref()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> Resource {
        Resource {
            id: id.into(),
            name: id.into(),
            consumer_name: "c1".into(),
            source: "s".into(),
            version: 1,
            payload: Value::Null.into(),
            status: None,
            status_hash: None,
            sequence_id: None,
            deleted_at: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    #[test]
    fn a_held_status_is_read_from_its_text() {
        let held = HeldStatus::of_text(r#"{"data":{"a":[1,2]},"resourceversion":"3","specversion":"1.0"}"#);
        assert_eq!((held.data, held.version), (Some(r#"{"a":[1,2]}"#), Some(3)));
        let held = HeldStatus::of_text(r#"{"resourceversion":4,"data":null}"#);
        assert_eq!((held.data, held.version), (None, Some(4)), "null data is no data");
        let held = HeldStatus::of_text("[1]");
        assert_eq!((held.data, held.version), (None, None));
    }

    /// The same data text for the same version is unchanged; the same data in another form
    /// (a `jsonb`-era row's whitespace) is stored once more; a status without data is never
    /// unchanged.
    #[test]
    fn unchanged_means_the_same_data_text() {
        let write = |event: &str| StatusWrite {
            resource_id: "r1".into(),
            consumer_name: "c1".into(),
            version: 1,
            sequence_id: maestro_api::snowflake::Generator::new(1).next_string(),
            status_hash: None,
            event: event.into(),
            deleted: false,
        };
        let stored = r#"{"data":{"a":1},"resourceversion":1}"#;
        let plan = |event: &str| {
            let data = HeldStatus::of_text(event).data;
            plan_status(Some(&row("r1")), Some(HeldStatus::of_text(stored)), &write(event), data)
        };
        assert!(matches!(
            plan(r#"{"resourceversion":1,"data":{"a":1}}"#),
            StatusPlan::Skip(StatusOutcome::Unchanged)
        ));
        assert!(matches!(plan(r#"{"data": {"a": 1}}"#), StatusPlan::Store));
        assert!(matches!(plan(r#"{"data":{"a":2}}"#), StatusPlan::Store));
        let without = HeldStatus::of_text(r#"{"resourceversion":1}"#);
        assert!(matches!(
            plan_status(Some(&row("r1")), Some(without), &write("{}"), None),
            StatusPlan::Store
        ));
    }

    #[test]
    fn paging_rules() {
        assert_eq!(page_window(Paging { page: 1, size: 10 }).expect("ok"), (10, 0));
        assert_eq!(page_window(Paging { page: 3, size: 10 }).expect("ok"), (10, 20));
        assert_eq!(page_window(Paging { page: 2, size: 100_000 }).expect("ok"), (65_500, 65_500));
        assert!(page_window(Paging { page: 0, size: 10 }).is_err());
        assert!(page_window(Paging { page: 1, size: -1 }).is_err());
    }

    /// A create group written in one statement: a write not created is "already exists" when
    /// its consumer exists, "unknown consumer" when not, and retryable (it was not written)
    /// when the consumers could not be read; a created write keeps its answer.
    #[test]
    fn writes_not_created_are_answered_by_their_consumer() {
        let new = |id: &str, consumer: &str| crate::NewResource {
            id: id.into(),
            name: id.into(),
            consumer_name: consumer.into(),
            source: "s".into(),
            payload: Value::Null.into(),
        };
        let ops = [new("r1", "c1"), new("r2", "c1"), new("r3", "ghost")];
        let (answers, insert) = screen_creates(&ops, None);
        let row = row("r1");
        let created: std::collections::HashMap<_, _> = [("r1".to_owned(), row)].into();
        let mut known = answers;
        unknown_consumers(&ops, &mut known, &insert, &created, Ok(&["c1".to_owned()]));
        let known = answer_creates(&ops, known, &insert, created.clone());
        assert!(known[0].as_ref().is_ok_and(|r| r.id == "r1"));
        assert!(matches!(&known[1], Err(StoreError::Conflict(m)) if m.contains("r2")), "{:?}", known[1]);
        assert!(matches!(&known[2], Err(StoreError::UnknownConsumer(c)) if c == "ghost"), "{:?}", known[2]);

        let (mut failed, insert) = screen_creates(&ops, None);
        unknown_consumers(&ops, &mut failed, &insert, &created, Err("connection reset"));
        let failed = answer_creates(&ops, failed, &insert, created);
        assert!(failed[0].is_ok());
        for answer in &failed[1..] {
            let e = answer.as_ref().expect_err("not created");
            assert!(e.is_retryable() && e.to_string().contains("connection reset"), "{e}");
        }
    }
}
