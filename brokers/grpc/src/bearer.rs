//! The bearer token a gRPC agent sends (`token` or a rotated `tokenFile` of its config,
//! docs/security.md, "Bearer tokens"): read, checked and put on each subscribe and publish.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tonic::metadata::{Ascii, MetadataValue};

use crate::{BACKEND, GrpcAgentConfig};

/// The metadata key of the bearer token (`authorization: Bearer <token>`, as gRPC's OAuth
/// per-RPC credentials send it).
pub(crate) const AUTHORIZATION: &str = "authorization";

/// Why a token cannot be sent (the message never holds the token).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// Nothing but white space.
    #[error("the token is empty")]
    Empty,
    /// Characters a gRPC header value cannot carry.
    #[error("the token holds characters not allowed in a gRPC header")]
    NotAHeaderValue,
}

/// Why the configured bearer token cannot be used; names the field or file, never the token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BearerError {
    /// The `token` value.
    #[error("token: {0}")]
    Token(#[source] TokenError),
    /// The `tokenFile` cannot be read.
    #[error("cannot read tokenFile {path}: {source}")]
    ReadFile {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The token in the `tokenFile`.
    #[error("tokenFile {path}: {source}")]
    FileToken {
        /// The file.
        path: String,
        /// What is wrong with its token.
        #[source]
        source: TokenError,
    },
}

/// `Bearer <token>` as a sensitive metadata value (never indexed by HPACK). The token is
/// trimmed; the error never contains it.
fn bearer_value(token: &str) -> std::result::Result<MetadataValue<Ascii>, TokenError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    let mut value =
        MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| TokenError::NotAHeaderValue)?;
    value.set_sensitive(true);
    Ok(value)
}

/// A `tokenFile` and the token last read from it.
pub(crate) struct TokenFile {
    path: PathBuf,
    /// How long a read token is used before the file is read again.
    recheck: Duration,
    /// The current value and when the file was last read (`None`: read before the next RPC).
    cached: Mutex<(MetadataValue<Ascii>, Option<Instant>)>,
}

impl TokenFile {
    /// Reads `path` once (synchronously: at construction).
    fn open(path: &str, recheck: Duration) -> std::result::Result<TokenFile, BearerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| BearerError::ReadFile { path: path.to_owned(), source })?;
        let value =
            bearer_value(&text).map_err(|source| BearerError::FileToken { path: path.to_owned(), source })?;
        let cached = Mutex::new((value, Some(Instant::now())));
        Ok(TokenFile { path: PathBuf::from(path), recheck, cached })
    }

    fn cached(&self) -> MutexGuard<'_, (MetadataValue<Ascii>, Option<Instant>)> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current value, re-reading the file first when `force` or when the last read is
    /// older than `recheck`. A failed re-read keeps the previous token (and is logged).
    async fn current(&self, force: bool) -> MetadataValue<Ascii> {
        {
            let cached = self.cached();
            if !force && cached.1.is_some_and(|at| at.elapsed() < self.recheck) {
                return cached.0.clone();
            }
        }
        let path = || self.path.display().to_string();
        let fresh = match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => bearer_value(&text).map_err(|source| BearerError::FileToken { path: path(), source }),
            Err(source) => Err(BearerError::ReadFile { path: path(), source }),
        };
        let mut cached = self.cached();
        match fresh {
            Ok(value) if value != cached.0 => {
                tracing::info!(backend = BACKEND, path = %self.path.display(), "tokenFile changed; sending the new token");
                cached.0 = value;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(backend = BACKEND, path = %self.path.display(), %error,
                "cannot re-read tokenFile; keeping the previous token"),
        }
        cached.1 = Some(Instant::now());
        cached.0.clone()
    }

    /// Makes the next RPC re-read the file (after the server refused the token).
    fn mark_stale(&self) {
        self.cached().1 = None;
    }
}

/// The bearer token an agent sends, if any.
pub(crate) enum Bearer {
    None,
    Static(MetadataValue<Ascii>),
    File(TokenFile),
}

impl Bearer {
    /// From `token` (preferred, as sdk-go) or `tokenFile`; errors name the field, never the
    /// token.
    pub(crate) fn from_config(
        config: &GrpcAgentConfig,
        recheck: Duration,
    ) -> std::result::Result<Bearer, BearerError> {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        match (set(&config.token), set(&config.token_file)) {
            (Some(token), file) => {
                if file.is_some() {
                    tracing::warn!(
                        backend = BACKEND,
                        "both token and tokenFile are set; using token (as sdk-go)"
                    );
                }
                Ok(Bearer::Static(bearer_value(&token).map_err(BearerError::Token)?))
            }
            (None, Some(path)) => Ok(Bearer::File(TokenFile::open(&path, recheck)?)),
            (None, None) => Ok(Bearer::None),
        }
    }

    /// Adds `authorization: Bearer <token>` to `request`; `fresh` forces a re-read of a
    /// `tokenFile` (new connections).
    pub(crate) async fn authorize<T>(&self, request: &mut tonic::Request<T>, fresh: bool) {
        let value = match self {
            Bearer::None => return,
            Bearer::Static(value) => value.clone(),
            Bearer::File(file) => file.current(fresh).await,
        };
        request.metadata_mut().insert(AUTHORIZATION, value);
    }

    pub(crate) fn mark_stale(&self) {
        if let Bearer::File(file) = self {
            file.mark_stale();
        }
    }
}
