//! The MQTT broker end to end: the main job on Debian Mosquitto with PostgreSQL and on the
//! embedded rumqttd with SQLite, and a Mosquitto kill/restart while 100 bundles over 10
//! consumers are in flight. Mosquitto is started by the test on a free port
//! (`apt-get install -y mosquitto`, done by scripts/test.sh). Clusters are simulated.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use maestro::broker::{BrokerKind, EmbeddedEngine};
use maestro::stack::StackConfig;
use maestro_broker_mqtt::testing::Mosquitto;
use maestro_tests::broker_restart::{config_map_work, restart_with_bundles_in_flight};
use maestro_tests::{Db, db_url, logging, main_job::main_job};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn main_job_on_postgres_over_mosquitto() {
    logging();
    let mosquitto = Mosquitto::start();
    let (_guard, url) = db_url(Db::Postgres).await;
    let mut config = StackConfig::new(&url);
    config.broker = BrokerKind::Mqtt;
    config.mqtt_host = Some(mosquitto.address());
    main_job(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn main_job_on_sqlite_over_embedded_rumqttd() {
    logging();
    let (_guard, url) = db_url(Db::Sqlite).await;
    let mut config = StackConfig::new(&url);
    config.broker = BrokerKind::Mqtt;
    config.embedded_mqtt_engine = EmbeddedEngine::Rumqttd;
    main_job(config).await;
}

/// The embedded broker's second engine (`--embedded-mqtt-engine rmqtt`) carries the main job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn main_job_on_postgres_over_embedded_rmqtt() {
    logging();
    let (_guard, url) = db_url(Db::Postgres).await;
    let mut config = StackConfig::new(&url);
    config.broker = BrokerKind::Mqtt;
    config.embedded_mqtt_engine = EmbeddedEngine::Rmqtt;
    main_job(config).await;
}

/// Mosquitto is killed and restarted with 100 bundles over 10 consumers in flight (see
/// [`maestro_tests::broker_restart`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_restart_with_bundles_in_flight_loses_nothing() {
    logging();
    let mut mosquitto = Mosquitto::start();
    let (_guard, url) = db_url(Db::Postgres).await;
    let mut config = StackConfig::new(&url);
    config.broker = BrokerKind::Mqtt;
    config.mqtt_host = Some(mosquitto.address());
    restart_with_bundles_in_flight(config, &mut mosquitto).await;
}

/// An agent holding 300 bundles reconnects to the embedded rumqttd on an empty cluster and gets
/// all of them again through the spec resync. Regression: the server used to answer a spec
/// resync request inside its MQTT handler, which holds the acknowledgements of every later
/// message on its connection (MQTT acks go in arrival order); once rumqttd had 100 unacked
/// statuses in flight to the server it stopped acknowledging the server's publishes too, and
/// the resync stalled for good after ~100 bundles.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_back_on_embedded_rumqttd_resyncs_300_bundles() {
    agent_back_resyncs(EmbeddedEngine::Rumqttd, 300).await;
}

/// The same on the rmqtt engine with 1,101 bundles (the benchmark's resync size). (The agent
/// acknowledges as it goes, so this does not fill rmqtt's per-session queue: it passes with
/// rmqtt's default queue of 1,000 too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_back_on_embedded_rmqtt_resyncs_1101_bundles() {
    agent_back_resyncs(EmbeddedEngine::Rmqtt, 1101).await;
}

async fn agent_back_resyncs(engine: EmbeddedEngine, bundles: usize) {
    logging();
    let (_guard, url) = db_url(Db::Sqlite).await;
    let mut config = StackConfig::new(&url);
    config.broker = BrokerKind::Mqtt;
    config.embedded_mqtt_engine = engine;
    let mut stack = maestro::stack::LocalStack::start(config).await.unwrap();
    stack.rest.create_consumer("cluster1", &Default::default()).await.unwrap();
    stack.start_agent("cluster1").await.unwrap();
    for i in 0..bundles {
        stack.source.apply("cluster1", &config_map_work(i, 1)).await.unwrap();
    }
    let cluster = stack.cluster("cluster1");
    maestro_tests::wait_for("every bundle applied", || async { (cluster.len() == bundles).then_some(()) })
        .await;

    stack.stop_agent("cluster1").await;
    stack.reset_cluster("cluster1");
    stack.start_agent("cluster1").await.unwrap();
    let cluster = stack.cluster("cluster1");
    assert_eq!(cluster.len(), 0, "the agent starts on an empty cluster");
    maestro_tests::wait_for("every bundle applied again after the reconnect", || async {
        (cluster.len() == bundles).then_some(())
    })
    .await;
    stack.shutdown().await;
}

/// Runs `mosquitto_sub` with a persistent MQTT 5 session `client_id` (kept 5 min by
/// Mosquitto) on `topic`: `exit_on_subscribe` only registers the session; otherwise it waits
/// for one message (queued while it was away) and returns it as `-F %j` JSON.
fn mosquitto_sub(port: u16, client_id: &str, topic: &str, exit_on_subscribe: bool) -> serde_json::Value {
    let mut cmd = std::process::Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "mqttv5", "-q", "1", "-c", "-x", "300"])
        .args(["-i", client_id, "-t", topic, "-W", "30", "-F", "%j"]);
    cmd.args(if exit_on_subscribe { ["-E", "-v"] } else { ["-C", "1"] });
    let out = cmd.output().expect("mosquitto_sub (apt-get install -y mosquitto-clients)");
    assert!(out.status.success(), "mosquitto_sub failed: {}", String::from_utf8_lossy(&out.stderr));
    if exit_on_subscribe {
        return serde_json::Value::Null;
    }
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().next().expect("one message")).unwrap()
}

/// The server against Go-format peers on Mosquitto, with no Rust agent: the spec event the
/// server publishes is read off the broker with `mosquitto_sub -V mqttv5` and has the topic and
/// user properties of docs/protocol.md §7.2; a status published with `mosquitto_pub -V mqttv5` in
/// the Go work agent's format is accepted and stored by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_speaks_the_go_wire_format_on_mosquitto() {
    use maestro_broker_mqtt::testing::{GO_APPLIED_STATUS, GoStatus, go_status_props, mosquitto_pub};
    logging();
    let mosquitto = Mosquitto::start();
    let (_guard, url) = db_url(Db::Sqlite).await;
    let mut config = StackConfig::new(&url);
    config.broker = BrokerKind::Mqtt;
    config.mqtt_host = Some(mosquitto.address());
    let stack = maestro::stack::LocalStack::start(config).await.unwrap();
    stack.rest.create_consumer("cluster1", &Default::default()).await.unwrap();
    let spec_topic = "sources/maestro/consumers/cluster1/sourceevents";
    mosquitto_sub(mosquitto.port, "go-agent-cluster1", spec_topic, true);

    let (_, yaml, _) = maestro::demo::EXAMPLES[1];
    let work = maestro_client::manifestwork::parse("job.yaml", yaml, None).unwrap();
    let id = stack.source.apply("cluster1", &work).await.unwrap().resource_id;
    // The server may have sent cluster1 a status resync request first (it sends one to every
    // consumer once its own subscription is up, which can come after the consumer was created):
    // take the session's messages in order until the spec.
    let resync = "io.open-cluster-management.works.v1alpha1.manifestbundles.status.resync_request";
    let msg = (0..3)
        .map(|_| mosquitto_sub(mosquitto.port, "go-agent-cluster1", spec_topic, false))
        .find(|m| m["properties"]["user-properties"]["ce-type"] != resync)
        .expect("a spec event after at most two status resync requests");
    assert_eq!(msg["topic"], spec_topic);
    assert_eq!(msg["qos"], 1);
    assert_eq!(msg["properties"]["content-type"], "application/json");
    let up = &msg["properties"]["user-properties"];
    assert_eq!(up["ce-specversion"], "1.0");
    assert_eq!(up["ce-source"], "maestro");
    assert_eq!(
        up["ce-type"],
        "io.open-cluster-management.works.v1alpha1.manifestbundles.spec.create_request"
    );
    assert_eq!(up["ce-resourceid"], id.as_str());
    assert_eq!(up["ce-resourceversion"], "1");
    assert_eq!(up["ce-clustername"], "cluster1");
    let payload: serde_json::Value = serde_json::from_str(msg["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["manifests"].as_array().map(Vec::len), Some(work.bundle.manifests.len()));

    let status = GoStatus {
        id: "go-status-1",
        cluster: "cluster1",
        resource_id: &id,
        resource_version: 1,
        original_source: "maestro",
        sequence_id: "1834773391719010304",
    };
    let props = go_status_props(&status);
    let refs: Vec<(&str, &str)> = props.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let agent_topic = "sources/maestro/consumers/cluster1/agentevents";
    mosquitto_pub(mosquitto.port, agent_topic, Some("application/json"), &refs, GO_APPLIED_STATUS);
    maestro_tests::wait_for("the Go agent's status stored", || async {
        let b = stack.rest.get_bundle(&id).await.ok()?;
        b.is_true_at_current_version("Applied").then_some(())
    })
    .await;
    stack.shutdown().await;
}
