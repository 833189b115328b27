//! `watch` and `wait --condition` expressions against the in-process fake Maestro server.
//!
//! The shared fake (`maestro-client/tests/support`) serves REST, Publish, and a Subscribe
//! that sends one fixed status event and then ends. The live-stream tests here therefore pair
//! the fake's REST API with [`LiveGrpc`], a source gRPC server defined below whose Subscribe
//! streams whatever the test sends and ends or refuses subscriptions on demand; the binary
//! test uses the shared fake as is (its stream ends at once, so `watch` keeps reconnecting
//! and resyncing).
//!
//! No fixed sleeps: every step waits for an observable condition with a deadline.
#![allow(clippy::unwrap_used)]

#[path = "../../maestro-client/tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use maestro_api::codec::StatusEventBuilder;
use maestro_api::grpc;
use maestro_api::payload::{Condition, ManifestBundleStatus};
use maestro_api::pb::cloud_event_service_server::{CloudEventService, CloudEventServiceServer};
use maestro_api::pb::{CloudEvent, PublishRequest, SubscriptionRequest};
use maestro_cli::results::{ResultStatus, StatusResult};
use maestro_cli::{Cli, ExitStatus, exit_status, run};
use maestro_client::resource_id;
use serde_json::{Value, json};
use support::FakeServer;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long any single step may take before the test fails.
const STEP: Duration = Duration::from_secs(20);

/// A `Write` whose bytes the test reads while the command runs.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    /// Everything written so far.
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The lines written so far, without their leading RFC 3339 timestamp if any.
    fn lines(&self) -> Vec<String> {
        self.text().lines().map(|l| unstamped(l).to_owned()).collect()
    }
}

/// `line` without its leading RFC 3339 timestamp, if it has one.
fn unstamped(line: &str) -> &str {
    match line.split_once(' ') {
        Some((time, rest)) if chrono::DateTime::parse_from_rfc3339(time).is_ok() => rest,
        _ => line,
    }
}

/// Waits until `cond` holds, failing the test after [`STEP`] with `what` and `context()`.
async fn until(what: &str, mut cond: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + STEP;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}; output:\n{}", context());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the [`LiveGrpc`] server holds: one sender per open subscription.
#[derive(Default)]
struct Live {
    /// Senders of the open subscriptions.
    subs: Vec<mpsc::UnboundedSender<Result<CloudEvent, tonic::Status>>>,
    /// Subscriptions opened so far (refused ones included).
    opened: usize,
    /// Refuse subscriptions with this code while set.
    refuse: Option<tonic::Code>,
}

/// A source gRPC server whose Subscribe streams what the test sends.
#[derive(Clone)]
struct LiveGrpc {
    /// The shared state.
    state: Arc<Mutex<Live>>,
    /// `127.0.0.1:<port>`.
    endpoint: String,
}

#[tonic::async_trait]
impl CloudEventService for LiveGrpc {
    async fn publish(&self, _: tonic::Request<PublishRequest>) -> Result<tonic::Response<()>, tonic::Status> {
        Err(tonic::Status::unimplemented("publish to the support fake"))
    }

    type SubscribeStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<CloudEvent, tonic::Status>> + Send + 'static>>;

    async fn subscribe(
        &self,
        _: tonic::Request<SubscriptionRequest>,
    ) -> Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
        let mut st = self.state.lock().unwrap();
        st.opened += 1;
        if let Some(code) = st.refuse {
            return Err(tonic::Status::new(code, "refused by the test"));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        st.subs.push(tx);
        Ok(tonic::Response::new(Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))))
    }
}

impl LiveGrpc {
    /// Serves on 127.0.0.1:0.
    async fn start() -> LiveGrpc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let svc = LiveGrpc { state: Arc::default(), endpoint };
        let server = CloudEventServiceServer::new(svc.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(server)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap()
        });
        svc
    }

    /// Subscriptions opened so far.
    fn opened(&self) -> usize {
        self.state.lock().unwrap().opened
    }

    /// Number of open subscriptions.
    fn open(&self) -> usize {
        self.state.lock().unwrap().subs.len()
    }

    /// Sends a status event to every open subscription.
    fn send(&self, event: &CloudEvent) {
        for tx in &self.state.lock().unwrap().subs {
            let _ = tx.send(Ok(event.clone()));
        }
    }

    /// Ends every open subscription (the client sees the stream end).
    fn end_streams(&self) {
        self.state.lock().unwrap().subs.clear();
    }
}

/// The status event of work `id` on `consumer` at `version` with work conditions `conds`.
fn status_event(id: &str, consumer: &str, version: i64, conds: &[(&str, &str)]) -> CloudEvent {
    let status = ManifestBundleStatus {
        conditions: conds
            .iter()
            .map(|(t, s)| Condition {
                kind: (*t).into(),
                status: (*s).into(),
                reason: "R".into(),
                message: "m".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let event = StatusEventBuilder {
        source: "maestro",
        resource_id: id,
        resource_version: version,
        cluster_name: consumer,
        original_source: "maestro-cli",
        sequence_id: "1",
        status_hash: "h",
        metadata: None,
        action: maestro_api::types::Action::Update,
    }
    .build(&status);
    grpc::to_proto(&event)
}

/// Runs the CLI in-process with REST at `http` and gRPC at `grpc`, writing to `out`.
async fn cli_to(http: &str, grpc: &str, args: &[&str], out: &mut Buf) -> anyhow::Result<()> {
    let mut argv = vec!["maestro-cli", "--http-endpoint", http, "--grpc-endpoint", grpc];
    argv.extend_from_slice(args);
    run(Cli::try_parse_from(argv)?, out).await
}

/// Applies work `name` on `consumer` with `manifests` through the fake; returns its id.
async fn apply(fake: &FakeServer, consumer: &str, name: &str, manifests: &str) -> String {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(manifests.as_bytes()).unwrap();
    let path = f.path().to_str().unwrap();
    cli_to(&fake.http, &fake.grpc, &["apply", "-f", path, "-c", consumer, "-n", name], &mut Buf::default())
        .await
        .unwrap();
    resource_id("maestro-cli", consumer, name)
}

const CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}\n";

const WITH_JOB: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}\n---\n\
apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate, namespace: default}\n";

/// One work: the REST state first, then stream updates as they come (repeats and other works'
/// updates are not printed), and a resync after each reconnect that prints what changed over
/// REST meanwhile, including the work's disappearance.
#[tokio::test]
async fn watch_one_work_follows_the_stream_and_resyncs_on_reconnect() {
    let fake = FakeServer::start().await;
    let live = LiveGrpc::start().await;
    let id = apply(&fake, "c1", "web", CONFIGMAP).await;
    let other = apply(&fake, "c1", "api", CONFIGMAP).await;
    let mut out = Buf::default();
    let buf = out.clone();
    let watch = cli_to(&fake.http, &live.endpoint, &["watch", "-n", "web", "-c", "c1"], &mut out);
    let has = |needle: &'static str| {
        let buf = buf.clone();
        move || buf.lines().iter().any(|l| l == needle)
    };
    let text = || buf.text();
    let driver = async {
        until("the resync", has("c1/web version 1: no status reported"), text).await;
        until("a subscription", || live.open() == 1, text).await;
        let applied = status_event(&id, "c1", 1, &[("Applied", "True")]);
        live.send(&status_event(&other, "c1", 1, &[("Applied", "False")]));
        live.send(&applied);
        live.send(&applied);
        live.send(&status_event(&id, "c1", 1, &[("Applied", "True"), ("Available", "False")]));
        until(
            "the stream updates",
            has("c1/web version 1 (observed 1): Applied=True, Available=False [R: m]"),
            text,
        )
        .await;
        fake.set_status(&id, 1, &[("Applied", "True"), ("Available", "True")]);
        live.end_streams();
        until(
            "the resync after reconnecting",
            has("c1/web version 1 (observed 1): Applied=True, Available=True"),
            text,
        )
        .await;
        until("a new subscription", || live.open() == 1 && live.opened() == 2, text).await;
        fake.remove(&id);
        live.end_streams();
        until("the deletion", has("c1/web deleted"), text).await;
    };
    tokio::select! {
        r = watch => panic!("watch ended: {r:?}"),
        () = driver => {}
    }
    assert_eq!(
        buf.lines(),
        [
            "c1/web version 1: no status reported",
            "c1/web version 1 (observed 1): Applied=True",
            "c1/web version 1 (observed 1): Applied=True, Available=False [R: m]",
            "c1/web version 1 (observed 1): Applied=True, Available=True",
            "c1/web deleted",
        ]
    );
    assert!(buf.text().lines().all(|l| unstamped(l) != l), "every line is stamped:\n{}", buf.text());
}

/// `--consumer` with `-o json`: one JSON object per line; the consumer's works only, from the
/// resync (`via: resync`) and the stream (`via: stream`); a work REST does not know is shown
/// under its resource id.
#[tokio::test]
async fn watch_a_consumer_as_json_lines() {
    let fake = FakeServer::start().await;
    let live = LiveGrpc::start().await;
    let web = apply(&fake, "c1", "web", CONFIGMAP).await;
    let db = apply(&fake, "c2", "db", CONFIGMAP).await;
    fake.set_status(&web, 1, &[("Applied", "True")]);
    let mut out = Buf::default();
    let buf = out.clone();
    let watch = cli_to(&fake.http, &live.endpoint, &["-o", "json", "watch", "-c", "c1"], &mut out);
    let objects = || -> Vec<Value> { buf.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect() };
    let text = || buf.text();
    let driver = async {
        until("the resync", || objects().len() == 1, text).await;
        until("a subscription", || live.open() == 1, text).await;
        live.send(&status_event(&db, "c2", 1, &[("Applied", "True")]));
        live.send(&status_event("gone-id", "c1", 3, &[("Deleted", "True")]));
        live.send(&status_event(&web, "c1", 2, &[("Applied", "True"), ("Available", "True")]));
        until("the stream updates", || objects().len() == 3, text).await;
    };
    tokio::select! {
        r = watch => panic!("watch ended: {r:?}"),
        () = driver => {}
    }
    let o = objects();
    assert_eq!(
        (&o[0]["via"], &o[0]["name"], &o[0]["consumer"], &o[0]["version"], &o[0]["observedVersion"]),
        (&json!("resync"), &json!("web"), &json!("c1"), &json!(1), &json!(1))
    );
    assert_eq!(
        (&o[0]["id"], &o[0]["deleted"], &o[0]["conditions"][0]["type"]),
        (&json!(web), &json!(false), &json!("Applied"))
    );
    assert_eq!(
        (&o[1]["via"], &o[1]["name"], &o[1]["deleted"]),
        (&json!("stream"), &json!("gone-id"), &json!(true))
    );
    assert_eq!((&o[2]["via"], &o[2]["name"], &o[2]["version"]), (&json!("stream"), &json!("web"), &json!(2)));
    assert_eq!(o[2]["conditions"][1]["type"], "Available");
    assert!(o.iter().all(|v| v["consumer"] == "c1" && v["time"].is_string()), "{o:?}");
}

/// While the subscription is refused as unavailable, the REST resync on every retry still
/// shows changes; once a subscription opens, stream updates follow.
#[tokio::test]
async fn watch_falls_back_to_rest_while_subscribe_is_unavailable() {
    let fake = FakeServer::start().await;
    let live = LiveGrpc::start().await;
    live.state.lock().unwrap().refuse = Some(tonic::Code::Unavailable);
    let id = apply(&fake, "c1", "web", CONFIGMAP).await;
    let mut out = Buf::default();
    let buf = out.clone();
    let watch = cli_to(&fake.http, &live.endpoint, &["watch"], &mut out);
    let text = || buf.text();
    let last_is = |needle: &'static str| {
        let buf = buf.clone();
        move || buf.lines().last().is_some_and(|l| l == needle)
    };
    let driver = async {
        until("the first resync", last_is("c1/web version 1: no status reported"), text).await;
        fake.set_status(&id, 1, &[("Applied", "True")]);
        until("a resync on retry", last_is("c1/web version 1 (observed 1): Applied=True"), text).await;
        assert!(live.opened() >= 2, "retried subscribing");
        live.state.lock().unwrap().refuse = None;
        until("a subscription", || live.open() == 1, text).await;
        live.send(&status_event(&id, "c1", 1, &[("Applied", "True"), ("Available", "True")]));
        until(
            "the stream update",
            last_is("c1/web version 1 (observed 1): Applied=True, Available=True"),
            text,
        )
        .await;
    };
    tokio::select! {
        r = watch => panic!("watch ended: {r:?}"),
        () = driver => {}
    }
}

/// A subscription refused for good (permission denied) at start is an error, not a retry.
#[tokio::test]
async fn watch_fails_when_subscribing_is_refused() {
    let fake = FakeServer::start().await;
    let live = LiveGrpc::start().await;
    live.state.lock().unwrap().refuse = Some(tonic::Code::PermissionDenied);
    let err = cli_to(&fake.http, &live.endpoint, &["watch"], &mut Buf::default()).await.unwrap_err();
    assert!(format!("{err:#}").starts_with("subscribing to status updates"), "{err:#}");
    assert_eq!(live.opened(), 1);
}

/// The real binary against the shared fake, whose stream ends at once: `--timeout` ends the
/// watch with exit 0, every reconnect is announced on stderr, and the work's unchanged state
/// is printed once however often it is resynced.
#[tokio::test]
async fn watch_binary_times_out_with_success_and_announces_reconnects() {
    let fake = FakeServer::start().await;
    apply(&fake, "c1", "web", CONFIGMAP).await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_maestro-cli"));
    cmd.args([
        "--http-endpoint",
        &fake.http,
        "--grpc-endpoint",
        &fake.grpc,
        "watch",
        "-c",
        "c1",
        "-n",
        "web",
    ])
    .args(["--timeout", "2s"]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MAESTRO_")) {
        cmd.env_remove(k);
    }
    let out = tokio::time::timeout(STEP, cmd.output()).await.unwrap().unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().map(unstamped).collect();
    assert_eq!(lines, ["c1/web version 1: no status reported"], "{stdout}");
    let reconnects = stderr.matches("watch: status stream ended; reconnecting in").count();
    assert!(reconnects >= 2, "{stderr}");
    // 200 ms doubling, each stretched by a jitter factor in [1, 2).
    let delays: Vec<Duration> = stderr
        .lines()
        .filter_map(|l| {
            l.split_once("reconnecting in ")?.1.split_once(" (")?.0.parse::<humantime::Duration>().ok()
        })
        .map(Into::into)
        .collect();
    let ms = Duration::from_millis;
    assert!(delays.len() >= 2 && (ms(200)..ms(400)).contains(&delays[0]), "{stderr}");
    assert!((ms(400)..ms(800)).contains(&delays[1]), "{stderr}");
}

/// Sets work `id`'s status at `observed` with work conditions `work` and per-manifest
/// conditions `job` for the Job (ordinal 1; the ConfigMap at ordinal 0 is Applied).
fn set_job_status(
    fake: &FakeServer,
    id: &str,
    observed: i64,
    work: &[(&str, &str)],
    job: &[(&str, &str, &str)],
) {
    let cond = |t: &str, s: &str, r: &str| json!({"type": t, "status": s, "lastTransitionTime": "2024-03-01T10:00:00Z", "reason": r, "message": "m"});
    let status = json!({"ObservedVersion": observed, "SequenceID": "1",
        "conditions": work.iter().map(|(t, s)| cond(t, s, "R")).collect::<Vec<_>>(),
        "resourceStatus": [
            {"resourceMeta": {"ordinal": 0, "version": "v1", "kind": "ConfigMap", "name": "a", "namespace": "default"},
             "conditions": [cond("Applied", "True", "R")]},
            {"resourceMeta": {"ordinal": 1, "group": "batch", "version": "v1", "kind": "Job", "name": "migrate", "namespace": "default"},
             "conditions": job.iter().map(|(t, s, r)| cond(t, s, r)).collect::<Vec<_>>()}]});
    fake.state.lock().unwrap().bundles.get_mut(id).unwrap()["status"] = status;
}

/// `wait --for "Applied AND Job:Complete" --watch`: every state change on stdout with the
/// Job's condition and what is awaited, then the result; the results file says Applied.
#[tokio::test]
async fn wait_for_an_expression_with_watch() {
    let fake = FakeServer::start().await;
    let id = apply(&fake, "c1", "web", WITH_JOB).await;
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("status.json");
    let mut out = Buf::default();
    let buf = out.clone();
    let args = ["wait", "-n", "web", "-c", "c1", "--for", "applied and job:Complete", "--watch"];
    let flags = ["--timeout", "20s", "--poll-interval", "10ms", "--results-path", results.to_str().unwrap()];
    let argv = [&args[..], &flags].concat();
    let wait = cli_to(&fake.http, &fake.grpc, &argv, &mut out);
    let has = |needle: &'static str| {
        let buf = buf.clone();
        move || buf.lines().iter().any(|l| l == needle)
    };
    let text = || buf.text();
    let driver = async {
        until(
            "the first state",
            has("waiting for Job default/migrate: Complete not yet reported for version 1"),
            text,
        )
        .await;
        set_job_status(&fake, &id, 1, &[("Applied", "True")], &[("Complete", "False", "Running")]);
        until(
            "the Job running",
            has("waiting for Job default/migrate: Complete not yet True (Complete=False [Running: m])"),
            text,
        )
        .await;
        set_job_status(&fake, &id, 1, &[("Applied", "True")], &[("Complete", "True", "Done")]);
    };
    let (result, ()) = tokio::join!(wait, driver);
    result.unwrap();
    assert_eq!(
        buf.lines(),
        [
            "c1/web version 1: no status reported; Job default/migrate Complete=-",
            "waiting for Job default/migrate: Complete not yet reported for version 1",
            "c1/web version 1: Applied=True (observed version 1); Job default/migrate Complete=False",
            "waiting for Job default/migrate: Complete not yet True (Complete=False [Running: m])",
            "c1/web version 1: Applied=True (observed version 1); Job default/migrate Complete=True",
            "resource bundle web on consumer c1 meets Applied AND job:Complete",
        ]
    );
    let r: StatusResult = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    assert_eq!((r.status, r.resources.len()), (ResultStatus::Applied, 2), "{r:?}");
    assert_eq!(r.resources[1].conditions[0].kind, "Complete");
}

/// A failed Job ends `wait --for Job:Complete` with exit 1 naming the Job; without `--watch`
/// nothing but the result goes to stdout.
#[tokio::test]
async fn wait_fails_when_the_job_fails() {
    let fake = FakeServer::start().await;
    let id = apply(&fake, "c1", "web", WITH_JOB).await;
    set_job_status(&fake, &id, 1, &[("Applied", "True")], &[("Failed", "True", "BackoffLimitExceeded")]);
    let mut out = Buf::default();
    let args =
        ["wait", "-n", "web", "-c", "c1", "--condition", "Job/default/migrate:Complete", "--timeout", "20s"];
    let err = cli_to(&fake.http, &fake.grpc, &args, &mut out).await.unwrap_err();
    assert_eq!(exit_status(&err), ExitStatus::Failed);
    assert_eq!(
        format!("{err:#}"),
        "resource bundle \"web\" on consumer \"c1\" cannot reach Job/default/migrate:Complete: \
         Job default/migrate reports Failed=True [BackoffLimitExceeded: m]"
    );
    assert_eq!(out.text(), "");
}

/// A bad expression is a usage error (exit 2) naming the token and its position; a timeout
/// names what is still awaited.
#[tokio::test]
async fn wait_expression_errors_and_timeouts() {
    let fake = FakeServer::start().await;
    let id = apply(&fake, "c1", "web", WITH_JOB).await;
    let run_wait = |cond: &'static str| {
        let (http, grpc) = (fake.http.clone(), fake.grpc.clone());
        async move {
            let args = [
                "wait",
                "-n",
                "web",
                "-c",
                "c1",
                "--for",
                cond,
                "--timeout",
                "200ms",
                "--poll-interval",
                "20ms",
            ];
            cli_to(&http, &grpc, &args, &mut Buf::default()).await.unwrap_err()
        }
    };
    let err = run_wait("Applied AND Ready").await;
    assert_eq!(exit_status(&err), ExitStatus::Usage);
    assert!(format!("{err:#}").contains("unknown condition \"Ready\" at position 13"), "{err:#}");
    let err = run_wait("Applied OR Deleted").await;
    assert_eq!(exit_status(&err), ExitStatus::Usage);
    set_job_status(&fake, &id, 1, &[("Applied", "True")], &[]);
    let err = run_wait("Applied AND Job:Complete").await;
    assert_eq!(exit_status(&err), ExitStatus::Timeout);
    let msg = format!("{err:#}");
    assert!(msg.contains("to reach Applied AND Job:Complete"), "{msg}");
    assert!(msg.ends_with("waiting for Job default/migrate: Complete not yet True)"), "{msg}");
}
