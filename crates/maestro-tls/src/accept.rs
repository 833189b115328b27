//! The server side of one TLS handshake, shared by every listener that terminates TLS.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often listeners check their certificate and key files for a rotation
/// ([`crate::ReloadingServerTls::start`]).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Completes the TLS handshake of `io` (accepted from `peer`, when known) within
/// [`HANDSHAKE_TIMEOUT`]. `None` when it fails or times out; the reason is logged at debug
/// level, since a failed handshake is the client's problem. Run it in a task of its own per
/// connection, so a slow or silent client never holds up the others.
pub async fn handshake<IO>(acceptor: &TlsAcceptor, io: IO, peer: Option<SocketAddr>) -> Option<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(?peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(?peer, "TLS handshake timed out");
            None
        }
    }
}
