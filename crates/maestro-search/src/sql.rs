//! The renderer: a [`Filter`] to SQL text pieces and bound parameters.
//!
//! Only constant SQL text is emitted; every user value and every user-given JSON key is a
//! [`Piece::Bind`]. Composite expressions are parenthesized (`(a AND b)`, `(a OR b)`,
//! `(NOT (a))`), so a fragment can be joined to other SQL with `AND`.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::Dialect;
use crate::check::{Cond, Filter, JsonRoot, JsonScalar, Node, Target};

/// A bound parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// A string (text columns, JSON keys, `->>` texts, LIKE patterns).
    Text(String),
    /// A 64-bit integer (`version`, integers inside an SQLite `@>`).
    Int(i64),
    /// A floating-point number (non-integer numbers inside an SQLite `@>`).
    Real(f64),
    /// A timestamp (`created_at`, `updated_at`, `deleted_at`).
    Time(DateTime<Utc>),
    /// A normalized JSON object for PostgreSQL `@>`: bind it as text, the SQL casts it with
    /// `::jsonb`.
    Json(String),
}

/// One piece of a [`Fragment`]: constant SQL text or a bound parameter.
///
/// A store feeds pieces to an sqlx `QueryBuilder`: `Sql(s)` → `push(s)`, `Bind(p)` →
/// `push_bind(..)`. `Sql` text never contains a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Constant SQL text (whitelisted column names, operators, JSON root expressions).
    Sql(Cow<'static, str>),
    /// A value to bind.
    Bind(Param),
}

/// A rendered boolean SQL expression (no leading `WHERE`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fragment {
    /// The pieces, in order.
    pub pieces: Vec<Piece>,
}

impl Fragment {
    /// The SQL with placeholders (`$1`, `$2`, … for Postgres, `?` for Sqlite), for tests and
    /// logs.
    pub fn to_sql(&self, dialect: Dialect) -> String {
        let mut out = String::new();
        let mut n = 0;
        for piece in &self.pieces {
            match piece {
                Piece::Sql(s) => out.push_str(s),
                Piece::Bind(_) => {
                    n += 1;
                    match dialect {
                        Dialect::Postgres => {
                            let _ = write!(out, "${n}");
                        }
                        Dialect::Sqlite => out.push('?'),
                    }
                }
            }
        }
        out
    }

    /// The bound parameters, in placeholder order.
    pub fn params(&self) -> Vec<&Param> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Bind(p) => Some(p),
                Piece::Sql(_) => None,
            })
            .collect()
    }

    /// Appends constant SQL, merging it with a preceding `Sql` piece.
    fn sql(&mut self, s: &'static str) {
        if let Some(Piece::Sql(last)) = self.pieces.last_mut() {
            last.to_mut().push_str(s);
        } else {
            self.pieces.push(Piece::Sql(Cow::Borrowed(s)));
        }
    }

    /// Appends a parameter.
    fn bind(&mut self, p: Param) {
        self.pieces.push(Piece::Bind(p));
    }
}

impl Filter {
    /// Renders the filter as a boolean SQL expression for `dialect`; column names are
    /// unqualified.
    ///
    /// For example `name = 'a' and payload->'metadata'->'labels'->>'app' in ('x','y')` renders
    /// for PostgreSQL as `(name = $1 AND ((<metadata>->'labels')->>$2) IN ($3, $4))` with the
    /// parameters `a`, `app`, `x`, `y`, where `<metadata>` is the stored `metadata` extension
    /// parsed as `jsonb` when it looks like an object (see `pg_root`).
    pub fn to_fragment(&self, dialect: Dialect) -> Fragment {
        let mut f = Fragment::default();
        node(&mut f, &self.root, dialect);
        f
    }
}

/// Renders one node.
fn node(f: &mut Fragment, n: &Node, d: Dialect) {
    match n {
        Node::And(items) => list(f, items, " AND ", d),
        Node::Or(items) => list(f, items, " OR ", d),
        Node::Not(inner) if matches!(&**inner, Node::Cond(c) if !self_parenthesized(c, d)) => {
            f.sql("(NOT (");
            node(f, inner, d);
            f.sql("))");
        }
        Node::Not(inner) => {
            f.sql("(NOT ");
            node(f, inner, d);
            f.sql(")");
        }
        Node::Cond(c) => cond(f, c, d),
    }
}

/// Whether a condition renders inside its own parentheses.
fn self_parenthesized(c: &Cond, d: Dialect) -> bool {
    match c {
        Cond::Between { .. } => true,
        Cond::Contains { pairs, .. } => d == Dialect::Postgres || pairs.len() != 1,
        _ => false,
    }
}

/// `(a SEP b SEP ...)`.
fn list(f: &mut Fragment, items: &[Node], sep: &'static str, d: Dialect) {
    f.sql("(");
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            f.sql(sep);
        }
        node(f, item, d);
    }
    f.sql(")");
}

/// The PostgreSQL jsonb expression of a JSON object. The stored `metadata` extension is JSON
/// text inside the payload; it is cast only when it starts like an object (`^\s*\{`), so a
/// row whose metadata is empty or not an object reads as NULL (matches nothing) instead of
/// failing the whole query. Writes refuse metadata that is not a JSON object, so the cast of
/// what passes the test does not fail.
fn pg_root(root: JsonRoot) -> &'static str {
    match root {
        JsonRoot::Metadata => {
            "(CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END)"
        }
        JsonRoot::Labels => {
            "(CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END->'labels')"
        }
        JsonRoot::Annotations => {
            "(CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END->'annotations')"
        }
        JsonRoot::ConsumerLabels => "labels",
    }
}

/// The SQLite JSON arguments (`X` or `X, path`) locating a JSON object. The stored `metadata`
/// extension is used only when it is valid JSON (`json_valid`); otherwise it is NULL, which
/// `json_each` reads as no rows, instead of failing the whole query.
fn sqlite_json(root: JsonRoot) -> &'static str {
    match root {
        JsonRoot::Metadata => {
            "CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END"
        }
        JsonRoot::Labels => {
            "CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END, '$.labels'"
        }
        JsonRoot::Annotations => {
            "CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END, '$.annotations'"
        }
        JsonRoot::ConsumerLabels => "labels",
    }
}

/// The SQLite `json_each(...)` over a JSON object.
fn sqlite_each(f: &mut Fragment, root: JsonRoot) {
    f.sql("json_each(");
    f.sql(sqlite_json(root));
    f.sql(")");
}

/// A column, or a key's text.
fn target(f: &mut Fragment, t: &Target, d: Dialect) {
    match (t, d) {
        (Target::Column(c), _) => f.sql(c.sql()),
        (Target::Key { root, key }, Dialect::Postgres) => {
            f.sql("(");
            f.sql(pg_root(*root));
            f.sql("->>");
            f.bind(Param::Text(key.clone()));
            f.sql(")");
        }
        (Target::Key { root, key }, Dialect::Sqlite) => {
            f.sql("(SELECT CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(value AS TEXT) END FROM ");
            sqlite_each(f, *root);
            f.sql(" WHERE key = ");
            f.bind(Param::Text(key.clone()));
            f.sql(")");
        }
    }
}

/// Renders one condition.
fn cond(f: &mut Fragment, c: &Cond, d: Dialect) {
    match c {
        Cond::Cmp { target: t, op, value } => {
            target(f, t, d);
            f.sql(" ");
            f.sql(op.sql());
            f.sql(" ");
            f.bind(value.clone());
        }
        Cond::IsNull { target: t, negated } => {
            target(f, t, d);
            f.sql(if *negated { " IS NOT NULL" } else { " IS NULL" });
        }
        Cond::Like { target: t, negated, case_insensitive, pattern } => {
            like(f, t, *negated, *case_insensitive, pattern, d);
        }
        Cond::In { target: t, negated, values } => {
            target(f, t, d);
            f.sql(if *negated { " NOT IN (" } else { " IN (" });
            for (n, v) in values.iter().enumerate() {
                if n > 0 {
                    f.sql(", ");
                }
                f.bind(v.clone());
            }
            f.sql(")");
        }
        Cond::Between { target: t, negated, low, high } => {
            f.sql("(");
            target(f, t, d);
            f.sql(if *negated { " NOT BETWEEN " } else { " BETWEEN " });
            f.bind(low.clone());
            f.sql(" AND ");
            f.bind(high.clone());
            f.sql(")");
        }
        Cond::Contains { root, json, pairs } => contains(f, *root, json, pairs, d),
    }
}

/// `[NOT] LIKE` / `[NOT] ILIKE`, case-sensitive `LIKE` as `GLOB` on SQLite.
fn like(f: &mut Fragment, t: &Target, negated: bool, ci: bool, pattern: &str, d: Dialect) {
    let not = if negated { " NOT" } else { "" };
    match (d, ci) {
        (Dialect::Postgres, _) => {
            target(f, t, d);
            f.sql(not);
            f.sql(if ci { " ILIKE " } else { " LIKE " });
            f.bind(Param::Text(pattern.to_owned()));
        }
        (Dialect::Sqlite, false) => {
            target(f, t, d);
            f.sql(not);
            f.sql(" GLOB ");
            f.bind(Param::Text(like_to_glob(pattern)));
        }
        (Dialect::Sqlite, true) => {
            f.sql("lower(");
            target(f, t, d);
            f.sql(")");
            f.sql(not);
            f.sql(" LIKE lower(");
            f.bind(Param::Text(pattern.to_owned()));
            f.sql(") ESCAPE '\\'");
        }
    }
}

/// A PostgreSQL LIKE pattern (`\` escapes) as an SQLite GLOB pattern: `%` → `*`, `_` → `?`,
/// literal `*`, `?`, `[` → `[*]`, `[?]`, `[[]`.
pub(crate) fn like_to_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let (c, literal) = match c {
            '\\' => match chars.next() {
                Some(next) => (next, true),
                None => break,
            },
            c => (c, false),
        };
        match (c, literal) {
            ('%', false) => out.push('*'),
            ('_', false) => out.push('?'),
            ('*', _) => out.push_str("[*]"),
            ('?', _) => out.push_str("[?]"),
            ('[', _) => out.push_str("[[]"),
            (c, _) => out.push(c),
        }
    }
    out
}

/// `root @> 'json'`.
fn contains(f: &mut Fragment, root: JsonRoot, json: &str, pairs: &[(String, JsonScalar)], d: Dialect) {
    match d {
        Dialect::Postgres => {
            f.sql("(");
            f.sql(pg_root(root));
            f.sql(" @> ");
            f.bind(Param::Json(json.to_owned()));
            f.sql("::jsonb)");
        }
        Dialect::Sqlite if pairs.is_empty() => {
            f.sql("(json_type(");
            f.sql(sqlite_json(root));
            f.sql(") = 'object')");
        }
        Dialect::Sqlite => {
            let many = pairs.len() > 1;
            if many {
                f.sql("(");
            }
            for (n, (key, value)) in pairs.iter().enumerate() {
                if n > 0 {
                    f.sql(" AND ");
                }
                sqlite_pair(f, root, key, value);
            }
            if many {
                f.sql(")");
            }
        }
    }
}

/// `EXISTS (SELECT 1 FROM json_each(..) WHERE key = ? AND type = .. [AND value = ?])`.
fn sqlite_pair(f: &mut Fragment, root: JsonRoot, key: &str, value: &JsonScalar) {
    f.sql("EXISTS (SELECT 1 FROM ");
    sqlite_each(f, root);
    f.sql(" WHERE key = ");
    f.bind(Param::Text(key.to_owned()));
    let (ty, param) = match value {
        JsonScalar::Text(s) => ("text", Some(Param::Text(s.clone()))),
        JsonScalar::Int(i) => ("integer", Some(Param::Int(*i))),
        JsonScalar::Real(r) => ("real", Some(Param::Real(*r))),
        JsonScalar::Bool(true) => ("true", None),
        JsonScalar::Bool(false) => ("false", None),
        JsonScalar::Null => ("null", None),
    };
    f.sql(" AND type = '");
    f.sql(ty);
    f.sql("'");
    if let Some(p) = param {
        f.sql(" AND value = ");
        f.bind(p);
    }
    f.sql(")");
}

#[cfg(test)]
mod tests {
    use super::like_to_glob;

    #[test]
    fn converts_like_patterns_to_glob() {
        let cases = [
            ("abc", "abc"),
            ("a%", "a*"),
            ("_b_", "?b?"),
            ("%50\\%%", "*50%*"),
            ("a\\_b", "a_b"),
            ("*?[", "[*][?][[]"),
            ("\\*\\?\\[", "[*][?][[]"),
            ("a]b", "a]b"),
            ("\\\\", "\\"),
            ("\\a", "a"),
            ("ü%", "ü*"),
        ];
        for (like, glob) in cases {
            assert_eq!(like_to_glob(like), glob, "{like:?}");
        }
    }
}
