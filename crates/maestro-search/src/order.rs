//! `orderBy`: comma-separated `field [asc|desc]` terms, and their SQL.

use crate::error::SearchError;
use crate::{Column, Table};

/// One `orderBy` term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderTerm {
    /// The column to sort by.
    pub column: Column,
    /// `desc` (otherwise ascending).
    pub descending: bool,
}

/// Parses Go Maestro's `orderBy`: comma-separated `field [asc|desc]` items, e.g.
/// `name asc, created_at desc`. Field names and directions are case-insensitive, spaces around
/// items are trimmed and empty items skipped (so `""` gives no terms).
///
/// # Errors
/// A [`SearchError`] at the offending word: an unknown or non-sortable field (`unknown orderBy
/// field "payload"; sortable fields: id, name, ...`), a direction other than `asc` / `desc`, or
/// more than two words in an item.
pub fn parse_order_by(input: &str, table: Table) -> Result<Vec<OrderTerm>, SearchError> {
    let mut terms = Vec::new();
    let mut offset = 0;
    for item in input.split(',') {
        if let Some(term) = order_term(item, offset, table)? {
            terms.push(term);
        }
        offset += item.len() + 1;
    }
    Ok(terms)
}

/// The words of `item` with their offsets (`base` is the offset of `item` in the input).
fn words(item: &str, base: usize) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in item.char_indices().chain([(item.len(), ' ')]) {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((base + s, item.get(s..i).unwrap_or_default()));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    out
}

/// One item: `None` when blank.
fn order_term(item: &str, base: usize, table: Table) -> Result<Option<OrderTerm>, SearchError> {
    let words = words(item, base);
    let Some(&(pos, name)) = words.first() else {
        return Ok(None);
    };
    let Some(column) = table.column(name) else {
        let sortable: Vec<&str> = table.columns().iter().map(|c| c.sql()).collect();
        let message = format!("unknown orderBy field \"{name}\"; sortable fields: {}", sortable.join(", "));
        return Err(SearchError::new(pos, message));
    };
    let descending = match words.get(1) {
        None => false,
        Some((_, dir)) if dir.eq_ignore_ascii_case("asc") => false,
        Some((_, dir)) if dir.eq_ignore_ascii_case("desc") => true,
        Some(&(pos, dir)) => {
            let message = format!("expected asc or desc after \"{name}\", found \"{dir}\"");
            return Err(SearchError::new(pos, message));
        }
    };
    if let Some(&(pos, extra)) = words.get(2) {
        let message = format!("expected \",\" or the end of the orderBy item, found \"{extra}\"");
        return Err(SearchError::new(pos, message));
    }
    Ok(Some(OrderTerm { column, descending }))
}

/// The SQL of an `ORDER BY` clause without the keywords, e.g. `name ASC, created_at DESC, id
/// ASC`.
///
/// `id ASC` is appended as a tie-breaker unless `id` is already a term. A nullable column
/// (`deleted_at`) gets `NULLS LAST` when ascending and `NULLS FIRST` when descending on both
/// dialects (PostgreSQL's default; SQLite >= 3.30 knows the syntax). No terms give the default
/// order `created_at ASC, id ASC`.
pub fn order_by_sql(terms: &[OrderTerm]) -> String {
    const DEFAULT: [OrderTerm; 1] = [OrderTerm { column: Column::CreatedAt, descending: false }];
    let terms = if terms.is_empty() { &DEFAULT[..] } else { terms };
    let mut parts: Vec<String> = terms.iter().map(|t| term_sql(*t)).collect();
    if !terms.iter().any(|t| t.column == Column::Id) {
        parts.push(term_sql(OrderTerm { column: Column::Id, descending: false }));
    }
    parts.join(", ")
}

/// `column ASC|DESC [NULLS LAST|FIRST]`.
fn term_sql(t: OrderTerm) -> String {
    let dir = if t.descending { "DESC" } else { "ASC" };
    let nulls = match (t.column.is_nullable(), t.descending) {
        (false, _) => "",
        (true, false) => " NULLS LAST",
        (true, true) => " NULLS FIRST",
    };
    format!("{} {dir}{nulls}", t.column.sql())
}
