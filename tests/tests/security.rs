//! The security suite (docs/security.md): one test per attack on a real server with real TLS.
//!
//! Certificates come from `maestro_tls::testing::TestPki` (rcgen): a CA, the server, one client
//! per consumer and per source, an expired one and one from another CA. The server runs with
//! the source gRPC API and the agent broker over mutual TLS (`mtls` authentication) and an
//! authorization policy file; attackers are raw tonic clients holding a valid certificate of
//! another identity, so every refusal below comes from the authorization layer, not from TLS.
//! REST attacks with bearer tokens live in `tests/tests/security_rest.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use maestro::broker::BrokerKind;
use maestro_api::codec::{SpecEventBuilder, StatusEventBuilder};
use maestro_api::payload::ManifestBundleStatus;
use maestro_api::payload::{Condition, ManifestBundle, ResourceVersionList};
use maestro_api::pb::cloud_event_service_client::CloudEventServiceClient;
use maestro_api::pb::{PublishRequest, SubscriptionRequest};
use maestro_api::types::{Action, MANIFEST_BUNDLES};
use maestro_api::{Event, grpc};
use maestro_client::{GrpcTls, ManifestWorkInput, RestClient, SourceClient};
use maestro_tls::ServerTlsFiles;
use maestro_tls::testing::{CertAndKey, TestPki, write_pair};
use serde_json::json;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const POLICY: &str = r#"
sources:
  - name: source-a
    verbs: [pub, sub]
    users: [source-a]
  - name: source-b
    verbs: [pub, sub]
    users: [source-b]
"#;

/// A server whose source gRPC API and agent broker require client certificates.
struct SecureServer {
    started: maestro::server::Started,
    pki: TestPki,
    dir: tempfile::TempDir,
    ca: PathBuf,
    _db: tempfile::TempDir,
    db_url: String,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn secure_server() -> SecureServer {
    maestro_tests::logging();
    let (db, db_url) = maestro_store::testing::sqlite_file().await;
    let dir = tempfile::tempdir().expect("dir");
    let pki = TestPki::new();
    let (cert, key) = write_pair(dir.path(), "server", &pki.server(&["localhost"]));
    let ca = pki.write_ca(dir.path());
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let mut settings = maestro::server::defaults(&db_url, BrokerKind::Grpc);
    let files = ServerTlsFiles { cert, key, client_ca: Some(ca.clone()) };
    settings.broker.grpc_bind = loopback();
    settings.broker.grpc_tls = Some(files.clone());
    settings.server.http_addr = loopback();
    settings.server.grpc_addr = loopback();
    settings.server.grpc_tls = Some(files);
    settings.security.authz_policy_file = Some(policy);
    let started = maestro::server::start(&settings).await.expect("secure server starts");
    SecureServer { started, pki, dir, ca, _db: db, db_url }
}

impl SecureServer {
    fn grpc_url(&self) -> String {
        format!("localhost:{}", self.started.server.grpc_addr.port())
    }

    fn broker_url(&self) -> String {
        format!("localhost:{}", self.started.broker_addr.expect("broker").port())
    }

    fn rest(&self) -> RestClient {
        RestClient::new(&format!("http://{}", self.started.server.http_addr)).expect("rest")
    }

    fn write(&self, name: &str, pair: &CertAndKey) -> (PathBuf, PathBuf) {
        write_pair(self.dir.path(), name, pair)
    }

    /// A maestro-client source holding a certificate for `cn`, publishing as `source_id`.
    async fn source(&self, cn: &str, source_id: &str) -> SourceClient {
        let pair = self.write(cn, &self.pki.client(cn, &["sources"]));
        let tls = GrpcTls { ca_file: Some(self.ca.clone()), client_cert: Some(pair) };
        SourceClient::connect_with(&self.grpc_url(), source_id, self.rest(), &tls)
            .await
            .expect("source connects")
    }

    /// A raw gRPC client of `url` presenting `pair` (none: no client certificate).
    async fn raw(
        &self,
        url: &str,
        pair: Option<&CertAndKey>,
    ) -> Result<CloudEventServiceClient<Channel>, String> {
        raw_client(url, &self.ca, pair).await
    }

    async fn store(&self) -> maestro_store::DynStore {
        maestro_store::open(&self.db_url).await.expect("store")
    }
}

async fn raw_client(
    url: &str,
    ca: &Path,
    pair: Option<&CertAndKey>,
) -> Result<CloudEventServiceClient<Channel>, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).expect("CA")))
        .domain_name("localhost");
    if let Some(p) = pair {
        tls = tls.identity(Identity::from_pem(&p.0, &p.1));
    }
    let channel = Channel::from_shared(format!("https://{url}"))
        .expect("uri")
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(CloudEventServiceClient::new(channel))
}

fn work(name: &str) -> ManifestWorkInput {
    let manifest = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "stringData": {"password": "tenant-secret"}
    });
    ManifestWorkInput {
        name: name.to_owned(),
        bundle: ManifestBundle { manifests: vec![manifest], ..Default::default() },
        ..Default::default()
    }
}

fn subscription(cluster: &str) -> SubscriptionRequest {
    SubscriptionRequest {
        source: String::new(),
        cluster_name: cluster.into(),
        data_type: MANIFEST_BUNDLES.into(),
    }
}

fn status(resource_id: &str, version: i64, cluster: &str, deleted: bool) -> Event {
    let mut st = ManifestBundleStatus::default();
    let ty = if deleted { "Deleted" } else { "Applied" };
    st.conditions.push(Condition { kind: ty.into(), status: "True".into(), ..Default::default() });
    StatusEventBuilder {
        source: "attacker",
        resource_id,
        resource_version: version,
        cluster_name: cluster,
        original_source: "maestro",
        sequence_id: "1",
        status_hash: "",
        metadata: None,
        action: Action::Update,
    }
    .build(&st)
}

/// Two consumers with one bundle each, created by source-a.
async fn two_tenants(server: &SecureServer) -> (String, String) {
    let rest = server.rest();
    for c in ["cluster-a", "cluster-b"] {
        rest.create_consumer(c, &Default::default()).await.expect("consumer");
    }
    let source = server.source("source-a", "source-a").await;
    let a = source.create("cluster-a", &work("secret-a")).await.expect("bundle a");
    let b = source.create("cluster-b", &work("secret-b")).await.expect("bundle b");
    (a, b)
}

#[tokio::test]
async fn an_agent_cannot_subscribe_as_another_consumer() {
    let server = secure_server().await;
    let (_, b) = two_tenants(&server).await;
    let agent_a = server.pki.client("cluster-a", &["agents"]);
    let mut client = server.raw(&server.broker_url(), Some(&agent_a)).await.expect("TLS with a valid cert");
    let err = client.subscribe(subscription("cluster-b")).await.expect_err("subscribed as cluster-b");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Its own consumer works, and what it receives is only its own: ask for a resync of
    // everything and check no spec of cluster-b arrives.
    let mut stream = client.subscribe(subscription("cluster-a")).await.expect("own consumer").into_inner();
    let none = ResourceVersionList::default();
    let resync = maestro_api::codec::spec_resync_request("agent-a", "cluster-a", &none);
    client.publish(PublishRequest { event: Some(grpc::to_proto(&resync)) }).await.expect("own resync");
    let first =
        tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("a spec").expect("ok");
    let event = grpc::from_proto(first.expect("event")).expect("decodes");
    assert_eq!(
        maestro_api::ext::get_str(&event, maestro_api::ext::CLUSTER_NAME).as_deref(),
        Some("cluster-a")
    );
    assert_ne!(maestro_api::ext::get_str(&event, maestro_api::ext::RESOURCE_ID).as_deref(), Some(b.as_str()));

    // A resync request for cluster-b over cluster-a's channel is refused too.
    let steal = maestro_api::codec::spec_resync_request("agent-a", "cluster-b", &none);
    let err =
        client.publish(PublishRequest { event: Some(grpc::to_proto(&steal)) }).await.expect_err("resync b");
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_forged_status_for_another_consumer_is_refused_and_the_row_is_unchanged() {
    let server = secure_server().await;
    let (_, b) = two_tenants(&server).await;
    let store = server.store().await;
    let before = store.get_resource(&b).await.expect("b");
    let agent_a = server.pki.client("cluster-a", &["agents"]);
    let mut client = server.raw(&server.broker_url(), Some(&agent_a)).await.expect("TLS");
    for deleted in [false, true] {
        let forged = status(&b, 1, "cluster-b", deleted);
        let err = client
            .publish(PublishRequest { event: Some(grpc::to_proto(&forged)) })
            .await
            .expect_err("forged");
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    }
    // Claiming its own consumer for cluster-b's bundle does not help either: the store refuses
    // a status whose consumer is not the bundle's.
    let sneaky = status(&b, 1, "cluster-a", true);
    let _ = client.publish(PublishRequest { event: Some(grpc::to_proto(&sneaky)) }).await;
    let after = store.get_resource(&b).await.expect("b still exists");
    assert_eq!(
        (after.status, after.deleted_at, after.version),
        (before.status, before.deleted_at, before.version)
    );
}

#[tokio::test]
async fn a_source_cannot_change_or_delete_another_sources_bundles() {
    let server = secure_server().await;
    let (a, _) = two_tenants(&server).await;
    let store = server.store().await;
    let before = store.get_resource(&a).await.expect("a");
    let pair = server.pki.client("source-b", &["sources"]);
    let mut b = server.raw(&server.grpc_url(), Some(&pair)).await.expect("TLS");
    let mut bundle = work("secret-a");
    bundle.bundle.manifests[0]["stringData"]["password"] = json!("stolen");
    // As itself (source-b) and pretending to be source-a: update and delete are refused.
    for claimed in ["source-b", "source-a"] {
        let update = SpecEventBuilder::new(claimed, &a, 1, "cluster-a")
            .action(Action::Update)
            .bundle(&bundle.bundle)
            .build();
        let err =
            b.publish(PublishRequest { event: Some(grpc::to_proto(&update)) }).await.expect_err("update");
        assert_eq!(err.code(), Code::PermissionDenied, "update claiming {claimed}: {err:?}");
        let delete = SpecEventBuilder::new(claimed, &a, 1, "cluster-a").action(Action::Delete).build();
        let err =
            b.publish(PublishRequest { event: Some(grpc::to_proto(&delete)) }).await.expect_err("delete");
        assert_eq!(err.code(), Code::PermissionDenied, "delete claiming {claimed}: {err:?}");
    }
    let after = store.get_resource(&a).await.expect("a");
    assert_eq!(
        (after.version, after.deleted_at, after.payload),
        (before.version, before.deleted_at, before.payload)
    );
    // source-b may not read source-a's statuses either.
    let req = SubscriptionRequest {
        source: "source-a".into(),
        cluster_name: String::new(),
        data_type: MANIFEST_BUNDLES.into(),
    };
    let err = b.subscribe(req).await.expect_err("subscribe as source-a");
    assert_eq!(err.code(), Code::PermissionDenied);
    // The owner still can.
    let owner = server.source("source-a", "source-a").await;
    owner.delete("cluster-a", "secret-a").await.expect("the owner deletes its bundle");
}

#[tokio::test]
async fn bad_certificates_and_plaintext_are_refused_on_both_grpc_ports() {
    let server = secure_server().await;
    let expired = server.pki.expired_client("cluster-a");
    let foreign = server.pki.foreign_client("cluster-a");
    for url in [server.grpc_url(), server.broker_url()] {
        for (what, pair) in
            [("no certificate", None), ("expired", Some(&expired)), ("foreign CA", Some(&foreign))]
        {
            let refused = match server.raw(&url, pair).await {
                Ok(mut c) => c.subscribe(subscription("cluster-a")).await.is_err(),
                Err(_) => true,
            };
            assert!(refused, "{url}: a client with {what} got a stream");
        }
        let plain = match CloudEventServiceClient::connect(format!("http://{url}")).await {
            Ok(mut c) => c.subscribe(subscription("cluster-a")).await.is_err(),
            Err(_) => true,
        };
        assert!(plain, "{url}: a plaintext client got a stream");
    }
}

/// A fake Kubernetes API for `--grpc-authorizer-config` (no API server can run here): token
/// `token-a` is user `source-a`; SubjectAccessReviews allow `source-a` on `/sources/source-a`.
async fn fake_kube_api() -> SocketAddr {
    use axum::Json;
    use axum::routing::post;
    use serde_json::Value;
    async fn token_review(Json(mut review): Json<Value>) -> Json<Value> {
        let ok = review["spec"]["token"] == "token-a";
        review["status"] = if ok {
            json!({"authenticated": true, "user": {"username": "source-a", "groups": ["sources"]}})
        } else {
            json!({"authenticated": false, "error": "invalid bearer token"})
        };
        Json(review)
    }
    async fn access_review(Json(mut review): Json<Value>) -> Json<Value> {
        let spec = &review["spec"];
        let allowed =
            spec["user"] == "source-a" && spec["nonResourceAttributes"]["path"] == "/sources/source-a";
        review["status"] = json!({"allowed": allowed});
        Json(review)
    }
    let app = axum::Router::new()
        .route("/apis/authentication.k8s.io/v1/tokenreviews", post(token_review))
        .route("/apis/authorization.k8s.io/v1/subjectaccessreviews", post(access_review));
    let listener = tokio::net::TcpListener::bind(loopback()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn sources_are_reviewed_by_the_kubernetes_api_as_go_maestro_does() {
    maestro_tests::logging();
    let api = fake_kube_api().await;
    let (_db, db_url) = maestro_store::testing::sqlite_file().await;
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: http://{api}\n\
         contexts:\n- name: k\n  context:\n    cluster: k\n    user: r\nusers:\n- name: r\n  user:\n    token: reviewer\n\
         current-context: k\n"
    );
    std::fs::write(&kubeconfig, config).expect("kubeconfig");
    let pki = TestPki::new();
    let (cert, key) = write_pair(dir.path(), "server", &pki.server(&["localhost"]));
    let ca = pki.write_ca(dir.path());
    let mut settings = maestro::server::defaults(&db_url, BrokerKind::Grpc);
    settings.broker.grpc_bind = loopback();
    settings.server.http_addr = loopback();
    settings.server.grpc_addr = loopback();
    settings.server.grpc_tls = Some(ServerTlsFiles { cert, key, client_ca: None });
    settings.security.grpc_authn_type = Some(maestro_auth::AuthnType::Token);
    settings.security.grpc_authorizer_config = Some(kubeconfig);
    let started = maestro::server::start(&settings).await.expect("server starts");
    let rest = RestClient::new(&format!("http://{}", started.server.http_addr)).expect("rest");
    rest.create_consumer("cluster-a", &Default::default()).await.expect("consumer");
    let url = format!("localhost:{}", started.server.grpc_addr.port());

    let publish = |token: &'static str, source: &'static str| {
        let (url, ca) = (url.clone(), ca.clone());
        async move {
            let mut client = raw_client(&url, &ca, None).await.expect("TLS");
            let event = SpecEventBuilder::new(source, &uuid::Uuid::new_v4().to_string(), 0, "cluster-a")
                .bundle(&work("s").bundle)
                .build();
            let mut req = tonic::Request::new(PublishRequest { event: Some(grpc::to_proto(&event)) });
            if !token.is_empty() {
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().expect("header"));
            }
            client.publish(req).await.map(|_| ()).map_err(|e| e.code())
        }
    };
    assert_eq!(publish("", "source-a").await, Err(Code::Unauthenticated));
    assert_eq!(publish("token-b", "source-a").await, Err(Code::Unauthenticated));
    assert_eq!(publish("token-a", "source-b").await, Err(Code::PermissionDenied));
    assert_eq!(publish("token-a", "source-a").await, Ok(()));
    started.server.shutdown().await;
}
