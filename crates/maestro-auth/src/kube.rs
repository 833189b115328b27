//! Authentication and authorization by the Kubernetes API, as Go Maestro does with
//! `--grpc-authn-type token` (docs/security.md, "Kubernetes reviews").
//!
//! - A bearer token is sent to the API server as a `TokenReview` (`authentication.k8s.io/v1`);
//!   the user name and groups it answers become the caller's [`Identity`].
//! - Whether an identity may act as a source is asked with a `SubjectAccessReview`
//!   (`authorization.k8s.io/v1`) whose `nonResourceAttributes` are
//!   `{path: "/sources/<source>", verb: "pub" | "sub"}`. Operators grant it with a ClusterRole:
//!
//! ```yaml
//! rules:
//!   - nonResourceURLs: ["/sources/hyperfleet"]
//!     verbs: ["pub", "sub"]
//! ```
//!
//! Answers are cached, as the API server's own webhook authenticator and authorizer do, so a
//! busy source does not cost one API call per request: token reviews by the SHA-256 of the
//! token (the token itself is never kept, nor logged) for 2 minutes when authenticated and
//! 10 seconds when refused; access reviews by (user, groups, source, verb) for 5 minutes when
//! allowed and 30 seconds when denied. Failures to reach the API are never cached. Each cache
//! holds at most 10,000 entries. Every API request times out after 10 seconds.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::kube::api::{Api, PostParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use ::kube::{Client, Config};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use sha2::{Digest, Sha256};

use crate::policy::SourceVerb;
use crate::{AuthError, Identity};

/// How long an authenticated token review is reused.
const TOKEN_AUTHENTICATED_TTL: Duration = Duration::from_secs(120);
/// How long a refused token review is reused.
const TOKEN_REFUSED_TTL: Duration = Duration::from_secs(10);
/// How long an allowed access review is reused.
const ACCESS_ALLOWED_TTL: Duration = Duration::from_secs(300);
/// How long a denied access review is reused.
const ACCESS_DENIED_TTL: Duration = Duration::from_secs(30);
/// The most entries each cache holds.
const CACHE_CAPACITY: usize = 10_000;
/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Cache lifetimes, cache size and request timeout of a [`KubeReviewer`]. For tests: the
/// defaults are the documented values (2 min / 10 s for tokens, 5 min / 30 s for access
/// decisions, 10,000 entries per cache, 10 s per request).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewTimings {
    /// How long an authenticated token review is reused.
    pub token_authenticated_ttl: Duration,
    /// How long a refused token review is reused.
    pub token_refused_ttl: Duration,
    /// How long an allowed access review is reused.
    pub access_allowed_ttl: Duration,
    /// How long a denied access review is reused.
    pub access_denied_ttl: Duration,
    /// The most entries each cache holds (at least 1).
    pub cache_capacity: usize,
    /// How long one API request may take.
    pub request_timeout: Duration,
}

impl Default for ReviewTimings {
    fn default() -> ReviewTimings {
        ReviewTimings {
            token_authenticated_ttl: TOKEN_AUTHENTICATED_TTL,
            token_refused_ttl: TOKEN_REFUSED_TTL,
            access_allowed_ttl: ACCESS_ALLOWED_TTL,
            access_denied_ttl: ACCESS_DENIED_TTL,
            cache_capacity: CACHE_CAPACITY,
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

/// Reviews bearer tokens and source access with the Kubernetes API (docs/security.md,
/// "Kubernetes reviews"), caching the answers.
///
/// Cheap to clone: clones share the client and the caches.
#[derive(Clone)]
pub struct KubeReviewer {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// The API server's URL when known (built from a configuration), for error messages.
    cluster_url: Option<String>,
    timings: ReviewTimings,
    /// Token reviews: `Ok` identity or the refusal text.
    tokens: TtlCache<TokenKey, Result<Identity, String>>,
    /// Access reviews: allowed or not.
    access: TtlCache<AccessKey, bool>,
}

/// A token review's cache key: the token's SHA-256 (never the token) and the audiences asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    token_sha256: [u8; 32],
    audiences: Vec<String>,
}

/// An access review's cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AccessKey {
    user: String,
    groups: Vec<String>,
    source: String,
    verb: &'static str,
}

impl fmt::Debug for KubeReviewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeReviewer")
            .field("cluster_url", &self.inner.cluster_url)
            .field("timings", &self.inner.timings)
            .finish_non_exhaustive()
    }
}

impl KubeReviewer {
    /// A reviewer talking to the API server of the kubeconfig file at `path`
    /// (`--grpc-authorizer-config`, its current context), or when `None`, of the inferred
    /// configuration: `$KUBECONFIG` or `~/.kube/config` if present, else the in-cluster service
    /// account (`KUBERNETES_SERVICE_HOST`, `/var/run/secrets/kubernetes.io/serviceaccount`).
    ///
    /// Nothing is sent to the API server yet. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// [`AuthError::Read`] naming `path` when the kubeconfig file cannot be read;
    /// [`AuthError::Config`] when it does not parse or names no usable cluster, when no
    /// configuration can be inferred, or when the client cannot be built (bad CA certificate,
    /// for example).
    pub async fn from_kubeconfig(path: Option<&Path>) -> Result<KubeReviewer, AuthError> {
        let config = match path {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| match e {
                    KubeconfigError::ReadConfig(source, _) => {
                        AuthError::Read { path: path.to_owned(), source }
                    }
                    other => AuthError::Config(format!("kubeconfig {}: {other}", path.display())),
                })?;
                Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| AuthError::Config(format!("kubeconfig {}: {e}", path.display())))?
            }
            None => Config::infer().await.map_err(|e| {
                AuthError::Config(format!(
                    "no Kubernetes configuration (neither a kubeconfig nor in-cluster): {e}"
                ))
            })?,
        };
        let cluster_url = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|e| {
            AuthError::Config(format!("cannot build a Kubernetes client for {cluster_url}: {}", chain(&e)))
        })?;
        Ok(KubeReviewer::build(client, Some(cluster_url), ReviewTimings::default()))
    }

    /// A reviewer using `client`, with the documented cache lifetimes and request timeout.
    pub fn from_client(client: Client) -> KubeReviewer {
        KubeReviewer::with_timings(client, ReviewTimings::default())
    }

    /// A reviewer using `client` with other cache lifetimes, cache size or request timeout. For
    /// tests.
    #[doc(hidden)]
    pub fn with_timings(client: Client, timings: ReviewTimings) -> KubeReviewer {
        KubeReviewer::build(client, None, timings)
    }

    fn build(client: Client, cluster_url: Option<String>, timings: ReviewTimings) -> KubeReviewer {
        let capacity = timings.cache_capacity.max(1);
        KubeReviewer {
            inner: Arc::new(Inner {
                client,
                cluster_url,
                timings,
                tokens: TtlCache::new(capacity),
                access: TtlCache::new(capacity),
            }),
        }
    }

    /// Authenticates a bearer token with a `TokenReview` (`authentication.k8s.io/v1`,
    /// `POST /apis/authentication.k8s.io/v1/tokenreviews`); `audiences`, when not empty, go in
    /// `spec.audiences` and the API server must answer at least one of them in
    /// `status.audiences`. Returns `status.user.username` and `status.user.groups`.
    ///
    /// Answers are cached by the token's SHA-256 and the audiences: 2 minutes when
    /// authenticated, 10 seconds when refused. The token is never logged.
    ///
    /// # Errors
    /// - [`AuthError::MissingCredentials`] for an empty token (no request is made);
    /// - [`AuthError::InvalidCredentials`] when the API server refuses the token
    ///   (`status.authenticated` false; the text is `status.error`), answers no user name, or
    ///   none of `audiences`;
    /// - [`AuthError::Unavailable`] when the API cannot be reached, does not answer within
    ///   10 seconds, answers an error status or no `status` (not cached: the next call asks
    ///   again).
    pub async fn review_token(&self, token: &str, audiences: &[String]) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::MissingCredentials);
        }
        let key =
            TokenKey { token_sha256: Sha256::digest(token.as_bytes()).into(), audiences: audiences.to_vec() };
        if let Some(cached) = self.inner.tokens.get(&key) {
            return cached.map_err(AuthError::InvalidCredentials);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: (!audiences.is_empty()).then(|| audiences.to_vec()),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.inner.client.clone());
        let answer = self.request("TokenReview", api.create(&PostParams::default(), &review)).await?;
        let status = answer
            .status
            .ok_or_else(|| AuthError::Unavailable("the TokenReview answer has no status".to_owned()))?;
        let outcome = token_outcome(status, audiences);
        let t = &self.inner.timings;
        let ttl = if outcome.is_ok() { t.token_authenticated_ttl } else { t.token_refused_ttl };
        match &outcome {
            Ok(id) => tracing::debug!(identity = %id, "TokenReview authenticated"),
            Err(why) => tracing::debug!(reason = %why, "TokenReview refused the token"),
        }
        self.inner.tokens.insert(key, outcome.clone(), ttl);
        outcome.map_err(AuthError::InvalidCredentials)
    }

    /// Whether `id` may act as `source` for `verb`, by a `SubjectAccessReview`
    /// (`authorization.k8s.io/v1`, `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`)
    /// with `spec.user`, `spec.groups` and `spec.nonResourceAttributes`
    /// `{path: "/sources/<source>", verb: "pub" | "sub"}`. Returns `status.allowed`.
    ///
    /// Answers are cached by (user, groups, source, verb): 5 minutes when allowed, 30 seconds
    /// when denied.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when the API cannot be reached, does not answer within
    /// 10 seconds, answers an error status or no `status` (not cached).
    pub async fn may_act_as_source(
        &self,
        id: &Identity,
        source: &str,
        verb: SourceVerb,
    ) -> Result<bool, AuthError> {
        let verb = verb_str(verb);
        let key =
            AccessKey { user: id.user.clone(), groups: id.groups.clone(), source: source.to_owned(), verb };
        if let Some(allowed) = self.inner.access.get(&key) {
            return Ok(allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(id.user.clone()),
                groups: (!id.groups.is_empty()).then(|| id.groups.clone()),
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(format!("/sources/{source}")),
                    verb: Some(verb.to_owned()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.inner.client.clone());
        let answer = self.request("SubjectAccessReview", api.create(&PostParams::default(), &review)).await?;
        let status = answer.status.ok_or_else(|| {
            AuthError::Unavailable("the SubjectAccessReview answer has no status".to_owned())
        })?;
        tracing::debug!(
            identity = %id, source, verb, allowed = status.allowed,
            reason = status.reason.as_deref().unwrap_or(""),
            evaluation_error = status.evaluation_error.as_deref().unwrap_or(""),
            "SubjectAccessReview answered"
        );
        let t = &self.inner.timings;
        let ttl = if status.allowed { t.access_allowed_ttl } else { t.access_denied_ttl };
        self.inner.access.insert(key, status.allowed, ttl);
        Ok(status.allowed)
    }

    /// Runs one API request with the request timeout, mapping every failure to
    /// [`AuthError::Unavailable`].
    async fn request<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, ::kube::Error>>,
    ) -> Result<T, AuthError> {
        let timeout = self.inner.timings.request_timeout;
        let what = match &self.inner.cluster_url {
            Some(url) => format!("{what} at {url}"),
            None => what.to_owned(),
        };
        let result = tokio::time::timeout(timeout, call).await.map_err(|_elapsed| {
            AuthError::Unavailable(format!("{what}: no answer within {} ms", timeout.as_millis()))
        })?;
        result.map_err(|e| {
            let detail = match e {
                ::kube::Error::Api(status) => {
                    let reason =
                        if status.reason.is_empty() { String::new() } else { format!(" {}", status.reason) };
                    format!("{what}: the API server answered {}{reason}: {}", status.code, status.message)
                }
                other => format!("{what}: {}", chain(&other)),
            };
            tracing::debug!(error = %detail, "Kubernetes review failed");
            AuthError::Unavailable(detail)
        })
    }
}

/// `e` and its sources, `: `-separated (kube's transport errors say little on their own:
/// "client error (Connect)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// The SubjectAccessReview verb of `verb`: `pub` or `sub`.
fn verb_str(verb: SourceVerb) -> &'static str {
    match verb {
        SourceVerb::Pub => "pub",
        SourceVerb::Sub => "sub",
    }
}

/// A TokenReview status as an identity, or why the token is refused.
fn token_outcome(
    status: k8s_openapi::api::authentication::v1::TokenReviewStatus,
    audiences: &[String],
) -> Result<Identity, String> {
    if status.authenticated != Some(true) {
        return Err(match status.error {
            Some(e) if !e.is_empty() => e,
            _ => "the Kubernetes API did not authenticate the token".to_owned(),
        });
    }
    if !audiences.is_empty() {
        let answered = status.audiences.unwrap_or_default();
        if !answered.iter().any(|a| audiences.contains(a)) {
            return Err(format!("the token's audiences {answered:?} include none of {audiences:?}"));
        }
    }
    let user = status.user.unwrap_or_default();
    match user.username {
        Some(name) if !name.is_empty() => {
            Ok(Identity { user: name, groups: user.groups.unwrap_or_default() })
        }
        _ => Err("the Kubernetes API authenticated the token but named no user".to_owned()),
    }
}

/// A bounded map whose entries expire. When full, an insert drops the expired entries, then if
/// still full the entry that expires first.
struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    fn new(capacity: usize) -> TtlCache<K, V> {
        TtlCache { entries: Mutex::new(HashMap::new()), capacity }
    }

    /// The unexpired value of `key`; an expired entry is removed.
    fn get(&self, key: &K) -> Option<V> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key) {
            Some((expires, value)) if Instant::now() < *expires => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (expires, _)| now < *expires);
            while entries.len() >= self.capacity {
                let soonest = entries.iter().min_by_key(|(_, (expires, _))| *expires).map(|(k, _)| k.clone());
                match soonest {
                    Some(k) => entries.remove(&k),
                    None => break,
                };
            }
        }
        entries.insert(key, (now + ttl, value));
    }
}
