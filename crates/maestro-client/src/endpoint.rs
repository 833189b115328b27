//! Endpoints as users write them: `host:port` or a URL (README.md, "maestro-cli").
//!
//! - REST: `host:port` means `http://host:port`, or `https://host:port` when a CA file is given
//!   for the REST endpoint; a URL (`http://…`, `https://…`) is taken as written.
//! - gRPC: `host:port` and `http://host:port` are plaintext (unless a CA file turns TLS on);
//!   `https://host:port` is TLS, trusting the system's roots unless a CA file is given.

use crate::error::{ClientError, Result};

/// A parsed source gRPC endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcEndpoint {
    /// The URI to connect to, always with a scheme (`http://host:port` or `https://host:port`).
    pub uri: String,
    /// True when the endpoint was written as `https://…` (TLS with the system's roots unless a
    /// CA file is given).
    pub https: bool,
}

/// The `scheme` and the rest of `endpoint` (`None` when it has no `scheme://`), rejecting an
/// empty endpoint or an empty authority.
fn split(endpoint: &str, what: &str) -> Result<(Option<String>, String)> {
    let bad = |why: &str| ClientError::InvalidInput(format!("invalid {what} endpoint {endpoint:?}: {why}"));
    let trimmed = endpoint.trim();
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, trimmed),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.starts_with(':') {
        return Err(bad("expected host:port or a URL such as http://host:port"));
    }
    if scheme.as_deref().is_some_and(|s| !matches!(s, "http" | "https")) {
        return Err(bad("the scheme must be http or https"));
    }
    Ok((scheme, rest.to_owned()))
}

/// The REST base URL of `endpoint`: a URL as written, or `host:port` prefixed with `https://`
/// when `tls` (a CA file is given for the REST endpoint), else `http://`.
///
/// # Errors
/// [`ClientError::InvalidInput`] for an empty endpoint, a missing host or a scheme other than
/// http/https.
pub fn http_url(endpoint: &str, tls: bool) -> Result<String> {
    let (scheme, rest) = split(endpoint, "HTTP")?;
    let scheme = scheme.unwrap_or_else(|| if tls { "https" } else { "http" }.to_owned());
    let url = format!("{scheme}://{rest}");
    url::Url::parse(&url)
        .map_err(|e| ClientError::InvalidInput(format!("invalid HTTP endpoint {endpoint:?}: {e}")))?;
    Ok(url)
}

/// Parses a source gRPC endpoint: `host:port`, `http://host:port` or `https://host:port`.
///
/// # Errors
/// [`ClientError::InvalidInput`] for an empty endpoint, a missing host, a path after the
/// authority or a scheme other than http/https.
pub fn grpc_endpoint(endpoint: &str) -> Result<GrpcEndpoint> {
    let (scheme, rest) = split(endpoint, "gRPC")?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(ClientError::InvalidInput(format!(
            "invalid gRPC endpoint {endpoint:?}: expected host:port without a path"
        )));
    }
    let https = scheme.as_deref() == Some("https");
    let uri = format!("{}://{authority}", if https { "https" } else { "http" });
    Ok(GrpcEndpoint { uri, https })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_accepts_host_port_and_urls() {
        assert_eq!(http_url("maestro-http:8000", false).expect("ok"), "http://maestro-http:8000");
        assert_eq!(http_url("maestro-http:8000", true).expect("ok"), "https://maestro-http:8000");
        assert_eq!(http_url("localhost:8000", false).expect("ok"), "http://localhost:8000");
        assert_eq!(http_url("127.0.0.1:1", false).expect("ok"), "http://127.0.0.1:1");
        assert_eq!(http_url("[::1]:8000", false).expect("ok"), "http://[::1]:8000");
        assert_eq!(http_url("http://h:1/prefix", true).expect("ok"), "http://h:1/prefix");
        assert_eq!(http_url("HTTPS://h:1", false).expect("ok"), "https://h:1");
        for bad in ["", "  ", "http://", ":8000", "ftp://h:1", "grpc://h:1"] {
            let err = http_url(bad, false).expect_err(bad);
            assert!(err.to_string().contains("invalid HTTP endpoint"), "{err}");
        }
    }

    #[test]
    fn grpc_accepts_host_port_and_urls() {
        let plain = |uri: &str| GrpcEndpoint { uri: uri.into(), https: false };
        assert_eq!(grpc_endpoint("maestro-grpc:8090").expect("ok"), plain("http://maestro-grpc:8090"));
        assert_eq!(grpc_endpoint("http://h:8090/").expect("ok"), plain("http://h:8090"));
        assert_eq!(
            grpc_endpoint("https://h:8090").expect("ok"),
            GrpcEndpoint { uri: "https://h:8090".into(), https: true }
        );
        for bad in ["", "https://", ":8090", "tcp://h:1", "h:1/path"] {
            let err = grpc_endpoint(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid gRPC endpoint"), "{err}");
        }
    }
}
