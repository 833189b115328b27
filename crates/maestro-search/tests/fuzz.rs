//! Random inputs never panic in `parse`, `compile`, rendering or `parse_order_by`.
#![allow(clippy::unwrap_used)]

use maestro_search::{Dialect, Table, compile, parse, parse_order_by};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Fragments that make random strings look like searches.
const PARTS: &[&str] = &[
    "name",
    "version",
    "created_at",
    "deleted_at",
    "payload",
    "labels",
    "resources.",
    "->",
    "->>",
    "'metadata'",
    "'labels'",
    "'app'",
    "@>",
    "'{\"a\":\"b\"}'",
    "'{}'",
    "'[1]'",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    " and ",
    " or ",
    "not ",
    " like ",
    " ilike ",
    " is ",
    " null",
    " in ",
    " between ",
    "(",
    ")",
    ",",
    "'",
    "''",
    "'x'",
    "'2026-01-02'",
    "1",
    "-2.5",
    "+",
    ".",
    " ",
    "\\",
    "%",
    "ü",
    "\0",
];

fn check(input: &str) {
    let _ = parse(input);
    for table in [Table::Resources, Table::Consumers] {
        if let Ok(Some(filter)) = compile(input, table) {
            for dialect in [Dialect::Postgres, Dialect::Sqlite] {
                let fragment = filter.to_fragment(dialect);
                let _ = fragment.to_sql(dialect);
            }
        }
        let _ = parse_order_by(input, table);
    }
}

#[test]
fn random_printable_strings_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let len = rng.below(40);
        let s: String = (0..len).map(|_| char::from(b' ' + rng.below(95) as u8)).collect();
        check(&s);
    }
}

#[test]
fn random_token_soups_never_panic() {
    let mut rng = Rng(42);
    let mut compiled = 0;
    for _ in 0..20_000 {
        let len = rng.below(12) + 1;
        let s: String = (0..len).map(|_| PARTS[rng.below(PARTS.len())]).collect();
        check(&s);
        compiled += usize::from(matches!(compile(&s, Table::Resources), Ok(Some(_))));
    }
    assert!(compiled > 0);
}
