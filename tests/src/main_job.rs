//! The main-job scenario shared by the end-to-end tests of every broker: a source applies the
//! example ManifestWorks through the source gRPC API, agents on simulated clusters apply them
//! through the broker, statuses come back over REST. Then: an update reaches the agent and a
//! stale update is refused; a delete keeps the row until the agent confirms; an agent restart
//! resyncs without applying anything stale; a server restart delivers outbox rows written
//! while it was down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use maestro::demo::EXAMPLES;
use maestro::stack::{LocalStack, StackConfig};
use maestro_api::codec::SpecEventBuilder;
use maestro_api::types::Action;
use maestro_client::{ManifestWorkInput, manifestwork};
use serde_json::{Value, json};

use crate::{publish_raw, wait_for};

/// Waits until bundle `id` is Applied and Available at `version`.
pub async fn wait_version_available(stack: &LocalStack, id: &str, version: i64) {
    wait_for(&format!("{id} Available at version {version}"), || async {
        let b = stack.rest.get_bundle(id).await.ok()?;
        (b.version == version
            && b.is_true_at_current_version("Applied")
            && b.is_true_at_current_version("Available"))
        .then_some(())
    })
    .await;
}

fn replicas(stack: &mut LocalStack, consumer: &str) -> Option<i64> {
    let obj = stack.cluster(consumer).object("apps/v1", "Deployment", "default", "web")?;
    obj.pointer("/spec/replicas").and_then(Value::as_i64)
}

fn with_replicas(work: &ManifestWorkInput, n: i64) -> ManifestWorkInput {
    let mut w = work.clone();
    for m in &mut w.bundle.manifests {
        if m["kind"] == "Deployment" {
            m["spec"]["replicas"] = json!(n);
        }
    }
    w
}

/// Runs the main job on a stack built from `config` (whose `db_url` is `url`).
pub async fn main_job(mut config: StackConfig) {
    let url = config.db_url.clone();
    config.heartbeat = Some(Duration::from_secs(1));
    config.status_sync_interval = Duration::from_millis(300);
    let mut stack = LocalStack::start(config).await.expect("stack");

    let mut ids = Vec::new();
    let mut works = Vec::new();
    for (file, yaml, consumer) in EXAMPLES {
        stack.rest.create_consumer(consumer, &Default::default()).await.expect("consumer");
        stack.start_agent(consumer).await.expect("agent");
        let work = manifestwork::parse(file, yaml, None).expect("example parses");
        let out = stack.source.apply(consumer, &work).await.expect("apply");
        assert!(out.created);
        ids.push(out.resource_id);
        works.push(work);
    }
    for id in &ids {
        wait_version_available(&stack, id, 1).await;
    }
    let web = stack.rest.get_bundle(&ids[0]).await.unwrap();
    let fb = web.feedback();
    assert!(fb.iter().any(|f| f.name == "ReadyReplicas" && f.value == "3"), "feedback: {fb:?}");
    assert!(fb.iter().any(|f| f.name == "logLevel" && f.value == "info"), "feedback: {fb:?}");
    assert_eq!(replicas(&mut stack, "cluster-1"), Some(3));

    // Update: version 2 reaches the agent; an update naming version 1 is a conflict.
    let out = stack.source.apply("cluster-1", &with_replicas(&works[0], 5)).await.expect("update");
    assert!(!out.created);
    wait_version_available(&stack, &ids[0], 2).await;
    assert_eq!(replicas(&mut stack, "cluster-1"), Some(5));
    let stale = SpecEventBuilder::new("maestro-demo", &ids[0], 1, "cluster-1")
        .action(Action::Update)
        .bundle(&with_replicas(&works[0], 6).bundle)
        .build();
    let err = publish_raw(stack.grpc_addr(), &stale).await.expect_err("stale update must be refused");
    assert_eq!(err.code(), tonic::Code::Aborted, "{err}");
    assert!(err.message().contains("version"), "{err}");
    assert_eq!(stack.rest.get_bundle(&ids[0]).await.unwrap().version, 2);

    // Delete: the row stays (deleting) until the agent reports Deleted.
    stack.stop_agent("cluster-3").await;
    stack.source.delete("cluster-3", &works[2].name).await.expect("delete");
    let b = stack.rest.get_bundle(&ids[2]).await.expect("still stored while the agent is away");
    assert!(b.is_deleting());
    stack.start_agent("cluster-3").await.unwrap();
    wait_for("deleted bundle gone", || async {
        stack.rest.find_bundle(&ids[2]).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(stack.cluster("cluster-3").objects().is_empty(), "the agent removed every applied object");

    // Agent restart: changes made while it was down arrive by resync; nothing stale applied.
    stack.stop_agent("cluster-1").await;
    stack.source.apply("cluster-1", &with_replicas(&works[0], 7)).await.expect("update while agent down");
    stack.start_agent("cluster-1").await.unwrap();
    wait_version_available(&stack, &ids[0], 3).await;
    assert_eq!(replicas(&mut stack, "cluster-1"), Some(7));
    wait_version_available(&stack, &ids[1], 1).await;

    // Server restart with an undelivered outbox row written while it was down.
    stack.stop_server().await;
    {
        let store = maestro_store::open(&url).await.unwrap();
        let r = store.get_resource(&ids[0]).await.unwrap();
        let mut payload = (*r.payload).clone();
        for m in payload["data"]["manifests"].as_array_mut().unwrap() {
            if m["kind"] == "Deployment" {
                m["spec"]["replicas"] = json!(9);
            }
        }
        store.update_resource(&ids[0], 3, payload).await.unwrap();
        assert!(
            !store.pending_spec_events(10).await.unwrap().is_empty(),
            "outbox row pending while the server is down"
        );
    }
    stack.restart_server().await.unwrap();
    wait_version_available(&stack, &ids[0], 4).await;
    assert_eq!(replicas(&mut stack, "cluster-1"), Some(9));
    let store = maestro_store::open(&url).await.unwrap();
    wait_for("outbox drained", || async {
        store.pending_spec_events(10).await.ok()?.is_empty().then_some(())
    })
    .await;
    stack.shutdown().await;
}
