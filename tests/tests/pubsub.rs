//! The Pub/Sub broker end to end on the official emulator (started by each test on a free
//! port; the launcher is preinstalled, scripts/test.sh fails clearly without it): the main job
//! with PostgreSQL, an emulator restart (it loses every topic and subscription) with 100
//! bundles over 10 consumers in flight, two consumers sharing the topics (the emulator ignores
//! subscription filters, so each agent's own clustername check is what keeps bundles apart),
//! an agent restarted again and again resyncing in a bounded time (issue 24), and
//! `maestro pubsub init`. Clusters are simulated.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use maestro::broker::BrokerKind;
use maestro::cli::{PubSubArgs, PubSubInitArgs};
use maestro::stack::{LocalStack, StackConfig};
use maestro_api::payload::ManifestBundle;
use maestro_broker_pubsub::emulator::Emulator;
use maestro_broker_pubsub::{Admin, PubSubConfig, cluster_filter, source_filter};
use maestro_client::ManifestWorkInput;
use maestro_tests::broker_restart::restart_with_bundles_in_flight;
use maestro_tests::{Db, db_url, logging, main_job::main_job, wait_for, wait_for_within};
use serde_json::json;

const PROJECT: &str = "maestro-local";

fn pubsub_stack(url: &str, emulator: &Emulator) -> StackConfig {
    let mut config = StackConfig::new(url);
    config.broker = BrokerKind::Pubsub;
    config.pubsub_endpoint = Some(emulator.endpoint());
    config.pubsub_project = PROJECT.into();
    config
}

async fn admin(emulator: &Emulator) -> Admin {
    Admin::new(&PubSubConfig::maestro_defaults(PROJECT, Some(&emulator.endpoint()))).await.unwrap()
}

fn subscription(name: &str) -> String {
    format!("projects/{PROJECT}/subscriptions/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn main_job_on_postgres_over_the_emulator() {
    logging();
    let emulator = Emulator::start().await;
    let (_guard, url) = db_url(Db::Postgres).await;
    main_job(pubsub_stack(&url, &emulator)).await;
}

/// The emulator is killed and restarted with 100 bundles over 10 consumers in flight (see
/// [`maestro_tests::broker_restart`]): it comes back empty, and the clients recreate the
/// topics and subscriptions, resubscribe and resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emulator_restart_with_bundles_in_flight_loses_nothing() {
    logging();
    let mut emulator = Emulator::start().await;
    let (_guard, url) = db_url(Db::Postgres).await;
    let config = pubsub_stack(&url, &emulator);
    restart_with_bundles_in_flight(config, &mut emulator).await;
}

fn shared_work(owner: &str) -> ManifestWorkInput {
    let manifest = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "shared", "namespace": "default"},
        "data": {"owner": owner}
    });
    ManifestWorkInput {
        name: "shared".into(),
        bundle: ManifestBundle { manifests: vec![manifest], ..Default::default() },
        ..Default::default()
    }
}

/// Two consumers on one topic: the server creates each consumer's subscription (with its
/// clustername filter) at registration; the emulator still delivers every spec to both
/// subscriptions, and each agent applies only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_consumers_each_apply_only_their_own_bundles() {
    logging();
    let emulator = Emulator::start().await;
    let (_guard, url) = db_url(Db::Sqlite).await;
    let mut stack = LocalStack::start(pubsub_stack(&url, &emulator)).await.unwrap();
    let admin = admin(&emulator).await;
    for c in ["east", "west"] {
        stack.rest.create_consumer(c, &Default::default()).await.unwrap();
        let filter = admin.subscription_filter(&subscription(&format!("sourceevents-{c}"))).await.unwrap();
        assert_eq!(filter, Some(cluster_filter(c)), "registering {c} created its filtered subscription");
        stack.start_agent(c).await.unwrap();
    }
    let mut ids = Vec::new();
    for c in ["east", "west"] {
        ids.push(stack.source.apply(c, &shared_work(c)).await.unwrap().resource_id);
    }
    for id in &ids {
        wait_for(&format!("{id} Applied"), || async {
            stack.rest.get_bundle(id).await.ok()?.is_true_at_current_version("Applied").then_some(())
        })
        .await;
    }
    for c in ["east", "west"] {
        let objects = stack.cluster(c).objects();
        assert_eq!(objects.len(), 1, "{c} holds one object: {objects:?}");
        assert_eq!(objects[0]["data"]["owner"], c, "{c} applied only its own bundle");
    }
    stack.shutdown().await;
}

/// Bundles of the restart test's consumer.
const RESYNC_BUNDLES: usize = 300;
/// Agent restarts in the restart test.
const RESTARTS: usize = 5;
/// The bound on each resync of the restart test (debug build, shared machine). Before the own
/// StreamingPull client (`maestro_broker_pubsub`'s `pull` module) a restarted agent's resync
/// took 10–60 s and could stall: the emulator kept routing messages to the closed agent's
/// reset streams until their 10 s ack deadline passed, again and again.
const RESYNC_BOUND: std::time::Duration = std::time::Duration::from_secs(7);

/// An agent is restarted on an empty cluster again and again (as the benchmark's reconnect
/// resync does); each time its spec resync brings back every one of the consumer's
/// [`RESYNC_BUNDLES`] bundles within [`RESYNC_BOUND`].
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_agent_resyncs_in_bounded_time_every_time() {
    use futures::StreamExt;
    logging();
    let emulator = Emulator::start().await;
    let (_guard, url) = db_url(Db::Sqlite).await;
    let mut stack = LocalStack::start(pubsub_stack(&url, &emulator)).await.unwrap();
    stack.rest.create_consumer("c1", &Default::default()).await.unwrap();
    stack.start_agent("c1").await.unwrap();
    let source = &stack.source;
    futures::stream::iter(0..RESYNC_BUNDLES)
        .map(|i| async move {
            let manifest = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}"), "namespace": "default"},
                "data": {"i": i.to_string()}
            });
            let work = ManifestWorkInput {
                name: format!("work-{i}"),
                bundle: ManifestBundle { manifests: vec![manifest], ..Default::default() },
                ..Default::default()
            };
            source.apply("c1", &work).await.unwrap();
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let cluster = stack.cluster("c1");
    wait_for("every bundle applied", || async { (cluster.len() >= RESYNC_BUNDLES).then_some(()) }).await;
    let mut times = Vec::new();
    for run in 1..=RESTARTS {
        stack.stop_agent("c1").await;
        stack.reset_cluster("c1");
        let cluster = stack.cluster("c1");
        let started = std::time::Instant::now();
        stack.start_agent("c1").await.unwrap();
        let what = format!("resync {run} of {RESTARTS}: {RESYNC_BUNDLES} bundles applied again");
        wait_for_within(&what, RESYNC_BOUND, || async { (cluster.len() >= RESYNC_BUNDLES).then_some(()) })
            .await;
        times.push(started.elapsed());
    }
    eprintln!("resyncs of {RESYNC_BUNDLES} bundles after each of {RESTARTS} agent restarts: {times:?}");
    stack.shutdown().await;
}

/// `maestro pubsub init` creates the topics and the source's and consumers' subscriptions with
/// Maestro's filters, and running it again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_init_creates_the_layout_idempotently() {
    logging();
    let emulator = Emulator::start().await;
    let args = PubSubInitArgs {
        broker_config: None,
        broker_url: Some(emulator.endpoint()),
        pubsub: PubSubArgs { pubsub_project: Some(PROJECT.into()) },
        source_id: "maestro".into(),
        consumers: vec!["c1".into(), "c2".into()],
    };
    maestro::pubsub::init(args.clone()).await.unwrap();
    maestro::pubsub::init(args.clone()).await.expect("a second run succeeds");
    let admin = admin(&emulator).await;
    for t in ["sourceevents", "sourcebroadcast", "agentevents", "agentbroadcast"] {
        assert!(admin.topic_exists(&format!("projects/{PROJECT}/topics/{t}")).await.unwrap(), "{t}");
    }
    let filter = |name: &str| {
        let (admin, name) = (admin.clone(), subscription(name));
        async move { admin.subscription_filter(&name).await }
    };
    assert_eq!(filter("agentevents-maestro").await.unwrap(), Some(source_filter("maestro")));
    assert_eq!(filter("agentbroadcast-maestro").await.unwrap(), Some(String::new()));
    for c in ["c1", "c2"] {
        assert_eq!(filter(&format!("sourceevents-{c}")).await.unwrap(), Some(cluster_filter(c)));
        assert_eq!(filter(&format!("sourcebroadcast-{c}")).await.unwrap(), Some(String::new()));
    }
    assert_eq!(filter("sourceevents-c3").await.unwrap(), None);
    let bad = PubSubInitArgs { consumers: vec!["Bad_Name".into()], ..args };
    let err = maestro::pubsub::init(bad).await.unwrap_err().to_string();
    assert!(err.contains("Bad_Name"), "{err}");
}

/// `maestro pubsub init --broker-config` with a Go Maestro server config, which names only the
/// source side (`topics.sourceEvents/sourceBroadcast`, `subscriptions.agentEvents/
/// agentBroadcast`): the agent topics take Maestro's names and the source's subscriptions the
/// configured ones. A run that fails part way (a name the service refuses) deletes what it
/// created and leaves nothing half made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_init_takes_a_go_server_config_and_never_leaves_a_partial_layout() {
    logging();
    let emulator = Emulator::start().await;
    let project = "go-layout";
    let dir = tempfile::tempdir().unwrap();
    let go_config = |broadcast_sub: &str| {
        format!(
            "projectID: {project}\nendpoint: {}\ndisableTLS: true\ntopics:\n  \
             sourceEvents: projects/{project}/topics/sourceevents\n  \
             sourceBroadcast: projects/{project}/topics/sourcebroadcast\nsubscriptions:\n  \
             agentEvents: projects/{project}/subscriptions/agentevents-maestro\n  \
             agentBroadcast: projects/{project}/subscriptions/{broadcast_sub}\n",
            emulator.endpoint()
        )
    };
    let init = |file: &str| PubSubInitArgs {
        broker_config: Some(dir.path().join(file).to_string_lossy().into_owned()),
        broker_url: None,
        pubsub: PubSubArgs { pubsub_project: None },
        source_id: "maestro".into(),
        consumers: vec!["c1".into()],
    };
    let mut cfg = PubSubConfig::maestro_defaults(project, Some(&emulator.endpoint()));
    cfg.auto_create = Some(false);
    let admin = Admin::new(&cfg).await.unwrap();
    let topic = |t: &str| format!("projects/{project}/topics/{t}");
    let sub = |s: &str| format!("projects/{project}/subscriptions/{s}");

    // A subscription id the service refuses (ids must start with a letter): nothing is left.
    std::fs::write(dir.path().join("bad.yaml"), go_config("1-not-a-valid-id")).unwrap();
    let err = maestro::pubsub::init(init("bad.yaml")).await.expect_err("refused");
    assert!(format!("{err:#}").contains("1-not-a-valid-id"), "{err:#}");
    for t in ["sourceevents", "sourcebroadcast", "agentevents", "agentbroadcast"] {
        assert!(!admin.topic_exists(&topic(t)).await.unwrap(), "{t} was rolled back");
    }
    assert_eq!(admin.subscription_filter(&sub("agentevents-maestro")).await.unwrap(), None);

    std::fs::write(dir.path().join("go.yaml"), go_config("agentbroadcast-maestro")).unwrap();
    maestro::pubsub::init(init("go.yaml")).await.expect("a Go server config");
    for t in ["sourceevents", "sourcebroadcast", "agentevents", "agentbroadcast"] {
        assert!(admin.topic_exists(&topic(t)).await.unwrap(), "{t}");
    }
    assert_eq!(
        admin.subscription_filter(&sub("agentevents-maestro")).await.unwrap(),
        Some(source_filter("maestro"))
    );
    assert_eq!(admin.subscription_filter(&sub("agentbroadcast-maestro")).await.unwrap(), Some(String::new()));
    assert_eq!(admin.subscription_filter(&sub("sourceevents-c1")).await.unwrap(), Some(cluster_filter("c1")));
}

/// A server whose Pub/Sub subscriptions do not exist (autoCreate off, nothing created) says so
/// at ERROR and is not ready (`/readyz` 503, "the broker is not subscribed yet"); once `maestro
/// pubsub init` created them, it subscribes and becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_its_subscriptions_is_not_ready_until_they_exist() {
    logging();
    let emulator = Emulator::start().await;
    let project = "missing-subs";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.yaml");
    std::fs::write(
        &config,
        format!(
            "projectID: {project}\nendpoint: {}\ndisableTLS: true\nautoCreate: false\nhealthCheckInterval: 1s\n\
             topics:\n  sourceEvents: projects/{project}/topics/sourceevents\n  \
             sourceBroadcast: projects/{project}/topics/sourcebroadcast\nsubscriptions:\n  \
             agentEvents: projects/{project}/subscriptions/agentevents-maestro\n  \
             agentBroadcast: projects/{project}/subscriptions/agentbroadcast-maestro\n",
            emulator.endpoint()
        ),
    )
    .unwrap();
    let free = || format!("127.0.0.1:{}", maestro_broker_mqtt::testing::free_port());
    let (health, log) = (free(), dir.path().join("server.log"));
    let db = format!("sqlite://{}", dir.path().join("m.db").display());
    let _child = KillOnDrop(
        std::process::Command::new(maestro_tests::maestro_binary())
            .args(["server", "--db", &db, "--broker", "pubsub", "--broker-config", config.to_str().unwrap()])
            .args([
                "--http-addr",
                &free(),
                "--grpc-addr",
                &free(),
                "--metrics-addr",
                &free(),
                "--health-addr",
                &health,
            ])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("maestro server starts"),
    );
    let readyz = format!("http://{health}/readyz");
    let status = || async { maestro_tests::http_get(&readyz).await.ok().map(|r| r.status().as_u16()) };
    wait_for("the ERROR naming the missing subscription", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.contains("ERROR") && text.contains("does not exist")).then_some(())
    })
    .await;
    let body = maestro_tests::http_get(&readyz).await.unwrap().text().await.unwrap();
    assert_eq!(status().await, Some(503), "{body}");
    assert!(body.contains("the broker is not subscribed yet"), "{body}");
    let init = PubSubInitArgs {
        broker_config: Some(config.to_string_lossy().into_owned()),
        broker_url: None,
        pubsub: PubSubArgs { pubsub_project: None },
        source_id: "maestro".into(),
        consumers: vec![],
    };
    maestro::pubsub::init(init).await.expect("init");
    wait_for("ready once the subscriptions exist", || async { (status().await == Some(200)).then_some(()) })
        .await;
}

/// A child process killed when dropped (also when the test fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
