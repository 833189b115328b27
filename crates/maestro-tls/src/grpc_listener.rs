//! gRPC listener settings shared by the agent broker and the source gRPC API (feature
//! `grpc`; docs/security.md, "Limits"): [`GrpcListenerLimits`], Go Maestro's connection flags
//! applied to a tonic server, and [`HandshakeDeadline`], which closes a connection whose client
//! does not open HTTP/2 in time (hyper waits for the connection preface without a limit).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Default HTTP/2 keepalive ping interval: 30 s (Go's `--grpc-server-ping-interval`).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Default wait for a keepalive ping's acknowledgement: 10 s (Go's `--grpc-server-ping-timeout`).
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Default minimum interval of a client's pings: 5 s (Go's `--grpc-client-min-ping-interval`;
/// accepted but not enforced, see [`GrpcListenerLimits::client_min_ping_interval`]).
pub const DEFAULT_CLIENT_MIN_PING_INTERVAL: Duration = Duration::from_secs(5);
/// Default limit of concurrent HTTP/2 streams (RPCs) per connection: 1,000. Go Maestro
/// advertises no limit; our clients need 65 (an agent's 64 status publishes and its Subscribe),
/// and a bound keeps one connection from holding an unbounded number of handlers.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1_000;
/// Default largest gRPC message a client may send: 4 MiB (Go's
/// `--grpc-max-receive-message-size`).
pub const DEFAULT_MAX_RECEIVE_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Default time a new connection has to finish its HTTP/2 handshake: 120 s (Go's
/// `--grpc-connection-timeout`).
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings of a gRPC listener's connections (HTTP/2), with Go Maestro's flag names
/// (docs/security.md, "Limits"). The same settings serve the agent broker and the source gRPC
/// API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcListenerLimits {
    /// Age after which a connection is closed (Go's `--grpc-max-connection-age`). Without a
    /// grace it is asked to close (HTTP/2 GOAWAY: no new RPCs) and lives as long as its RPCs,
    /// so a Subscribe stream keeps it open. Default `None`: unlimited, as Go's default.
    pub max_connection_age: Option<Duration>,
    /// With `max_connection_age`: the connection is cut at age + grace, ending its streams
    /// (agents reconnect). tonic 0.14 then sends no GOAWAY at the age itself. Default `None`:
    /// never cut.
    pub max_connection_age_grace: Option<Duration>,
    /// The server pings a connection it has received nothing from for this long (Go's
    /// `--grpc-server-ping-interval`). Default 30 s; `None` disables pings.
    pub ping_interval: Option<Duration>,
    /// A ping not acknowledged within this time closes the connection (Go's
    /// `--grpc-server-ping-timeout`). Default 10 s.
    pub ping_timeout: Duration,
    /// Go's `--grpc-client-min-ping-interval`, default 5 s. Accepted and logged but **not
    /// enforced**: hyper and h2 (under tonic 0.14) answer every client PING and have no ping
    /// rate policy. h2 answers one ping at a time (it reads no further frame until the pending
    /// answer is written), so a ping flood costs CPU but no memory.
    pub client_min_ping_interval: Duration,
    /// Concurrent streams (RPCs) per connection, the HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`
    /// (Go's `--grpc-max-concurrent-streams`). Clients queue RPCs over it. Default 1,000.
    pub max_concurrent_streams: u32,
    /// Largest gRPC message a client may send, in bytes (Go's
    /// `--grpc-max-receive-message-size`); a larger one fails its RPC with `OUT_OF_RANGE`
    /// before it is buffered. Default 4 MiB.
    pub max_receive_message_bytes: usize,
    /// Time a new connection has to send the HTTP/2 connection preface and its SETTINGS frame,
    /// counted after the TLS handshake (which has its own 10 s limit); the connection is closed
    /// otherwise (Go's `--grpc-connection-timeout`). Default 120 s; `None` waits forever.
    pub connection_timeout: Option<Duration>,
}

impl Default for GrpcListenerLimits {
    fn default() -> Self {
        GrpcListenerLimits {
            max_connection_age: None,
            max_connection_age_grace: None,
            ping_interval: Some(DEFAULT_PING_INTERVAL),
            ping_timeout: DEFAULT_PING_TIMEOUT,
            client_min_ping_interval: DEFAULT_CLIENT_MIN_PING_INTERVAL,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_receive_message_bytes: DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
            connection_timeout: Some(DEFAULT_CONNECTION_TIMEOUT),
        }
    }
}

impl GrpcListenerLimits {
    /// A tonic server builder with these settings (keepalive, connection age, streams per
    /// connection) and h2's reset-stream limits. The message size and the connection timeout
    /// are applied by the caller: to the service and to the accepted connections.
    pub fn server_builder(&self) -> tonic::transport::Server {
        let mut builder = tonic::transport::Server::builder()
            .http2_keepalive_interval(self.ping_interval.filter(|d| !d.is_zero()))
            .http2_keepalive_timeout(Some(self.ping_timeout).filter(|d| !d.is_zero()))
            .max_concurrent_streams(self.max_concurrent_streams.max(1))
            // tonic leaves h2's limit of locally reset streams off unless given; 20 and 1,024
            // are h2's and hyper's own defaults (docs/security.md, "Limits").
            .http2_max_pending_accept_reset_streams(Some(20))
            .http2_max_local_error_reset_streams(Some(1024));
        if let Some(age) = self.max_connection_age.filter(|d| !d.is_zero()) {
            builder = builder.max_connection_age(age);
            if let Some(grace) = self.max_connection_age_grace {
                builder = builder.max_connection_age_grace(grace);
            }
        }
        builder
    }

    /// The connection timeout in force (`None` when disabled or zero).
    pub fn handshake_timeout(&self) -> Option<Duration> {
        self.connection_timeout.filter(|d| !d.is_zero())
    }

    /// What is wrong with the values, if anything: a zero ping timeout, streams per
    /// connection or message size.
    pub fn problem(&self) -> Option<&'static str> {
        if self.ping_timeout.is_zero() {
            return Some("the ping timeout must be positive");
        }
        if self.max_concurrent_streams == 0 || self.max_receive_message_bytes == 0 {
            return Some("max_concurrent_streams and max_receive_message_bytes must be positive");
        }
        None
    }
}

/// Bytes a client sends to open HTTP/2: the 24-byte connection preface and the 9-byte header of
/// its first SETTINGS frame (RFC 9113 §3.4).
const H2_OPENING_BYTES: usize = 24 + 9;

/// A connection that must open HTTP/2 ([`H2_OPENING_BYTES`] read) before a deadline: past it,
/// reads and writes fail with `TimedOut` and hyper drops the connection. Once open, it only
/// passes bytes through.
#[derive(Debug)]
pub struct HandshakeDeadline<IO> {
    /// The listener's name, for the log.
    listener: &'static str,
    io: IO,
    /// Until the client opened HTTP/2: when it must have.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    read: usize,
}

impl<IO> HandshakeDeadline<IO> {
    /// Wraps `io` of the listener named `listener` (for the log), which must open HTTP/2
    /// within `timeout` from now (`None`: no deadline).
    pub fn new(listener: &'static str, io: IO, timeout: Option<Duration>) -> Self {
        HandshakeDeadline {
            listener,
            io,
            deadline: timeout.map(|t| Box::pin(tokio::time::sleep(t))),
            read: 0,
        }
    }

    /// `Err(TimedOut)` once the deadline passed with HTTP/2 not opened; registers `cx` to be
    /// woken at the deadline otherwise.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(deadline) = &mut self.deadline else { return Ok(()) };
        if deadline.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        tracing::debug!(listener = self.listener, "connection closed: no HTTP/2 handshake in time");
        Err(io::Error::new(io::ErrorKind::TimedOut, "no HTTP/2 handshake within the connection timeout"))
    }
}

impl<IO: Connected> Connected for HandshakeDeadline<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for HandshakeDeadline<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.deadline.is_some() && matches!(polled, Poll::Ready(Ok(()))) {
            this.read += buf.filled().len().saturating_sub(before);
            if this.read >= H2_OPENING_BYTES {
                this.deadline = None;
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HandshakeDeadline<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
