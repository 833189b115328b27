//! [`AuthError`].

use std::path::PathBuf;

/// Why a caller could not be authenticated, or a policy or key set could not be loaded.
///
/// The `Display` text may name files and claims; it is for logs and start errors, never for a
/// caller (listeners answer a generic "unauthenticated" / "permission denied").
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A setting is wrong (flag values, a missing file name).
    #[error("{0}")]
    Config(String),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A policy file does not parse or breaks a rule.
    #[error("{}: {detail}", path.display())]
    Policy {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line where the parser knows it.
        detail: String,
    },
    /// A JWKS document could not be fetched or holds no usable key.
    #[error("JWKS {location}: {detail}")]
    Jwks {
        /// The file path or URL.
        location: String,
        /// What went wrong.
        detail: String,
    },
    /// The caller presented no credential.
    #[error("no credentials")]
    MissingCredentials,
    /// The caller's credential was refused (bad signature, expired, wrong audience, ...).
    #[error("invalid credentials: {0}")]
    InvalidCredentials(String),
    /// The Kubernetes API could not review a credential or an access (unreachable, no answer
    /// within the request timeout, an error status such as 500 or a refusal of the reviewer's
    /// own credentials, an answer without a status): not the caller's fault, and never cached
    /// (docs/security.md, "Kubernetes reviews").
    #[error("Kubernetes API unavailable: {0}")]
    Unavailable(String),
}
