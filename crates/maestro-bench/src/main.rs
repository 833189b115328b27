//! `maestro-bench`: runs the benchmark harness for the chosen brokers and stores, shows
//! progress, prints the Markdown table and writes `results.json`, `results.md` and the chart
//! `results.svg`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// mimalloc instead of the system allocator: the server allocates many short-lived JSON values
/// and glibc malloc took ~30% of its CPU in profiles (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use maestro_bench::env::{Broker, StoreKind};
use maestro_bench::raw;
use maestro_bench::report::{Report, markdown};
use maestro_bench::{Params, run_one};

/// Cross-backend benchmark harness: a server, a fleet of simulated agents and a load generator
/// (a source over the source gRPC API) per broker and store, with the raw broker and store
/// limits measured in the same run.
#[derive(Debug, Parser)]
#[command(
    name = "maestro-bench",
    version,
    about,
    after_help = "Environment:\n  MAESTRO_BIN               the `maestro` binary run as the server (default: beside this one)\n  MAESTRO_BENCH_SERVER_LOG  the server's RUST_LOG (default: warn)\n  MAESTRO_BENCH_KEEP_LOG    when set, keep each server's log and print its path\n  MAESTRO_BENCH_KEEP_DB     with --pages or --scale: when set, keep the database and print its URL\n  MAESTRO_BENCH_LATENCY_TRACE  write the latency scenario's per-bundle trace to this file:\n                            offset (ms), latency (ms), resource id, publish time (Unix s)"
)]
struct Args {
    /// Brokers to measure: grpc, mosquitto (MQTT on Mosquitto), rumqttd and rmqtt (MQTT on the
    /// embedded broker with that engine), pubsub (the Pub/Sub emulator); repeat or
    /// comma-separate; `all` = every one.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    broker: Vec<String>,
    /// Stores to measure: postgres, sqlite; `all` = both (postgres only with --postgres).
    #[arg(long, value_delimiter = ',', default_value = "all")]
    store: Vec<String>,
    /// PostgreSQL admin URL (a role allowed to CREATE DATABASE); each run uses a fresh
    /// database. Use a server with fsync and synchronous_commit on for durable figures.
    #[arg(long, env = "MAESTRO_BENCH_DATABASE_URL")]
    postgres: Option<String>,
    /// The quick sizes (all brokers and stores in a few minutes) instead of the full run.
    #[arg(long)]
    quick: bool,
    /// Consumers (agents in the fleet); overrides the preset.
    #[arg(long)]
    consumers: Option<usize>,
    /// Bundles per consumer in the throughput scenario; overrides the preset.
    #[arg(long)]
    bundles: Option<usize>,
    /// Publishes in flight in the throughput scenario, and resource creations in flight in the
    /// store-alone and broker-alone measurements; overrides the preset (64).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Offered rate of the latency scenario, bundles/s; overrides the preset.
    #[arg(long)]
    rate: Option<f64>,
    /// Idle agents connected at the end to read the server's RSS with many agents (Pub/Sub:
    /// at most 100); overrides the preset (quick 200, full 10,000).
    #[arg(long)]
    idle_agents: Option<usize>,
    /// With the embedded MQTT broker (rumqttd, rmqtt): start it with a password file holding
    /// one user per consumer (`--embedded-mqtt-password-file`) and log every agent in as its
    /// consumer, confined to its topics by the broker's ACL — the secure configuration.
    #[arg(long)]
    mqtt_logins: bool,
    /// Measure the reconnect resync (the first consumer's agent restarted on an empty
    /// cluster) this many times in a row and report each time with the min and max; the
    /// table's resync column then shows the slowest (default 1).
    #[arg(long, value_name = "N", default_value_t = 1)]
    resync_runs: usize,
    /// Instead of the broker and store runs, measure REST list pages (sorted, deep, one
    /// consumer's, label searches) over this many stored bundles on PostgreSQL (needs
    /// --postgres; spread over --consumers, default 2,000), and write pages.{json,md}.
    #[arg(long, value_name = "BUNDLES")]
    pages: Option<usize>,
    /// Instead of the broker and store runs, measure N server instances on one PostgreSQL
    /// database (needs --postgres; brokers from --broker, not rumqttd): end-to-end throughput
    /// with 1 and with N instances, and the failover when one is killed; writes
    /// instances.{json,md}.
    #[arg(long, value_name = "N")]
    instances: Option<usize>,
    /// Instead of the broker and store runs, a reconnect storm with this many agents (each
    /// holding --bundles bundles, default 5): the broker restarts (Mosquitto killed and started
    /// again; with gRPC or rumqttd the server, which is their broker) and every agent
    /// reconnects at once; reports REST probe times during the storm and the time until every
    /// agent converged. Brokers from --broker (default grpc and mosquitto; not pubsub), store
    /// PostgreSQL with --postgres, else SQLite; writes storm.{json,md}.
    #[arg(long, value_name = "AGENTS")]
    storm: Option<usize>,
    /// Instead of the broker and store runs, the ACM-size scenario on PostgreSQL (needs
    /// --postgres; gRPC broker): 2,000 consumers × 100 realistic bundles (1–5 manifests, 2–8
    /// KiB) end to end, then the server's RSS, REST pages and the full list beside psql's
    /// COPY, one consumer's resync, a status update storm and a server restart with every
    /// agent's resync. --consumers, --bundles and --concurrency change the sizes; writes
    /// scale.{json,md}.
    #[arg(long)]
    scale: bool,
    /// Instead of measuring, read a results.json written by an earlier run and write its
    /// Markdown table and SVG chart again into `--out`.
    #[arg(long, value_name = "RESULTS_JSON")]
    render: Option<PathBuf>,
    /// Directory for results.json, results.md and results.svg.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
}

fn parse_all<T: clap::ValueEnum + Copy>(names: &[String], all: &[T], what: &str) -> anyhow::Result<Vec<T>> {
    if names.iter().any(|n| n == "all") {
        return Ok(all.to_vec());
    }
    names
        .iter()
        .map(|n| {
            T::from_str(n, true).map_err(|_| {
                let valid: Vec<String> = all
                    .iter()
                    .filter_map(|v| v.to_possible_value())
                    .map(|v| v.get_name().to_owned())
                    .chain(["all".to_owned()])
                    .collect();
                anyhow::anyhow!("bad --{what} {n:?}: expected one of {}", valid.join(", "))
            })
        })
        .collect()
}

/// Open files wanted: two sockets per agent at 10,000 agents (the fleet's ends here, the
/// server's in its process, which inherits the limit) plus headroom.
const OPEN_FILES: u64 = 65_536;

/// Raises this process's open-files limit (inherited by the server process) to
/// [`OPEN_FILES`] when allowed (root), else the soft limit to the hard one.
fn raise_open_files() {
    let wanted = rlimit::Resource::NOFILE.set(OPEN_FILES, OPEN_FILES);
    if wanted.is_err() {
        let _ = rlimit::increase_nofile_limit(OPEN_FILES);
    }
    if let Ok((soft, _)) = rlimit::Resource::NOFILE.get()
        && soft < OPEN_FILES
    {
        eprintln!(
            "note: open-files limit is {soft}: runs with many idle agents may fail (raise `ulimit -n`)"
        );
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = mem.lines().next().unwrap_or("MemTotal: ?").trim_start_matches("MemTotal:").trim().to_owned();
    format!("{cpus} CPUs, {total} memory, {}", std::env::consts::ARCH)
}

/// Prints the Markdown table and writes results.json, results.md and results.svg into `out`.
fn write_outputs(report: &Report, out: &std::path::Path) -> anyhow::Result<()> {
    let md = markdown(report);
    println!("\n{md}");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(report)?)?;
    std::fs::write(out.join("results.md"), &md)?;
    let chart = maestro_bench::chart::svg(report).context("drawing results.svg")?;
    std::fs::write(out.join("results.svg"), chart)?;
    eprintln!("results written to {}", out.display());
    Ok(())
}

/// Prints a scenario's Markdown table and writes `<name>.json` and `<name>.md` into `out`.
fn write_scenario(
    out: &std::path::Path,
    name: &str,
    md: &str,
    json: &impl serde::Serialize,
) -> anyhow::Result<()> {
    println!("\n{md}");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join(format!("{name}.json")), serde_json::to_string_pretty(json)?)?;
    std::fs::write(out.join(format!("{name}.md")), md)?;
    Ok(())
}

/// `--scale`: the scale scenario with the sizes of `args` (ScaleParams::FULL by default).
async fn run_scale(args: &Args) -> anyhow::Result<()> {
    let admin = args.postgres.as_deref().context("--scale needs --postgres URL")?;
    let full = maestro_bench::scale::ScaleParams::FULL;
    let sp = maestro_bench::scale::ScaleParams {
        consumers: args.consumers.unwrap_or(full.consumers).max(1),
        per_consumer: args.bundles.unwrap_or(full.per_consumer).max(1),
        concurrency: args.concurrency.unwrap_or(full.concurrency).max(1),
        grid: full.grid,
    };
    let report = maestro_bench::scale::run(admin, sp).await?;
    write_scenario(&args.out, "scale", &maestro_bench::scale::markdown(&report), &report)
}

/// Measures PostgreSQL's pgbench write limit once for the report (the full grid, or the quick
/// one with `--quick`); a failure is recorded with the report's failures.
async fn pgbench_write(report: &mut Report, admin: &str, quick: bool) {
    let grid = if quick { raw::QUICK_GRID } else { raw::FULL_GRID };
    eprintln!("PostgreSQL write limit (pgbench)");
    match raw::write_limit(admin, report.params.consumers, grid).await {
        Ok(w) => report.pgbench_write = Some(w),
        Err(e) => report.failures.push(format!("pgbench write limit: {e:#}")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,rumqttd=off,rmqtt=off"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    if let Some(path) = &args.render {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a maestro-bench results.json", path.display()))?;
        return write_outputs(&report, &args.out);
    }
    raise_open_files();
    if let Some(bundles) = args.pages {
        let admin = args.postgres.as_deref().context("--pages needs --postgres URL")?;
        let report = maestro_bench::pages::run(admin, bundles, args.consumers.unwrap_or(2_000)).await?;
        return write_scenario(&args.out, "pages", &maestro_bench::pages::markdown(&report), &report);
    }
    if args.scale {
        return run_scale(&args).await;
    }
    let brokers = parse_all(&args.broker, &Broker::ALL, "broker")?;
    let stores = parse_all(&args.store, &[StoreKind::Postgres, StoreKind::Sqlite], "store")?;
    let mut params = if args.quick { Params::quick() } else { Params::full() };
    params.consumers = args.consumers.unwrap_or(params.consumers).max(1);
    params.bundles_per_consumer = args.bundles.unwrap_or(params.bundles_per_consumer).max(1);
    params.concurrency = args.concurrency.unwrap_or(params.concurrency).max(1);
    params.latency_rate = args.rate.unwrap_or(params.latency_rate);
    params.idle_agents = args.idle_agents.unwrap_or(params.idle_agents);
    params.resync_runs = args.resync_runs.max(1);
    params.mqtt_logins = args.mqtt_logins;
    if args.mqtt_logins && brokers.iter().any(|b| b.embedded_engine().is_none()) {
        anyhow::bail!("--mqtt-logins is for the embedded MQTT broker only: --broker rumqttd,rmqtt");
    }
    if let Some(n) = args.instances {
        let admin = args.postgres.as_deref().context("--instances needs --postgres URL")?;
        let brokers: Vec<Broker> = if args.broker.iter().any(|b| b == "all") {
            vec![Broker::Grpc, Broker::Mosquitto]
        } else {
            brokers
        };
        let runs = maestro_bench::instances::run(&brokers, n, &params, admin).await?;
        return write_scenario(&args.out, "instances", &maestro_bench::instances::markdown(&runs), &runs);
    }
    if let Some(agents) = args.storm {
        let brokers: Vec<Broker> = if args.broker.iter().any(|b| b == "all") {
            vec![Broker::Grpc, Broker::Mosquitto]
        } else {
            brokers
        };
        let store = if args.postgres.is_some() { StoreKind::Postgres } else { StoreKind::Sqlite };
        let sizes = (agents.max(1), args.bundles.unwrap_or(5).max(1));
        let runs =
            maestro_bench::storm::run(&brokers, store, args.postgres.as_deref(), sizes, &params).await?;
        return write_scenario(&args.out, "storm", &maestro_bench::storm::markdown(&runs), &runs);
    }
    let mut report = Report {
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        machine: machine(),
        params: params.clone(),
        runs: Vec::new(),
        failures: Vec::new(),
        pgbench_write: None,
    };
    if let (Some(admin), true) = (args.postgres.as_deref(), stores.contains(&StoreKind::Postgres)) {
        pgbench_write(&mut report, admin, args.quick).await;
    }
    for &store in &stores {
        if store == StoreKind::Postgres && args.postgres.is_none() {
            report.failures.push("postgres: no --postgres URL given".into());
            continue;
        }
        for &broker in &brokers {
            match run_one(broker, store, &params, args.postgres.as_deref()).await {
                Ok(r) => report.runs.push(r),
                Err(e) => {
                    eprintln!("{broker} / {store}: failed: {e:#}");
                    report.failures.push(format!("{broker} / {store}: {e:#}"));
                }
            }
        }
    }
    write_outputs(&report, &args.out)?;
    anyhow::ensure!(report.failures.iter().all(|f| f.contains("no --postgres")), "some runs failed");
    Ok(())
}
