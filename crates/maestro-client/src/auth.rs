//! Bearer tokens sent to the Maestro server: `Authorization: Bearer <token>` on REST
//! ([`crate::RestOptions::token`]) and `authorization` metadata on gRPC
//! ([`crate::SourceClient::connect_with_token`]). This client only sends them; the server
//! decides what they are worth.

use std::fmt;
use std::path::Path;

use crate::error::{ClientError, Result};

/// A bearer token: a non-empty string of visible ASCII (a JWT, a Kubernetes service-account
/// token, …), surrounding whitespace (a file's trailing newline) removed. `Debug` never shows
/// it, and no error message of this crate contains it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// The token `token`, trimmed.
    ///
    /// # Errors
    /// [`ClientError::InvalidInput`] when it is empty or holds a character that is not
    /// visible ASCII (`!` to `~`), which cannot go in an HTTP header.
    pub fn new(token: impl AsRef<str>) -> Result<Self> {
        let token = token.as_ref().trim();
        if token.is_empty() {
            return Err(ClientError::InvalidInput("the bearer token is empty".into()));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::InvalidInput(
                "the bearer token holds characters not allowed in a header (only visible ASCII)".into(),
            ));
        }
        Ok(BearerToken(token.to_owned()))
    }

    /// The token held in the file at `path` (read once, now).
    ///
    /// # Errors
    /// [`ClientError::InvalidInput`] naming the file when it cannot be read, or when its
    /// content is not a valid token ([`BearerToken::new`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bad = |what: String| ClientError::InvalidInput(format!("token file {}: {what}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        Self::new(text).map_err(|e| match e {
            ClientError::InvalidInput(reason) => bad(reason),
            other => other,
        })
    }

    /// The header value: `Bearer <token>`.
    pub(crate) fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_trimmed_checked_and_never_shown() {
        let t = BearerToken::new("  eyJhbGciOi.abc-_~+/=  \n").unwrap();
        assert_eq!(t.header_value(), "Bearer eyJhbGciOi.abc-_~+/=");
        assert_eq!(format!("{t:?}"), "BearerToken(<redacted>)");
        assert!(BearerToken::new(" \n").unwrap_err().to_string().contains("empty"));
        let err = BearerToken::new("s3cr3t with space").unwrap_err().to_string();
        assert!(err.contains("not allowed") && !err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn token_files_are_read_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "tok-1\n").unwrap();
        assert_eq!(BearerToken::from_file(&path).unwrap(), BearerToken::new("tok-1").unwrap());
        std::fs::write(&path, "\n").unwrap();
        let err = BearerToken::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("token file") && err.contains("empty"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = BearerToken::from_file(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}
