//! Real TLS over 127.0.0.1 (ephemeral ports) against `ReloadingServerTls` and `client_config`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maestro_tls::testing::{TestPki, first_cert_der, write_file, write_pair};
use maestro_tls::{ClientAuth, ReloadingServerTls, ServerTlsFiles, TlsError, client_config, peer_identity};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ProtocolVersion, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const POLL: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(10);

/// Accepts TLS connections and answers each with `hello <user> [<groups>]` or `hello anonymous`.
async fn serve(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let reply = match tls.get_ref().1.peer_certificates() {
                    Some([leaf, ..]) => {
                        let id = peer_identity(leaf).unwrap();
                        format!("hello {} {:?}", id.user, id.groups)
                    }
                    _ => "hello anonymous".to_owned(),
                };
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[derive(Debug)]
struct Outcome {
    server_cert: Vec<u8>,
    version: ProtocolVersion,
    alpn: Option<Vec<u8>>,
    reply: String,
}

/// Connects, completes the handshake and reads the whole reply; any failure is an `Err`.
async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<Outcome> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
    let conn = tls.get_ref().1;
    let server_cert = conn.peer_certificates().unwrap()[0].to_vec();
    let version = conn.protocol_version().unwrap();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await?;
    if !reply.starts_with("hello") {
        return Err(std::io::Error::other(format!("no greeting: {reply:?}")));
    }
    Ok(Outcome { server_cert, version, alpn, reply })
}

/// Polls `cond` until it holds, failing the test after `DEADLINE`.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Fixture {
    pki: TestPki,
    dir: tempfile::TempDir,
    files: ServerTlsFiles,
    server_pem: String,
}

impl Fixture {
    fn new(with_client_ca: bool) -> Self {
        let pki = TestPki::new();
        let dir = tempfile::tempdir().unwrap();
        let pair = pki.server(&["localhost", "127.0.0.1"]);
        let (cert, key) = write_pair(dir.path(), "server", &pair);
        let client_ca = with_client_ca.then(|| pki.write_ca(dir.path()));
        Self { files: ServerTlsFiles { cert, key, client_ca }, server_pem: pair.0, pki, dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    async fn start(&self, auth: ClientAuth) -> (ReloadingServerTls, SocketAddr) {
        let tls = ReloadingServerTls::start(self.files.clone(), auth, POLL).await.unwrap();
        let addr = serve(tls.server_config()).await;
        (tls, addr)
    }

    /// A client config trusting the CA and presenting `pair`, if any, without session
    /// resumption: a resumed TLS 1.3 session reports the certificate of the original handshake,
    /// not the one the server holds now.
    fn client(&self, name: &str, pair: Option<&(String, String)>) -> Arc<ClientConfig> {
        let ca = self.pki.write_ca(self.path());
        let config = match pair {
            None => client_config(&ca, None).unwrap(),
            Some(pair) => {
                let (cert, key) = write_pair(self.path(), name, pair);
                client_config(&ca, Some((&cert, &key))).unwrap()
            }
        };
        let mut config = (*config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }
}

#[tokio::test]
async fn handshake_tls13() {
    let fx = Fixture::new(false);
    let (_tls, addr) = fx.start(ClientAuth::Required).await;
    let out = connect(addr, fx.client("c", None)).await.unwrap();
    assert_eq!(out.version, ProtocolVersion::TLSv1_3);
    assert_eq!(out.reply, "hello anonymous");
    assert_eq!(out.server_cert, first_cert_der(&fx.server_pem));
}

#[tokio::test]
async fn handshake_tls12_only_client() {
    let fx = Fixture::new(false);
    let (_tls, addr) = fx.start(ClientAuth::Required).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(first_cert_der(&fx.pki.ca_pem()).into()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let out = connect(addr, Arc::new(config)).await.unwrap();
    assert_eq!(out.version, ProtocolVersion::TLSv1_2);
    assert_eq!(out.reply, "hello anonymous");
}

#[tokio::test]
async fn alpn_is_offered() {
    let fx = Fixture::new(false);
    let tls = ReloadingServerTls::start(fx.files.clone(), ClientAuth::Required, POLL).await.unwrap();
    let addr = serve(tls.server_config_with_alpn(&[b"h2", b"http/1.1"])).await;
    let mut config = (*fx.client("c", None)).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let out = connect(addr, Arc::new(config)).await.unwrap();
    assert_eq!(out.alpn.as_deref(), Some(&b"h2"[..]));
    assert!(tls.server_config().alpn_protocols.is_empty());
}

#[tokio::test]
async fn client_refuses_server_from_foreign_ca() {
    let fx = Fixture::new(false);
    write_pair(fx.path(), "server", &fx.pki.foreign_server(&["localhost"]));
    let (_tls, addr) = fx.start(ClientAuth::Required).await;
    assert!(connect(addr, fx.client("c", None)).await.is_err());
}

#[tokio::test]
async fn mtls_required_refuses_client_without_cert() {
    let fx = Fixture::new(true);
    let (_tls, addr) = fx.start(ClientAuth::Required).await;
    assert!(connect(addr, fx.client("c", None)).await.is_err());
}

#[tokio::test]
async fn mtls_refuses_client_cert_from_foreign_ca() {
    let fx = Fixture::new(true);
    let (_tls, addr) = fx.start(ClientAuth::Required).await;
    let pair = fx.pki.foreign_client("mallory");
    assert!(connect(addr, fx.client("c", Some(&pair))).await.is_err());
}

#[tokio::test]
async fn mtls_refuses_expired_client_cert() {
    let fx = Fixture::new(true);
    let (_tls, addr) = fx.start(ClientAuth::Required).await;
    let pair = fx.pki.expired_client("old");
    assert!(connect(addr, fx.client("c", Some(&pair))).await.is_err());
}

#[tokio::test]
async fn mtls_accepts_valid_client_cert_and_reads_identity() {
    let fx = Fixture::new(true);
    let (_tls, addr) = fx.start(ClientAuth::Required).await;
    let pair = fx.pki.client("alice", &["system:masters", "devs"]);
    let out = connect(addr, fx.client("c", Some(&pair))).await.unwrap();
    assert_eq!(out.reply, r#"hello alice ["system:masters", "devs"]"#);
    let id = peer_identity(&first_cert_der(&pair.0)).unwrap();
    assert_eq!(id.user, "alice");
    assert_eq!(id.groups, ["system:masters", "devs"]);
}

#[tokio::test]
async fn mtls_optional_allows_anonymous_but_checks_presented_certs() {
    let fx = Fixture::new(true);
    let (_tls, addr) = fx.start(ClientAuth::Optional).await;
    let out = connect(addr, fx.client("c", None)).await.unwrap();
    assert_eq!(out.reply, "hello anonymous");
    let good = fx.pki.client("bob", &[]);
    let out = connect(addr, fx.client("good", Some(&good))).await.unwrap();
    assert_eq!(out.reply, "hello bob []");
    let foreign = fx.pki.foreign_client("mallory");
    assert!(connect(addr, fx.client("bad", Some(&foreign))).await.is_err());
}

/// Waits until a new connection is served `expected` (DER).
async fn wait_for_served(addr: SocketAddr, client: Arc<ClientConfig>, expected: &[u8]) {
    eventually("the rotated certificate", || {
        let client = Arc::clone(&client);
        async move { matches!(connect(addr, client).await, Ok(out) if out.server_cert == expected) }
    })
    .await;
}

#[tokio::test]
async fn rotation_serves_new_cert_without_restart() {
    let fx = Fixture::new(false);
    let (tls, addr) = fx.start(ClientAuth::Required).await;
    let client = fx.client("c", None);
    let a = connect(addr, Arc::clone(&client)).await.unwrap();
    assert_eq!(a.server_cert, first_cert_der(&fx.server_pem));

    let b = fx.pki.server(&["localhost", "b.example"]);
    write_pair(fx.path(), "server", &b);
    let b_der = first_cert_der(&b.0);
    assert_ne!(a.server_cert, b_der);
    wait_for_served(addr, client, &b_der).await;
    assert_eq!(tls.current_cert_chain()[0], b_der);
    assert!(tls.stats().reloads >= 1);
}

#[cfg(unix)]
#[tokio::test]
async fn rotation_follows_kubernetes_style_symlink_swap() {
    use std::os::unix::fs::symlink;
    let fx = Fixture::new(false);
    let root = fx.path();
    // <root>/v1/{tls.crt,tls.key}, <root>/..data -> v1, <root>/tls.crt -> ..data/tls.crt
    std::fs::create_dir(root.join("v1")).unwrap();
    std::fs::create_dir(root.join("v2")).unwrap();
    let a = fx.pki.server(&["localhost"]);
    write_file(&root.join("v1"), "tls.crt", &a.0);
    write_file(&root.join("v1"), "tls.key", &a.1);
    symlink("v1", root.join("..data")).unwrap();
    symlink("..data/tls.crt", root.join("tls.crt")).unwrap();
    symlink("..data/tls.key", root.join("tls.key")).unwrap();
    let files = ServerTlsFiles { cert: root.join("tls.crt"), key: root.join("tls.key"), client_ca: None };
    let tls = ReloadingServerTls::start(files, ClientAuth::Required, POLL).await.unwrap();
    let addr = serve(tls.server_config()).await;
    let client = fx.client("c", None);
    wait_for_served(addr, Arc::clone(&client), &first_cert_der(&a.0)).await;

    let b = fx.pki.server(&["localhost"]);
    write_file(&root.join("v2"), "tls.crt", &b.0);
    write_file(&root.join("v2"), "tls.key", &b.1);
    symlink("v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    wait_for_served(addr, client, &first_cert_der(&b.0)).await;
}

#[tokio::test]
async fn bad_rotation_keeps_serving_old_cert() {
    let fx = Fixture::new(false);
    let (tls, addr) = fx.start(ClientAuth::Required).await;
    let client = fx.client("c", None);
    let a_der = first_cert_der(&fx.server_pem);

    // New certificate, but a key that is not its own.
    let b = fx.pki.server(&["localhost"]);
    let other = fx.pki.server(&["localhost"]);
    write_file(fx.path(), "server.crt", &b.0);
    write_file(fx.path(), "server.key", &other.1);
    eventually("the rejected reload", || async { tls.stats().failures >= 1 }).await;
    let out = connect(addr, Arc::clone(&client)).await.unwrap();
    assert_eq!(out.server_cert, a_der);
    assert_eq!(tls.current_cert_chain()[0], a_der);
    assert_eq!(tls.stats().reloads, 0);

    // Fixing the key makes the new certificate live.
    write_file(fx.path(), "server.key", &b.1);
    wait_for_served(addr, client, &first_cert_der(&b.0)).await;
}

async fn start_err(files: ServerTlsFiles) -> TlsError {
    ReloadingServerTls::start(files, ClientAuth::Required, POLL).await.unwrap_err()
}

#[tokio::test]
async fn missing_file_is_named() {
    let fx = Fixture::new(false);
    let mut files = fx.files.clone();
    files.cert = fx.path().join("nope.crt");
    let err = start_err(files).await;
    assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.crt"), "{err}");

    let mut files = fx.files.clone();
    files.client_ca = Some(fx.path().join("no-ca.crt"));
    let err = start_err(files).await;
    assert!(err.to_string().contains("no-ca.crt"), "{err}");
}

#[tokio::test]
async fn pem_without_certificate_is_named() {
    let fx = Fixture::new(false);
    let mut files = fx.files.clone();
    // A key is valid PEM but holds no certificate.
    files.cert = fx.files.key.clone();
    let err = start_err(files).await;
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains("server.key"), "{err}");

    let mut files = fx.files.clone();
    files.cert = write_file(fx.path(), "empty.crt", "not pem at all\n");
    let err = start_err(files).await;
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.crt"), "{err}");
}

#[tokio::test]
async fn key_file_without_key_is_named() {
    let fx = Fixture::new(false);
    let mut files = fx.files.clone();
    files.key = fx.files.cert.clone();
    let err = start_err(files).await;
    assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
    assert!(err.to_string().contains("server.crt"), "{err}");
}

#[tokio::test]
async fn mismatched_key_names_both_files() {
    let fx = Fixture::new(false);
    let other = fx.pki.server(&["localhost"]);
    let mut files = fx.files.clone();
    files.key = write_file(fx.path(), "other.key", &other.1);
    let err = start_err(files).await;
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("other.key") && text.contains("server.crt"), "{text}");
}

#[tokio::test]
async fn client_config_errors_name_the_file() {
    let fx = Fixture::new(false);
    let err = client_config(&fx.path().join("missing-ca.crt"), None).unwrap_err();
    assert!(err.to_string().contains("missing-ca.crt"), "{err}");

    let ca = fx.pki.write_ca(fx.path());
    let pair = fx.pki.client("alice", &[]);
    let other = fx.pki.client("bob", &[]);
    let (cert, _) = write_pair(fx.path(), "alice", &pair);
    let (_, wrong_key) = write_pair(fx.path(), "bob", &other);
    let err = client_config(&ca, Some((&cert, &wrong_key))).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("bob.key"), "{err}");
}

#[test]
fn peer_identity_rejects_garbage_and_missing_cn() {
    let err = peer_identity(b"not a certificate").unwrap_err();
    assert!(matches!(err, TlsError::PeerCertificate(_)), "{err:?}");

    let pki = TestPki::new();
    let (server_pem, _) = pki.foreign_server(&["localhost"]); // no CN in subject
    let err = peer_identity(&first_cert_der(&server_pem)).unwrap_err();
    assert!(err.to_string().contains("common name"), "{err}");
}

#[tokio::test]
async fn a_rotated_client_ca_takes_effect_without_restart() {
    let fx = Fixture::new(true);
    let (tls, addr) = fx.start(ClientAuth::Required).await;
    let ours = fx.client("ours", Some(&fx.pki.client("alice", &[])));
    let theirs = fx.client("theirs", Some(&fx.pki.foreign_client("bob")));
    assert!(connect(addr, Arc::clone(&ours)).await.is_ok());
    assert!(connect(addr, Arc::clone(&theirs)).await.is_err(), "the other CA is not trusted yet");

    // Step 1 of a CA rotation: trust both CAs.
    let ca_file = fx.files.client_ca.clone().unwrap();
    let both = format!("{}{}", fx.pki.ca_pem(), fx.pki.foreign_ca_pem());
    write_file(fx.path(), ca_file.file_name().unwrap().to_str().unwrap(), &both);
    eventually("the new CA is trusted", || {
        let theirs = Arc::clone(&theirs);
        async move { connect(addr, theirs).await.is_ok() }
    })
    .await;
    assert!(connect(addr, Arc::clone(&ours)).await.is_ok(), "the old CA is still trusted");

    // A broken CA file is refused and the current set stays.
    let reloads = tls.stats().reloads;
    write_file(fx.path(), ca_file.file_name().unwrap().to_str().unwrap(), "not a certificate");
    eventually("the broken CA file is tried", || async { tls.stats().failures >= 1 }).await;
    assert_eq!(tls.stats().reloads, reloads);
    assert!(connect(addr, Arc::clone(&theirs)).await.is_ok());

    // Step 2: drop the old CA.
    write_file(fx.path(), ca_file.file_name().unwrap().to_str().unwrap(), &fx.pki.foreign_ca_pem());
    eventually("the old CA is no longer trusted", || {
        let ours = Arc::clone(&ours);
        async move { connect(addr, ours).await.is_err() }
    })
    .await;
    assert!(connect(addr, theirs).await.is_ok());
}
