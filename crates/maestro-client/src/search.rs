//! Building Maestro `search` strings (docs/rest.md, "Search language"):
//! `consumer_name = 'c1' and source = 'maestro-cli' and name = 'web'`, optionally joined with a
//! search the caller wrote (passed through verbatim).

use crate::error::{ClientError, Result};

/// A filter on resource bundles. Every set field must match (`and`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleFilter {
    /// `consumer_name = '…'`.
    pub consumer: Option<String>,
    /// `source = '…'` (the source id that wrote the bundle).
    pub source: Option<String>,
    /// `name = '…'` (the work name).
    pub name: Option<String>,
    /// A search in Maestro's search language, sent as written (e.g.
    /// `payload->'metadata'->'labels'->>'app' in ('web','api')`); the server checks it and
    /// answers HTTP 400 with the position of the first error.
    pub search: Option<String>,
}

impl BundleFilter {
    /// A filter on one consumer.
    pub fn consumer(consumer: impl Into<String>) -> Self {
        BundleFilter { consumer: Some(consumer.into()), ..Default::default() }
    }

    /// The `search` query value, or `None` when the filter is empty. A verbatim
    /// [`BundleFilter::search`] alone is sent unchanged; with other fields set it is
    /// parenthesized and joined with `and`.
    ///
    /// # Errors
    /// [`ClientError::InvalidInput`] when a field value is empty.
    pub fn to_search(&self) -> Result<Option<String>> {
        let fields = [("consumer_name", &self.consumer), ("source", &self.source), ("name", &self.name)];
        let mut terms = Vec::new();
        for (field, value) in fields {
            if let Some(v) = value {
                terms.push(term(field, v)?);
            }
        }
        let verbatim = self.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
        Ok(match (terms.is_empty(), verbatim) {
            (true, None) => None,
            (true, Some(s)) => Some(s.to_owned()),
            (false, None) => Some(terms.join(" and ")),
            (false, Some(s)) => Some(format!("{} and ({s})", terms.join(" and "))),
        })
    }
}

/// One `field = 'value'` term.
///
/// # Errors
/// [`ClientError::InvalidInput`] when the value is empty or the field is not a plain column
/// name.
pub fn term(field: &str, value: &str) -> Result<String> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(ClientError::InvalidInput(format!("invalid search field {field:?}")));
    }
    Ok(format!("{field} = {}", quote(value)?))
}

/// Quotes a search value as a string literal: `web` → `'web'`, `o'brien` → `'o''brien'` (a
/// doubled quote is a quote; every other character, backslashes included, stands for itself).
///
/// # Errors
/// [`ClientError::InvalidInput`] when the value is empty.
pub fn quote(value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(ClientError::InvalidInput("search values must not be empty".into()));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_joins_terms_in_a_stable_order() {
        assert_eq!(BundleFilter::default().to_search().ok(), Some(None));
        let f = BundleFilter {
            consumer: Some("c1".into()),
            source: Some("maestro-cli".into()),
            name: Some("web".into()),
            search: None,
        };
        assert_eq!(
            f.to_search().ok().flatten().as_deref(),
            Some("consumer_name = 'c1' and source = 'maestro-cli' and name = 'web'")
        );
        assert_eq!(
            BundleFilter::consumer("c 1").to_search().ok().flatten().as_deref(),
            Some("consumer_name = 'c 1'")
        );
    }

    #[test]
    fn escapes_quotes_and_rejects_empty_values() {
        assert_eq!(quote("o'brien").ok().as_deref(), Some("'o''brien'"));
        assert_eq!(quote("a\\b").ok().as_deref(), Some("'a\\b'"));
        assert!(quote("").is_err());
        assert_eq!(
            BundleFilter::consumer("x' or '1'='1").to_search().ok().flatten().as_deref(),
            Some("consumer_name = 'x'' or ''1''=''1'")
        );
        assert!(term("name; drop", "x").is_err());
    }

    #[test]
    fn passes_a_written_search_through() {
        let labels = "payload->'metadata'->'labels'->>'app' in ('web','api')";
        let only = BundleFilter { search: Some(labels.into()), ..Default::default() };
        assert_eq!(only.to_search().ok().flatten().as_deref(), Some(labels));
        let both = BundleFilter { search: Some(labels.into()), ..BundleFilter::consumer("c1") };
        assert_eq!(both.to_search().ok().flatten(), Some(format!("consumer_name = 'c1' and ({labels})")));
        let blank = BundleFilter { search: Some("  ".into()), ..Default::default() };
        assert_eq!(blank.to_search().ok(), Some(None));
    }
}
