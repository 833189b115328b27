//! Poison messages never stop the status pipeline (docs/security.md, "Bad input"): over MQTT,
//! whose broker hands the server one agent's messages in order and waits for each ack, a
//! status the database refuses as data (a resource id holding a NUL byte, which PostgreSQL
//! refuses with SQLSTATE 22021) is dropped as permanent, and the next real status is stored.
//! Before the fix it was classed retryable and retried forever on PostgreSQL, so no later status
//! from any consumer was processed. Also: a bogus `Deleted` status (wrong version) leaves the
//! bundle in place. Runs the real server with the embedded MQTT broker on both stores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use maestro::broker::BrokerKind;
use maestro::stack::{LocalStack, StackConfig};
use maestro_api::AttributesWriter;
use maestro_api::codec::{SpecEventBuilder, StatusEventBuilder};
use maestro_api::payload::{Condition, ManifestBundleStatus};
use maestro_api::snowflake::Generator;
use maestro_api::types::Action;
use maestro_broker_mqtt::{MqttAgent, MqttConfig, MqttTopics};
use maestro_tests::{Db, db_url, logging, publish_raw, wait_for};
use maestro_transport::AgentTransport;
use serde_json::json;

fn status(id: &str, version: i64, seq: &str, condition: &str) -> maestro_api::Event {
    status_with_hash(id, version, seq, condition, "")
}

fn status_with_hash(id: &str, version: i64, seq: &str, condition: &str, hash: &str) -> maestro_api::Event {
    let mut st = ManifestBundleStatus::default();
    st.conditions.push(Condition { kind: condition.into(), status: "True".into(), ..Default::default() });
    let mut ev = StatusEventBuilder {
        source: "c1-work-agent",
        resource_id: id,
        resource_version: version,
        cluster_name: "c1",
        original_source: "maestro",
        sequence_id: seq,
        status_hash: hash,
        metadata: None,
        action: Action::Update,
    }
    .build(&st);
    ev.set_id(uuid::Uuid::new_v4().to_string());
    ev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_status_does_not_stop_the_pipeline_on_sqlite() {
    a_poison_status_does_not_stop_the_pipeline(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_status_does_not_stop_the_pipeline_on_postgres() {
    a_poison_status_does_not_stop_the_pipeline(Db::Postgres).await;
}

async fn a_poison_status_does_not_stop_the_pipeline(db: Db) {
    logging();
    let (_guard, url) = db_url(db).await;
    let mut config = StackConfig::new(&url);
    config.broker = BrokerKind::Mqtt;
    let stack = LocalStack::start(config).await.unwrap();
    let store = maestro_store::open(&url).await.unwrap();
    stack.rest.create_consumer("c1", &Default::default()).await.unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let spec = SpecEventBuilder::new("poison-test", &id, 0, "c1")
        .bundle_json(json!({"manifests": [{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"default"}}]}))
        .build();
    publish_raw(stack.grpc_addr(), &spec).await.expect("bundle");

    // A raw agent of c1 on the embedded broker (no agent runs in this test).
    let agent_config = MqttConfig::new(stack.broker_addr(), MqttTopics::maestro("maestro"));
    let agent = MqttAgent::connect(agent_config, "c1", "c1-raw").await.expect("agent connects");
    wait_for("the raw agent's connection", || async { agent.is_connected().then_some(()) }).await;
    let ids = Generator::default();
    agent.publish(&status("bad\u{0}id", 1, &ids.next_string(), "Applied")).await.expect("poison published");
    // The same bundle's lane: a status hash holding NUL (a text column on PostgreSQL).
    let poison = status_with_hash(&id, 1, &ids.next_string(), "Applied", "h\u{0}");
    agent.publish(&poison).await.expect("poison for the real bundle published");
    // A bogus Deleted for the real bundle: wrong version, and the bundle is not being deleted.
    agent.publish(&status(&id, 7, &ids.next_string(), "Deleted")).await.expect("bogus delete published");
    agent.publish(&status(&id, 1, &ids.next_string(), "Applied")).await.expect("real status published");
    let real = status(&id, 1, &ids.next_string(), "Available");
    agent.publish(&real).await.expect("second real status published");
    let stored = wait_for("the real statuses behind the poison ones", || async {
        let r = store.get_resource(&id).await.ok()?;
        (r.status_hash.as_deref() != Some("h\u{0}") && r.status.as_ref()?.to_string().contains("Available"))
            .then_some(r)
    })
    .await;
    assert_eq!(stored.version, 1);
    assert!(stored.deleted_at.is_none());
    agent.close().await;
    stack.shutdown().await;
}
