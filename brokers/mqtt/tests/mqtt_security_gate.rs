//! The gate's own guarantees, beyond the shared attack suite of `mqtt_security_acl.rs`: a will
//! message on a foreign topic is refused at CONNECT; a SUBSCRIBE mixing allowed and refused
//! filters is refused as a whole; client ids are scoped to their user, so no agent can take
//! over another user's session; the broker behind the gate refuses every client but the gate;
//! a connection that does not start with CONNECT is closed with DISCONNECT 0x82.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use maestro_broker_mqtt::gate::{Acl, PasswordFile, passwd};
use maestro_broker_mqtt::testing::{GatedBroker, RawClient, gated_rumqttd};
use rumqttc::v5::mqttbytes::v5::{PubAckReason, SubscribeReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn broker() -> GatedBroker {
    let mut text = String::new();
    for (user, pw) in [("maestro", "server-pw"), ("cluster-a", "a-pw"), ("cluster-b", "b-pw")] {
        text.push_str(&format!("{user}:{}\n", passwd::hash_password(pw).unwrap()));
    }
    gated_rumqttd(PasswordFile::parse(&text).unwrap(), Acl::maestro("maestro"))
}

const A: Option<(&str, &str)> = Some(("cluster-a", "a-pw"));
const B: Option<(&str, &str)> = Some(("cluster-b", "b-pw"));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_on_a_foreign_topic_is_refused() {
    let gate = broker();
    let addr = gate.address();
    let foreign = "sources/maestro/consumers/cluster-b/agentevents";
    let err = RawClient::connect_with(&addr, "a-will", A, Some(foreign)).await.unwrap_err();
    assert!(err.contains("NotAuthorized"), "{err}");
    let own = "sources/maestro/consumers/cluster-a/agentevents";
    RawClient::connect_with(&addr, "a-will", A, Some(own)).await.expect("own will topic").disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_with_any_foreign_filter_is_refused_whole() {
    let gate = broker();
    let mut a = RawClient::connect(&gate.address(), "a-mixed", A).await.unwrap();
    let own = "sources/maestro/consumers/cluster-a/sourceevents";
    let codes = a.subscribe_many(&[own, "sources/maestro/consumers/cluster-b/sourceevents"]).await.unwrap();
    assert_eq!(codes, vec![SubscribeReasonCode::Unspecified, SubscribeReasonCode::NotAuthorized]);
    // The allowed filter was not subscribed either: the server's spec for cluster-a does not
    // arrive until cluster-a subscribes to it alone.
    let mut server =
        RawClient::connect(&gate.address(), "maestro-mixed", Some(("maestro", "server-pw"))).await.unwrap();
    let ok = |r: PubAckReason| matches!(r, PubAckReason::Success | PubAckReason::NoMatchingSubscribers);
    assert!(ok(server.publish(own, "before").await.unwrap()));
    assert!(matches!(a.subscribe(own).await.unwrap()[..], [SubscribeReasonCode::Success(_)]));
    assert!(ok(server.publish(own, "after").await.unwrap()));
    a.wait_message(own).await.unwrap();
    assert_eq!(a.received(), vec![(own.to_owned(), "after".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_are_scoped_to_their_user() {
    let gate = broker();
    let addr = gate.address();
    let topic = "sources/maestro/consumers/cluster-b/agentevents";
    let mut victim = RawClient::connect(&addr, "shared-id", B).await.unwrap();
    // Another user with the same client id does not take cluster-b's session over ...
    let intruder = RawClient::connect(&addr, "shared-id", A).await.unwrap();
    assert!(victim.publish(topic, "still here").await.is_ok(), "cluster-a took over cluster-b's session");
    intruder.disconnect().await;
    // ... while the same user reconnecting with it does (the broker's usual takeover).
    let _again = RawClient::connect(&addr, "shared-id", B).await.unwrap();
    assert!(victim.publish(topic, "taken over").await.is_err(), "the takeover control case did not happen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_behind_the_gate_refuses_direct_clients() {
    let gate = broker();
    let direct = format!("127.0.0.1:{}", gate.upstream_port);
    assert!(
        RawClient::connect(&direct, "direct", A).await.is_err(),
        "a password-file user got past the gate"
    );
    assert!(
        RawClient::connect(&direct, "direct", None).await.is_err(),
        "an anonymous client got past the gate"
    );
    RawClient::connect(&gate.address(), "via-gate", A).await.expect("through the gate").disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_must_start_with_connect() {
    let gate = broker();
    let mut tcp = tokio::net::TcpStream::connect(gate.address()).await.unwrap();
    tcp.write_all(&[0xc0, 0x00]).await.unwrap(); // PINGREQ
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("closed in time")
        .unwrap();
    assert_eq!(answer.first(), Some(&0xe0), "expected DISCONNECT, got {answer:?}");
    assert_eq!(answer.get(2), Some(&0x82), "expected reason 0x82 (protocol error), got {answer:?}");
}
