//! The gRPC listeners' limits on a real `maestro server` (SQLite, loopback ports;
//! docs/security.md, "Limits"): the agent broker accepts Subscribe streams only for registered
//! consumers (unless opted out), the source gRPC API limits Subscribe streams per source and in
//! total, and both listeners refuse messages over the receive limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use maestro::broker::BrokerKind;
use maestro::server::{ServerSettings, Started};
use maestro_api::codec::StatusEventBuilder;
use maestro_api::payload::ManifestBundleStatus;
use maestro_api::pb::cloud_event_service_client::CloudEventServiceClient;
use maestro_api::pb::{self, PublishRequest, SubscriptionRequest};
use maestro_api::types::{Action, MANIFEST_BUNDLES};
use maestro_api::{Event, grpc};
use maestro_broker_grpc::{GrpcAgent, GrpcAgentConfig};
use maestro_client::RestClient;
use maestro_transport::{AgentTransport, EventHandler, HandlerError};
use tonic::Code;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Default settings on a SQLite file and loopback ports, changed by `tune`.
async fn server(tune: impl FnOnce(&mut ServerSettings)) -> (Started, tempfile::TempDir) {
    maestro_tests::logging();
    let (dir, db_url) = maestro_store::testing::sqlite_file().await;
    let mut settings = maestro::server::defaults(&db_url, BrokerKind::Grpc);
    settings.broker.grpc_bind = loopback();
    settings.server.http_addr = loopback();
    settings.server.grpc_addr = loopback();
    tune(&mut settings);
    (maestro::server::start(&settings).await.expect("server starts"), dir)
}

async fn client(addr: SocketAddr) -> CloudEventServiceClient<Channel> {
    CloudEventServiceClient::connect(format!("http://{addr}")).await.expect("connect")
}

fn broker_addr(started: &Started) -> SocketAddr {
    started.broker_addr.expect("the gRPC broker's address")
}

fn rest(started: &Started) -> RestClient {
    RestClient::new(&format!("http://{}", started.server.http_addr)).expect("rest")
}

/// A Subscribe for a consumer (agent broker) or a source (source gRPC API).
fn subscription(source: &str, cluster: &str) -> SubscriptionRequest {
    SubscriptionRequest {
        source: source.to_owned(),
        cluster_name: cluster.to_owned(),
        data_type: MANIFEST_BUNDLES.to_owned(),
    }
}

async fn subscribe(
    client: &mut CloudEventServiceClient<Channel>,
    req: SubscriptionRequest,
) -> Result<tonic::Streaming<pb::CloudEvent>, tonic::Status> {
    tokio::time::timeout(DEADLINE, client.subscribe(req))
        .await
        .expect("Subscribe answered in time")
        .map(tonic::Response::into_inner)
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Ignore;

#[async_trait]
impl EventHandler for Ignore {
    async fn handle(&self, _event: &Event) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn status_event() -> Event {
    StatusEventBuilder {
        source: "c1-agent",
        resource_id: "r1",
        resource_version: 1,
        cluster_name: "c1",
        original_source: "maestro",
        sequence_id: "1",
        status_hash: "0",
        metadata: None,
        action: Action::Update,
    }
    .build(&ManifestBundleStatus::default())
}

/// By default the agent broker refuses a Subscribe for a consumer the store does not have
/// (`NOT_FOUND` naming it); an agent started before its consumer is registered keeps retrying
/// and subscribes once the consumer is created over REST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_consumers_are_refused_until_registered() {
    let (started, _db) = server(|_| {}).await;
    let mut raw = client(broker_addr(&started)).await;
    let err = subscribe(&mut raw, subscription("", "cluster-late")).await.expect_err("unregistered");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("\"cluster-late\""), "{err:?}");

    let mut config = GrpcAgentConfig::new(broker_addr(&started).to_string());
    config.reconnect_initial_backoff = Duration::from_millis(20);
    config.reconnect_max_backoff = Duration::from_millis(200);
    let agent = GrpcAgent::new(config, "cluster-late", "cluster-late-agent").expect("agent");
    agent.start(Arc::new(Ignore)).await.expect("start");

    rest(&started).create_consumer("cluster-late", &Default::default()).await.expect("consumer");
    wait_until("the waiting agent subscribed", || agent.is_connected()).await;
    subscribe(&mut raw, subscription("", "cluster-late")).await.expect("registered now");
    agent.close().await;
    started.server.shutdown().await;
}

/// `--grpc-broker-allow-unregistered-consumers` (`allow_unregistered_consumers`) lets any
/// consumer name subscribe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opt_out_accepts_unregistered_consumers() {
    let (started, _db) = server(|s| s.grpc_broker.allow_unregistered_consumers = true).await;
    let mut raw = client(broker_addr(&started)).await;
    subscribe(&mut raw, subscription("", "never-registered")).await.expect("accepted with the opt-out");
    started.server.shutdown().await;
}

/// The source gRPC API refuses a source's third Subscribe stream and a fourth in total with
/// `RESOURCE_EXHAUSTED` naming the limit; a stream that ends frees its slot. The server then
/// shuts down although streams are still open (it ends them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_subscriptions_are_limited_per_source_and_in_total() {
    let (started, _db) = server(|s| {
        s.server.grpc_limits.max_subscriptions_per_source = 2;
        s.server.grpc_limits.max_subscriptions = 3;
    })
    .await;
    let mut raw = client(started.server.grpc_addr).await;
    let first = subscribe(&mut raw, subscription("s1", "")).await.expect("first s1 stream");
    let _second = subscribe(&mut raw, subscription("s1", "")).await.expect("second s1 stream");
    let err = subscribe(&mut raw, subscription("s1", "")).await.expect_err("third s1 stream");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("\"s1\"") && err.message().contains("limit per source"), "{err:?}");
    let _other = subscribe(&mut raw, subscription("s2", "")).await.expect("s2 stream");
    let err = subscribe(&mut raw, subscription("s3", "")).await.expect_err("a fourth stream in total");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("3 concurrent Subscribe streams in total"), "{err:?}");

    drop(first);
    let start = Instant::now();
    loop {
        match subscribe(&mut raw, subscription("s1", "")).await {
            Ok(_stream) => break,
            Err(e) => assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}"),
        }
        assert!(start.elapsed() < DEADLINE, "the ended stream's slot was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.server.shutdown().await;
}

/// Both listeners refuse a message over `--grpc-max-receive-message-size` with `OUT_OF_RANGE`
/// before handling it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_on_both_listeners() {
    let (started, _db) = server(|s| {
        s.server.grpc_limits.listener.max_receive_message_bytes = 64 * 1024;
        s.grpc_broker.listener.max_receive_message_bytes = 64 * 1024;
    })
    .await;
    let mut big = grpc::to_proto(&status_event());
    big.data = Some(pb::cloud_event::Data::BinaryData(vec![b' '; 100 * 1024]));
    for (name, addr) in [("source gRPC", started.server.grpc_addr), ("agent broker", broker_addr(&started))] {
        let mut raw = client(addr).await;
        let err = raw.publish(PublishRequest { event: Some(big.clone()) }).await.expect_err(name);
        assert_eq!(err.code(), Code::OutOfRange, "{name}: {err:?}");
        assert!(err.message().contains("65536"), "{name}: {err:?}");
    }
    started.server.shutdown().await;
}
