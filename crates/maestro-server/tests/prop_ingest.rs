//! Property tests of the status ingestion path ([`Ingest`], the handler the server gives its
//! source transport) on a real SQLite store seeded with one consumer and one resource bundle
//! carrying a status.
//!
//! Arbitrary status events and spec resync requests (valid ones built with the codec, then
//! mutated at the structured-JSON level: attributes and extensions removed or set to any JSON
//! value, data replaced) and arbitrary MQTT messages that decode are handed to
//! [`EventHandler::handle`]. For every one: no panic, an answer within a deadline, and when
//! the event is malformed (the status decoder refuses it, its `originalsource` is not this
//! server, it is not a status event at all, or it is a resync request) the stored bundle and
//! the status event log are exactly as before, and a malformed status is refused permanently.
//! A well-formed status for the seeded bundle is accepted (stored or reported stale, never an
//! error).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use maestro_api::codec::{StatusEventBuilder, data_as, decode_status, spec_resync_request};
use maestro_api::payload::{ManifestBundleStatus, ResourceVersion, ResourceVersionList};
use maestro_api::snowflake::Generator;
use maestro_api::types::{Action, EventType, SubResource};
use maestro_api::{Event, json, mqtt};
use maestro_server::ingest::Ingest;
use maestro_store::{DynStore, NewConsumer, NewResource, Resource};
use maestro_transport::memory::MemoryBroker;
use maestro_transport::{AgentTransport, EventHandler, HandlerError};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

const SOURCE: &str = "maestro";
const CONSUMER: &str = "c1";
const RID: &str = "68ebf474-6709-48bb-b760-386181268060";
/// Longest a handler call may take.
const DEADLINE: Duration = Duration::from_secs(5);

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Swallows what the server publishes to the seeded consumer's agent (resync answers).
struct Sink;

#[async_trait]
impl EventHandler for Sink {
    async fn handle(&self, _event: &Event) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// A runtime, a seeded SQLite store and the handler under test.
struct Fixture {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    store: DynStore,
    ingest: Arc<Ingest>,
    _broker: MemoryBroker,
    ids: Generator,
    /// Events checked per verdict: malformed status, status, other.
    seen: std::sync::Mutex<[usize; 3]>,
}

impl Fixture {
    fn new() -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (dir, store, ingest, broker) = rt.block_on(async {
            let (dir, url) = maestro_store::testing::sqlite_file().await;
            let store = maestro_store::open(&url).await.expect("open sqlite");
            store
                .create_consumer(NewConsumer { name: Some(CONSUMER.into()), labels: Default::default() })
                .await
                .expect("consumer");
            store
                .create_resource(NewResource {
                    id: RID.into(),
                    name: "work".into(),
                    consumer_name: CONSUMER.into(),
                    source: SOURCE.into(),
                    payload: json!({
                        "specversion": "1.0", "id": "ev-1", "source": SOURCE,
                        "type": "io.open-cluster-management.works.v1alpha1.manifestbundles.spec.create_request",
                        "resourceid": RID, "resourceversion": 1, "clustername": CONSUMER,
                        "datacontenttype": "application/json",
                        "data": {"manifests": [{"apiVersion": "v1", "kind": "ConfigMap",
                                               "metadata": {"name": "a", "namespace": "default"}}]}
                    }).into(),
                })
                .await
                .expect("resource");
            let broker = MemoryBroker::new();
            broker.agent(CONSUMER).start(Arc::new(Sink)).await.expect("agent");
            let ingest = Ingest::new(store.clone(), broker.source(), SOURCE);
            (dir, store, ingest, broker)
        });
        let fx = Fixture {
            rt,
            _dir: dir,
            store,
            ingest,
            _broker: broker,
            ids: Generator::default(),
            seen: Default::default(),
        };
        // The bundle starts with a status, so "unchanged" covers the status columns too.
        let first = fx.status_event(&ManifestBundleStatus::default());
        let handled = fx.rt.block_on(fx.ingest.handle(&first));
        assert_eq!(handled, Ok(()), "seed status");
        assert!(fx.row().status.is_some(), "seed status stored");
        fx
    }

    /// A valid status event for the seeded bundle with a fresh sequence id.
    fn status_event(&self, status: &ManifestBundleStatus) -> Event {
        StatusEventBuilder {
            source: "c1-work-agent",
            resource_id: RID,
            resource_version: 1,
            cluster_name: CONSUMER,
            original_source: SOURCE,
            sequence_id: &self.ids.next_string(),
            status_hash: "6b7c3d1f",
            metadata: None,
            action: Action::Update,
        }
        .build(status)
    }

    /// Events checked so far per verdict: malformed status, status, other.
    fn seen(&self) -> [usize; 3] {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn row(&self) -> Resource {
        self.rt.block_on(self.store.get_resource(RID)).expect("the seeded bundle is never deleted")
    }

    fn last_status_seq(&self) -> i64 {
        self.rt.block_on(self.store.last_status_event_seq()).expect("status log")
    }

    /// Hands `event` to the handler and checks the properties of the module docs.
    fn check(&self, event: Event) -> Result<(), TestCaseError> {
        let before = self.row();
        let seq_before = self.last_status_seq();
        let verdict = classify(&event);
        let slot = match verdict {
            Verdict::MalformedStatus(_) => 0,
            Verdict::Status => 1,
            Verdict::Other => 2,
        };
        self.seen.lock().unwrap_or_else(|p| p.into_inner())[slot] += 1;
        let result = self
            .rt
            .block_on(async { tokio::time::timeout(DEADLINE, self.ingest.handle(&event)).await })
            .map_err(|_| TestCaseError::fail(format!("handle took longer than {DEADLINE:?}")))?;
        match verdict {
            Verdict::MalformedStatus(why) => {
                prop_assert!(
                    matches!(result, Err(HandlerError::Permanent(_))),
                    "malformed status ({why}) answered {result:?}"
                );
            }
            Verdict::Status => {
                prop_assert_eq!(&result, &Ok(()), "a well-formed status for the seeded bundle");
                return Ok(());
            }
            Verdict::Other => {}
        }
        prop_assert_eq!(self.row(), before, "the stored bundle changed ({:?})", result);
        prop_assert_eq!(self.last_status_seq(), seq_before, "a status event row was appended");
        Ok(())
    }
}

/// What the handler may do with an event.
#[derive(Debug)]
enum Verdict {
    /// A status update that must be refused, with why.
    MalformedStatus(String),
    /// A well-formed status update for this server: may change the stored bundle.
    Status,
    /// Anything else (resync requests, other types, events that do not parse as a type):
    /// must not change the stored bundle.
    Other,
}

fn classify(event: &Event) -> Verdict {
    use maestro_api::AttributesReader;
    let Ok(t) = EventType::parse(event.ty()) else { return Verdict::Other };
    if !t.is_manifest_bundles() || t.sub_resource != SubResource::Status || t.action == Action::ResyncRequest
    {
        return Verdict::Other;
    }
    match decode_status(event) {
        Err(e) => Verdict::MalformedStatus(e.to_string()),
        Ok(st) if st.original_source != SOURCE => Verdict::MalformedStatus("another source".into()),
        Ok(_) => match data_as::<Value>(event, "data") {
            Err(e) => Verdict::MalformedStatus(e.to_string()),
            Ok(_) => Verdict::Status,
        },
    }
}

/// Short text, often empty or a known name.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::sample::select(vec![CONSUMER, SOURCE, RID, "", "c2", "1", "-1", "True"]).prop_map(str::to_owned),
        2 => "[a-z0-9-]{0,12}",
        1 => ".{0,12}",
    ]
    .boxed()
}

/// Any JSON value (floats and huge integers included), a few levels deep.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(text(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A status payload: typed conditions (Applied, Available, Deleted, …) or any JSON.
fn status_payload() -> BoxedStrategy<Value> {
    let condition = (
        prop::sample::select(vec!["Applied", "Available", "Deleted", "Degraded", ""]),
        prop::sample::select(vec!["True", "False", "Unknown"]),
    )
        .prop_map(|(t, s)| json!({"type": t, "status": s, "lastTransitionTime": "2024-09-13T06:11:10Z"}));
    prop_oneof![
        3 => vec(condition, 0..3).prop_map(|c| json!({"conditions": c})),
        1 => any_json(),
    ]
    .boxed()
}

/// Structured-JSON edits: remove a key or set it to any JSON value.
fn edits() -> BoxedStrategy<Vec<(String, Option<Value>)>> {
    let key = prop_oneof![
        4 => prop::sample::select(vec![
            "specversion", "id", "source", "type", "time", "datacontenttype", "data",
            "data_base64", "resourceid", "resourceversion", "clustername", "originalsource",
            "deletiontimestamp", "metadata", "sequenceid", "statushash",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z]{1,8}",
    ];
    let value = prop_oneof![
        3 => any_json(),
        2 => prop::sample::select(vec![
            json!("1"), json!(1), json!(2), json!(0), json!(i64::from(i32::MAX) + 1), json!(""),
            json!(CONSUMER), json!(SOURCE), json!("other"), json!(RID), json!("9223372036854775807"),
            json!("io.open-cluster-management.works.v1alpha1.manifestbundles.status.update_request"),
            json!("io.open-cluster-management.works.v1alpha1.manifestbundles.status.resync_request"),
            json!("io.open-cluster-management.works.v1alpha1.manifestbundles.spec.resync_request"),
            json!("io.open-cluster-management.works.v1alpha1.manifestbundles.spec.update_request"),
            json!("io.open-cluster-management.works.v1alpha1.manifests.status.update_request"),
            json!("text/plain"), json!("2024-03-01T10:00:00Z"), json!("{}"), json!("{"),
        ]),
    ];
    vec((key, proptest::option::of(value)), 0..4).boxed()
}

/// Applies `edits` to the structured JSON of `event`; `None` when the result is no event.
fn mutate(event: &Event, edits: &[(String, Option<Value>)]) -> Option<Event> {
    let mut obj = json::to_value(event);
    let map = obj.as_object_mut()?;
    for (k, v) in edits {
        match v {
            Some(v) => map.insert(k.clone(), v.clone()),
            None => map.remove(k),
        };
    }
    json::from_value(obj).ok()
}

fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(config());
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// Mutated status updates for the seeded bundle.
#[test]
fn mutated_status_events() {
    let fx = Fixture::new();
    run((status_payload(), edits()), |(payload, edits)| {
        let mut ev = fx.status_event(&ManifestBundleStatus::default());
        ev.set_data_unchecked(maestro_api::Data::Json(payload));
        match mutate(&ev, &edits) {
            Some(ev) => fx.check(ev),
            None => Ok(()),
        }
    });
    let [malformed, valid, _] = fx.seen();
    assert!(malformed > 0 && valid > 0, "both malformed and valid statuses were tried: {:?}", fx.seen());
}

/// Spec resync requests (any cluster, any held versions), mutated: answered in the background
/// without changing the stored bundle.
#[test]
fn mutated_spec_resync_requests() {
    let fx = Fixture::new();
    let versions = vec((text(), any::<i64>()), 0..4).prop_map(|v| ResourceVersionList {
        resource_versions: v
            .into_iter()
            .map(|(resource_id, resource_version)| ResourceVersion { resource_id, resource_version })
            .collect(),
    });
    run((text(), versions, edits()), |(cluster, versions, edits)| {
        let ev = spec_resync_request("c1-work-agent", &cluster, &versions);
        match mutate(&ev, &edits) {
            Some(ev) => fx.check(ev),
            None => Ok(()),
        }
    });
    assert!(fx.seen()[2] > 0, "resync requests were handled: {:?}", fx.seen());
}

/// Status events as an MQTT message with user properties removed, renamed or set to any
/// string and the payload replaced, decoded as the MQTT broker does, then handled.
#[test]
fn mutated_mqtt_status_messages() {
    let fx = Fixture::new();
    let names = prop::sample::select(vec![
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-resourceid",
        "ce-resourceversion",
        "ce-clustername",
        "ce-originalsource",
        "ce-sequenceid",
        "ce-statushash",
        "ce-metadata",
        "ce-data",
        "ce-x",
    ]);
    let props = vec((names, proptest::option::of(text())), 0..4);
    let payload = proptest::option::of(prop_oneof![
        any_json().prop_map(|v| v.to_string().into_bytes()),
        vec(any::<u8>(), 0..32),
    ]);
    run((status_payload(), props, payload), |(status, props, payload)| {
        let mut ev = fx.status_event(&ManifestBundleStatus::default());
        ev.set_data_unchecked(maestro_api::Data::Json(status));
        let mut msg = mqtt::encode(&ev);
        for (name, value) in props {
            msg.user_properties.retain(|(k, _)| k != name);
            if let Some(v) = value {
                msg.user_properties.push((name.to_owned(), v));
            }
        }
        if let Some(p) = payload {
            msg.payload = p;
        }
        match mqtt::decode(&msg) {
            Ok(ev) => fx.check(ev),
            Err(_) => Ok(()),
        }
    });
    let [malformed, valid, _] = fx.seen();
    assert!(malformed > 0 && valid > 0, "both malformed and valid statuses were tried: {:?}", fx.seen());
}
