//! What is validated is what is stored and delivered (docs/security.md, "Bad input"): a spec
//! under the bundle limit but over the broker's message limit is refused when it is written,
//! never accepted and then left undelivered; an extension named `data` and text data that is
//! not JSON are refused. Real server and SQLite store; broker: the in-memory one with a 64 KiB
//! message limit.

mod common;

use maestro_api::codec::SpecEventBuilder;
use maestro_api::grpc;
use maestro_api::pb::cloud_event_attribute_value::Attr;
use maestro_api::pb::{self, PublishRequest};
use serde_json::json;
use tonic::Code;

const LIMIT: usize = 64 * 1024;

fn spec(id: &str, filler: usize) -> maestro_api::Event {
    let manifest = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"default"},
        "data":{"blob":"x".repeat(filler)}});
    SpecEventBuilder::new("limits-test", id, 0, "c1").bundle_json(json!({"manifests":[manifest]})).build()
}

#[tokio::test]
async fn specs_the_broker_cannot_carry_are_refused_when_written() {
    let common::Server { store, mut client, _server: server } = common::server(LIMIT).await;
    let publish = |event: pb::CloudEvent| PublishRequest { event: Some(event) };

    // 100 KB of manifests: under the 500 KiB bundle limit, over the broker's 64 KiB.
    let big = uuid::Uuid::new_v4().to_string();
    let err = client.publish(publish(grpc::to_proto(&spec(&big, 100_000)))).await.expect_err("too big");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("message limit"), "{}", err.message());
    assert!(store.get_resource(&big).await.is_err(), "nothing stored");

    let small = uuid::Uuid::new_v4().to_string();
    client.publish(publish(grpc::to_proto(&spec(&small, 1_000)))).await.expect("a small spec is taken");
    let stored = store.get_resource(&small).await.expect("stored");
    // Updating it past the limit is refused too, and the stored spec stays.
    let mut update = spec(&small, 100_000);
    maestro_api::ext::set_str(&mut update, maestro_api::ext::RESOURCE_VERSION, "1");
    let mut pb = grpc::to_proto(&update);
    pb.r#type = pb.r#type.replace("create_request", "update_request");
    let err = client.publish(publish(pb)).await.expect_err("too big an update");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("message limit"), "{}", err.message());
    assert_eq!(store.get_resource(&small).await.expect("still there"), stored);

    // An extension named `data` and text data that is not JSON.
    let id = uuid::Uuid::new_v4().to_string();
    let mut pb = grpc::to_proto(&spec(&id, 10));
    pb.attributes
        .insert("ce-data".into(), pb::CloudEventAttributeValue { attr: Some(Attr::CeString("{}".into())) });
    let err = client.publish(publish(pb)).await.expect_err("data extension");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut pb = grpc::to_proto(&spec(&id, 10));
    pb.data = Some(pb::cloud_event::Data::TextData("manifests: [not json".into()));
    let err = client.publish(publish(pb)).await.expect_err("text data");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(store.get_resource(&id).await.is_err(), "nothing stored");
    server.shutdown().await;
}
