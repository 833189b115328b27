//! Test support (feature `test-support`): real brokers on free ports.
//!
//! - [`Mosquitto`]: the Debian `mosquitto` binary (2.0.x) with a temp config
//!   (`listener PORT 127.0.0.1`, `allow_anonymous true`, `persistence false`,
//!   `set_tcp_nodelay true`, `max_queued_messages 1000000`); `kill()` and
//!   `restart()` (same port) simulate an outage. Panics with an install hint when the binary
//!   is missing (`apt-get install -y mosquitto mosquitto-clients`).
//! - [`Mosquitto::start_secured`]: the same with `allow_anonymous false`, a `password_file`
//!   (see [`mosquitto_passwd`], the real `mosquitto_passwd -b`) and an `acl_file`.
//! - [`embedded_rumqttd`]: a rumqttd 0.20 broker (MQTT 5 listener) on a std thread. It has no
//!   shutdown API, so it lives until the process ends. [`gated_rumqttd`]: one behind the
//!   authentication and ACL [`crate::gate`], as the embedded broker runs with a password file;
//!   [`open_gated_rumqttd`]: behind the gate in anonymous mode, as it runs without one.
//! - [`RawClient`]: a bare MQTT 5 client that reports SUBACK / PUBACK reason codes and CONNACK
//!   refusals, for attack tests.
//! - [`forged`]: raw sessions that send packets only a server may send, for framing attacks.
//! - [`TcpProxy`]: a TCP forwarder whose `interrupt()` cuts every connection and refuses new
//!   ones until `resume()` — the outage simulation for brokers that cannot be restarted.
//! - [`topics_for`] / [`config_for`]: Maestro's topic layout and a test-friendly config
//!   (short backoff, short publish timeout).
//!
//! This is test code: failures panic with a message saying what went wrong.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::gate::{self, Acl, Credentials, GateConfig, PasswordFile};
use crate::{MqttConfig, MqttTopics};

mod client;
pub mod forged;

pub use client::{RawClient, granted};

/// The largest client packet the gate of [`gated_rumqttd`] and [`open_gated_rumqttd`] accepts.
pub const GATE_MAX_PACKET_BYTES: usize = 4 * 1024 * 1024 + 64 * 1024;

/// The Mosquitto binary looked up on `PATH` and in `/usr/sbin`.
pub const MOSQUITTO_BIN: &str = "mosquitto";

/// A free TCP port on 127.0.0.1 (bound then released; a small race is accepted).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits until something accepts TCP connections on `port` (up to `timeout`).
pub fn wait_listening(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_millis(200),
        )
        .is_ok()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn find_mosquitto() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(MOSQUITTO_BIN)).find(|p| p.is_file())
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// A Mosquitto process on a free port of 127.0.0.1.
#[derive(Debug)]
pub struct Mosquitto {
    /// The listener port.
    pub port: u16,
    binary: PathBuf,
    dir: PathBuf,
    extra: String,
    /// `password_file` and `acl_file`; `None` = anonymous clients allowed.
    auth: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts Mosquitto and waits until it accepts connections.
    ///
    /// # Panics
    /// When the binary is missing or the broker does not come up within 10 s.
    pub fn start() -> Mosquitto {
        Self::start_with("")
    }

    /// Like [`Mosquitto::start`] with `extra` appended to the listener's config (e.g. the
    /// `cafile` / `certfile` / `keyfile` / `require_certificate` lines of a TLS listener).
    ///
    /// # Panics
    /// As [`Mosquitto::start`].
    pub fn start_with(extra: &str) -> Mosquitto {
        Self::launch(extra, None)
    }

    /// Like [`Mosquitto::start`] but refusing anonymous clients: users from `password_file`
    /// (`mosquitto_passwd` format), topics restricted by `acl_file` (Mosquitto syntax, used in
    /// place). Plain TCP on loopback, no TLS. The password file is copied, readable, into the
    /// broker's directory: Mosquitto started as root reads it after dropping to its own user.
    ///
    /// # Panics
    /// As [`Mosquitto::start`]; when the password file cannot be copied.
    pub fn start_secured(password_file: &Path, acl_file: &Path) -> Mosquitto {
        Self::launch("", Some((password_file.to_owned(), acl_file.to_owned())))
    }

    fn launch(extra: &str, auth: Option<(PathBuf, PathBuf)>) -> Mosquitto {
        let binary = find_mosquitto().unwrap_or_else(|| {
            panic!("the `mosquitto` binary is not installed; run `apt-get install -y mosquitto mosquitto-clients`")
        });
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("maestro-mosquitto-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mosquitto temp dir");
        let auth = auth.map(|(passwords, acl)| {
            use std::os::unix::fs::PermissionsExt;
            let copy = dir.join("passwd");
            std::fs::copy(&passwords, &copy).expect("copy the password file");
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            (copy, acl)
        });
        let mut m = Mosquitto { port: free_port(), binary, dir, extra: extra.to_owned(), auth, child: None };
        m.spawn();
        m
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        let access = match &self.auth {
            None => "allow_anonymous true".to_owned(),
            Some((passwords, acl)) => format!(
                "allow_anonymous false\npassword_file {}\nacl_file {}",
                passwords.display(),
                acl.display()
            ),
        };
        let text = format!(
            "listener {} 127.0.0.1\n{access}\npersistence false\nset_tcp_nodelay true\nmax_queued_messages 1000000\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n{}\n",
            self.port, self.extra
        );
        std::fs::write(&conf, text).expect("mosquitto config");
        let log = std::fs::File::create(self.dir.join("mosquitto.log")).expect("mosquitto log");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        self.child = Some(child);
        if !wait_listening(self.port, Duration::from_secs(10)) {
            let log = std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default();
            self.kill();
            panic!("mosquitto did not listen on port {} within 10 s; log:\n{log}", self.port);
        }
    }

    /// Kills the broker (SIGKILL) and waits for it to exit. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port (after [`Mosquitto::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts an embedded rumqttd 0.20 broker with one MQTT 5 listener on a free port of
/// 127.0.0.1 and returns the port once it accepts connections. The broker runs on its own
/// thread until the process exits (rumqttd has no shutdown API).
///
/// # Panics
/// When the broker does not listen within 10 s.
pub fn embedded_rumqttd() -> u16 {
    rumqttd_with_auth(None)
}

/// Like [`embedded_rumqttd`], on a free loopback port, accepting only `login`.
///
/// # Panics
/// As [`embedded_rumqttd`].
pub fn embedded_rumqttd_with_login(login: &Credentials) -> u16 {
    let users = std::collections::HashMap::from([(login.user.clone(), login.password.clone())]);
    rumqttd_with_auth(Some(users))
}

fn rumqttd_with_auth(auth: Option<std::collections::HashMap<String, String>>) -> u16 {
    use std::collections::HashMap;

    use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};

    let port = free_port();
    let server = ServerSettings {
        name: format!("v5-{port}"),
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 4 * 1024 * 1024,
            max_inflight_count: 100,
            auth,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v5: Some(HashMap::from([("1".to_owned(), server)])),
        ..Config::default()
    };
    std::thread::Builder::new()
        .name(format!("rumqttd-{port}"))
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded rumqttd stopped");
            }
        })
        .expect("rumqttd thread");
    assert!(wait_listening(port, Duration::from_secs(10)), "embedded rumqttd did not listen on port {port}");
    port
}

#[derive(Default)]
struct ProxyState {
    acceptor: Option<tokio::task::JoinHandle<()>>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

/// A TCP forwarder `127.0.0.1:<port>` → `upstream`, for cutting connections on demand.
pub struct TcpProxy {
    /// The port clients connect to.
    pub port: u16,
    upstream: SocketAddr,
    state: Mutex<ProxyState>,
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpProxy").field("port", &self.port).field("upstream", &self.upstream).finish()
    }
}

impl TcpProxy {
    /// Starts forwarding a free local port to `upstream`. Needs a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let proxy = TcpProxy { port: free_port(), upstream, state: Mutex::new(ProxyState::default()) };
        proxy.resume().await;
        proxy
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Closes every forwarded connection and stops listening (new connects are refused).
    pub fn interrupt(&self) {
        let mut st = self.state.lock().unwrap();
        if let Some(a) = st.acceptor.take() {
            a.abort();
        }
        for c in st.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&self) {
        let listener = {
            let start = Instant::now();
            loop {
                match tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)).await {
                    Ok(l) => break l,
                    Err(e) if start.elapsed() > Duration::from_secs(10) => {
                        panic!("proxy cannot bind {}: {e}", self.port)
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        };
        let mut st = self.state.lock().unwrap();
        let conns = st.conns.clone();
        let upstream = self.upstream;
        st.acceptor = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().unwrap().push(task);
            }
        }));
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// A rumqttd broker behind the [`crate::gate`], as the embedded broker runs with a password
/// file: clients reach the gate; the broker itself accepts only the gate's random credentials.
#[derive(Debug, Clone, Copy)]
pub struct GatedBroker {
    /// The gate's port on 127.0.0.1.
    pub port: u16,
    /// The broker's own port on 127.0.0.1 (refuses every client but the gate).
    pub upstream_port: u16,
}

impl GatedBroker {
    /// `127.0.0.1:<port>` of the gate.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Starts [`embedded_rumqttd_with_login`] with random gate credentials and the gate in front
/// of it on a free loopback port, enforcing `users` and `acl`.
///
/// # Panics
/// When a broker does not come up.
pub fn gated_rumqttd(users: PasswordFile, acl: Acl) -> GatedBroker {
    start_gated(Some(users), acl)
}

/// Like [`gated_rumqttd`] with the gate in anonymous mode, as the embedded broker runs without
/// a password file: any client, any well-formed topic ([`Acl::allow_all`]); only framing is
/// checked (5 s connect timeout, 4 MiB + 64 KiB packets).
///
/// # Panics
/// As [`gated_rumqttd`].
pub fn open_gated_rumqttd() -> GatedBroker {
    start_gated(None, Acl::allow_all())
}

fn start_gated(users: Option<PasswordFile>, acl: Acl) -> GatedBroker {
    let login = Credentials { user: "gate".into(), password: gate::passwd::random_password().unwrap() };
    let upstream_port = embedded_rumqttd_with_login(&login);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("gate port");
    let config = GateConfig {
        upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port)),
        upstream_login: login,
        users,
        acl,
        max_packet_bytes: GATE_MAX_PACKET_BYTES,
        connect_timeout: Duration::from_secs(5),
    };
    let addr = gate::spawn(listener, config, 2).expect("gate");
    GatedBroker { port: addr.port(), upstream_port }
}

/// Writes `users` (name, password) to `file` with the real `mosquitto_passwd -b` (`-c` for the
/// first), so the file is exactly what an operator would produce.
///
/// # Panics
/// When `mosquitto_passwd` is missing or fails.
pub fn mosquitto_passwd(file: &Path, users: &[(&str, &str)]) {
    for (i, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let status = cmd
            .arg("-b")
            .arg(file)
            .args([user, password])
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run mosquitto_passwd ({e}); run `apt-get install -y mosquitto mosquitto-clients`"
                )
            });
        assert!(status.success(), "mosquitto_passwd failed for {user}: {status}");
    }
}

/// Maestro's layout for source `maestro` (`sources/maestro/consumers/+/{sourceevents,agentevents}`)
/// plus `sources/maestro/sourcebroadcast`.
pub fn topics_for() -> MqttTopics {
    MqttTopics {
        source_broadcast: Some("sources/maestro/sourcebroadcast".into()),
        ..MqttTopics::maestro("maestro")
    }
}

/// A config for `broker_host` with [`topics_for`], 50–500 ms reconnect backoff, 5 s dial and
/// publish timeouts.
pub fn config_for(broker_host: &str) -> MqttConfig {
    let mut c = MqttConfig::new(broker_host, topics_for());
    c.reconnect_initial_backoff = Duration::from_millis(50);
    c.reconnect_max_backoff = Duration::from_millis(500);
    c.dial_timeout = Duration::from_secs(5);
    c.publish_timeout = Duration::from_secs(5);
    c
}

/// Publishes one MQTT 5 message with the `mosquitto_pub` CLI (QoS 1), as a Go peer would:
/// `content_type` as the Content-Type property, `props` as user properties.
///
/// # Panics
/// When `mosquitto_pub` cannot run or fails (the message names the package).
pub fn mosquitto_pub(
    port: u16,
    topic: &str,
    content_type: Option<&str>,
    props: &[(&str, &str)],
    payload: &str,
) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "mqttv5", "-q", "1", "-t", topic]);
    if let Some(ct) = content_type {
        cmd.args(["-D", "publish", "content-type", ct]);
    }
    for (k, v) in props {
        cmd.args(["-D", "publish", "user-property", k, v]);
    }
    cmd.args(["-m", payload]);
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run mosquitto_pub ({e}); run `apt-get install -y mosquitto mosquitto-clients`")
    });
    assert!(status.success(), "mosquitto_pub failed: {status}");
}

/// What a Go work agent's status event carries (see [`go_status_props`]).
#[derive(Debug, Clone)]
pub struct GoStatus<'a> {
    /// CloudEvent id.
    pub id: &'a str,
    /// Consumer (cluster) name.
    pub cluster: &'a str,
    /// Resource (bundle) id.
    pub resource_id: &'a str,
    /// The spec version the status is for.
    pub resource_version: i64,
    /// The source the spec came from (`ce-originalsource`).
    pub original_source: &'a str,
    /// Snowflake sequence id (decimal).
    pub sequence_id: &'a str,
}

/// User properties exactly as the Go work agent (sdk-go + cloudevents mqtt_paho) sends them
/// on a `status.update_request` (docs/protocol.md §7.2).
pub fn go_status_props(s: &GoStatus<'_>) -> Vec<(&'static str, String)> {
    vec![
        ("ce-specversion", "1.0".into()),
        ("ce-id", s.id.into()),
        ("ce-source", format!("{}-work-agent", s.cluster)),
        ("ce-type", "io.open-cluster-management.works.v1alpha1.manifestbundles.status.update_request".into()),
        ("ce-time", "2024-09-13T06:11:10.123456789Z".into()),
        ("ce-resourceid", s.resource_id.into()),
        ("ce-resourceversion", s.resource_version.to_string()),
        ("ce-clustername", s.cluster.into()),
        ("ce-originalsource", s.original_source.into()),
        ("ce-sequenceid", s.sequence_id.into()),
        ("ce-statushash", "6b7c3d1f".into()),
        ("ce-logtracing", "{}".into()),
        ("ce-metadata", format!(r#"{{"name":"{}","namespace":"{}"}}"#, s.resource_id, s.cluster)),
    ]
}

/// A `ManifestBundleStatus` with `Applied=True`, as a Go agent reports it.
pub const GO_APPLIED_STATUS: &str = r#"{"conditions":[{"type":"Applied","status":"True","lastTransitionTime":"2024-09-13T06:11:10Z","reason":"AppliedManifestWorkComplete","message":"Apply manifest work complete"}]}"#;

/// A `spec.create_request` from source `maestro` for `resource` (version 1) on `cluster`,
/// with CloudEvent id `id` (attack tests tell forged and legitimate events apart by id).
pub fn spec_event(id: &str, cluster: &str, resource: &str) -> maestro_api::Event {
    use maestro_api::AttributesWriter;
    let mut ev = maestro_api::codec::SpecEventBuilder::new("maestro", resource, 1, cluster).build();
    ev.set_id(id);
    ev
}

/// A `status.update_request` from agent `source` claiming `cluster` for `resource` (version 1,
/// original source `maestro`), with CloudEvent id `id`.
pub fn status_event(source: &str, id: &str, cluster: &str, resource: &str) -> maestro_api::Event {
    use maestro_api::AttributesWriter;
    let mut ev = maestro_api::codec::StatusEventBuilder {
        source,
        resource_id: resource,
        resource_version: 1,
        cluster_name: cluster,
        original_source: "maestro",
        sequence_id: "1",
        status_hash: "h",
        metadata: None,
        action: maestro_api::types::Action::Update,
    }
    .build(&maestro_api::payload::ManifestBundleStatus::default());
    ev.set_id(id);
    ev
}
