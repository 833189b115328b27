//! The agent applies spec events only from its accepted source id(s), end to end on Mosquitto:
//! a rogue client publishing on the agent's spec topic (as anyone allowed on the broker can)
//! gets nothing applied, and the server's next spec for the same resource is applied. Mosquitto
//! is started by the test on a free port (`apt-get install -y mosquitto mosquitto-clients`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use maestro::broker::BrokerKind;
use maestro::stack::{LocalStack, StackConfig};
use maestro_broker_mqtt::testing::{Mosquitto, mosquitto_pub};
use maestro_tests::{Db, db_url, logging, wait_for};

const WEB: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: default}\ndata: {k: v}\n";
const WARM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: warm, namespace: default}\ndata: {k: v}\n";
const EVIL: &str = r#"{"manifests":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"evil","namespace":"default"},"data":{"x":"y"}}]}"#;

/// Publishes a `spec.create_request` for `resource_id` at version 5 with CloudEvent source
/// `rogue` on cluster1's spec topic, in the Go binary MQTT format. Accepted, it would make the
/// agent hold generation 5, so the server's version 1 of the same resource would be ignored as
/// stale: the test could not see it applied.
fn publish_rogue_spec(port: u16, resource_id: &str) {
    let props = [
        ("ce-specversion", "1.0"),
        ("ce-id", "rogue-1"),
        ("ce-source", "rogue"),
        ("ce-type", "io.open-cluster-management.works.v1alpha1.manifestbundles.spec.create_request"),
        ("ce-time", "2024-09-13T06:11:10Z"),
        ("ce-resourceid", resource_id),
        ("ce-resourceversion", "5"),
        ("ce-clustername", "cluster1"),
        ("ce-logtracing", "{}"),
    ];
    let topic = "sources/maestro/consumers/cluster1/sourceevents";
    mosquitto_pub(port, topic, Some("application/json"), &props, EVIL);
}

async fn applied(stack: &LocalStack, id: &str, what: &str) {
    wait_for(what, || async {
        let b = stack.rest.get_bundle(id).await.ok()?;
        b.is_true_at_current_version("Applied").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spec_from_an_unknown_source_is_not_applied_and_the_next_legit_one_is() {
    logging();
    let mosquitto = Mosquitto::start();
    let (_guard, url) = db_url(Db::Sqlite).await;
    let mut config = StackConfig::new(&url);
    config.broker = BrokerKind::Mqtt;
    config.mqtt_host = Some(mosquitto.address());
    let mut stack = LocalStack::start(config).await.unwrap();
    stack.rest.create_consumer("cluster1", &Default::default()).await.unwrap();
    stack.start_agent("cluster1").await.unwrap();
    // Once a work is applied the agent is subscribed: the rogue message reaches it.
    let warm = maestro_client::manifestwork::parse("warm.yaml", WARM, Some("warm")).unwrap();
    let warm_id = stack.source.apply("cluster1", &warm).await.unwrap().resource_id;
    applied(&stack, &warm_id, "the warm-up work applied").await;

    let web = maestro_client::manifestwork::parse("web.yaml", WEB, Some("web")).unwrap();
    let web_id = stack.source.resource_id("cluster1", "web");
    publish_rogue_spec(mosquitto.port, &web_id);
    // Same topic and resource id: the agent handles the rogue event first, in order.
    assert_eq!(stack.source.apply("cluster1", &web).await.unwrap().resource_id, web_id);
    applied(&stack, &web_id, "the server's spec applied after the rogue one").await;

    let cluster = stack.cluster("cluster1");
    assert!(cluster.object("v1", "ConfigMap", "default", "evil").is_none(), "the rogue spec was applied");
    assert!(cluster.object("v1", "ConfigMap", "default", "web").is_some());
    let bundle = stack.rest.get_bundle(&web_id).await.unwrap();
    assert_eq!(bundle.version, 1);
    stack.shutdown().await;
}
