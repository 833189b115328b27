//! Poison messages never stop the status pipeline (docs/security.md, "Bad input"): over MQTT,
//! whose broker hands the server one agent's messages in order and waits for each ack, a
//! status the database refuses as data (a resource id holding a NUL byte, which PostgreSQL
//! refuses with SQLSTATE 22021) is dropped as permanent, and the next real status is stored.
//! Before the fix it was classed retryable and retried forever on PostgreSQL, so no later status
//! from any consumer was processed. Also: a bogus `Deleted` status (wrong version) leaves the
//! bundle in place, and every refused status is kept as a dead letter (docs/security.md, "Dead
//! letters"). Runs the real server with the embedded MQTT broker on both stores.

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

/// A running stack on the embedded MQTT broker with consumer `c1`, one bundle of it and a raw
/// agent of `c1` (no agent runs in these tests).
struct Setup {
    stack: LocalStack,
    store: maestro_store::DynStore,
    id: String,
    agent: std::sync::Arc<MqttAgent>,
}

/// Starts a [`Setup`] on `url`; `prepare` runs on the database after the migrations.
async fn setup<F, Fut>(url: &str, prepare: F) -> Setup
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    logging();
    let mut config = StackConfig::new(url);
    config.broker = BrokerKind::Mqtt;
    let stack = LocalStack::start(config).await.unwrap();
    prepare(url.to_owned()).await;
    let store = maestro_store::open(url).await.unwrap();
    stack.rest.create_consumer("c1", &Default::default()).await.unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let spec = SpecEventBuilder::new("poison-test", &id, 0, "c1")
        .bundle_json(json!({"manifests": [{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"default"}}]}))
        .build();
    publish_raw(stack.grpc_addr(), &spec).await.expect("bundle");
    let agent_config = MqttConfig::new(stack.broker_addr(), MqttTopics::maestro("maestro"));
    let agent = MqttAgent::connect(agent_config, "c1", "c1-raw").await.expect("agent connects");
    wait_for("the raw agent's connection", || async { agent.is_connected().then_some(()) }).await;
    Setup { stack, store, id, agent }
}

/// Runs `sql` (several statements) on the PostgreSQL database at `url`.
async fn execute(url: String, sql: &'static str) {
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(sql).execute(&pool).await.unwrap();
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
    let (_guard, url) = db_url(db).await;
    let Setup { stack, store, id, agent } = setup(&url, |_| async {}).await;
    let ids = Generator::default();
    let bad_id_status = status("bad\u{0}id", 1, &ids.next_string(), "Applied");
    agent.publish(&bad_id_status).await.expect("poison published");
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
    // What was refused for good is kept as dead letters, with the event and the reason. A
    // status of another source is refused on both stores; the NUL bytes only by PostgreSQL
    // (SQLite stores the hash, and finds no bundle with the NUL id).
    let mut foreign = status(&id, 1, &ids.next_string(), "Applied");
    maestro_api::ext::set_str(&mut foreign, maestro_api::ext::ORIGINAL_SOURCE, "someone-else");
    agent.publish(&foreign).await.expect("foreign status published");
    let expected = if db == Db::Postgres { 3 } else { 1 };
    let letters = wait_for("the dead letters", || async {
        let page = store.list_dead_letters(&Default::default()).await.ok()?;
        (page.total >= expected).then_some(page.items)
    })
    .await;
    assert_eq!(letters.len() as i64, expected, "{letters:#?}");
    assert!(letters[0].reason.contains("originalsource"), "newest first: {:?}", letters[0].reason);
    assert_eq!(letters[0].event_id.as_deref(), Some(maestro_api::AttributesReader::id(&foreign)));
    if db == Db::Postgres {
        let by_event = |event: &maestro_api::Event| {
            let id = maestro_api::AttributesReader::id(event);
            letters
                .iter()
                .find(|d| d.event_id.as_deref() == Some(id))
                .unwrap_or_else(|| panic!("no dead letter for {id}: {letters:#?}"))
        };
        let bad_id = by_event(&bad_id_status);
        assert_eq!(bad_id.resource_id.as_deref(), Some("bad\\0id"), "the NUL is stored escaped");
        assert!(bad_id.reason.contains("database refused"), "{:?}", bad_id.reason);
        let hash = by_event(&poison);
        assert_eq!(hash.resource_id.as_deref(), Some(id.as_str()));
        assert!(hash.reason.contains("database refused"), "{:?}", hash.reason);
    }
    agent.close().await;
    stack.shutdown().await;
}

/// A status whose write keeps failing with an error that may pass (here a trigger raising
/// SQLSTATE 40001, serialization failure, for one status hash) while the database answers
/// pings is a poison message too: after its bounded retries it is set aside as a dead letter
/// and the statuses behind it are stored. Before, it was redelivered forever and held them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_that_keeps_failing_retryably_is_set_aside_on_postgres() {
    let (_guard, url) = db_url(Db::Postgres).await;
    let trigger = "CREATE FUNCTION refuse_retryably() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = '40001'; END $$; \
         CREATE TRIGGER refuse_retryably BEFORE UPDATE ON resources FOR EACH ROW \
           WHEN (NEW.status_hash = 'retry-forever') EXECUTE FUNCTION refuse_retryably();";
    let Setup { stack, store, id, agent } = setup(&url, |url| execute(url, trigger)).await;
    let ids = Generator::default();
    let poison = status_with_hash(&id, 1, &ids.next_string(), "Applied", "retry-forever");
    agent.publish(&poison).await.expect("poison published");
    agent.publish(&status(&id, 1, &ids.next_string(), "Available")).await.expect("real status published");
    wait_for("the real status behind the poison one", || async {
        let r = store.get_resource(&id).await.ok()?;
        r.status.as_ref()?.to_string().contains("Available").then_some(())
    })
    .await;
    let letters = store.list_dead_letters(&Default::default()).await.unwrap().items;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0].event_id.as_deref(), Some(maestro_api::AttributesReader::id(&poison)));
    assert!(letters[0].reason.contains("failed 5 times while the database answers"), "{}", letters[0].reason);
    agent.close().await;
    stack.shutdown().await;
}

/// An outage is never a poison message: a status whose write fails with PostgreSQL's "disk
/// full" (SQLSTATE 53100, raised here by a trigger that counts its calls in a sequence, which
/// no rollback undoes) while the database still answers pings is tried again past the
/// poison-message limit of 5 attempts, and stored once the disk has room; no dead letter.
/// Before, the ping after the fifth failure made it the status's own fault: it was set aside
/// for good and lost — what the fault harness saw as a status never stored after a cut
/// between the server and PostgreSQL ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_met_by_an_outage_waits_for_the_database_on_postgres() {
    let (_guard, url) = db_url(Db::Postgres).await;
    let trigger = "CREATE SEQUENCE disk_full_calls; \
         CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           PERFORM nextval('disk_full_calls'); \
           RAISE EXCEPTION 'injected disk full' USING ERRCODE = '53100'; END $$; \
         CREATE TRIGGER disk_full BEFORE UPDATE ON resources FOR EACH ROW \
           WHEN (NEW.status_hash = 'disk-full') EXECUTE FUNCTION disk_full();";
    let Setup { stack, store, id, agent } = setup(&url, |url| execute(url, trigger)).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let ids = Generator::default();
    let st = status_with_hash(&id, 1, &ids.next_string(), "Applied", "disk-full");
    agent.publish(&st).await.expect("status published");
    wait_for("more write attempts than the poison-message limit of 5", || async {
        let calls: i64 =
            sqlx::query_scalar("SELECT last_value FROM disk_full_calls").fetch_one(&pool).await.ok()?;
        (calls > 6).then_some(())
    })
    .await;
    sqlx::raw_sql("DROP TRIGGER disk_full ON resources").execute(&pool).await.unwrap();
    wait_for("the status once the disk has room", || async {
        let r = store.get_resource(&id).await.ok()?;
        r.status.as_ref()?.to_string().contains("Applied").then_some(())
    })
    .await;
    let letters = store.list_dead_letters(&Default::default()).await.unwrap().items;
    assert!(letters.is_empty(), "an outage set a status aside: {letters:#?}");
    agent.close().await;
    stack.shutdown().await;
}

/// Messages the MQTT transport drops before the handler sees them (bytes that are no
/// CloudEvent, an event that speaks for another consumer than its topic's) are kept as `agent`
/// dead letters with the payload and the reason; before, they were only logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_transport_drops_become_dead_letters() {
    let (_guard, url) = db_url(Db::Sqlite).await;
    let Setup { stack, store, id, agent } = setup(&url, |_| async {}).await;
    let addr = stack.broker_addr().to_string();
    let mut raw = maestro_broker_mqtt::testing::RawClient::connect(&addr, "c1-rogue", None).await.unwrap();
    let topic = "sources/maestro/consumers/c1/agentevents";
    raw.publish(topic, "not a cloudevent").await.unwrap();
    let ids = Generator::default();
    let mut other = status(&id, 1, &ids.next_string(), "Applied");
    maestro_api::ext::set_str(&mut other, maestro_api::ext::CLUSTER_NAME, "c2");
    raw.publish_event(topic, &other).await.unwrap();
    let letters = wait_for("two dead letters", || async {
        let page = store.list_dead_letters(&Default::default()).await.ok()?;
        (page.total >= 2).then_some(page.items)
    })
    .await;
    assert_eq!(letters.len(), 2, "{letters:#?}");
    // The two are set aside by different paths (the transport's decoder, the ingest's checks),
    // so either may be stored first.
    let junk_first = letters[0].event.as_deref() == Some("not a cloudevent");
    let (foreign, junk) = if junk_first { (&letters[1], &letters[0]) } else { (&letters[0], &letters[1]) };
    assert_eq!(
        (junk.origin.as_str(), junk.consumer_name.as_deref(), junk.event.as_deref()),
        ("agent", Some("c1"), Some("not a cloudevent"))
    );
    assert!(junk.reason.contains(topic), "{}", junk.reason);
    assert_eq!(
        (foreign.origin.as_str(), foreign.event_id.as_deref()),
        ("agent", Some(maestro_api::AttributesReader::id(&other)))
    );
    assert!(foreign.reason.contains("claims clustername"), "{}", foreign.reason);
    raw.disconnect().await;
    agent.close().await;
    stack.shutdown().await;
}
