//! The gate in anonymous mode, as the embedded broker runs without a password file: every
//! client and every well-formed topic is allowed, but the framing checks still protect rumqttd
//! (docs/security.md, "MQTT"). Packets only a server may send close the connection with
//! DISCONNECT 0x82 and never reach rumqttd (0.20 panics on some of them); so do oversized
//! packets; a client that sends no CONNECT is closed after the connect timeout. After each
//! attack the broker still routes messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use maestro_broker_mqtt::testing::forged::{connect_raw, read_until_closed, server_only_packets};
use maestro_broker_mqtt::testing::{
    GATE_MAX_PACKET_BYTES, GatedBroker, RawClient, granted, open_gated_rumqttd,
};
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use tokio::io::AsyncWriteExt;

/// The longest any one step may take (the gate's connect timeout is 5 s).
const DEADLINE: Duration = Duration::from_secs(15);

/// A subscriber receives what a publisher sends on `topic`.
async fn round_trip(gate: &GatedBroker, topic: &str, sub_login: Option<(&str, &str)>) {
    let addr = gate.address();
    let steps = async {
        let mut sub = RawClient::connect(&addr, "anon-sub", sub_login).await?;
        let codes = sub.subscribe(topic).await?;
        if !codes.iter().all(granted) {
            return Err(format!("SUBACK {codes:?}"));
        }
        let mut publisher = RawClient::connect(&addr, "anon-pub", None).await?;
        let reason = publisher.publish(topic, "hello").await?;
        let payload = sub.wait_message(topic).await?;
        publisher.disconnect().await;
        sub.disconnect().await;
        Ok::<_, String>((reason, payload))
    };
    let (reason, payload) = tokio::time::timeout(DEADLINE, steps)
        .await
        .expect("a round trip in time")
        .unwrap_or_else(|e| panic!("no round trip on {topic}: {e}"));
    assert_eq!(reason, PubAckReason::Success);
    assert_eq!(&payload[..], b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anyone_may_log_in_and_use_any_topic() {
    let gate = open_gated_rumqttd();
    round_trip(&gate, "sources/maestro/consumers/cluster-b/sourceevents", None).await;
    round_trip(&gate, "sources/other/consumers/cluster-a/agentevents", Some(("anyone", "any password")))
        .await;
    let mut wild = RawClient::connect(&gate.address(), "wild", Some(("cluster-a", "wrong"))).await.unwrap();
    let codes = wild.subscribe_many(&["#", "$share/g/sources/+/consumers/+/agentevents"]).await.unwrap();
    assert!(codes.iter().all(granted), "{codes:?}");
    wild.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_only_packets_close_the_connection_with_disconnect_0x82() {
    let gate = open_gated_rumqttd();
    for (name, packet) in server_only_packets() {
        // Twice with the same client id: a reconnect after a rumqttd panic is what kills it.
        for _ in 0..2 {
            let mut tcp =
                connect_raw(&gate.address(), "rogue", None).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            tcp.write_all(&packet).await.unwrap();
            let answers =
                read_until_closed(&mut tcp, DEADLINE).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let last = answers.last().map(|(first, body)| (*first, body.first().copied()));
            assert_eq!(last, Some((0xe0, Some(0x82))), "{name}: expected DISCONNECT 0x82, got {answers:?}");
        }
        round_trip(&gate, "sources/maestro/consumers/cluster-a/sourceevents", None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_packet_closes_the_connection() {
    let gate = open_gated_rumqttd();
    let mut tcp = connect_raw(&gate.address(), "big", None).await.unwrap();
    // A QoS 0 PUBLISH header announcing one byte more than the limit; the body never comes.
    let mut header = vec![0x30];
    let mut remaining = GATE_MAX_PACKET_BYTES - 4; // + 5 header bytes = limit + 1
    loop {
        let byte = u8::try_from(remaining % 128).unwrap();
        remaining /= 128;
        header.push(if remaining > 0 { byte | 0x80 } else { byte });
        if remaining == 0 {
            break;
        }
    }
    assert_eq!(header.len(), 5);
    tcp.write_all(&header).await.unwrap();
    read_until_closed(&mut tcp, DEADLINE).await.expect("closed on the header alone");
    round_trip(&gate, "sources/maestro/consumers/cluster-a/sourceevents", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_connect_is_closed_after_the_timeout() {
    let gate = open_gated_rumqttd();
    let mut tcp = tokio::net::TcpStream::connect(gate.address()).await.unwrap();
    let answers = read_until_closed(&mut tcp, DEADLINE).await.expect("closed after the connect timeout");
    assert!(answers.is_empty(), "{answers:?}");
}
