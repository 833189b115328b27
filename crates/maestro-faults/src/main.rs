//! `maestro-faults`: runs the fault-injection matrix and prints (or writes) the results
//! table of docs/reliability.md. Exit status 1 when any run lost or staled work or set an event
//! aside for good.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use maestro_faults::fault::Fault;
use maestro_faults::system::{Broker, Store};
use maestro_faults::{Outcome, Settings, report};

/// Fault injection on every broker and store: kill -9 of the server, the agents, the broker and
/// PostgreSQL; network cuts, delays and bandwidth limits on each link (through TCP proxies);
/// SQLite's disk full; the agents' clock set back; with a source workload running. After each
/// fault: lost = 0, stale = 0, no dead letter, duplicates, and the convergence time
/// (docs/reliability.md).
#[derive(Debug, Parser)]
#[command(name = "maestro-faults", version)]
struct Args {
    /// Every fault (default: the quick set: kill -9 server, agents and PostgreSQL, a cut of the
    /// agents' link, a delay of the server's links).
    #[arg(long, conflicts_with = "soak")]
    full: bool,
    /// Random faults for this long per broker (e.g. `30m`), seeded by --seed.
    #[arg(long, value_parser = humantime::parse_duration)]
    soak: Option<Duration>,
    /// Brokers (comma-separated).
    #[arg(long, value_delimiter = ',', default_values = ["grpc", "mosquitto", "pubsub"])]
    broker: Vec<Broker>,
    /// Stores (comma-separated). SQLite runs on a 64 MiB tmpfs of its own, which needs root.
    #[arg(long, value_delimiter = ',', default_values = ["postgres", "sqlite"])]
    store: Vec<Store>,
    /// Only these faults (comma-separated; overrides --full).
    #[arg(long, value_delimiter = ',')]
    fault: Vec<Fault>,
    /// Consumers (one agent each).
    #[arg(long, default_value_t = 3)]
    consumers: usize,
    /// Bundles per consumer created before each fault.
    #[arg(long, default_value_t = 10)]
    bundles: usize,
    /// How long each fault is held while the workload runs.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// How long the system may take to converge after the heal.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    deadline: Duration,
    /// Seed of the workload and the delays (the same seed runs the same operations).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the table (with a line naming the command and commit) to this Markdown file:
    /// between its `<!-- maestro-faults results -->` markers when it has them
    /// (docs/reliability.md), else as the whole file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `maestro` binary (default: next to this one).
    #[arg(long, env = "MAESTRO_BIN")]
    maestro_bin: Option<PathBuf>,
}

fn maestro_bin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let bin = exe.parent().context("no directory")?.join("maestro");
    anyhow::ensure!(
        bin.is_file(),
        "{} not found: build it (cargo build -p maestro) or pass --maestro-bin",
        bin.display()
    );
    Ok(bin)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings {
        bin: maestro_bin(args.maestro_bin.clone())?,
        consumers: args.consumers,
        bundles: args.bundles,
        hold: args.hold,
        deadline: args.deadline,
        seed: args.seed,
    };
    let faults: Vec<Fault> = match (&args.fault[..], args.full) {
        ([], true) => Fault::ALL.to_vec(),
        ([], false) => Fault::QUICK.to_vec(),
        (list, _) => list.to_vec(),
    };
    let started = Instant::now();
    // The commit the run starts at: one made while it runs must not be named.
    let at_commit = commit();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let setups = args.broker.iter().flat_map(|b| args.store.iter().map(move |s| (*b, *s)));
    for (broker, store) in setups {
        eprintln!("== {broker} / {store}");
        let run = async {
            match args.soak {
                Some(d) => maestro_faults::run_soak(&settings, broker, store, Instant::now() + d).await,
                None => maestro_faults::run_broker(&settings, broker, store, &faults).await,
            }
        };
        // On Ctrl-C or SIGTERM the run is dropped, and with it the system: the server, agent,
        // broker and PostgreSQL processes are stopped instead of outliving the harness.
        let finished = tokio::select! {
            result = run => Ok(result),
            signal = interrupted() => Err(signal),
        };
        // Here the run, and its system, are dropped.
        let result = match finished {
            Ok(result) => result,
            Err(signal) => {
                eprintln!("{signal}: the processes of the {broker} / {store} system were stopped");
                std::process::exit(130);
            }
        };
        let runs = result.with_context(|| format!("starting the {broker} / {store} system"))?;
        for o in &runs {
            eprintln!(
                "   {:<36} lost {} stale {} dead letters {:?} convergence {:?} {:?}",
                o.fault.name(),
                o.lost,
                o.stale,
                o.dead_letters,
                o.convergence_s,
                o.details
            );
        }
        outcomes.extend(runs);
    }
    let table = report::markdown(&outcomes);
    println!("{table}");
    if let Some(path) = &args.out {
        let header = format!(
            "Run: `maestro-faults {}` (seed {}), {:.0} s, at commit {}.\n\n",
            std::env::args().skip(1).collect::<Vec<_>>().join(" "),
            args.seed,
            started.elapsed().as_secs_f64(),
            at_commit
        );
        write_results(path, &(header + &table))?;
    }
    if outcomes.iter().any(|o| !o.passed()) {
        std::process::exit(1);
    }
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM and names it.
async fn interrupted() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "interrupted";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    }
}

/// The current commit (`git rev-parse --short HEAD`), or `unknown`.
fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

const BEGIN: &str = "<!-- maestro-faults results -->";
const END: &str = "<!-- /maestro-faults results -->";

/// Writes `results` into `path` between the [`BEGIN`] and [`END`] markers when the file has
/// them (docs/reliability.md), else as the whole file.
fn write_results(path: &std::path::Path, results: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let out = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{BEGIN}\n{results}{}", &text[..b], &text[e..]),
        _ => results.to_owned(),
    };
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}
