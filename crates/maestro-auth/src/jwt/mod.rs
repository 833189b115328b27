//! Bearer tokens checked as JWTs against a JSON Web Key Set (docs/security.md, "Bearer tokens").
//!
//! [`JwtVerifier::start`] reads a JWKS (RFC 7517) from a file or an `https://` URL and keeps it
//! fresh in the background; [`JwtVerifier::verify`] checks a compact JWS (RFC 7515/7519) against
//! the cached keys and turns its claims into an [`Identity`]. The rules:
//!
//! - algorithms: RS256, RS384, RS512, PS256, ES256 (P-256) and ES384 (P-384) only. `none`, HMAC
//!   (`HS*`) and everything else are refused; `kty: oct` keys in the set are ignored, so a public
//!   key can never be used as an HMAC secret;
//! - the key is picked by the header's `kid`; a token without `kid` is accepted only when
//!   exactly one key of the set accepts its algorithm;
//! - `exp` is required, `nbf` is checked when present (both with [`JwtConfig::leeway`]), `iss`
//!   and `aud` when [`JwtConfig::issuer`] / [`JwtConfig::audiences`] are set;
//! - the user is the string claim [`JwtConfig::user_claim`] (default `sub`), the groups the
//!   string-array claim [`JwtConfig::groups_claim`] (default `groups`, absent means none);
//! - a token naming an unknown `kid` asks for an early key-set refresh (at most one per 30 s, or
//!   per [`JwtConfig::refresh`] when shorter); the token itself is refused.
//!
//! A refused token yields [`AuthError::InvalidCredentials`] whose detail says why (expired, wrong
//! audience, bad signature, ...). It is meant for server logs, never for the caller; tokens are
//! never logged.

mod keys;
mod source;
mod token;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use crate::{AuthError, Identity};
use keys::{KeySet, Selected};
use source::Loader;

/// The shortest interval between two refreshes triggered by unknown key ids (docs/security.md):
/// an attacker sending made-up `kid`s cannot make the server hammer the JWKS URL.
const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The shortest accepted [`JwtConfig::refresh`]; shorter values are raised to it.
const MIN_REFRESH: Duration = Duration::from_millis(50);

/// Where the verification keys come from: a JWKS document (`{"keys": [...]}`, RFC 7517).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file (e.g. a mounted Kubernetes secret), re-read when its content changes.
    File(PathBuf),
    /// An `https://` URL (an identity provider's `jwks_uri`), fetched with a 10 s timeout and a
    /// 1 MiB size limit. `http://` works too, but is only sensible on loopback (a warning is
    /// logged otherwise).
    Url(String),
}

impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksSource::File(path) => write!(f, "{}", path.display()),
            JwksSource::Url(url) => f.write_str(url),
        }
    }
}

/// How bearer tokens are checked (docs/security.md, "Bearer tokens"). Build it with
/// [`JwtConfig::new`], then change the fields that differ from the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Where the key set is read from.
    pub jwks: JwksSource,
    /// When set, the `iss` claim is required and must be exactly this string. Default: unset.
    pub issuer: Option<String>,
    /// When non-empty, the `aud` claim is required and must contain (or be) one of these.
    /// Default: empty (`aud` is not checked).
    pub audiences: Vec<String>,
    /// The claim holding the user name: a non-empty string, else the token is refused.
    /// Default `sub`.
    pub user_claim: String,
    /// The claim holding the groups: an array of strings, or absent / `null` for no group;
    /// anything else refuses the token. Default `groups`.
    pub groups_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, in whole seconds (sub-second parts are dropped).
    /// Default 30 s.
    pub leeway: Duration,
    /// How often the key set is refreshed: a URL is re-fetched, a file is re-read and its keys
    /// replaced when its content changed. Default 5 min for a URL, 5 s for a file; values under
    /// 50 ms are raised to 50 ms.
    pub refresh: Duration,
}

impl JwtConfig {
    /// The defaults for `jwks`: no issuer or audience check, user from `sub`, groups from
    /// `groups`, 30 s leeway, refresh every 5 min (URL) or 5 s (file).
    pub fn new(jwks: JwksSource) -> JwtConfig {
        let refresh = match jwks {
            JwksSource::File(_) => Duration::from_secs(5),
            JwksSource::Url(_) => Duration::from_secs(300),
        };
        JwtConfig {
            jwks,
            issuer: None,
            audiences: Vec::new(),
            user_claim: "sub".to_owned(),
            groups_claim: "groups".to_owned(),
            leeway: Duration::from_secs(30),
            refresh,
        }
    }
}

/// Checks bearer tokens against a key set kept fresh in the background (docs/security.md,
/// "Bearer tokens"). Cheap to clone: clones share the keys; the refresh task ends when the last
/// clone is dropped.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

/// What the clones of a [`JwtVerifier`] share.
struct Inner {
    config: JwtConfig,
    keys: RwLock<Arc<KeySet>>,
    /// Wakes the refresh task early (unknown `kid`).
    wake: Arc<Notify>,
    /// When an unknown `kid` last woke the refresh task.
    last_wake: Mutex<Option<Instant>>,
    /// Dropped with the last clone: ends the refresh task.
    _alive: oneshot::Sender<()>,
}

impl JwtVerifier {
    /// Loads the key set once, then keeps it fresh with a background tokio task (every
    /// [`JwtConfig::refresh`]; a failed refresh is logged at `warn` and the current keys stay).
    /// The task ends when the last clone of the verifier is dropped. Must be called within a
    /// tokio runtime.
    ///
    /// # Errors
    /// [`AuthError::Read`] when the JWKS file cannot be read; [`AuthError::Jwks`] (naming the
    /// file or URL) when the URL cannot be fetched, the document is not a JWKS, or it holds no
    /// usable key (RSA, or EC on P-256/P-384, for an accepted algorithm).
    pub async fn start(config: JwtConfig) -> Result<JwtVerifier, AuthError> {
        token::ensure_crypto_provider();
        let mut config = config;
        config.refresh = config.refresh.max(MIN_REFRESH);
        let (loader, keys) = Loader::initial(&config.jwks).await?;
        tracing::info!(jwks = %config.jwks, keys = keys.len(), "loaded JWT key set");
        let wake = Arc::new(Notify::new());
        let (alive, closed) = oneshot::channel();
        let every = config.refresh;
        let inner = Arc::new(Inner {
            config,
            keys: RwLock::new(Arc::new(keys)),
            wake: Arc::clone(&wake),
            last_wake: Mutex::new(None),
            _alive: alive,
        });
        let task = source::RefreshTask { inner: Arc::downgrade(&inner), loader, wake, closed, every };
        tokio::spawn(task.run());
        Ok(JwtVerifier { inner })
    }

    /// Verifies a compact JWT (`header.payload.signature`, without the `Bearer ` prefix) against
    /// the cached keys, and returns the caller's [`Identity`]. Synchronous: it never waits for
    /// the network.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] with the reason: malformed token, unsupported algorithm,
    /// unknown key id (which also schedules a rate-limited key refresh), bad signature, expired,
    /// not yet valid, wrong issuer, wrong audience, missing `exp`, missing or empty user claim,
    /// malformed groups claim.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = token::peek_header(token)?;
        let keys = self.current_keys();
        let key = match keys.select(header.kid.as_deref(), header.alg) {
            Selected::Key(key) => key,
            Selected::UnknownKid => {
                self.request_refresh();
                return Err(token::refused(format!(
                    "unknown key id {}",
                    token::quote(header.kid.as_deref().unwrap_or_default())
                )));
            }
            Selected::Refused(detail) => return Err(token::refused(detail)),
        };
        let claims = token::decode(token, key, header.alg, &self.inner.config)?;
        token::identity(&claims, &self.inner.config)
    }

    /// Verifies an `Authorization` header (or gRPC `authorization` metadata) value of the form
    /// `Bearer <jwt>`, the scheme matched case-insensitively, with [`JwtVerifier::verify`].
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] for another scheme (`Basic …`), an empty token, or a
    /// token [`JwtVerifier::verify`] refuses. The header value is never part of the detail.
    pub fn verify_bearer(&self, header_value: &str) -> Result<Identity, AuthError> {
        let value = header_value.trim();
        let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(token::refused("authorization scheme is not Bearer".to_owned()));
        }
        let jwt = rest.trim();
        if jwt.is_empty() {
            return Err(token::refused("empty bearer token".to_owned()));
        }
        self.verify(jwt)
    }

    /// The key set in use.
    fn current_keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.inner.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Wakes the refresh task, unless an unknown `kid` already did within
    /// [`UNKNOWN_KID_REFRESH_INTERVAL`] (or [`JwtConfig::refresh`] when shorter).
    fn request_refresh(&self) {
        let min_gap = UNKNOWN_KID_REFRESH_INTERVAL.min(self.inner.config.refresh);
        let mut last = self.inner.last_wake.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < min_gap) {
            return;
        }
        *last = Some(now);
        tracing::debug!(jwks = %self.inner.config.jwks, "unknown key id: refreshing the JWT key set");
        self.inner.wake.notify_one();
    }
}

impl Inner {
    /// Replaces the key set.
    fn install(&self, keys: KeySet) {
        tracing::info!(jwks = %self.config.jwks, keys = keys.len(), "reloaded JWT key set");
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("jwks", &self.inner.config.jwks)
            .field("keys", &self.current_keys().len())
            .finish_non_exhaustive()
    }
}
