//! REST and gRPC client tests against the in-process fake server.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use futures::StreamExt;
use maestro_api::AttributesReader;
use maestro_api::ext;
use maestro_client::{BundleFilter, ClientError, RestClient, SourceClient, manifestwork, resource_id};
use support::FakeServer;

const MANIFESTS: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}\ndata: {k: v}\n";

async fn source(fake: &FakeServer) -> SourceClient {
    let rest = RestClient::new(&fake.http).unwrap();
    SourceClient::connect(&fake.grpc, "maestro-cli", rest).await.unwrap()
}

#[tokio::test]
async fn apply_creates_then_updates_and_delete_marks_deleting() {
    let fake = FakeServer::start().await;
    let client = source(&fake).await;
    let work = manifestwork::parse("m.yaml", MANIFESTS, Some("web")).unwrap();
    let first = client.apply("c1", &work).await.unwrap();
    assert_eq!(first.resource_id, resource_id("maestro-cli", "c1", "web"));
    assert!(first.created);
    assert_eq!(first.version, Some(1));
    let second = client.apply("c1", &work).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.version, Some(2));
    {
        let st = fake.state.lock().unwrap();
        let ev = &st.published[0];
        assert!(ev.ty().ends_with("spec.create_request"));
        assert_eq!(ev.source().to_string(), "maestro-cli");
        assert_eq!(ext::resource_version(ev).unwrap(), 0);
        assert_eq!(ext::get_str(ev, ext::CLUSTER_NAME).as_deref(), Some("c1"));
        let meta = ext::metadata(ev).unwrap().unwrap();
        assert_eq!(meta["name"], "web");
        assert!(st.published[1].ty().ends_with("spec.update_request"));
    }
    let b = client.rest().get_bundle_by_name("maestro-cli", "c1", "web").await.unwrap();
    assert_eq!(b.version, 2);
    let del = client.delete("c1", "web").await.unwrap();
    assert_eq!(del.version, 2);
    {
        let st = fake.state.lock().unwrap();
        let ev = st.published.last().unwrap();
        assert!(ev.ty().ends_with("spec.delete_request"));
        assert!(ext::deletion_timestamp(ev).unwrap().is_some());
        assert!(ev.data().is_none());
    }
    // applying while deleting is refused with a clear message
    let err = client.apply("c1", &work).await.unwrap_err();
    assert!(err.to_string().contains("being deleted"), "{err}");
    // deleting something that does not exist is NotFound
    assert!(client.delete("c1", "nope").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn grpc_errors_keep_the_server_message() {
    let fake = FakeServer::start().await;
    let client = source(&fake).await;
    let work = manifestwork::parse("m.yaml", MANIFESTS, Some("web")).unwrap();
    let err = client.apply("reject", &work).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidInput(_)), "{err:?}");
    assert!(err.to_string().contains("consumer reject is not registered"), "{err}");
}

#[tokio::test]
async fn connect_errors_name_the_endpoint() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let rest = RestClient::new(&format!("http://{addr}")).unwrap();
    let err = rest.get_bundle("x").await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr), "{err}");
    let err = SourceClient::connect(&addr, "s", rest).await.unwrap_err();
    assert!(err.to_string().starts_with(&format!("cannot reach {addr}")), "{err}");
    // `host:port` means http:// (README.md, "maestro-cli"); other schemes are refused.
    let plain = RestClient::new("localhost:8000").unwrap();
    assert!(plain.endpoint().starts_with("http://localhost:8000"), "{}", plain.endpoint());
    assert!(RestClient::new("ftp://localhost:8000").is_err());
    let err = SourceClient::connect("tcp://h:1", "s", plain).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidInput(_)), "{err:?}");
}

#[tokio::test]
async fn rest_lists_pages_and_reports_error_bodies() {
    let fake = FakeServer::start().await;
    let client = source(&fake).await;
    for name in ["a", "b", "c"] {
        let work = manifestwork::parse("m.yaml", MANIFESTS, Some(name)).unwrap();
        client.apply(if name == "c" { "c2" } else { "c1" }, &work).await.unwrap();
    }
    let rest = client.rest();
    let page = rest.list_bundles(&BundleFilter::consumer("c1"), 1, 1).await.unwrap();
    assert_eq!(
        (page.kind.as_str(), page.size, page.total, page.items.len()),
        ("ResourceBundleList", 1, 2, 1)
    );
    assert_eq!(rest.all_bundles(&BundleFilter::default()).await.unwrap().len(), 3);
    let filter = BundleFilter { source: Some("maestro-cli".into()), ..BundleFilter::consumer("c1") };
    assert_eq!(rest.all_bundles(&filter).await.unwrap().len(), 2);
    assert!(
        fake.state
            .lock()
            .unwrap()
            .searches
            .contains(&"consumer_name = 'c1' and source = 'maestro-cli'".into())
    );
    let err = rest.all_bundles(&BundleFilter::consumer("bad")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "GET {}/api/maestro/v1/resource-bundles: HTTP 400 (maestro-23): Failed to parse search query: bad",
            fake.http
        )
    );
    let err = rest.get_bundle("00000000-0000-0000-0000-000000000000").await.unwrap_err();
    assert!(err.is_not_found());
    assert!(err.to_string().contains("not found: Resource Bundle with id="), "{err}");
    assert!(rest.get_bundle("../x").await.is_err());
    assert!(rest.get_bundle_by_name("maestro-cli", "c1", "zzz").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn rest_status_and_delete() {
    let fake = FakeServer::start().await;
    let client = source(&fake).await;
    let work = manifestwork::parse("m.yaml", MANIFESTS, Some("web")).unwrap();
    let out = client.apply("c1", &work).await.unwrap();
    fake.set_status(&out.resource_id, 1, &[("Applied", "True"), ("Available", "True")]);
    let b = client.rest().get_bundle(&out.resource_id).await.unwrap();
    assert!(b.is_true_at_current_version("Applied") && b.is_true_at_current_version("Available"));
    assert_eq!(b.feedback()[0].value, "3");
    client.rest().delete_bundle(&out.resource_id).await.unwrap();
    assert!(client.rest().get_bundle(&out.resource_id).await.unwrap().is_deleting());
    fake.remove(&out.resource_id);
    assert!(client.rest().find_bundle(&out.resource_id).await.unwrap().is_none());
}

#[tokio::test]
async fn consumers_crud() {
    let fake = FakeServer::start().await;
    let rest = RestClient::new(&fake.http).unwrap();
    let labels = BTreeMap::from([("env".to_owned(), "dev".to_owned())]);
    let c = rest.create_consumer("c1", &labels).await.unwrap();
    assert_eq!((c.name.as_str(), c.kind.as_str()), ("c1", "Consumer"));
    let err = rest.create_consumer("c1", &labels).await.unwrap_err();
    assert!(matches!(err, ClientError::Conflict { .. }) && err.to_string().contains("already exists"));
    assert_eq!(rest.get_consumer("c1").await.unwrap().id, c.id);
    assert_eq!(rest.get_consumer(&c.id).await.unwrap().name, "c1");
    let patched = rest.patch_consumer(&c.id, &BTreeMap::new()).await.unwrap();
    assert!(patched.labels.is_empty());
    assert_eq!(rest.all_consumers().await.unwrap().len(), 1);
    rest.delete_consumer(&c.id).await.unwrap();
    assert!(rest.get_consumer("c1").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn watch_skips_heartbeats() {
    let fake = FakeServer::start().await;
    let client = source(&fake).await;
    let mut stream = client.watch().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!((first.resource_id.as_str(), first.resource_version), ("rid-1", 1));
    assert!(first.status.is_true("Applied"));
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn all_bundles_reads_every_page_in_order_once() {
    use maestro_client::rest::PAGE_SIZE;
    let fake = FakeServer::start().await;
    let rest = RestClient::new(&fake.http).unwrap();
    let page = PAGE_SIZE as usize;
    for total in [page * 2, page * 5 + 7] {
        {
            let mut st = fake.state.lock().unwrap();
            st.bundles.clear();
            st.searches.clear();
            for i in 0..total {
                let id = format!("b{i:06}");
                st.bundles.insert(id.clone(), serde_json::json!({"id": id, "consumer_name": "c1"}));
            }
        }
        let all = rest.all_bundles(&BundleFilter::default()).await.unwrap();
        let ids: Vec<String> = all.iter().map(|b| b.id.clone()).collect();
        let want: Vec<String> = (0..total).map(|i| format!("b{i:06}")).collect();
        assert_eq!(ids, want, "every bundle once, in server order ({total})");
        let requests = fake.state.lock().unwrap().searches.len();
        assert_eq!(requests, total.div_ceil(page), "one request per page, no extra empty page ({total})");
    }
}

/// A bearer token goes as `Authorization: Bearer` on REST and as `authorization` metadata on
/// both gRPC RPCs (TLS); without one, nothing is sent.
#[tokio::test]
async fn bearer_tokens_are_sent_on_rest_and_grpc() {
    use maestro_client::{BearerToken, GrpcTls, RestOptions};
    use maestro_tls::testing::TestPki;
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let (cert, key) = pki.server(&["localhost"]);
    let fake = FakeServer::start_with_grpc_tls(&cert, &key).await;
    let path = dir.path().join("token");
    std::fs::write(&path, "rest-token\n").unwrap();
    let options = RestOptions { token: Some(BearerToken::from_file(&path).unwrap()), ..Default::default() };
    let rest = RestClient::with_options(&fake.http, &options).unwrap();
    assert!(rest.find_bundle("nope").await.unwrap().is_none());
    assert_eq!(fake.authorizations("rest"), [Some("Bearer rest-token".to_owned())]);

    let tls = GrpcTls { ca_file: Some(pki.write_ca(dir.path())), client_cert: None };
    let token = BearerToken::new("grpc-token").unwrap();
    let client =
        SourceClient::connect_with_token(&fake.grpc, "maestro-cli", rest, &tls, Some(&token)).await.unwrap();
    assert!(!format!("{client:?}").contains("grpc-token"), "Debug hides the token");
    let work = manifestwork::parse("m.yaml", MANIFESTS, Some("web")).unwrap();
    client.apply("c1", &work).await.unwrap();
    let mut stream = client.watch().await.unwrap();
    assert!(stream.next().await.is_some());
    assert_eq!(fake.authorizations("grpc"), [Some("Bearer grpc-token".to_owned())]);
    assert_eq!(fake.state.lock().unwrap().authorizations.iter().filter(|(k, _)| *k == "grpc").count(), 2);

    let anonymous = FakeServer::start().await;
    let plain = source(&anonymous).await;
    plain.rest().find_bundle("nope").await.unwrap();
    assert_eq!(anonymous.authorizations("rest"), [None]);
}

/// A token with a client certificate, or without TLS, is refused before connecting, with a
/// message that says why (and never the token).
#[tokio::test]
async fn grpc_token_rules_are_enforced() {
    use maestro_client::{BearerToken, GrpcTls};
    let fake = FakeServer::start().await;
    let rest = RestClient::new(&fake.http).unwrap();
    let token = BearerToken::new("s3cr3t").unwrap();
    let both =
        GrpcTls { ca_file: Some("ca.crt".into()), client_cert: Some(("me.crt".into(), "me.key".into())) };
    let err = SourceClient::connect_with_token(&fake.grpc, "s", rest.clone(), &both, Some(&token))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("mutually exclusive") && !err.contains("s3cr3t"), "{err}");
    let err = SourceClient::connect_with_token(&fake.grpc, "s", rest, &GrpcTls::default(), Some(&token))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs TLS"), "{err}");
    assert!(fake.authorizations("grpc").is_empty(), "nothing was sent");
}
