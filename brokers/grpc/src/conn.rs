//! Accepted connections that the broker can cut: the accept loop feeds tonic with
//! [`KillableConn`]s and keeps a kill switch of every connection in [`Connections`], so
//! [`Connections::pause`] and [`Connections::close`] can end every live connection (the next
//! read or write fails, hyper drops the socket, the peers see their streams end) while the
//! listener stays bound to the same address. A switch, not a duplicated socket: one file
//! descriptor per agent, so 10,000 agents fit a 20,000 open-files limit.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use maestro_transport::retry::{CancellationToken, delays, exponential, pause};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::server::{Connected, TcpConnectInfo};

use maestro_transport::tasks::Tasks;

/// The first wait after a failed `accept` (e.g. out of file descriptors), instead of spinning.
const ACCEPT_RETRY_INITIAL: Duration = Duration::from_millis(50);
/// The longest wait between failed `accept`s.
const ACCEPT_RETRY_MAX: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    /// Set by [`Connections::pause`], cleared by [`Connections::resume`]: a fault-injection
    /// switch, not the end of the broker (that is [`Connections::closed`]).
    paused: bool,
    next_id: u64,
    open: HashMap<u64, Arc<KillSwitch>>,
}

/// Flipped to end one connection; wakes the task driving it. A per-connection switch polled
/// from `poll_read`/`poll_write` (a future cannot be awaited there), not a shutdown signal.
#[derive(Default)]
struct KillSwitch {
    killed: AtomicBool,
    waker: AtomicWaker,
}

impl KillSwitch {
    fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// `Err` once killed; otherwise registers `cx` to be woken by [`KillSwitch::kill`].
    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        self.waker.register(cx.waker());
        if self.killed.load(Ordering::Acquire) {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "connection cut by the broker"));
        }
        Ok(())
    }
}

/// The registry of live connections.
pub(crate) struct Connections {
    state: Mutex<State>,
    /// Cancelled by [`Connections::close`] (and with the broker's token, its parent): no
    /// connection is admitted any more.
    closed: CancellationToken,
}

impl Connections {
    /// An empty registry that refuses connections for good once `closed` is cancelled.
    pub(crate) fn new(closed: CancellationToken) -> Connections {
        Connections { state: Mutex::new(State::default()), closed }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an accepted socket, or drops it (refusing the peer) while paused or closed.
    fn admit(self: &Arc<Self>, stream: TcpStream) -> io::Result<Option<KillableConn>> {
        let mut st = self.lock();
        if st.paused || self.closed.is_cancelled() {
            return Ok(None);
        }
        let _ = stream.set_nodelay(true);
        let id = st.next_id;
        st.next_id += 1;
        let switch = Arc::new(KillSwitch::default());
        st.open.insert(id, switch.clone());
        Ok(Some(KillableConn { io: stream, id, switch, registry: self.clone() }))
    }

    fn kill_all(st: &mut State) {
        for (_, switch) in st.open.drain() {
            switch.kill();
        }
    }

    /// Refuses new connections and shuts every live one down.
    pub(crate) fn pause(&self) {
        let mut st = self.lock();
        st.paused = true;
        Self::kill_all(&mut st);
    }

    /// Accepts connections again.
    pub(crate) fn resume(&self) {
        self.lock().paused = false;
    }

    /// Refuses new connections for good and shuts every live one down.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        self.closed.cancel();
        Self::kill_all(&mut st);
    }

    /// Number of live connections.
    pub(crate) fn len(&self) -> usize {
        self.lock().open.len()
    }
}

/// An accepted TCP connection that removes itself from the registry when hyper drops it.
pub(crate) struct KillableConn {
    io: TcpStream,
    id: u64,
    switch: Arc<KillSwitch>,
    registry: Arc<Connections>,
}

impl Drop for KillableConn {
    fn drop(&mut self) {
        self.registry.lock().open.remove(&self.id);
    }
}

impl Connected for KillableConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for KillableConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Accepts connections until `cancel` is cancelled, handing admitted ones to the tonic
/// server. A failed `accept` is retried after an exponential backoff
/// ([`ACCEPT_RETRY_INITIAL`] to [`ACCEPT_RETRY_MAX`], starting over after a success).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    conns: Arc<Connections>,
    out: mpsc::Sender<io::Result<KillableConn>>,
    cancel: CancellationToken,
) {
    let retries = || delays(exponential(ACCEPT_RETRY_INITIAL, ACCEPT_RETRY_MAX), ACCEPT_RETRY_MAX);
    let mut waits = retries();
    while let Some(accepted) = cancel.run_until_cancelled(listener.accept()).await {
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                let delay = waits.next().unwrap_or(ACCEPT_RETRY_MAX);
                tracing::warn!(backend = crate::BACKEND, %error, ?delay, "accept failed");
                if !pause(delay, &cancel).await {
                    break;
                }
                continue;
            }
        };
        waits = retries();
        match conns.admit(stream) {
            Ok(Some(conn)) => {
                tracing::debug!(backend = crate::BACKEND, %peer, "connection accepted");
                if !matches!(cancel.run_until_cancelled(out.send(Ok(conn))).await, Some(Ok(()))) {
                    break;
                }
            }
            Ok(None) => tracing::debug!(backend = crate::BACKEND, %peer, "connection refused (paused)"),
            Err(error) => {
                tracing::warn!(backend = crate::BACKEND, %peer, %error, "cannot register connection")
            }
        }
    }
    tracing::debug!(backend = crate::BACKEND, "accept loop stopped");
}

/// The TLS stage between [`accept_loop`] and the tonic server: every admitted connection is
/// handshaken in its own task of `tasks` (a slow or silent client never holds up the others;
/// one that does not finish within [`maestro_tls::HANDSHAKE_TIMEOUT`] is dropped, which also
/// drops it from the registry) and handed on once secured. Everything ends when `cancel` is
/// cancelled.
pub(crate) async fn handshakes(
    mut accepted: mpsc::Receiver<io::Result<KillableConn>>,
    acceptor: tokio_rustls::TlsAcceptor,
    out: mpsc::Sender<io::Result<tokio_rustls::server::TlsStream<KillableConn>>>,
    tasks: Tasks,
    cancel: CancellationToken,
) {
    while let Some(conn) = cancel.run_until_cancelled(accepted.recv()).await.flatten() {
        let Ok(conn) = conn else { continue };
        let (acceptor, out) = (acceptor.clone(), out.clone());
        let handshake = async move {
            if let Some(tls) = maestro_tls::handshake(&acceptor, conn, None).await {
                let _ = out.send(Ok(tls)).await;
            }
        };
        tasks.spawn("TLS handshake", cancel.clone().run_until_cancelled_owned(handshake));
    }
}
