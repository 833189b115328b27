//! Hosted broker and agent client behaviour over real sockets (docs/protocol.md §7.1.3).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use maestro_api::codec::{SpecEventBuilder, StatusEventBuilder};
use maestro_api::payload::ManifestBundleStatus;
use maestro_api::pb::cloud_event_attribute_value::Attr;
use maestro_api::pb::cloud_event_service_client::CloudEventServiceClient;
use maestro_api::pb::{self, CloudEventAttributeValue, PublishRequest, SubscriptionRequest};
use maestro_api::types::{Action, HEARTBEAT, MANIFEST_BUNDLES};
use maestro_api::{AttributesReader, Event, ext, grpc};
use maestro_broker_grpc::{GrpcAgent, GrpcAgentConfig, GrpcBroker, GrpcBrokerConfig, SUBSCRIPTION_ID_HEADER};
use maestro_transport::{AgentTransport, Error, EventHandler, HandlerError, SourceTransport};
use tonic::Code;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(10);

async fn broker(heartbeat: Option<Duration>) -> Arc<GrpcBroker> {
    let config = GrpcBrokerConfig {
        bind_address: SocketAddr::from(([127, 0, 0, 1], 0)),
        heartbeat_interval: heartbeat,
        ..GrpcBrokerConfig::default()
    };
    GrpcBroker::bind(config).await.expect("bind")
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

fn agent_config(broker: &GrpcBroker) -> GrpcAgentConfig {
    let mut config = GrpcAgentConfig::new(broker.local_addr().to_string());
    config.reconnect_initial_backoff = Duration::from_millis(50);
    config.reconnect_max_backoff = Duration::from_millis(100);
    config
}

fn status_event(id: &str) -> Event {
    let mut ev = StatusEventBuilder {
        source: "test-agent",
        resource_id: "r1",
        resource_version: 1,
        cluster_name: "c1",
        original_source: "maestro",
        sequence_id: "1",
        status_hash: "0",
        metadata: None,
        action: Action::Update,
    }
    .build(&ManifestBundleStatus::default());
    maestro_api::AttributesWriter::set_id(&mut ev, id.to_owned());
    ev
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Counts calls; answers with a fixed result.
struct Counting {
    calls: AtomicUsize,
    answer: Result<(), HandlerError>,
}

impl Counting {
    fn new(answer: Result<(), HandlerError>) -> Arc<Self> {
        Arc::new(Counting { calls: AtomicUsize::new(0), answer })
    }
}

#[async_trait]
impl EventHandler for Counting {
    async fn handle(&self, _event: &Event) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.answer.clone()
    }
}

#[tokio::test]
async fn subscription_id_header_arrives_before_any_event() {
    let broker = broker(None).await;
    let mut client = raw_client(&broker).await;
    let response = tokio::time::timeout(DEADLINE, client.subscribe(sub_request("c1")))
        .await
        .expect("headers arrive although no event was sent")
        .expect("subscribe");
    let id = response.metadata().get(SUBSCRIPTION_ID_HEADER).expect("subscription-id header");
    let id = uuid::Uuid::parse_str(id.to_str().unwrap()).expect("a uuid");
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(broker.connected_consumers(), vec!["c1".to_owned()]);

    let spec = SpecEventBuilder::new("maestro", "r1", 2, "c1").build();
    broker.publish(&spec).await.expect("publish");
    let mut stream = response.into_inner();
    let msg = tokio::time::timeout(DEADLINE, stream.message()).await.unwrap().unwrap().expect("an event");
    let got = grpc::from_proto(msg).expect("decodes");
    assert_eq!(got.id(), spec.id());
    assert_eq!(ext::get_str(&got, ext::CLUSTER_NAME).as_deref(), Some("c1"));

    let other = SpecEventBuilder::new("maestro", "r1", 2, "nobody").build();
    assert!(matches!(broker.publish(&other).await, Err(Error::NoSubscriber { .. })));
    broker.close().await;
    broker.close().await;
}

#[tokio::test]
async fn heartbeats_arrive_at_the_configured_interval() {
    let broker = broker(Some(Duration::from_millis(200))).await;
    let mut client = raw_client(&broker).await;
    let start = Instant::now();
    let mut stream = client.subscribe(sub_request("c1")).await.expect("subscribe").into_inner();
    let mut at = Vec::new();
    for _ in 0..3 {
        let msg =
            tokio::time::timeout(DEADLINE, stream.message()).await.unwrap().unwrap().expect("heartbeat");
        assert_eq!(msg.r#type, HEARTBEAT);
        assert_eq!(msg.spec_version, "1.0");
        assert!(!msg.id.is_empty() && msg.attributes.is_empty() && msg.data.is_none());
        at.push(start.elapsed());
    }
    assert!(at[0] >= Duration::from_millis(150), "first heartbeat after one interval: {at:?}");
    assert!(at[2] >= Duration::from_millis(550), "three intervals: {at:?}");
    assert!(at[2] < Duration::from_secs(3), "heartbeats are not late: {at:?}");
}

#[tokio::test]
async fn subscribe_rejects_bad_requests() {
    let broker = broker(None).await;
    let mut client = raw_client(&broker).await;
    let err = client.subscribe(sub_request("")).await.expect_err("empty cluster_name");
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut req = sub_request("c1");
    req.data_type = "io.example.v1.things".into();
    let err = client.subscribe(req).await.expect_err("unknown data type");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(broker.connected_consumers().is_empty());
}

fn json_attrs() -> HashMap<String, CloudEventAttributeValue> {
    HashMap::from([(
        "contenttype".to_owned(),
        CloudEventAttributeValue { attr: Some(Attr::CeString("application/json".into())) },
    )])
}

#[tokio::test]
async fn malformed_publishes_are_invalid_argument_and_never_reach_the_handler() {
    let broker = broker(None).await;
    let handler = Counting::new(Ok(()));
    broker.start(handler.clone()).await.expect("start");
    let mut client = raw_client(&broker).await;
    let status_type = format!("{MANIFEST_BUNDLES}.status.update_request");
    let good = grpc::to_proto(&status_event("ok-1"));
    let cases: Vec<(&str, Option<pb::CloudEvent>)> = vec![
        ("no event", None),
        ("empty spec_version", Some(pb::CloudEvent { spec_version: String::new(), ..good.clone() })),
        (
            "bad JSON data",
            Some(pb::CloudEvent {
                id: "bad-json".into(),
                source: "agent".into(),
                spec_version: "1.0".into(),
                r#type: status_type.clone(),
                attributes: json_attrs(),
                data: Some(pb::cloud_event::Data::BinaryData(b"{oops".to_vec())),
            }),
        ),
        ("unknown type", Some(pb::CloudEvent { r#type: "io.example.unknown".into(), ..good.clone() })),
        (
            "other data type",
            Some(pb::CloudEvent {
                r#type: "io.example.v1.things.status.update_request".into(),
                ..good.clone()
            }),
        ),
    ];
    for (what, event) in cases {
        let err = client.publish(PublishRequest { event }).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(!err.message().is_empty(), "{what}: the message names the problem");
    }
    client.publish(PublishRequest { event: Some(grpc::heartbeat()) }).await.expect("heartbeats are ignored");
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0, "the handler was never called");
    client.publish(PublishRequest { event: Some(good) }).await.expect("a valid status");
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn handler_outcomes_map_to_grpc_codes() {
    let broker = broker(None).await;
    let mut client = raw_client(&broker).await;
    let event = Some(grpc::to_proto(&status_event("s-1")));
    let err = client.publish(PublishRequest { event: event.clone() }).await.expect_err("not started");
    assert_eq!(err.code(), Code::Unavailable);

    broker.start(Counting::new(Err(HandlerError::Permanent("bad \"status\"".into())))).await.expect("start");
    let err = client.publish(PublishRequest { event }).await.expect_err("dropped");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let body: serde_json::Value = serde_json::from_str(err.message()).expect("JSON message");
    assert_eq!(body["error"], "bad \"status\"");
}

#[tokio::test]
async fn agent_publish_maps_errors() {
    let broker = broker(None).await;
    let agent = GrpcAgent::new(agent_config(&broker), "c1", "c1-agent").expect("agent");
    let err = agent.publish(&status_event("early")).await.expect_err("not connected");
    assert!(matches!(err, Error::Disconnected { .. }), "{err}");
    agent.start(Counting::new(Ok(()))).await.expect("start");
    assert!(matches!(agent.start(Counting::new(Ok(()))).await, Err(Error::AlreadyStarted { .. })));
    let mut sig = agent.subscribed();
    tokio::time::timeout(DEADLINE, sig.wait_for(|n| *n >= 1)).await.unwrap().unwrap();
    assert!(agent.is_connected());

    let err = agent.publish(&status_event("no-handler")).await.expect_err("broker not started");
    assert!(err.is_retryable(), "{err}");
    broker.start(Counting::new(Err(HandlerError::Permanent("nope".into())))).await.expect("start");
    let err = agent.publish(&status_event("refused")).await.expect_err("refused");
    assert!(matches!(err, Error::Rejected { retryable: false, .. }), "{err}");

    agent.close().await;
    agent.close().await;
    assert!(matches!(agent.publish(&status_event("x")).await, Err(Error::Closed { .. })));
    wait_until("the broker dropped the closed agent", || broker.connected_consumers().is_empty()).await;
}

#[tokio::test]
async fn a_departed_client_is_removed() {
    let broker = broker(None).await;
    let mut client = raw_client(&broker).await;
    let stream = client.subscribe(sub_request("c1")).await.expect("subscribe").into_inner();
    assert_eq!(broker.connected_consumers(), vec!["c1".to_owned()]);
    drop(stream);
    drop(client);
    wait_until("subscriber removal", || broker.connected_consumers().is_empty()).await;
    let spec = SpecEventBuilder::new("maestro", "r1", 1, "c1").build();
    assert!(matches!(broker.publish(&spec).await, Err(Error::NoSubscriber { .. })));
}

#[tokio::test]
async fn pause_cuts_connections_and_resume_serves_the_same_address() {
    let broker = broker(None).await;
    let addr = broker.local_addr();
    let mut client = raw_client(&broker).await;
    let mut stream = client.subscribe(sub_request("c1")).await.expect("subscribe").into_inner();
    let mut sig = broker.subscribed();
    assert_eq!(*sig.borrow_and_update(), 1);
    broker.pause();
    let end = tokio::time::timeout(DEADLINE, stream.message()).await.expect("the stream ends");
    assert!(!matches!(end, Ok(Some(_))), "no event after pause: {end:?}");
    assert!(broker.connected_consumers().is_empty());
    assert!(
        CloudEventServiceClient::connect(format!("http://{addr}")).await.is_err()
            || raw_client(&broker).await.subscribe(sub_request("c1")).await.is_err()
    );
    broker.resume();
    assert_eq!(*sig.borrow_and_update(), 2);
    let mut client = raw_client(&broker).await;
    client.subscribe(sub_request("c1")).await.expect("subscribe after resume");
    assert_eq!(broker.local_addr(), addr);
}

#[tokio::test]
async fn health_timeout_makes_the_agent_reconnect() {
    let broker = broker(None).await;
    let mut config = agent_config(&broker);
    config.server_healthiness_timeout = Some(Duration::from_millis(300));
    let agent = GrpcAgent::new(config, "c1", "c1-agent").expect("agent");
    agent.start(Counting::new(Ok(()))).await.expect("start");
    let mut sig = agent.subscribed();
    tokio::time::timeout(DEADLINE, sig.wait_for(|n| *n >= 3))
        .await
        .expect("the silent server is detected and the agent resubscribes")
        .unwrap();
    agent.close().await;
}

#[tokio::test]
async fn heartbeats_keep_a_watched_agent_connected() {
    let broker = broker(Some(Duration::from_millis(100))).await;
    let mut config = agent_config(&broker);
    config.server_healthiness_timeout = Some(Duration::from_millis(1000));
    let agent = GrpcAgent::new(config, "c1", "c1-agent").expect("agent");
    agent.start(Counting::new(Ok(()))).await.expect("start");
    let mut sig = agent.subscribed();
    tokio::time::timeout(DEADLINE, sig.wait_for(|n| *n >= 1)).await.unwrap().unwrap();
    // A window of two health timeouts: heartbeats must keep the stream alive throughout.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(*sig.borrow(), 1, "no reconnect while heartbeats flow");
    agent.close().await;
}

#[tokio::test]
async fn oversized_agent_events_are_refused() {
    let config = GrpcBrokerConfig {
        bind_address: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_event_bytes: 4096,
        ..GrpcBrokerConfig::default()
    };
    let broker = GrpcBroker::bind(config).await.expect("bind");
    let handler = Counting::new(Ok(()));
    broker.start(handler.clone()).await.expect("start");
    let mut event = status_event("big");
    event.set_data("application/json", maestro_api::Data::Json(serde_json::json!({"pad": "x".repeat(8192)})));
    let mut client = raw_client(&broker).await;
    let err =
        client.publish(PublishRequest { event: Some(grpc::to_proto(&event)) }).await.expect_err("too big");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
}

/// Keeps every event it is handed.
#[derive(Default)]
struct Keeping {
    events: std::sync::Mutex<Vec<Event>>,
}

#[async_trait]
impl EventHandler for Keeping {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }
}

/// Events far larger than the HTTP/2 codec's initial buffers (h2's 8 KiB read and 16 KiB write
/// buffers, 4 KiB HPACK scratch) cross both ways intact: the buffers grow on demand: megabytes
/// of DATA frames each way, and 8 KiB of request metadata (HEADERS that the server's HPACK
/// decoder unpacks).
#[tokio::test]
async fn events_larger_than_the_codec_buffers_cross_both_ways_intact() {
    let broker = broker(None).await;
    let handler = Arc::new(Keeping::default());
    broker.start(handler.clone()).await.expect("start");
    let mut client = raw_client(&broker).await;
    let mut stream = client.subscribe(sub_request("c1")).await.expect("subscribe").into_inner();

    let blob: String = (0..3 * 1024 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let mut spec = SpecEventBuilder::new("maestro", "r1", 2, "c1").build();
    spec.set_data("application/json", maestro_api::Data::Json(serde_json::json!({ "blob": blob })));
    broker.publish(&spec).await.expect("publish");
    let msg = tokio::time::timeout(DEADLINE, stream.message()).await.unwrap().unwrap().expect("an event");
    assert_eq!(grpc::from_proto(msg).expect("decodes"), spec);

    let mut status = status_event("big-status");
    status.set_data(
        "application/json",
        maestro_api::Data::Json(serde_json::json!({ "blob": &blob[..1 << 20] })),
    );
    let mut request = tonic::Request::new(PublishRequest { event: Some(grpc::to_proto(&status)) });
    request.metadata_mut().insert("x-padding", blob[..8192].parse().unwrap());
    client.publish(request).await.expect("publish");
    assert_eq!(handler.events.lock().unwrap().as_slice(), &[status]);
    broker.close().await;
}

/// A burst of spec events larger than one data frame (the body sends up to 32 KiB of ready
/// events per frame) arrives complete and in order; when the broker then drops the subscriber
/// because its buffer stayed full (the client stopped reading), the events already taken are
/// still delivered and the stream ends cleanly (`grpc-status: 0`), with no event lost in
/// between.
#[tokio::test]
async fn bursts_cross_in_order_and_a_dropped_subscriber_ends_cleanly() {
    let config = GrpcBrokerConfig {
        bind_address: SocketAddr::from(([127, 0, 0, 1], 0)),
        heartbeat_interval: None,
        stream_buffer: 8,
        send_timeout: Duration::from_millis(200),
        ..GrpcBrokerConfig::default()
    };
    let broker = GrpcBroker::bind(config).await.expect("bind");
    broker.start(Counting::new(Ok(()))).await.expect("start");
    let mut client = raw_client(&broker).await;
    let mut stream = client.subscribe(sub_request("c1")).await.expect("subscribe").into_inner();
    let specs: Vec<Event> = (1..=2_000)
        .map(|version| {
            let mut spec = SpecEventBuilder::new("maestro", "r1", version, "c1").build();
            let pad = "x".repeat(4096);
            spec.set_data("application/json", maestro_api::Data::Json(serde_json::json!({ "pad": pad })));
            spec
        })
        .collect();

    let mut published = 0;
    for spec in &specs {
        match broker.publish(spec).await {
            Ok(()) => published += 1,
            Err(Error::NoSubscriber { .. }) => break,
            Err(e) => panic!("publish {published}: {e}"),
        }
    }
    assert!(published > 16, "more than the buffer and one frame were taken: {published}");
    assert!(published < specs.len(), "the subscriber that stopped reading was dropped");
    for spec in &specs[..published] {
        let msg = tokio::time::timeout(DEADLINE, stream.message()).await.unwrap().expect("no error");
        assert_eq!(&grpc::from_proto(msg.expect("an event")).expect("decodes"), spec);
    }
    let end = tokio::time::timeout(DEADLINE, stream.message()).await.unwrap();
    assert!(matches!(end, Ok(None)), "the stream ends with status OK: {end:?}");
    broker.close().await;
}

/// Agents over mutual TLS (Go's `--grpc-broker-tls-cert-file`, `--grpc-broker-tls-key-file`,
/// `--grpc-broker-client-ca-file`; the agent's `caFile`, `clientCertFile`, `clientKeyFile`),
/// with rcgen certificates: an agent with a certificate of the client CA subscribes and gets
/// its spec; a client with no certificate, or over plaintext, gets no stream.
#[tokio::test]
async fn agents_over_mutual_tls() {
    use maestro_tls::ServerTlsFiles;
    use maestro_tls::testing::{TestPki, write_pair};
    let dir = tempfile::tempdir().expect("dir");
    let pki = TestPki::new();
    let (cert, key) = write_pair(dir.path(), "broker", &pki.server(&["localhost"]));
    let ca = pki.write_ca(dir.path());
    let config = GrpcBrokerConfig {
        bind_address: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: Some(ServerTlsFiles { cert, key, client_ca: Some(ca.clone()) }),
        ..GrpcBrokerConfig::default()
    };
    let broker = GrpcBroker::bind(config).await.expect("bind with TLS");
    broker.start(Counting::new(Ok(()))).await.expect("start");
    let url = format!("localhost:{}", broker.local_addr().port());

    let (agent_cert, agent_key) = write_pair(dir.path(), "agent", &pki.client("c1", &["agents"]));
    let mut config = GrpcAgentConfig::new(url.clone());
    config.ca_file = Some(ca.display().to_string());
    config.client_cert_file = Some(agent_cert.display().to_string());
    config.client_key_file = Some(agent_key.display().to_string());
    let agent = GrpcAgent::new(config, "c1", "c1-agent").expect("agent");
    let handler = Arc::new(Keeping::default());
    agent.start(handler.clone()).await.expect("start");
    wait_until("the TLS agent subscribes", || broker.connected_consumers() == ["c1"]).await;
    let spec = SpecEventBuilder::new("maestro", "r1", 1, "c1").build();
    broker.publish(&spec).await.expect("publish over TLS");
    wait_until("the spec reaches the agent", || handler.events.lock().unwrap().len() == 1).await;

    let ca_pem = std::fs::read(&ca).expect("CA");
    let anonymous = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    let refused = match Channel::from_shared(format!("https://{url}"))
        .unwrap()
        .tls_config(anonymous)
        .unwrap()
        .connect()
        .await
    {
        Ok(channel) => CloudEventServiceClient::new(channel).subscribe(sub_request("c2")).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client without a certificate got a stream");
    let plain = match CloudEventServiceClient::connect(format!("http://{url}")).await {
        Ok(mut client) => client.subscribe(sub_request("c3")).await.is_err(),
        Err(_) => true,
    };
    assert!(plain, "a plaintext client got a stream");
    assert_eq!(broker.connected_consumers(), ["c1"]);
    agent.close().await;
    broker.close().await;
}
