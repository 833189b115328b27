//! Maestro's `search` query language and `orderBy` parameter, for the REST list endpoints
//! (`GET /api/maestro/v1/resource-bundles?search=...`, `/consumers?search=...`).
//!
//! The reference for users is `docs/rest.md`, section "Search language". The language is the
//! one Go Maestro accepts (yaacov/tree-search-language), so the strings Go clients send parse
//! and mean the same thing, e.g.
//!
//! ```text
//! source='maestro' and (consumer_name='ns1' or consumer_name='ns2')
//! payload->'metadata'->'labels'@>'{"app":"web","tier":"gold"}'
//! payload->'metadata'->'labels'->>'app'in('a','b') and payload->'metadata'->'labels'->>'env'<>null
//! ```
//!
//! # Grammar
//!
//! Keywords are case-insensitive; whitespace is optional wherever tokens stay apart.
//!
//! ```text
//! search    := or_expr EOF
//! or_expr   := and_expr ( OR and_expr )*
//! and_expr  := unary ( AND unary )*
//! unary     := NOT unary | '(' or_expr ')' | predicate
//! predicate := field ( cmp_op value
//!                    | [NOT] LIKE string | [NOT] ILIKE string
//!                    | IS [NOT] NULL
//!                    | [NOT] IN '(' value ( ',' value )* ')'
//!                    | [NOT] BETWEEN value AND value
//!                    | '@>' string )
//! cmp_op    := '=' | '!=' | '<>' | '<' | '<=' | '>' | '>='
//! field     := ident [ '.' ident ] ( '->' string )* [ '->>' string ]
//! value     := string | number | NULL
//! string    := '\'' ( any char but '\'' | '\'\'' )* '\''     ('' is a quote)
//! number    := ['+'|'-'] digits [ '.' digits ]
//! ```
//!
//! `NOT` binds tighter than `AND`, `AND` tighter than `OR`. `x = null` means `x IS NULL`,
//! `x != null` / `x <> null` mean `x IS NOT NULL`.
//!
//! # Fields
//!
//! Searchable fields are whitelisted per [`Table`] (names case-insensitive, an optional
//! `resources.` / `consumers.` qualifier must name the searched table):
//!
//! - resources: text `id`, `name`, `consumer_name`, `source`; integer `version`; timestamps
//!   `created_at`, `updated_at`, `deleted_at`; the JSON objects `payload->'metadata'`,
//!   `payload->'metadata'->'labels'` and `payload->'metadata'->'annotations'`;
//! - consumers: text `id`, `name`; timestamps `created_at`, `updated_at`; the JSON object
//!   `labels`.
//!
//! A JSON object takes `@> '{"key":"value",...}'` (scalar values only) or `->>'key'`, which is
//! then a text field. Timestamps take RFC 3339 strings (`'2026-01-02T03:04:05Z'`) or dates
//! (`'2026-01-02'`, midnight UTC); `version` takes integers.
//!
//! # Pipeline
//!
//! [`parse`] gives the syntax tree ([`ast::Expr`]); [`compile`] parses and checks it against a
//! table into a [`Filter`]; [`Filter::to_fragment`] renders SQL for a [`Dialect`] as a
//! [`Fragment`] of constant SQL text and bound [`Param`]s: user values and JSON keys are never
//! part of the SQL text. [`parse_order_by`] and [`order_by_sql`] handle `orderBy`.

pub mod ast;
mod check;
mod error;
mod lex;
mod order;
mod parse;
mod sql;

pub use check::{Filter, MAX_CONDITIONS, MAX_PARAMS, MAX_PATTERN_BYTES, compile};
pub use error::SearchError;
pub use order::{OrderTerm, order_by_sql, parse_order_by};
pub use parse::parse;
pub use sql::{Fragment, Param, Piece};

/// The SQL dialect to render for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL: `$1, $2, ...` placeholders, jsonb operators.
    Postgres,
    /// SQLite: `?` placeholders, `json_each` / `json_type`, `GLOB` for case-sensitive `LIKE`.
    Sqlite,
}

/// A searchable table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `resources` (resource bundles).
    Resources,
    /// `consumers`.
    Consumers,
}

impl Table {
    /// The SQL table name: `resources` or `consumers`.
    pub fn name(self) -> &'static str {
        match self {
            Table::Resources => "resources",
            Table::Consumers => "consumers",
        }
    }

    /// The plain (non-JSON) columns that can be searched and ordered by, in documentation
    /// order.
    pub fn columns(self) -> &'static [Column] {
        use Column::*;
        match self {
            Table::Resources => &[Id, Name, ConsumerName, Source, Version, CreatedAt, UpdatedAt, DeletedAt],
            Table::Consumers => &[Id, Name, CreatedAt, UpdatedAt],
        }
    }

    /// The column called `name` (case-insensitive), if this table has it.
    pub fn column(self, name: &str) -> Option<Column> {
        self.columns().iter().copied().find(|c| c.sql().eq_ignore_ascii_case(name))
    }
}

/// A plain column of a searchable table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    /// `id` (text).
    Id,
    /// `name` (text).
    Name,
    /// `consumer_name` (text, resources only).
    ConsumerName,
    /// `source` (text, resources only).
    Source,
    /// `version` (integer, resources only).
    Version,
    /// `created_at` (timestamp).
    CreatedAt,
    /// `updated_at` (timestamp).
    UpdatedAt,
    /// `deleted_at` (nullable timestamp, resources only).
    DeletedAt,
}

/// The type of a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    /// Strings.
    Text,
    /// 64-bit integers.
    Int,
    /// Timestamps.
    Time,
}

impl Column {
    /// The SQL column name: `id`, `name`, `consumer_name`, `source`, `version`, `created_at`,
    /// `updated_at` or `deleted_at`.
    pub fn sql(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Name => "name",
            Column::ConsumerName => "consumer_name",
            Column::Source => "source",
            Column::Version => "version",
            Column::CreatedAt => "created_at",
            Column::UpdatedAt => "updated_at",
            Column::DeletedAt => "deleted_at",
        }
    }

    /// Whether the column may hold NULL (only `deleted_at`).
    pub fn is_nullable(self) -> bool {
        self == Column::DeletedAt
    }

    /// The type of the column's values.
    pub(crate) fn ty(self) -> ColumnType {
        match self {
            Column::Id | Column::Name | Column::ConsumerName | Column::Source => ColumnType::Text,
            Column::Version => ColumnType::Int,
            Column::CreatedAt | Column::UpdatedAt | Column::DeletedAt => ColumnType::Time,
        }
    }
}
