//! The quick fault suite (docs/reliability.md): on gRPC, Mosquitto and the embedded MQTT broker
//! (rmqtt, its default engine) with PostgreSQL and on gRPC with SQLite (not yet the Pub/Sub
//! emulator: its open failures are listed there), the
//! quick faults (kill -9 of the server, the agents and PostgreSQL, a cut of the agents' link, a
//! delay on the server's links, SQLite's disk full) while a source workload runs; every one must
//! end with lost = 0 and stale = 0. Real processes: `maestro server` (built by the same run),
//! PostgreSQL, Mosquitto, and a `maestro agent` process per consumer on a simulated cluster kept in
//! a journal file (no Kubernetes here).

use std::time::Duration;

use maestro_faults::fault::Fault;
use maestro_faults::system::{Broker, Store};
use maestro_faults::{Settings, report};

fn settings(deadline: Duration) -> Settings {
    let exe = std::env::current_exe().expect("test binary");
    let profile = exe.parent().and_then(|d| d.parent()).expect("target profile dir");
    let bin = profile.join("maestro");
    assert!(bin.is_file(), "{} not built: run the workspace tests (scripts/test.sh)", bin.display());
    Settings { bin, consumers: 3, bundles: 8, hold: Duration::from_secs(3), deadline, seed: 7 }
}

async fn quick(broker: Broker, store: Store, deadline: Duration) {
    let outcomes = maestro_faults::run_broker(&settings(deadline), broker, store, &Fault::QUICK)
        .await
        .unwrap_or_else(|e| panic!("starting the {broker} / {store} system: {e:#}"));
    eprintln!("{}", report::markdown(&outcomes));
    let applicable = Fault::QUICK.iter().filter(|f| f.applies_to(broker, store)).count();
    assert_eq!(outcomes.len(), applicable, "every quick fault of the set-up ran");
    for o in &outcomes {
        assert!(
            o.passed(),
            "{broker} / {store}, {}: lost {}, stale {}, dead letters {:?}: {:#?}",
            o.fault.name(),
            o.lost,
            o.stale,
            o.dead_letters,
            o.details
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quick_faults_lose_nothing_on_grpc() {
    quick(Broker::Grpc, Store::Postgres, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quick_faults_lose_nothing_on_mosquitto() {
    quick(Broker::Mosquitto, Store::Postgres, Duration::from_secs(120)).await;
}

/// The server's embedded MQTT broker on its default engine, rmqtt: killing the server kills the
/// broker and every session in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quick_faults_lose_nothing_on_the_embedded_rmqtt_broker() {
    quick(Broker::Rmqtt, Store::Postgres, Duration::from_secs(120)).await;
}

/// SQLite on its own 64 MiB tmpfs (the test runs as root, as CI does): kill -9 of the server and
/// the agents, a cut of the agents' link, and the disk filled until SQLite's writes fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quick_faults_lose_nothing_on_grpc_with_sqlite() {
    quick(Broker::Grpc, Store::Sqlite, Duration::from_secs(120)).await;
}
