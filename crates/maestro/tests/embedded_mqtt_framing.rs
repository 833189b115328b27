//! The embedded MQTT broker started without a password file (as `maestro demo` and single-node
//! setups run it) survives clients that send packets only a server may send. rumqttd 0.20
//! panics on some of them (a CONNACK, an UNSUBACK with a body); the gate in front of it closes
//! such connections instead (docs/security.md, "MQTT"). Each test sends one forged packet after
//! a real CONNECT, waits until the rogue connection is closed, reconnects with the same client
//! id and does it again, then shows that the broker still serves: a subscriber receives what a
//! publisher sends.
//!
//! Run with the test helpers: `cargo test -p maestro -p maestro-broker-mqtt --test
//! embedded_mqtt_framing`.

#![cfg(feature = "mqtt")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use maestro::embedded_mqtt::{EmbeddedEngine, EmbeddedOptions, start};
use maestro_broker_mqtt::testing::forged::{
    connect_raw, read_until_closed, server_only_packet, server_only_packets,
};
use maestro_broker_mqtt::testing::{RawClient, granted};
use tokio::io::AsyncWriteExt;

/// How long the rogue connection may stay open, and the whole healthy round trip may take.
const DEADLINE: Duration = Duration::from_secs(20);
const TOPIC: &str = "sources/maestro/consumers/cluster-a/sourceevents";

fn open_broker() -> String {
    open_broker_on(EmbeddedEngine::Rumqttd)
}

fn open_broker_on(engine: EmbeddedEngine) -> String {
    let embedded = start(&EmbeddedOptions {
        engine,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_payload_bytes: 1024 * 1024,
        password_file: None,
        source_id: "maestro".into(),
    })
    .expect("embedded broker");
    assert!(embedded.server_login.is_none(), "no password file: no server login");
    embedded.addr.to_string()
}

/// Logs in as `rogue`, sends `packet`, and waits until the broker closes the connection;
/// then does it again with the same client id, as any client that reconnects would. (rumqttd
/// 0.20 alone: the first panic leaves the client id's will handler behind; the reconnect then
/// panics while holding the broker's will-handler lock, which poisons it, and every later
/// CONNECT of any client panics too.)
async fn attack(addr: &str, name: &str, packet: &[u8]) {
    for round in 1..=2 {
        let mut tcp = match connect_raw(addr, "rogue", None).await {
            Ok(tcp) => tcp,
            // The verdict is `still_serves`; the second round fails here without the gate.
            Err(e) if round > 1 => {
                eprintln!("after {name}: the rogue's reconnect failed: {e}");
                return;
            }
            Err(e) => panic!("rogue CONNECT: {e}"),
        };
        tcp.write_all(packet).await.expect("send the forged packet");
        let answers =
            read_until_closed(&mut tcp, DEADLINE).await.unwrap_or_else(|e| panic!("after {name}: {e}"));
        if let Some((first, body)) = answers.last() {
            // The gate says why: DISCONNECT 0x82 (protocol error).
            assert_eq!((*first, body.first()), (0xe0, Some(&0x82)), "after {name}: {answers:?}");
        }
    }
}

/// A subscriber receives what a publisher sends, within [`DEADLINE`].
async fn still_serves(addr: &str, after: &str) {
    let round_trip = async {
        let mut sub = RawClient::connect(addr, "healthy-sub", None).await?;
        let codes = sub.subscribe(TOPIC).await?;
        if !codes.iter().all(granted) {
            return Err(format!("SUBACK {codes:?}"));
        }
        let mut publisher = RawClient::connect(addr, "healthy-pub", None).await?;
        let reason = publisher.publish(TOPIC, "still-alive").await?;
        let payload = sub.wait_message(TOPIC).await?;
        publisher.disconnect().await;
        sub.disconnect().await;
        Ok::<_, String>((reason, payload))
    };
    let (reason, payload) = tokio::time::timeout(DEADLINE, round_trip)
        .await
        .unwrap_or_else(|_| panic!("after {after}: no round trip within {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("after {after}: the broker no longer serves: {e}"));
    assert_eq!(format!("{reason:?}"), "Success", "after {after}");
    assert_eq!(&payload[..], b"still-alive", "after {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connack_from_a_client_does_not_kill_the_open_broker() {
    let addr = open_broker();
    attack(&addr, "CONNACK", &server_only_packet("CONNACK")).await;
    still_serves(&addr, "CONNACK").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsuback_with_a_body_from_a_client_does_not_kill_the_open_broker() {
    let addr = open_broker();
    attack(&addr, "UNSUBACK with a body", &server_only_packet("UNSUBACK with a body")).await;
    still_serves(&addr, "UNSUBACK with a body").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_only_packet_kills_the_open_broker() {
    let addr = open_broker();
    for (name, packet) in server_only_packets() {
        attack(&addr, name, &packet).await;
        still_serves(&addr, name).await;
    }
}

/// The rmqtt engine, which without a password file runs with no gate in front: it closes the
/// connection on every server-only packet by itself (measured: within 1 ms, no answer), a
/// reconnect with the same client id is served, and the broker goes on serving.
#[cfg(feature = "embedded-rmqtt")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_only_packet_kills_the_open_rmqtt_broker() {
    let addr = open_broker_on(EmbeddedEngine::Rmqtt);
    still_serves(&addr, "start").await;
    for (name, packet) in server_only_packets() {
        attack(&addr, name, &packet).await;
        still_serves(&addr, name).await;
    }
}
