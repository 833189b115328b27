//! The errors of this crate; each names the file it is about.

use std::path::PathBuf;

/// Why a TLS file, config or certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{}: invalid PEM: {detail}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser reported.
        detail: String,
    },
    /// A certificate file holds no `CERTIFICATE` block.
    #[error("{}: no certificate found in PEM file", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key block.
    #[error("{}: no private key found in PEM file", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A private key is of a kind the ring provider cannot use.
    #[error("{}: unsupported private key: {source}", path.display())]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// The private key does not belong to the certificate.
    #[error("private key {} does not match certificate {}: {source}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// A CA file could not be turned into a set of trust anchors.
    #[error("{}: invalid CA certificates: {detail}", path.display())]
    Ca {
        /// The CA file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// rustls refused to build a config.
    #[error("cannot build TLS config: {0}")]
    Config(#[from] rustls::Error),
    /// A peer certificate could not be parsed or carries no usable identity.
    #[error("invalid peer certificate: {0}")]
    PeerCertificate(String),
}
