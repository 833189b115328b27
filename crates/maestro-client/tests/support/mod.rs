//! A tiny in-process fake of the Maestro server contract (REST on axum, source gRPC on tonic),
//! bound to 127.0.0.1:0. Shared by the maestro-client and maestro-cli tests.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use maestro_api::pb::cloud_event_service_server::{CloudEventService, CloudEventServiceServer};
use maestro_api::pb::{CloudEvent, PublishRequest, SubscriptionRequest};
use maestro_api::{AttributesReader, ext, grpc};
use serde_json::{Value, json};

/// Shared state: bundles by id (JSON as the REST API shows them) and every published event.
#[derive(Default)]
pub struct Fake {
    pub bundles: BTreeMap<String, Value>,
    pub consumers: BTreeMap<String, Value>,
    pub published: Vec<maestro_api::Event>,
    pub searches: Vec<String>,
    /// The `authorization` header of every request: (`"rest"` or `"grpc"`, value).
    pub authorizations: Vec<(&'static str, Option<String>)>,
}

pub type Shared = Arc<Mutex<Fake>>;

pub struct FakeServer {
    pub state: Shared,
    pub http: String,
    pub grpc: String,
}

pub fn error(status: StatusCode, id: u32, reason: &str) -> Response {
    let body = json!({"kind":"Error","id":id.to_string(),"href":format!("/api/maestro/v1/errors/{id}"),
        "code":format!("maestro-{id}"),"reason":reason,"operation_id":"op-1"});
    (status, Json(body)).into_response()
}

fn matches(bundle: &Value, search: &str) -> bool {
    search.split(" and ").all(|t| {
        let Some((field, value)) = t.split_once(" = ") else { return false };
        let value = value.trim_matches('\'');
        let field = if field == "consumer_name" { "consumer_name" } else { field };
        bundle.get(field).and_then(Value::as_str) == Some(value)
    })
}

async fn list_bundles(State(s): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let mut st = s.lock().unwrap();
    let search = q.get("search").cloned().unwrap_or_default();
    if search.contains("bad") {
        return error(StatusCode::BAD_REQUEST, 23, "Failed to parse search query: bad");
    }
    st.searches.push(search.clone());
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let size: usize = q.get("size").and_then(|p| p.parse().ok()).unwrap_or(100);
    let all: Vec<Value> =
        st.bundles.values().filter(|b| search.is_empty() || matches(b, &search)).cloned().collect();
    let items: Vec<Value> = all.iter().skip((page - 1) * size).take(size).cloned().collect();
    Json(json!({"kind":"ResourceBundleList","page":page,"size":items.len(),"total":all.len(),"items":items}))
        .into_response()
}

async fn get_bundle(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    match s.lock().unwrap().bundles.get(&id) {
        Some(b) => Json(b.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, 7, &format!("Resource Bundle with id='{id}' not found")),
    }
}

async fn delete_bundle(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    match s.lock().unwrap().bundles.get_mut(&id) {
        Some(b) => {
            b["deleted_at"] = json!("2024-03-01T10:00:00Z");
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(StatusCode::NOT_FOUND, 7, "not found"),
    }
}

async fn list_consumers(State(s): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let st = s.lock().unwrap();
    let search = q.get("search").cloned().unwrap_or_default();
    let items: Vec<Value> =
        st.consumers.values().filter(|c| search.is_empty() || matches(c, &search)).cloned().collect();
    Json(json!({"kind":"ConsumerList","page":1,"size":items.len(),"total":items.len(),"items":items}))
        .into_response()
}

async fn create_consumer(State(s): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut st = s.lock().unwrap();
    let name = body["name"].as_str().unwrap_or("").to_owned();
    if st.consumers.values().any(|c| c["name"] == json!(name)) {
        return error(StatusCode::CONFLICT, 6, &format!("This Consumer already exists: name {name}"));
    }
    let id = format!("id-{name}");
    let c = json!({"id":id,"kind":"Consumer","href":format!("/api/maestro/v1/consumers/{id}"),"name":name,
        "labels":body["labels"],"created_at":"2024-03-01T10:00:00Z","updated_at":"2024-03-01T10:00:00Z"});
    st.consumers.insert(id, c.clone());
    (StatusCode::CREATED, Json(c)).into_response()
}

async fn consumer_by_id(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    match s.lock().unwrap().consumers.get(&id) {
        Some(c) => Json(c.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, 7, &format!("Consumer with id='{id}' not found")),
    }
}

async fn patch_consumer(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    match s.lock().unwrap().consumers.get_mut(&id) {
        Some(c) => {
            c["labels"] = body["labels"].clone();
            Json(c.clone()).into_response()
        }
        None => error(StatusCode::NOT_FOUND, 7, "not found"),
    }
}

async fn delete_consumer(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let mut st = s.lock().unwrap();
    let Some(c) = st.consumers.get(&id).cloned() else { return error(StatusCode::NOT_FOUND, 7, "not found") };
    if st.bundles.values().any(|b| b["consumer_name"] == c["name"]) {
        return error(StatusCode::FORBIDDEN, 4, "consumer is referenced by resources");
    }
    st.consumers.remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

/// Records the `Authorization` header of every REST request.
async fn record_rest_auth(
    State(s): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let value = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    s.lock().unwrap().authorizations.push(("rest", value));
    next.run(req).await
}

struct Svc(Shared);

impl Svc {
    fn record_auth<T>(&self, req: &tonic::Request<T>) {
        let value = req.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.0.lock().unwrap().authorizations.push(("grpc", value));
    }
}

fn bundle_json(ev: &maestro_api::Event, version: i64, created: &str) -> Value {
    let id = ext::resource_id(ev).unwrap();
    let meta = ext::metadata(ev).unwrap().unwrap_or_default();
    let data: Value = maestro_api::codec::data_as(ev, "bundle").unwrap();
    json!({"id":id,"kind":"ResourceBundle","href":format!("/api/maestro/v1/resource-bundles/{id}"),
        "name":meta.get("name").cloned().unwrap_or(json!(id)),"consumer_name":ext::get_str(ev, ext::CLUSTER_NAME),
        "source": ev.source().to_string(),
        "version":version,"created_at":created,"updated_at":"2024-03-01T10:00:00Z","metadata":meta,
        "manifests":data["manifests"],"manifest_configs":data.get("manifestConfigs").cloned().unwrap_or(json!([])),
        "delete_option":data.get("deleteOption").cloned().unwrap_or(json!({"propagationPolicy":"Foreground"})),
        "status":null})
}

#[tonic::async_trait]
impl CloudEventService for Svc {
    async fn publish(
        &self,
        req: tonic::Request<PublishRequest>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        self.record_auth(&req);
        let pb = req.into_inner().event.ok_or_else(|| tonic::Status::invalid_argument("no event"))?;
        let ev = grpc::from_proto(pb).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let id = ext::resource_id(&ev).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let mut st = self.0.lock().unwrap();
        st.published.push(ev.clone());
        let ty = ev.ty().to_owned();
        if ty.ends_with("create_request") {
            if st.bundles.contains_key(&id) {
                return Err(tonic::Status::already_exists(format!("resource {id} already exists")));
            }
            if ext::get_str(&ev, ext::CLUSTER_NAME).as_deref() == Some("reject") {
                return Err(tonic::Status::invalid_argument("consumer reject is not registered"));
            }
            st.bundles.insert(id, bundle_json(&ev, 1, "2024-03-01T10:00:00Z"));
        } else if ty.ends_with("update_request") {
            let old =
                st.bundles.get(&id).cloned().ok_or_else(|| tonic::Status::not_found("no such resource"))?;
            let v = old["version"].as_i64().unwrap_or(0) + 1;
            st.bundles.insert(id, bundle_json(&ev, v, old["created_at"].as_str().unwrap_or("")));
        } else if ty.ends_with("delete_request") {
            let b = st.bundles.get_mut(&id).ok_or_else(|| tonic::Status::not_found("no such resource"))?;
            b["deleted_at"] = json!("2024-03-01T10:00:00Z");
        }
        Ok(tonic::Response::new(()))
    }

    type SubscribeStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<CloudEvent, tonic::Status>> + Send + 'static>>;

    async fn subscribe(
        &self,
        req: tonic::Request<SubscriptionRequest>,
    ) -> Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
        self.record_auth(&req);
        use maestro_api::codec::StatusEventBuilder;
        use maestro_api::payload::{Condition, ManifestBundleStatus};
        let status = ManifestBundleStatus {
            conditions: vec![Condition {
                kind: "Applied".into(),
                status: "True".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let ev = StatusEventBuilder {
            source: "maestro",
            resource_id: "rid-1",
            resource_version: 1,
            cluster_name: "c1",
            original_source: "maestro-cli",
            sequence_id: "1834773391719010304",
            status_hash: "h",
            metadata: None,
            action: maestro_api::types::Action::Update,
        }
        .build(&status);
        let items = vec![Ok(grpc::heartbeat()), Ok(grpc::to_proto(&ev))];
        Ok(tonic::Response::new(Box::pin(futures::stream::iter(items))))
    }
}

impl FakeServer {
    pub async fn start() -> FakeServer {
        Self::start_with(None).await
    }

    /// Serves gRPC over TLS with this PEM certificate and key (issued for `localhost`); the
    /// gRPC endpoint is then `localhost:<port>`.
    pub async fn start_with_grpc_tls(cert: &str, key: &str) -> FakeServer {
        Self::start_with(Some(tonic::transport::Identity::from_pem(cert, key))).await
    }

    async fn start_with(grpc_tls: Option<tonic::transport::Identity>) -> FakeServer {
        let state: Shared = Arc::default();
        let app = Router::new()
            .route("/api/maestro/v1/resource-bundles", get(list_bundles))
            .route("/api/maestro/v1/resource-bundles/{id}", get(get_bundle).delete(delete_bundle))
            .route("/api/maestro/v1/consumers", get(list_consumers).post(create_consumer))
            .route(
                "/api/maestro/v1/consumers/{id}",
                get(consumer_by_id).patch(patch_consumer).delete(delete_consumer),
            )
            .layer(axum::middleware::from_fn_with_state(state.clone(), record_rest_auth))
            .with_state(state.clone());
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(http, app).await.unwrap() });
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc_listener.local_addr().unwrap();
        let svc = CloudEventServiceServer::new(Svc(state.clone()));
        let mut builder = tonic::transport::Server::builder();
        let grpc = match grpc_tls {
            Some(identity) => {
                let tls = tonic::transport::ServerTlsConfig::new().identity(identity);
                builder = builder.tls_config(tls).unwrap();
                format!("localhost:{}", grpc_addr.port())
            }
            None => grpc_addr.to_string(),
        };
        tokio::spawn(async move {
            builder
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc_listener))
                .await
                .unwrap()
        });
        FakeServer { state, http: format!("http://{http_addr}"), grpc }
    }

    /// Sets the status of bundle `id` as the agent would report it.
    pub fn set_status(&self, id: &str, observed: i64, conditions: &[(&str, &str)]) {
        let conds: Vec<Value> = conditions
            .iter()
            .map(|(t, s)| json!({"type":t,"status":s,"lastTransitionTime":"2024-03-01T10:00:00Z","reason":"R","message":"m"}))
            .collect();
        let mut st = self.state.lock().unwrap();
        if let Some(b) = st.bundles.get_mut(id) {
            b["status"] = json!({"ObservedVersion":observed,"SequenceID":"1","conditions":conds,"resourceStatus":[
                {"resourceMeta":{"ordinal":0,"version":"v1","kind":"ConfigMap","resource":"configmaps","name":"a","namespace":"default"},
                 "statusFeedback":{"values":[{"name":"size","fieldValue":{"type":"Integer","integer":3}}]},
                 "conditions":[{"type":"Applied","status":"True","lastTransitionTime":"2024-03-01T10:00:00Z","reason":"R","message":"m"}]}]});
        }
    }

    /// The distinct `authorization` values `kind` (`"rest"` or `"grpc"`) requests carried.
    pub fn authorizations(&self, kind: &str) -> Vec<Option<String>> {
        let mut seen: Vec<Option<String>> = Vec::new();
        for (k, v) in &self.state.lock().unwrap().authorizations {
            if *k == kind && !seen.contains(v) {
                seen.push(v.clone());
            }
        }
        seen
    }

    /// Removes bundle `id` (the agent confirmed deletion).
    pub fn remove(&self, id: &str) {
        self.state.lock().unwrap().bundles.remove(id);
    }
}
