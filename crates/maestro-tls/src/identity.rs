//! [`peer_identity`]: who a verified client certificate names.

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::TlsError;

/// The identity a verified client certificate carries, as Go Maestro reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's common name (CN).
    pub user: String,
    /// The subject's organization (O) values, in certificate order.
    pub groups: Vec<String>,
}

/// Reads the user (subject CN) and groups (subject O values) of a DER client certificate.
///
/// Only call this on a certificate the TLS layer has verified; it checks no signature. Fails if
/// the certificate does not parse, has no CN, or has a CN or O that is not a string.
pub fn peer_identity(cert_der: &[u8]) -> Result<PeerIdentity, TlsError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| TlsError::PeerCertificate(format!("cannot parse certificate: {e}")))?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .ok_or_else(|| TlsError::PeerCertificate("subject has no common name (CN)".to_owned()))?
        .as_str()
        .map_err(|e| TlsError::PeerCertificate(format!("subject CN is not a string: {e}")))?
        .to_owned();
    let groups = subject
        .iter_organization()
        .map(|o| {
            o.as_str()
                .map(str::to_owned)
                .map_err(|e| TlsError::PeerCertificate(format!("subject O is not a string: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PeerIdentity { user, groups })
}
