//! The transport conformance suite over real brokers:
//! - Debian Mosquitto started on a free port; interrupt = kill the process, resume = start it
//!   again on the same port;
//! - embedded rumqttd behind a TCP proxy; interrupt = cut every proxied connection and refuse
//!   new ones, resume = listen again (rumqttd itself cannot be stopped).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use maestro_broker_mqtt::testing::{Mosquitto, TcpProxy, config_for, embedded_rumqttd};
use maestro_broker_mqtt::{MqttAgent, MqttConfig, MqttSource, MqttTopics};
use maestro_transport::conformance::{self, Harness};
use maestro_transport::{DynAgentTransport, DynSourceTransport};

const MAX_EVENT_BYTES: usize = 256 * 1024;

fn config(addr: &str) -> MqttConfig {
    let mut c = config_for(addr);
    c.max_event_bytes = MAX_EVENT_BYTES;
    c
}

/// The Go agent's layout: its own cluster in both topics.
fn agent_config(addr: &str, consumer: &str) -> MqttConfig {
    let mut c = config(addr);
    c.topics = MqttTopics {
        source_events: format!("sources/maestro/consumers/{consumer}/sourceevents"),
        agent_events: format!("sources/maestro/consumers/{consumer}/agentevents"),
        source_broadcast: Some("sources/maestro/sourcebroadcast".into()),
        agent_broadcast: None,
    };
    c
}

enum Outage {
    Mosquitto(Mosquitto),
    Proxy(TcpProxy),
}

struct MqttHarness {
    addr: String,
    outage: Outage,
}

#[async_trait]
impl Harness for MqttHarness {
    fn max_event_bytes(&self) -> usize {
        MAX_EVENT_BYTES
    }

    async fn source(&mut self) -> DynSourceTransport {
        MqttSource::connect(config(&self.addr), "maestro", "maestro-conformance").await.expect("source")
    }

    async fn agent(&mut self, consumer: &str) -> DynAgentTransport {
        MqttAgent::connect(agent_config(&self.addr, consumer), consumer, &format!("{consumer}-work-agent"))
            .await
            .expect("agent")
    }

    async fn interrupt(&mut self) {
        match &mut self.outage {
            Outage::Mosquitto(m) => m.kill(),
            Outage::Proxy(p) => p.interrupt(),
        }
    }

    async fn resume(&mut self) {
        match &mut self.outage {
            Outage::Mosquitto(m) => tokio::task::block_in_place(|| m.restart()),
            Outage::Proxy(p) => p.resume().await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_passes_the_conformance_suite() {
    let broker = Mosquitto::start();
    let mut harness = MqttHarness { addr: broker.address(), outage: Outage::Mosquitto(broker) };
    tokio::time::timeout(Duration::from_secs(180), conformance::run_all(&mut harness))
        .await
        .expect("the conformance suite finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttd_behind_a_proxy_passes_the_conformance_suite() {
    let port = embedded_rumqttd();
    let proxy = TcpProxy::start(([127, 0, 0, 1], port).into()).await;
    let mut harness = MqttHarness { addr: proxy.address(), outage: Outage::Proxy(proxy) };
    tokio::time::timeout(Duration::from_secs(180), conformance::run_all(&mut harness))
        .await
        .expect("the conformance suite finished in time");
}
