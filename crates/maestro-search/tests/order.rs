//! `orderBy` parsing and SQL.
#![allow(clippy::unwrap_used)]

use maestro_search::Column::{self, *};
use maestro_search::Table::{Consumers as C, Resources as R};
use maestro_search::{OrderTerm, order_by_sql, parse_order_by};

fn term(column: Column, descending: bool) -> OrderTerm {
    OrderTerm { column, descending }
}

#[test]
fn parses_terms() {
    let cases: &[(&str, Vec<OrderTerm>)] = &[
        ("name asc, created_at desc", vec![term(Name, false), term(CreatedAt, true)]),
        ("  version ", vec![term(Version, false)]),
        ("NAME DESC", vec![term(Name, true)]),
        ("name Asc,,  ,id", vec![term(Name, false), term(Id, false)]),
        ("deleted_at desc,consumer_name", vec![term(DeletedAt, true), term(ConsumerName, false)]),
        ("", vec![]),
        (" , ", vec![]),
        ("updated_at\tdesc", vec![term(UpdatedAt, true)]),
    ];
    for (input, want) in cases {
        assert_eq!(&parse_order_by(input, R).unwrap(), want, "{input:?}");
    }
    assert_eq!(parse_order_by("name desc", C).unwrap(), vec![term(Name, true)]);
}

#[test]
fn rejects_bad_terms() {
    let cases: &[(&str, bool, &str)] = &[
        ("name up", true, "at position 5: expected asc or desc after \"name\", found \"up\""),
        (
            "name asc, foo",
            true,
            "at position 10: unknown orderBy field \"foo\"; sortable fields: id, name, consumer_name, source, version, created_at, updated_at, deleted_at",
        ),
        (
            "payload",
            true,
            "at position 0: unknown orderBy field \"payload\"; sortable fields: id, name, consumer_name, source, version, created_at, updated_at, deleted_at",
        ),
        (
            "payload->'metadata'->>'name' asc",
            true,
            "at position 0: unknown orderBy field \"payload->'metadata'->>'name'\"; sortable fields: id, name, consumer_name, source, version, created_at, updated_at, deleted_at",
        ),
        (
            "id, version",
            false,
            "at position 4: unknown orderBy field \"version\"; sortable fields: id, name, created_at, updated_at",
        ),
        (
            "name asc desc",
            true,
            "at position 9: expected \",\" or the end of the orderBy item, found \"desc\"",
        ),
        (
            "ü, name sideways",
            true,
            "at position 0: unknown orderBy field \"ü\"; sortable fields: id, name, consumer_name, source, version, created_at, updated_at, deleted_at",
        ),
        ("id, name sideways", true, "at position 9: expected asc or desc after \"name\", found \"sideways\""),
    ];
    for (input, resources, want) in cases {
        let table = if *resources { R } else { C };
        let got = parse_order_by(input, table).unwrap_err().to_string();
        assert_eq!(got, *want, "{input:?}");
    }
}

#[test]
fn renders_order_by() {
    let cases: &[(Vec<OrderTerm>, &str)] = &[
        (vec![], "created_at ASC, id ASC"),
        (vec![term(Name, false), term(CreatedAt, true)], "name ASC, created_at DESC, id ASC"),
        (vec![term(Id, true), term(Name, false)], "id DESC, name ASC"),
        (vec![term(DeletedAt, false)], "deleted_at ASC NULLS LAST, id ASC"),
        (vec![term(DeletedAt, true), term(Id, false)], "deleted_at DESC NULLS FIRST, id ASC"),
        (vec![term(Version, true)], "version DESC, id ASC"),
    ];
    for (terms, want) in cases {
        assert_eq!(order_by_sql(terms), *want, "{terms:?}");
    }
    let parsed = parse_order_by("consumer_name desc, updated_at", R).unwrap();
    assert_eq!(order_by_sql(&parsed), "consumer_name DESC, updated_at ASC, id ASC");
}

#[test]
fn columns_know_their_sql_and_nullability() {
    let all = [Id, Name, ConsumerName, Source, Version, CreatedAt, UpdatedAt, DeletedAt];
    let names: Vec<&str> = all.iter().map(|c| c.sql()).collect();
    assert_eq!(
        names,
        ["id", "name", "consumer_name", "source", "version", "created_at", "updated_at", "deleted_at"]
    );
    assert_eq!(all.iter().filter(|c| c.is_nullable()).collect::<Vec<_>>(), [&DeletedAt]);
    assert_eq!(R.columns(), all);
    assert_eq!(C.columns(), [Id, Name, CreatedAt, UpdatedAt]);
    assert_eq!((R.name(), C.name()), ("resources", "consumers"));
    assert_eq!(R.column("Consumer_Name"), Some(ConsumerName));
    assert_eq!(C.column("consumer_name"), None);
}
