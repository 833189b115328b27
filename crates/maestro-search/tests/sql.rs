//! SQL rendering per dialect, and values never reaching the SQL text.
#![allow(clippy::unwrap_used)]

use chrono::{TimeZone, Utc};
use maestro_search::Table::{self, Consumers as C, Resources as R};
use maestro_search::{Dialect, Param, Piece, compile};

fn text(s: &str) -> Param {
    Param::Text(s.to_owned())
}

fn json(s: &str) -> Param {
    Param::Json(s.to_owned())
}

/// One rendering expectation.
struct Case {
    input: &'static str,
    table: Table,
    pg: &'static str,
    pg_params: Vec<Param>,
    sqlite: &'static str,
    sqlite_params: Vec<Param>,
}

const LABELS_EACH: &str = "json_each(CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END, '$.labels')";

fn cases() -> Vec<Case> {
    let same = |v: Vec<Param>| (v.clone(), v);
    let mut out = Vec::new();
    let mut add = |input, table, pg, sqlite, (pg_params, sqlite_params): (Vec<Param>, Vec<Param>)| {
        out.push(Case { input, table, pg, pg_params, sqlite, sqlite_params });
    };
    add(
        "source='maestro' and consumer_name='c1'",
        R,
        "(source = $1 AND consumer_name = $2)",
        "(source = ? AND consumer_name = ?)",
        same(vec![text("maestro"), text("c1")]),
    );
    add(
        "source='S' and (consumer_name='ns1' or consumer_name='ns2')",
        R,
        "(source = $1 AND (consumer_name = $2 OR consumer_name = $3))",
        "(source = ? AND (consumer_name = ? OR consumer_name = ?))",
        same(vec![text("S"), text("ns1"), text("ns2")]),
    );
    add(
        "payload->'metadata'->'labels'@>'{\"tier\":\"gold\",\"app\":\"web\"}'",
        R,
        "((CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END->'labels') @> $1::jsonb)",
        "(EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END, '$.labels') WHERE key = ? AND type = 'text' AND value = ?) AND EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END, '$.labels') WHERE key = ? AND type = 'text' AND value = ?))",
        (
            vec![json("{\"app\":\"web\",\"tier\":\"gold\"}")],
            vec![text("app"), text("web"), text("tier"), text("gold")],
        ),
    );
    add(
        "payload->'metadata'->'labels'->>'app'in('a','b')",
        R,
        "((CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END->'labels')->>$1) IN ($2, $3)",
        "(SELECT CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(value AS TEXT) END FROM json_each(CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END, '$.labels') WHERE key = ?) IN (?, ?)",
        same(vec![text("app"), text("a"), text("b")]),
    );
    add(
        "payload->'metadata'->'labels'->>'app' not in ('a','b')",
        R,
        "((CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END->'labels')->>$1) NOT IN ($2, $3)",
        "(SELECT CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(value AS TEXT) END FROM json_each(CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END, '$.labels') WHERE key = ?) NOT IN (?, ?)",
        same(vec![text("app"), text("a"), text("b")]),
    );
    add(
        "payload->'metadata'->'labels'->>'app'<>'v'",
        R,
        "((CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END->'labels')->>$1) <> $2",
        "(SELECT CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(value AS TEXT) END FROM json_each(CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END, '$.labels') WHERE key = ?) <> ?",
        same(vec![text("app"), text("v")]),
    );
    add(
        "payload->'metadata'->'labels'->>'app'<>null",
        R,
        "((CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END->'labels')->>$1) IS NOT NULL",
        "(SELECT CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(value AS TEXT) END FROM json_each(CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END, '$.labels') WHERE key = ?) IS NOT NULL",
        same(vec![text("app")]),
    );
    add(
        "payload->'metadata'->'labels'->>'app' = null and payload->'metadata'->'labels'->>'b' is null",
        R,
        "(((CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END->'labels')->>$1) IS NULL AND ((CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END->'labels')->>$2) IS NULL)",
        "((SELECT CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(value AS TEXT) END FROM json_each(CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END, '$.labels') WHERE key = ?) IS NULL AND (SELECT CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(value AS TEXT) END FROM json_each(CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END, '$.labels') WHERE key = ?) IS NULL)",
        same(vec![text("app"), text("b")]),
    );
    add(
        "name like 'a%_*?[\\%'",
        R,
        "name LIKE $1",
        "name GLOB ?",
        (vec![text("a%_*?[\\%")], vec![text("a*?[*][?][[]%")]),
    );
    add(
        "name not ilike 'A%'",
        R,
        "name NOT ILIKE $1",
        "lower(name) NOT LIKE lower(?) ESCAPE '\\'",
        same(vec![text("A%")]),
    );
    add(
        "version between 1 and '5'",
        R,
        "(version BETWEEN $1 AND $2)",
        "(version BETWEEN ? AND ?)",
        same(vec![Param::Int(1), Param::Int(5)]),
    );
    add(
        "not (created_at >= '2026-01-02T03:04:05+02:00' or deleted_at is not null)",
        R,
        "(NOT (created_at >= $1 OR deleted_at IS NOT NULL))",
        "(NOT (created_at >= ? OR deleted_at IS NOT NULL))",
        same(vec![Param::Time(Utc.with_ymd_and_hms(2026, 1, 2, 1, 4, 5).unwrap())]),
    );
    add("not name = 'a'", R, "(NOT (name = $1))", "(NOT (name = ?))", same(vec![text("a")]));
    add(
        "labels @> '{\"e\":false,\"a\":1,\"b\":true,\"c\":null,\"d\":1.5}'",
        C,
        "(labels @> $1::jsonb)",
        "(EXISTS (SELECT 1 FROM json_each(labels) WHERE key = ? AND type = 'integer' AND value = ?) AND EXISTS (SELECT 1 FROM json_each(labels) WHERE key = ? AND type = 'true') AND EXISTS (SELECT 1 FROM json_each(labels) WHERE key = ? AND type = 'null') AND EXISTS (SELECT 1 FROM json_each(labels) WHERE key = ? AND type = 'real' AND value = ?) AND EXISTS (SELECT 1 FROM json_each(labels) WHERE key = ? AND type = 'false'))",
        (
            vec![json("{\"a\":1,\"b\":true,\"c\":null,\"d\":1.5,\"e\":false}")],
            vec![text("a"), Param::Int(1), text("b"), text("c"), text("d"), Param::Real(1.5), text("e")],
        ),
    );
    add(
        "labels @> '{}' and labels->>'env' like 'p%'",
        C,
        "((labels @> $1::jsonb) AND (labels->>$2) LIKE $3)",
        "((json_type(labels) = 'object') AND (SELECT CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(value AS TEXT) END FROM json_each(labels) WHERE key = ?) GLOB ?)",
        (vec![json("{}"), text("env"), text("p%")], vec![text("env"), text("p*")]),
    );
    add(
        "payload->'metadata'->>'name' = 'w'",
        R,
        "((CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END)->>$1) = $2",
        "(SELECT CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(value AS TEXT) END FROM json_each(CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END) WHERE key = ?) = ?",
        same(vec![text("name"), text("w")]),
    );
    add(
        "payload->'metadata'->'annotations' @> '{}'",
        R,
        "((CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END->'annotations') @> $1::jsonb)",
        "(json_type(CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END, '$.annotations') = 'object')",
        (vec![json("{}")], vec![]),
    );
    add(
        "payload->'metadata'@>'{\"name\":\"w\"}'",
        R,
        "((CASE WHEN payload->>'metadata' ~ '^\\s*\\{' THEN (payload->>'metadata')::jsonb END) @> $1::jsonb)",
        "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(json_extract(payload, '$.metadata')) THEN json_extract(payload, '$.metadata') END) WHERE key = ? AND type = 'text' AND value = ?)",
        (vec![json("{\"name\":\"w\"}")], vec![text("name"), text("w")]),
    );
    add(
        "id in ('a') or name = 'b' and not version < 2",
        R,
        "(id IN ($1) OR (name = $2 AND (NOT (version < $3))))",
        "(id IN (?) OR (name = ? AND (NOT (version < ?))))",
        same(vec![text("a"), text("b"), Param::Int(2)]),
    );
    add(
        "UPDATED_AT not between '2026-01-01' and '2026-01-02T00:00:00.5Z'",
        R,
        "(updated_at NOT BETWEEN $1 AND $2)",
        "(updated_at NOT BETWEEN ? AND ?)",
        same(vec![
            Param::Time(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
            Param::Time(
                Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap() + chrono::Duration::milliseconds(500),
            ),
        ]),
    );
    add(
        "consumers.name = 'c1' and not labels @> '{\"a\":\"b\"}'",
        C,
        "(name = $1 AND (NOT (labels @> $2::jsonb)))",
        "(name = ? AND (NOT (EXISTS (SELECT 1 FROM json_each(labels) WHERE key = ? AND type = 'text' AND value = ?))))",
        (vec![text("c1"), json("{\"a\":\"b\"}")], vec![text("c1"), text("a"), text("b")]),
    );
    add(
        "not version between 1 and 2",
        R,
        "(NOT (version BETWEEN $1 AND $2))",
        "(NOT (version BETWEEN ? AND ?))",
        same(vec![Param::Int(1), Param::Int(2)]),
    );
    out
}

#[test]
fn renders_each_dialect() {
    let cases = cases();
    assert!(cases.len() >= 12);
    for case in cases {
        let filter = compile(case.input, case.table).unwrap().unwrap();
        let pg = filter.to_fragment(Dialect::Postgres);
        assert_eq!(pg.to_sql(Dialect::Postgres), case.pg, "{}", case.input);
        assert_eq!(pg.params(), case.pg_params.iter().collect::<Vec<_>>(), "{}", case.input);
        let sqlite = filter.to_fragment(Dialect::Sqlite);
        assert_eq!(sqlite.to_sql(Dialect::Sqlite), case.sqlite, "{}", case.input);
        assert_eq!(sqlite.params(), case.sqlite_params.iter().collect::<Vec<_>>(), "{}", case.input);
    }
}

#[test]
fn sql_pieces_never_hold_placeholders() {
    for case in cases() {
        let filter = compile(case.input, case.table).unwrap().unwrap();
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            for piece in filter.to_fragment(dialect).pieces {
                if let Piece::Sql(s) = piece {
                    assert!(!s.contains('?'), "{s}");
                    assert!(!s.as_bytes().windows(2).any(|w| w[0] == b'$' && w[1].is_ascii_digit()), "{s}");
                }
            }
        }
    }
    assert!(LABELS_EACH.contains('$'));
}

/// Values an attacker might send; each is escaped for the search language (`'` doubled).
const EVIL: &[&str] = &[
    "x' OR '1'='1",
    "a'; DROP TABLE resources; --",
    "-- comment",
    "semi;colon",
    "ünïcödé ✓ 🦀",
    "back\\slash'",
    "$1 ? :name",
];

/// NUL cannot be stored in PostgreSQL text (nor in `jsonb` as `\u0000`), so a string or an
/// `@>` key or value holding it is refused before any SQL is made, on both stores alike.
#[test]
fn nul_is_refused_where_it_is_written() {
    let cases = [
        ("name = 'a\0b'", 7, "the string starting at position 7 holds a NUL character"),
        ("labels->>'k\0' = 'v'", 9, "the string starting at position 9 holds a NUL character"),
        (r#"labels @> '{"k":"a\u0000b"}'"#, 10, "\"k\" holds a NUL character"),
        (r#"labels @> '{"k\u0000":"v"}'"#, 10, "holds a NUL character"),
    ];
    for (search, position, needle) in cases {
        let err = compile(search, C).expect_err(search);
        assert_eq!(err.position, position, "{search:?}: {err}");
        assert!(err.message.contains(needle), "{search:?}: {err}");
    }
}

#[test]
fn values_and_keys_are_only_ever_parameters() {
    for evil in EVIL {
        let q = evil.replace('\'', "''");
        let json_value = serde_json::to_string(evil).unwrap().replace('\'', "''");
        let searches = [
            (format!("name = '{q}'"), R),
            (format!("name in ('{q}', 'b') or source like '{q}x'"), R),
            (format!("name ilike '{q}x' and id between '{q}' and 'z'"), R),
            (format!("payload->'metadata'->'labels'->>'{q}' = '{q}'"), R),
            (format!("payload->'metadata'->'labels'@>'{{{json_value}:{json_value}}}'"), R),
            (format!("labels->>'{q}' not in ('{q}')"), C),
            (format!("labels @> '{{{json_value}:{json_value}}}'"), C),
        ];
        for (search, table) in &searches {
            let filter = compile(search, *table).unwrap_or_else(|e| panic!("{search:?}: {e}")).unwrap();
            for dialect in [Dialect::Postgres, Dialect::Sqlite] {
                let fragment = filter.to_fragment(dialect);
                let sql = fragment.to_sql(dialect);
                for needle in [*evil, "DROP", "--", ";", "\0", "ü", "🦀", "1'='1"] {
                    assert!(!sql.contains(needle), "{needle:?} in {sql}");
                }
                let in_params = fragment.params().iter().any(|p| match p {
                    Param::Text(s) => s.contains(evil),
                    Param::Json(s) => {
                        let object: serde_json::Map<String, serde_json::Value> =
                            serde_json::from_str(s).unwrap();
                        object.get(*evil) == Some(&serde_json::Value::from(*evil))
                    }
                    _ => false,
                });
                assert!(in_params, "{evil:?} not bound for {search}");
            }
        }
    }
}
