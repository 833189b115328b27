//! `maestro_auth::kube::KubeReviewer` against a fake Kubernetes API server.
//!
//! No Kubernetes API server can run on the machines these tests run on, so the API is faked at
//! the HTTP level: a local axum server answers `POST /apis/authentication.k8s.io/v1/tokenreviews`
//! and `POST /apis/authorization.k8s.io/v1/subjectaccessreviews` the way the real API does (the
//! request object echoed back with a `status`, or a `Status` object with an error code), and
//! records every request body so the tests can check what the reviewer sent. The reviewer is
//! built with `from_kubeconfig` from a kubeconfig file pointing at `http://127.0.0.1:PORT`, or
//! with `from_client` / `with_timings` from a `kube::Config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maestro_auth::kube::{KubeReviewer, ReviewTimings};
use maestro_auth::policy::SourceVerb;
use maestro_auth::{AuthError, Identity};
use serde_json::{Value, json};

/// The bearer token the reviewer itself presents to the API server (from the kubeconfig).
const REVIEWER_TOKEN: &str = "reviewer-secret";
/// The audience the fake API server's tokens are valid for.
const AUDIENCE: &str = "maestro";

/// What the fake API server has received and how it behaves.
#[derive(Default)]
struct Fake {
    token_reviews: Mutex<Vec<Value>>,
    access_reviews: Mutex<Vec<Value>>,
    /// The `authorization` header of every request.
    authorizations: Mutex<Vec<String>>,
    /// Answer 500 to every request.
    failing: AtomicBool,
    /// Never answer.
    hanging: AtomicBool,
}

impl Fake {
    fn token_reviews(&self) -> Vec<Value> {
        self.token_reviews.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn access_reviews(&self) -> Vec<Value> {
        self.access_reviews.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records the caller's credential; answers 500 or hangs when told to.
    async fn misbehave(&self, headers: &HeaderMap) -> Option<Response> {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        self.authorizations.lock().unwrap_or_else(PoisonError::into_inner).push(authorization.to_owned());
        if self.hanging.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.failing.load(Ordering::SeqCst) {
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500
            });
            return Some((StatusCode::INTERNAL_SERVER_ERROR, Json(status)).into_response());
        }
        None
    }
}

/// The users the fake knows: token, user name, groups.
const USERS: &[(&str, &str, &[&str])] = &[
    ("alice-token", "alice", &["team-a", "system:authenticated"]),
    (
        "bob-token",
        "system:serviceaccount:hyperfleet:bob",
        &["system:serviceaccounts", "system:authenticated"],
    ),
];

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: the request echoed with a `status`, as
/// the API server does. Known tokens are valid for [`AUDIENCE`] (and, without audiences asked,
/// for the API server's own); `wrong-audience-token` is authenticated but answers another
/// audience (a misbehaving authenticator the reviewer must not trust).
async fn token_review(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Json(mut body): Json<Value>,
) -> Response {
    if let Some(response) = fake.misbehave(&headers).await {
        return response;
    }
    fake.token_reviews.lock().unwrap_or_else(PoisonError::into_inner).push(body.clone());
    let token = body["spec"]["token"].as_str().unwrap_or("").to_owned();
    let wanted: Vec<String> = body["spec"]["audiences"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let status = if token == "wrong-audience-token" {
        json!({"authenticated": true, "user": {"username": "carol"}, "audiences": ["elsewhere"]})
    } else {
        match USERS.iter().find(|(t, _, _)| *t == token) {
            Some((_, user, groups)) if wanted.is_empty() => json!({
                "authenticated": true,
                "user": {"username": user, "uid": "0b9c", "groups": groups},
                "audiences": ["https://kubernetes.default.svc"]
            }),
            Some((_, user, groups)) if wanted.iter().any(|a| a == AUDIENCE) => json!({
                "authenticated": true,
                "user": {"username": user, "uid": "0b9c", "groups": groups},
                "audiences": [AUDIENCE]
            }),
            Some(_) => {
                json!({"user": {}, "error": "token audiences [\"maestro\"] is invalid for the target audiences"})
            }
            None => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
        }
    };
    body["apiVersion"] = json!("authentication.k8s.io/v1");
    body["kind"] = json!("TokenReview");
    body["metadata"] = json!({"creationTimestamp": null});
    body["status"] = status;
    Json(body).into_response()
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`: allowed when the user or one of
/// the groups holds the verb on the path in [`grants`].
async fn access_review(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Json(mut body): Json<Value>,
) -> Response {
    if let Some(response) = fake.misbehave(&headers).await {
        return response;
    }
    fake.access_reviews.lock().unwrap_or_else(PoisonError::into_inner).push(body.clone());
    let spec = &body["spec"];
    let user = spec["user"].as_str().unwrap_or("");
    let groups: Vec<&str> =
        spec["groups"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let path = spec["nonResourceAttributes"]["path"].as_str().unwrap_or("");
    let verb = spec["nonResourceAttributes"]["verb"].as_str().unwrap_or("");
    let allowed = grants().iter().any(|(subject, p, v)| {
        (*subject == user || groups.contains(subject)) && *p == path && v.contains(&verb)
    });
    let status = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"maestro-sources\""})
    } else {
        json!({"allowed": false})
    };
    body["apiVersion"] = json!("authorization.k8s.io/v1");
    body["kind"] = json!("SubjectAccessReview");
    body["metadata"] = json!({"creationTimestamp": null});
    body["status"] = status;
    Json(body).into_response()
}

/// The fake's RBAC: subject (user or group), non-resource path, verbs.
fn grants() -> Vec<(&'static str, &'static str, &'static [&'static str])> {
    vec![
        ("alice", "/sources/hyperfleet", &["pub", "sub"]),
        ("system:serviceaccounts", "/sources/observer", &["sub"]),
    ]
}

/// Starts the fake API server on 127.0.0.1:0.
async fn start_fake() -> Result<(Arc<Fake>, SocketAddr)> {
    let fake = Arc::new(Fake::default());
    let app = axum::Router::new()
        .route("/apis/authentication.k8s.io/v1/tokenreviews", axum::routing::post(token_review))
        .route("/apis/authorization.k8s.io/v1/subjectaccessreviews", axum::routing::post(access_review))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((fake, addr))
}

/// Writes a kubeconfig whose current context points at `addr` with [`REVIEWER_TOKEN`].
fn write_kubeconfig(dir: &Path, addr: SocketAddr) -> Result<PathBuf> {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: fake
    cluster:
      server: http://{addr}
contexts:
  - name: fake
    context:
      cluster: fake
      user: reviewer
users:
  - name: reviewer
    user:
      token: {REVIEWER_TOKEN}
current-context: fake
"
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A fake API server and a reviewer built from a kubeconfig pointing at it.
async fn setup() -> Result<(Arc<Fake>, KubeReviewer, tempfile::TempDir)> {
    let (fake, addr) = start_fake().await?;
    let dir = tempfile::tempdir()?;
    let path = write_kubeconfig(dir.path(), addr)?;
    let reviewer = KubeReviewer::from_kubeconfig(Some(&path)).await.context("from_kubeconfig")?;
    Ok((fake, reviewer, dir))
}

/// A reviewer of `addr` built from a `kube::Config`, with `timings`.
fn reviewer_with(addr: SocketAddr, timings: ReviewTimings) -> Result<KubeReviewer> {
    let config = kube::Config::new(format!("http://{addr}").parse()?);
    Ok(KubeReviewer::with_timings(kube::Client::try_from(config)?, timings))
}

fn alice() -> Identity {
    Identity {
        user: "alice".to_owned(),
        groups: vec!["team-a".to_owned(), "system:authenticated".to_owned()],
    }
}

fn audiences() -> Vec<String> {
    vec![AUDIENCE.to_owned(), "other".to_owned()]
}

#[tokio::test]
async fn a_valid_token_gives_the_reviewed_identity() -> Result<()> {
    let (fake, reviewer, _dir) = setup().await?;
    let id = reviewer.review_token("alice-token", &audiences()).await?;
    ensure!(id == alice(), "identity {id:?}");

    let bodies = fake.token_reviews();
    ensure!(bodies.len() == 1, "requests {bodies:?}");
    let body = &bodies[0];
    ensure!(body["apiVersion"] == "authentication.k8s.io/v1" && body["kind"] == "TokenReview", "body {body}");
    ensure!(body["spec"]["token"] == "alice-token", "body {body}");
    ensure!(body["spec"]["audiences"] == json!([AUDIENCE, "other"]), "body {body}");
    // The reviewer presents its own credential from the kubeconfig, not the caller's token.
    let authorizations = fake.authorizations.lock().unwrap_or_else(PoisonError::into_inner).clone();
    ensure!(
        authorizations == [format!("Bearer {REVIEWER_TOKEN}")],
        "authorization headers {authorizations:?}"
    );
    Ok(())
}

#[tokio::test]
async fn without_audiences_none_are_sent() -> Result<()> {
    let (fake, reviewer, _dir) = setup().await?;
    let id = reviewer.review_token("bob-token", &[]).await?;
    ensure!(id.user == "system:serviceaccount:hyperfleet:bob", "identity {id:?}");
    ensure!(id.groups == ["system:serviceaccounts", "system:authenticated"], "identity {id:?}");
    let bodies = fake.token_reviews();
    ensure!(bodies.len() == 1 && bodies[0]["spec"].get("audiences").is_none(), "requests {bodies:?}");
    Ok(())
}

#[tokio::test]
async fn an_unauthenticated_token_is_invalid_credentials() -> Result<()> {
    let (fake, reviewer, _dir) = setup().await?;
    match reviewer.review_token("forged-token", &audiences()).await {
        Err(AuthError::InvalidCredentials(why)) => {
            ensure!(why.contains("invalid bearer token"), "reason {why:?}");
            ensure!(!why.contains("forged-token"), "the reason repeats the token: {why:?}");
        }
        other => bail!("expected InvalidCredentials, got {other:?}"),
    }
    // Valid token, but not for the audiences asked.
    match reviewer.review_token("alice-token", &["someone-else".to_owned()]).await {
        Err(AuthError::InvalidCredentials(why)) => ensure!(why.contains("audiences"), "reason {why:?}"),
        other => bail!("expected InvalidCredentials, got {other:?}"),
    }
    // Authenticated, but for none of the audiences asked: refused all the same.
    match reviewer.review_token("wrong-audience-token", &audiences()).await {
        Err(AuthError::InvalidCredentials(why)) => ensure!(why.contains("elsewhere"), "reason {why:?}"),
        other => bail!("expected InvalidCredentials, got {other:?}"),
    }
    ensure!(fake.token_reviews().len() == 3);
    Ok(())
}

#[tokio::test]
async fn an_empty_token_is_missing_credentials_without_a_request() -> Result<()> {
    let (fake, reviewer, _dir) = setup().await?;
    let result = reviewer.review_token("", &[]).await;
    ensure!(matches!(result, Err(AuthError::MissingCredentials)), "got {result:?}");
    ensure!(fake.token_reviews().is_empty());
    Ok(())
}

#[tokio::test]
async fn token_reviews_are_cached() -> Result<()> {
    let (fake, reviewer, _dir) = setup().await?;
    let first = reviewer.review_token("alice-token", &audiences()).await?;
    // A clone shares the cache.
    let second = reviewer.clone().review_token("alice-token", &audiences()).await?;
    ensure!(first == second);
    ensure!(fake.token_reviews().len() == 1, "the second review asked the API again");

    // Another token, or other audiences, are other reviews.
    reviewer.review_token("bob-token", &audiences()).await?;
    ensure!(fake.token_reviews().len() == 2);
    reviewer.review_token("alice-token", &[AUDIENCE.to_owned()]).await?;
    ensure!(fake.token_reviews().len() == 3);

    // Refusals are cached too.
    for _ in 0..2 {
        let result = reviewer.review_token("forged-token", &audiences()).await;
        ensure!(matches!(result, Err(AuthError::InvalidCredentials(_))), "got {result:?}");
    }
    ensure!(fake.token_reviews().len() == 4, "the refused token was asked twice");
    Ok(())
}

#[tokio::test]
async fn access_reviews_carry_the_identity_the_path_and_the_verb() -> Result<()> {
    let (fake, reviewer, _dir) = setup().await?;
    ensure!(reviewer.may_act_as_source(&alice(), "hyperfleet", SourceVerb::Pub).await?);
    ensure!(reviewer.may_act_as_source(&alice(), "hyperfleet", SourceVerb::Sub).await?);
    ensure!(!reviewer.may_act_as_source(&alice(), "observer", SourceVerb::Sub).await?);

    let bob = Identity {
        user: "system:serviceaccount:hyperfleet:bob".to_owned(),
        groups: vec!["system:serviceaccounts".to_owned()],
    };
    ensure!(reviewer.may_act_as_source(&bob, "observer", SourceVerb::Sub).await?, "bob's group may sub");
    ensure!(!reviewer.may_act_as_source(&bob, "observer", SourceVerb::Pub).await?, "bob's group may not pub");

    let bodies = fake.access_reviews();
    ensure!(bodies.len() == 5, "requests {bodies:?}");
    let body = &bodies[0];
    ensure!(
        body["apiVersion"] == "authorization.k8s.io/v1" && body["kind"] == "SubjectAccessReview",
        "body {body}"
    );
    ensure!(body["spec"]["user"] == "alice", "body {body}");
    ensure!(body["spec"]["groups"] == json!(["team-a", "system:authenticated"]), "body {body}");
    ensure!(
        body["spec"]["nonResourceAttributes"] == json!({"path": "/sources/hyperfleet", "verb": "pub"}),
        "body {body}"
    );
    ensure!(body["spec"].get("resourceAttributes").is_none(), "body {body}");
    ensure!(bodies[1]["spec"]["nonResourceAttributes"]["verb"] == "sub", "body {}", bodies[1]);
    ensure!(bodies[2]["spec"]["nonResourceAttributes"]["path"] == "/sources/observer", "body {}", bodies[2]);
    ensure!(bodies[4]["spec"]["user"] == "system:serviceaccount:hyperfleet:bob", "body {}", bodies[4]);
    Ok(())
}

#[tokio::test]
async fn an_identity_without_groups_sends_none() -> Result<()> {
    let (fake, reviewer, _dir) = setup().await?;
    let id = Identity { user: "alice".to_owned(), groups: Vec::new() };
    ensure!(reviewer.may_act_as_source(&id, "hyperfleet", SourceVerb::Pub).await?);
    let bodies = fake.access_reviews();
    ensure!(bodies.len() == 1 && bodies[0]["spec"].get("groups").is_none(), "requests {bodies:?}");
    Ok(())
}

#[tokio::test]
async fn access_reviews_are_cached() -> Result<()> {
    let (fake, reviewer, _dir) = setup().await?;
    for _ in 0..3 {
        ensure!(reviewer.may_act_as_source(&alice(), "hyperfleet", SourceVerb::Pub).await?);
    }
    ensure!(fake.access_reviews().len() == 1, "the same review asked the API again");

    // Another source, verb or identity is another review.
    ensure!(!reviewer.may_act_as_source(&alice(), "other", SourceVerb::Pub).await?);
    ensure!(fake.access_reviews().len() == 2);
    ensure!(reviewer.may_act_as_source(&alice(), "hyperfleet", SourceVerb::Sub).await?);
    ensure!(fake.access_reviews().len() == 3);
    let fewer_groups = Identity { user: "alice".to_owned(), groups: vec!["team-a".to_owned()] };
    ensure!(reviewer.may_act_as_source(&fewer_groups, "hyperfleet", SourceVerb::Pub).await?);
    ensure!(fake.access_reviews().len() == 4);

    // Denials are cached too.
    ensure!(!reviewer.may_act_as_source(&alice(), "other", SourceVerb::Pub).await?);
    ensure!(fake.access_reviews().len() == 4, "the denied review asked the API again");
    Ok(())
}

#[tokio::test]
async fn api_errors_are_errors_and_not_cached() -> Result<()> {
    let (fake, reviewer, _dir) = setup().await?;
    fake.failing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        match reviewer.review_token("alice-token", &audiences()).await {
            Err(AuthError::Unavailable(why)) => {
                ensure!(why.contains("500") && why.contains("etcdserver"), "reason {why:?}")
            }
            other => bail!("expected Unavailable, got {other:?}"),
        }
        match reviewer.may_act_as_source(&alice(), "hyperfleet", SourceVerb::Pub).await {
            Err(AuthError::Unavailable(why)) => ensure!(why.contains("500"), "reason {why:?}"),
            other => bail!("expected Unavailable, got {other:?}"),
        }
    }
    let asked = fake.authorizations.lock().unwrap_or_else(PoisonError::into_inner).len();
    ensure!(asked == 4, "{asked} requests: a failure was served from the cache");

    // Once the API recovers, the next calls ask it and succeed.
    fake.failing.store(false, Ordering::SeqCst);
    ensure!(reviewer.review_token("alice-token", &audiences()).await? == alice());
    ensure!(reviewer.may_act_as_source(&alice(), "hyperfleet", SourceVerb::Pub).await?);
    ensure!(fake.token_reviews().len() == 1 && fake.access_reviews().len() == 1);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_api_is_unavailable() -> Result<()> {
    // A port nothing listens on: bound, then closed.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?
    };
    let dir = tempfile::tempdir()?;
    let path = write_kubeconfig(dir.path(), addr)?;
    let reviewer = KubeReviewer::from_kubeconfig(Some(&path)).await?;
    let result = reviewer.review_token("alice-token", &[]).await;
    ensure!(matches!(result, Err(AuthError::Unavailable(_))), "got {result:?}");
    let result = reviewer.may_act_as_source(&alice(), "hyperfleet", SourceVerb::Sub).await;
    ensure!(matches!(result, Err(AuthError::Unavailable(_))), "got {result:?}");
    Ok(())
}

#[tokio::test]
async fn a_silent_api_times_out() -> Result<()> {
    let (fake, addr) = start_fake().await?;
    fake.hanging.store(true, Ordering::SeqCst);
    let timings = ReviewTimings { request_timeout: Duration::from_millis(300), ..ReviewTimings::default() };
    let reviewer = reviewer_with(addr, timings)?;
    match reviewer.review_token("alice-token", &[]).await {
        Err(AuthError::Unavailable(why)) => {
            ensure!(why.contains("no answer within 300 ms"), "reason {why:?}")
        }
        other => bail!("expected Unavailable, got {other:?}"),
    }
    match reviewer.may_act_as_source(&alice(), "hyperfleet", SourceVerb::Sub).await {
        Err(AuthError::Unavailable(why)) => ensure!(why.contains("no answer"), "reason {why:?}"),
        other => bail!("expected Unavailable, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn from_client_uses_the_given_client() -> Result<()> {
    let (fake, addr) = start_fake().await?;
    let config = kube::Config::new(format!("http://{addr}").parse()?);
    let reviewer = KubeReviewer::from_client(kube::Client::try_from(config)?);
    ensure!(reviewer.review_token("alice-token", &audiences()).await? == alice());
    ensure!(fake.token_reviews().len() == 1);
    ensure!(format!("{reviewer:?}").starts_with("KubeReviewer"));
    Ok(())
}

#[tokio::test]
async fn expired_answers_are_asked_again() -> Result<()> {
    let (fake, addr) = start_fake().await?;
    // Lifetimes of zero: every answer has expired by the next call.
    let timings = ReviewTimings {
        token_authenticated_ttl: Duration::ZERO,
        token_refused_ttl: Duration::ZERO,
        access_allowed_ttl: Duration::ZERO,
        access_denied_ttl: Duration::ZERO,
        ..ReviewTimings::default()
    };
    let reviewer = reviewer_with(addr, timings)?;
    for _ in 0..2 {
        reviewer.review_token("alice-token", &[]).await?;
        let _ = reviewer.review_token("forged-token", &[]).await;
        reviewer.may_act_as_source(&alice(), "hyperfleet", SourceVerb::Pub).await?;
        reviewer.may_act_as_source(&alice(), "other", SourceVerb::Pub).await?;
    }
    ensure!(fake.token_reviews().len() == 4 && fake.access_reviews().len() == 4);
    Ok(())
}

#[tokio::test]
async fn a_full_cache_drops_the_oldest_answer() -> Result<()> {
    let (fake, addr) = start_fake().await?;
    let reviewer = reviewer_with(addr, ReviewTimings { cache_capacity: 2, ..ReviewTimings::default() })?;
    for source in ["a", "b", "c"] {
        reviewer.may_act_as_source(&alice(), source, SourceVerb::Pub).await?;
    }
    ensure!(fake.access_reviews().len() == 3);
    // "c" and "b" are cached; "a", the first to expire, was dropped.
    reviewer.may_act_as_source(&alice(), "c", SourceVerb::Pub).await?;
    reviewer.may_act_as_source(&alice(), "b", SourceVerb::Pub).await?;
    ensure!(fake.access_reviews().len() == 3, "a cached answer was dropped");
    reviewer.may_act_as_source(&alice(), "a", SourceVerb::Pub).await?;
    ensure!(fake.access_reviews().len() == 4, "the oldest answer was kept");
    Ok(())
}

#[tokio::test]
async fn a_missing_kubeconfig_is_an_error_naming_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("no-such-kubeconfig");
    match KubeReviewer::from_kubeconfig(Some(&path)).await {
        Err(e @ AuthError::Read { .. }) => {
            let text = e.to_string();
            ensure!(text.contains(&path.display().to_string()), "error {text:?}");
        }
        other => bail!("expected AuthError::Read, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_kubeconfig_that_does_not_parse_is_an_error_naming_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, "clusters: [this is: not a kubeconfig")?;
    match KubeReviewer::from_kubeconfig(Some(&path)).await {
        Err(e @ AuthError::Config(_)) => {
            let text = e.to_string();
            ensure!(text.contains(&path.display().to_string()), "error {text:?}");
        }
        other => bail!("expected AuthError::Config, got {other:?}"),
    }
    // Parses, but names no cluster.
    std::fs::write(&path, "apiVersion: v1\nkind: Config\n")?;
    match KubeReviewer::from_kubeconfig(Some(&path)).await {
        Err(e @ AuthError::Config(_)) => {
            let text = e.to_string();
            ensure!(text.contains(&path.display().to_string()), "error {text:?}");
        }
        other => bail!("expected AuthError::Config, got {other:?}"),
    }
    Ok(())
}
