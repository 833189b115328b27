//! [`ReloadingServerTls`]: a server config whose certificate and key follow their files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::verifier::ReloadingVerifier;
use crate::{TlsError, pem};

/// Files of one TLS server identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// PEM file with the server certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file with the CAs that sign client certificates; `None` disables client certificates.
    pub client_ca: Option<PathBuf>,
}

/// How client certificates are treated when [`ServerTlsFiles::client_ca`] is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate signed by the client CA (mutual TLS).
    Required,
    /// A client may present no certificate; one it presents must be signed by the client CA.
    Optional,
}

/// Counters of the reload task, for logs, metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReloadStats {
    /// Times the files were seen with new content and a reload was tried.
    pub attempts: u64,
    /// Reloads that swapped in a new certificate and key.
    pub reloads: u64,
    /// Reloads that failed (unreadable, unparsable or mismatched files); the old pair stayed.
    pub failures: u64,
}

/// The current certificate and key, shared by every config handed out.
#[derive(Debug)]
struct CurrentCert {
    key: RwLock<Arc<CertifiedKey>>,
}

impl CurrentCert {
    fn get(&self) -> Arc<CertifiedKey> {
        // A poisoned lock still holds a valid, fully written Arc.
        match self.key.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn set(&self, new: Arc<CertifiedKey>) {
        match self.key.write() {
            Ok(mut guard) => *guard = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

#[derive(Debug, Default)]
struct Counters {
    attempts: AtomicU64,
    reloads: AtomicU64,
    failures: AtomicU64,
}

/// A rustls [`ServerConfig`] (TLS 1.2 and 1.3, ring provider) whose certificate and key are read
/// from files and reloaded when the files change, without a restart.
///
/// A background tokio task re-reads both files every poll interval through their paths (so a
/// Kubernetes secret mount, which swaps a symlink, is followed) and compares a SHA-256 of their
/// contents with the last seen one. New contents that parse and match replace the served pair;
/// a bad new pair is logged with `tracing::warn!` and the old one stays in use. The client CA
/// file is followed the same way: a changed CA set is used for new handshakes, a bad one is
/// logged and the old set stays. Dropping this value stops the task; configs already handed out
/// keep serving the last good pair and CA set.
#[derive(Debug)]
pub struct ReloadingServerTls {
    config: Arc<ServerConfig>,
    current: Arc<CurrentCert>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl ReloadingServerTls {
    /// Reads and checks the files now, then starts polling them every `interval`.
    ///
    /// Fails if a file is unreadable, the certificate file has no certificate, the key file no
    /// private key, the key does not match the certificate, or the client CA is unusable. Must be
    /// called inside a tokio runtime.
    pub async fn start(
        files: ServerTlsFiles,
        client_auth: ClientAuth,
        interval: Duration,
    ) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = read_pair(&files)?;
        let certified = pem::certified_key(&files.cert, &cert_pem, &files.key, &key_pem)?;
        let current = Arc::new(CurrentCert { key: RwLock::new(Arc::new(certified)) });
        let verifier = match &files.client_ca {
            Some(ca) => Some(Arc::new(ReloadingVerifier::load(ca, client_auth)?)),
            None => None,
        };
        let seen_ca = match &files.client_ca {
            Some(ca) => Some(fingerprint(&pem::read(ca)?, &[])),
            None => None,
        };
        let config = build_config(verifier.clone(), Arc::clone(&current))?;
        let counters = Arc::new(Counters::default());
        let poller = Poller {
            files,
            current: Arc::clone(&current),
            counters: Arc::clone(&counters),
            seen: fingerprint(&cert_pem, &key_pem),
            last_read_error: None,
            verifier,
            seen_ca,
        };
        let task = tokio::spawn(poller.run(interval));
        Ok(Self { config: Arc::new(config), current, counters, task })
    }

    /// The config to hand to `tokio_rustls::TlsAcceptor` or tonic; it always serves the current
    /// pair. It offers no ALPN protocol.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// Like [`server_config`](Self::server_config), offering `alpn` (e.g. `h2` for gRPC,
    /// `h2` and `http/1.1` for REST), in order of preference.
    pub fn server_config_with_alpn(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// The certificate chain served right now (leaf first), DER-encoded.
    pub fn current_cert_chain(&self) -> Vec<Vec<u8>> {
        self.current.get().cert.iter().map(|c| c.to_vec()).collect()
    }

    /// What the reload task has done so far.
    pub fn stats(&self) -> ReloadStats {
        ReloadStats {
            attempts: self.counters.attempts.load(Ordering::Relaxed),
            reloads: self.counters.reloads.load(Ordering::Relaxed),
            failures: self.counters.failures.load(Ordering::Relaxed),
        }
    }
}

impl Drop for ReloadingServerTls {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn build_config(
    verifier: Option<Arc<ReloadingVerifier>>,
    resolver: Arc<CurrentCert>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(crate::provider())
        .with_protocol_versions(crate::PROTOCOL_VERSIONS)?;
    let builder = match verifier {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    Ok(builder.with_cert_resolver(resolver))
}

fn read_pair(files: &ServerTlsFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    Ok((pem::read(&files.cert)?, pem::read(&files.key)?))
}

fn fingerprint(cert_pem: &[u8], key_pem: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((cert_pem.len() as u64).to_be_bytes());
    hasher.update(cert_pem);
    hasher.update(key_pem);
    hasher.finalize().into()
}

/// The state of the reload task.
struct Poller {
    files: ServerTlsFiles,
    current: Arc<CurrentCert>,
    counters: Arc<Counters>,
    /// Fingerprint of the contents last tried (good or bad), so a bad pair is reported once.
    seen: [u8; 32],
    /// The last read error reported, so a missing file is reported once.
    last_read_error: Option<String>,
    /// The client CA set, when client certificates are verified.
    verifier: Option<Arc<ReloadingVerifier>>,
    /// Fingerprint of the client CA file last tried.
    seen_ca: Option<[u8; 32]>,
}

impl Poller {
    async fn run(mut self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; the files were just read
        loop {
            ticker.tick().await;
            let files = self.files.clone();
            match tokio::task::spawn_blocking(move || read_pair(&files)).await {
                Ok(Ok((cert_pem, key_pem))) => {
                    self.last_read_error = None;
                    self.check(&cert_pem, &key_pem);
                }
                Ok(Err(e)) => self.read_failed(&e),
                Err(e) => tracing::warn!(error = %e, "TLS file poll task failed"),
            }
            self.check_ca().await;
        }
    }

    /// Re-reads the client CA file and swaps in a changed CA set that loads.
    async fn check_ca(&mut self) {
        let Some(verifier) = self.verifier.clone() else { return };
        let path = verifier.path().to_owned();
        let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || pem::read(&path)).await else {
            return; // a missing CA file keeps the current set; the pair's read errors are logged
        };
        let print = fingerprint(&bytes, &[]);
        if self.seen_ca == Some(print) {
            return;
        }
        self.seen_ca = Some(print);
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        match verifier.reload() {
            Ok(()) => {
                self.counters.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(ca = %verifier.path().display(), "reloaded the client CA");
            }
            Err(e) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "new client CA rejected; keeping the current one");
            }
        }
    }

    fn read_failed(&mut self, err: &TlsError) {
        let text = err.to_string();
        if self.last_read_error.as_deref() != Some(text.as_str()) {
            tracing::warn!(error = %text, "cannot re-read TLS files; keeping the current certificate");
            self.last_read_error = Some(text);
        }
    }

    fn check(&mut self, cert_pem: &[u8], key_pem: &[u8]) {
        let print = fingerprint(cert_pem, key_pem);
        if print == self.seen {
            return;
        }
        self.seen = print;
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        match pem::certified_key(&self.files.cert, cert_pem, &self.files.key, key_pem) {
            Ok(certified) => {
                self.current.set(Arc::new(certified));
                self.counters.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cert = %self.files.cert.display(), "reloaded TLS certificate");
            }
            Err(e) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = %e,
                    "new TLS certificate/key rejected; keeping the current certificate"
                );
            }
        }
    }
}
