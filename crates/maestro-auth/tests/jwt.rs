//! `maestro_auth::jwt` against real keys: RSA and EC keys generated here, tokens signed with
//! `jsonwebtoken::encode`, key sets served from files and from a local axum server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use maestro_auth::jwt::{JwksSource, JwtConfig, JwtVerifier};
use maestro_auth::{AuthError, Identity};
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::{Value, json};

/// A signing key, its algorithm and the `kid` its JWK and tokens carry.
struct TestKey {
    encoding: EncodingKey,
    alg: Algorithm,
    kid: String,
}

/// One 2048-bit RSA key (PKCS#1 DER) for the whole binary: generating RSA keys is slow
/// in debug builds.
fn rsa_der() -> Result<&'static [u8]> {
    static DER: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    let generate = || -> Result<Vec<u8>> {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048)?;
        Ok(key.to_pkcs1_der()?.as_bytes().to_vec())
    };
    let der = DER.get_or_init(|| generate().map_err(|e| format!("{e:#}")));
    der.as_deref().map_err(|e| anyhow::anyhow!("cannot generate an RSA key: {e}"))
}

impl TestKey {
    fn rsa(kid: &str, alg: Algorithm) -> Result<TestKey> {
        Ok(TestKey { encoding: EncodingKey::from_rsa_der(rsa_der()?), alg, kid: kid.to_owned() })
    }

    fn ec(kid: &str, alg: Algorithm) -> Result<TestKey> {
        let curve = match alg {
            Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            _ => &rcgen::PKCS_ECDSA_P256_SHA256,
        };
        let pair = rcgen::KeyPair::generate_for(curve)?;
        Ok(TestKey { encoding: EncodingKey::from_ec_der(&pair.serialize_der()), alg, kid: kid.to_owned() })
    }

    /// The public JWK: `kty`, `n`/`e` or `crv`/`x`/`y`, `kid` and `alg`.
    fn jwk(&self) -> Result<Value> {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg)?;
        jwk.common.key_id = Some(self.kid.clone());
        Ok(serde_json::to_value(jwk)?)
    }

    /// The public JWK without `alg`.
    fn jwk_without_alg(&self) -> Result<Value> {
        let mut jwk = self.jwk()?;
        if let Some(fields) = jwk.as_object_mut() {
            fields.remove("alg");
        }
        Ok(jwk)
    }

    fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    fn sign_without_kid(&self, claims: &Value) -> Result<String> {
        Ok(jsonwebtoken::encode(&Header::new(self.alg), claims, &self.encoding)?)
    }
}

fn now() -> Result<i64> {
    Ok(i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?)
}

/// Claims for user `alice` in groups `sources` and `admins`, valid for 10 minutes.
fn claims() -> Result<Value> {
    Ok(json!({"sub": "alice", "groups": ["sources", "admins"], "exp": now()? + 600}))
}

fn alice() -> Identity {
    Identity { user: "alice".to_owned(), groups: vec!["sources".to_owned(), "admins".to_owned()] }
}

fn jwks(keys: &[Value]) -> Vec<u8> {
    json!({ "keys": keys }).to_string().into_bytes()
}

/// A key set file in a temporary directory (kept alive by the returned guard).
fn jwks_file(keys: &[Value]) -> Result<(tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(keys))?;
    Ok((dir, path))
}

/// A verifier over a key set file holding `keys`, with `tweak` applied to the config.
async fn verifier(
    keys: &[Value],
    tweak: impl FnOnce(&mut JwtConfig),
) -> Result<(tempfile::TempDir, JwtVerifier)> {
    let (dir, path) = jwks_file(keys)?;
    let mut config = JwtConfig::new(JwksSource::File(path));
    tweak(&mut config);
    Ok((dir, JwtVerifier::start(config).await?))
}

/// The detail of an [`AuthError::InvalidCredentials`], or an error.
fn refusal(result: Result<Identity, AuthError>) -> Result<String> {
    match result {
        Err(AuthError::InvalidCredentials(detail)) => Ok(detail),
        other => bail!("expected InvalidCredentials, got {other:?}"),
    }
}

fn assert_refused(result: Result<Identity, AuthError>, want: &str) -> Result<()> {
    let detail = refusal(result)?;
    ensure!(detail.contains(want), "detail {detail:?} does not say {want:?}");
    Ok(())
}

/// Polls `check` every 20 ms until it holds, failing after 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn rs256_token_gives_the_user_and_groups() -> Result<()> {
    let key = TestKey::rsa("rsa-1", Algorithm::RS256)?;
    let (_dir, v) = verifier(&[key.jwk()?], |_| {}).await?;
    assert_eq!(v.verify(&key.sign(&claims()?)?)?, alice());
    Ok(())
}

#[tokio::test]
async fn es256_token_gives_the_user_and_groups() -> Result<()> {
    let key = TestKey::ec("ec-1", Algorithm::ES256)?;
    let (_dir, v) = verifier(&[key.jwk()?], |_| {}).await?;
    assert_eq!(v.verify(&key.sign(&claims()?)?)?, alice());
    Ok(())
}

#[tokio::test]
async fn es384_rs512_and_ps256_are_accepted_too() -> Result<()> {
    let es384 = TestKey::ec("ec-384", Algorithm::ES384)?;
    let rs512 = TestKey::rsa("rsa-any", Algorithm::RS512)?;
    let ps256 = TestKey::rsa("rsa-any", Algorithm::PS256)?;
    // Without `alg`, an RSA key verifies every accepted RSA algorithm.
    let (_dir, v) = verifier(&[es384.jwk()?, rs512.jwk_without_alg()?], |_| {}).await?;
    for key in [&es384, &rs512, &ps256] {
        assert_eq!(v.verify(&key.sign(&claims()?)?)?, alice(), "{:?}", key.alg);
    }
    Ok(())
}

#[tokio::test]
async fn a_jwk_alg_restricts_its_key() -> Result<()> {
    let rs256 = TestKey::rsa("rsa-1", Algorithm::RS256)?;
    let rs384 = TestKey::rsa("rsa-1", Algorithm::RS384)?;
    let (_dir, v) = verifier(&[rs256.jwk()?], |_| {}).await?;
    assert_refused(v.verify(&rs384.sign(&claims()?)?), "does not verify RS384")
}

#[tokio::test]
async fn custom_user_and_groups_claims() -> Result<()> {
    let key = TestKey::ec("ec-1", Algorithm::ES256)?;
    let (_dir, v) = verifier(&[key.jwk()?], |c| {
        c.user_claim = "email".to_owned();
        c.groups_claim = "roles".to_owned();
    })
    .await?;
    let token =
        key.sign(&json!({"sub": "1234", "email": "bob@example.com", "roles": ["ops"], "exp": now()? + 60}))?;
    let id = v.verify(&token)?;
    assert_eq!(id, Identity { user: "bob@example.com".to_owned(), groups: vec!["ops".to_owned()] });

    // No groups claim: no groups.
    let token = key.sign(&json!({"email": "bob@example.com", "exp": now()? + 60}))?;
    assert_eq!(v.verify(&token)?.groups, Vec::<String>::new());

    // The user claim is required, non-empty and a string; groups must be strings.
    assert_refused(
        v.verify(&key.sign(&json!({"sub": "bob", "exp": now()? + 60}))?),
        "missing user claim email",
    )?;
    assert_refused(v.verify(&key.sign(&json!({"email": "", "exp": now()? + 60}))?), "empty user claim")?;
    assert_refused(v.verify(&key.sign(&json!({"email": 7, "exp": now()? + 60}))?), "not a string")?;
    let token = key.sign(&json!({"email": "bob", "roles": ["ops", 1], "exp": now()? + 60}))?;
    assert_refused(v.verify(&token), "not an array of strings")?;
    let token = key.sign(&json!({"email": "bob", "roles": "ops", "exp": now()? + 60}))?;
    assert_refused(v.verify(&token), "not an array of strings")
}

#[tokio::test]
async fn time_claims_are_checked_with_leeway() -> Result<()> {
    let key = TestKey::ec("ec-1", Algorithm::ES256)?;
    let (_dir, v) = verifier(&[key.jwk()?], |c| c.leeway = Duration::from_secs(30)).await?;
    let t = now()?;
    let expired = key.sign(&json!({"sub": "alice", "exp": t - 120}))?;
    assert_refused(v.verify(&expired), "expired")?;
    let not_yet = key.sign(&json!({"sub": "alice", "exp": t + 600, "nbf": t + 300}))?;
    assert_refused(v.verify(&not_yet), "not yet valid")?;
    let no_exp = key.sign(&json!({"sub": "alice"}))?;
    assert_refused(v.verify(&no_exp), "missing required claim exp")?;
    let bad_exp = key.sign(&json!({"sub": "alice", "exp": "tomorrow"}))?;
    assert_refused(v.verify(&bad_exp), "exp")?;
    // Within the leeway both ways.
    let just_expired = key.sign(&json!({"sub": "alice", "exp": t - 10, "nbf": t + 10}))?;
    assert_eq!(v.verify(&just_expired)?.user, "alice");

    let (_dir, strict) = verifier(&[key.jwk()?], |c| c.leeway = Duration::ZERO).await?;
    assert_refused(strict.verify(&just_expired), "expired")
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() -> Result<()> {
    let key = TestKey::ec("ec-1", Algorithm::ES256)?;
    let (_dir, v) = verifier(&[key.jwk()?], |c| {
        c.issuer = Some("https://idp.example".to_owned());
        c.audiences = vec!["maestro".to_owned(), "maestro-rest".to_owned()];
    })
    .await?;
    let exp = now()? + 60;
    let good = json!({"sub": "alice", "exp": exp, "iss": "https://idp.example", "aud": ["other", "maestro"]});
    assert_eq!(v.verify(&key.sign(&good)?)?.user, "alice");
    let single_aud = json!({"sub": "alice", "exp": exp, "iss": "https://idp.example", "aud": "maestro-rest"});
    assert_eq!(v.verify(&key.sign(&single_aud)?)?.user, "alice");

    let cases = [
        (json!({"sub": "a", "exp": exp, "iss": "https://idp.example", "aud": "other"}), "wrong audience"),
        (json!({"sub": "a", "exp": exp, "iss": "https://idp.example"}), "missing required claim aud"),
        (json!({"sub": "a", "exp": exp, "iss": "https://evil.example", "aud": "maestro"}), "wrong issuer"),
        (
            json!({"sub": "a", "exp": exp, "iss": ["x", "https://idp.example"], "aud": "maestro"}),
            "wrong issuer",
        ),
        (json!({"sub": "a", "exp": exp, "aud": "maestro"}), "missing required claim iss"),
    ];
    for (claims, want) in cases {
        assert_refused(v.verify(&key.sign(&claims)?), want)?;
    }

    // Not configured: not checked.
    let (_dir, lax) = verifier(&[key.jwk()?], |_| {}).await?;
    let any = json!({"sub": "alice", "exp": exp, "iss": "whoever", "aud": "anything"});
    assert_eq!(lax.verify(&key.sign(&any)?)?.user, "alice");
    Ok(())
}

#[tokio::test]
async fn a_signature_by_another_key_with_the_same_kid_is_bad() -> Result<()> {
    let key = TestKey::ec("shared", Algorithm::ES256)?;
    let impostor = TestKey::ec("shared", Algorithm::ES256)?;
    let (_dir, v) = verifier(&[key.jwk()?], |_| {}).await?;
    assert_refused(v.verify(&impostor.sign(&claims()?)?), "bad signature")?;

    let rsa = TestKey::rsa("rsa-1", Algorithm::RS256)?;
    let (_dir, v) = verifier(&[rsa.jwk()?], |_| {}).await?;
    // Alice's signature on Mallory's claims.
    let signed = rsa.sign(&claims()?)?;
    let mallory = rsa.sign(&json!({"sub": "mallory", "exp": now()? + 600}))?;
    let (Some((header, _)), Some((_, signature))) = (signed.split_once('.'), signed.rsplit_once('.')) else {
        bail!("not a compact JWS: {signed}");
    };
    let payload = mallory.split('.').nth(1).context("payload")?;
    assert_refused(v.verify(&format!("{header}.{payload}.{signature}")), "bad signature")
}

#[tokio::test]
async fn alg_none_and_hmac_tokens_are_refused_even_with_an_oct_key() -> Result<()> {
    let key = TestKey::ec("ec-1", Algorithm::ES256)?;
    let secret = b"a shared secret that must never verify anything";
    // k = base64url(secret)
    let k = "YSBzaGFyZWQgc2VjcmV0IHRoYXQgbXVzdCBuZXZlciB2ZXJpZnkgYW55dGhpbmc";
    let oct = json!({"kty": "oct", "kid": "hmac", "alg": "HS256", "k": k});
    let (_dir, v) = verifier(&[key.jwk()?, oct], |_| {}).await?;

    let payload = key.sign(&claims()?)?.split('.').nth(1).context("payload")?.to_owned();
    // {"alg":"none","typ":"JWT"} and {"alg":"none","kid":"ec-1"}
    for header in ["eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJhbGciOiJub25lIiwia2lkIjoiZWMtMSJ9"] {
        assert_refused(v.verify(&format!("{header}.{payload}.")), "unsupported algorithm \"none\"")?;
    }
    for kid in ["hmac", "ec-1"] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        let hs = jsonwebtoken::encode(&header, &claims()?, &EncodingKey::from_secret(secret)?)?;
        assert_refused(v.verify(&hs), "unsupported algorithm \"HS256\"")?;
    }
    // A key set with only an oct key holds no usable key.
    let only_oct = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
    let (_keep, path) = jwks_file(&[only_oct])?;
    match JwtVerifier::start(JwtConfig::new(JwksSource::File(path))).await {
        Err(AuthError::Jwks { detail, .. }) => ensure!(detail.contains("no usable key"), "{detail}"),
        other => bail!("expected a JWKS error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn malformed_tokens_are_refused() -> Result<()> {
    let key = TestKey::ec("ec-1", Algorithm::ES256)?;
    let (_dir, v) = verifier(&[key.jwk()?], |_| {}).await?;
    for token in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.e30.sig", "bm90IGpzb24.e30.sig"] {
        assert_refused(v.verify(token), "malformed token")?;
    }
    assert_refused(v.verify(&"a".repeat(20_000)), "longer than")
}

#[tokio::test]
async fn kid_selects_the_key() -> Result<()> {
    let one = TestKey::ec("one", Algorithm::ES256)?;
    let two = TestKey::ec("two", Algorithm::ES256)?;
    let unknown = TestKey::ec("three", Algorithm::ES256)?;
    let (_dir, v) = verifier(&[one.jwk()?, two.jwk()?], |_| {}).await?;
    assert_eq!(v.verify(&one.sign(&claims()?)?)?, alice());
    assert_eq!(v.verify(&two.sign(&claims()?)?)?, alice());
    assert_refused(v.verify(&unknown.sign(&claims()?)?), "unknown key id \"three\"")?;
    // No kid: refused when several keys fit the algorithm...
    assert_refused(v.verify(&one.sign_without_kid(&claims()?)?), "several keys")?;
    // ...accepted when exactly one does.
    let rsa = TestKey::rsa("rsa-1", Algorithm::RS256)?;
    let (_dir, v) = verifier(&[one.jwk()?, rsa.jwk()?], |_| {}).await?;
    assert_eq!(v.verify(&one.sign_without_kid(&claims()?)?)?, alice());
    assert_eq!(v.verify(&rsa.sign_without_kid(&claims()?)?)?, alice());
    Ok(())
}

#[tokio::test]
async fn verify_bearer_reads_the_authorization_header() -> Result<()> {
    let key = TestKey::ec("ec-1", Algorithm::ES256)?;
    let (_dir, v) = verifier(&[key.jwk()?], |_| {}).await?;
    let token = key.sign(&claims()?)?;
    for value in [format!("Bearer {token}"), format!("bearer {token}"), format!("  BEARER   {token} ")] {
        assert_eq!(v.verify_bearer(&value)?, alice(), "{value}");
    }
    assert_refused(v.verify_bearer("Basic YWxpY2U6c2VjcmV0"), "not Bearer")?;
    assert_refused(v.verify_bearer(&token), "not Bearer")?;
    assert_refused(v.verify_bearer("Bearer"), "empty bearer token")?;
    assert_refused(v.verify_bearer("Bearer   "), "empty bearer token")?;
    assert_refused(v.verify_bearer("Bearer x"), "malformed token")?;
    let detail = refusal(v.verify_bearer("Basic YWxpY2U6c2VjcmV0"))?;
    ensure!(!detail.contains("YWxp"), "the detail repeats the credential: {detail}");
    Ok(())
}

#[tokio::test]
async fn a_rewritten_jwks_file_is_picked_up() -> Result<()> {
    let old = TestKey::ec("old", Algorithm::ES256)?;
    let new = TestKey::ec("new", Algorithm::ES384)?;
    let (_dir, path) = jwks_file(&[old.jwk()?])?;
    let mut config = JwtConfig::new(JwksSource::File(path.clone()));
    config.refresh = Duration::from_millis(50);
    let v = JwtVerifier::start(config).await?;
    let new_token = new.sign(&claims()?)?;
    assert_refused(v.verify(&new_token), "unknown key id")?;

    // A broken rewrite is logged and ignored: the current keys stay. (Nothing to wait on:
    // give the 50 ms refresh a few rounds.)
    std::fs::write(&path, b"{ not json")?;
    let old_token = old.sign(&claims()?)?;
    tokio::time::sleep(Duration::from_millis(250)).await;
    ensure!(v.verify(&old_token).is_ok(), "a broken file dropped the keys");
    // Replace the file the way a Kubernetes secret update does: a new file renamed over it.
    let staged = path.with_extension("tmp");
    std::fs::write(&staged, jwks(&[new.jwk()?]))?;
    std::fs::rename(&staged, &path)?;
    eventually("the new key", || v.verify(&new_token).is_ok()).await?;
    assert_refused(v.verify(&old_token), "unknown key id")
}

#[tokio::test]
async fn start_errors_name_the_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.json");
    match JwtVerifier::start(JwtConfig::new(JwksSource::File(missing.clone()))).await {
        Err(e @ AuthError::Read { .. }) => {
            ensure!(e.to_string().contains(&*missing.to_string_lossy()), "{e}")
        }
        other => bail!("expected a read error, got {other:?}"),
    }
    for (name, content) in
        [("bad.json", &b"{ not json"[..]), ("empty.json", b"{\"keys\": []}"), ("obj.json", b"{}")]
    {
        let path = dir.path().join(name);
        std::fs::write(&path, content)?;
        match JwtVerifier::start(JwtConfig::new(JwksSource::File(path.clone()))).await {
            Err(e @ AuthError::Jwks { .. }) => {
                ensure!(e.to_string().contains(&*path.to_string_lossy()), "{e}")
            }
            other => bail!("expected a JWKS error for {name}, got {other:?}"),
        }
    }
    Ok(())
}

/// A JWKS server on 127.0.0.1: serves `body` (or `status` when not 200) and counts requests.
#[derive(Clone)]
struct JwksServer {
    body: Arc<Mutex<Vec<u8>>>,
    status: Arc<Mutex<StatusCode>>,
    hits: Arc<AtomicUsize>,
    addr: SocketAddr,
}

impl JwksServer {
    async fn start(keys: &[Value]) -> Result<JwksServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = JwksServer {
            body: Arc::new(Mutex::new(jwks(keys))),
            status: Arc::new(Mutex::new(StatusCode::OK)),
            hits: Arc::new(AtomicUsize::new(0)),
            addr: listener.local_addr()?,
        };
        let state = server.clone();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let state = state.clone();
                async move { state.respond() }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(server)
    }

    fn respond(&self) -> Response {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let status = *self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if status != StatusCode::OK {
            return status.into_response();
        }
        let body = self.body.lock().unwrap_or_else(PoisonError::into_inner).clone();
        ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
    }

    fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn serve(&self, keys: &[Value]) {
        *self.body.lock().unwrap_or_else(PoisonError::into_inner) = jwks(keys);
    }

    fn fail_with(&self, status: StatusCode) {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn url_config(url: String, refresh: Duration) -> JwtConfig {
    let mut config = JwtConfig::new(JwksSource::Url(url));
    config.refresh = refresh;
    config
}

#[tokio::test]
async fn jwks_url_key_rotation() -> Result<()> {
    let a = TestKey::rsa("key-a", Algorithm::RS256)?;
    let b = TestKey::ec("key-b", Algorithm::ES256)?;
    let server = JwksServer::start(&[a.jwk()?]).await?;
    let v = JwtVerifier::start(url_config(server.url(), Duration::from_millis(300))).await?;
    assert_eq!(server.hits(), 1);
    assert_eq!(v.verify(&a.sign(&claims()?)?)?, alice());

    // B is unknown: refused, and an early refresh is asked for (the server still has only A).
    let token_b = b.sign(&claims()?)?;
    assert_refused(v.verify(&token_b), "unknown key id \"key-b\"")?;
    eventually("the early refresh", || server.hits() >= 2).await?;
    assert_refused(v.verify(&token_b), "unknown key id")?;

    // The identity provider rotates in B: accepted after the next (rate-limited) refresh.
    server.serve(&[a.jwk()?, b.jwk()?]);
    eventually("key B", || v.verify(&token_b).is_ok()).await?;
    assert_eq!(v.verify(&token_b)?, alice());
    assert_eq!(v.verify(&a.sign(&claims()?)?)?, alice());
    Ok(())
}

#[tokio::test]
async fn unknown_kids_do_not_hammer_the_jwks_url() -> Result<()> {
    let a = TestKey::ec("key-a", Algorithm::ES256)?;
    let server = JwksServer::start(&[a.jwk()?]).await?;
    // The regular refresh is far away: only the rate-limited early refresh may fetch.
    let v = JwtVerifier::start(url_config(server.url(), Duration::from_secs(3600))).await?;
    for i in 0..200 {
        let stranger = TestKey::ec(&format!("made-up-{i}"), Algorithm::ES256)?;
        assert_refused(v.verify(&stranger.sign(&claims()?)?), "unknown key id")?;
        tokio::task::yield_now().await;
    }
    eventually("the early refresh", || server.hits() == 2).await?;
    // Give any extra (wrong) fetch a chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.hits(), 2, "200 unknown kids caused more than one early refresh");
    Ok(())
}

#[tokio::test]
async fn a_failing_jwks_url_keeps_the_current_keys() -> Result<()> {
    let a = TestKey::ec("key-a", Algorithm::ES256)?;
    let server = JwksServer::start(&[a.jwk()?]).await?;
    let v = JwtVerifier::start(url_config(server.url(), Duration::from_millis(50))).await?;
    server.fail_with(StatusCode::INTERNAL_SERVER_ERROR);
    let seen = server.hits();
    eventually("failed refreshes", || server.hits() >= seen + 3).await?;
    assert_eq!(v.verify(&a.sign(&claims()?)?)?, alice());
    // Invalid JSON from the URL: the same.
    server.fail_with(StatusCode::OK);
    server.body.lock().unwrap_or_else(PoisonError::into_inner).clear();
    let seen = server.hits();
    eventually("failed refreshes", || server.hits() >= seen + 3).await?;
    assert_eq!(v.verify(&a.sign(&claims()?)?)?, alice());
    Ok(())
}

#[tokio::test]
async fn the_refresh_task_ends_with_the_last_clone() -> Result<()> {
    let a = TestKey::ec("key-a", Algorithm::ES256)?;
    let server = JwksServer::start(&[a.jwk()?]).await?;
    let v = JwtVerifier::start(url_config(server.url(), Duration::from_millis(50))).await?;
    let clone = v.clone();
    drop(v);
    let seen = server.hits();
    eventually("refreshes while a clone lives", || server.hits() >= seen + 2).await?;
    drop(clone);
    // Let an in-flight refresh land, then no more may come.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = server.hits();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.hits(), after, "the refresh task outlived the verifier");
    Ok(())
}

#[tokio::test]
async fn jwks_url_start_errors_name_the_url() -> Result<()> {
    let server = JwksServer::start(&[]).await?;
    server.fail_with(StatusCode::NOT_FOUND);
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}/jwks", listener.local_addr()?)
    };
    let cases = [
        (server.url(), "404"),
        (unreachable.clone(), "cannot fetch"),
        ("ftp://127.0.0.1/jwks".to_owned(), "unsupported URL scheme"),
        ("not a url".to_owned(), "not a URL"),
    ];
    for (url, want) in cases {
        match JwtVerifier::start(url_config(url.clone(), Duration::from_secs(60))).await {
            Err(e @ AuthError::Jwks { .. }) => {
                let text = e.to_string();
                ensure!(text.contains(&url) && text.contains(want), "{text}");
            }
            other => bail!("expected a JWKS error for {url}, got {other:?}"),
        }
    }
    // A served document without usable keys.
    server.fail_with(StatusCode::OK);
    match JwtVerifier::start(url_config(server.url(), Duration::from_secs(60))).await {
        Err(AuthError::Jwks { detail, .. }) => ensure!(detail.contains("no usable key"), "{detail}"),
        other => bail!("expected a JWKS error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn config_defaults() -> Result<()> {
    let file = JwtConfig::new(JwksSource::File(Path::new("/etc/jwks.json").to_path_buf()));
    assert_eq!(file.user_claim, "sub");
    assert_eq!(file.groups_claim, "groups");
    assert_eq!(file.leeway, Duration::from_secs(30));
    assert_eq!(file.refresh, Duration::from_secs(5));
    assert!(file.issuer.is_none() && file.audiences.is_empty());
    let url = JwtConfig::new(JwksSource::Url("https://idp.example/jwks".to_owned()));
    assert_eq!(url.refresh, Duration::from_secs(300));
    Ok(())
}
