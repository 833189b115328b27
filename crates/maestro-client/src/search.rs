//! Building Maestro `search` strings (maestro-reference.md §2.2):
//! `consumer_name = 'c1' and source = 'maestro-cli' and name = 'web'`.

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
}

impl BundleFilter {
    /// A filter on one consumer.
    pub fn consumer(consumer: impl Into<String>) -> Self {
        BundleFilter { consumer: Some(consumer.into()), ..Default::default() }
    }

    /// The `search` query value, or `None` when the filter is empty.
    ///
    /// # Errors
    /// [`ClientError::InvalidInput`] when a value contains a single quote or is empty.
    pub fn to_search(&self) -> Result<Option<String>> {
        let fields = [("consumer_name", &self.consumer), ("source", &self.source), ("name", &self.name)];
        let mut terms = Vec::new();
        for (field, value) in fields {
            if let Some(v) = value {
                terms.push(term(field, v)?);
            }
        }
        Ok(if terms.is_empty() { None } else { Some(terms.join(" and ")) })
    }
}

/// One `field = 'value'` term.
///
/// # Errors
/// [`ClientError::InvalidInput`] when the value is empty or contains `'` (the Maestro search
/// language has no escape for it), or the field is not a plain column name.
pub fn term(field: &str, value: &str) -> Result<String> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(ClientError::InvalidInput(format!("invalid search field {field:?}")));
    }
    Ok(format!("{field} = {}", quote(value)?))
}

/// Quotes a search value: `web` → `'web'`.
///
/// # Errors
/// [`ClientError::InvalidInput`] when the value is empty or contains `'`.
pub fn quote(value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(ClientError::InvalidInput("search values must not be empty".into()));
    }
    if value.contains('\'') || value.contains('\\') {
        return Err(ClientError::InvalidInput(format!(
            "search value {value:?} contains a quote or backslash, which Maestro search cannot express"
        )));
    }
    Ok(format!("'{value}'"))
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
    fn rejects_quotes_and_empty_values() {
        assert!(quote("o'brien").is_err());
        assert!(quote("a\\b").is_err());
        assert!(quote("").is_err());
        assert!(BundleFilter::consumer("x' or '1'='1").to_search().is_err());
        assert!(term("name; drop", "x").is_err());
    }
}
