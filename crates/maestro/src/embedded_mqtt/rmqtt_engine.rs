//! The rmqtt engine of the embedded broker (`--embedded-mqtt-engine rmqtt`,
//! docs/operations.md "Embedded MQTT broker"): rmqtt 0.24 on a thread of its own with a
//! two-worker Tokio runtime and one MQTT listener on the embedded broker's address itself —
//! no gate in front of it, one socket per client:
//!
//! - without a password file it is anonymous: rmqtt parses and refuses what a client may not
//!   send on its own (the forged-packet suite, `crates/maestro/tests/embedded_mqtt_framing.rs`);
//! - with one, rmqtt's hooks do what the gate does for rumqttd ([`Authorizer`]): every login
//!   is checked against the password file, every subscription, publish and will message
//!   against [`Acl::maestro`], and a client id held by a session of another user is refused
//!   (rmqtt has no hook to rewrite a client id, so it cannot be confined per user as the gate
//!   does: a second user's connect with it is refused instead of taking the session over).
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

use std::sync::Arc;

use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::types::{AuthResult, ConnectInfo, LastWill, PublishAclResult, SubscribeAclResult};

use super::EmbeddedError;
use maestro_broker_mqtt::gate::{Access, Acl, PasswordFile};

/// Messages queued per session before rmqtt drops the oldest.
const MAX_QUEUED_MESSAGES: usize = 100_000;
/// How long a message queued to an offline session lives.
const MESSAGE_EXPIRY: Duration = Duration::from_secs(3600);
/// Unacknowledged QoS 1 messages per connection.
const MAX_INFLIGHT: u16 = 128;
/// Worker threads of the broker's runtime.
const WORKERS: usize = 2;

/// Who may log in to the engine.
pub(super) enum Logins {
    /// Anyone, with or without a user name (no password file).
    Anyone,
    /// The users of a password file, each confined by the ACL.
    Users {
        /// The password file (with the server's own login added).
        users: PasswordFile,
        /// What each user may subscribe and publish to.
        acl: Acl,
    },
}

/// The password file and topic ACL as rmqtt hooks (see the module documentation): registered
/// for `ClientAuthenticate`, `ClientSubscribeCheckAcl` and `MessagePublishCheckAcl`.
#[derive(Clone)]
struct Authorizer(Arc<AuthorizerInner>);

struct AuthorizerInner {
    users: PasswordFile,
    acl: Acl,
    scx: ServerContext,
}

#[async_trait]
impl Handler for Authorizer {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(info) => {
                (false, Some(HookResult::AuthResult(self.authenticate(info).await)))
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let user = session.id.username_ref();
                let result = if self.0.acl.allows(user, Access::Subscribe, &subscribe.topic_filter) {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    tracing::warn!(%user, filter = %subscribe.topic_filter, "MQTT subscription refused by the topic ACL");
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let user = session.id.username_ref();
                let result = if self.0.acl.allows(user, Access::Publish, &publish.topic) {
                    PublishAclResult::allow()
                } else {
                    tracing::warn!(%user, topic = %publish.topic, "MQTT publish refused by the topic ACL");
                    PublishAclResult::rejected(false, None)
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            _ => (true, acc),
        }
    }
}

impl Authorizer {
    /// A login: a user of the password file with its password, no enhanced authentication,
    /// a will message only on a topic the user may publish to, and a client id no session of
    /// another user holds.
    async fn authenticate(&self, info: &ConnectInfo) -> AuthResult {
        let client_id = &info.id().client_id;
        let (Some(user), Some(password)) = (info.username(), info.password()) else {
            tracing::warn!(%client_id, why = "no user name and password", "MQTT login refused");
            return AuthResult::BadUsernameOrPassword;
        };
        let user: &str = user;
        if !self.0.users.verify(user, password) {
            tracing::warn!(%client_id, %user, why = "bad user name or password", "MQTT login refused");
            return AuthResult::BadUsernameOrPassword;
        }
        if let ConnectInfo::V5(_, connect) = info
            && connect.auth_method.is_some()
        {
            tracing::warn!(%client_id, %user, why = "enhanced authentication", "MQTT login refused");
            return AuthResult::NotAuthorized;
        }
        if let Some(topic) = info.last_will().map(|w| will_topic(&w).to_owned())
            && !self.0.acl.allows(user, Access::Publish, &topic)
        {
            tracing::warn!(%client_id, %user, %topic, why = "a will on a topic the user may not publish to", "MQTT login refused");
            return AuthResult::NotAuthorized;
        }
        let holder = self.0.scx.extends.shared().await.entry(info.id().clone()).session();
        if let Some(held) = holder
            && held.id.username_ref() != user
        {
            tracing::warn!(%client_id, %user, why = "the client id is held by another user's session", "MQTT login refused");
            return AuthResult::NotAuthorized;
        }
        AuthResult::Allow(false, None)
    }
}

fn will_topic<'a>(will: &LastWill<'a>) -> &'a str {
    match will {
        LastWill::V3(w) => &w.topic,
        LastWill::V5(w) => &w.topic,
    }
}

/// Starts rmqtt listening on `listen` (port 0: any free port), taking `logins`. Returns the
/// address bound once it listens.
///
/// # Errors
/// [`EmbeddedError::Port`] when the thread cannot start or the port cannot be bound,
/// [`EmbeddedError::NotListening`] when the broker does not come up within 10 s.
pub(super) fn spawn(
    listen: SocketAddr,
    logins: Logins,
    max_packet_bytes: usize,
) -> Result<SocketAddr, EmbeddedError> {
    let port_error = |e: &dyn std::fmt::Display| EmbeddedError::Port {
        addr: listen,
        source: std::io::Error::other(e.to_string()),
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("rmqtt".into())
        .spawn(move || run(listen, logins, max_packet_bytes, ready_tx))
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
    logins: Logins,
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
        let anonymous = matches!(logins, Logins::Anyone);
        if let Logins::Users { users, acl } = logins {
            let auth = Authorizer(Arc::new(AuthorizerInner { users, acl, scx: scx.clone() }));
            let register = scx.extends.hook_mgr().register();
            for hook in
                [Type::ClientAuthenticate, Type::ClientSubscribeCheckAcl, Type::MessagePublishCheckAcl]
            {
                register.add(hook, Box::new(auth.clone())).await;
            }
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
    use maestro_broker_mqtt::gate::passwd::hash_password;
    use maestro_broker_mqtt::testing::forged::connect_raw;

    use super::*;

    /// Only the password file's users get in, with their own passwords.
    #[tokio::test]
    async fn the_engine_takes_only_the_password_files_logins() {
        let hash = hash_password("s3cret").expect("hash");
        let users = PasswordFile::parse(&format!("agent-1:{hash}\n")).expect("password file");
        let logins = Logins::Users { users, acl: Acl::maestro("maestro") };
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let addr = spawn(loopback, logins, 1024 * 1024).expect("rmqtt starts").to_string();
        for (who, creds) in [
            ("anonymous", None),
            ("wrong password", Some(("agent-1", "guess"))),
            ("other user", Some(("x", "s3cret"))),
        ] {
            let refused = connect_raw(&addr, "intruder", creds).await;
            assert!(refused.is_err(), "{who} was let in");
        }
        connect_raw(&addr, "agent-1-work", Some(("agent-1", "s3cret"))).await.expect("the user's login");
    }
}
