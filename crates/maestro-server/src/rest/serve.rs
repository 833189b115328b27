//! The REST listener's connections (docs/rest.md, "Limits"): each accepted connection is
//! served by hyper (HTTP/1.1, or HTTP/2 when the client speaks it) with
//! - a header read timeout on HTTP/1.1 ([`RestLimits::header_read_timeout`]): hyper starts it
//!   whenever the connection waits for a request, so a client that sends part of a header
//!   and stalls (slowloris) and a keep-alive connection left idle are both closed after it;
//! - an idle timeout on every connection ([`RestLimits::idle_timeout`], [`IdleIo`]): with no
//!   request waiting for its response head, nothing read or written for that long closes it,
//!   whatever the protocol; this is what frees a list slot held by a client that stopped
//!   reading its response, and closes idle HTTP/2 connections. A slow handler is bounded by
//!   the request timeout instead.
//!
//! On shutdown the listener stops accepting, every connection finishes its requests in
//! flight, and the call returns when all are closed (as `axum::serve`'s graceful shutdown).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use maestro_transport::retry::{CancellationToken, TaskTracker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::RestLimits;
use super::auth::TlsPeer;

/// What a connection tells the handlers about its peer (the client certificate of a TLS
/// connection), from the accepted stream and address.
pub type PeerInfo<L> = fn(&<L as Listener>::Io, &<L as Listener>::Addr) -> Option<TlsPeer>;

/// The [`TlsPeer`] of a TLS connection: its address and the client certificate the
/// handshake verified, if any.
pub fn tls_peer(
    io: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    addr: &std::net::SocketAddr,
) -> Option<TlsPeer> {
    let (_, conn) = io.get_ref();
    let cert = conn.peer_certificates().and_then(|c| c.first()).map(|c| Arc::new(c.as_ref().to_vec()));
    Some(TlsPeer { addr: *addr, cert })
}

/// Serves `app` on the connections of `listener` under `limits` until `cancel` is cancelled,
/// then waits for the open connections to finish their requests in flight.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: &RestLimits,
    peer: PeerInfo<L>,
    cancel: CancellationToken,
) where
    L: Listener,
    L::Io: Unpin,
{
    let connections = TaskTracker::new();
    while let Some((io, addr)) = cancel.run_until_cancelled(listener.accept()).await {
        let io = IdleIo::new(io, limits.idle_timeout);
        let service = connection_service(app.clone(), peer(io.get_ref(), &addr), io.requests());
        connections.spawn(connection(io, service, limits.clone(), cancel.clone()));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The service of one connection: `app`, with the connection's [`TlsPeer`] in every
/// request's extensions, counting the requests whose response head is not ready yet in
/// `requests` (the connection is not idle while one is).
fn connection_service(app: Router, peer: Option<TlsPeer>, requests: Arc<AtomicUsize>) -> ConnectionService {
    let service = tower::service_fn(move |mut req: http::Request<Incoming>| {
        if let Some(peer) = &peer {
            req.extensions_mut().insert(ConnectInfo(peer.clone()));
        }
        let (app, in_flight) = (app.clone(), InFlight::enter(&requests));
        async move {
            let response = app.oneshot(req.map(Body::new)).await;
            drop(in_flight);
            response
        }
    });
    TowerToHyperService::new(tower::util::BoxCloneService::new(service))
}

type ConnectionService = TowerToHyperService<
    tower::util::BoxCloneService<http::Request<Incoming>, axum::response::Response, Infallible>,
>;

/// One request in flight on a connection, until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(requests: &Arc<AtomicUsize>) -> Self {
        requests.fetch_add(1, Ordering::SeqCst);
        InFlight(requests.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one connection; starts a graceful shutdown when `cancel` is cancelled.
async fn connection<I>(
    io: IdleIo<I>,
    service: ConnectionService,
    limits: RestLimits,
    cancel: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "REST connection ended with an error");
                }
                return;
            }
            () = cancel.cancelled(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A connection closed when it is idle for a while: no request waiting for its response head
/// and nothing read or written. A read or write that would wait past `idle` since the last
/// progress, with no request in flight, fails with [`io::ErrorKind::TimedOut`], which ends
/// the connection. A response body that stops moving (its client stopped reading) counts as
/// idle: its request's head was answered.
#[derive(Debug)]
pub struct IdleIo<T> {
    inner: T,
    idle: Option<Duration>,
    last: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    /// Requests of this connection whose response head is not ready yet.
    requests: Arc<AtomicUsize>,
}

impl<T> IdleIo<T> {
    /// `inner`, closed after `idle` without progress (`None`: never).
    pub fn new(inner: T, idle: Option<Duration>) -> Self {
        IdleIo { inner, idle, last: Instant::now(), timer: None, requests: Arc::default() }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The count of requests in flight, which the connection's service keeps.
    fn requests(&self) -> Arc<AtomicUsize> {
        self.requests.clone()
    }

    /// Called when an operation made progress.
    fn progressed<R>(&mut self, result: Poll<R>) -> Poll<R> {
        if result.is_ready() {
            self.last = Instant::now();
        }
        result
    }

    /// Called when an operation would wait: `Pending` until the connection has been idle for
    /// `idle` (the timer wakes the task then), then the timeout error.
    fn poll_idle<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let Some(idle) = self.idle else { return Poll::Pending };
        loop {
            let deadline = self.last + idle;
            let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            ready!(timer.as_mut().poll(cx));
            if self.requests.load(Ordering::SeqCst) == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was idle too long",
                )));
            }
            // A handler is at work: not idle; look again after another period.
            self.last = Instant::now();
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => this.poll_idle(cx),
            done => this.progressed(done),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.poll_idle(cx),
            done => this.progressed(done),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.poll_idle(cx),
            done => this.progressed(done),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.poll_idle(cx),
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const IDLE: Duration = Duration::from_millis(150);

    #[tokio::test]
    async fn an_idle_connection_fails_after_the_timeout() {
        let (client, server) = tokio::io::duplex(64);
        let (mut client, mut io) = (client, IdleIo::new(server, Some(IDLE)));
        let mut buf = [0u8; 8];
        client.write_all(b"abc").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 3, "data is read through");
        let started = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= IDLE - Duration::from_millis(20), "{:?}", started.elapsed());
        // A write that cannot proceed (the peer reads nothing) times out the same way.
        let (_peer, stream) = tokio::io::duplex(8);
        let mut io = IdleIo::new(stream, Some(IDLE));
        let err = io.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_request_in_flight_keeps_the_connection() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = IdleIo::new(server, Some(IDLE));
        let in_flight = InFlight::enter(&io.requests());
        let writer = tokio::spawn(async move {
            tokio::time::sleep(IDLE * 3).await;
            client.write_all(b"x").await.unwrap();
            client
        });
        let mut buf = [0u8; 1];
        assert_eq!(io.read(&mut buf).await.unwrap(), 1, "no timeout while a handler works");
        drop(in_flight);
        let _client = writer.await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::TimedOut);
        let (_peer, stream) = tokio::io::duplex(8);
        let mut never = IdleIo::new(stream, None);
        let waited = tokio::time::timeout(IDLE * 2, never.read(&mut buf)).await;
        assert!(waited.is_err(), "without an idle timeout a read just waits");
    }
}
