//! Broker-side authentication and topic ACLs, proven against real brokers that share one
//! password file written by the real `mosquitto_passwd -b`:
//!
//! - Mosquitto 2 with `deploy/mqtt/acl` exactly as shipped (the file itself, not a copy). The
//!   listener is plain TCP on loopback with `allow_anonymous false`, `password_file` and
//!   `acl_file`; the shipped `mosquitto.conf` adds TLS, which these tests leave out.
//! - The embedded broker's setup: rumqttd behind the gate ([`maestro_broker_mqtt::gate`]) with
//!   [`Acl::maestro`], the rules of `deploy/mqtt/acl`.
//!
//! Mosquitto 2.0 grants every SUBSCRIBE and filters each message by the `read` rules on
//! delivery; the gate refuses the SUBSCRIBE (SUBACK 0x87). The tests check what matters for
//! both, that no message arrives, and the gate's reason codes besides. Both answer a refused
//! PUBLISH with PUBACK 0x87.
//!
//! The attacks: logging in anonymously or with a wrong password; agent cluster-a subscribing to
//! cluster-b's specs (or to every consumer's); cluster-a publishing a status on cluster-b's
//! topic; cluster-a (a non-server user) publishing a rogue spec to cluster-b, to itself, or on
//! the source broadcast. Each attack is followed by the legitimate message on the same path,
//! published after it and delivered in order with it, so the legitimate flow is proven to work
//! and the forged message, had it passed, would have arrived first.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use maestro_api::codec;
use maestro_api::payload::StatusHashList;
use maestro_api::{AttributesWriter, Event, ext};
use maestro_broker_mqtt::gate::{Acl, PasswordFile};
use maestro_broker_mqtt::testing::{
    GatedBroker, Mosquitto, RawClient, config_for, gated_rumqttd, granted, mosquitto_passwd,
};
use maestro_broker_mqtt::testing::{spec_event, status_event};
use maestro_broker_mqtt::{MqttAgent, MqttConfig, MqttSource, MqttTopics};
use maestro_transport::conformance::Recorder;
use maestro_transport::{AgentTransport, SourceTransport, Subscribed};
use rumqttc::v5::mqttbytes::v5::{PubAckReason, SubscribeReasonCode};

/// The shipped ACL.
const ACL_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/mqtt/acl");
const USERS: [(&str, &str); 3] = [("maestro", "server-pw"), ("cluster-a", "a-pw"), ("cluster-b", "b-pw")];

fn password(user: &str) -> &'static str {
    USERS.iter().find(|(u, _)| *u == user).map(|(_, p)| *p).expect("known user")
}

fn spec_topic(cluster: &str) -> String {
    format!("sources/maestro/consumers/{cluster}/sourceevents")
}

fn status_topic(cluster: &str) -> String {
    format!("sources/maestro/consumers/{cluster}/agentevents")
}

/// The password file, as an operator creates it.
fn password_file(dir: &Path) -> PathBuf {
    let file = dir.join("passwd");
    mosquitto_passwd(&file, &USERS);
    file
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mosquitto,
    Gate,
}

fn with_login(mut c: MqttConfig, user: &str) -> MqttConfig {
    c.username = Some(user.into());
    c.password = Some(password(user).into());
    c
}

fn agent_config(addr: &str, cluster: &str) -> MqttConfig {
    let mut c = config_for(addr);
    c.topics = MqttTopics {
        source_events: spec_topic(cluster),
        agent_events: status_topic(cluster),
        source_broadcast: Some("sources/+/sourcebroadcast".into()),
        agent_broadcast: None,
    };
    with_login(c, cluster)
}

/// A status resync request to every cluster, tagged with `resource` so it shares a delivery
/// lane with other broadcast events about it.
fn resync_all(id: &str, resource: &str) -> Event {
    let mut ev = codec::status_resync_request("maestro", "", &StatusHashList::default());
    ev.set_id(id);
    ext::set_str(&mut ev, "resourceid", resource);
    ev
}

async fn wait_subscribed(mut sub: Subscribed, who: &str) {
    tokio::time::timeout(Duration::from_secs(20), sub.wait_for(|v| *v > 0))
        .await
        .unwrap_or_else(|_| panic!("{who} was not allowed its own subscriptions"))
        .expect("signal");
}

/// The legitimate parties: the server and two agents, each with a recorder.
struct Parties {
    server: Arc<MqttSource>,
    server_rec: Arc<Recorder>,
    agents: Vec<(Arc<MqttAgent>, Arc<Recorder>)>,
}

async fn parties(addr: &str) -> Parties {
    let server =
        MqttSource::connect(with_login(config_for(addr), "maestro"), "maestro", "maestro-acl").await.unwrap();
    let server_rec = Recorder::new();
    server.start(server_rec.clone()).await.unwrap();
    wait_subscribed(server.subscribed(), "the server").await;
    let mut agents = Vec::new();
    for cluster in ["cluster-a", "cluster-b"] {
        let agent = MqttAgent::connect(agent_config(addr, cluster), cluster, &format!("{cluster}-agent"))
            .await
            .unwrap();
        let rec = Recorder::new();
        agent.start(rec.clone()).await.unwrap();
        wait_subscribed(agent.subscribed(), cluster).await;
        agents.push((agent, rec));
    }
    Parties { server, server_rec, agents }
}

async fn logins_are_required(addr: &str) {
    for (login, what) in [
        (None, "anonymous"),
        (Some(("cluster-a", "b-pw")), "a wrong password"),
        (Some(("nobody", "a-pw")), "an unknown user"),
    ] {
        let result = RawClient::connect(addr, "intruder", login).await;
        assert!(result.is_err(), "{what} was let in");
    }
    RawClient::connect(addr, "cluster-a-probe", Some(("cluster-a", "a-pw")))
        .await
        .expect("a valid login")
        .disconnect()
        .await;
}

/// cluster-a cannot read cluster-b's specs: its subscriptions are refused and nothing arrives,
/// while its own spec does.
async fn specs_stay_with_their_consumer(addr: &str, kind: Kind, p: &Parties) {
    let mut spy = RawClient::connect(addr, "cluster-a-spy", Some(("cluster-a", "a-pw"))).await.unwrap();
    for filter in [
        spec_topic("cluster-b"),
        "sources/maestro/consumers/+/sourceevents".into(),
        "sources/#".into(),
        "#".into(),
        format!("$share/g/{}", spec_topic("cluster-b")),
        "$share/statussubscribers/sources/maestro/consumers/+/agentevents".into(),
    ] {
        let codes = spy.subscribe(&filter).await.unwrap();
        // Mosquitto 2.0 grants any SUBSCRIBE and applies the `read` rules to every message it
        // would deliver; the gate refuses the SUBSCRIBE itself. Either way nothing arrives.
        if kind == Kind::Gate {
            assert_eq!(codes, vec![SubscribeReasonCode::NotAuthorized], "cluster-a was granted {filter}");
        }
    }
    assert!(granted(&spy.subscribe(&spec_topic("cluster-a")).await.unwrap()[0]));
    p.server.publish(&spec_event("spec-b", "cluster-b", "r-1")).await.unwrap();
    p.server.publish(&spec_event("spec-a", "cluster-a", "r-1")).await.unwrap();
    spy.wait_message(&spec_topic("cluster-a")).await.unwrap();
    let topics: Vec<String> = spy.received().into_iter().map(|(t, _)| t).collect();
    assert_eq!(topics, vec![spec_topic("cluster-a")], "{kind:?}: cluster-a received another consumer's spec");
    for ((_, rec), id) in p.agents.iter().zip(["spec-a", "spec-b"]) {
        rec.wait_for(id, |evs| evs.iter().any(|e| maestro_api::AttributesReader::id(e) == id)).await;
    }
    spy.disconnect().await;
}

/// cluster-a cannot publish a status on cluster-b's topic (claiming cluster-b, so only the
/// broker can stop it); cluster-b's own status on that topic arrives.
async fn statuses_come_from_their_consumer(addr: &str, kind: Kind, p: &Parties) {
    let mut forger = RawClient::connect(addr, "cluster-a-forger", Some(("cluster-a", "a-pw"))).await.unwrap();
    let reason = forger
        .publish_event(&status_topic("cluster-b"), &status_event("work-agent", "forged", "cluster-b", "r-2"))
        .await
        .unwrap();
    assert_eq!(reason, PubAckReason::NotAuthorized, "{kind:?}");
    let (agent_b, _) = &p.agents[1];
    agent_b.publish(&status_event("work-agent", "legit-b", "cluster-b", "r-2")).await.unwrap();
    p.server_rec
        .wait_for("cluster-b's status", |evs| {
            evs.iter().any(|e| maestro_api::AttributesReader::id(e) == "legit-b")
        })
        .await;
    assert_eq!(p.server_rec.attempts("forged"), 0, "{kind:?}: cluster-a spoke on cluster-b's topic");
    forger.disconnect().await;
}

/// A non-server user cannot send specs: not to another agent, not to itself, not on the
/// source broadcast; the server's specs on the same topics arrive.
async fn only_the_server_sends_specs(addr: &str, kind: Kind, p: &Parties) {
    let mut rogue = RawClient::connect(addr, "cluster-a-rogue", Some(("cluster-a", "a-pw"))).await.unwrap();
    let attacks = [
        (spec_topic("cluster-b"), spec_event("rogue-b", "cluster-b", "r-3")),
        (spec_topic("cluster-a"), spec_event("rogue-a", "cluster-a", "r-3")),
        ("sources/maestro/sourcebroadcast".to_owned(), resync_all("rogue-all", "r-4")),
    ];
    for (topic, ev) in &attacks {
        let reason = rogue.publish_event(topic, ev).await.unwrap();
        assert_eq!(reason, PubAckReason::NotAuthorized, "{kind:?}: {topic}");
    }
    for ev in [
        spec_event("legit-b3", "cluster-b", "r-3"),
        spec_event("legit-a3", "cluster-a", "r-3"),
        resync_all("legit-all", "r-4"),
    ] {
        p.server.publish(&ev).await.unwrap();
    }
    for ((_, rec), own) in p.agents.iter().zip(["legit-a3", "legit-b3"]) {
        for id in [own, "legit-all"] {
            rec.wait_for(id, |evs| evs.iter().any(|e| maestro_api::AttributesReader::id(e) == id)).await;
        }
        for id in ["rogue-a", "rogue-b", "rogue-all"] {
            assert_eq!(rec.attempts(id), 0, "{kind:?}: a rogue spec {id} reached an agent");
        }
    }
    rogue.disconnect().await;
}

/// The server may use the shared-subscription layout of `deploy/mqtt/server-config.yaml`.
/// Statuses reach it through the shared subscription.
async fn the_server_may_share_its_subscription(addr: &str, p: &Parties) {
    let mut server = RawClient::connect(addr, "maestro-ha", Some(("maestro", "server-pw"))).await.unwrap();
    let codes =
        server.subscribe("$share/statussubscribers/sources/maestro/consumers/+/agentevents").await.unwrap();
    assert!(granted(&codes[0]), "{codes:?}");
    assert!(granted(&server.subscribe("sources/+/agentbroadcast").await.unwrap()[0]));
    let (agent_a, _) = &p.agents[0];
    agent_a.publish(&status_event("work-agent", "shared", "cluster-a", "r-5")).await.unwrap();
    server.wait_message(&status_topic("cluster-a")).await.unwrap();
    server.disconnect().await;
}

async fn run_attacks(addr: &str, kind: Kind) {
    logins_are_required(addr).await;
    let p = parties(addr).await;
    specs_stay_with_their_consumer(addr, kind, &p).await;
    statuses_come_from_their_consumer(addr, kind, &p).await;
    only_the_server_sends_specs(addr, kind, &p).await;
    the_server_may_share_its_subscription(addr, &p).await;
    for (agent, _) in &p.agents {
        agent.close().await;
    }
    p.server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_enforces_the_shipped_acl() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start_secured(&password_file(dir.path()), Path::new(ACL_FILE));
    run_attacks(&broker.address(), Kind::Mosquitto).await;
}

fn gated(dir: &Path) -> GatedBroker {
    gated_rumqttd(PasswordFile::load(&password_file(dir)).unwrap(), Acl::maestro("maestro"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_gate_enforces_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let broker = gated(dir.path());
    run_attacks(&broker.address(), Kind::Gate).await;
}
