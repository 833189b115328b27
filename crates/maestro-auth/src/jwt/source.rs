//! Reading the JWKS document (file or URL) and the background refresh task.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::MissedTickBehavior;

use super::keys::KeySet;
use super::{Inner, JwksSource};
use crate::AuthError;

/// How long one fetch of a JWKS URL may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest JWKS document accepted from a URL.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Where the document is read from.
enum Origin {
    File(PathBuf),
    Url { url: String, http: reqwest::Client },
}

/// Reads and parses the JWKS document, remembering the last one read.
pub(super) struct Loader {
    origin: Origin,
    /// The file path or URL, for messages.
    location: String,
    /// The last document read (parsed or not), to skip unchanged ones.
    last: Vec<u8>,
}

impl Loader {
    /// Reads and parses the document for the first time.
    ///
    /// # Errors
    /// [`AuthError::Read`] for an unreadable file; [`AuthError::Jwks`] for a bad URL, a failed
    /// fetch, or a document that is not a JWKS with a usable key.
    pub(super) async fn initial(source: &JwksSource) -> Result<(Loader, KeySet), AuthError> {
        let origin = match source {
            JwksSource::File(path) => Origin::File(path.clone()),
            JwksSource::Url(url) => Origin::Url { url: url.clone(), http: http_client(url)? },
        };
        let mut loader = Loader { origin, location: source.to_string(), last: Vec::new() };
        let bytes = loader.read().await?;
        let keys = loader.parse(&bytes)?;
        loader.last = bytes;
        Ok((loader, keys))
    }

    /// Reads the document again: the new keys, or `None` when it did not change.
    ///
    /// # Errors
    /// As [`Loader::initial`]. A bad document is reported once, not at every refresh.
    pub(super) async fn reload(&mut self) -> Result<Option<KeySet>, AuthError> {
        let bytes = self.read().await?;
        if bytes == self.last {
            return Ok(None);
        }
        self.last = bytes;
        self.parse(&self.last).map(Some)
    }

    fn parse(&self, bytes: &[u8]) -> Result<KeySet, AuthError> {
        KeySet::parse(bytes, &self.location)
            .map_err(|detail| AuthError::Jwks { location: self.location.clone(), detail })
    }

    async fn read(&self) -> Result<Vec<u8>, AuthError> {
        match &self.origin {
            Origin::File(path) => {
                tokio::fs::read(path).await.map_err(|source| AuthError::Read { path: path.clone(), source })
            }
            Origin::Url { url, http } => {
                fetch(http, url).await.map_err(|detail| AuthError::Jwks { location: url.clone(), detail })
            }
        }
    }
}

/// The HTTP client for a JWKS URL (`https`, or `http` with a warning unless on loopback).
fn http_client(url: &str) -> Result<reqwest::Client, AuthError> {
    let error = |detail: String| AuthError::Jwks { location: url.to_owned(), detail };
    let parsed = reqwest::Url::parse(url).map_err(|e| error(format!("not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(parsed.host_str().unwrap_or_default()) => {}
        "http" => tracing::warn!(jwks = url, "the JWKS URL is plain http: the keys can be forged in transit"),
        other => return Err(error(format!("unsupported URL scheme {other:?} (expected https)"))),
    }
    maestro_tls::install_process_provider();
    reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| error(format!("cannot build an HTTP client: {}", error_chain(&e))))
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// GETs a JWKS URL: a success status and at most [`MAX_JWKS_BYTES`] bytes.
async fn fetch(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json, application/jwk-set+json")
        .send()
        .await
        .map_err(|e| format!("cannot fetch: {}", error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP status {status}"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("cannot read: {}", error_chain(&e)))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("document larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// The background task keeping a verifier's keys fresh. It holds only a [`Weak`] to the
/// verifier and ends when the verifier's last clone drops (`closed` resolves).
pub(super) struct RefreshTask {
    pub(super) inner: Weak<Inner>,
    pub(super) loader: Loader,
    /// Woken for an early refresh (unknown `kid`).
    pub(super) wake: Arc<Notify>,
    /// Resolves when the verifier is gone.
    pub(super) closed: oneshot::Receiver<()>,
    /// The regular refresh interval.
    pub(super) every: Duration,
}

impl RefreshTask {
    /// Refreshes every `every` and whenever woken, until the verifier is dropped. A failed
    /// refresh is logged at `warn`; the current keys stay in use.
    pub(super) async fn run(mut self) {
        let start = tokio::time::Instant::now() + self.every;
        let mut tick = tokio::time::interval_at(start, self.every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut self.closed => return,
                _ = tick.tick() => {}
                () = self.wake.notified() => {}
            }
            let result = self.loader.reload().await;
            let Some(inner) = self.inner.upgrade() else { return };
            match result {
                Ok(Some(keys)) => inner.install(keys),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot refresh the JWT key set; keeping the current keys");
                }
            }
        }
    }
}
