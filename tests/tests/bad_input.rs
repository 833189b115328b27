//! Bad input gets a clear error and never changes stored data: a malformed CloudEvent, an
//! unknown event type, a spec for an unknown consumer, an empty bundle, an oversized bundle,
//! an update whose `metadata` is not a JSON object or holds NUL, and invalid YAML given to the
//! CLI; and label searches keep working over a bundle stored with blank metadata. Runs the
//! real server over real sockets on both stores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use maestro::stack::{LocalStack, StackConfig};
use maestro_api::AttributesWriter;
use maestro_api::codec::SpecEventBuilder;
use maestro_api::pb;
use maestro_client::BundleFilter;
use maestro_store::DynStore;
use maestro_tests::{Db, cli_binary, db_url, logging, publish_proto, publish_raw};
use serde_json::json;

async fn snapshot(stack: &LocalStack, store: &DynStore) -> (usize, usize) {
    let bundles = stack.rest.all_bundles(&BundleFilter::default()).await.unwrap().len();
    let pending = store.pending_spec_events(1000).await.unwrap().len();
    (bundles, pending)
}

fn spec(consumer: &str, manifests: serde_json::Value) -> maestro_api::Event {
    SpecEventBuilder::new("bad-input-test", &uuid::Uuid::new_v4().to_string(), 0, consumer)
        .bundle_json(json!({ "manifests": manifests }))
        .build()
}

fn cm(name: &str) -> serde_json::Value {
    json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":"default"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_changes_nothing_on_sqlite() {
    bad_input_is_refused_clearly_and_changes_nothing(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_changes_nothing_on_postgres() {
    bad_input_is_refused_clearly_and_changes_nothing(Db::Postgres).await;
}

async fn bad_input_is_refused_clearly_and_changes_nothing(db: Db) {
    logging();
    let (_guard, url) = db_url(db).await;
    let stack = LocalStack::start(StackConfig::new(&url)).await.unwrap();
    let store = maestro_store::open(&url).await.unwrap();
    stack.rest.create_consumer("c1", &Default::default()).await.unwrap();
    let good = spec("c1", json!([cm("ok")]));
    publish_raw(stack.grpc_addr(), &good).await.expect("a good bundle is accepted");
    // Let the dispatcher take the good bundle's outbox row first: the snapshot must not race it.
    maestro_tests::wait_for("the outbox drained", || async {
        store.pending_spec_events(10).await.ok()?.is_empty().then_some(())
    })
    .await;
    let before = snapshot(&stack, &store).await;
    assert_eq!(before.0, 1);

    // Malformed CloudEvents.
    let no_version =
        pb::CloudEvent { id: "1".into(), source: "s".into(), r#type: "t".into(), ..Default::default() };
    let err = publish_proto(stack.grpc_addr(), no_version).await.expect_err("malformed");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("spec_version"), "{err}");
    let mut bad_json = maestro_api::grpc::to_proto(&spec("c1", json!([cm("x")])));
    bad_json.data = Some(pb::cloud_event::Data::BinaryData(b"{\"manifests\": [".to_vec()));
    let err = publish_proto(stack.grpc_addr(), bad_json).await.expect_err("bad JSON data");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("JSON"), "{err}");
    let mut no_id = spec("c1", json!([cm("x")]));
    no_id.remove_extension("resourceid");
    let err = publish_raw(stack.grpc_addr(), &no_id).await.expect_err("no resourceid");
    assert!(err.message().contains("resourceid"), "{err}");

    // Unknown event types.
    let mut unknown = spec("c1", json!([cm("x")]));
    unknown.set_type("io.open-cluster-management.works.v1alpha1.manifestbundles.spec.explode");
    let err = publish_raw(stack.grpc_addr(), &unknown).await.expect_err("unknown action");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("unknown action"), "{err}");
    unknown.set_type("io.open-cluster-management.works.v1alpha1.manifests.spec.create_request");
    let err = publish_raw(stack.grpc_addr(), &unknown).await.expect_err("unknown data type");
    assert!(err.message().contains("unsupported data type"), "{err}");

    // A spec for an unknown consumer.
    let err = publish_raw(stack.grpc_addr(), &spec("no-such-cluster", json!([cm("x")])))
        .await
        .expect_err("unknown consumer");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("no-such-cluster"), "{err}");

    // An empty bundle.
    let err = publish_raw(stack.grpc_addr(), &spec("c1", json!([]))).await.expect_err("empty bundle");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("must not be empty"), "{err}");

    // An oversized bundle (600 KiB of ConfigMap data; the limit is 500 KiB).
    let mut big = cm("big");
    big["data"] = json!({"blob": "x".repeat(600 * 1024)});
    let err = publish_raw(stack.grpc_addr(), &spec("c1", json!([big]))).await.expect_err("oversized bundle");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("limit"), "{err}");

    // An update whose `metadata` extension is not a JSON object: refused, as on create, so no
    // stored row can break the label searches that read it (docs/rest.md, "Search language").
    let id = maestro_api::ext::get_str(&good, "resourceid").unwrap();
    for metadata in ["{not json", "[1, 2]", r#"{"labels": {"a": "x\u0000y"}}"#] {
        let mut update = SpecEventBuilder::new("bad-input-test", &id, 0, "c1")
            .action(maestro_api::types::Action::Update)
            .bundle_json(json!({ "manifests": [cm("ok2")] }))
            .build();
        maestro_api::ext::set_str(&mut update, "metadata", metadata);
        let err = publish_raw(stack.grpc_addr(), &update).await.expect_err("bad metadata");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{metadata}: {err}");
        assert!(err.message().contains("metadata"), "{metadata}: {err}");
    }
    assert_eq!(snapshot(&stack, &store).await, before, "no bad input changed the store");

    // Invalid YAML given to the CLI.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "apiVersion: work.open-cluster-management.io/v1\nkind: ManifestWork\nmetadata:\n  name: [oops\n",
    )
    .unwrap();
    let out = std::process::Command::new(cli_binary())
        .args([
            "--grpc-endpoint",
            &stack.grpc_addr().to_string(),
            "--http-endpoint",
            &format!("http://{}", stack.http_addr()),
        ])
        .args(["apply", "--consumer", "c1", "--manifest-file"])
        .arg(&file)
        .output()
        .expect("run maestro-cli");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit code 2: a validation error (README.md, "maestro-cli": exit codes).
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("broken.yaml"), "the error names the file: {stderr}");
    assert_eq!(snapshot(&stack, &store).await, before, "the CLI sent nothing");

    // A blank `metadata` reads as none and is stored as sent; label searches, which read every
    // row's metadata, skip it instead of failing (they did, with HTTP 500, on both stores).
    let mut blank = spec("c1", json!([cm("blank")]));
    maestro_api::ext::set_str(&mut blank, "metadata", "  ");
    publish_raw(stack.grpc_addr(), &blank).await.expect("blank metadata is accepted");
    // Neither bundle has labels (the first has no metadata at all): both lack `app`, and
    // neither holds a labels object.
    for (search, want) in [
        ("payload->'metadata'->'labels'->>'app' is null", 2),
        (r#"payload->'metadata'->'labels'@>'{}' or payload->'metadata'->>'name' = 'x'"#, 0),
    ] {
        let labels = BundleFilter { search: Some(search.into()), ..Default::default() };
        let found = stack.rest.all_bundles(&labels).await.unwrap_or_else(|e| panic!("{search}: {e}"));
        assert_eq!(found.len(), want, "{search}");
    }
    stack.shutdown().await;
}
