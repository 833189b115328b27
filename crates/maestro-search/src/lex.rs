//! The lexer: input text to [`Token`]s with byte spans (winnow over a `LocatingSlice<&str>`).
//!
//! Tokens are maximal munch, so no whitespace is needed between them: `'k'in('a')` is a string,
//! an identifier, `(`, a string and `)`. A character that starts no token becomes a
//! [`Kind::Other`] token and the parser reports it where it is found; the only lexing error is
//! an unterminated string.

use winnow::ascii::{digit1, multispace0};
use winnow::combinator::{alt, opt, preceded, repeat};
use winnow::error::ContextError;
use winnow::stream::Location;
use winnow::token::{any, one_of, take_while};
use winnow::{LocatingSlice, ModalResult, Parser};

use crate::ast::CmpOp;
use crate::error::SearchError;

type Input<'s> = LocatingSlice<&'s str>;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `[A-Za-z_][A-Za-z0-9_]*`, keywords included.
    Ident,
    /// A quoted string, unescaped.
    Str(String),
    /// `['+'|'-'] digits ['.' digits]`.
    Num,
    /// `->`
    Arrow,
    /// `->>`
    TextArrow,
    /// `@>`
    Contains,
    /// A comparison operator.
    Cmp(CmpOp),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
    /// `.`
    Dot,
    /// Any other character.
    Other,
    /// A string without its closing quote (turned into an error by [`lex`]).
    Unterminated,
    /// The end of the input (always the last token).
    Eof,
}

/// A token with its source text and byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token<'s> {
    /// What it is.
    pub(crate) kind: Kind,
    /// The source text (strings with their quotes).
    pub(crate) text: &'s str,
    /// Byte offset of the first character.
    pub(crate) start: usize,
    /// Byte offset just past the last character.
    pub(crate) end: usize,
}

impl Token<'_> {
    /// Whether this is the keyword `word` (lowercase), in any case.
    pub(crate) fn is_kw(&self, word: &str) -> bool {
        self.kind == Kind::Ident && self.text.eq_ignore_ascii_case(word)
    }

    /// How an error message names this token: `"foo"`, `the string 'a'`, `the number 3` or
    /// `the end of the input`.
    pub(crate) fn describe(&self) -> String {
        match self.kind {
            Kind::Eof => "the end of the input".to_owned(),
            Kind::Str(_) => format!("the string {}", self.text),
            Kind::Num => format!("the number {}", self.text),
            _ => format!("\"{}\"", self.text),
        }
    }
}

impl Location for Token<'_> {
    fn previous_token_end(&self) -> usize {
        self.end
    }

    fn current_token_start(&self) -> usize {
        self.start
    }
}

/// Why a string holding U+0000 is refused: no PostgreSQL text can hold it, so it could never
/// match, and binding it would fail in the database instead of here.
pub(crate) const NUL_REFUSED: &str = "holds a NUL character (U+0000), which no stored text can contain";

/// Splits `src` into tokens, the last one [`Kind::Eof`] at `src.len()`.
///
/// # Errors
/// A string without its closing quote: `expected a closing quote for the string starting at
/// position N`, at the end of the input; a string holding U+0000 ([`NUL_REFUSED`]), at the
/// string.
pub(crate) fn lex(src: &str) -> Result<Vec<Token<'_>>, SearchError> {
    let mut input = LocatingSlice::new(src);
    let spanned: ModalResult<Vec<(Kind, std::ops::Range<usize>)>> =
        repeat(0.., preceded(multispace0, token.with_span())).parse_next(&mut input);
    // `token` accepts any character, so only the end of the input stops the repetition.
    let spanned = spanned.map_err(|_| SearchError::new(0, "the input could not be split into tokens"))?;
    let mut tokens = Vec::with_capacity(spanned.len() + 1);
    for (kind, span) in spanned {
        if kind == Kind::Unterminated {
            let message =
                format!("expected a closing quote for the string starting at position {}", span.start);
            return Err(SearchError::new(src.len(), message));
        }
        if matches!(&kind, Kind::Str(text) if text.contains('\0')) {
            return Err(SearchError::new(
                span.start,
                format!("the string starting at position {} {NUL_REFUSED}", span.start),
            ));
        }
        let text = src.get(span.clone()).unwrap_or_default();
        tokens.push(Token { kind, text, start: span.start, end: span.end });
    }
    tokens.push(Token { kind: Kind::Eof, text: "", start: src.len(), end: src.len() });
    Ok(tokens)
}

/// One token (never fails on non-empty input).
fn token(i: &mut Input<'_>) -> ModalResult<Kind> {
    alt((string, number, ident.value(Kind::Ident), punct, any.value(Kind::Other))).parse_next(i)
}

/// `'...'` with `''` for a quote; a missing closing quote gives [`Kind::Unterminated`].
fn string(i: &mut Input<'_>) -> ModalResult<Kind> {
    '\''.parse_next(i)?;
    let text: String = repeat(0.., alt((take_while(1.., |c| c != '\''), "''".value("'"))))
        .fold(String::new, |mut acc: String, part: &str| {
            acc.push_str(part);
            acc
        })
        .parse_next(i)?;
    let closed = opt('\'').parse_next(i)?.is_some();
    Ok(if closed { Kind::Str(text) } else { Kind::Unterminated })
}

/// `['+'|'-'] digits ['.' digits]`.
fn number(i: &mut Input<'_>) -> ModalResult<Kind> {
    (opt(one_of(['+', '-'])), digit1, opt(('.', digit1))).value(Kind::Num).parse_next(i)
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn ident<'s>(i: &mut Input<'s>) -> ModalResult<&'s str> {
    (
        one_of(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(0.., |c: char| c.is_ascii_alphanumeric() || c == '_'),
    )
        .take()
        .parse_next(i)
}

/// Operators and punctuation, longest first.
fn punct(i: &mut Input<'_>) -> ModalResult<Kind, ContextError> {
    alt((
        "->>".value(Kind::TextArrow),
        "->".value(Kind::Arrow),
        "@>".value(Kind::Contains),
        "<=".value(Kind::Cmp(CmpOp::Le)),
        ">=".value(Kind::Cmp(CmpOp::Ge)),
        "<>".value(Kind::Cmp(CmpOp::Ne)),
        "!=".value(Kind::Cmp(CmpOp::Ne)),
        "<".value(Kind::Cmp(CmpOp::Lt)),
        ">".value(Kind::Cmp(CmpOp::Gt)),
        "=".value(Kind::Cmp(CmpOp::Eq)),
        "(".value(Kind::LParen),
        ")".value(Kind::RParen),
        ",".value(Kind::Comma),
        ".".value(Kind::Dot),
    ))
    .parse_next(i)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{Kind, lex};
    use crate::ast::CmpOp;

    fn kinds(src: &str) -> Vec<(Kind, &str, usize)> {
        lex(src).unwrap().into_iter().map(|t| (t.kind, t.text, t.start)).collect()
    }

    #[test]
    fn splits_without_whitespace() {
        assert_eq!(
            kinds("x->>'k'in('a',-1.5)"),
            vec![
                (Kind::Ident, "x", 0),
                (Kind::TextArrow, "->>", 1),
                (Kind::Str("k".into()), "'k'", 4),
                (Kind::Ident, "in", 7),
                (Kind::LParen, "(", 9),
                (Kind::Str("a".into()), "'a'", 10),
                (Kind::Comma, ",", 13),
                (Kind::Num, "-1.5", 14),
                (Kind::RParen, ")", 18),
                (Kind::Eof, "", 19),
            ]
        );
        assert_eq!(
            kinds("a<>b!=c<=d>=e<f>g=h@>i.j->k"),
            vec![
                (Kind::Ident, "a", 0),
                (Kind::Cmp(CmpOp::Ne), "<>", 1),
                (Kind::Ident, "b", 3),
                (Kind::Cmp(CmpOp::Ne), "!=", 4),
                (Kind::Ident, "c", 6),
                (Kind::Cmp(CmpOp::Le), "<=", 7),
                (Kind::Ident, "d", 9),
                (Kind::Cmp(CmpOp::Ge), ">=", 10),
                (Kind::Ident, "e", 12),
                (Kind::Cmp(CmpOp::Lt), "<", 13),
                (Kind::Ident, "f", 14),
                (Kind::Cmp(CmpOp::Gt), ">", 15),
                (Kind::Ident, "g", 16),
                (Kind::Cmp(CmpOp::Eq), "=", 17),
                (Kind::Ident, "h", 18),
                (Kind::Contains, "@>", 19),
                (Kind::Ident, "i", 21),
                (Kind::Dot, ".", 22),
                (Kind::Ident, "j", 23),
                (Kind::Arrow, "->", 24),
                (Kind::Ident, "k", 26),
                (Kind::Eof, "", 27),
            ]
        );
    }

    #[test]
    fn strings_numbers_and_strays() {
        assert_eq!(kinds("'it''s'")[0].0, Kind::Str("it's".into()));
        assert_eq!(kinds("''''")[0].0, Kind::Str("'".into()));
        assert_eq!(kinds("'a\\'")[0].0, Kind::Str("a\\".into()));
        assert_eq!(kinds("1.")[..2], [(Kind::Num, "1", 0), (Kind::Dot, ".", 1)]);
        assert_eq!(kinds("- 1")[0], (Kind::Other, "-", 0));
        assert_eq!(kinds(" ü#")[..2], [(Kind::Other, "ü", 1), (Kind::Other, "#", 3)]);
        let err = lex("x = 'it''s").unwrap_err();
        assert_eq!(
            err.to_string(),
            "at position 10: expected a closing quote for the string starting at position 4"
        );
    }
}
