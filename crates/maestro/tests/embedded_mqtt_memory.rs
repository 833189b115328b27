//! Memory per idle connection of the embedded MQTT broker, per engine: the reproduction behind
//! docs/benchmarks.md, "Embedded MQTT brokers". Each test starts the open embedded broker as
//! `maestro server --embedded-mqtt` does (rumqttd behind the gate; rmqtt alone) in this process, opens [`CONNECTIONS`]
//! raw MQTT 5 connections, each subscribed to its own consumer's spec topic as an agent is,
//! and reports the growth of the process's resident memory per connection. The client side
//! is a bare socket per connection (a few hundred bytes), so nearly all of the growth is the
//! broker's. Ignored in the suite (it holds thousands of sockets); run one engine per process:
//!
//! ```text
//! cargo nextest run -p maestro --test embedded_mqtt_memory --run-ignored only --no-capture
//! ```

#![cfg(feature = "mqtt")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use maestro::embedded_mqtt::{EmbeddedEngine, EmbeddedOptions, start};
use maestro_broker_mqtt::testing::forged::{connect_raw, read_packet};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Idle connections opened (four sockets each in this process: client, gate in, gate out,
/// engine).
const CONNECTIONS: usize = 2_000;

/// The resident set of this process, KiB (`VmRSS` of /proc/self/status).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// An MQTT 5 SUBSCRIBE of `filter` at QoS 1, packet id 1, no properties.
fn subscribe_packet(filter: &str) -> Vec<u8> {
    let mut body = vec![0, 1, 0];
    body.extend_from_slice(&u16::try_from(filter.len()).unwrap().to_be_bytes());
    body.extend_from_slice(filter.as_bytes());
    body.push(1);
    let mut packet = vec![0x82, u8::try_from(body.len()).unwrap()];
    packet.extend(body);
    packet
}

/// An agent-like connection: CONNECT, then SUBSCRIBE to its consumer's spec topic.
async fn agent_connection(addr: &str, i: usize) -> TcpStream {
    let mut tcp = connect_raw(addr, &format!("agent-{i}"), None).await.unwrap();
    let topic = format!("sources/maestro/consumers/c{i}/sourceevents");
    tcp.write_all(&subscribe_packet(&topic)).await.unwrap();
    let (first, _) = read_packet(&mut tcp).await.expect("a SUBACK");
    assert_eq!(first, 0x90, "expected a SUBACK");
    tcp
}

/// Opens [`CONNECTIONS`] agent connections to the embedded broker on `engine`; returns the
/// growth of the resident set per connection, KiB.
async fn kib_per_connection(engine: EmbeddedEngine) -> f64 {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let embedded = start(&EmbeddedOptions {
        engine,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_payload_bytes: 1024 * 1024,
        password_file: None,
        source_id: "maestro".into(),
    })
    .expect("embedded broker");
    let addr = embedded.addr.to_string();
    // Warm up: the runtimes' first allocations are not per connection.
    let warm: Vec<_> = futures_join(&addr, 0..50).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib();
    let conns = futures_join(&addr, 50..50 + CONNECTIONS).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib();
    assert_eq!(conns.len(), CONNECTIONS);
    drop((warm, conns));
    let per = (after.saturating_sub(before)) as f64 / CONNECTIONS as f64;
    println!(
        "{}: {CONNECTIONS} idle subscribed connections, RSS {before} → {after} KiB: {per:.1} KiB per connection",
        engine.as_str()
    );
    per
}

/// Connects `range` agents, 100 at a time.
async fn futures_join(addr: &str, range: std::ops::Range<usize>) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(range.len());
    let ids: Vec<usize> = range.collect();
    for chunk in ids.chunks(100) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let addr = addr.to_owned();
            set.spawn(async move { agent_connection(&addr, i).await });
        }
        while let Some(conn) = set.join_next().await {
            out.push(conn.unwrap());
        }
    }
    out
}

/// rumqttd allocates fixed-size buffers per connection (docs/benchmarks.md): well over
/// 30 KiB each, idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: thousands of sockets; run by hand (module documentation)"]
async fn rumqttd_holds_fixed_buffers_per_idle_connection() {
    let per = kib_per_connection(EmbeddedEngine::Rumqttd).await;
    assert!(per > 30.0, "rumqttd: {per:.1} KiB per connection");
}

/// rmqtt grows its queues as they fill: under 30 KiB per idle connection (open, as here:
/// no gate in front).
#[cfg(feature = "embedded-rmqtt")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: thousands of sockets; run by hand (module documentation)"]
async fn rmqtt_holds_little_per_idle_connection() {
    let per = kib_per_connection(EmbeddedEngine::Rmqtt).await;
    assert!(per < 30.0, "rmqtt: {per:.1} KiB per connection");
}
