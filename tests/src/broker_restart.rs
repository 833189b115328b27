//! The broker-restart scenario shared by the MQTT and Pub/Sub end-to-end tests: the broker is
//! killed after half of 100 bundles (10 consumers) were applied; the other half and 20 updates
//! are applied while it is down; then it comes back. Every bundle must end Applied at its
//! latest version with its status stored, with nothing duplicated in the store, and every
//! cluster must hold exactly its own bundles at their latest spec.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use maestro::stack::{LocalStack, StackConfig};
use maestro_api::payload::ManifestBundle;
use maestro_client::ManifestWorkInput;
use maestro_store::{Paging, ResourceQuery};
use serde_json::json;

use crate::wait_for;

/// A broker process the test can kill and bring back.
pub trait Restartable {
    /// Kills the broker (SIGKILL: nothing is flushed).
    fn kill(&mut self);
    /// Starts it again on the same address; resolves once it accepts connections.
    fn restart(&mut self) -> impl Future<Output = ()>;
}

impl Restartable for maestro_broker_mqtt::testing::Mosquitto {
    fn kill(&mut self) {
        maestro_broker_mqtt::testing::Mosquitto::kill(self);
    }
    async fn restart(&mut self) {
        maestro_broker_mqtt::testing::Mosquitto::restart(self);
    }
}

impl Restartable for maestro_broker_pubsub::emulator::Emulator {
    fn kill(&mut self) {
        maestro_broker_pubsub::emulator::Emulator::kill(self);
    }
    async fn restart(&mut self) {
        maestro_broker_pubsub::emulator::Emulator::restart(self).await;
    }
}

/// A bundle of one ConfigMap `cm-<i>` in `default` whose data records `generation`.
pub fn config_map_work(i: usize, generation: u32) -> ManifestWorkInput {
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

/// Runs the scenario on a stack built from `config` (its `db_url` is checked directly).
pub async fn restart_with_bundles_in_flight(mut config: StackConfig, broker: &mut impl Restartable) {
    let url = config.db_url.clone();
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
            broker.kill();
        }
        let consumer = &consumers[i % consumers.len()];
        let out = stack.source.apply(consumer, &config_map_work(i, 1)).await.unwrap();
        bundles.push((consumer.clone(), out.resource_id, 1i64));
    }
    for (i, b) in bundles.iter_mut().enumerate().take(20) {
        stack.source.apply(&b.0, &config_map_work(i, 2)).await.unwrap();
        b.2 = 2;
    }
    broker.restart().await;

    for (consumer, id, version) in &bundles {
        wait_for(&format!("{consumer}/{id} Applied at version {version}"), || async {
            let b = stack.rest.get_bundle(id).await.ok()?;
            (b.version == *version && b.is_true_at_current_version("Applied")).then_some(())
        })
        .await;
    }
    check_store(&url).await;
    for (i, c) in consumers.iter().enumerate() {
        let objects = stack.cluster(c).objects();
        assert_eq!(objects.len(), 10, "{c} holds exactly its 10 ConfigMaps");
        for o in objects {
            let n: usize = o["metadata"]["name"].as_str().unwrap()[3..].parse().unwrap();
            assert_eq!(n % consumers.len(), i, "{c} holds only its own bundles");
            let want = if n < 20 { "2" } else { "1" };
            assert_eq!(o["data"]["generation"], want, "{c}/cm-{n} is at its latest spec");
        }
    }
    stack.shutdown().await;
}

async fn check_store(url: &str) {
    let store = maestro_store::open(url).await.unwrap();
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
    // Specs can reach the agents through the resync paths while the dispatcher still backs off
    // on rows whose publish failed during the outage: the outbox drains, but not necessarily
    // before every bundle is Applied.
    wait_for("the outbox drained", || async {
        store.pending_spec_events(10).await.ok()?.is_empty().then_some(())
    })
    .await;
}
