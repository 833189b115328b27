//! The Pub/Sub backend on the real emulator (package `google-cloud-cli-pubsub-emulator`):
//! the transport conformance suite (with an emulator kill + restart, which loses every
//! topic and subscription), the filter strings sent to the emulator, and the client-side
//! checks (the emulator does not apply filters).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use maestro_api::codec::{SpecEventBuilder, StatusEventBuilder};
use maestro_api::payload::{ManifestBundleStatus, ResourceVersionList, StatusHashList};
use maestro_api::types::Action;
use maestro_api::{AttributesReader, AttributesWriter, Event, codec};
use maestro_broker_pubsub::emulator::Emulator;
use maestro_broker_pubsub::{Admin, PubSubAgent, PubSubConfig, PubSubSource, init};
use maestro_transport::conformance::{self, Harness, Recorder};
use maestro_transport::{AgentTransport, DynAgentTransport, DynSourceTransport, SourceTransport};
use serde_json::json;

const PROJECT: &str = "maestro-test";
const SOURCE_ID: &str = "maestro";
const MAX_EVENT_BYTES: usize = 256 * 1024;

fn base_config(emu: &Emulator) -> PubSubConfig {
    // Logs with RUST_LOG=maestro_broker_pubsub=debug (the first call wins).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut cfg = PubSubConfig::maestro_defaults(PROJECT, Some(&emu.endpoint()));
    cfg.health_check_interval = Duration::from_millis(250);
    cfg.health_check_timeout = Duration::from_secs(2);
    cfg.reconnect_initial_backoff = Duration::from_millis(100);
    cfg.reconnect_max_backoff = Duration::from_secs(1);
    cfg.publish_timeout = Duration::from_secs(10);
    cfg.max_event_bytes = MAX_EVENT_BYTES;
    cfg
}

struct EmulatorHarness {
    emu: Emulator,
}

#[async_trait]
impl Harness for EmulatorHarness {
    fn max_event_bytes(&self) -> usize {
        MAX_EVENT_BYTES
    }

    async fn source(&mut self) -> DynSourceTransport {
        PubSubSource::connect(base_config(&self.emu).for_source(SOURCE_ID), SOURCE_ID).await.unwrap()
    }

    async fn agent(&mut self, consumer: &str) -> DynAgentTransport {
        let cfg = base_config(&self.emu).for_agent(consumer);
        PubSubAgent::connect(cfg, consumer, &format!("{consumer}-agent")).await.unwrap()
    }

    async fn interrupt(&mut self) {
        self.emu.kill();
    }

    /// The emulator comes back EMPTY: the clients must recreate topics and subscriptions.
    async fn resume(&mut self) {
        self.emu.restart().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_the_emulator() {
    let emu = Emulator::start().await;
    conformance::run_all(&mut EmulatorHarness { emu }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_creates_the_maestro_layout_with_exact_filters() {
    let emu = Emulator::start().await;
    let cfg = base_config(&emu);
    let consumers = vec!["c1".to_owned(), "cluster-2".to_owned()];
    init(&cfg, SOURCE_ID, &consumers).await.unwrap();
    init(&cfg, SOURCE_ID, &consumers).await.expect("init is idempotent");
    let admin = Admin::new(&cfg).await.unwrap();
    for t in ["sourceevents", "sourcebroadcast", "agentevents", "agentbroadcast"] {
        assert!(admin.topic_exists(&cfg.topic_name(t)).await.unwrap(), "topic {t}");
    }
    let filter = |name: &str| {
        let (admin, name) = (admin.clone(), cfg.subscription_name(name));
        async move { admin.subscription_filter(&name).await.unwrap() }
    };
    assert_eq!(filter("sourceevents-c1").await.as_deref(), Some(r#"attributes."ce-clustername"="c1""#));
    assert_eq!(
        filter("sourceevents-cluster-2").await.as_deref(),
        Some(r#"attributes."ce-clustername"="cluster-2""#)
    );
    assert_eq!(filter("sourcebroadcast-c1").await.as_deref(), Some(""));
    assert_eq!(
        filter("agentevents-maestro").await.as_deref(),
        Some(r#"attributes."ce-originalsource"="maestro""#)
    );
    assert_eq!(filter("agentbroadcast-maestro").await.as_deref(), Some(""));
    assert_eq!(filter("sourceevents-nobody").await, None);
    maestro_broker_pubsub::init_consumer(&cfg, "c3").await.unwrap();
    assert_eq!(filter("sourceevents-c3").await.as_deref(), Some(r#"attributes."ce-clustername"="c3""#));
}

fn spec(id: &str, cluster: &str) -> Event {
    let bundle = json!({"manifests":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"default"}}]});
    let mut ev = SpecEventBuilder::new(SOURCE_ID, "rid", 1, cluster)
        .action(Action::Update)
        .bundle_json(bundle)
        .build();
    ev.set_id(id.to_owned());
    ev
}

fn status(id: &str, cluster: &str, original_source: &str) -> Event {
    let mut ev = StatusEventBuilder {
        source: "agent",
        resource_id: "rid",
        resource_version: 1,
        cluster_name: cluster,
        original_source,
        sequence_id: "1834773391719010304",
        status_hash: "0",
        metadata: None,
        action: Action::Update,
    }
    .build(&ManifestBundleStatus::default());
    ev.set_id(id.to_owned());
    ev
}

async fn publish<F, Fut>(f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = maestro_transport::Result<()>>,
{
    let deadline = tokio::time::Instant::now() + conformance::DEADLINE;
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("publish failed: {e}"),
        }
    }
}

/// The emulator delivers every message of `sourceevents` to every subscription (it ignores
/// filters): each agent must still accept only its own specs, while broadcast resync
/// requests reach every agent; the source accepts only statuses for its own source id and
/// spec resync requests for all sources.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_side_checks_route_by_consumer_and_source() {
    let emu = Emulator::start().await;
    let cfg = base_config(&emu);
    init(&cfg, SOURCE_ID, &["c1".to_owned(), "c2".to_owned()]).await.unwrap();
    let source = PubSubSource::connect(cfg.clone().for_source(SOURCE_ID), SOURCE_ID).await.unwrap();
    let src_rec = Recorder::new();
    source.start(src_rec.clone()).await.unwrap();
    let mut agents: Vec<(Arc<PubSubAgent>, Arc<Recorder>)> = Vec::new();
    for c in ["c1", "c2"] {
        let agent = PubSubAgent::connect(cfg.clone().for_agent(c), c, "a").await.unwrap();
        let rec = Recorder::new();
        agent.start(rec.clone()).await.unwrap();
        let mut sig = agent.subscribed();
        tokio::time::timeout(conformance::DEADLINE, sig.wait_for(|v| *v > 0)).await.unwrap().unwrap();
        agents.push((agent, rec));
    }
    for i in 0..5 {
        for c in ["c1", "c2"] {
            let ev = spec(&format!("{c}-{i}"), c);
            publish(|| source.publish(&ev)).await;
        }
    }
    let resync = codec::status_resync_request(SOURCE_ID, "", &StatusHashList::default());
    publish(|| source.publish(&resync)).await;
    for (c, (_, rec)) in ["c1", "c2"].iter().zip(&agents) {
        rec.wait_for("own specs and the broadcast resync", |evs| {
            evs.iter().any(|e| e.id() == resync.id())
                && evs.iter().filter(|e| e.id().starts_with(c)).count() == 5
        })
        .await;
        // Specs and resync requests come from different subscriptions: order only the specs.
        let ids = rec.acked_ids();
        let specs: Vec<String> = ids.iter().filter(|i| **i != resync.id()).cloned().collect();
        let want: Vec<String> = (0..5).map(|i| format!("{c}-{i}")).collect();
        assert_eq!(specs, want, "{c} must receive exactly its own specs, in order");
        assert_eq!(ids.len(), 6, "{c}: own specs plus one broadcast resync: {ids:?}");
    }

    let agent = &agents[0].0;
    let foreign = status("status-other-source", "c1", "other-source");
    publish(|| agent.publish(&foreign)).await;
    let spec_resync = codec::spec_resync_request("c1-agent", "c1", &ResourceVersionList::default());
    publish(|| agent.publish(&spec_resync)).await;
    let own = status("status-own", "c1", SOURCE_ID);
    publish(|| agent.publish(&own)).await;
    src_rec
        .wait_for("spec resync and own status", |evs| {
            evs.iter().any(|e| e.id() == "status-own") && evs.iter().any(|e| e.id() == spec_resync.id())
        })
        .await;
    let mut got = src_rec.acked_ids();
    got.sort();
    let mut want = vec![spec_resync.id().to_owned(), "status-own".to_owned()];
    want.sort();
    assert_eq!(got, want, "the source accepts its own statuses and spec resync requests only");
    assert_eq!(src_rec.attempts("status-other-source"), 0, "a status for another source is dropped");
    for (a, _) in &agents {
        a.close().await;
    }
    source.close().await;
}

/// A restarted emulator is empty: the agent (autoCreate, the emulator default) recreates the
/// topics and its subscriptions with Maestro's filter, resubscribes, and receives again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recreates_topics_and_filtered_subscriptions() {
    let mut emu = Emulator::start().await;
    let cfg = base_config(&emu);
    let agent = PubSubAgent::connect(cfg.clone().for_agent("c1"), "c1", "a").await.unwrap();
    let rec = Recorder::new();
    agent.start(rec.clone()).await.unwrap();
    let mut sig = agent.subscribed();
    tokio::time::timeout(conformance::DEADLINE, sig.wait_for(|v| *v > 0)).await.unwrap().unwrap();
    let before = *sig.borrow_and_update();
    emu.restart().await;
    tokio::time::timeout(conformance::DEADLINE, sig.wait_for(|v| *v > before)).await.unwrap().unwrap();
    let admin = Admin::new(&cfg).await.unwrap();
    let filter = admin.subscription_filter(&cfg.subscription_name("sourceevents-c1")).await.unwrap();
    assert_eq!(filter.as_deref(), Some(r#"attributes."ce-clustername"="c1""#));
    assert!(admin.topic_exists(&cfg.topic_name("agentevents")).await.unwrap());
    // The source side needs its own subscriptions; init creates them (and is idempotent).
    init(&cfg, SOURCE_ID, &[]).await.unwrap();
    let source = PubSubSource::connect(cfg.clone().for_source(SOURCE_ID), SOURCE_ID).await.unwrap();
    let ev = spec("after-restart", "c1");
    publish(|| source.publish(&ev)).await;
    rec.wait_for("spec after restart", |evs| evs.iter().any(|e| e.id() == "after-restart")).await;
    agent.close().await;
    source.close().await;
}

/// An agent that stops and comes back receives what was published in between, at once. Its
/// closed streams were ended cleanly (what they held nacked, then half-closed), so the
/// emulator no longer routes messages to them. With google-cloud-pubsub's subscriber, whose
/// streams end with a reset, the emulator kept routing to the reset stream and redelivered
/// only when the stream ack deadline (10 s) passed, sometimes several times over (10–30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_agent_gets_what_was_published_while_it_was_away() {
    let emu = Emulator::start().await;
    let cfg = base_config(&emu);
    init(&cfg, SOURCE_ID, &["c1".to_owned()]).await.unwrap();
    let source = PubSubSource::connect(cfg.clone().for_source(SOURCE_ID), SOURCE_ID).await.unwrap();
    let first = PubSubAgent::connect(cfg.clone().for_agent("c1"), "c1", "c1-agent").await.unwrap();
    let seen = Recorder::new();
    first.start(seen.clone()).await.unwrap();
    let mut sub = first.subscribed();
    sub.wait_for(|n| *n > 0).await.unwrap();
    let before = spec("before", "c1");
    publish(|| source.publish(&before)).await;
    seen.wait_for("the first spec", |evs| evs.iter().any(|e| e.id() == "before")).await;
    first.close().await;
    drop(first);

    let while_away = spec("while-away", "c1");
    publish(|| source.publish(&while_away)).await;
    let second = PubSubAgent::connect(cfg.for_agent("c1"), "c1", "c1-agent").await.unwrap();
    let again = Recorder::new();
    let started = std::time::Instant::now();
    second.start(again.clone()).await.unwrap();
    again.wait_for("the spec published while away", |evs| evs.iter().any(|e| e.id() == "while-away")).await;
    let took = started.elapsed();
    eprintln!("the spec published while away arrived after {took:?}");
    assert!(took < Duration::from_secs(7), "not one 10 s redelivery round: {took:?}");
    // "before" may come back too: Pub/Sub is at-least-once and an ack still in flight when the
    // first agent closed can be lost; agents ignore a spec version they already hold.
    second.close().await;
    source.close().await;
}

/// A publish to a topic that no longer exists fails with a retryable `Rejected` holding the
/// library's error (`NOT_FOUND`): the failed publish wakes the health check, which recreates
/// the topic (autoCreate; without it the endpoint is down and publishes wait as
/// `Disconnected`), and publishing works again. Before, `NOT_FOUND` was permanent and the
/// server set such events aside as dead letters: 40 spec events after a kill -9 of the
/// emulator (which restarts empty) in the fault harness's full run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_a_missing_topic_waits_for_the_topic() {
    let emu = Emulator::start().await;
    let mut cfg = base_config(&emu).for_source(SOURCE_ID);
    // No periodic check between the deletion and the publish: only the failed publish wakes it.
    cfg.health_check_interval = Duration::from_secs(600);
    init(&cfg, SOURCE_ID, &["c1".to_owned()]).await.unwrap();
    let source = PubSubSource::connect(cfg.clone(), SOURCE_ID).await.unwrap();
    assert!(source.is_connected(), "the first health check passed");
    let topics = google_cloud_pubsub::client::TopicAdmin::builder()
        .with_endpoint(emu.url())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();
    topics.delete_topic().set_topic(cfg.topic_name("sourceevents")).send().await.unwrap();

    let err = source.publish(&spec("to-a-missing-topic", "c1")).await.expect_err("the topic is gone");
    assert!(matches!(err, maestro_transport::Error::Rejected { .. }), "{err}");
    assert!(err.is_retryable(), "a missing topic is created again: {err}");
    let cause = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<google_cloud_pubsub::error::PublishError>());
    assert!(cause.is_some(), "the library's error is the source: {err:?}");

    let admin = Admin::new(&cfg).await.unwrap();
    let deadline = tokio::time::Instant::now() + conformance::DEADLINE;
    while !admin.topic_exists(&cfg.topic_name("sourceevents")).await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "the health check did not recreate the topic");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ev = spec("after-recreation", "c1");
    publish(|| source.publish(&ev)).await;
    source.close().await;
}

/// A receive stream that fails because its subscription is gone, with autoCreate on (as after
/// the emulator restarted empty), is an outage: the health check creates the subscription
/// again and the stream resubscribes; it is not logged as "unusable until the project or the
/// configuration changes" (error level), as it was. One current-thread runtime, so every task
/// logs into the test's capture.
#[tokio::test]
async fn a_deleted_subscription_recreated_by_the_health_check_is_an_outage() {
    let (logs, _guard) = maestro_transport::test_logs::Logs::capture();
    let emu = Emulator::start().await;
    let cfg = base_config(&emu).for_agent("c1");
    let agent = PubSubAgent::connect(cfg.clone(), "c1", "a").await.unwrap();
    agent.start(Recorder::new()).await.unwrap();
    let mut sig = agent.subscribed();
    tokio::time::timeout(conformance::DEADLINE, sig.wait_for(|v| *v > 0)).await.unwrap().unwrap();
    let before = *sig.borrow_and_update();
    let admin = Admin::new(&cfg).await.unwrap();
    admin.delete_subscription(&cfg.subscription_name("sourceevents-c1")).await.unwrap();
    tokio::time::timeout(conformance::DEADLINE, sig.wait_for(|v| *v > before)).await.unwrap().unwrap();
    assert!(logs.contains("receive streams stopped"), "the stream saw the subscription go");
    assert!(
        !logs.contains("unusable until the project or the configuration changes"),
        "a subscription autoCreate brings back is not a lasting failure"
    );
    agent.close().await;
}

/// A TCP proxy to `upstream` on 127.0.0.1 whose [`CuttingProxy::cut`] closes every
/// connection it carries (new ones are taken again at once), as a network blip does.
struct CuttingProxy {
    addr: std::net::SocketAddr,
    links: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl CuttingProxy {
    async fn start(upstream: String) -> CuttingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links = Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let held = links.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                held.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        CuttingProxy { addr, links }
    }

    /// Closes every connection carried now.
    fn cut(&self) {
        self.links.lock().unwrap().abort_all();
    }
}

/// An agent whose StreamingPull stream broke (its connection cut) resubscribes once the
/// stream is open again: its subscribed signal grows, so the agent sends a spec resync and
/// fetches at once what the service gave the broken stream (which it would otherwise redeliver
/// only after the ack deadline, one at a time). The health check, which also notices an
/// outage, is kept out of it (one check a minute). Found by the fault-injection suite (a cut
/// of the agents' link on the emulator: updates missing 2 minutes after the heal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_resubscribes_when_its_broken_stream_is_open_again() {
    let emu = Emulator::start().await;
    let cfg = base_config(&emu);
    init(&cfg, SOURCE_ID, &["c1".to_owned()]).await.unwrap();
    let proxy = CuttingProxy::start(emu.endpoint()).await;
    let mut agent_cfg =
        PubSubConfig::maestro_defaults(PROJECT, Some(&proxy.addr.to_string())).for_agent("c1");
    agent_cfg.health_check_interval = Duration::from_secs(60);
    agent_cfg.reconnect_initial_backoff = Duration::from_millis(100);
    agent_cfg.reconnect_max_backoff = Duration::from_secs(1);
    let agent = PubSubAgent::connect(agent_cfg, "c1", "c1-agent").await.unwrap();
    let seen = Recorder::new();
    agent.start(seen.clone()).await.unwrap();
    let mut sub = agent.subscribed();
    let first = *sub.wait_for(|n| *n > 0).await.unwrap();
    // A delivery proves the stream is open (it connects after the signal first grew).
    let source = PubSubSource::connect(cfg.for_source(SOURCE_ID), SOURCE_ID).await.unwrap();
    let before = spec("before", "c1");
    publish(|| source.publish(&before)).await;
    seen.wait_for("a spec through the proxy", |evs| evs.iter().any(|e| e.id() == "before")).await;
    assert_eq!(*sub.borrow(), first, "nothing broke yet");
    proxy.cut();
    let grown = tokio::time::timeout(Duration::from_secs(15), sub.wait_for(|n| *n > first)).await;
    assert!(grown.is_ok(), "the signal stayed at {first} after the stream broke and was opened again");
    agent.close().await;
    source.close().await;
}
