//! The MQTT broker end to end: the main job on Debian Mosquitto with PostgreSQL and on the
//! embedded rumqttd with SQLite, and a Mosquitto kill/restart while 100 bundles over 10
//! consumers are in flight. Mosquitto is started by the test on a free port
//! (`apt-get install -y mosquitto`, done by scripts/test.sh). Clusters are simulated.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use maestro::broker::BrokerKind;
use maestro::stack::{LocalStack, StackConfig};
use maestro_api::payload::ManifestBundle;
use maestro_broker_mqtt::testing::Mosquitto;
use maestro_client::ManifestWorkInput;
use maestro_store::{Paging, ResourceQuery};
use maestro_tests::{Db, db_url, logging, main_job::main_job, wait_for};
use serde_json::json;

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

fn config_map_work(i: usize, generation: u32) -> ManifestWorkInput {
    let manifest = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i}"), "namespace": "default"},
        "data": {"generation": generation.to_string()}
    });
    ManifestWorkInput {
        name: format!("cm-{i}"),
        bundle: ManifestBundle { manifests: vec![manifest], ..Default::default() },
        ..Default::default()
    }
}

/// Mosquitto is killed after half of 100 bundles (10 consumers) were applied; the other half
/// and 20 updates are applied while it is down; then it comes back. Every bundle must end
/// Applied at its latest version with its status stored, with nothing duplicated in the store
/// or on the clusters.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_restart_with_bundles_in_flight_loses_nothing() {
    logging();
    let mut mosquitto = Mosquitto::start();
    let (_guard, url) = db_url(Db::Postgres).await;
    let mut config = StackConfig::new(&url);
    config.broker = BrokerKind::Mqtt;
    config.mqtt_host = Some(mosquitto.address());
    config.status_sync_interval = Duration::from_millis(500);
    let mut stack = LocalStack::start(config).await.unwrap();
    let consumers: Vec<String> = (0..10).map(|i| format!("fleet-{i}")).collect();
    for c in &consumers {
        stack.rest.create_consumer(c, &Default::default()).await.unwrap();
        stack.start_agent(c).await.unwrap();
    }
    let mut bundles = Vec::new();
    for i in 0..100 {
        if i == 50 {
            mosquitto.kill();
        }
        let consumer = &consumers[i % consumers.len()];
        let out = stack.source.apply(consumer, &config_map_work(i, 1)).await.unwrap();
        bundles.push((consumer.clone(), out.resource_id, 1i64));
    }
    for (i, b) in bundles.iter_mut().enumerate().take(20) {
        stack.source.apply(&b.0, &config_map_work(i, 2)).await.unwrap();
        b.2 = 2;
    }
    mosquitto.restart();

    for (consumer, id, version) in &bundles {
        wait_for(&format!("{consumer}/{id} Applied at version {version}"), || async {
            let b = stack.rest.get_bundle(id).await.ok()?;
            (b.version == *version && b.is_true_at_current_version("Applied")).then_some(())
        })
        .await;
    }
    let store = maestro_store::open(&url).await.unwrap();
    let all = store
        .list_resources(&ResourceQuery { paging: Paging { page: 1, size: 1000 }, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(all.total, 100, "exactly the 100 bundles are stored");
    let names: HashSet<(String, String)> =
        all.items.iter().map(|r| (r.consumer_name.clone(), r.name.clone())).collect();
    assert_eq!(names.len(), 100, "no duplicated bundle");
    assert!(
        all.items.iter().all(|r| r.status.is_some() && r.sequence_id.is_some()),
        "every status is stored"
    );
    assert!(store.pending_spec_events(10).await.unwrap().is_empty(), "outbox drained");
    for (i, c) in consumers.iter().enumerate() {
        let objects = stack.cluster(c).objects();
        assert_eq!(objects.len(), 10, "{c} holds exactly its 10 ConfigMaps");
        for o in objects {
            let n: usize = o["metadata"]["name"].as_str().unwrap()[3..].parse().unwrap();
            assert_eq!(n % consumers.len(), i);
            let want = if n < 20 { "2" } else { "1" };
            assert_eq!(o["data"]["generation"], want, "{c}/cm-{n} is at its latest spec");
        }
    }
    stack.shutdown().await;
}
