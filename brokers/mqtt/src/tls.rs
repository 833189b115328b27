//! Building the rustls client configuration (ring provider, TLS 1.3 only, docs/protocol.md §7.2)
//! from the CA / client certificate settings of [`MqttConfig`].

use std::sync::Arc;

use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::BACKEND;
use crate::config::{MqttConfig, invalid};

fn invalid_from(
    context: impl std::fmt::Display,
    source: impl Into<maestro_transport::BoxError>,
) -> maestro_transport::Error {
    maestro_transport::Error::invalid_config_from(BACKEND, context, source)
}

/// Reads one PEM item given as a file path or as data (PEM text or base64 of PEM).
fn load_pem(
    what: &str,
    file: Option<&str>,
    data: Option<&str>,
) -> maestro_transport::Result<Option<Vec<u8>>> {
    if let Some(path) = file.filter(|s| !s.is_empty()) {
        return std::fs::read(path)
            .map(Some)
            .map_err(|e| invalid_from(format_args!("cannot read {what} {path}"), e));
    }
    let Some(data) = data.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
    if data.starts_with("-----BEGIN") {
        return Ok(Some(data.as_bytes().to_vec()));
    }
    crate::base64::decode(data)
        .map(Some)
        .ok_or_else(|| invalid(format!("{what} data is neither PEM nor base64")))
}

fn certs(what: &str, pem: &[u8]) -> maestro_transport::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid_from(format_args!("{what}: invalid PEM"), e))?;
    if certs.is_empty() {
        return Err(invalid(format!("{what}: no certificate found")));
    }
    Ok(certs)
}

fn key(pem: &[u8]) -> maestro_transport::Result<PrivateKeyDer<'static>> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(PemError::NoItemsFound) => Err(invalid("client key: no private key found")),
        Err(e) => Err(invalid_from("client key: invalid PEM", e)),
    }
}

/// The rustls client configuration, or `None` when TLS is not configured (no CA).
///
/// # Errors
/// [`maestro_transport::Error::InvalidConfig`] when a file cannot be read, PEM does not
/// parse, or rustls refuses the certificates/key.
pub(crate) fn client_config(config: &MqttConfig) -> maestro_transport::Result<Option<Arc<ClientConfig>>> {
    let Some(ca) = load_pem("CA", config.ca_file.as_deref(), config.ca_data.as_deref())? else {
        return Ok(None);
    };
    let mut roots = RootCertStore::empty();
    for cert in certs("CA", &ca)? {
        roots.add(cert).map_err(|e| invalid_from("CA", e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| invalid_from("TLS", e))?
        .with_root_certificates(roots);
    let cert = load_pem(
        "client certificate",
        config.client_cert_file.as_deref(),
        config.client_cert_data.as_deref(),
    )?;
    let key_pem =
        load_pem("client key", config.client_key_file.as_deref(), config.client_key_data.as_deref())?;
    let tls = match (cert, key_pem) {
        (Some(cert), Some(key_pem)) => builder
            .with_client_auth_cert(certs("client certificate", &cert)?, key(&key_pem)?)
            .map_err(|e| invalid_from("client certificate/key", e))?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(invalid("either both or none of the client certificate and key must be set")),
    };
    Ok(Some(Arc::new(tls)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::MqttTopics;

    #[test]
    fn no_ca_means_plain_tcp_and_bad_ca_is_refused() {
        let mut cfg = MqttConfig::new("localhost:1883", MqttTopics::maestro("maestro"));
        assert!(client_config(&cfg).unwrap().is_none());
        cfg.ca_data = Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into());
        assert!(client_config(&cfg).is_err());
        cfg.ca_data = None;
        cfg.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(client_config(&cfg).unwrap_err().to_string().contains("cannot read CA"));
    }

    #[test]
    fn key_errors_say_what_is_wrong() {
        let cert_only = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(key(cert_only).unwrap_err().to_string().contains("client key: no private key found"));
        let bad_base64 = b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
        assert!(key(bad_base64).unwrap_err().to_string().contains("client key: invalid PEM"));
        assert!(certs("CA", b"").unwrap_err().to_string().contains("CA: no certificate found"));
    }
}
