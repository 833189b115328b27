//! Parser cases: input → S-expression of the syntax tree.
#![allow(clippy::unwrap_used)]

use maestro_search::ast::{CmpOp, Expr, Test, ValueKind};
use maestro_search::parse;

/// `(input, expected S-expression)`.
const CASES: &[(&str, &str)] = &[
    // every comparison operator
    ("name = 'a'", "(= name 'a')"),
    ("name='a'", "(= name 'a')"),
    ("name != 'a'", "(<> name 'a')"),
    ("name <> 'a'", "(<> name 'a')"),
    ("version < 3", "(< version 3)"),
    ("version <= 3", "(<= version 3)"),
    ("version > -3", "(> version -3)"),
    ("version >= +3", "(>= version +3)"),
    ("version=3", "(= version 3)"),
    ("version<>-3", "(<> version -3)"),
    // numbers as written
    ("version = 1.5", "(= version 1.5)"),
    ("version = 007", "(= version 007)"),
    ("version = -0.25", "(= version -0.25)"),
    // LIKE / ILIKE
    ("name like 'a%'", "(like name 'a%')"),
    ("name LIKE 'a%'", "(like name 'a%')"),
    ("name not like 'a_'", "(not-like name 'a_')"),
    ("name ilike 'A%'", "(ilike name 'A%')"),
    ("name NOT ILIKE 'x'", "(not-ilike name 'x')"),
    ("name Not Like'x'", "(not-like name 'x')"),
    // IS [NOT] NULL, = null
    ("deleted_at is null", "(is-null deleted_at)"),
    ("deleted_at IS NOT NULL", "(is-not-null deleted_at)"),
    ("Name Is Not Null", "(is-not-null Name)"),
    ("name = null", "(= name null)"),
    ("name = NULL", "(= name null)"),
    ("name != Null", "(<> name null)"),
    // IN
    ("name in ('a')", "(in name 'a')"),
    ("name in('a')", "(in name 'a')"),
    ("name IN ('a', 'b', 'c')", "(in name 'a' 'b' 'c')"),
    ("name not in ('a','b')", "(not-in name 'a' 'b')"),
    ("x in ('a', 1, null)", "(in x 'a' 1 null)"),
    ("version in ( 1 , 2 , 3 )", "(in version 1 2 3)"),
    // BETWEEN
    ("version between 1 and 5", "(between version 1 5)"),
    ("version NOT BETWEEN 1 AND 5", "(not-between version 1 5)"),
    ("version between -1 and +1.5", "(between version -1 +1.5)"),
    (
        "created_at between '2026-01-01' and '2026-02-01' and name = 'x'",
        "(and (between created_at '2026-01-01' '2026-02-01') (= name 'x'))",
    ),
    // @>
    ("labels @> '{\"a\":\"b\"}'", "(@> labels '{\"a\":\"b\"}')"),
    ("labels@>'{}'", "(@> labels '{}')"),
    // AND / OR / NOT, precedence and parentheses
    ("a = '1' and b = '2'", "(and (= a '1') (= b '2'))"),
    ("a = '1' or b = '2'", "(or (= a '1') (= b '2'))"),
    ("a = '1' and b = '2' and c = '3'", "(and (= a '1') (= b '2') (= c '3'))"),
    ("a = '1' or b = '2' and c = '3'", "(or (= a '1') (and (= b '2') (= c '3')))"),
    ("a = '1' and b = '2' or c = '3'", "(or (and (= a '1') (= b '2')) (= c '3'))"),
    ("not a = '1' and b = '2'", "(and (not (= a '1')) (= b '2'))"),
    ("not a = '1' or b = '2'", "(or (not (= a '1')) (= b '2'))"),
    ("not (a = '1' and b = '2')", "(not (and (= a '1') (= b '2')))"),
    ("(a = '1' or b = '2') and c = '3'", "(and (or (= a '1') (= b '2')) (= c '3'))"),
    ("not not a = '1'", "(not (not (= a '1')))"),
    ("NOT(name='a')", "(not (= name 'a'))"),
    ("((a = '1'))", "(= a '1')"),
    ("(a = '1' or (b = '2' or c = '3'))", "(or (= a '1') (or (= b '2') (= c '3')))"),
    ("A = '1' AnD B = '2' oR C = '3'", "(or (and (= A '1') (= B '2')) (= C '3'))"),
    ("name='a'and source='b'", "(and (= name 'a') (= source 'b'))"),
    ("name not like 'a' or not name ilike 'b'", "(or (not-like name 'a') (not (ilike name 'b')))"),
    // strings
    ("name = 'it''s'", "(= name 'it''s')"),
    ("name = ''", "(= name '')"),
    ("name = ''''", "(= name '''')"),
    ("name = 'a\\b'", "(= name 'a\\b')"),
    ("name = 'ünïcödé ✓'", "(= name 'ünïcödé ✓')"),
    ("name = 'a and b = ''c'''", "(= name 'a and b = ''c''')"),
    // whitespace
    ("  name = 'a'  ", "(= name 'a')"),
    ("\tname\n=\r\n'a'", "(= name 'a')"),
    // fields
    ("resources.name = 'x'", "(= resources.name 'x')"),
    ("_a1 = 1", "(= _a1 1)"),
    ("labels->>'env' = 'prod'", "(= labels->>'env' 'prod')"),
    ("payload->'metadata'->>'name' = 'w'", "(= payload->'metadata'->>'name' 'w')"),
    ("payload->'a''b'->>'c' = 'w'", "(= payload->'a''b'->>'c' 'w')"),
    // the forms Go grpcsource clients send
    ("source='maestro' and consumer_name='c1'", "(and (= source 'maestro') (= consumer_name 'c1'))"),
    (
        "source='S' and (consumer_name='ns1' or consumer_name='ns2')",
        "(and (= source 'S') (or (= consumer_name 'ns1') (= consumer_name 'ns2')))",
    ),
    (
        "payload->'metadata'->'labels'@>'{\"app\":\"web\",\"tier\":\"gold\"}'",
        "(@> payload->'metadata'->'labels' '{\"app\":\"web\",\"tier\":\"gold\"}')",
    ),
    (
        "payload->'metadata'->'labels'->>'app'in('a','b')",
        "(in payload->'metadata'->'labels'->>'app' 'a' 'b')",
    ),
    (
        "payload->'metadata'->'labels'->>'app' not in ('a','b')",
        "(not-in payload->'metadata'->'labels'->>'app' 'a' 'b')",
    ),
    ("payload->'metadata'->'labels'->>'app'<>'v'", "(<> payload->'metadata'->'labels'->>'app' 'v')"),
    ("payload->'metadata'->'labels'->>'app'<>null", "(<> payload->'metadata'->'labels'->>'app' null)"),
    ("payload->'metadata'->'labels'->>'app'!=null", "(<> payload->'metadata'->'labels'->>'app' null)"),
    ("payload->'metadata'->'labels'->>'app' = null", "(= payload->'metadata'->'labels'->>'app' null)"),
    ("payload->'metadata'->'labels'->>'app' is null", "(is-null payload->'metadata'->'labels'->>'app')"),
    (
        "payload -> 'metadata' -> 'labels' ->> 'app' in ( 'a' , 'b' )",
        "(in payload->'metadata'->'labels'->>'app' 'a' 'b')",
    ),
    (
        "payload->'metadata'->'labels'@>'{\"app\":\"web\"}' and payload->'metadata'->'labels'->>'tier'in('a','b') and payload->'metadata'->'labels'->>'env'<>null and payload->'metadata'->'labels'->>'x' not in ('y')",
        "(and (@> payload->'metadata'->'labels' '{\"app\":\"web\"}') (in payload->'metadata'->'labels'->>'tier' 'a' 'b') (<> payload->'metadata'->'labels'->>'env' null) (not-in payload->'metadata'->'labels'->>'x' 'y'))",
    ),
];

#[test]
fn parses_every_case() {
    assert!(CASES.len() >= 60, "{} cases", CASES.len());
    for (input, want) in CASES {
        let got = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(got.to_string(), *want, "input {input:?}");
    }
}

#[test]
fn keeps_positions_and_unescapes() {
    let Expr::Pred(p) = parse("name = 'it''s'").unwrap() else { panic!("not a predicate") };
    assert_eq!((p.field.name.name.as_str(), p.field.name.pos, p.pos), ("name", 0, 5));
    let Test::Cmp { op: CmpOp::Eq, value } = &p.test else { panic!("not =") };
    assert_eq!((&value.kind, value.pos), (&ValueKind::Str("it's".into()), 7));

    let Expr::And(items) = parse("a='1' and not b in ('x')").unwrap() else { panic!("not and") };
    let Expr::Not { pos, expr } = &items[1] else { panic!("not a NOT") };
    assert_eq!(*pos, 10);
    let Expr::Pred(p) = &**expr else { panic!("not a predicate") };
    assert_eq!((p.field.pos(), p.pos), (14, 16));

    let Expr::Pred(p) = parse("resources.name->'k'->>'j' like 'x'").unwrap() else { panic!() };
    assert_eq!(p.field.table.as_ref().map(|t| t.pos), Some(0));
    assert_eq!((p.field.name.pos, p.field.path[0].pos), (10, 14));
    assert_eq!(p.field.text_key.as_ref().map(|k| (k.key.as_str(), k.pos)), Some(("j", 19)));
    assert_eq!(p.pos, 26);
}
