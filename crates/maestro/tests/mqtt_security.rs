//! The embedded MQTT broker as `maestro server --broker mqtt --embedded-mqtt ADDR
//! --embedded-mqtt-password-file FILE` builds it (through `broker::source_transport`): the
//! server logs in with its internal credential; agents log in from the password file; and the
//! attacks are refused: anonymous and wrong-password logins, cluster-a subscribing to
//! cluster-b's specs, cluster-a publishing a status on cluster-b's topic, a non-server user
//! publishing a spec. Each refused message is followed by the legitimate one on the same path,
//! delivered in order with it, so the legitimate flow is proven and the forged one, had it
//! passed, would have arrived first. Without a password file the broker stays open.
//!
//! The broker has no TLS; the tests use loopback.

#![cfg(feature = "mqtt")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maestro::broker::{BrokerKind, SourceBrokerSettings, source_transport};
use maestro_api::AttributesReader;
use maestro_broker_mqtt::gate::passwd::hash_password;
use maestro_broker_mqtt::testing::{spec_event, status_event};
use maestro_broker_mqtt::{MqttAgent, MqttConfig, MqttSource, MqttTopics};
use maestro_transport::conformance::Recorder;
use maestro_transport::{AgentTransport, DynSourceTransport, Error, SourceTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(20);

/// A bare MQTT 5 client speaking just CONNECT and SUBSCRIBE, to read the reason codes.
struct Raw {
    tcp: TcpStream,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

impl Raw {
    /// Reads one packet: (first byte, body); `None` when the connection closed.
    async fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        let read = async {
            let first = self.tcp.read_u8().await.ok()?;
            let (mut len, mut shift) = (0usize, 0);
            loop {
                let b = self.tcp.read_u8().await.ok()?;
                len |= usize::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    break;
                }
                shift += 7;
            }
            let mut body = vec![0; len];
            self.tcp.read_exact(&mut body).await.ok()?;
            Some((first, body))
        };
        tokio::time::timeout(DEADLINE, read).await.expect("an answer in time")
    }

    /// Connects; returns the client and the CONNACK reason code (0 = success).
    async fn connect(addr: SocketAddr, client_id: &str, login: Option<(&str, &str)>) -> (Raw, u8) {
        Raw::connect_with_will(addr, client_id, login, None).await
    }

    /// [`Raw::connect`] with a will message (QoS 0) on `will_topic`.
    async fn connect_with_will(
        addr: SocketAddr,
        client_id: &str,
        login: Option<(&str, &str)>,
        will_topic: Option<&str>,
    ) -> (Raw, u8) {
        let flags =
            0x02 | if login.is_some() { 0xc0 } else { 0 } | if will_topic.is_some() { 0x04 } else { 0 };
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, flags, 0, 30, 0];
        put_str(&mut body, client_id);
        if let Some(topic) = will_topic {
            body.push(0); // will properties
            put_str(&mut body, topic);
            put_str(&mut body, "gone");
        }
        if let Some((user, password)) = login {
            put_str(&mut body, user);
            put_str(&mut body, password);
        }
        let mut raw = Raw { tcp: TcpStream::connect(addr).await.unwrap() };
        raw.tcp.write_all(&packet(0x10, &body)).await.unwrap();
        let (first, body) = raw.read().await.expect("a CONNACK before the close");
        assert_eq!(first, 0x20, "expected CONNACK");
        (raw, body[1])
    }

    /// Subscribes to `filter`; returns the SUBACK reason code.
    async fn subscribe(&mut self, filter: &str) -> u8 {
        let mut body = vec![0, 7, 0];
        put_str(&mut body, filter);
        body.push(1);
        self.tcp.write_all(&packet(0x82, &body)).await.unwrap();
        let (first, body) = self.read().await.expect("a SUBACK");
        assert_eq!(first, 0x90, "expected SUBACK");
        // packet id, properties length (0 or small), then the code.
        let props = usize::from(body[2]);
        body[3 + props]
    }
}

fn settings(password_file: Option<std::path::PathBuf>) -> SourceBrokerSettings {
    let mut s = maestro::server::defaults("sqlite::memory:", BrokerKind::Mqtt).broker;
    s.embedded_mqtt = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    s.embedded_mqtt_password_file = password_file;
    s.client_id = "maestro-security".into();
    s
}

fn agent_config(addr: SocketAddr, consumer: &str, login: Option<(&str, &str)>) -> MqttConfig {
    let mut c = MqttConfig::new(
        addr.to_string(),
        MqttTopics {
            source_events: format!("sources/maestro/consumers/{consumer}/sourceevents"),
            agent_events: format!("sources/maestro/consumers/{consumer}/agentevents"),
            source_broadcast: None,
            agent_broadcast: None,
        },
    );
    c.reconnect_initial_backoff = Duration::from_millis(50);
    c.reconnect_max_backoff = Duration::from_millis(500);
    c.publish_timeout = Duration::from_secs(5);
    c.username = login.map(|(u, _)| u.to_owned());
    c.password = login.map(|(_, p)| p.to_owned());
    c
}

async fn wait_subscribed(mut sub: maestro_transport::Subscribed, who: &str) {
    tokio::time::timeout(DEADLINE, sub.wait_for(|v| *v > 0))
        .await
        .unwrap_or_else(|_| panic!("{who} did not get its subscriptions"))
        .unwrap();
}

async fn wait_connected(is_connected: impl Fn() -> bool, who: &str) {
    let start = Instant::now();
    while !is_connected() {
        assert!(start.elapsed() < DEADLINE, "{who} did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn agent(
    addr: SocketAddr,
    consumer: &str,
    login: Option<(&str, &str)>,
) -> (Arc<MqttAgent>, Arc<Recorder>) {
    let agent =
        MqttAgent::connect(agent_config(addr, consumer, login), consumer, &format!("{consumer}-agent"))
            .await
            .unwrap();
    let rec = Recorder::new();
    agent.start(rec.clone()).await.unwrap();
    wait_subscribed(agent.subscribed(), consumer).await;
    (agent, rec)
}

async fn started_server(
    password_file: Option<std::path::PathBuf>,
    engine: maestro::broker::EmbeddedEngine,
) -> (DynSourceTransport, SocketAddr, Arc<Recorder>) {
    let mut settings = settings(password_file);
    settings.embedded_mqtt_engine = engine;
    let (server, addr) = source_transport(&settings).await.unwrap();
    let addr = addr.expect("the embedded broker's address");
    let rec = Recorder::new();
    server.start(rec.clone()).await.unwrap();
    wait_subscribed(server.subscribed(), "the server (internal login)").await;
    (server, addr, rec)
}

fn refused(err: &Error) -> bool {
    matches!(err, Error::Rejected { reason, .. } if reason.contains("NotAuthorized"))
}

const A: Option<(&str, &str)> = Some(("cluster-a", "a-pw"));
const B: Option<(&str, &str)> = Some(("cluster-b", "b-pw"));

/// A password file with the users `cluster-a` and `cluster-b` ([`A`], [`B`]) in `dir`.
fn password_file(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("passwd");
    let text = format!(
        "cluster-a:{}\ncluster-b:{}\n",
        hash_password("a-pw").unwrap(),
        hash_password("b-pw").unwrap()
    );
    std::fs::write(&file, text).unwrap();
    file
}

#[cfg(feature = "embedded-rmqtt")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_rmqtt_with_a_password_file_refuses_the_attacks() {
    refuses_the_attacks(maestro::broker::EmbeddedEngine::Rmqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_rumqttd_behind_the_gate_refuses_the_attacks() {
    refuses_the_attacks(maestro::broker::EmbeddedEngine::Rumqttd).await;
}

async fn refuses_the_attacks(engine: maestro::broker::EmbeddedEngine) {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr, server_rec) = started_server(Some(password_file(dir.path())), engine).await;
    let (_agent_a, rec_a) = agent(addr, "cluster-a", A).await;
    let (agent_b, rec_b) = agent(addr, "cluster-b", B).await;

    // Logins.
    assert_eq!(Raw::connect(addr, "anonymous", None).await.1, 0x86, "anonymous login");
    assert_eq!(Raw::connect(addr, "guess", Some(("cluster-a", "b-pw"))).await.1, 0x86, "wrong password");
    assert_eq!(Raw::connect(addr, "guess", Some(("maestro", "a-pw"))).await.1, 0x86, "guessing the server's");

    // cluster-a cannot subscribe to cluster-b's specs, nor to every consumer's.
    let (mut spy, code) = Raw::connect(addr, "spy", A).await;
    assert_eq!(code, 0);
    for filter in
        ["sources/maestro/consumers/cluster-b/sourceevents", "sources/maestro/consumers/+/sourceevents", "#"]
    {
        assert_eq!(spy.subscribe(filter).await, 0x87, "{filter}");
    }
    assert_eq!(spy.subscribe("sources/maestro/consumers/cluster-a/sourceevents").await, 1, "its own specs");

    // cluster-a cannot send specs (acting as a server), to cluster-b or to itself.
    let mut rogue_config = agent_config(addr, "cluster-b", A);
    rogue_config.topics = MqttTopics::maestro("maestro");
    let rogue = MqttSource::connect(rogue_config, "maestro", "rogue").await.unwrap();
    wait_connected(|| rogue.is_connected(), "the rogue source").await;
    for (id, cluster) in [("rogue-b", "cluster-b"), ("rogue-a", "cluster-a")] {
        let err = rogue.publish(&spec_event(id, cluster, "r-1")).await.unwrap_err();
        assert!(refused(&err), "{id}: {err}");
    }
    server.publish(&spec_event("spec-b", "cluster-b", "r-1")).await.unwrap();
    server.publish(&spec_event("spec-a", "cluster-a", "r-1")).await.unwrap();
    for (rec, own) in [(&rec_a, "spec-a"), (&rec_b, "spec-b")] {
        rec.wait_for(own, |evs| evs.iter().any(|e| e.id() == own)).await;
        assert_eq!(rec.acked_ids(), vec![own], "only the server's spec arrives");
    }

    // cluster-a cannot publish a status on cluster-b's topic, even one claiming cluster-b.
    let forger = MqttAgent::connect(agent_config(addr, "cluster-b", A), "cluster-b", "forger").await.unwrap();
    wait_connected(|| forger.is_connected(), "the forger").await;
    let err = forger.publish(&status_event("work-agent", "forged", "cluster-b", "r-2")).await.unwrap_err();
    assert!(refused(&err), "{err}");
    agent_b.publish(&status_event("work-agent", "legit-b", "cluster-b", "r-2")).await.unwrap();
    server_rec.wait_for("cluster-b's status", |evs| evs.iter().any(|e| e.id() == "legit-b")).await;
    assert_eq!(server_rec.acked_ids(), vec!["legit-b"]);
    server.close().await;
}

/// rmqtt (the default engine) enforces logins through its own hooks, without the gate: a
/// client id held by another user's session is refused (the gate in front of rumqttd
/// confines client ids per user instead), the holder keeps its session and may take it over
/// itself; a will message on a topic the user may not publish to is refused.
#[cfg(feature = "embedded-rmqtt")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_and_wills_stay_with_their_user() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(Some(password_file(dir.path())));
    settings.embedded_mqtt_engine = maestro::broker::EmbeddedEngine::Rmqtt;
    let (server, addr) = source_transport(&settings).await.unwrap();
    let addr = addr.expect("the embedded broker's address");

    let (mut holder, code) = Raw::connect(addr, "held-id", A).await;
    assert_eq!(code, 0);
    assert_eq!(Raw::connect(addr, "held-id", B).await.1, 0x87, "another user's client id");
    let own = "sources/maestro/consumers/cluster-a/sourceevents";
    assert_eq!(holder.subscribe(own).await, 1, "the holder keeps its session");
    assert_eq!(Raw::connect(addr, "held-id", A).await.1, 0, "its own user takes the session over");

    let foreign = "sources/maestro/consumers/cluster-b/agentevents";
    assert_eq!(Raw::connect_with_will(addr, "will-b", A, Some(foreign)).await.1, 0x87, "a will on {foreign}");
    let mine = "sources/maestro/consumers/cluster-a/agentevents";
    assert_eq!(Raw::connect_with_will(addr, "will-a", A, Some(mine)).await.1, 0, "a will on its own topic");
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_without_a_password_file_stays_open() {
    let (server, addr, server_rec) = started_server(None, Default::default()).await;
    let (agent_a, _) = agent(addr, "cluster-a", None).await;
    agent_a.publish(&status_event("work-agent", "anonymous-status", "cluster-a", "r-1")).await.unwrap();
    server_rec
        .wait_for("the anonymous agent's status", |evs| evs.iter().any(|e| e.id() == "anonymous-status"))
        .await;
    server.close().await;
}
