//! Malformed searches: the exact message and position of each error.
#![allow(clippy::unwrap_used)]

use maestro_search::Table::{self, Consumers as C, Resources as R};
use maestro_search::{SearchError, compile, parse};

/// `(input, table, expected Display of the error)`.
const CASES: &[(&str, Table, &str)] = &[
    ("name = 'abc", R, "at position 11: expected a closing quote for the string starting at position 7"),
    (
        "name 'a'",
        R,
        "at position 5: expected a comparison operator (=, !=, <>, <, <=, >, >=), LIKE, ILIKE, IN, BETWEEN, IS or @>, found the string 'a'",
    ),
    (
        "name foo 'a'",
        R,
        "at position 5: expected a comparison operator (=, !=, <>, <, <=, >, >=), LIKE, ILIKE, IN, BETWEEN, IS or @>, found \"foo\"",
    ),
    (
        "name =",
        R,
        "at position 6: expected a value (a 'quoted string', a number or NULL), found the end of the input",
    ),
    ("name = and", R, "at position 7: expected a value (a 'quoted string', a number or NULL), found \"and\""),
    ("name = 'a' and", R, "at position 14: expected a field name, NOT or \"(\", found the end of the input"),
    ("name = 'a' and and", R, "at position 15: expected a field name, NOT or \"(\", found \"and\""),
    (
        "(name = 'a'",
        R,
        "at position 11: expected AND, OR or \")\" to close the \"(\" at position 0, found the end of the input",
    ),
    ("name = 'a')", R, "at position 10: expected AND, OR or the end of the input, found \")\""),
    ("name = 'a' and ()", R, "at position 16: expected a field name, NOT or \"(\", found \")\""),
    ("name in ()", R, "at position 9: expected at least one value in the IN list, found \")\""),
    ("name in 'a'", R, "at position 8: expected \"(\" after IN, found the string 'a'"),
    ("name in ('a' 'b')", R, "at position 13: expected \",\" or \")\" in the IN list, found the string 'b'"),
    (
        "name in ('a',)",
        R,
        "at position 13: expected a value (a 'quoted string', a number or NULL), found \")\"",
    ),
    (
        "version between 1",
        R,
        "at position 17: expected AND between the BETWEEN bounds, found the end of the input",
    ),
    ("version between 1 or 2", R, "at position 18: expected AND between the BETWEEN bounds, found \"or\""),
    (
        "foo = 'a'",
        R,
        "at position 0: unknown field \"foo\"; searchable fields: id, name, consumer_name, source, version, created_at, updated_at, deleted_at, payload->'metadata'->'labels', payload->'metadata'->'annotations', payload->'metadata' (the JSON objects take @> '{\"key\":\"value\"}' or ->>'key')",
    ),
    (
        "foo = 'a'",
        C,
        "at position 0: unknown field \"foo\"; searchable fields: id, name, created_at, updated_at, labels (the JSON objects take @> '{\"key\":\"value\"}' or ->>'key')",
    ),
    (
        "payload = 'x'",
        R,
        "at position 0: unknown field \"payload\"; searchable fields: id, name, consumer_name, source, version, created_at, updated_at, deleted_at, payload->'metadata'->'labels', payload->'metadata'->'annotations', payload->'metadata' (the JSON objects take @> '{\"key\":\"value\"}' or ->>'key')",
    ),
    (
        "payload->'spec'->>'x' = 'y'",
        R,
        "at position 0: unknown field \"payload->'spec'->>'x'\"; searchable fields: id, name, consumer_name, source, version, created_at, updated_at, deleted_at, payload->'metadata'->'labels', payload->'metadata'->'annotations', payload->'metadata' (the JSON objects take @> '{\"key\":\"value\"}' or ->>'key')",
    ),
    (
        "payload->'metadata'->'labels' = 'x'",
        R,
        "at position 30: payload->'metadata'->'labels' is a JSON object: test it with @> '{\"key\":\"value\"}' or pick a value with ->>'key'",
    ),
    (
        "payload->'metadata'->'labels' @> '[1]'",
        R,
        "at position 33: @> needs a JSON object of strings, numbers, booleans or nulls like '{\"app\":\"web\"}', got an array",
    ),
    (
        "payload->'metadata'->'labels' @> '{\"a\":{\"b\":1}}'",
        R,
        "at position 33: @> needs a JSON object of strings, numbers, booleans or nulls like '{\"app\":\"web\"}', but \"a\" holds an object",
    ),
    (
        "payload->'metadata'->'labels' @> '{\"a\":[1]}'",
        R,
        "at position 33: @> needs a JSON object of strings, numbers, booleans or nulls like '{\"app\":\"web\"}', but \"a\" holds an array",
    ),
    (
        "payload->'metadata'->'labels' @> '{a:1}'",
        R,
        "at position 33: @> needs a JSON object of strings, numbers, booleans or nulls like '{\"app\":\"web\"}', got invalid JSON: key must be a string at line 1 column 2",
    ),
    (
        "labels @> 'web'",
        C,
        "at position 10: @> needs a JSON object of strings, numbers, booleans or nulls like '{\"app\":\"web\"}', got invalid JSON: expected value at line 1 column 1",
    ),
    (
        "name @> '{}'",
        R,
        "at position 5: @> needs a JSON object field (payload->'metadata'->'labels', payload->'metadata'->'annotations', payload->'metadata'), but name is text",
    ),
    (
        "created_at > 'yesterday'",
        R,
        "at position 13: created_at compares with timestamps (RFC 3339 like '2026-01-02T03:04:05Z' or a date like '2026-01-02'), got the string 'yesterday'",
    ),
    (
        "created_at > 20260102",
        R,
        "at position 13: created_at compares with timestamps (RFC 3339 like '2026-01-02T03:04:05Z' or a date like '2026-01-02'), got the number 20260102",
    ),
    (
        "created_at > '2026-13-01'",
        R,
        "at position 13: created_at compares with timestamps (RFC 3339 like '2026-01-02T03:04:05Z' or a date like '2026-01-02'), got the string '2026-13-01'",
    ),
    ("name = 3", R, "at position 7: name compares with strings, got the number 3"),
    (
        "payload->'metadata'->'labels'->>'app' in ('a', 3)",
        R,
        "at position 47: payload->'metadata'->'labels'->>'app' compares with strings, got the number 3",
    ),
    ("version = 'abc'", R, "at position 10: version compares with integers, got the string 'abc'"),
    ("version = 1.5", R, "at position 10: version compares with integers, got the number 1.5"),
    ("version like '1%'", R, "at position 8: LIKE needs a text field, but version is an integer"),
    (
        "created_at not ilike '2026%'",
        R,
        "at position 11: ILIKE needs a text field, but created_at is a timestamp",
    ),
    (
        "name->'x' = 'a'",
        R,
        "at position 4: name is not a JSON object, so it has no -> or ->> keys; searchable fields: id, name, consumer_name, source, version, created_at, updated_at, deleted_at, payload->'metadata'->'labels', payload->'metadata'->'annotations', payload->'metadata' (the JSON objects take @> '{\"key\":\"value\"}' or ->>'key')",
    ),
    (
        "name->>'x' = 'a'",
        R,
        "at position 4: name is not a JSON object, so it has no -> or ->> keys; searchable fields: id, name, consumer_name, source, version, created_at, updated_at, deleted_at, payload->'metadata'->'labels', payload->'metadata'->'annotations', payload->'metadata' (the JSON objects take @> '{\"key\":\"value\"}' or ->>'key')",
    ),
    ("foo.name = 'a'", R, "at position 0: unknown table \"foo\": this search is on \"resources\""),
    (
        "resources.name = 'a'",
        C,
        "at position 0: unknown table \"resources\": this search is on \"consumers\"",
    ),
    ("name = 'a' garbage", R, "at position 11: expected AND, OR or the end of the input, found \"garbage\""),
    ("name = 'a' 'b'", R, "at position 11: expected AND, OR or the end of the input, found the string 'b'"),
    ("deleted_at is maybe", R, "at position 14: expected NULL or NOT NULL after IS, found \"maybe\""),
    ("deleted_at is not maybe", R, "at position 18: expected NULL after IS NOT, found \"maybe\""),
    ("not", R, "at position 3: expected a field name, NOT or \"(\", found the end of the input"),
    ("name not = 'a'", R, "at position 9: expected LIKE, ILIKE, IN or BETWEEN after NOT, found \"=\""),
    (
        "name < null",
        R,
        "at position 7: name cannot be compared with NULL here: use = null, != null or IS [NOT] NULL",
    ),
    (
        "name in ('a', null)",
        R,
        "at position 14: name cannot be compared with NULL here: use = null, != null or IS [NOT] NULL",
    ),
    ("name like 'abc\\'", R, "at position 10: a LIKE pattern cannot end with the escape character \\"),
    (
        "name # 'a'",
        R,
        "at position 5: expected a comparison operator (=, !=, <>, <, <=, >, >=), LIKE, ILIKE, IN, BETWEEN, IS or @>, found \"#\"",
    ),
    (
        "labels @> '{}'",
        R,
        "at position 0: unknown field \"labels\"; searchable fields: id, name, consumer_name, source, version, created_at, updated_at, deleted_at, payload->'metadata'->'labels', payload->'metadata'->'annotations', payload->'metadata' (the JSON objects take @> '{\"key\":\"value\"}' or ->>'key')",
    ),
    (
        "resources.",
        R,
        "at position 10: expected a column name after \"resources.\", found the end of the input",
    ),
    (
        "payload->",
        R,
        "at position 9: expected a 'quoted string' JSON key after ->, found the end of the input",
    ),
    (
        "payload->'metadata'->>",
        R,
        "at position 22: expected a 'quoted string' JSON key after ->>, found the end of the input",
    ),
    ("name like 3", R, "at position 10: expected a 'quoted string' pattern after LIKE, found the number 3"),
    ("name = foo", R, "at position 7: expected a value (a 'quoted string', a number or NULL), found \"foo\""),
    ("and = 'a'", R, "at position 0: expected a field name, NOT or \"(\", found \"and\""),
    ("name == 'a'", R, "at position 6: expected a value (a 'quoted string', a number or NULL), found \"=\""),
    ("version = 1.", R, "at position 11: expected AND, OR or the end of the input, found \".\""),
    ("name = 'ü' ü", R, "at position 12: expected AND, OR or the end of the input, found \"ü\""),
    (
        "labels->'a'->>'b' = 'x'",
        C,
        "at position 0: unknown field \"labels->'a'->>'b'\"; searchable fields: id, name, created_at, updated_at, labels (the JSON objects take @> '{\"key\":\"value\"}' or ->>'key')",
    ),
    (
        "payload->'metadata'->'labels' is null",
        R,
        "at position 30: payload->'metadata'->'labels' is a JSON object: test it with @> '{\"key\":\"value\"}' or pick a value with ->>'key'",
    ),
];

#[test]
fn reports_each_error_with_its_position() {
    assert!(CASES.len() >= 20, "{} cases", CASES.len());
    for (input, table, want) in CASES {
        let got = compile(input, *table).err().map(|e| e.to_string());
        assert_eq!(got.as_deref(), Some(*want), "input {input:?} on {table:?}");
    }
}

#[test]
fn position_and_message_are_fields() {
    let err = compile("name = 'a' and", R).unwrap_err();
    assert_eq!(
        err,
        SearchError {
            position: 14,
            message: "expected a field name, NOT or \"(\", found the end of the input".into(),
        }
    );
}

#[test]
fn empty_input_is_no_filter_but_a_parse_error() {
    for blank in ["", "   ", "\t\n "] {
        assert_eq!(compile(blank, R), Ok(None));
        assert_eq!(compile(blank, C), Ok(None));
    }
    assert_eq!(
        parse("").unwrap_err().to_string(),
        "at position 0: expected a field name, NOT or \"(\", found the end of the input"
    );
}

#[test]
fn nesting_is_bounded() {
    let ok = format!("{}name = 'a'{}", "(".repeat(60), ")".repeat(60));
    assert!(compile(&ok, R).unwrap().is_some());
    let deep = format!("{}name = 'a'{}", "(".repeat(100_000), ")".repeat(100_000));
    assert_eq!(
        compile(&deep, R).unwrap_err().to_string(),
        "at position 64: parentheses and NOTs nest deeper than 64 levels"
    );
    let nots = format!("{}name = 'a'", "not ".repeat(100_000));
    assert_eq!(compile(&nots, R).unwrap_err().position, 256);
    // A long flat chain is not nesting, but its length is bounded (SQLite nests it).
    let flat = vec!["name = 'a'"; 256].join(" and ");
    assert!(compile(&flat, R).unwrap().is_some());
    let long = vec!["name = 'a'"; 5_000].join(" or ");
    assert_eq!(
        compile(&long, R).unwrap_err().to_string(),
        "at position 0: the search has 5000 conditions; at most 256 are accepted"
    );
}

/// Searches big enough to hit a database's limits (bound parameters, pattern size) or to cost
/// a plan per request are refused with a 400-class error, never sent to the database.
#[test]
fn sizes_are_bounded() {
    let values = vec!["1"; 3_000].join(",");
    assert_eq!(
        compile(&format!("version in ({values})"), R).unwrap_err().to_string(),
        "at position 0: the search holds 3000 values; at most 2048 are accepted"
    );
    let pairs: Vec<String> = (0..1_100).map(|i| format!("\"k{i}\":\"v\"")).collect();
    let contains = format!("labels @> '{{{}}}'", pairs.join(","));
    assert!(compile(&contains, C).unwrap_err().message.contains("2200 values"), "two per pair on SQLite");
    let pattern = "%".repeat(2_000);
    assert_eq!(
        compile(&format!("name like '{pattern}'"), R).unwrap_err().to_string(),
        "at position 10: the LIKE pattern has 2000 bytes; at most 1024 are accepted"
    );
}

/// Times outside years 1–9999 (in UTC) are refused: PostgreSQL cannot bind some of them and
/// SQLite would compare them as text out of order.
#[test]
fn times_are_years_1_to_9999() {
    for (time, ok) in [
        ("0001-01-01", true),
        ("9999-12-31T23:59:59Z", true),
        ("-5000-01-01", false),
        ("+99999-01-01", false),
        ("9999-12-31T23:00:00-05:00", false),
        ("0001-01-01T00:30:00+01:00", false),
    ] {
        let result = compile(&format!("created_at > '{time}'"), R);
        assert_eq!(result.is_ok(), ok, "{time}: {result:?}");
    }
}
