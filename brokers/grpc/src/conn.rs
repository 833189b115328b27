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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tonic::transport::server::{Connected, TcpConnectInfo};

#[derive(Default)]
struct State {
    paused: bool,
    closed: bool,
    next_id: u64,
    open: HashMap<u64, Arc<KillSwitch>>,
}

/// Flipped to end a connection; wakes the task driving it.
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
#[derive(Default)]
pub(crate) struct Connections {
    state: Mutex<State>,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an accepted socket, or drops it (refusing the peer) while paused or closed.
    fn admit(self: &Arc<Self>, stream: TcpStream) -> io::Result<Option<KillableConn>> {
        let mut st = self.lock();
        if st.paused || st.closed {
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
        st.closed = true;
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

/// Accepts connections until `stop` becomes true, handing admitted ones to the tonic server.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    conns: Arc<Connections>,
    out: mpsc::Sender<io::Result<KillableConn>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((stream, peer)) => match conns.admit(stream) {
                Ok(Some(conn)) => {
                    tracing::debug!(backend = crate::BACKEND, %peer, "connection accepted");
                    if out.send(Ok(conn)).await.is_err() {
                        break;
                    }
                }
                Ok(None) => tracing::debug!(backend = crate::BACKEND, %peer, "connection refused (paused)"),
                Err(error) => {
                    tracing::warn!(backend = crate::BACKEND, %peer, %error, "cannot register connection")
                }
            },
            Err(error) => {
                tracing::warn!(backend = crate::BACKEND, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::debug!(backend = crate::BACKEND, "accept loop stopped");
}

/// The TLS stage between [`accept_loop`] and the tonic server: every admitted connection is
/// handshaken in its own task (a slow or silent client never holds up the others; one that
/// does not finish within [`maestro_tls::HANDSHAKE_TIMEOUT`] is dropped, which also drops it
/// from the registry) and handed on once secured.
pub(crate) async fn handshakes(
    mut accepted: mpsc::Receiver<io::Result<KillableConn>>,
    acceptor: tokio_rustls::TlsAcceptor,
    out: mpsc::Sender<io::Result<tokio_rustls::server::TlsStream<KillableConn>>>,
) {
    while let Some(conn) = accepted.recv().await {
        let Ok(conn) = conn else { continue };
        let (acceptor, out) = (acceptor.clone(), out.clone());
        tokio::spawn(async move {
            if let Some(tls) = maestro_tls::handshake(&acceptor, conn, None).await {
                let _ = out.send(Ok(tls)).await;
            }
        });
    }
}
