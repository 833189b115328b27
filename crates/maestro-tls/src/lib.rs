//! TLS building blocks for Maestro's listeners and clients.
//!
//! Maestro terminates TLS on its REST listener, its source gRPC listener and its agent broker,
//! with Go Maestro's flags (`--https-cert-file`/`--https-key-file`,
//! `--grpc-tls-cert-file`/`--grpc-tls-key-file` plus `--grpc-client-ca-file`, ...). This crate is
//! the one piece they share:
//!
//! - [`ReloadingServerTls`]: a rustls [`ServerConfig`](rustls::ServerConfig) (TLS 1.2 and 1.3,
//!   ring provider) whose certificate and key are read from PEM files and reloaded when the files
//!   change (certificate rotation without a restart), optionally verifying client certificates
//!   against a CA (mutual TLS, [`ClientAuth`]);
//! - [`client_config`]: a rustls [`ClientConfig`](rustls::ClientConfig) trusting a CA file and
//!   optionally presenting a client certificate;
//! - [`peer_identity`]: the user (subject CN) and groups (subject O values) of a verified client
//!   certificate, as Go Maestro reads them.
//!
//! The threat model (who may present which certificate, what a listener trusts) is described in
//! `docs/security.md`.
//!
//! With the `test-support` feature, [`testing`] generates throw-away PKIs for tests.

mod accept;
mod client;
mod error;
#[cfg(feature = "grpc")]
pub mod grpc_listener;
mod identity;
mod pem;
mod server;
#[cfg(feature = "test-support")]
pub mod testing;
mod verifier;

pub use accept::{HANDSHAKE_TIMEOUT, RELOAD_INTERVAL, handshake};
pub use client::client_config;
pub use error::TlsError;
pub use identity::{PeerIdentity, peer_identity};
pub use server::{ClientAuth, ReloadStats, ReloadingServerTls, ServerTlsFiles};

use std::sync::Arc;

/// The crypto provider every config of this crate uses: rustls' ring provider.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs rustls' ring provider as the process-wide default crypto provider, unless one is
/// installed already (then that one stays).
///
/// HTTP clients (reqwest, the Google Cloud clients) are built without a bundled provider and
/// take the process default; reqwest panics when building a client with none installed. Call
/// this before building one. Idempotent and cheap.
pub fn install_process_provider() {
    // An error means a provider is installed already, which is what is wanted.
    let _already = rustls::crypto::ring::default_provider().install_default();
}

/// The protocol versions every config of this crate offers: TLS 1.3 and TLS 1.2.
pub(crate) const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
