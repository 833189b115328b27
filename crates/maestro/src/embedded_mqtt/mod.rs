//! The embedded MQTT 5 broker for single-node setups:
//! `maestro server --broker mqtt --embedded-mqtt ADDR [--embedded-mqtt-password-file FILE]
//! [--embedded-mqtt-engine rmqtt|rumqttd]`. The engine (rmqtt by default when the
//! `embedded-rmqtt` feature is built in, else rumqttd; see [`EmbeddedEngine`]) runs on its own
//! thread and has no shutdown API, so it lives as long as the process.
//!
//! - **rmqtt** listens on `ADDR` itself and enforces logins and topic ACLs through its own
//!   hooks (`rmqtt_engine`): one socket per client.
//! - **rumqttd** always listens on a free loopback port and accepts only random credentials of
//!   the gate ([`maestro_broker_mqtt::gate`]), which listens on `ADDR`. The gate forwards only
//!   packets a client may send, within the size limit and after a CONNECT in time: rumqttd 0.20
//!   panics on some server-only packets (a CONNACK, an UNSUBACK with a body), and a client
//!   that reconnects after such a panic leaves it refusing every client (docs/security.md,
//!   "MQTT"). The gate adds one loopback hop (and a fixed-header decode) to every packet.
//!
//! With either engine:
//! - Without a password file the broker is anonymous: it accepts anyone, and any client can
//!   publish specs to any agent and statuses for any consumer. A warning says so at start (an
//!   error-level one when `ADDR` is not loopback). `maestro demo` and the tests run this way.
//! - With a Mosquitto password file (`mosquitto_passwd`), every login is checked against the
//!   file and every user confined with [`Acl::maestro`] (the rules of `deploy/mqtt/acl`): the
//!   user named like the source id is the server; every other user is an agent whose user
//!   name is its consumer name. The server itself logs in with an internal credential (user =
//!   source id, random password, see [`Embedded::server_login`]) unless its broker config file
//!   names a user.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use maestro_broker_mqtt::MqttConfig;
use maestro_broker_mqtt::gate::{
    self, Acl, Credentials, GateConfig, GateError, PasswordFile, PasswordFileError, acl::valid_level, passwd,
};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

#[cfg(feature = "embedded-rmqtt")]
mod rmqtt_engine;

/// Most connections the engine accepts (one per client; behind the gate, the gate's one per
/// client).
const MAX_CONNECTIONS: usize = 20_010;
/// Worker threads of the gate's runtime.
const GATE_THREADS: usize = 2;
/// The user name the gate logs in to rumqttd with.
const GATE_USER: &str = "maestro-embedded-gate";

/// An embedded broker failure.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No free port could be reserved.
    #[error("cannot reserve a port on {addr}: {source}")]
    Port {
        /// The requested address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The engine was left out of this build (`--embedded-mqtt-engine rmqtt` without the
    /// `embedded-rmqtt` Cargo feature).
    #[error("the embedded MQTT engine {0} is not compiled into this build (Cargo feature embedded-rmqtt)")]
    EngineMissing(&'static str),
    /// The broker did not accept connections in time.
    #[error("the embedded MQTT broker did not start listening on {0} within 10 s")]
    NotListening(SocketAddr),
    /// The password file is unusable.
    #[error(transparent)]
    PasswordFile(#[from] PasswordFileError),
    /// The gate could not start.
    #[error(transparent)]
    Gate(#[from] GateError),
}

pub use crate::broker::EmbeddedEngine;

/// How to run the embedded broker.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// The broker engine.
    pub engine: EmbeddedEngine,
    /// Where clients connect (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Largest packet accepted.
    pub max_payload_bytes: usize,
    /// Mosquitto password file: require logins and enforce the topic ACL. `None`: anyone may
    /// connect and use any topic (framing is still checked: by rmqtt itself, or by the gate
    /// in front of rumqttd).
    pub password_file: Option<PathBuf>,
    /// The server's source id: the user with the server's rights.
    pub source_id: String,
}

/// A running embedded broker.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// The address clients connect to (`127.0.0.1:<port>` when listening on all interfaces).
    pub addr: SocketAddr,
    /// With a password file: the server's internal login (user = source id, random password).
    pub server_login: Option<Credentials>,
}

impl Embedded {
    /// Lets the server log in: sets [`Embedded::server_login`] on `config` unless it already
    /// names a user (from the broker config file, which must then be in the password file).
    pub fn apply_server_login(&self, config: &mut MqttConfig) {
        let has_user = config.username.as_deref().is_some_and(|u| !u.is_empty());
        if let (Some(login), false) = (&self.server_login, has_user) {
            config.username = Some(login.user.clone());
            config.password = Some(login.password.clone());
        }
    }
}

/// rumqttd's config: one MQTT 5 listener on `listen` accepting only the logins of `auth`.
fn config(listen: SocketAddr, max_payload_bytes: usize, auth: HashMap<String, String>) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: max_payload_bytes,
        max_inflight_count: 200,
        auth: Some(auth),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "maestro-v5".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: MAX_CONNECTIONS,
            max_outgoing_packet_count: 1_000,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v5: Some(HashMap::from([("v5".to_owned(), server)])),
        ..Default::default()
    }
}

/// Starts the embedded broker (see the module documentation) and waits until it accepts
/// connections.
///
/// # Errors
/// [`EmbeddedError`] when no port can be reserved, the password file is unusable, or the
/// broker or the gate does not come up.
pub fn start(opts: &EmbeddedOptions) -> Result<Embedded, EmbeddedError> {
    let (users, acl, server_login) = match &opts.password_file {
        None => (None, Acl::allow_all(), None),
        Some(file) => {
            let (users, server_login) = with_server_login(opts, PasswordFile::load(file)?)?;
            (Some(users), Acl::maestro(&opts.source_id), Some(server_login))
        }
    };
    match opts.engine {
        #[cfg(feature = "embedded-rmqtt")]
        EmbeddedEngine::Rmqtt => start_rmqtt(opts, users, acl, server_login),
        #[cfg(not(feature = "embedded-rmqtt"))]
        EmbeddedEngine::Rmqtt => Err(EmbeddedError::EngineMissing("rmqtt")),
        EmbeddedEngine::Rumqttd => start_gated_rumqttd(opts, users, acl, server_login),
    }
}

/// rumqttd behind the gate (see the module documentation).
fn start_gated_rumqttd(
    opts: &EmbeddedOptions,
    users: Option<PasswordFile>,
    acl: Acl,
    server_login: Option<Credentials>,
) -> Result<Embedded, EmbeddedError> {
    let gate_login = Credentials { user: GATE_USER.into(), password: passwd::random_password()? };
    let upstream = start_rumqttd(opts, &gate_login)?;
    let listener =
        TcpListener::bind(opts.addr).map_err(|source| EmbeddedError::Port { addr: opts.addr, source })?;
    let gate_config = GateConfig {
        upstream,
        upstream_login: gate_login,
        users,
        acl,
        max_packet_bytes: client_packet_limit(opts),
        connect_timeout: gate::DEFAULT_CONNECT_TIMEOUT,
    };
    let listen = gate::spawn(listener, gate_config, GATE_THREADS)?;
    announce(listen, "rumqttd behind the gate", server_login.is_some(), &opts.source_id);
    Ok(Embedded { addr: probe_addr(listen), server_login })
}

/// Logs where the broker listens and how it admits clients (warning when it is open, or
/// when passwords would cross a network in clear text).
fn announce(listen: SocketAddr, engine: &str, logins: bool, source_id: &str) {
    if logins {
        if !listen.ip().is_loopback() {
            tracing::warn!(%listen, "the embedded MQTT broker has no TLS: passwords and events cross the network in clear text");
        }
        tracing::info!(%listen, engine, server_user = %source_id, "embedded MQTT broker listening; logins and topic ACLs enforced");
    } else {
        warn_open(listen);
        tracing::info!(%listen, engine, "embedded MQTT broker listening; anonymous");
    }
}

/// Starts rumqttd on a free loopback port accepting only `gate_login`; returns its address
/// once it accepts connections.
fn start_rumqttd(opts: &EmbeddedOptions, gate_login: &Credentials) -> Result<SocketAddr, EmbeddedError> {
    let upstream = reserve(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let auth = HashMap::from([(gate_login.user.clone(), gate_login.password.clone())]);
    spawn_rumqttd(config(upstream, opts.max_payload_bytes, auth), upstream)?;
    wait_listening(upstream)
}

/// rmqtt on `opts.addr` itself, no gate (see [`rmqtt_engine`]): anonymous without `users`,
/// else taking the password file's logins confined by `acl`.
#[cfg(feature = "embedded-rmqtt")]
fn start_rmqtt(
    opts: &EmbeddedOptions,
    users: Option<PasswordFile>,
    acl: Acl,
    server_login: Option<Credentials>,
) -> Result<Embedded, EmbeddedError> {
    let logins = match users {
        None => rmqtt_engine::Logins::Anyone,
        Some(users) => rmqtt_engine::Logins::Users { users, acl },
    };
    let listen = rmqtt_engine::spawn(opts.addr, logins, client_packet_limit(opts))?;
    announce(listen, "rmqtt", server_login.is_some(), &opts.source_id);
    Ok(Embedded { addr: probe_addr(listen), server_login })
}

/// The largest packet a client may send (the gate's limit, or open rmqtt's): the largest
/// payload plus 64 KiB for the topic and properties.
fn client_packet_limit(opts: &EmbeddedOptions) -> usize {
    opts.max_payload_bytes.saturating_add(64 * 1024)
}

fn warn_open(listen: SocketAddr) {
    const WARNING: &str = "embedded MQTT broker accepts anonymous clients: any client can publish specs to any \
        agent and statuses for any consumer; set --embedded-mqtt-password-file to require logins and per-consumer topic ACLs";
    if listen.ip().is_loopback() {
        tracing::warn!(%listen, "{WARNING}");
    } else {
        tracing::error!(%listen, "{WARNING} (and it listens on a non-loopback address)");
    }
}

/// Adds the server's internal login (user = source id, random password) to `users`.
fn with_server_login(
    opts: &EmbeddedOptions,
    mut users: PasswordFile,
) -> Result<(PasswordFile, Credentials), EmbeddedError> {
    let strange: Vec<&str> = users.users().into_iter().filter(|u| !valid_level(u)).collect();
    if !strange.is_empty() {
        tracing::warn!(users = ?strange, "these MQTT users are not valid consumer names and get no agent topics");
    }
    let server_login = Credentials { user: opts.source_id.clone(), password: passwd::random_password()? };
    users.add(&server_login.user, &server_login.password)?;
    Ok((users, server_login))
}

/// Binds `addr` to learn a free port, then releases it for rumqttd (a small race is accepted:
/// rumqttd can only bind by itself).
fn reserve(addr: SocketAddr) -> Result<SocketAddr, EmbeddedError> {
    let l = TcpListener::bind(addr).map_err(|source| EmbeddedError::Port { addr, source })?;
    l.local_addr().map_err(|source| EmbeddedError::Port { addr, source })
}

fn spawn_rumqttd(cfg: Config, addr: SocketAddr) -> Result<(), EmbeddedError> {
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            if let Err(e) = Broker::new(cfg).start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map(|_| ())
        .map_err(|source| EmbeddedError::Port { addr, source })
}

fn probe_addr(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], listen.port())) } else { listen }
}

/// Waits until `listen` accepts connections; returns the address to reach it at.
fn wait_listening(listen: SocketAddr) -> Result<SocketAddr, EmbeddedError> {
    let probe = probe_addr(listen);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok() {
            return Ok(probe);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(EmbeddedError::NotListening(listen))
}
