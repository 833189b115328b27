//! A tiny run of the harness (gRPC broker, SQLite, 2 consumers × 3 bundles, 5 idle agents) so
//! it cannot rot: every scenario runs against a real `maestro server` process (the workspace's
//! `maestro` binary, built by the workspace test run) and reports sane figures, and the Markdown
//! table carries the row.
//! Figures are not asserted against targets here: performance lives in docs/benchmarks.md.

#![allow(clippy::unwrap_used)]

use maestro_bench::env::{Broker, StoreKind};
use maestro_bench::report::{Report, markdown};
use maestro_bench::{Params, run_one};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tiny_grpc_sqlite_run_measures_every_scenario() {
    let params = Params {
        consumers: 2,
        bundles_per_consumer: 3,
        concurrency: 4,
        latency_rate: 50.0,
        latency_bundles: 6,
        raw_count: 20,
        idle_agents: 5,
        resync_runs: 2,
        mqtt_logins: false,
    };
    let r = run_one(Broker::Grpc, StoreKind::Sqlite, &params, None).await.unwrap();
    assert_eq!(r.throughput.bundles, 6);
    assert!(r.throughput.per_second > 0.0);
    assert_eq!(r.latency.bundles, 6);
    assert!(r.latency.p50_ms > 0.0 && r.latency.p50_ms <= r.latency.max_ms);
    assert_eq!(r.raw_broker.count, 20);
    assert_eq!(r.raw_store.count, 20);
    // REST lists after the throughput scenario: fleet-0 holds the warm-up bundle and 3
    // throughput bundles; at the resync it also holds 3 latency bundles.
    assert_eq!(r.rest.one_consumer_bundles, 4);
    assert_eq!(r.rest.all_bundles, 8);
    assert_eq!(r.resync.bundles, 7);
    assert_eq!(r.resync.runs.len(), 2, "--resync-runs 2: both times kept");
    assert!(r.resync.runs.iter().all(|t| *t > 0.0 && *t <= r.resync.seconds), "seconds is the slowest");
    let f = &r.footprint;
    assert!(f.start_rss_mib > 0.0 && f.holding_rss_mib > 0.0 && f.idle_rss_mib > 0.0, "{f:?}");
    assert_eq!(f.holding_bundles, 8);
    assert_eq!(f.idle_agents, 7, "2 fleet agents + 5 idle ones");
    let report = Report {
        date: "now".into(),
        machine: "test".into(),
        params,
        runs: vec![r],
        failures: vec![],
        pgbench_write: None,
    };
    let md = markdown(&report);
    assert!(md.contains("| grpc | sqlite |"), "{md}");
}

/// `--mqtt-logins` on the embedded rmqtt broker: the server starts with a password file,
/// every agent logs in as its consumer, and the whole run (specs out, statuses back, resync,
/// idle agents) goes through the broker's login and ACL checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tiny_rmqtt_run_with_logins_measures_every_scenario() {
    let params = Params {
        consumers: 2,
        bundles_per_consumer: 3,
        concurrency: 4,
        latency_bundles: 6,
        raw_count: 20,
        idle_agents: 5,
        mqtt_logins: true,
        ..Params::quick()
    };
    let r = run_one(Broker::Rmqtt, StoreKind::Sqlite, &params, None).await.unwrap();
    assert_eq!(r.throughput.bundles, 6);
    assert_eq!(r.resync.bundles, 7);
    assert_eq!(r.footprint.idle_agents, 7, "2 fleet agents + 5 idle ones, all logged in");
}

/// A tiny reconnect storm (`--storm`): 4 agents of 2 bundles each, the gRPC broker's server
/// and then Mosquitto restarted; every agent subscribes again and converges, and the REST
/// prober ran during the storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tiny_storm_converges_on_grpc_and_mosquitto() {
    use maestro_bench::storm;
    let params = Params { concurrency: 4, ..Params::quick() };
    let runs = storm::run(&[Broker::Grpc, Broker::Mosquitto], StoreKind::Sqlite, None, (4, 2), &params)
        .await
        .unwrap();
    let restarted: Vec<&str> = runs.iter().map(|r| r.restarted.as_str()).collect();
    assert_eq!(restarted, ["server", "mosquitto"]);
    for r in &runs {
        assert_eq!(r.bundles, 8);
        assert!(r.probes > 0 && r.probe_failures < r.probes, "{r:?}");
        assert!(r.resubscribed_s > 0.0 && r.converged_s > 0.0, "{r:?}");
    }
    assert!(storm::markdown(&runs).contains("| mqtt/mosquitto | sqlite | 4 | 8 | mosquitto |"));
}

/// A small scale scenario (`--scale --consumers 50 --bundles 20`, 1,000 realistic bundles on
/// real PostgreSQL from `MAESTRO_TEST_DATABASE_URL`): every step runs and reports what it
/// measured, and the Markdown table carries every figure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_scale_run_measures_every_step() {
    use maestro_bench::scale::{self, ScaleParams};
    let Ok(admin) = std::env::var(maestro_store::testing::DATABASE_URL_ENV) else {
        panic!(
            "MAESTRO_TEST_DATABASE_URL is not set: run scripts/test.sh, or eval \"$(scripts/pg-start.sh)\" first"
        );
    };
    // One pgbench run (2 clients, 8 per transaction): the full grid would take 80 s.
    let grid = maestro_bench::raw::Grid { clients: &[2], batches: &[8] };
    let sp = ScaleParams { consumers: 50, per_consumer: 20, concurrency: 16, grid };
    let r = scale::run(&admin, sp).await.unwrap();
    assert_eq!(r.bundles, 1_000);
    assert_eq!(r.load.bundles, 1_000);
    assert_eq!(r.consumer_page.items, 20, "one consumer's page holds its 20 bundles");
    assert_eq!(r.consumer_page.total, 20);
    assert_eq!(r.label_search.total, 50, "app-7: bundle 7 of each consumer");
    assert_eq!(r.full_list.items, 1_000);
    assert_eq!(r.full_list.pages, 1);
    assert!(r.full_list.raw_copy_s > 0.0 && r.full_list.bytes > 1_000 * 2_000);
    assert_eq!(r.resync_one.bundles, 20);
    assert_eq!(r.status_storm.agents, 50);
    assert!(r.status_storm.converged_s > 0.0 && r.status_storm.probes > 0, "{:?}", r.status_storm);
    assert_eq!(r.restart.restarted, "server");
    assert_eq!(r.restart.bundles, 1_000);
    assert!(r.restart.converged_s > 0.0 && r.rss_mib > 0.0);
    let md = scale::markdown(&r);
    assert!(md.contains("| one consumer's resync | 20 bundles,"), "{md}");
    assert!(md.contains("| full list over REST | 1000 items in 1 pages,"), "{md}");
}
