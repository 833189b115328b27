//! An MQTT 5 protocol, authentication and topic-ACL gate in front of a broker that has
//! neither a topic ACL nor a robust parser (the embedded rumqttd 0.20 checks passwords but has
//! no topic ACL, and panics on some packets only a server may send, e.g. a CONNACK or an
//! UNSUBACK with a body).
//!
//! The gate listens for clients; the broker listens on a loopback port and accepts only the
//! gate's own credentials. For every client connection the gate:
//!
//! 1. reads the CONNECT (within `connect_timeout`); with a password file
//!    ([`GateConfig::users`]) checks the user name and password against it ([`PasswordFile`]);
//!    refuses enhanced authentication, and a will message on a topic the user may not publish
//!    to (CONNACK 0x86, 0x8C, 0x87);
//! 2. sends the broker the same CONNECT with the gate's credentials and, with a password
//!    file, the client id prefixed with `<user>:` (a client cannot take over another user's
//!    session by reusing its client id);
//! 3. then forwards packets both ways as raw bytes, decoding only fixed headers, PUBLISH topics
//!    and SUBSCRIBE packets: a PUBLISH to a topic outside the user's grant ([`Acl`]) is
//!    answered with PUBACK (or PUBREC) 0x87 and dropped; a SUBSCRIBE with a filter outside
//!    it is answered with SUBACK 0x87 and not forwarded; other client packets pass; packets
//!    a client may not send close the connection with DISCONNECT 0x82, and packets over
//!    `max_packet_bytes` close it too. The broker never sees them.
//!
//! **Anonymous mode** (`users: None`, with [`Acl::allow_all`]): every client is admitted,
//! whatever user name and password it gives (or none), its client id is forwarded unchanged,
//! and every well-formed topic is allowed; only the framing checks of step 3 and the CONNECT
//! checks apply. This is how the embedded broker runs without a password file: anyone can
//! publish specs and statuses for any consumer (docs/security.md, "MQTT").
//!
//! No TLS: clients talk plain MQTT to the gate (credentials travel in clear text), so it is
//! meant for loopback or a trusted network; use Mosquitto with TLS elsewhere.

pub mod acl;
pub mod frame;
pub mod passwd;

mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use maestro_transport::retry::{delays, exponential};

pub use acl::{Access, Acl};
pub use passwd::{EntryError, PasswordFile, PasswordFileError};

/// How long a client has to send its CONNECT (also bounds the broker connect), by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A user name and password (the password is redacted in `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

/// What the gate enforces and where it forwards to.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// The broker behind the gate (should listen on loopback only).
    pub upstream: SocketAddr,
    /// The credentials the gate logs in to the broker with, in place of each client's.
    pub upstream_login: Credentials,
    /// Who may log in. `None`: anonymous mode (see the module documentation): every client is
    /// admitted and its client id is not prefixed; the user name it gives, if any, is not
    /// verified, so pair it with [`Acl::allow_all`] (any other ACL would trust a claimed name).
    pub users: Option<PasswordFile>,
    /// What each user may publish and subscribe to.
    pub acl: Acl,
    /// Largest client packet accepted (larger ones close the connection).
    pub max_packet_bytes: usize,
    /// How long a client has to send its CONNECT.
    pub connect_timeout: Duration,
}

/// Why the gate could not start.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The listener, the runtime or the thread could not be set up.
    #[error("cannot start the MQTT gate: {0}")]
    Io(#[from] std::io::Error),
}

/// Why one client connection ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// A socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The client sent something that is not MQTT framing.
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    /// A peer closed the connection.
    #[error("connection closed")]
    Closed,
    /// No CONNECT in time, or the broker did not accept the connection in time.
    #[error("timed out")]
    ConnectTimeout,
    /// The client broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The CONNECT packet cannot be decoded.
    #[error("protocol violation: unreadable CONNECT: {0}")]
    UnreadableConnect(#[source] rumqttc::v5::mqttbytes::Error),
    /// The CONNECT was refused.
    #[error("connection of user {user:?} from {peer} refused: {why}")]
    Refused {
        /// The client address.
        peer: SocketAddr,
        /// The user name it gave.
        user: String,
        /// Why.
        why: String,
    },
}

fn log_end(peer: SocketAddr, result: Result<(), SessionError>) {
    match result {
        Ok(()) | Err(SessionError::Closed | SessionError::Io(_)) => {
            tracing::debug!(%peer, "MQTT gate connection closed");
        }
        Err(SessionError::ConnectTimeout) => tracing::debug!(%peer, "MQTT gate connection timed out"),
        Err(error @ SessionError::Refused { .. }) => tracing::warn!(%error, "MQTT login refused by the gate"),
        Err(error) => tracing::warn!(%peer, %error, "MQTT gate connection closed"),
    }
}

/// The first wait after a failed `accept` (out of file descriptors and the like).
const ACCEPT_RETRY_INITIAL: Duration = Duration::from_millis(50);
/// The longest wait between failed `accept`s.
const ACCEPT_RETRY_MAX: Duration = Duration::from_secs(1);

/// Accepts clients on `listener` for ever, one task each. A failed `accept` is retried after
/// an exponential backoff ([`ACCEPT_RETRY_INITIAL`] to [`ACCEPT_RETRY_MAX`], starting over
/// after a success) instead of spinning.
pub async fn serve(listener: tokio::net::TcpListener, config: Arc<GateConfig>) {
    let retries = || delays(exponential(ACCEPT_RETRY_INITIAL, ACCEPT_RETRY_MAX), ACCEPT_RETRY_MAX);
    let mut waits = retries();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                waits = retries();
                let config = config.clone();
                tokio::spawn(async move { log_end(peer, session::run(stream, peer, config).await) });
            }
            Err(error) => {
                let delay = waits.next().unwrap_or(ACCEPT_RETRY_MAX);
                tracing::warn!(%error, ?delay, "MQTT gate cannot accept a connection");
                // Nothing cancels the gate: it serves for the life of the process (`spawn`).
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Runs [`serve`] on its own thread and runtime (`threads` workers) for the life of the
/// process, on an already bound `listener`. Returns the address it listens on.
///
/// # Errors
/// [`GateError`] when the listener, the runtime or the thread cannot be set up.
pub fn spawn(
    listener: std::net::TcpListener,
    config: GateConfig,
    threads: usize,
) -> Result<SocketAddr, GateError> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("mqtt-gate")
        .enable_all()
        .build()?;
    std::thread::Builder::new().name("mqtt-gate".into()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => serve(listener, Arc::new(config)).await,
                Err(error) => tracing::error!(%error, "MQTT gate cannot listen"),
            }
        });
    })?;
    Ok(addr)
}
