//! Building the rustls client configuration (ring provider, TLS 1.3 only, protocol.md §7.2)
//! from the CA / client certificate settings of [`MqttConfig`].

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::{MqttConfig, invalid};

/// Reads one PEM item given as a file path or as data (PEM text or base64 of PEM).
fn load_pem(
    what: &str,
    file: Option<&str>,
    data: Option<&str>,
) -> maestro_transport::Result<Option<Vec<u8>>> {
    if let Some(path) = file.filter(|s| !s.is_empty()) {
        return std::fs::read(path).map(Some).map_err(|e| invalid(format!("cannot read {what} {path}: {e}")));
    }
    let Some(data) = data.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
    if data.starts_with("-----BEGIN") {
        return Ok(Some(data.as_bytes().to_vec()));
    }
    base64_decode(data).map(Some).ok_or_else(|| invalid(format!("{what} data is neither PEM nor base64")))
}

/// Standard base64 (padding optional, whitespace ignored).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

fn certs(what: &str, pem: &[u8]) -> maestro_transport::Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{what}: invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(format!("{what}: no certificate found")));
    }
    Ok(certs)
}

fn key(pem: &[u8]) -> maestro_transport::Result<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| invalid(format!("client key: invalid PEM: {e}")))?
        .ok_or_else(|| invalid("client key: no private key found"))
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
        roots.add(cert).map_err(|e| invalid(format!("CA: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| invalid(format!("TLS: {e}")))?
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
            .map_err(|e| invalid(format!("client certificate/key: {e}")))?,
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
    fn base64_round_trip() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h\n").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert!(base64_decode("a$==").is_none());
    }

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
}
