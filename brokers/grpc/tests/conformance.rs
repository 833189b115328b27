//! The transport conformance suite over real sockets: the hosted broker as the source, two
//! [`GrpcAgent`] clients as agents; interrupt = [`GrpcBroker::pause`].

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use maestro_broker_grpc::{GrpcAgent, GrpcAgentConfig, GrpcBroker, GrpcBrokerConfig};
use maestro_transport::conformance::{self, Harness};
use maestro_transport::{DynAgentTransport, DynSourceTransport};

const MAX_EVENT_BYTES: usize = 256 * 1024;

struct GrpcHarness {
    broker: Arc<GrpcBroker>,
}

#[async_trait]
impl Harness for GrpcHarness {
    fn max_event_bytes(&self) -> usize {
        MAX_EVENT_BYTES
    }

    async fn source(&mut self) -> DynSourceTransport {
        self.broker.clone()
    }

    async fn agent(&mut self, consumer: &str) -> DynAgentTransport {
        let mut config = GrpcAgentConfig::new(self.broker.local_addr().to_string());
        config.reconnect_initial_backoff = Duration::from_millis(50);
        config.reconnect_max_backoff = Duration::from_millis(200);
        config.max_event_bytes = MAX_EVENT_BYTES;
        GrpcAgent::new(config, consumer, &format!("{consumer}-agent")).expect("agent")
    }

    async fn interrupt(&mut self) {
        self.broker.pause();
    }

    async fn resume(&mut self) {
        self.broker.resume();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_broker_passes_the_conformance_suite() {
    let config = GrpcBrokerConfig {
        bind_address: SocketAddr::from(([127, 0, 0, 1], 0)),
        heartbeat_interval: Some(Duration::from_millis(500)),
        max_event_bytes: MAX_EVENT_BYTES,
        ..GrpcBrokerConfig::default()
    };
    let broker = GrpcBroker::bind(config).await.expect("bind");
    let mut harness = GrpcHarness { broker: broker.clone() };
    tokio::time::timeout(Duration::from_secs(120), conformance::run_all(&mut harness))
        .await
        .expect("the conformance suite finished in time");
    let err = maestro_transport::SourceTransport::publish(&*broker, &spec_for("conformance-a")).await;
    assert!(matches!(err, Err(maestro_transport::Error::Closed { .. })), "closed broker: {err:?}");
}

fn spec_for(cluster: &str) -> maestro_api::Event {
    maestro_api::codec::SpecEventBuilder::new("maestro", "r1", 1, cluster).build()
}
