//! The checker: a syntax tree plus a [`Table`] to a typed [`Filter`], or the first semantic
//! error (unknown field, wrongly typed value, bad timestamp, bad `@>` object).

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::ast::{CmpOp, Expr, Field, Predicate, Str, Test, Value, ValueKind};
use crate::error::SearchError;
use crate::sql::Param;
use crate::{Column, ColumnType, Table, parse};

/// A checked, typed search filter for one table; render it with [`Filter::to_fragment`].
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The checked tree.
    pub(crate) root: Node,
}

/// A checked boolean expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// All hold (two or more).
    And(Vec<Node>),
    /// One holds (two or more).
    Or(Vec<Node>),
    /// Negation.
    Not(Box<Node>),
    /// A condition.
    Cond(Cond),
}

/// A whitelisted JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonRoot {
    /// `payload->'metadata'` of a resource (the work's ObjectMeta).
    Metadata,
    /// `payload->'metadata'->'labels'` of a resource.
    Labels,
    /// `payload->'metadata'->'annotations'` of a resource.
    Annotations,
    /// `labels` of a consumer.
    ConsumerLabels,
}

impl JsonRoot {
    /// How the search language spells it.
    fn spelling(self) -> &'static str {
        match self {
            JsonRoot::Metadata => "payload->'metadata'",
            JsonRoot::Labels => "payload->'metadata'->'labels'",
            JsonRoot::Annotations => "payload->'metadata'->'annotations'",
            JsonRoot::ConsumerLabels => "labels",
        }
    }

    /// The JSON objects of `table`.
    fn of(table: Table) -> &'static [JsonRoot] {
        match table {
            Table::Resources => &[JsonRoot::Labels, JsonRoot::Annotations, JsonRoot::Metadata],
            Table::Consumers => &[JsonRoot::ConsumerLabels],
        }
    }

    /// The object `name` (lowercased) and `path` name on `table`, if any.
    fn find(table: Table, name: &str, path: &[&str]) -> Option<JsonRoot> {
        match (table, name, path) {
            (Table::Resources, "payload", ["metadata"]) => Some(JsonRoot::Metadata),
            (Table::Resources, "payload", ["metadata", "labels"]) => Some(JsonRoot::Labels),
            (Table::Resources, "payload", ["metadata", "annotations"]) => Some(JsonRoot::Annotations),
            (Table::Consumers, "labels", []) => Some(JsonRoot::ConsumerLabels),
            _ => None,
        }
    }
}

/// What a condition tests: a column, or the text of one key of a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    /// A plain column.
    Column(Column),
    /// `root->>'key'` (text).
    Key {
        /// The object.
        root: JsonRoot,
        /// The key.
        key: String,
    },
}

/// A scalar of an `@>` object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JsonScalar {
    /// A string.
    Text(String),
    /// An integer.
    Int(i64),
    /// A non-integer number.
    Real(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// A checked condition; values are typed for their target.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    /// `target op value`.
    Cmp { target: Target, op: CmpOp, value: Param },
    /// `target IS [NOT] NULL`.
    IsNull { target: Target, negated: bool },
    /// `target [NOT] LIKE|ILIKE pattern` (text targets only).
    Like { target: Target, negated: bool, case_insensitive: bool, pattern: String },
    /// `target [NOT] IN (values)`.
    In { target: Target, negated: bool, values: Vec<Param> },
    /// `target [NOT] BETWEEN low AND high`.
    Between { target: Target, negated: bool, low: Param, high: Param },
    /// `root @> json`: `json` is the normalized object, `pairs` its entries.
    Contains { root: JsonRoot, json: String, pairs: Vec<(String, JsonScalar)> },
}

/// Parses and checks `input` against `table`.
///
/// Returns `Ok(None)` for empty or whitespace-only input (no filter).
///
/// # Errors
/// The [`SearchError`] of [`parse`], or a semantic error at the offending token: unknown field
/// (`unknown field "x"; searchable fields: ...`), a value of the wrong type (`name compares with
/// strings, got the number 3`), a bad timestamp (or a year outside 1–9999), `LIKE` on a
/// non-text field, `@>` on a field that is not a JSON object or with something else than an
/// object of scalars; a search over the size limits ([`MAX_CONDITIONS`], [`MAX_PARAMS`],
/// [`MAX_PATTERN_BYTES`]).
pub fn compile(input: &str, table: Table) -> Result<Option<Filter>, SearchError> {
    if input.trim_ascii().is_empty() {
        return Ok(None);
    }
    let expr = parse(input)?;
    let conditions = count_conditions(&expr);
    if conditions > MAX_CONDITIONS {
        return Err(SearchError::new(
            0,
            format!("the search has {conditions} conditions; at most {MAX_CONDITIONS} are accepted"),
        ));
    }
    let filter = Filter { root: check(&expr, table)? };
    // SQLite binds the most parameters (two per `@>` pair), so its count bounds both dialects.
    let params = filter.to_fragment(crate::Dialect::Sqlite).params().len();
    if params > MAX_PARAMS {
        return Err(SearchError::new(
            0,
            format!("the search holds {params} values; at most {MAX_PARAMS} are accepted"),
        ));
    }
    Ok(Some(filter))
}

/// The most conditions (predicates) one search may hold: SQLite parses an `AND`/`OR` chain
/// as nested expressions and refuses more than 1,000 levels, which would answer 500.
pub const MAX_CONDITIONS: usize = 256;
/// The most values one search may bind (`IN` lists, `@>` pairs, keys…): PostgreSQL takes at
/// most 65,535 parameters per statement and SQLite 32,766; far fewer keeps plans cheap.
pub const MAX_PARAMS: usize = 2_048;
/// The longest `LIKE`/`ILIKE` pattern, in bytes (SQLite refuses patterns over 50,000 bytes).
pub const MAX_PATTERN_BYTES: usize = 1_024;

/// The predicates of `expr`.
fn count_conditions(expr: &Expr) -> usize {
    match expr {
        Expr::And(items) | Expr::Or(items) => items.iter().map(count_conditions).sum(),
        Expr::Not { expr, .. } => count_conditions(expr),
        Expr::Pred(_) => 1,
    }
}

/// Checks one expression.
fn check(expr: &Expr, table: Table) -> Result<Node, SearchError> {
    let all = |items: &[Expr]| items.iter().map(|e| check(e, table)).collect::<Result<Vec<_>, _>>();
    Ok(match expr {
        Expr::And(items) => Node::And(all(items)?),
        Expr::Or(items) => Node::Or(all(items)?),
        Expr::Not { expr, .. } => Node::Not(Box::new(check(expr, table)?)),
        Expr::Pred(p) => Node::Cond(predicate(p, table)?),
    })
}

/// What a field names.
enum Resolved {
    /// A column or a key's text.
    Target(Target, ColumnType),
    /// A whole JSON object.
    Root(JsonRoot),
}

/// The searchable fields of `table`, for error messages.
fn searchable(table: Table) -> String {
    let columns = table.columns().iter().map(|c| c.sql());
    let roots = JsonRoot::of(table).iter().map(|r| r.spelling());
    let all: Vec<&str> = columns.chain(roots).collect();
    format!(
        "searchable fields: {} (the JSON objects take @> '{{\"key\":\"value\"}}' or ->>'key')",
        all.join(", ")
    )
}

/// Resolves a field against `table`'s whitelist.
fn resolve(field: &Field, table: Table) -> Result<Resolved, SearchError> {
    if let Some(qualifier) = &field.table
        && !qualifier.name.eq_ignore_ascii_case(table.name())
    {
        let message = format!("unknown table \"{}\": this search is on \"{}\"", qualifier.name, table.name());
        return Err(SearchError::new(qualifier.pos, message));
    }
    let name = field.name.name.to_ascii_lowercase();
    if let Some(column) = table.column(&name) {
        if let Some(arrow) = field.path.first().or(field.text_key.as_ref()) {
            let message = format!(
                "{} is not a JSON object, so it has no -> or ->> keys; {}",
                column.sql(),
                searchable(table)
            );
            return Err(SearchError::new(arrow.pos, message));
        }
        return Ok(Resolved::Target(Target::Column(column), column.ty()));
    }
    let path: Vec<&str> = field.path.iter().map(|k| k.key.as_str()).collect();
    let Some(root) = JsonRoot::find(table, &name, &path) else {
        let message = format!("unknown field \"{field}\"; {}", searchable(table));
        return Err(SearchError::new(field.pos(), message));
    };
    Ok(match &field.text_key {
        Some(key) => Resolved::Target(Target::Key { root, key: key.key.clone() }, ColumnType::Text),
        None => Resolved::Root(root),
    })
}

/// Checks one predicate.
fn predicate(p: &Predicate, table: Table) -> Result<Cond, SearchError> {
    match (resolve(&p.field, table)?, &p.test) {
        (Resolved::Root(root), Test::Contains { json }) => contains(root, json),
        (Resolved::Root(root), _) => {
            let message = format!(
                "{} is a JSON object: test it with @> '{{\"key\":\"value\"}}' or pick a value with ->>'key'",
                root.spelling()
            );
            Err(SearchError::new(p.pos, message))
        }
        (Resolved::Target(target, ty), _) => test(target, ty, p, table),
    }
}

/// How messages name a column type.
fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text => "text",
        ColumnType::Int => "an integer",
        ColumnType::Time => "a timestamp",
    }
}

/// Checks the test of a predicate on a column or key text.
fn test(target: Target, ty: ColumnType, p: &Predicate, table: Table) -> Result<Cond, SearchError> {
    let field = p.field.to_string();
    let typed = |v: &Value| typed(v, ty, &field);
    match &p.test {
        Test::Cmp { op, value } => cmp(target, *op, value, typed),
        Test::IsNull { negated } => Ok(Cond::IsNull { target, negated: *negated }),
        Test::Like { negated, case_insensitive, pattern } => {
            if ty != ColumnType::Text {
                let op = if *case_insensitive { "ILIKE" } else { "LIKE" };
                let message = format!("{op} needs a text field, but {field} is {}", type_name(ty));
                return Err(SearchError::new(p.pos, message));
            }
            like_pattern(pattern)?;
            let (negated, case_insensitive) = (*negated, *case_insensitive);
            Ok(Cond::Like { target, negated, case_insensitive, pattern: pattern.text.clone() })
        }
        Test::In { negated, values } => {
            let values = values.iter().map(typed).collect::<Result<_, _>>()?;
            Ok(Cond::In { target, negated: *negated, values })
        }
        Test::Between { negated, low, high } => {
            let (low, high) = (typed(low)?, typed(high)?);
            Ok(Cond::Between { target, negated: *negated, low, high })
        }
        Test::Contains { .. } => {
            let roots: Vec<&str> = JsonRoot::of(table).iter().map(|r| r.spelling()).collect();
            let message = format!(
                "@> needs a JSON object field ({}), but {field} is {}",
                roots.join(", "),
                type_name(ty)
            );
            Err(SearchError::new(p.pos, message))
        }
    }
}

/// `target op value`, with `= null` / `!= null` as `IS [NOT] NULL`.
fn cmp(
    target: Target,
    op: CmpOp,
    value: &Value,
    typed: impl Fn(&Value) -> Result<Param, SearchError>,
) -> Result<Cond, SearchError> {
    match (&value.kind, op) {
        (ValueKind::Null, CmpOp::Eq) => Ok(Cond::IsNull { target, negated: false }),
        (ValueKind::Null, CmpOp::Ne) => Ok(Cond::IsNull { target, negated: true }),
        _ => Ok(Cond::Cmp { target, op, value: typed(value)? }),
    }
}

/// How messages name a literal.
fn describe(value: &Value) -> String {
    match &value.kind {
        ValueKind::Str(_) => format!("the string {value}"),
        ValueKind::Num(n) => format!("the number {n}"),
        ValueKind::Null => "NULL".to_owned(),
    }
}

/// Types a literal for a field of type `ty` (`field` as written, for messages).
fn typed(value: &Value, ty: ColumnType, field: &str) -> Result<Param, SearchError> {
    let param = match (&value.kind, ty) {
        (ValueKind::Null, _) => {
            let message =
                format!("{field} cannot be compared with NULL here: use = null, != null or IS [NOT] NULL");
            return Err(SearchError::new(value.pos, message));
        }
        (ValueKind::Str(s), ColumnType::Text) => Some(Param::Text(s.clone())),
        (ValueKind::Num(_), ColumnType::Text) => None,
        (ValueKind::Str(s) | ValueKind::Num(s), ColumnType::Int) => s.parse().ok().map(Param::Int),
        (ValueKind::Str(s), ColumnType::Time) => timestamp(s).map(Param::Time),
        (ValueKind::Num(_), ColumnType::Time) => None,
    };
    param.ok_or_else(|| {
        let wanted = match ty {
            ColumnType::Text => "strings",
            ColumnType::Int => "integers",
            ColumnType::Time => {
                "timestamps (RFC 3339 like '2026-01-02T03:04:05Z' or a date like '2026-01-02')"
            }
        };
        let message = format!("{field} compares with {wanted}, got {}", describe(value));
        SearchError::new(value.pos, message)
    })
}

/// An RFC 3339 timestamp, or a date at midnight UTC.
fn timestamp(s: &str) -> Option<DateTime<Utc>> {
    let t = match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0)?.and_utc(),
    };
    // Years 1–9999 in UTC only: PostgreSQL refuses some others when they are bound, and SQLite
    // compares times as fixed-width text, which other years would not sort in.
    (1..=9999).contains(&t.year()).then_some(t)
}

/// Rejects a LIKE pattern longer than [`MAX_PATTERN_BYTES`] or ending in a lone escape
/// character (PostgreSQL does too).
fn like_pattern(pattern: &Str) -> Result<(), SearchError> {
    if pattern.text.len() > MAX_PATTERN_BYTES {
        return Err(SearchError::new(
            pattern.pos,
            format!(
                "the LIKE pattern has {} bytes; at most {MAX_PATTERN_BYTES} are accepted",
                pattern.text.len()
            ),
        ));
    }
    let mut chars = pattern.text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.next().is_none() {
            let message = "a LIKE pattern cannot end with the escape character \\";
            return Err(SearchError::new(pattern.pos, message));
        }
    }
    Ok(())
}

/// How messages name a JSON value.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `root @> 'json'`: the JSON must be an object of scalars.
fn contains(root: JsonRoot, json: &Str) -> Result<Cond, SearchError> {
    const WANTED: &str =
        "@> needs a JSON object of strings, numbers, booleans or nulls like '{\"app\":\"web\"}'";
    let err = |message: String| SearchError::new(json.pos, message);
    let value: serde_json::Value =
        serde_json::from_str(&json.text).map_err(|e| err(format!("{WANTED}, got invalid JSON: {e}")))?;
    let serde_json::Value::Object(map) = &value else {
        return Err(err(format!("{WANTED}, got {}", json_kind(&value))));
    };
    let mut pairs = Vec::with_capacity(map.len());
    for (key, v) in map {
        if key.contains('\0') || v.as_str().is_some_and(|s| s.contains('\0')) {
            return Err(err(format!("{WANTED}, but \"{}\" {}", key.escape_debug(), crate::lex::NUL_REFUSED)));
        }
        let scalar = match v {
            serde_json::Value::String(s) => JsonScalar::Text(s.clone()),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => JsonScalar::Int(i),
                (None, Some(f)) => JsonScalar::Real(f),
                (None, None) => return Err(err(format!("{WANTED}, but \"{key}\" holds {n}"))),
            },
            serde_json::Value::Bool(b) => JsonScalar::Bool(*b),
            serde_json::Value::Null => JsonScalar::Null,
            other => return Err(err(format!("{WANTED}, but \"{key}\" holds {}", json_kind(other)))),
        };
        pairs.push((key.clone(), scalar));
    }
    // Sorted keys, whatever serde_json's map order, so the rendering is deterministic.
    let mut sorted: Vec<(&String, &serde_json::Value)> = map.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let normalized: serde_json::Map<String, serde_json::Value> =
        sorted.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let json = serde_json::Value::Object(normalized).to_string();
    Ok(Cond::Contains { root, json, pairs })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::{TimeZone, Utc};

    use super::timestamp;

    #[test]
    fn accepts_rfc3339_and_dates() {
        let at = |h, mi, s| Some(Utc.with_ymd_and_hms(2026, 1, 2, h, mi, s).unwrap());
        assert_eq!(timestamp("2026-01-02T03:04:05Z"), at(3, 4, 5));
        assert_eq!(timestamp("2026-01-02t03:04:05z"), at(3, 4, 5));
        assert_eq!(timestamp("2026-01-02T03:04:05+01:30"), at(1, 34, 5));
        assert_eq!(timestamp("2026-01-02T03:04:05.250Z").map(|t| t.timestamp_subsec_millis()), Some(250));
        assert_eq!(timestamp("2026-01-02"), at(0, 0, 0));
        for bad in ["", "yesterday", "2026-01-02T03:04:05", "2026-02-30", "02/01/2026", "1767323045"] {
            assert_eq!(timestamp(bad), None, "{bad:?}");
        }
    }
}
