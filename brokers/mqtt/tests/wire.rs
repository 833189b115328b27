//! Wire checks against Mosquitto with the Mosquitto command-line clients standing in for Go
//! peers: a status published in the Go agent's exact format reaches the source handler; a
//! source publish is read back with its topic and `ce-` user properties; malformed messages,
//! and statuses without the topic's consumer as `clustername`, are acked and dropped; size,
//! routing and connection errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use maestro_api::codec::{self, SpecEventBuilder};
use maestro_api::payload::StatusHashList;
use maestro_api::{AttributesReader, Data};
use maestro_broker_mqtt::testing::{
    self, GO_APPLIED_STATUS, GoStatus, Mosquitto, config_for, free_port, mosquitto_pub,
};
use maestro_broker_mqtt::{MqttAgent, MqttSource, MqttTopics};
use maestro_transport::conformance::Recorder;
use maestro_transport::{AgentTransport, Error, SourceTransport};
use serde_json::json;

type Props = Vec<(&'static str, String)>;

const AGENT_TOPIC: &str = "sources/maestro/consumers/cluster1/agentevents";

/// The Go agent's status properties for cluster1's resource.
fn go_status_props(id: &str) -> Props {
    testing::go_status_props(&GoStatus {
        id,
        cluster: "cluster1",
        resource_id: "68ebf474-6709-48bb-b760-386181268060",
        resource_version: 1,
        original_source: "maestro",
        sequence_id: "1834773391719010304",
    })
}

const STATUS_DATA: &str = GO_APPLIED_STATUS;

async fn started_source(broker: &Mosquitto) -> (std::sync::Arc<MqttSource>, std::sync::Arc<Recorder>) {
    let source = MqttSource::connect(config_for(&broker.address()), "maestro", "maestro-wire").await.unwrap();
    let rec = Recorder::new();
    source.start(rec.clone()).await.unwrap();
    let mut sig = source.subscribed();
    tokio::time::timeout(Duration::from_secs(20), sig.wait_for(|v| *v > 0)).await.unwrap().unwrap();
    (source, rec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_agent_status_reaches_the_source_and_malformed_messages_are_dropped() {
    let broker = Mosquitto::start();
    let (source, rec) = started_source(&broker).await;
    let props = |id: &str, f: &dyn Fn(&mut Props)| {
        let mut p = go_status_props(id);
        f(&mut p);
        p
    };
    let publish = |props: Props, ct: Option<&str>, payload: &str| {
        let refs: Vec<(&str, &str)> = props.iter().map(|(k, v)| (*k, v.as_str())).collect();
        mosquitto_pub(broker.port, AGENT_TOPIC, ct, &refs, payload);
    };
    // Malformed: no ce-specversion and no structured content type; bad JSON; an invalid time;
    // a bad extension name. Each must be acked and dropped without reaching the handler.
    publish(
        props("bad-1", &|p| p.retain(|(k, _)| *k != "ce-specversion")),
        Some("application/json"),
        STATUS_DATA,
    );
    publish(go_status_props("bad-2"), Some("application/json"), "{not json");
    publish(props("bad-3", &|p| p.push(("ce-time", "yesterday".into()))), None, STATUS_DATA);
    publish(props("bad-4", &|p| p.push(("ce-Bad Name", "x".into()))), None, STATUS_DATA);
    // Without a clustername, or with an empty one, a status cannot say which consumer it is
    // for: the server refuses it (it must name the consumer of its topic, cluster1).
    publish(
        props("go-1", &|p| p.retain(|(k, _)| *k != "ce-clustername")),
        Some("application/json"),
        STATUS_DATA,
    );
    let mut with_empty = go_status_props("go-2");
    with_empty.retain(|(k, _)| *k != "ce-clustername");
    with_empty.push(("ce-clustername", String::new()));
    publish(with_empty, Some("application/json"), STATUS_DATA);
    // The Go agent's format exactly.
    publish(go_status_props("go-3"), Some("application/json"), STATUS_DATA);
    rec.wait_for("the Go-format status", |evs| evs.iter().any(|e| e.id() == "go-3")).await;
    assert_eq!(
        rec.acked_ids(),
        vec!["go-3"],
        "malformed or unattributed messages must not reach the handler"
    );
    for id in ["bad-1", "bad-2", "bad-3", "bad-4", "go-1", "go-2"] {
        assert_eq!(rec.attempts(id), 0, "{id} reached the handler");
    }
    let found = std::sync::Mutex::new(None);
    rec.wait_for("go-3", |evs| {
        *found.lock().unwrap() = evs.iter().find(|e| e.id() == "go-3").cloned();
        true
    })
    .await;
    let ev = found.into_inner().unwrap().expect("go-3 event");
    let st = codec::decode_status(&ev).expect("decode_status");
    assert_eq!(
        (st.resource_version, st.cluster_name.as_str(), st.original_source.as_str()),
        (1, "cluster1", "maestro")
    );
    assert_eq!(st.status.conditions.len(), 1);
    assert_eq!(ev.datacontenttype(), Some("application/json"));
    source.close().await;
    source.close().await;
    let err =
        source.publish(&SpecEventBuilder::new("maestro", "r", 1, "cluster1").build()).await.unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_publish_has_the_go_topic_and_user_properties() {
    let broker = Mosquitto::start();
    let source = MqttSource::connect(config_for(&broker.address()), "maestro", "maestro-wire").await.unwrap();
    let mut sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-V", "mqttv5", "-q", "1"])
        .args(["-t", "sources/maestro/consumers/+/sourceevents", "-C", "1", "-W", "30", "-F", "%j"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (apt-get install -y mosquitto-clients)");
    let bundle = json!({"manifests":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"default"}}]});
    let ev = SpecEventBuilder::new("maestro", "rid-1", 7, "cluster1").bundle_json(bundle.clone()).build();
    // mosquitto_sub gives no "subscribed" signal: publish until it has printed one message.
    let start = Instant::now();
    while sub.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "mosquitto_sub never received the spec");
        let _ = source.publish(&ev).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = sub.wait_with_output().unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    let msg: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(msg["topic"], "sources/maestro/consumers/cluster1/sourceevents");
    assert_eq!(msg["qos"], 1);
    assert_eq!(msg["retain"], 0);
    assert_eq!(msg["properties"]["content-type"], "application/json");
    let up = &msg["properties"]["user-properties"];
    assert_eq!(up["ce-specversion"], "1.0");
    assert_eq!(up["ce-id"], ev.id());
    assert_eq!(up["ce-source"], "maestro");
    assert_eq!(
        up["ce-type"],
        "io.open-cluster-management.works.v1alpha1.manifestbundles.spec.create_request"
    );
    assert_eq!(up["ce-resourceid"], "rid-1");
    assert_eq!(up["ce-resourceversion"], "7");
    assert_eq!(up["ce-clustername"], "cluster1");
    assert_eq!(up["ce-originalsource"], "");
    assert_eq!(up["ce-logtracing"], "{}");
    assert!(up["ce-time"].as_str().unwrap().ends_with('Z'));
    let payload: serde_json::Value = serde_json::from_str(msg["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload, bundle);
    source.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_routing_and_connection_errors() {
    let broker = Mosquitto::start();
    let mut cfg = config_for(&broker.address());
    cfg.max_event_bytes = 4096;
    cfg.topics = MqttTopics::maestro("maestro"); // no broadcast topics
    let source = MqttSource::connect(cfg.clone(), "maestro", "maestro-limits").await.unwrap();
    let agent = MqttAgent::connect(cfg.clone(), "cluster1", "cluster1-work-agent").await.unwrap();
    assert_eq!(agent.client_id(), "cluster1-work-agent-client");
    assert_eq!(source.client_id(), "maestro-limits");
    let mut big = SpecEventBuilder::new("maestro", "r", 1, "cluster1").build();
    big.set_data("application/json", Data::Json(json!({"pad": "x".repeat(5000)})));
    let err = source.publish(&big).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 4096, .. }), "{err}");
    let err = agent.publish(&big).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    // A status resync for every cluster needs sourceBroadcast; a spec needs a clustername.
    let all = codec::status_resync_request("maestro", "", &StatusHashList::default());
    let err = source.publish(&all).await.unwrap_err();
    assert!(matches!(err, Error::Encode { .. }) && err.to_string().contains("broadcast"), "{err}");
    let err = source.publish(&SpecEventBuilder::new("maestro", "r", 1, "").build()).await.unwrap_err();
    assert!(err.to_string().contains("clustername"), "{err}");
    // A publish that is routable succeeds once connected (no subscriber needed).
    let ok = SpecEventBuilder::new("maestro", "r", 1, "cluster1").build();
    let start = Instant::now();
    loop {
        match source.publish(&ok).await {
            Ok(()) => break,
            Err(e) if e.is_retryable() && start.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("publish failed: {e}"),
        }
    }
    // Nothing listens here: publish fails fast with Disconnected.
    let nowhere =
        MqttSource::connect(config_for(&format!("127.0.0.1:{}", free_port())), "maestro", "x").await.unwrap();
    let t = Instant::now();
    let err = nowhere.publish(&ok).await.unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }) && t.elapsed() < Duration::from_secs(1), "{err}");
    // Invalid configurations are refused up front.
    let err = MqttSource::connect(cfg.clone(), "other-source", "x").await.unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    let mut bad = cfg.clone();
    bad.pub_qos = 2;
    assert!(
        MqttAgent::connect(bad, "cluster1", "a").await.unwrap_err().to_string().contains("not supported")
    );
    for t in [source.close(), nowhere.close()] {
        t.await;
    }
    agent.close().await;
}
