//! Metrics and health of a real `maestro server` process (docs/operations.md §4.3, §4.5):
//! after an end-to-end run over the gRPC broker (2 consumers, 10 bundles, simulated agents in
//! this process), `/metrics` on the metrics port parses as Prometheus text and its series say
//! what happened (bundles created, spec events sent, statuses received, REST and gRPC calls);
//! the agents' series, recorded in this process, count the same bundles; the health port
//! answers `/healthcheck`, `/readyz`, `/livez` and `/healthz`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use maestro::broker::{AgentBrokerSettings, BrokerKind, agent_transport};
use maestro::stack::SimulatedAgents;
use maestro_agent::AgentConfig;
use maestro_client::{RestClient, SourceClient};
use maestro_tests::broker_restart::config_map_work;
use maestro_tests::wait_for_within;
use prometheus_parse::{Sample, Scrape, Value};

const BUNDLES: usize = 10;
const CONSUMERS: [&str; 2] = ["metrics-a", "metrics-b"];

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], maestro_broker_mqtt::testing::free_port()))
}

/// The server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET url` → (status, body), `None` when nothing answers.
async fn get(url: &str) -> Option<(u16, String)> {
    let resp = maestro_tests::http_get(url).await.ok()?;
    Some((resp.status().as_u16(), resp.text().await.ok()?))
}

/// Scrapes and parses `url`.
async fn scrape(url: &str) -> Scrape {
    let (status, text) = get(url).await.expect("metrics answer");
    assert_eq!(status, 200, "{text}");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

/// The sum of the samples of `name` whose labels include `labels` (0 when none).
fn total(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(scrape, name, labels)
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn matching<'a>(
    scrape: &'a Scrape,
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a Sample> {
    scrape
        .samples
        .iter()
        .filter(move |s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

/// Whether `name` is a histogram with at least one observation under `labels`.
fn observed(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> bool {
    matching(scrape, name, labels)
        .any(|s| matches!(&s.value, Value::Histogram(b) if b.last().is_some_and(|c| c.count > 0.0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_after_an_end_to_end_run() {
    maestro_tests::logging();
    let agent_metrics = maestro::metrics_recorder().expect("recorder");
    let dir = tempfile::tempdir().expect("temp dir");
    let (http, grpc, broker, metrics, health) =
        (free_addr(), free_addr(), free_addr(), free_addr(), free_addr());
    let db = format!("sqlite://{}", dir.path().join("maestro.db").display());
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
    let mut server = Server(
        Command::new(maestro_tests::maestro_binary())
            .args(["server", "--db", &db, "--http-addr", &http.to_string(), "--grpc-addr", &grpc.to_string()])
            .args(["--grpc-broker-addr", &broker.to_string(), "--metrics-addr", &metrics.to_string()])
            .args(["--health-addr", &health.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("maestro server starts"),
    );
    let ready = format!("http://{health}/healthcheck");
    let started = std::time::Instant::now();
    while get(&ready).await.is_none_or(|(status, _)| status != 200) {
        if let Some(exit) = server.0.try_wait().expect("try_wait") {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            panic!("the server exited ({exit}): {log}");
        }
        assert!(started.elapsed() < maestro_tests::DEADLINE, "the server is not ready on /healthcheck");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for path in ["/readyz", "/livez", "/healthz"] {
        let (status, body) = get(&format!("http://{health}{path}")).await.expect("health answer");
        assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#), "{path}");
    }

    let rest = RestClient::new(&format!("http://{http}")).expect("rest");
    let mut agents = SimulatedAgents::default();
    for consumer in CONSUMERS {
        rest.create_consumer(consumer, &Default::default()).await.expect("consumer");
        let settings = AgentBrokerSettings {
            kind: BrokerKind::Grpc,
            config_file: None,
            url: Some(broker.to_string()),
            pubsub_project: None,
        };
        let transport =
            agent_transport(&settings, consumer, &format!("{consumer}-work-agent")).await.expect("agent");
        let mut cfg = AgentConfig::new(consumer);
        cfg.hub_host = settings.hub_host().expect("hub host");
        agents.spawn(cfg, transport);
    }
    let source =
        SourceClient::connect(&grpc.to_string(), "metrics-source", rest.clone()).await.expect("source");
    let _watching = source.watch().await.expect("a Subscribe stream");
    for i in 0..BUNDLES {
        source.apply(CONSUMERS[i % 2], &config_map_work(i, 1)).await.expect("apply");
    }
    wait_for_within("every bundle Applied", maestro_tests::DEADLINE, || async {
        let bundles = rest.all_bundles(&Default::default()).await.ok()?;
        (bundles.len() == BUNDLES && bundles.iter().all(|b| b.is_true_at_current_version("Applied")))
            .then_some(())
    })
    .await;

    // The counters move right after the work they count: wait for the last of them.
    let url = format!("http://{metrics}/metrics");
    let statuses = [("subresource", "status")];
    wait_for_within("the statuses counted", maestro_tests::DEADLINE, || async {
        let s = scrape(&url).await;
        (total(&s, "cloudevents_received_total", &statuses) >= BUNDLES as f64).then_some(())
    })
    .await;
    let s = scrape(&url).await;
    assert_eq!(total(&s, "resource_processed_total", &[("action", "create")]), BUNDLES as f64);
    assert_eq!(
        total(
            &s,
            "spec_controller_event_reconcile_total",
            &[("event_type", "create"), ("status", "success")]
        ),
        BUNDLES as f64
    );
    let sent = [("subresource", "spec"), ("action", "create_request"), ("source", "maestro")];
    assert_eq!(total(&s, "cloudevents_sent_total", &sent), BUNDLES as f64);
    let publish = [("type", "Publish"), ("source", "metrics-source"), ("code", "Ok")];
    assert_eq!(total(&s, "grpc_server_processed_total", &publish), BUNDLES as f64);
    assert!(observed(&s, "grpc_server_processed_duration_seconds", &publish));
    let created = [("method", "POST"), ("path", "/api/maestro/v1/consumers"), ("code", "201")];
    assert_eq!(total(&s, "rest_api_inbound_request_count", &created), CONSUMERS.len() as f64);
    assert!(observed(&s, "rest_api_inbound_request_duration", &created));
    // A bundle read by id is labelled by its route; no label holds an id.
    let one = [("method", "GET"), ("path", "/api/maestro/v1/resource-bundles/-")];
    assert!(total(&s, "rest_api_inbound_request_count", &one) >= 1.0, "the source read bundles by id");
    let ids: Vec<String> =
        rest.all_bundles(&Default::default()).await.expect("list").into_iter().map(|b| b.id).collect();
    for sample in &s.samples {
        let labels = format!("{:?}", sample.labels);
        assert!(
            !ids.iter().any(|id| labels.contains(id.as_str())),
            "{} has an id label: {labels}",
            sample.metric
        );
    }
    assert!(observed(&s, "maestro_broker_publish_duration_seconds", &[("broker", "grpc")]));
    assert!(observed(&s, "resource_status_event_processing_latency_seconds", &[("source", "maestro")]));
    assert_eq!(total(&s, "grpc_server_registered_source_clients", &[("source", "metrics-source")]), 1.0);
    let now = chrono::Utc::now().timestamp() as f64;
    for consumer in CONSUMERS {
        let last = total(&s, "maestro_consumer_last_status_timestamp_seconds", &[("consumer", consumer)]);
        assert!((now - 300.0..=now + 1.0).contains(&last), "{consumer}: last status at {last}, now {now}");
    }
    assert!(total(&s, "maestro_connected_agents", &[]) <= CONSUMERS.len() as f64);
    for gauge in ["maestro_outbox_pending_events", "maestro_dead_letters", "maestro_server_instances_live"] {
        assert_eq!(matching(&s, gauge, &[]).count(), 1, "{gauge} is exported");
    }
    assert_eq!(total(&s, "maestro_server_instances_live", &[]), 1.0);

    // The agents' series, recorded in this process.
    let a = Scrape::parse(agent_metrics.render().lines().map(|l| Ok(l.to_owned()))).expect("agent metrics");
    let processed = [("action", "create"), ("code", "Success")];
    assert_eq!(total(&a, "manifestworks_processed_total", &processed), BUNDLES as f64);
    assert!(total(&a, "cloudevents_sent_total", &statuses) >= BUNDLES as f64);
    assert!(observed(&a, "maestro_agent_apply_duration_seconds", &[]));
    agents.stop_all().await;
}
