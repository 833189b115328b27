//! Reading PEM files into rustls types, with errors naming the file.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::TlsError;

/// Reads a whole file, naming it in the error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

fn pem_error(path: &Path, err: &pem::Error) -> TlsError {
    TlsError::Pem { path: path.to_path_buf(), detail: err.to_string() }
}

/// Parses every certificate of a PEM buffer; at least one is required.
pub(crate) fn parse_certs(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM buffer.
pub(crate) fn parse_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsError::NoPrivateKey { path: path.to_path_buf() }),
        Err(e) => Err(pem_error(path, &e)),
    }
}

/// Builds a checked [`CertifiedKey`] from the bytes of a certificate file and a key file.
pub(crate) fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let certs = parse_certs(cert_path, cert_pem)?;
    let key = parse_key(key_path, key_pem)?;
    let signing_key = crate::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::UnsupportedKey { path: key_path.to_path_buf(), source })?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(|source| TlsError::KeyMismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        source,
    })?;
    Ok(certified)
}

/// Reads a certificate file and a key file into a checked [`CertifiedKey`].
pub(crate) fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    certified_key(cert_path, &cert_pem, key_path, &key_pem)
}

/// Reads a CA bundle into a root store; every certificate must be a usable trust anchor.
pub(crate) fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let bytes = read(path)?;
    let certs = parse_certs(path, &bytes)?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| TlsError::Ca { path: path.to_path_buf(), detail: e.to_string() })?;
    }
    Ok(Arc::new(roots))
}
