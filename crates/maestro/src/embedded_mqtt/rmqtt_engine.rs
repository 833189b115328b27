//! The rmqtt engine of the embedded broker (`--embedded-mqtt-engine rmqtt`,
//! docs/operations.md "Embedded MQTT broker"): rmqtt 0.24 on a thread of its own with a
//! two-worker Tokio runtime and one MQTT listener. Behind the gate (with a password file) it
//! listens on a free loopback port and accepts only the gate's login (a `ClientAuthenticate`
//! hook; anonymous clients are refused). Without a password file it listens on the embedded
//! broker's address itself, anonymous: the gate would only check framing there, and rmqtt
//! parses and refuses what a client may not send on its own (the forged-packet suite,
//! `crates/maestro/tests/embedded_mqtt_framing.rs`), so the gate's hop, its memory and two
//! of the three sockets per client it costs are saved.
//!
//! Why it exists: rumqttd 0.20 allocates its per-connection buffers at fixed sizes (~51 KiB
//! per idle connection, docs/benchmarks.md "Embedded MQTT brokers"); rmqtt allocates a
//! connection's queues as they fill (~19 KiB per idle connection).
//!
//! Settings and why (rmqtt's defaults in brackets):
//! - per-session queue of 100,000 messages [1,000, oldest dropped when full]: a spec resync
//!   answer of up to 10,000 bundles goes to one agent at once; a queue that drops would lose
//!   specs on a live connection;
//! - message expiry 1 h [5 min] for messages queued to an offline session (the agent's spec
//!   resync at reconnect sends the current specs anyway);
//! - 128 unacknowledged QoS 1 messages per connection [16];
//! - no busy check [on: refuses connections while the host's load average is high, which a
//!   reconnect storm of the agents causes].

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::types::AuthResult;

use super::EmbeddedError;
use maestro_broker_mqtt::gate::Credentials;

/// Messages queued per session before rmqtt drops the oldest.
const MAX_QUEUED_MESSAGES: usize = 100_000;
/// How long a message queued to an offline session lives.
const MESSAGE_EXPIRY: Duration = Duration::from_secs(3600);
/// Unacknowledged QoS 1 messages per connection.
const MAX_INFLIGHT: u16 = 128;
/// Worker threads of the broker's runtime.
const WORKERS: usize = 2;

/// Accepts only the gate's login.
struct GateOnly(Credentials);

#[async_trait]
impl Handler for GateOnly {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let Parameter::ClientAuthenticate(info) = param else { return (true, acc) };
        let user_ok = info.username().is_some_and(|u| **u == *self.0.user);
        let password_ok = info.password().is_some_and(|p| p.as_ref() == self.0.password.as_bytes());
        let result = if user_ok && password_ok {
            AuthResult::Allow(false, None)
        } else {
            AuthResult::BadUsernameOrPassword
        };
        (false, Some(HookResult::AuthResult(result)))
    }
}

/// Starts rmqtt listening on `listen` (port 0: any free port); with `login`, it accepts only
/// that login, else anyone. Returns the address bound once it listens.
///
/// # Errors
/// [`EmbeddedError::Port`] when the thread cannot start or the port cannot be bound,
/// [`EmbeddedError::NotListening`] when the broker does not come up within 10 s.
pub(super) fn spawn(
    listen: SocketAddr,
    login: Option<Credentials>,
    max_packet_bytes: usize,
) -> Result<SocketAddr, EmbeddedError> {
    let port_error = |e: &dyn std::fmt::Display| EmbeddedError::Port {
        addr: listen,
        source: std::io::Error::other(e.to_string()),
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("rmqtt".into())
        .spawn(move || run(listen, login, max_packet_bytes, ready_tx))
        .map_err(|source| EmbeddedError::Port { addr: listen, source })?;
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(addr)) => Ok(addr),
        Ok(Err(e)) => Err(port_error(&e)),
        Err(_) => Err(EmbeddedError::NotListening(listen)),
    }
}

/// The broker thread: builds the runtime, binds, reports the address, serves forever.
fn run(
    listen: SocketAddr,
    login: Option<Credentials>,
    max_packet_bytes: usize,
    ready: mpsc::Sender<Result<SocketAddr, String>>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("rmqtt-worker")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start the broker's runtime: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let scx = ServerContext::new().busy_check_enable(false).build().await;
        let anonymous = login.is_none();
        if let Some(login) = login {
            let register = scx.extends.hook_mgr().register();
            register.add(Type::ClientAuthenticate, Box::new(GateOnly(login))).await;
            register.start().await;
        }
        let listener = match listener(listen, max_packet_bytes, anonymous) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(listener.local_addr().map_err(|e| e.to_string()));
        if let Err(e) = MqttServer::new(scx).listener_by_id(listener, 1).build().run().await {
            tracing::error!(error = %e, "embedded MQTT broker (rmqtt) stopped");
        }
    });
}

/// The listener on `listen`, with the settings of the module documentation.
fn listener(
    listen: SocketAddr,
    max_packet_bytes: usize,
    anonymous: bool,
) -> Result<rmqtt::net::Listener, String> {
    let max_inflight = NonZeroU16::new(MAX_INFLIGHT).ok_or("MAX_INFLIGHT is 0")?;
    Builder::new()
        .name("maestro-embedded")
        .laddr(listen)
        .reuseaddr(Some(true))
        .nodelay(true)
        .max_connections(super::MAX_CONNECTIONS)
        .handshake_timeout(maestro_broker_mqtt::gate::DEFAULT_CONNECT_TIMEOUT)
        .max_packet_size(u32::try_from(max_packet_bytes).unwrap_or(u32::MAX))
        .allow_anonymous(anonymous)
        .max_inflight(max_inflight)
        .max_mqueue_len(MAX_QUEUED_MESSAGES)
        .message_expiry_interval(MESSAGE_EXPIRY)
        .bind()
        .and_then(|l| l.tcp())
        .map_err(|e| format!("cannot bind the broker's port: {e}"))
}

#[cfg(test)]
mod tests {
    use maestro_broker_mqtt::testing::forged::connect_raw;

    use super::*;

    /// The engine's own port, reachable by any local process, takes only the gate's login.
    #[tokio::test]
    async fn the_engine_accepts_only_the_gates_login() {
        let login = Credentials { user: "gate".into(), password: "s3cret".into() };
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let addr = spawn(loopback, Some(login), 1024 * 1024).expect("rmqtt starts").to_string();
        for (who, creds) in [
            ("anonymous", None),
            ("wrong password", Some(("gate", "guess"))),
            ("other user", Some(("x", "s3cret"))),
        ] {
            let refused = connect_raw(&addr, "intruder", creds).await;
            assert!(refused.is_err(), "{who} was let in");
        }
        connect_raw(&addr, "the-gate", Some(("gate", "s3cret"))).await.expect("the gate's login");
    }
}
