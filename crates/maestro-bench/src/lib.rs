//! # maestro-bench: the cross-backend benchmark harness
//!
//! For one broker set-up ([`env::Broker`]) and one store ([`env::StoreKind`]),
//! [`run_one`] starts a server, a fleet of simulated agents (one per consumer, one reconcile
//! worker each, all in this process) and a load generator acting as a source over the source
//! gRPC API, and measures ([`RunResult`]): end-to-end throughput, latency at a fixed offered
//! rate (hdrhistogram), the raw broker and raw store limits in the same run with the ratios
//! end-to-end / raw, REST list times, reconnect resync time, and the process footprint.
//!
//! The server, the fleet and the load generator share one process here, so the footprint
//! figures are for all three together (labelled so in the report).
//!
//! Modules: [`env`] (broker processes, databases), [`load`] (end-to-end scenarios), [`limits`]
//! (raw limits), [`report`] (JSON and Markdown).

pub mod env;
pub mod limits;
pub mod load;
pub mod report;

use indicatif::{ProgressBar, ProgressStyle};
use maestro::stack::LocalStack;
use serde::Serialize;

use env::{Broker, BrokerProcess, Database, StoreKind};

/// Sizes of one run.
#[derive(Debug, Clone, Serialize)]
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
}

impl Params {
    /// The full run: 10 consumers × 600 bundles (Go Maestro's published test), latency at
    /// 500/s for 5,000 bundles, 6,000 raw operations.
    pub fn full() -> Params {
        Params {
            consumers: 10,
            bundles_per_consumer: 600,
            concurrency: 64,
            latency_rate: 500.0,
            latency_bundles: 5000,
            raw_count: 6000,
        }
    }

    /// A quick run (all brokers and stores in a few minutes): 5 × 100, 500 at 500/s, 1,000 raw.
    pub fn quick() -> Params {
        Params {
            consumers: 5,
            bundles_per_consumer: 100,
            concurrency: 64,
            latency_rate: 500.0,
            latency_bundles: 500,
            raw_count: 1000,
        }
    }
}

/// Process footprint after the run (server, fleet and load generator together).
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    /// Resident set size, MiB.
    pub rss_mib: f64,
    /// CPU seconds (user + system) per 1,000 bundles of the throughput scenario.
    pub cpu_s_per_1000: f64,
}

/// The results of one broker × store run.
#[derive(Debug, Clone, Serialize)]
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
}

fn bar(label: String) -> ProgressBar {
    let pb = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {per_sec} {msg}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(label);
    pb
}

/// Runs every scenario for `broker` on `store` with sizes `p`; `postgres` is the admin URL of
/// the PostgreSQL server (required for [`StoreKind::Postgres`]).
///
/// # Errors
/// Any failed step, naming it.
pub async fn run_one(
    broker: Broker,
    store: StoreKind,
    p: &Params,
    postgres: Option<&str>,
) -> anyhow::Result<RunResult> {
    let label = format!("{broker} / {store}");
    let process = BrokerProcess::start(broker).await?;
    let raw_db = Database::fresh(store, postgres).await?;
    let raw_store = limits::store(&raw_db.url, p.raw_count, p.concurrency).await?;
    let raw_broker = limits::broker(&process, p.raw_count, p.concurrency).await?;
    let db = Database::fresh(store, postgres).await?;
    let mut stack = LocalStack::start(process.stack_config(&db.url)).await?;
    let consumers: Vec<String> = (0..p.consumers).map(|i| format!("fleet-{i}")).collect();
    for c in &consumers {
        stack.rest.create_consumer(c, &Default::default()).await?;
        stack.start_agent(c).await?;
    }
    // Warm-up: one bundle per consumer proves every agent is connected.
    load::throughput(&stack, &consumers, (0, 1), p.concurrency, &ProgressBar::hidden()).await?;
    let cpu0 = cpu_seconds();
    let pb = bar(format!("{label} e2e"));
    let throughput =
        load::throughput(&stack, &consumers, (1, p.bundles_per_consumer), p.concurrency, &pb).await?;
    pb.finish_with_message(format!("{:.0} bundles/s", throughput.per_second));
    let cpu = cpu_seconds() - cpu0;
    let pb = bar(format!("{label} latency"));
    let first = 1 + p.bundles_per_consumer;
    let latency = load::latency(&stack, &consumers, first, (p.latency_rate, p.latency_bundles), &pb).await?;
    pb.finish_with_message(format!("p99 {:.1} ms", latency.p99_ms));
    let rest = load::rest_list(&stack, &consumers[0]).await?;
    let held = rest.one_consumer_bundles;
    let resync = load::resync(&mut stack, &consumers[0], held).await?;
    let footprint =
        Footprint { rss_mib: rss_mib(), cpu_s_per_1000: cpu / throughput.bundles as f64 * 1000.0 };
    stack.shutdown().await;
    Ok(RunResult {
        broker,
        store,
        durability: db.durability.clone(),
        ratio_broker: throughput.per_second / raw_broker.per_second,
        ratio_store: throughput.per_second / raw_store.per_second,
        throughput,
        latency,
        raw_broker,
        raw_store,
        rest,
        resync,
        footprint,
    })
}

/// Resident set size of this process, MiB (0 when `/proc` is unavailable).
pub fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) used by this process so far, from `/proc/self/stat` at the
/// usual 100 clock ticks per second (0 when `/proc` is unavailable).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is 14th, stime 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
