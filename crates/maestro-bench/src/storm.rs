//! `maestro-bench --storm N`: a reconnect storm (docs/benchmarks.md, "Reconnect storm"). For
//! each broker, on a fresh database: N agents, each holding `bundles` bundles, all Applied;
//! then the broker restarts — Mosquitto is killed (SIGKILL) and started again on its port; with
//! the gRPC broker (and the embedded rumqttd) the broker is the server, which is killed and
//! started again on its ports — so every agent reconnects at once and sends its spec resync
//! request. From the moment the broker listens again:
//!
//! - a REST prober asks for one consumer's first page of 100 bundles, one request after the
//!   other (each consumer in turn), and records each request's time;
//! - one new bundle per consumer is published, and the storm has converged when every one is
//!   Applied (so every agent is connected again and its status reaches the source);
//! - the agents' transports count their subscriptions: the time until every agent has
//!   subscribed again is reported too.
//!
//! The server paces the spec resync answers (at most 16 consumers' answers at once, at most one
//! per consumer per 5 s, docs/security.md "Limits").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use maestro_client::{BundleFilter, RestClient, SourceClient};
use serde::Serialize;

use crate::env::{Broker, BrokerProcess, Database, StoreKind};
use crate::fleet::{Fleet, SOURCE_ID, ServerProcess};
use crate::load::{self, SCENARIO_DEADLINE};
use crate::{Params, bar};

/// Longest a probe may take before it counts as failed, s.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two probes.
const PROBE_PAUSE: Duration = Duration::from_millis(20);

/// One broker's storm.
#[derive(Debug, Clone, Serialize)]
pub struct StormRun {
    /// The broker.
    pub broker: String,
    /// The store.
    pub store: String,
    /// Agents (one consumer each).
    pub agents: usize,
    /// Bundles held before the storm (`agents` × bundles per consumer).
    pub bundles: usize,
    /// What restarted: `mosquitto` or `server`.
    pub restarted: String,
    /// Time from the kill until the broker listened again (and, for a server restart, its
    /// REST API answered), s.
    pub restart_s: f64,
    /// From the broker listening again until every agent had subscribed again, s.
    pub resubscribed_s: f64,
    /// From the broker listening again until the new bundle of every consumer was Applied, s.
    pub converged_s: f64,
    /// REST probes made until convergence.
    pub probes: usize,
    /// Probes that failed or took longer than [`PROBE_TIMEOUT`].
    pub probe_failures: usize,
    /// Probe time percentiles, ms: p50, p99, max.
    pub probe_ms: (f64, f64, f64),
    /// Server CPU from the kill to convergence, s (the new process's, after a server restart).
    pub server_cpu_s: f64,
    /// Server RSS at convergence, MiB.
    pub server_rss_mib: f64,
}

/// Runs the storm of the module doc for each of `brokers` (the Pub/Sub emulator is refused:
/// it cannot be restarted in place) with `agents` agents of `per_consumer` bundles each.
///
/// # Errors
/// Any failed step, naming it.
pub async fn run(
    brokers: &[Broker],
    store: StoreKind,
    postgres: Option<&str>,
    (agents, per_consumer): (usize, usize),
    p: &Params,
) -> anyhow::Result<Vec<StormRun>> {
    let mut out = Vec::new();
    for &broker in brokers {
        anyhow::ensure!(
            broker != Broker::Pubsub,
            "--storm: the Pub/Sub emulator cannot be restarted in place"
        );
        let mut process = BrokerProcess::start(broker).await?;
        let db = Database::fresh(store, postgres).await?;
        let result = storm(&mut process, &db.url, (agents, per_consumer), p).await;
        db.remove().await;
        let mut run = result.with_context(|| format!("{broker} / {store}"))?;
        run.store = store.to_string();
        out.push(run);
    }
    Ok(out)
}

async fn storm(
    process: &mut BrokerProcess,
    db_url: &str,
    (agents, per_consumer): (usize, usize),
    p: &Params,
) -> anyhow::Result<StormRun> {
    let broker = process.broker;
    let bin = crate::fleet::maestro_bin()?;
    let server = ServerProcess::start(&bin, process, db_url).await?;
    let mut fleet = Fleet::start(server).await?;
    let consumers: Vec<String> = (0..agents).map(|i| format!("storm-{i}")).collect();
    let pb = bar(format!("{broker} storm consumers"));
    fleet.add_consumers(&consumers, &pb).await?;
    pb.finish();
    let pb = bar(format!("{broker} storm agents"));
    fleet.start_agents(&consumers, &pb).await?;
    pb.finish();
    let pb = bar(format!("{broker} storm bundles"));
    let sources = std::slice::from_ref(&fleet.source);
    load::throughput(sources, &consumers, (0, per_consumer), p.concurrency, &pb).await?;
    pb.finish();
    let run = restart_and_converge(&mut fleet, process, &consumers, per_consumer, p).await;
    fleet.shutdown().await;
    run
}

/// The storm on a running `fleet` whose agents of `consumers` hold `held` bundles each (indices
/// below `held`): restarts the broker (the server, unless `process` runs Mosquitto), probes
/// REST and publishes one new bundle per consumer (index `held`) until every one is Applied.
///
/// # Errors
/// Restart, publish and convergence failures.
pub async fn restart_and_converge(
    fleet: &mut Fleet,
    process: &mut BrokerProcess,
    consumers: &[String],
    held: usize,
    p: &Params,
) -> anyhow::Result<StormRun> {
    let broker = process.broker;
    let before = fleet.subscriptions();
    let killed = Instant::now();
    let server_restarted = !process.restart_mosquitto();
    if server_restarted {
        fleet.server.restart().await.context("restarting the server")?;
        let rest = RestClient::new(&format!("http://{}", fleet.server.http))?;
        fleet.source = SourceClient::connect(&fleet.server.grpc.to_string(), SOURCE_ID, rest.clone())
            .await
            .context("connecting the source client again")?;
        fleet.rest = rest;
    }
    let up = Instant::now();
    // A restarted server is a new process: its CPU time counts from zero.
    let cpu0 = if server_restarted { 0.0 } else { fleet.server.usage().cpu_s };
    let stop = tokio_util::sync::CancellationToken::new();
    let converge = async {
        let pb = bar(format!("{broker} storm: new bundles Applied"));
        let sources = std::slice::from_ref(&fleet.source);
        let r = load::throughput(sources, consumers, (held, 1), p.concurrency, &pb).await;
        pb.finish();
        stop.cancel();
        r.map(|_| up.elapsed().as_secs_f64())
    };
    let (probes, converged, resubscribed_s) =
        tokio::join!(probe(&fleet.rest, consumers, stop.clone()), converge, resubscribed(fleet, &before, up));
    let converged_s = converged?;
    let resubscribed_s = resubscribed_s?;
    let usage = fleet.server.usage();
    Ok(StormRun {
        broker: broker.to_string(),
        store: String::new(),
        agents: consumers.len(),
        bundles: consumers.len() * held,
        restarted: if server_restarted { "server" } else { "mosquitto" }.into(),
        restart_s: (up - killed).as_secs_f64(),
        resubscribed_s,
        converged_s,
        probes: probes.len(),
        probe_failures: probes.iter().filter(|t| t.is_none()).count(),
        probe_ms: probe_percentiles(&probes),
        server_cpu_s: usage.cpu_s - cpu0,
        server_rss_mib: usage.rss_mib,
    })
}

/// p50, p99 and max (ms) of the probes that answered.
pub fn probe_percentiles(probes: &[Option<Duration>]) -> (f64, f64, f64) {
    let mut times: Vec<f64> = probes.iter().filter_map(|t| t.map(|d| d.as_secs_f64() * 1000.0)).collect();
    times.sort_by(f64::total_cmp);
    let pct = |q: usize| times.get(times.len().saturating_sub(1) * q / 100).copied().unwrap_or(0.0);
    (pct(50), pct(99), times.last().copied().unwrap_or(0.0))
}

/// Asks for one consumer's first page of 100 bundles (each consumer in turn), one request
/// after the other, until `stop`; each request's time, `None` for a failure or a timeout.
pub async fn probe(
    rest: &RestClient,
    consumers: &[String],
    stop: tokio_util::sync::CancellationToken,
) -> Vec<Option<Duration>> {
    let mut times = Vec::new();
    for consumer in consumers.iter().cycle() {
        if stop.is_cancelled() {
            break;
        }
        let filter = BundleFilter::consumer(consumer.as_str());
        let t = Instant::now();
        let answer = tokio::time::timeout(PROBE_TIMEOUT, rest.list_bundles(&filter, 1, 100)).await;
        times.push(matches!(answer, Ok(Ok(_))).then(|| t.elapsed()));
        let _ = tokio::time::timeout(PROBE_PAUSE, stop.cancelled()).await;
    }
    times
}

/// Waits until every agent has subscribed more often than in `before`; the time from `up`, s.
async fn resubscribed(fleet: &Fleet, before: &HashMap<String, u64>, up: Instant) -> anyhow::Result<f64> {
    let deadline = Instant::now() + SCENARIO_DEADLINE;
    loop {
        let now = fleet.subscriptions();
        let behind = before.iter().filter(|(c, n)| now.get(*c).is_none_or(|m| m <= n)).count();
        if behind == 0 {
            return Ok(up.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{behind} agents not subscribed again after {SCENARIO_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Markdown table of `runs`.
pub fn markdown(runs: &[StormRun]) -> String {
    let mut md = String::from(
        "| broker | store | agents | bundles held | restarted | restart | all subscribed again | all converged | REST probes (failed) | probe p50 / p99 / max | server CPU | server RSS |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} s | {:.1} s | {:.1} s | {} ({}) | {:.0} / {:.0} / {:.0} ms | {:.1} s | {:.1} MiB |\n",
            r.broker,
            r.store,
            r.agents,
            r.bundles,
            r.restarted,
            r.restart_s,
            r.resubscribed_s,
            r.converged_s,
            r.probes,
            r.probe_failures,
            r.probe_ms.0,
            r.probe_ms.1,
            r.probe_ms.2,
            r.server_cpu_s,
            r.server_rss_mib,
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_run() {
        let run = StormRun {
            broker: "mosquitto".into(),
            store: "postgres".into(),
            agents: 2000,
            bundles: 10_000,
            restarted: "mosquitto".into(),
            restart_s: 0.1,
            resubscribed_s: 3.0,
            converged_s: 9.5,
            probes: 400,
            probe_failures: 0,
            probe_ms: (3.0, 40.0, 120.0),
            server_cpu_s: 5.0,
            server_rss_mib: 80.0,
        };
        let md = markdown(&[run]);
        assert!(md.contains("| mosquitto | postgres | 2000 | 10000 | mosquitto | 0.1 s | 3.0 s | 9.5 s | 400 (0) | 3 / 40 / 120 ms |"), "{md}");
    }
}
