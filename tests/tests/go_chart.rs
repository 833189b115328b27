//! Go Maestro's server Helm chart arguments start this server unchanged (docs/operations.md
//! §2.8): the argument list of `charts/maestro-server/templates/deployment.yaml` rendered with
//! the chart's defaults (MQTT broker, PostgreSQL from mounted secret files, `--client-id` from
//! the pod name, `--server-hostname=` for every interface, klog flags), with the ports and
//! secret paths of this test put in. The server must become ready on the health port, serve
//! REST and metrics, and reach real PostgreSQL and Mosquitto through those settings.
//!
//! The list is written from the chart as the reference documents it (the chart itself is not
//! vendored here).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes the chart's secret mounts (`/secrets/db/*`, `/secrets/mqtt/config.yaml`) under `dir`
/// from the PostgreSQL URL and the Mosquitto address.
fn write_secrets(dir: &Path, db_url: &str, mqtt: &str) {
    let url = url::Url::parse(db_url).expect("db URL");
    let db = dir.join("db");
    std::fs::create_dir_all(&db).expect("dir");
    let files = [
        ("db.host", url.host_str().expect("host").to_owned()),
        ("db.port", url.port().unwrap_or(5432).to_string()),
        ("db.user", url.username().to_owned()),
        ("db.password", url.password().unwrap_or_default().to_owned()),
        ("db.name", url.path().trim_start_matches('/').to_owned()),
    ];
    for (name, value) in files {
        std::fs::write(db.join(name), format!("{value}\n")).expect("secret");
    }
    let mqtt_dir = dir.join("mqtt");
    std::fs::create_dir_all(&mqtt_dir).expect("dir");
    let config = format!(
        "brokerHost: {mqtt}\ntopics:\n  sourceEvents: sources/maestro/consumers/+/sourceevents\n  \
         agentEvents: $share/statussubscribers/sources/maestro/consumers/+/agentevents\n"
    );
    std::fs::write(mqtt_dir.join("config.yaml"), config).expect("config");
}

/// The chart's server arguments with `secrets` for `/secrets` and the given ports.
fn chart_args(secrets: &Path, [http, grpc, health, metrics]: [u16; 4]) -> Vec<String> {
    let s = secrets.display();
    [
        "server".to_owned(),
        format!("--db-host-file={s}/db/db.host"),
        format!("--db-port-file={s}/db/db.port"),
        format!("--db-user-file={s}/db/db.user"),
        format!("--db-password-file={s}/db/db.password"),
        format!("--db-name-file={s}/db/db.name"),
        format!("--db-rootcert={s}/db/db.ca_cert"),
        "--db-sslmode=disable".to_owned(),
        "--db-max-open-connections=50".to_owned(),
        format!("--message-broker-config-file={s}/mqtt/config.yaml"),
        "--message-broker-type=mqtt".to_owned(),
        "--subscription-type=shared".to_owned(),
        "--client-id=maestro-maestro-6d8f9c7b5-x2k4q".to_owned(),
        "--server-hostname=".to_owned(),
        format!("--http-server-bindport={http}"),
        format!("--grpc-server-bindport={grpc}"),
        format!("--health-check-server-bindport={health}"),
        format!("--metrics-server-bindport={metrics}"),
        "--http-read-timeout=5s".to_owned(),
        "--http-write-timeout=30s".to_owned(),
        "--enable-grpc-server=true".to_owned(),
        "--enable-https=false".to_owned(),
        "--heartbeat-interval=15".to_owned(),
        "--label-metrics-inclusion-duration=168h".to_owned(),
        "--alsologtostderr".to_owned(),
        "-v=2".to_owned(),
    ]
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_chart_arguments_start_the_server() {
    maestro_tests::logging();
    let mosquitto = maestro_broker_mqtt::testing::Mosquitto::start();
    let db_url = maestro_store::testing::postgres_url().await;
    let dir = tempfile::tempdir().expect("dir");
    write_secrets(dir.path(), &db_url, &mosquitto.address());
    let ports = [(); 4].map(|()| maestro_broker_mqtt::testing::free_port());
    let log = dir.path().join("server.log");
    let mut server = Server(
        Command::new(maestro_tests::maestro_binary())
            .args(chart_args(dir.path(), ports))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("maestro server starts"),
    );
    let [http, _, health, metrics] = ports;
    let started = Instant::now();
    loop {
        if let Some(exit) = server.0.try_wait().expect("try_wait") {
            panic!("the server exited ({exit}): {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        let ready = maestro_tests::http_get(format!("http://127.0.0.1:{health}/healthcheck")).await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            started.elapsed() < maestro_tests::DEADLINE,
            "not ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rest = maestro_client::RestClient::new(&format!("http://127.0.0.1:{http}")).expect("rest");
    rest.create_consumer("chart-cluster", &Default::default()).await.expect("a consumer over REST");
    let text = maestro_tests::http_get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(
            r#"rest_api_inbound_request_count{method="POST",path="/api/maestro/v1/consumers",code="201"} 1"#
        ),
        "{text}"
    );
    let instances: serde_json::Value =
        maestro_tests::http_get(format!("http://127.0.0.1:{http}/api/maestro/v1/server-instances"))
            .await
            .expect("instances")
            .json()
            .await
            .expect("JSON");
    let ids: Vec<&str> =
        instances["items"].as_array().expect("items").iter().filter_map(|i| i["id"].as_str()).collect();
    assert!(
        ids.contains(&"maestro-maestro-6d8f9c7b5-x2k4q"),
        "the client id is the instance id: {instances}"
    );
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("DEBUG"), "-v=2 logs at debug level");
    assert!(log.contains("--label-metrics-inclusion-duration"), "a flag without effect is named: {log}");
}
