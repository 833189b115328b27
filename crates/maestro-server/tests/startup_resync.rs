//! The server's status resync at start (docs/protocol.md §5.1) on the in-memory broker, whose
//! source transport is subscribed before `start` returns: the resync must still go out, with
//! the deletion of every deleting bundle again. A server that took its "subscribed" signal after
//! starting the transport missed that first subscription, so a bundle whose agent finished the
//! deletion while the server was down stayed deleting forever (seen as "deleted, still in the
//! store" by the fault-injection suite, kill -9 of the server on Mosquitto, docs/reliability.md).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use maestro_api::{AttributesReader, Event, ext};
use maestro_server::ServerConfig;
use maestro_store::{DynStore, NewConsumer};
use maestro_transport::memory::MemoryBroker;
use maestro_transport::{AgentTransport, EventHandler, HandlerError};
use tokio::sync::Notify;

mod common;

const RID: &str = "0b6c5f9e-8a65-4f4e-9d38-7a3b8e2f1c01";

/// Records the events the server publishes to the agent of `c1`.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    changed: Notify,
}

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(event.clone());
        self.changed.notify_waiters();
        Ok(())
    }
}

impl Recorder {
    /// Waits (at most 10 s) until an event satisfies `pred`.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Event) -> bool) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if self.events.lock().unwrap_or_else(|p| p.into_inner()).iter().any(&pred) {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), wait).await.is_err() {
            let seen: Vec<String> = self
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|e| e.ty().to_owned())
                .collect();
            panic!("no {what} within 10 s; the agent received {seen:?}");
        }
    }
}

/// A store with consumer `c1` and one bundle of it that is deleting.
async fn store_with_a_deleting_bundle() -> DynStore {
    let store: DynStore = maestro_store::open("sqlite::memory:").await.expect("store");
    store
        .create_consumer(NewConsumer { name: Some("c1".into()), labels: Default::default() })
        .await
        .expect("consumer");
    let new = common::config_map_bundle(RID, "c1", "maestro");
    store.create_resource(new).await.expect("resource");
    store.mark_deleting(RID).await.expect("mark deleting").expect("the bundle exists");
    store
}

#[tokio::test]
async fn a_server_subscribed_before_start_returns_still_sends_its_status_resync() {
    let store = store_with_a_deleting_bundle().await;
    let broker = MemoryBroker::new();
    let agent = Arc::new(Recorder::default());
    broker.agent("c1").start(agent.clone()).await.expect("agent");
    let config = ServerConfig {
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        ..Default::default()
    };
    let _server = maestro_server::start(config, store, broker.source()).await.expect("server");

    agent
        .wait_for("status.resync_request for c1", |e| {
            e.ty().ends_with(".status.resync_request")
                && ext::get_str(e, ext::CLUSTER_NAME).as_deref() == Some("c1")
        })
        .await;
    agent
        .wait_for("deletion of the deleting bundle again", |e| {
            e.ty().ends_with(".spec.resync_response")
                && ext::resource_id(e).ok().as_deref() == Some(RID)
                && e.extension(ext::DELETION_TIMESTAMP).is_some()
        })
        .await;
}
