//! [`SearchError`]: what went wrong, and where.

/// A syntax or semantic error in a `search` or `orderBy` string.
///
/// `Display` is `at position {position}: {message}`, e.g.
/// `at position 5: expected a value (a 'quoted string', a number or NULL), found the end of the
/// input`. The message says what was expected and what was found; semantic errors (unknown
/// field, wrongly typed value, bad timestamp, `@>` on something that is not a JSON object) point
/// at the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct SearchError {
    /// 0-based byte offset into the input.
    pub position: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl SearchError {
    /// An error at `position`.
    pub fn new(position: usize, message: impl Into<String>) -> Self {
        SearchError { position, message: message.into() }
    }
}
