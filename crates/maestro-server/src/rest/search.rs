//! The `search` query parameter: a small, safe subset of Maestro's SQL-like search
//! (maestro-reference.md §2.2): `field = 'value'` terms joined by `and`, for exact matches on
//! whitelisted columns. Anything else is refused with a clear error (Maestro code 23).

use crate::error::ServiceError;

/// One `field = 'value'` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// Column name.
    pub field: String,
    /// Exact value.
    pub value: String,
}

/// Parses `search` into terms, allowing only `fields`.
///
/// # Errors
/// [`ServiceError::Search`] naming the part that could not be parsed.
pub fn parse(search: &str, fields: &[&str]) -> Result<Vec<Term>, ServiceError> {
    let mut terms = Vec::new();
    let mut rest = search.trim();
    while !rest.is_empty() {
        let (term, after) = parse_term(rest, fields)?;
        terms.push(term);
        rest = after.trim_start();
        if rest.is_empty() {
            break;
        }
        let lower = rest.to_ascii_lowercase();
        if !lower.starts_with("and ") && !lower.starts_with("and\t") {
            return Err(ServiceError::Search(format!("expected 'and' before {rest:?}")));
        }
        rest = rest[3..].trim_start();
    }
    Ok(terms)
}

fn parse_term<'a>(s: &'a str, fields: &[&str]) -> Result<(Term, &'a str), ServiceError> {
    let eq = s.find('=').ok_or_else(|| ServiceError::Search(format!("expected field = 'value' in {s:?}")))?;
    let field = s[..eq].trim();
    if !fields.contains(&field) {
        return Err(ServiceError::Search(format!(
            "unknown field {field:?} (searchable: {})",
            fields.join(", ")
        )));
    }
    let rest = s[eq + 1..].trim_start();
    let body = rest
        .strip_prefix('\'')
        .ok_or_else(|| ServiceError::Search(format!("value of {field} must be quoted with single quotes")))?;
    let end =
        body.find('\'').ok_or_else(|| ServiceError::Search(format!("unterminated value for {field}")))?;
    Ok((Term { field: field.to_owned(), value: body[..end].to_owned() }, &body[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &[&str] = &["consumer_name", "source", "name", "id"];

    #[test]
    fn parses_conjunctions() {
        let t = parse("consumer_name = 'c1' and source='maestro-cli'  AND name = 'web'", F).expect("ok");
        assert_eq!(t.len(), 3);
        assert_eq!(t[1], Term { field: "source".into(), value: "maestro-cli".into() });
        assert!(parse("", F).expect("empty").is_empty());
    }

    #[test]
    fn refuses_anything_else() {
        for bad in ["payload = 'x'", "name = web", "name = 'web", "name = 'a' or id = 'b'", "name"] {
            assert!(matches!(parse(bad, F), Err(ServiceError::Search(_))), "{bad}");
        }
    }
}
