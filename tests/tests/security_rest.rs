//! REST attacks (docs/security.md, "REST"): bearer JWTs checked against a JWKS file, client
//! certificates, and the read/admin roles of the policy file, on a real HTTPS server.
//!
//! Keys are generated here (EC P-256 with rcgen), their public halves written as a JWKS file,
//! and tokens signed with `jsonwebtoken`. Certificates come from `maestro_tls::testing`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use maestro::broker::BrokerKind;
use maestro_auth::AuthnType;
use maestro_tls::ServerTlsFiles;
use maestro_tls::testing::{TestPki, write_pair};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "maestro";
const POLICY: &str = r#"
rest:
  - role: admin
    users: [ops]
  - role: read
    groups: [sre]
"#;

/// An EC P-256 signing key with its `kid`.
struct Key {
    encoding: EncodingKey,
    kid: String,
}

impl Key {
    fn new(kid: &str) -> Key {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        Key { encoding: EncodingKey::from_ec_der(&pair.serialize_der()), kid: kid.to_owned() }
    }

    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, Algorithm::ES256).expect("jwk");
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).expect("json")
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

fn claims(sub: &str, groups: &[&str]) -> Value {
    json!({"sub": sub, "groups": groups, "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600})
}

struct RestServer {
    started: maestro::server::Started,
    client: reqwest::Client,
    pki: TestPki,
    ca_pem: String,
    db_url: String,
    _dir: tempfile::TempDir,
    _db: tempfile::TempDir,
}

impl RestServer {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.started.server.http_addr.port())
    }
}

/// A server with REST over HTTPS: bearer tokens (`token`) checked against `jwks`, or client
/// certificates (`mtls`).
async fn rest_server(authn: AuthnType, jwks: Option<Value>) -> RestServer {
    maestro_tests::logging();
    let (db, db_url) = maestro_store::testing::sqlite_file().await;
    let dir = tempfile::tempdir().expect("dir");
    let pki = TestPki::new();
    let (cert, key) = write_pair(dir.path(), "server", &pki.server(&["localhost"]));
    let ca = pki.write_ca(dir.path());
    let mut settings = maestro::server::defaults(&db_url, BrokerKind::Grpc);
    settings.broker.grpc_bind = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.server.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.server.grpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let client_ca = (authn == AuthnType::Mtls).then(|| ca.clone());
    settings.server.http_tls = Some(ServerTlsFiles { cert, key, client_ca: client_ca.clone() });
    settings.security.https_client_ca_file = client_ca;
    settings.security.http_authn_type = Some(authn);
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    settings.security.authz_policy_file = Some(policy);
    if let Some(jwks) = jwks {
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks.to_string()).expect("jwks");
        settings.security.jwks_file = Some(path);
        settings.security.jwt_issuer = Some(ISSUER.into());
        settings.security.jwt_audiences = vec![AUDIENCE.into()];
    }
    let started = maestro::server::start(&settings).await.expect("server starts");
    let ca_pem = pki.ca_pem();
    let client = https_client(&ca_pem, None);
    RestServer { started, client, pki, ca_pem, db_url, _dir: dir, _db: db }
}

fn https_client(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = maestro_tests::http_builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA")]);
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{key}{cert}").as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

/// Sends `req`; returns the status and the JSON body (Null when there is none).
async fn send(req: reqwest::RequestBuilder) -> (u16, Value, Option<String>) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, challenge)
}

#[tokio::test]
async fn bearer_tokens_are_checked_and_roles_enforced() {
    let key = Key::new("k1");
    let other = Key::new("k1"); // same kid, another key: a forged signature
    let server = rest_server(AuthnType::Token, Some(json!({"keys": [key.jwk()]}))).await;
    let consumers = server.url("/api/maestro/v1/consumers");

    let (status, body, challenge) = send(server.client.get(&consumers)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("maestro-15")), "{body}");
    assert_eq!(challenge.as_deref(), Some("Bearer"));
    maestro_tests::contract::check("GET", "/api/maestro/v1/consumers", 401, &body);

    let mut expired = claims("ops", &[]);
    expired["exp"] = json!(now() - 3600);
    let mut wrong_aud = claims("ops", &[]);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("ops", &[]);
    wrong_iss["iss"] = json!("https://evil.example");
    let refused = [
        ("expired", key.sign(&expired)),
        ("wrong audience", key.sign(&wrong_aud)),
        ("wrong issuer", key.sign(&wrong_iss)),
        ("wrong signature", other.sign(&claims("ops", &[]))),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in refused {
        let (status, body, _) = send(server.client.get(&consumers).bearer_auth(token)).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("maestro-15")), "{what}: {body}");
        let reason = body["reason"].as_str().unwrap_or_default();
        assert!(
            !reason.contains("expired") && !reason.contains("audience"),
            "{what}: the reason leaks details: {reason}"
        );
    }

    // A reader may list but not create; an admin may create; a stranger may do nothing.
    let reader = key.sign(&claims("bob", &["sre"]));
    let (status, _, _) = send(server.client.get(&consumers).bearer_auth(&reader)).await;
    assert_eq!(status, 200);
    let create = json!({"name": "cluster-1"});
    let (status, body, _) = send(server.client.post(&consumers).bearer_auth(&reader).json(&create)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("maestro-11")), "{body}");
    maestro_tests::contract::check("POST", "/api/maestro/v1/consumers", 403, &body);
    let stranger = key.sign(&claims("mallory", &[]));
    let (status, _, _) = send(server.client.get(&consumers).bearer_auth(&stranger)).await;
    assert_eq!(status, 403);
    let admin = key.sign(&claims("ops", &[]));
    let (status, body, _) = send(server.client.post(&consumers).bearer_auth(&admin).json(&create)).await;
    assert_eq!(status, 201, "{body}");

    // Discovery, the error catalogue and health checks stay public.
    for path in [
        "/api/maestro",
        "/api/maestro/v1",
        "/api/maestro/v1/openapi",
        "/api/maestro/v1/errors/15",
        "/healthz",
    ] {
        let (status, _, _) = send(server.client.get(server.url(path))).await;
        assert_eq!(status, 200, "{path}");
    }
}

#[tokio::test]
async fn client_certificates_identify_rest_callers() {
    let server = rest_server(AuthnType::Mtls, None).await;
    let consumers = server.url("/api/maestro/v1/consumers");
    let ops = server.pki.client("ops", &[]);
    let admin = https_client(&server.ca_pem, Some((&ops.0, &ops.1)));
    let (status, body, _) = send(admin.post(&consumers).json(&json!({"name": "cluster-1"}))).await;
    assert_eq!(status, 201, "{body}");
    let sre = server.pki.client("bob", &["sre"]);
    let reader = https_client(&server.ca_pem, Some((&sre.0, &sre.1)));
    let (status, _, _) = send(reader.get(&consumers)).await;
    assert_eq!(status, 200);
    let (status, body, _) = send(reader.delete(server.url("/api/maestro/v1/consumers/cluster-1"))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("maestro-11")), "{body}");
    // No certificate: the handshake itself is refused.
    assert!(server.client.get(&consumers).send().await.is_err(), "a client without a certificate was served");
    let foreign = server.pki.foreign_client("ops");
    let forged = https_client(&server.ca_pem, Some((&foreign.0, &foreign.1)));
    assert!(forged.get(&consumers).send().await.is_err(), "a certificate of another CA was accepted");
}

/// The dead letters hold other tenants' raw events and the server's reasons: every method
/// needs the REST role admin, GET included (docs/security.md, "Dead letters").
#[tokio::test]
async fn dead_letters_need_the_admin_role() {
    let key = Key::new("k1");
    let server = rest_server(AuthnType::Token, Some(json!({"keys": [key.jwk()]}))).await;
    let store = maestro_store::open(&server.db_url).await.expect("store");
    let letter = maestro_store::NewDeadLetter {
        origin: maestro_store::DeadLetterOrigin::Status,
        broker: "mqtt".into(),
        consumer_name: Some("c1".into()),
        resource_id: Some("r1".into()),
        event_id: Some("e1".into()),
        event_type: Some("t".into()),
        reason: "refused".into(),
        event: r#"{"specversion":"1.0","id":"e1"}"#.into(),
    };
    let id = store.add_dead_letter(letter).await.expect("dead letter");
    let list = server.url("/api/maestro/v1/dead-letters");
    let one = server.url(&format!("/api/maestro/v1/dead-letters/{id}"));
    let reader = key.sign(&claims("bob", &["sre"]));
    for url in [&list, &one] {
        let (status, body, _) = send(server.client.get(url).bearer_auth(&reader)).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("maestro-11")), "{url}: {body}");
    }
    let admin = key.sign(&claims("ops", &[]));
    let (status, body, _) = send(server.client.get(&list).bearer_auth(&admin)).await;
    assert_eq!(
        (status, body["kind"].as_str(), body["total"].as_i64()),
        (200, Some("DeadLetterList"), Some(1)),
        "{body}"
    );
    maestro_tests::contract::check("GET", "/api/maestro/v1/dead-letters", 200, &body);
    let item = &body["items"][0];
    assert_eq!(
        (item["id"].as_str(), item["reason"].as_str()),
        (Some(id.to_string().as_str()), Some("refused"))
    );
    assert_eq!(item["event"], json!({"specversion": "1.0", "id": "e1"}));
    let (status, body, _) = send(server.client.get(&one).bearer_auth(&admin)).await;
    assert_eq!((status, body["origin"].as_str()), (200, Some("status")), "{body}");
    maestro_tests::contract::check("GET", "/api/maestro/v1/dead-letters/{id}", 200, &body);
    let (status, _, _) = send(server.client.delete(&one).bearer_auth(&reader)).await;
    assert_eq!(status, 403);
    let (status, _, _) = send(server.client.delete(&one).bearer_auth(&admin)).await;
    assert_eq!(status, 204);
    for bad in [one.clone(), server.url("/api/maestro/v1/dead-letters/not-a-number")] {
        let (status, body, _) = send(server.client.get(&bad).bearer_auth(&admin)).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("maestro-7")), "{bad}: {body}");
    }
}

/// A wipe confirmation lets agents delete what the fleet-wipe guard kept
/// (docs/operations.md §3.5): it needs the REST role admin, names a registered consumer, and
/// holds for its ttl.
#[tokio::test]
async fn wipe_confirmations_need_the_admin_role() {
    let key = Key::new("k1");
    let server = rest_server(AuthnType::Token, Some(json!({"keys": [key.jwk()]}))).await;
    let store = maestro_store::open(&server.db_url).await.expect("store");
    let consumer = store
        .create_consumer(maestro_store::NewConsumer { name: Some("c1".into()), ..Default::default() })
        .await
        .expect("consumer");
    let url = server.url(&format!("/api/maestro/v1/consumers/{}/wipe-confirmation", consumer.id));
    let reader = key.sign(&claims("bob", &["sre"]));
    let (status, body, _) = send(server.client.post(&url).bearer_auth(&reader)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("maestro-11")), "{body}");
    assert!(!store.wipe_confirmed("c1").await.expect("read"), "refused: nothing confirmed");
    let admin = key.sign(&claims("ops", &[]));
    for bad in [json!({"ttl_seconds": "1h"}), json!({"ttl_seconds": 40 * 24 * 3600})] {
        let (status, body, _) = send(server.client.post(&url).bearer_auth(&admin).json(&bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let unknown = server.url("/api/maestro/v1/consumers/no-such-consumer/wipe-confirmation");
    let (status, body, _) = send(server.client.post(&unknown).bearer_auth(&admin)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("maestro-7")), "{body}");
    let (status, body, _) =
        send(server.client.post(&url).bearer_auth(&admin).json(&json!({"ttl_seconds": 600}))).await;
    assert_eq!(
        (status, body["kind"].as_str(), body["consumer_name"].as_str()),
        (200, Some("WipeConfirmation"), Some("c1")),
        "{body}"
    );
    assert_eq!(
        body["store_identity"].as_str(),
        Some(store.store_identity().await.expect("identity").as_str())
    );
    maestro_tests::contract::check("POST", "/api/maestro/v1/consumers/{id}/wipe-confirmation", 200, &body);
    assert!(store.wipe_confirmed("c1").await.expect("read"));
}
