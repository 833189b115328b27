//! [`ReloadingVerifier`]: a client certificate verifier whose CA set follows its file, so a
//! rotated client CA (a new CA added next to the old one, then the old one removed) takes effect
//! without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::{ClientAuth, TlsError, pem};

/// Verifies client certificates against the CAs last read from a file.
///
/// It sends no CA names in its certificate request (`root_hint_subjects` is empty: the names
/// would have to outlive a reload). TLS clients then offer the certificate they are configured
/// with, which is what Maestro's clients, Go's and OpenSSL's do.
#[derive(Debug)]
pub(crate) struct ReloadingVerifier {
    path: PathBuf,
    client_auth: ClientAuth,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl ReloadingVerifier {
    /// Reads the CA file at `path`.
    pub(crate) fn load(path: &Path, client_auth: ClientAuth) -> Result<ReloadingVerifier, TlsError> {
        let current = RwLock::new(build(path, client_auth)?);
        Ok(ReloadingVerifier { path: path.to_owned(), client_auth, current })
    }

    /// Re-reads the CA file: the new CA set is used for new handshakes; on error the old set
    /// stays and the error is returned.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let new = build(&self.path, self.client_auth)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// The CA file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn get(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn build(path: &Path, client_auth: ClientAuth) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let roots = pem::load_roots(path)?;
    let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, crate::provider());
    if client_auth == ClientAuth::Optional {
        verifier = verifier.allow_unauthenticated();
    }
    verifier.build().map_err(|e| TlsError::Ca { path: path.to_owned(), detail: e.to_string() })
}

impl ClientCertVerifier for ReloadingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.client_auth == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.get().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.get().supported_verify_schemes()
    }
}
