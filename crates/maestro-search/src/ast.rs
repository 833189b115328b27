//! The syntax tree [`crate::parse`] produces: what was written, with the byte offset of every
//! node, before any field or value is checked.
//!
//! [`Expr`]'s `Display` is a compact S-expression, handy in tests and logs:
//! `name = 'a' and not (x in (1, 2))` shows as `(and (= name 'a') (not (in x 1 2)))`.

use std::fmt;

/// A boolean expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Every operand holds (two or more operands, in the order written).
    And(Vec<Expr>),
    /// At least one operand holds (two or more operands, in the order written).
    Or(Vec<Expr>),
    /// `NOT expr`; `pos` is the offset of the `NOT` keyword.
    Not {
        /// Byte offset of the `NOT` keyword.
        pos: usize,
        /// The negated expression.
        expr: Box<Expr>,
    },
    /// One condition on one field.
    Pred(Predicate),
}

/// One condition: `field <op> ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicate {
    /// The field the condition is on.
    pub field: Field,
    /// What the field is tested for.
    pub test: Test,
    /// Byte offset of the operator (`=`, `LIKE`, the `NOT` of `NOT IN`, `IS`, `@>` ...).
    pub pos: usize,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=` or `<>` (both render as `<>`).
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The SQL spelling: `=`, `<>`, `<`, `<=`, `>`, `>=`.
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// The test a [`Predicate`] applies to its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// `field <op> value` (the value may be `NULL`).
    Cmp {
        /// The operator.
        op: CmpOp,
        /// The right-hand side.
        value: Value,
    },
    /// `field [NOT] LIKE 'pattern'` or `field [NOT] ILIKE 'pattern'`.
    Like {
        /// `NOT LIKE` / `NOT ILIKE`.
        negated: bool,
        /// `ILIKE` (case-insensitive).
        case_insensitive: bool,
        /// The pattern string (unescaped: `''` already became `'`).
        pattern: Str,
    },
    /// `field IS [NOT] NULL`.
    IsNull {
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// `field [NOT] IN (v1, v2, ...)`, at least one value.
    In {
        /// `NOT IN`.
        negated: bool,
        /// The listed values.
        values: Vec<Value>,
    },
    /// `field [NOT] BETWEEN low AND high`.
    Between {
        /// `NOT BETWEEN`.
        negated: bool,
        /// The lower bound.
        low: Value,
        /// The upper bound.
        high: Value,
    },
    /// `field @> 'json'` (JSON containment).
    Contains {
        /// The JSON text, unchecked.
        json: Str,
    },
}

/// A field reference: `[table.]name ( -> 'key' )* [ ->> 'key' ]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The `table.` qualifier, if written.
    pub table: Option<Ident>,
    /// The column name.
    pub name: Ident,
    /// The `-> 'key'` steps (JSON object navigation), in order.
    pub path: Vec<Key>,
    /// The final `->> 'key'` step (JSON value as text), if written.
    pub text_key: Option<Key>,
}

impl Field {
    /// Byte offset of the first token of the field.
    pub fn pos(&self) -> usize {
        self.table.as_ref().map_or(self.name.pos, |t| t.pos)
    }
}

/// An identifier as written (case preserved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    /// The identifier text.
    pub name: String,
    /// Byte offset of the identifier.
    pub pos: usize,
}

/// One JSON navigation step (`-> 'key'` or `->> 'key'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key (unescaped).
    pub key: String,
    /// Byte offset of the arrow (`->` or `->>`).
    pub pos: usize,
}

/// A quoted string literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str {
    /// The text, unescaped (`'it''s'` is `it's`).
    pub text: String,
    /// Byte offset of the opening quote.
    pub pos: usize,
}

/// A literal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// What kind of literal.
    pub kind: ValueKind,
    /// Byte offset of the literal.
    pub pos: usize,
}

/// The kinds of literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    /// A quoted string, unescaped.
    Str(String),
    /// A number as written: `['+'|'-'] digits ['.' digits]`.
    Num(String),
    /// `NULL` (any case).
    Null,
}

/// Writes `s` as a string literal, doubling quotes.
fn quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    write!(f, "'{}'", s.replace('\'', "''"))
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, items) = match self {
            Expr::Pred(p) => return p.fmt(f),
            Expr::Not { expr, .. } => return write!(f, "(not {expr})"),
            Expr::And(items) => ("and", items),
            Expr::Or(items) => ("or", items),
        };
        write!(f, "({name}")?;
        for item in items {
            write!(f, " {item}")?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        let not = |negated: bool| if negated { "not-" } else { "" };
        match &self.test {
            Test::Cmp { op, value } => write!(f, "({} {field} {value})", op.sql()),
            Test::Like { negated, case_insensitive, pattern } => {
                let op = if *case_insensitive { "ilike" } else { "like" };
                write!(f, "({}{op} {field} ", not(*negated))?;
                quoted(f, &pattern.text)?;
                f.write_str(")")
            }
            Test::IsNull { negated } => write!(f, "(is-{}null {field})", not(*negated)),
            Test::In { negated, values } => {
                write!(f, "({}in {field}", not(*negated))?;
                for v in values {
                    write!(f, " {v}")?;
                }
                f.write_str(")")
            }
            Test::Between { negated, low, high } => {
                write!(f, "({}between {field} {low} {high})", not(*negated))
            }
            Test::Contains { json } => {
                write!(f, "(@> {field} ")?;
                quoted(f, &json.text)?;
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for Field {
    /// `[table.]name->'k'->>'k'`, names as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(table) = &self.table {
            write!(f, "{}.", table.name)?;
        }
        f.write_str(&self.name.name)?;
        for key in &self.path {
            f.write_str("->")?;
            quoted(f, &key.key)?;
        }
        if let Some(key) = &self.text_key {
            f.write_str("->>")?;
            quoted(f, &key.key)?;
        }
        Ok(())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ValueKind::Str(s) => quoted(f, s),
            ValueKind::Num(n) => f.write_str(n),
            ValueKind::Null => f.write_str("null"),
        }
    }
}
