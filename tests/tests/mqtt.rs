//! The MQTT broker end to end: the main job on Debian Mosquitto with PostgreSQL and on the
//! embedded rumqttd with SQLite, and a Mosquitto kill/restart while 100 bundles over 10
//! consumers are in flight. Mosquitto is started by the test on a free port
//! (`apt-get install -y mosquitto`, done by scripts/test.sh). Clusters are simulated.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use maestro::broker::BrokerKind;
use maestro::stack::StackConfig;
use maestro_broker_mqtt::testing::Mosquitto;
use maestro_tests::broker_restart::restart_with_bundles_in_flight;
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
