//! [`client_config`]: a client config trusting one CA file.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;

use crate::{TlsError, pem};

/// A rustls [`ClientConfig`] (TLS 1.2 and 1.3, ring provider) trusting the CAs of the PEM file
/// `ca` and, if `identity` is `Some((cert, key))`, presenting that client certificate and key.
///
/// Fails with an error naming the file if a file is unreadable, holds no certificate or key, or
/// the key does not match the certificate.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = pem::load_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(crate::provider())
        .with_protocol_versions(crate::PROTOCOL_VERSIONS)?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certified = pem::load_certified_key(cert, key)?;
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)))
        }
    };
    Ok(Arc::new(config))
}
