//! The agent broker's limits over real sockets (docs/security.md, "Limits"): Subscribe streams
//! per consumer and in total, Subscribe only for registered consumers, and the listener's
//! connection settings (message size, connection timeout, keepalive, connection age, streams
//! per connection).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use maestro_api::codec::StatusEventBuilder;
use maestro_api::payload::ManifestBundleStatus;
use maestro_api::pb::cloud_event_service_client::CloudEventServiceClient;
use maestro_api::pb::{self, PublishRequest, SubscriptionRequest};
use maestro_api::types::{Action, MANIFEST_BUNDLES};
use maestro_api::{Event, grpc};
use maestro_broker_grpc::{
    ConsumerRegistry, GrpcAgent, GrpcAgentConfig, GrpcBroker, GrpcBrokerConfig, GrpcListenerLimits,
    Registered, RegistryError,
};
use maestro_transport::{AgentTransport, EventHandler, HandlerError, SourceTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(10);

/// A registry over a set of names; `fail` makes it answer with an error holding internal text.
#[derive(Debug, Default)]
struct FakeRegistry {
    names: Mutex<HashSet<String>>,
    fail: AtomicBool,
    lookups: AtomicUsize,
}

impl FakeRegistry {
    fn register(&self, name: &str) {
        self.names.lock().unwrap().insert(name.to_owned());
    }
}

impl ConsumerRegistry for FakeRegistry {
    fn is_registered<'a>(&'a self, consumer: &'a str) -> Registered<'a> {
        Box::pin(async move {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(RegistryError("pool timed out at db-internal-host:5432".into()));
            }
            Ok(self.names.lock().unwrap().contains(consumer))
        })
    }
}

struct Ignore;

#[async_trait]
impl EventHandler for Ignore {
    async fn handle(&self, _event: &Event) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn broker(config: GrpcBrokerConfig) -> Arc<GrpcBroker> {
    GrpcBroker::bind(GrpcBrokerConfig { bind_address: loopback(), heartbeat_interval: None, ..config })
        .await
        .expect("bind")
}

async fn raw_client(broker: &GrpcBroker) -> CloudEventServiceClient<Channel> {
    CloudEventServiceClient::connect(format!("http://{}", broker.local_addr())).await.expect("connect")
}

fn sub_request(cluster: &str) -> SubscriptionRequest {
    SubscriptionRequest {
        source: String::new(),
        cluster_name: cluster.to_owned(),
        data_type: MANIFEST_BUNDLES.to_owned(),
    }
}

async fn subscribe(
    client: &mut CloudEventServiceClient<Channel>,
    cluster: &str,
) -> Result<tonic::Streaming<pb::CloudEvent>, tonic::Status> {
    tokio::time::timeout(DEADLINE, client.subscribe(sub_request(cluster)))
        .await
        .expect("the broker answers Subscribe in time")
        .map(tonic::Response::into_inner)
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
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

/// Reads `tcp` until the peer closes it (or resets it); returns when that happened. Panics after
/// [`DEADLINE`].
async fn read_until_closed(tcp: &mut tokio::net::TcpStream) -> Instant {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(DEADLINE, tcp.read(&mut buf))
            .await
            .expect("the server closed the connection")
        {
            Ok(0) | Err(_) => return Instant::now(),
            Ok(_) => {}
        }
    }
}

/// A consumer's third stream and a fourth stream in total are refused with
/// `RESOURCE_EXHAUSTED` naming the limit; a stream that ends frees its slot for both limits.
/// Without a registry any consumer name is accepted.
#[tokio::test]
async fn stream_limits_refuse_and_free_slots() {
    let broker = broker(GrpcBrokerConfig {
        max_streams_per_consumer: 2,
        max_streams: 3,
        ..GrpcBrokerConfig::default()
    })
    .await;
    let mut client = raw_client(&broker).await;
    let first = subscribe(&mut client, "c1").await.expect("first c1 stream");
    let _second = subscribe(&mut client, "c1").await.expect("second c1 stream");
    let err = subscribe(&mut client, "c1").await.expect_err("third c1 stream");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("\"c1\"") && err.message().contains("limit per consumer"), "{err:?}");

    let _other = subscribe(&mut client, "made-up-cluster").await.expect("any name without a registry");
    let err = subscribe(&mut client, "c2").await.expect_err("a fourth stream in total");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("3 concurrent Subscribe streams in total"), "{err:?}");
    assert_eq!(broker.stream_count(), 3);

    drop(first);
    wait_until("the ended stream's slot is freed", || broker.stream_count() == 2).await;
    let _again = subscribe(&mut client, "c1").await.expect("c1 has a free slot again");
    assert_eq!(broker.stream_count(), 3);
    broker.close().await;
}

/// With a registry, a Subscribe for an unknown consumer is refused with `NOT_FOUND` naming it
/// and accepted once the consumer is registered; a registry failure is `UNAVAILABLE` without its
/// internal text.
#[tokio::test]
async fn only_registered_consumers_may_subscribe() {
    let registry = Arc::new(FakeRegistry::default());
    let consumers = Some(registry.clone() as Arc<dyn ConsumerRegistry>);
    let broker = broker(GrpcBrokerConfig { consumers, ..GrpcBrokerConfig::default() }).await;
    let mut client = raw_client(&broker).await;

    let err = subscribe(&mut client, "cluster-x").await.expect_err("unregistered");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("\"cluster-x\"") && err.message().contains("not registered"), "{err:?}");
    assert_eq!(broker.stream_count(), 0);

    registry.register("cluster-x");
    let _stream = subscribe(&mut client, "cluster-x").await.expect("registered now");
    registry.fail.store(true, Ordering::SeqCst);
    let err = subscribe(&mut client, "cluster-x").await.expect_err("the registry fails");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(!err.message().contains("db-internal-host"), "internal text leaked: {err:?}");
    broker.close().await;
}

/// An agent started before its consumer is registered keeps retrying its Subscribe with backoff
/// and subscribes once the consumer is registered.
#[tokio::test]
async fn an_agent_subscribes_once_its_consumer_is_registered() {
    let registry = Arc::new(FakeRegistry::default());
    let consumers = Some(registry.clone() as Arc<dyn ConsumerRegistry>);
    let broker = broker(GrpcBrokerConfig { consumers, ..GrpcBrokerConfig::default() }).await;
    let mut config = GrpcAgentConfig::new(broker.local_addr().to_string());
    config.reconnect_initial_backoff = Duration::from_millis(20);
    config.reconnect_max_backoff = Duration::from_millis(100);
    let agent = GrpcAgent::new(config, "late", "late-agent").expect("agent");
    agent.start(Arc::new(Ignore)).await.expect("start");
    wait_until("two refused attempts", || registry.lookups.load(Ordering::SeqCst) >= 2).await;
    assert!(!agent.is_connected());

    registry.register("late");
    wait_until("the agent subscribed", || agent.is_connected()).await;
    assert_eq!(broker.connected_consumers(), ["late"]);
    agent.close().await;
    broker.close().await;
}

/// A Publish larger than `max_receive_message_bytes` fails with `OUT_OF_RANGE` naming the limit;
/// a smaller one is handled.
#[tokio::test]
async fn oversized_messages_are_refused() {
    let listener =
        GrpcListenerLimits { max_receive_message_bytes: 64 * 1024, ..GrpcListenerLimits::default() };
    let broker = broker(GrpcBrokerConfig { listener, ..GrpcBrokerConfig::default() }).await;
    broker.start(Arc::new(Ignore)).await.expect("start");
    let mut client = raw_client(&broker).await;
    client
        .publish(PublishRequest { event: Some(grpc::to_proto(&status_event())) })
        .await
        .expect("small publish");

    let mut big = grpc::to_proto(&status_event());
    big.data = Some(pb::cloud_event::Data::BinaryData(vec![b' '; 100 * 1024]));
    let err = client.publish(PublishRequest { event: Some(big) }).await.expect_err("over the limit");
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("65536"), "{err:?}");
    broker.close().await;
}

/// A connection that never opens HTTP/2 is closed after the connection timeout; one that did
/// is kept past it.
#[tokio::test]
async fn silent_connections_are_closed_after_the_connection_timeout() {
    let timeout = Duration::from_millis(300);
    let listener = GrpcListenerLimits { connection_timeout: Some(timeout), ..GrpcListenerLimits::default() };
    let broker = broker(GrpcBrokerConfig { listener, ..GrpcBrokerConfig::default() }).await;
    let mut client = raw_client(&broker).await;
    let mut stream = subscribe(&mut client, "c1").await.expect("a real client");

    let start = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(broker.local_addr()).await.expect("connect");
    let closed = read_until_closed(&mut silent).await;
    assert!(closed - start >= timeout, "closed after {:?}, before the timeout", closed - start);

    tokio::time::sleep(timeout * 2).await; // the real client's connection is past the timeout
    let spec = maestro_api::codec::SpecEventBuilder::new("maestro", "r1", 1, "c1").build();
    broker.publish(&spec).await.expect("publish");
    let got = tokio::time::timeout(DEADLINE, stream.message()).await.expect("in time").expect("stream open");
    assert!(got.is_some(), "the open connection still carries its stream");
    broker.close().await;
}

/// A client that opens HTTP/2 and then never answers the server's PING is disconnected after
/// the ping interval plus the ping timeout.
#[tokio::test]
async fn unanswered_pings_close_the_connection() {
    let listener = GrpcListenerLimits {
        ping_interval: Some(Duration::from_millis(200)),
        ping_timeout: Duration::from_millis(200),
        ..GrpcListenerLimits::default()
    };
    let broker = broker(GrpcBrokerConfig { listener, ..GrpcBrokerConfig::default() }).await;
    let mut tcp = tokio::net::TcpStream::connect(broker.local_addr()).await.expect("connect");
    let start = Instant::now();
    // The connection preface and an empty SETTINGS frame; PINGs are read but never answered.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface");
    let closed = read_until_closed(&mut tcp).await;
    assert!(closed - start >= Duration::from_millis(400), "closed after {:?}", closed - start);
    broker.close().await;
}

/// With a connection age and a grace, a connection (and its Subscribe stream) is cut at age +
/// grace, so the agent reconnects.
#[tokio::test]
async fn connections_are_cut_at_max_age_plus_grace() {
    let listener = GrpcListenerLimits {
        max_connection_age: Some(Duration::from_millis(300)),
        max_connection_age_grace: Some(Duration::from_millis(200)),
        ..GrpcListenerLimits::default()
    };
    let broker = broker(GrpcBrokerConfig { listener, ..GrpcBrokerConfig::default() }).await;
    let mut client = raw_client(&broker).await;
    let start = Instant::now();
    let mut stream = subscribe(&mut client, "c1").await.expect("subscribe");
    let ended = tokio::time::timeout(DEADLINE, stream.message()).await.expect("the stream ends in time");
    assert!(!matches!(ended, Ok(Some(_))), "no event was sent: {ended:?}");
    assert!(start.elapsed() >= Duration::from_millis(500), "cut after {:?}", start.elapsed());
    wait_until("the cut stream's slot is freed", || broker.stream_count() == 0).await;
    broker.close().await;
}

/// `max_concurrent_streams` is the HTTP/2 per-connection setting: with 1, a second Subscribe on
/// the same connection waits until the first stream ends.
#[tokio::test]
async fn streams_per_connection_are_limited() {
    let listener = GrpcListenerLimits { max_concurrent_streams: 1, ..GrpcListenerLimits::default() };
    let broker = broker(GrpcBrokerConfig { listener, ..GrpcBrokerConfig::default() }).await;
    let mut client = raw_client(&broker).await;
    let first = subscribe(&mut client, "c1").await.expect("first stream");
    let mut second_client = client.clone();
    let second = tokio::spawn(async move { second_client.subscribe(sub_request("c2")).await });
    tokio::time::sleep(Duration::from_millis(500)).await; // the second stream must still wait
    assert!(!second.is_finished(), "a second stream was opened on the connection");
    assert_eq!(broker.stream_count(), 1);
    drop(first);
    let second = tokio::time::timeout(DEADLINE, second).await.expect("in time").expect("task");
    second.expect("the second stream opens once the first ended");
    broker.close().await;
}
