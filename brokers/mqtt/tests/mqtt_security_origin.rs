//! The server refuses agent events that speak for another consumer than the topic they arrived
//! on (security issue): a status published on cluster-a's `agentevents` topic but claiming
//! `clustername` cluster-b never reaches the handler, and neither does a status on the agent
//! broadcast topic or a resync there claiming another cluster; the correct events do.
//!
//! The brokers here have no ACL (embedded rumqttd, Mosquitto with anonymous clients): the check
//! is the server's own and holds whatever the broker lets through.
//!
//! No vacuous pass: each forged event is published before a legitimate one of the same topic and
//! resource, which takes the same in-order delivery lane, so once the legitimate one was handled
//! the forged one has been decided too.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use maestro_api::codec;
use maestro_api::payload::ResourceVersionList;
use maestro_api::{AttributesReader, AttributesWriter, Event, ext};
use maestro_broker_mqtt::testing::status_event;
use maestro_broker_mqtt::testing::{Mosquitto, RawClient, config_for, embedded_rumqttd};
use maestro_broker_mqtt::{MqttAgent, MqttConfig, MqttSource, MqttTopics};
use maestro_transport::conformance::Recorder;
use maestro_transport::{AgentTransport, SourceTransport};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

const AGENT_BROADCAST: &str = "sources/+/agentbroadcast";

/// A spec resync request to every source, carrying a `resourceid` so it shares the delivery
/// lane of the forged events about `resource` on the same topic.
fn resync(id: &str, claimed_cluster: &str, resource: &str) -> Event {
    let mut ev =
        codec::spec_resync_request("cluster-a-work-agent", claimed_cluster, &ResourceVersionList::default());
    ev.set_id(id);
    ext::set_str(&mut ev, "resourceid", resource);
    ev
}

fn server_config(addr: &str) -> MqttConfig {
    let mut c = config_for(addr);
    c.topics.agent_broadcast = Some(AGENT_BROADCAST.into());
    c
}

fn agent_config(addr: &str) -> MqttConfig {
    let mut c = config_for(addr);
    c.topics = MqttTopics {
        source_events: "sources/maestro/consumers/cluster-a/sourceevents".into(),
        agent_events: "sources/maestro/consumers/cluster-a/agentevents".into(),
        source_broadcast: None,
        agent_broadcast: Some(AGENT_BROADCAST.into()),
    };
    c
}

async fn wait_subscribed(sub: &mut maestro_transport::Subscribed) {
    tokio::time::timeout(Duration::from_secs(20), sub.wait_for(|v| *v > 0))
        .await
        .expect("subscribed in time")
        .expect("signal");
}

async fn started_server(addr: &str) -> (Arc<MqttSource>, Arc<Recorder>) {
    let source = MqttSource::connect(server_config(addr), "maestro", "maestro-origin").await.unwrap();
    let rec = Recorder::new();
    source.start(rec.clone()).await.unwrap();
    wait_subscribed(&mut source.subscribed()).await;
    (source, rec)
}

async fn origin_is_checked(addr: &str) {
    let (source, rec) = started_server(addr).await;
    let agent = MqttAgent::connect(agent_config(addr), "cluster-a", "cluster-a-work-agent").await.unwrap();
    agent.start(Recorder::new()).await.unwrap();
    wait_subscribed(&mut agent.subscribed()).await;

    // On cluster-a's own status topic: a status claiming cluster-b, then a correct one.
    assert_eq!(
        agent.publish_topic(&status_event("cluster-a-work-agent", "x", "cluster-b", "r-1")).unwrap(),
        "sources/maestro/consumers/cluster-a/agentevents"
    );
    agent.publish(&status_event("cluster-a-work-agent", "forged-status", "cluster-b", "r-1")).await.unwrap();
    agent.publish(&status_event("cluster-a-work-agent", "legit-status", "cluster-a", "r-1")).await.unwrap();
    rec.wait_for("the legitimate status", |evs| evs.iter().any(|e| e.id() == "legit-status")).await;
    assert_eq!(rec.attempts("forged-status"), 0, "a status claiming another cluster reached the handler");

    // On cluster-a's agent broadcast topic: a status (statuses only travel on agentevents), a
    // resync claiming cluster-b, then a correct resync.
    let mut raw = RawClient::connect(addr, "cluster-a-raw", None).await.unwrap();
    let broadcast = "sources/cluster-a/agentbroadcast";
    assert_eq!(agent.publish_topic(&resync("x", "cluster-a", "r-2")).unwrap(), broadcast);
    for (ev, what) in [
        (
            status_event("cluster-a-work-agent", "broadcast-status", "cluster-a", "r-2"),
            "a status on the broadcast topic",
        ),
        (resync("forged-resync", "cluster-b", "r-2"), "a resync claiming cluster-b"),
    ] {
        let reason = raw.publish_event(broadcast, &ev).await.unwrap();
        assert!(
            matches!(reason, PubAckReason::Success | PubAckReason::NoMatchingSubscribers),
            "{what}: {reason:?}"
        );
    }
    agent.publish(&resync("legit-resync", "cluster-a", "r-2")).await.unwrap();
    rec.wait_for("the legitimate resync", |evs| evs.iter().any(|e| e.id() == "legit-resync")).await;
    for id in ["broadcast-status", "forged-resync", "forged-status"] {
        assert_eq!(rec.attempts(id), 0, "{id} reached the handler");
    }
    assert_eq!(rec.acked_ids(), vec!["legit-status", "legit-resync"]);
    raw.disconnect().await;
    agent.close().await;
    source.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttd_server_refuses_events_speaking_for_another_consumer() {
    let port = embedded_rumqttd();
    origin_is_checked(&format!("127.0.0.1:{port}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_server_refuses_events_speaking_for_another_consumer() {
    let broker = Mosquitto::start();
    origin_is_checked(&broker.address()).await;
}
