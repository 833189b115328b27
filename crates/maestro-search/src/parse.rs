//! The parser: [`Token`]s to an [`Expr`] (winnow over a `TokenSlice`).
//!
//! Every rule either backtracks without consuming (its first token does not fit, so an `alt`
//! tries the next rule) or, once its first token matched, cuts with an
//! `expected ..., found ...` error at the offending token.

use winnow::combinator::{alt, opt, repeat, separated};
use winnow::error::{ErrMode, ParserError};
use winnow::stream::{Location, Stateful, Stream, TokenSlice};
use winnow::token::one_of;
use winnow::{ModalResult, Parser};

use crate::ast::{CmpOp, Expr, Field, Ident, Key, Predicate, Str, Test, Value, ValueKind};
use crate::error::SearchError;
use crate::lex::{Kind, Token, lex};

/// The token stream; the state is the current nesting depth (parentheses and `NOT`s).
type Tokens<'t, 's> = Stateful<TokenSlice<'t, Token<'s>>, usize>;
type PResult<T> = ModalResult<T, PErr>;

/// The parser's error: a [`SearchError`] (a newtype so winnow's trait stays private).
#[derive(Debug)]
struct PErr(SearchError);

/// What may follow a field.
const OPERATOR: &str = "a comparison operator (=, !=, <>, <, <=, >, >=), LIKE, ILIKE, IN, BETWEEN, IS or @>";
/// What a value may be.
const VALUE: &str = "a value (a 'quoted string', a number or NULL)";
/// How deep parentheses and `NOT`s may nest (bounds the recursion of every pass).
pub(crate) const MAX_DEPTH: usize = 64;
/// The words that cannot name a field.
const KEYWORDS: [&str; 9] = ["and", "or", "not", "like", "ilike", "is", "null", "in", "between"];

impl<'t, 's> ParserError<Tokens<'t, 's>> for PErr {
    type Inner = Self;

    fn from_input(input: &Tokens<'t, 's>) -> Self {
        PErr(found(input, "another token"))
    }

    fn into_inner(self) -> Result<Self, Self> {
        Ok(self)
    }
}

/// Parses a search string into its syntax tree; see the crate docs for the grammar.
///
/// # Errors
/// A [`SearchError`] at the first token that does not fit, e.g. `at position 5: expected a
/// value (a 'quoted string', a number or NULL), found the end of the input`. Empty input is an
/// error too (`expected a field name, NOT or "(", found the end of the input`).
pub fn parse(input: &str) -> Result<Expr, SearchError> {
    let tokens = lex(input)?;
    let mut i = Tokens { input: TokenSlice::new(&tokens), state: 0 };
    let expr = or_expr(&mut i).map_err(into_error)?;
    match i.peek_token() {
        Some(t) if t.kind == Kind::Eof => Ok(expr),
        _ => Err(found(&i, "AND, OR or the end of the input")),
    }
}

/// The error inside a winnow error.
fn into_error(e: ErrMode<PErr>) -> SearchError {
    match e {
        ErrMode::Backtrack(PErr(e)) | ErrMode::Cut(PErr(e)) => e,
        ErrMode::Incomplete(_) => SearchError::new(0, "incomplete input"),
    }
}

/// `expected {what}, found {next token}` at the next token.
fn found(i: &Tokens<'_, '_>, what: &str) -> SearchError {
    match i.peek_token() {
        Some(t) => SearchError::new(t.start, format!("expected {what}, found {}", t.describe())),
        None => {
            SearchError::new(i.previous_token_end(), format!("expected {what}, found the end of the input"))
        }
    }
}

/// Fails (cut) with `expected {what}, found ...`.
fn expected<T>(i: &Tokens<'_, '_>, what: &str) -> PResult<T> {
    Err(ErrMode::Cut(PErr(found(i, what))))
}

/// Runs `p`; when it backtracks, cuts with `expected {what}, found ...` instead.
fn must<'t, 's: 't, O>(
    i: &mut Tokens<'t, 's>,
    mut p: impl Parser<Tokens<'t, 's>, O, ErrMode<PErr>>,
    what: &str,
) -> PResult<O> {
    let start = i.checkpoint();
    match p.parse_next(i) {
        Err(ErrMode::Backtrack(_)) => {
            i.reset(&start);
            expected(i, what)
        }
        other => other,
    }
}

/// One token satisfying `pred`.
fn tok<'t, 's: 't>(
    pred: impl Fn(&Token<'_>) -> bool,
) -> impl Parser<Tokens<'t, 's>, &'t Token<'s>, ErrMode<PErr>> {
    one_of(move |t: &'t Token<'s>| pred(t))
}

/// The keyword `word` (lowercase), in any case.
fn kw<'t, 's: 't>(word: &'static str) -> impl Parser<Tokens<'t, 's>, &'t Token<'s>, ErrMode<PErr>> {
    tok(move |t| t.is_kw(word))
}

/// A token of kind `kind`.
fn kind<'t, 's: 't>(kind: Kind) -> impl Parser<Tokens<'t, 's>, &'t Token<'s>, ErrMode<PErr>> {
    tok(move |t| t.kind == kind)
}

/// Several operands as one node, one operand as itself.
fn join(mut items: Vec<Expr>, node: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1
        && let Some(item) = items.pop()
    {
        return item;
    }
    node(items)
}

/// `and_expr ( OR and_expr )*`
fn or_expr(i: &mut Tokens<'_, '_>) -> PResult<Expr> {
    let items = separated(1.., and_expr, kw("or")).parse_next(i)?;
    Ok(join(items, Expr::Or))
}

/// `unary ( AND unary )*`
fn and_expr(i: &mut Tokens<'_, '_>) -> PResult<Expr> {
    let items = separated(1.., unary, kw("and")).parse_next(i)?;
    Ok(join(items, Expr::And))
}

/// `NOT unary | '(' or_expr ')' | predicate` (cuts when none fits, or when nesting deeper
/// than [`MAX_DEPTH`]).
fn unary(i: &mut Tokens<'_, '_>) -> PResult<Expr> {
    if i.state >= MAX_DEPTH {
        let message = format!("parentheses and NOTs nest deeper than {MAX_DEPTH} levels");
        return Err(ErrMode::Cut(PErr(SearchError::new(i.current_token_start(), message))));
    }
    i.state += 1;
    let expr = alt((not_expr, group, predicate.map(Expr::Pred), |i: &mut Tokens<'_, '_>| {
        expected(i, "a field name, NOT or \"(\"")
    }))
    .parse_next(i);
    i.state -= 1;
    expr
}

/// `NOT unary`
fn not_expr(i: &mut Tokens<'_, '_>) -> PResult<Expr> {
    let not = kw("not").parse_next(i)?;
    let expr = unary(i)?;
    Ok(Expr::Not { pos: not.start, expr: Box::new(expr) })
}

/// `'(' or_expr ')'`
fn group(i: &mut Tokens<'_, '_>) -> PResult<Expr> {
    let open = kind(Kind::LParen).parse_next(i)?;
    let expr = or_expr(i)?;
    let close = format!("AND, OR or \")\" to close the \"(\" at position {}", open.start);
    must(i, kind(Kind::RParen), &close)?;
    Ok(expr)
}

/// `field test`
fn predicate(i: &mut Tokens<'_, '_>) -> PResult<Predicate> {
    let field = field(i)?;
    let (pos, test) = must(i, test, OPERATOR)?;
    Ok(Predicate { field, test, pos })
}

/// An identifier that is not a keyword.
fn ident(i: &mut Tokens<'_, '_>) -> PResult<Ident> {
    let t = tok(|t| t.kind == Kind::Ident && !KEYWORDS.iter().any(|k| t.is_kw(k))).parse_next(i)?;
    Ok(Ident { name: t.text.to_owned(), pos: t.start })
}

/// A quoted string.
fn string(i: &mut Tokens<'_, '_>) -> PResult<Str> {
    let t = tok(|t| matches!(t.kind, Kind::Str(_))).parse_next(i)?;
    let text = match &t.kind {
        Kind::Str(s) => s.clone(),
        _ => String::new(),
    };
    Ok(Str { text, pos: t.start })
}

/// `string | number | NULL`
fn value(i: &mut Tokens<'_, '_>) -> PResult<Value> {
    let t = tok(|t| matches!(t.kind, Kind::Str(_) | Kind::Num) || t.is_kw("null")).parse_next(i)?;
    let kind = match &t.kind {
        Kind::Str(s) => ValueKind::Str(s.clone()),
        Kind::Num => ValueKind::Num(t.text.to_owned()),
        _ => ValueKind::Null,
    };
    Ok(Value { kind, pos: t.start })
}

/// `ident [ '.' ident ] ( '->' string )* [ '->>' string ]` (backtracks unless it starts with a
/// non-keyword identifier).
fn field(i: &mut Tokens<'_, '_>) -> PResult<Field> {
    let first = ident(i)?;
    let (table, name) = match opt(kind(Kind::Dot)).parse_next(i)? {
        Some(_) => {
            let what = format!("a column name after \"{}.\"", first.name);
            let name = must(i, ident, &what)?;
            (Some(first), name)
        }
        None => (None, first),
    };
    let path = repeat(0.., |i: &mut Tokens<'_, '_>| json_key(i, Kind::Arrow, "->")).parse_next(i)?;
    let text_key = opt(|i: &mut Tokens<'_, '_>| json_key(i, Kind::TextArrow, "->>")).parse_next(i)?;
    Ok(Field { table, name, path, text_key })
}

/// `arrow string` (backtracks unless the next token is `arrow`).
fn json_key(i: &mut Tokens<'_, '_>, arrow: Kind, spelling: &str) -> PResult<Key> {
    let t = kind(arrow).parse_next(i)?;
    let what = format!("a 'quoted string' JSON key after {spelling}");
    let key = must(i, string, &what)?;
    Ok(Key { key: key.text, pos: t.start })
}

/// Everything after the field; returns the operator position too.
fn test(i: &mut Tokens<'_, '_>) -> PResult<(usize, Test)> {
    alt((cmp_test, is_test, contains_test, not_test, |i: &mut Tokens<'_, '_>| {
        let pos = i.current_token_start();
        negatable(i, false).map(|test| (pos, test))
    }))
    .parse_next(i)
}

/// `cmp_op value`
fn cmp_test(i: &mut Tokens<'_, '_>) -> PResult<(usize, Test)> {
    let t = tok(|t| matches!(t.kind, Kind::Cmp(_))).parse_next(i)?;
    let op = match t.kind {
        Kind::Cmp(op) => op,
        _ => CmpOp::Eq,
    };
    let value = must(i, value, VALUE)?;
    Ok((t.start, Test::Cmp { op, value }))
}

/// `IS [NOT] NULL`
fn is_test(i: &mut Tokens<'_, '_>) -> PResult<(usize, Test)> {
    let is = kw("is").parse_next(i)?;
    let negated = opt(kw("not")).parse_next(i)?.is_some();
    let what = if negated { "NULL after IS NOT" } else { "NULL or NOT NULL after IS" };
    must(i, kw("null"), what)?;
    Ok((is.start, Test::IsNull { negated }))
}

/// `'@>' string`
fn contains_test(i: &mut Tokens<'_, '_>) -> PResult<(usize, Test)> {
    let t = kind(Kind::Contains).parse_next(i)?;
    let json = must(i, string, "a 'quoted string' holding a JSON object after @>")?;
    Ok((t.start, Test::Contains { json }))
}

/// `NOT (LIKE | ILIKE | IN | BETWEEN) ...`
fn not_test(i: &mut Tokens<'_, '_>) -> PResult<(usize, Test)> {
    let not = kw("not").parse_next(i)?;
    let test = must(i, |i: &mut Tokens<'_, '_>| negatable(i, true), "LIKE, ILIKE, IN or BETWEEN after NOT")?;
    Ok((not.start, test))
}

/// `(LIKE | ILIKE) string | IN (...) | BETWEEN value AND value` (backtracks unless the next
/// token is one of those keywords).
fn negatable(i: &mut Tokens<'_, '_>, negated: bool) -> PResult<Test> {
    let words = ["like", "ilike", "in", "between"];
    let t = tok(|t| words.iter().any(|w| t.is_kw(w))).parse_next(i)?;
    if t.is_kw("in") {
        in_list(i, negated)
    } else if t.is_kw("between") {
        between(i, negated)
    } else {
        let case_insensitive = t.is_kw("ilike");
        let what = format!("a 'quoted string' pattern after {}", t.text.to_uppercase());
        let pattern = must(i, string, &what)?;
        Ok(Test::Like { negated, case_insensitive, pattern })
    }
}

/// `'(' value ( ',' value )* ')'` after IN.
fn in_list(i: &mut Tokens<'_, '_>, negated: bool) -> PResult<Test> {
    must(i, kind(Kind::LParen), "\"(\" after IN")?;
    if i.peek_token().is_some_and(|t| t.kind == Kind::RParen) {
        return expected(i, "at least one value in the IN list");
    }
    let must_value = |i: &mut Tokens<'_, '_>| must(i, value, VALUE);
    let values = separated(1.., must_value, kind(Kind::Comma)).parse_next(i)?;
    must(i, kind(Kind::RParen), "\",\" or \")\" in the IN list")?;
    Ok(Test::In { negated, values })
}

/// `value AND value` after BETWEEN.
fn between(i: &mut Tokens<'_, '_>, negated: bool) -> PResult<Test> {
    let low = must(i, value, VALUE)?;
    must(i, kw("and"), "AND between the BETWEEN bounds")?;
    let high = must(i, value, VALUE)?;
    Ok(Test::Between { negated, low, high })
}
