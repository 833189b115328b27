//! The server side of the merge apply (docs/cli.md, "Merge apply"): spec events with the
//! `fieldmanager` extension are merged into the stored bundle by manifest identity; another
//! manager's manifest, a deleting bundle, another source's bundle, a manifest without identity
//! and a merged bundle the broker could not carry are refused and leave the stored bundle as
//! it was. Real server over gRPC, SQLite store, the in-memory broker.

mod common;

use maestro_api::codec::SpecEventBuilder;
use maestro_api::grpc;
use maestro_api::merge::{MANAGERS_ANNOTATION, managers};
use maestro_api::pb::PublishRequest;
use maestro_api::types::Action;
use serde_json::{Map, Value, json};
use tonic::Code;

const LIMIT: usize = 64 * 1024;

type Setup = common::Server;

async fn setup() -> Setup {
    common::server(LIMIT).await
}

fn cm(name: &str, blob: usize) -> Value {
    json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":"default"},
        "data":{"blob":"x".repeat(blob)}})
}

/// A merge apply by `manager` from `source` of `manifests`, with label `label`.
fn merge_event(
    source: &str,
    id: &str,
    manager: &str,
    manifests: Vec<Value>,
    label: &str,
) -> maestro_api::Event {
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!("shared"));
    metadata.insert("labels".into(), json!({ label: "yes" }));
    metadata.insert("annotations".into(), json!({ MANAGERS_ANNOTATION: "{\"forged\":\"x\"}" }));
    SpecEventBuilder::new(source, id, 0, "c1")
        .action(Action::Update)
        .metadata(metadata)
        .field_manager(manager)
        .bundle_json(json!({ "manifests": manifests }))
        .build()
}

/// The calls the test makes on its server.
trait SetupExt {
    async fn publish(&mut self, event: &maestro_api::Event) -> Result<(), tonic::Status>;
    async fn stored(&self, id: &str) -> (Vec<String>, Vec<(String, String)>, Value, i64);
}

impl SetupExt for Setup {
    async fn publish(&mut self, event: &maestro_api::Event) -> Result<(), tonic::Status> {
        self.client.publish(PublishRequest { event: Some(grpc::to_proto(event)) }).await.map(|_| ())
    }

    /// The stored manifest names, recorded managers, labels and version.
    async fn stored(&self, id: &str) -> (Vec<String>, Vec<(String, String)>, Value, i64) {
        let r = self.store.get_resource(id).await.expect("stored");
        let event = maestro_api::json::from_value_ref(&r.payload).expect("event");
        let meta = maestro_api::ext::metadata(&event).expect("metadata").unwrap_or_default();
        let data: Value = maestro_api::codec::data_as(&event, "ManifestBundle").expect("bundle");
        let names = data["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|m| m["metadata"]["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        let recorded = managers(&meta).into_iter().collect();
        (names, recorded, meta.get("labels").cloned().unwrap_or_default(), r.version)
    }
}

#[tokio::test]
async fn writers_merge_and_refusals_leave_the_bundle_unchanged() {
    let mut s = setup().await;
    let id = uuid::Uuid::new_v4().to_string();
    s.publish(&merge_event("src", &id, "a", vec![cm("a1", 1)], "from-a")).await.expect("a creates");
    s.publish(&merge_event("src", &id, "b", vec![cm("b1", 1)], "from-b")).await.expect("b merges");
    let (names, recorded, labels, version) = s.stored(&id).await;
    assert_eq!(names, ["a1", "b1"]);
    assert_eq!(
        recorded,
        [
            ("/v1/ConfigMap/default/a1".to_owned(), "a".to_owned()),
            ("/v1/ConfigMap/default/b1".to_owned(), "b".to_owned())
        ],
        "the writers' forged annotation is replaced by what the server records"
    );
    assert_eq!(labels, json!({"from-a": "yes", "from-b": "yes"}));
    assert_eq!(version, 2);

    // b may not replace a's manifest.
    let err = s
        .publish(&merge_event("src", &id, "b", vec![cm("b1", 1), cm("a1", 2)], "x"))
        .await
        .expect_err("owned");
    assert_eq!(err.code(), Code::Aborted, "{}", err.message());
    assert!(err.message().contains("managed by \"a\""), "{}", err.message());
    // Another source may not merge into it.
    let err = s.publish(&merge_event("other", &id, "c", vec![cm("c1", 1)], "x")).await.expect_err("source");
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    // A manifest without identity.
    let err = s
        .publish(&merge_event("src", &id, "c", vec![json!({"kind":"ConfigMap"})], "x"))
        .await
        .expect_err("id");
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    // Growing past what the broker carries: each writer's part is small, the merge is not.
    let big = |n: &str| vec![cm(n, 40_000)];
    s.publish(&merge_event("src", &id, "c", big("c1"), "x")).await.expect("c's part fits");
    let err = s.publish(&merge_event("src", &id, "d", big("d1"), "x")).await.expect_err("too big");
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    let (names, _, _, version) = s.stored(&id).await;
    assert_eq!((names, version), (vec!["a1".into(), "b1".into(), "c1".into()], 3));

    // b drops b1: only b1 goes; an unchanged merge writes nothing.
    s.publish(&merge_event("src", &id, "b", vec![], "from-b")).await.expect("b drops");
    let (names, _, _, version) = s.stored(&id).await;
    assert_eq!((names, version), (vec!["a1".into(), "c1".into()], 4));
    s.publish(&merge_event("src", &id, "b", vec![], "from-b")).await.expect("no-op");
    assert_eq!(s.stored(&id).await.3, 4, "an unchanged payload is not a new version");

    // A deleting bundle takes no merges.
    s.store.mark_deleting(&id).await.expect("deleting");
    let err = s.publish(&merge_event("src", &id, "a", vec![cm("a2", 1)], "x")).await.expect_err("deleting");
    assert_eq!(err.code(), Code::Aborted, "{}", err.message());
}
