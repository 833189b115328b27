//! Shared by the server's tests: a real server on loopback over a SQLite store in memory with
//! consumer `c1`, the in-memory broker, and a source gRPC client (`spec_limits.rs`,
//! `merge_apply.rs`); a bundle to store (`dead_letters.rs`, `deleted_lately.rs`,
//! `startup_resync.rs`).
#![allow(dead_code)] // each test file uses a part

use maestro_api::pb::cloud_event_service_client::CloudEventServiceClient;
use maestro_server::{RunningServer, ServerConfig};
use maestro_store::{DynStore, NewConsumer, NewResource};
use maestro_transport::DynSourceTransport;
use maestro_transport::memory::MemoryBroker;
use tonic::transport::Channel;

/// A running server with its store and a connected source client.
pub(crate) struct Server {
    /// The server's store.
    pub(crate) store: DynStore,
    /// A source gRPC client connected to it.
    pub(crate) client: CloudEventServiceClient<Channel>,
    /// Keeps the server running.
    pub(crate) _server: RunningServer,
}

/// Starts a server whose broker carries events of at most `max_event_bytes` (encoded).
pub(crate) async fn server(max_event_bytes: usize) -> Server {
    let store: DynStore = maestro_store::open("sqlite::memory:").await.expect("store");
    store
        .create_consumer(NewConsumer { name: Some("c1".into()), labels: Default::default() })
        .await
        .expect("consumer");
    let transport: DynSourceTransport = MemoryBroker::with_max_event_bytes(max_event_bytes).source();
    let config = ServerConfig {
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        ..Default::default()
    };
    let server = maestro_server::start(config, store.clone(), transport).await.expect("server");
    let client =
        CloudEventServiceClient::connect(format!("http://{}", server.grpc_addr)).await.expect("connect");
    Server { store, client, _server: server }
}

/// Bundle `id` of `consumer` from source `source` as stored (its create event): one ConfigMap
/// named `id` in `default`, the bundle named `id` too.
pub(crate) fn config_map_bundle(id: &str, consumer: &str, source: &str) -> NewResource {
    let payload = serde_json::json!({
        "specversion": "1.0", "id": format!("ev-{id}"), "source": source,
        "type": "io.open-cluster-management.works.v1alpha1.manifestbundles.spec.create_request",
        "resourceid": id, "resourceversion": 1, "clustername": consumer,
        "datacontenttype": "application/json",
        "data": {"manifests": [{"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": id, "namespace": "default"}}]}
    });
    NewResource {
        id: id.into(),
        name: id.into(),
        consumer_name: consumer.into(),
        source: source.into(),
        payload: payload.into(),
    }
}
