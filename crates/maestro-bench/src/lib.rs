//! # maestro-bench: the cross-backend benchmark harness
//!
//! For one broker set-up ([`env::Broker`]) and one store ([`env::StoreKind`]),
//! [`run_one`] starts the server as its own `maestro server` process, a fleet of simulated
//! agents (one per consumer, one reconcile worker each, in this process) and a load generator
//! acting as a source over the source gRPC API, and measures ([`RunResult`]): end-to-end
//! throughput, latency at a fixed offered rate (hdrhistogram), the raw broker and raw store
//! limits in the same run with the ratios end-to-end / raw, REST list times, reconnect resync
//! time, and the server's own footprint (RSS and CPU from `/proc/<pid>`), including with K
//! idle connected agents.
//!
//! Modules: [`env`] (broker processes, databases), [`fleet`] (server process, simulated
//! agents), [`load`] (end-to-end scenarios), [`limits`] (raw limits), [`report`] (JSON and
//! Markdown), [`chart`] (SVG).

pub mod chart;
pub mod cpu;
pub mod env;
pub mod fleet;
pub mod instances;
pub mod limits;
pub mod load;
pub mod pages;
pub mod raw;
pub mod report;
pub mod scale;
pub mod storm;

use indicatif::{ProgressBar, ProgressStyle};
use maestro_client::BundleFilter;
use serde::Serialize;

use env::{Broker, BrokerProcess, Database, StoreKind};
use fleet::{Fleet, ServerProcess};

/// Sizes of one run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Params {
    /// Consumers (agents in the fleet).
    pub consumers: usize,
    /// Bundles per consumer in the throughput scenario.
    pub bundles_per_consumer: usize,
    /// Publishes in flight in the throughput scenario.
    pub concurrency: usize,
    /// Offered rate of the latency scenario, bundles/s.
    pub latency_rate: f64,
    /// Bundles in the latency scenario.
    pub latency_bundles: usize,
    /// Events / bundles of the raw broker and raw store measurements.
    pub raw_count: usize,
    /// Idle agents connected at the end to measure the server's RSS with many agents (the
    /// Pub/Sub emulator run caps this at [`PUBSUB_IDLE_AGENTS`]: one subscription each).
    pub idle_agents: usize,
    /// Reconnect resyncs measured one after another (`--resync-runs`; 1 in results written
    /// before it existed).
    #[serde(default = "one")]
    pub resync_runs: usize,
    /// The embedded MQTT broker (rumqttd, rmqtt) with logins: a password file with one user
    /// per consumer (`--embedded-mqtt-password-file`), each agent logging in as its consumer
    /// and confined to its topics — the secure configuration (`--mqtt-logins`; false in
    /// results written before it existed).
    #[serde(default)]
    pub mqtt_logins: bool,
}

fn one() -> usize {
    1
}

/// Most idle agents of a Pub/Sub emulator run (each needs its own subscription).
pub const PUBSUB_IDLE_AGENTS: usize = 100;

impl Params {
    /// The full run: 10 consumers × 600 bundles (Go Maestro's published test) with 64
    /// publishes in flight (256 gains ~20% end to end and in the store alone, but leaves the
    /// server's RSS after the burst over the 50 MB target: docs/benchmarks.md), latency at
    /// 500/s for 5,000 bundles, 6,000 raw operations, 10,000 idle agents.
    pub fn full() -> Params {
        Params {
            consumers: 10,
            bundles_per_consumer: 600,
            concurrency: 64,
            latency_rate: 500.0,
            latency_bundles: 5000,
            raw_count: 6000,
            idle_agents: 10_000,
            resync_runs: 1,
            mqtt_logins: false,
        }
    }

    /// A quick run (all brokers and stores in a few minutes): 5 × 100 with 64 in flight, 500
    /// at 500/s, 1,000 raw, 200 idle agents.
    pub fn quick() -> Params {
        Params {
            consumers: 5,
            bundles_per_consumer: 100,
            concurrency: 64,
            latency_rate: 500.0,
            latency_bundles: 500,
            raw_count: 1000,
            idle_agents: 200,
            resync_runs: 1,
            mqtt_logins: false,
        }
    }
}

/// The server process's footprint (RSS and CPU read from `/proc/<pid>`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Footprint {
    /// RSS right after start-up, MiB.
    pub start_rss_mib: f64,
    /// Bundles the server holds at the `holding_rss_mib` reading.
    pub holding_bundles: usize,
    /// RSS right after the throughput scenario, holding `holding_bundles`, MiB (the issue-5
    /// target's reading).
    pub holding_rss_mib: f64,
    /// RSS right after the REST lists of one consumer's and of all bundles (4 pages of 400 in
    /// flight), MiB: the transient peak of serving them. `0` in results written before it was
    /// measured.
    #[serde(default)]
    pub listed_rss_mib: f64,
    /// CPU seconds (user + system) per 1,000 bundles of the throughput scenario.
    pub cpu_s_per_1000: f64,
    /// Agents connected at the `idle_rss_mib` reading (the fleet plus the idle ones).
    pub idle_agents: usize,
    /// RSS with `idle_agents` agents connected and idle, MiB.
    pub idle_rss_mib: f64,
    /// Time to connect and subscribe the idle agents, s.
    pub idle_connect_s: f64,
    /// Why the idle-agents reading is missing, when it failed (the other figures stand).
    pub idle_error: Option<String>,
}

/// The results of one broker × store run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunResult {
    /// The broker set-up.
    pub broker: Broker,
    /// The store.
    pub store: StoreKind,
    /// Store durability settings as read from the server.
    pub durability: String,
    /// End-to-end throughput.
    pub throughput: load::Throughput,
    /// Latency at the offered rate.
    pub latency: load::Latency,
    /// The broker alone.
    pub raw_broker: limits::Rate,
    /// The store alone.
    pub raw_store: limits::Rate,
    /// End-to-end / broker alone.
    pub ratio_broker: f64,
    /// End-to-end / store alone.
    pub ratio_store: f64,
    /// REST list times.
    pub rest: load::RestList,
    /// Reconnect resync.
    pub resync: load::Resync,
    /// Footprint.
    pub footprint: Footprint,
    /// CPU per 1,000 bundles by process in the end-to-end throughput scenario. Default (zeros)
    /// in results written before it was measured.
    #[serde(default)]
    pub cpu_e2e: cpu::CpuSplit,
    /// CPU per 1,000 bundles by process in the store-alone scenario (no server).
    #[serde(default)]
    pub cpu_store_alone: cpu::CpuSplit,
}

pub(crate) fn bar(label: String) -> ProgressBar {
    let pb = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {per_sec} {msg}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(label);
    pb
}

/// Runs every scenario for `broker` on `store` with sizes `p`; `postgres` is the admin URL of
/// the PostgreSQL server (required for [`StoreKind::Postgres`]); the server runs as
/// [`fleet::maestro_bin`].
///
/// # Errors
/// Any failed step, naming it.
pub async fn run_one(
    broker: Broker,
    store: StoreKind,
    p: &Params,
    postgres: Option<&str>,
) -> anyhow::Result<RunResult> {
    let bin = fleet::maestro_bin()?;
    let process = BrokerProcess::start(broker).await?;
    let raw_db = Database::fresh(store, postgres).await?;
    let cpu0 = cpu::CpuReading::now(None);
    let raw_store = limits::store(&raw_db.url, p.raw_count, p.concurrency).await;
    let cpu_store_alone = cpu0.per_1000(&cpu::CpuReading::now(None), p.raw_count);
    raw_db.remove().await;
    let raw_store = raw_store?;
    let raw_broker = limits::broker(&process, p.raw_count, p.concurrency).await?;
    let db = Database::fresh(store, postgres).await?;
    let e2e = end_to_end(&bin, &process, &db.url, p, &format!("{broker} / {store}")).await;
    db.remove().await;
    let e2e = e2e?;
    Ok(RunResult {
        broker,
        store,
        durability: db.durability.clone(),
        ratio_broker: e2e.throughput.per_second / raw_broker.per_second,
        ratio_store: e2e.throughput.per_second / raw_store.per_second,
        throughput: e2e.throughput,
        latency: e2e.latency,
        raw_broker,
        raw_store,
        rest: e2e.rest,
        resync: e2e.resync,
        footprint: e2e.footprint,
        cpu_e2e: e2e.cpu,
        cpu_store_alone,
    })
}

/// The figures of the scenarios run on the server, the fleet and the load generator.
struct EndToEnd {
    throughput: load::Throughput,
    latency: load::Latency,
    rest: load::RestList,
    resync: load::Resync,
    footprint: Footprint,
    cpu: cpu::CpuSplit,
}

/// Starts the server `bin` on `db_url` with its fleet, runs the throughput, REST, latency,
/// resync and idle-agents scenarios in that order (progress bars named `label`), and stops
/// them.
async fn end_to_end(
    bin: &std::path::Path,
    process: &BrokerProcess,
    db_url: &str,
    p: &Params,
    label: &str,
) -> anyhow::Result<EndToEnd> {
    let broker = process.broker;
    let consumers: Vec<String> = (0..p.consumers).map(|i| format!("fleet-{i}")).collect();
    let server = if p.mqtt_logins {
        let users: Vec<String> = consumers.iter().cloned().chain(idle_names(p.idle_agents)).collect();
        ServerProcess::start_with_logins(bin, process, db_url, &users).await?
    } else {
        ServerProcess::start(bin, process, db_url).await?
    };
    let start_rss_mib = server.usage().rss_mib;
    let mut fleet = Fleet::start(server).await?;
    fleet.add_consumers(&consumers, &ProgressBar::hidden()).await?;
    fleet.start_agents(&consumers, &ProgressBar::hidden()).await?;
    // Warm-up: one bundle per consumer proves every agent is connected.
    let sources = std::slice::from_ref(&fleet.source);
    load::throughput(sources, &consumers, (0, 1), p.concurrency, &ProgressBar::hidden()).await?;
    let cpu0 = cpu::CpuReading::now(Some(&fleet.server));
    let pb = bar(format!("{label} e2e"));
    let throughput =
        load::throughput(sources, &consumers, (1, p.bundles_per_consumer), p.concurrency, &pb).await?;
    pb.finish_with_message(format!("{:.0} bundles/s", throughput.per_second));
    let split = cpu0.per_1000(&cpu::CpuReading::now(Some(&fleet.server)), throughput.bundles);
    let usage = fleet.server.usage();
    // RSS holding the throughput scenario's bundles (full run: 10 × 600 plus the warm-up ones,
    // as in Go Maestro's published test), then the REST lists of them and RSS again.
    let holding_rss_mib = usage.rss_mib;
    let rest = load::rest_list(&fleet.rest, &consumers[0]).await?;
    let listed_rss_mib = fleet.server.usage().rss_mib;
    let pb = bar(format!("{label} latency"));
    let first = 1 + p.bundles_per_consumer;
    let latency =
        load::latency(&fleet.source, &consumers, first, (p.latency_rate, p.latency_bundles), &pb).await?;
    pb.finish_with_message(format!("p99 {:.1} ms", latency.p99_ms));
    // The first consumer now also holds its share of the latency bundles.
    let held = fleet.rest.all_bundles(&BundleFilter::consumer(&consumers[0])).await?.len();
    let stall = if broker == Broker::Pubsub { load::RESYNC_STALL_EMULATOR } else { load::RESYNC_STALL };
    let resync = resyncs(&mut fleet, &consumers[0], held, stall, p.resync_runs, label).await?;
    let (idle, idle_error) = match idle_agents(&mut fleet, broker, p, label).await {
        Ok(idle) => (idle, None),
        Err(e) => ((0, 0.0, 0.0), Some(format!("{e:#}"))),
    };
    let footprint = Footprint {
        start_rss_mib,
        holding_bundles: rest.all_bundles,
        holding_rss_mib,
        listed_rss_mib,
        cpu_s_per_1000: split.server,
        idle_agents: idle.0 + consumers.len(),
        idle_rss_mib: idle.1,
        idle_connect_s: idle.2,
        idle_error,
    };
    fleet.shutdown().await;
    Ok(EndToEnd { throughput, latency, rest, resync, footprint, cpu: split })
}

/// The server's `--resync-min-interval` in every run (its default): it answers one spec resync
/// per consumer per interval, and delays a request that comes sooner.
pub const RESYNC_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the reconnect resync of `consumer` (holding `bundles`) `runs` times in a row (at least
/// once), printing each time; `seconds` is the slowest, `runs` every time in order. Each run
/// starts [`RESYNC_MIN_INTERVAL`] (plus 0.5 s) after the one before, and the first as long
/// after the agent was started (it asked for a resync as it connected), so it measures the
/// resync, not the server's pacing of a consumer that asks again within the interval (which
/// the first series of issue 24 did: 1.3 s for the first run, ~4.3 s for each later one; and
/// the quick run's first one until 2026-12-07: 3.7 s for 201 bundles).
///
/// # Errors
/// The first resync that failed, naming which of the runs it was.
async fn resyncs(
    fleet: &mut Fleet,
    consumer: &str,
    bundles: usize,
    stall: std::time::Duration,
    runs: usize,
    label: &str,
) -> anyhow::Result<load::Resync> {
    use anyhow::Context;
    let runs = runs.max(1);
    let mut times = Vec::with_capacity(runs);
    let spacing = RESYNC_MIN_INTERVAL + std::time::Duration::from_millis(500);
    let mut previous = fleet.agent_started(consumer);
    for i in 1..=runs {
        if let Some(previous) = previous {
            tokio::time::sleep_until(previous + spacing).await;
        }
        previous = Some(tokio::time::Instant::now());
        let r = load::resync(fleet, consumer, bundles, stall)
            .await
            .with_context(|| format!("resync run {i} of {runs}"))?;
        if runs > 1 {
            eprintln!("{label} resync {i}/{runs}: {} bundles in {:.2} s", r.bundles, r.seconds);
        }
        times.push(r.seconds);
    }
    let seconds = times.iter().copied().fold(0.0, f64::max);
    Ok(load::Resync { bundles, seconds, runs: times })
}

/// The consumer names of `k` idle agents.
fn idle_names(k: usize) -> Vec<String> {
    (0..k).map(|i| format!("idle-{i}")).collect()
}

/// Connects `p.idle_agents` more agents (capped for Pub/Sub) and reads the server's RSS once
/// all are subscribed: `(agents, RSS MiB, connect seconds)`.
async fn idle_agents(
    fleet: &mut Fleet,
    broker: Broker,
    p: &Params,
    label: &str,
) -> anyhow::Result<(usize, f64, f64)> {
    let k = if broker == Broker::Pubsub { p.idle_agents.min(PUBSUB_IDLE_AGENTS) } else { p.idle_agents };
    let names = idle_names(k);
    let pb = bar(format!("{label} idle consumers"));
    fleet.add_consumers(&names, &pb).await?;
    pb.finish();
    let pb = bar(format!("{label} idle agents"));
    let t = std::time::Instant::now();
    fleet.start_agents(&names, &pb).await?;
    let connect_s = t.elapsed().as_secs_f64();
    pb.finish_with_message(format!("{connect_s:.1} s"));
    // Let the connection-time work (spec and status resyncs) settle before reading RSS.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    Ok((k, fleet.server.usage().rss_mib, connect_s))
}
