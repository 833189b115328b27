//! The in-test TCP proxy between two parts of the system (docs/reliability.md, "How faults
//! are made"): every connection from a client to a service goes through one, on 127.0.0.1,
//! so a fault can cut, delay or throttle that link, and a service restarted on another port
//! stays reachable at the same address ([`FaultProxy::retarget`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What a proxy does to its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Forwards as it comes.
    Pass,
    /// Closes every open connection and refuses new ones (a network partition).
    Cut,
    /// Holds every chunk of bytes this long before forwarding it, both ways.
    Delay(Duration),
    /// Forwards at most this many bytes per second each way.
    Bandwidth(u64),
}

/// Bytes read per chunk.
const CHUNK: usize = 16 * 1024;

/// A TCP proxy `127.0.0.1:<port>` → an upstream address. Dropping it closes everything.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    mode: watch::Sender<LinkMode>,
    _acceptor: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let upstream = Arc::new(Mutex::new(upstream));
        let (mode, modes) = watch::channel(LinkMode::Pass);
        let acceptor = tokio::spawn(accept(listener, upstream.clone(), modes));
        Ok(FaultProxy { addr, upstream, mode, _acceptor: acceptor })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the link's mode; [`LinkMode::Cut`] closes the open connections at once.
    pub fn set(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    /// The link's mode.
    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }

    /// Forwards new connections to `upstream` (a service restarted on another port).
    pub fn retarget(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap_or_else(|p| p.into_inner()) = upstream;
    }
}

async fn accept(listener: TcpListener, upstream: Arc<Mutex<SocketAddr>>, modes: watch::Receiver<LinkMode>) {
    let mut links = JoinSet::new();
    loop {
        let Ok((inbound, _)) = listener.accept().await else { continue };
        while links.try_join_next().is_some() {}
        if *modes.borrow() == LinkMode::Cut {
            drop(inbound); // refused: closed at once
            continue;
        }
        let target = *upstream.lock().unwrap_or_else(|p| p.into_inner());
        links.spawn(link(inbound, target, modes.clone()));
    }
}

/// One proxied connection: both directions until either side closes or the link is cut.
async fn link(inbound: TcpStream, target: SocketAddr, mut modes: watch::Receiver<LinkMode>) {
    let Ok(outbound) = TcpStream::connect(target).await else { return };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let up = pump(in_read, out_write, modes.clone());
    let down = pump(out_read, in_write, modes.clone());
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = modes.wait_for(|m| *m == LinkMode::Cut) => {}
    }
}

/// Copies one direction, applying the link's mode to each chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    modes: watch::Receiver<LinkMode>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mode = *modes.borrow();
        match mode {
            LinkMode::Cut => break,
            LinkMode::Delay(d) => tokio::time::sleep(d).await,
            LinkMode::Bandwidth(rate) => {
                let secs = n as f64 / rate.max(1) as f64;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
            LinkMode::Pass => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> std::io::Result<Duration> {
        let mut s = TcpStream::connect(addr).await?;
        let started = std::time::Instant::now();
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        Ok(started.elapsed())
    }

    /// Pass forwards, Delay holds each direction, Cut refuses (the connection closes before
    /// any answer), Pass again forwards.
    #[tokio::test]
    async fn modes_change_the_link() {
        let proxy = FaultProxy::start(echo_server().await).await.expect("proxy");
        round_trip(proxy.addr()).await.expect("pass");
        proxy.set(LinkMode::Delay(Duration::from_millis(100)));
        let rtt = round_trip(proxy.addr()).await.expect("delay");
        assert!(rtt >= Duration::from_millis(200), "both ways delayed: {rtt:?}");
        proxy.set(LinkMode::Cut);
        assert!(round_trip(proxy.addr()).await.is_err(), "cut");
        proxy.set(LinkMode::Pass);
        round_trip(proxy.addr()).await.expect("healed");
    }
}
