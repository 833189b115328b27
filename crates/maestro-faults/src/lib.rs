//! # maestro-faults: the fault-injection harness
//!
//! Runs the real `maestro server` process, its store (PostgreSQL, its own cluster; or SQLite on
//! a small tmpfs) and the broker process (Mosquitto, the Pub/Sub emulator; the gRPC broker is
//! the server), with work agents on simulated clusters, every link through a fault proxy ([`system`]); drives a source
//! workload ([`workload`]); injects each [`fault::Fault`] while the workload runs, heals it,
//! and checks the same invariants after each ([`check`]): lost = 0, stale = 0, duplicates
//! counted, the convergence time measured from the heal. [`report`] prints the table of
//! docs/reliability.md; `maestro-faults --help` runs it (quick, full, or a seeded soak).
//!
//! Modules: [`proxy`] (the TCP proxy), [`postgres`] (a killable PostgreSQL), [`disk`] (SQLite's
//! small disk, to fill), [`cluster`] (the agents' clusters with their write history),
//! [`system`], [`workload`], [`check`], [`fault`], [`report`].

pub mod check;
pub mod cluster;
pub mod disk;
pub mod fault;
pub mod postgres;
pub mod proxy;
pub mod report;
pub mod system;
pub mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use fault::Fault;
use system::{Broker, Store, System};
use workload::Expected;

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `maestro` binary.
    pub bin: PathBuf,
    /// Consumers (one agent each).
    pub consumers: usize,
    /// Bundles created per consumer before each fault.
    pub bundles: usize,
    /// How long each fault is held, while the workload runs.
    pub hold: Duration,
    /// How long after the heal the system may take to converge before what is left counts
    /// as lost.
    pub deadline: Duration,
    /// The seed of the workload's and the delays' randomness.
    pub seed: u64,
}

/// The result of one fault on one broker.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The broker set-up.
    pub broker: Broker,
    /// The store.
    pub store: Store,
    /// The fault.
    pub fault: Fault,
    /// Workload operations the server accepted during the run.
    pub operations: usize,
    /// Operations not accepted within the workload's deadline (their bundles are not checked).
    pub unaccepted: usize,
    /// Bundles not at their expected state at the deadline.
    pub lost: usize,
    /// Objects whose history went back.
    pub stale: usize,
    /// Objects written twice at one generation.
    pub rewrites: usize,
    /// Status events stored twice for one sequence id (`None`: not measured).
    pub duplicate_statuses: Option<u64>,
    /// Events the server set aside for good during the run (`None`: not measured).
    pub dead_letters: Option<usize>,
    /// Seconds from the heal until every bundle was at its expected state (`None`: never).
    pub convergence_s: Option<f64>,
    /// The first problems found, for the log.
    pub details: Vec<String>,
}

impl Outcome {
    /// No lost and no stale work, and no event set aside for good.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.stale == 0
            && self.convergence_s.is_some()
            && self.dead_letters.unwrap_or(0) == 0
    }
}

/// Runs `faults` (those that exist on `broker` with `store`) one after the other on one system,
/// or each on a system of its own where [`Broker::fresh_system_per_fault`] says so.
///
/// # Errors
/// When the system cannot start.
pub async fn run_broker(
    settings: &Settings,
    broker: Broker,
    store: Store,
    faults: &[Fault],
) -> anyhow::Result<Vec<Outcome>> {
    let mut system = start_system(settings, broker, store).await?;
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mut out = Vec::new();
    for (i, fault) in faults.iter().filter(|f| f.applies_to(broker, store)).enumerate() {
        if i > 0 && broker.fresh_system_per_fault() {
            system.stop().await;
            system = start_system(settings, broker, store).await?;
        }
        let outcome = run_fault(&mut system, settings, *fault, &format!("f{i}"), &mut rng).await;
        match outcome {
            Ok(o) => out.push(o),
            Err(e) => {
                eprintln!("{broker} / {store} / {}: {e:#}\nserver log:\n{}", fault.name(), system.log_tail());
                out.push(failed(broker, store, *fault, format!("{e:#}")));
            }
        }
    }
    system.stop().await;
    Ok(out)
}

/// Random faults (seeded by [`Settings::seed`]) on one system until `until`: the soak.
///
/// # Errors
/// When the system cannot start.
pub async fn run_soak(
    settings: &Settings,
    broker: Broker,
    store: Store,
    until: Instant,
) -> anyhow::Result<Vec<Outcome>> {
    let mut system = start_system(settings, broker, store).await?;
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let faults: Vec<Fault> = Fault::ALL.into_iter().filter(|f| f.applies_to(broker, store)).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while Instant::now() < until {
        let fault = faults[rng.random_range(0..faults.len())];
        let outcome = run_fault(&mut system, settings, fault, &format!("s{i}"), &mut rng).await;
        i += 1;
        let o = outcome.unwrap_or_else(|e| failed(broker, store, fault, format!("{e:#}")));
        eprintln!(
            "soak {broker}/{store} #{i} {}: lost {} stale {} dead letters {:?} convergence {:?}",
            fault.name(),
            o.lost,
            o.stale,
            o.dead_letters,
            o.convergence_s
        );
        out.push(o);
    }
    system.stop().await;
    Ok(out)
}

/// Starts the system of `broker` and `store` with [`Settings::consumers`] consumers `c0`, `c1`, ….
async fn start_system(settings: &Settings, broker: Broker, store: Store) -> anyhow::Result<System> {
    let mut system = System::start(broker, store, &settings.bin).await?;
    for c in 0..settings.consumers {
        system.add_consumer(&format!("c{c}")).await?;
    }
    Ok(system)
}

fn failed(broker: Broker, store: Store, fault: Fault, why: String) -> Outcome {
    Outcome {
        broker,
        store,
        fault,
        operations: 0,
        unaccepted: 0,
        lost: 1,
        stale: 0,
        rewrites: 0,
        duplicate_statuses: None,
        dead_letters: None,
        convergence_s: None,
        details: vec![why],
    }
}

/// One fault: bundles created and converged, then the workload with the fault held for
/// [`Settings::hold`], the heal, and the checks.
async fn run_fault(
    system: &mut System,
    settings: &Settings,
    fault: Fault,
    prefix: &str,
    rng: &mut StdRng,
) -> anyhow::Result<Outcome> {
    let mut expected = Expected::new();
    let dead_before = check::last_dead_letter(system.store, system.db_url());
    for consumer in system.consumers() {
        for b in 0..settings.bundles {
            let name = format!("{prefix}-{b}");
            anyhow::ensure!(workload::put(system.source(), &consumer, &name, 1).await, "creating {name}");
            expected.insert((consumer.clone(), name), Some(1));
        }
    }
    converge(system, &expected, settings.deadline)
        .await
        .map_err(|left| anyhow::anyhow!("the baseline did not converge before the fault: {left:?}"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(run_load(
        system.source().clone(),
        expected,
        StdRng::seed_from_u64(rng.random()),
        prefix.to_owned(),
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delay = Duration::from_millis(rng.random_range(100..=500));
    fault.inject(system, delay).await?;
    tokio::time::sleep(settings.hold).await;
    fault.heal(system).await?;
    let healed = Instant::now();
    stop_tx.send_replace(true);
    let (expected, operations, unaccepted) = load.await?;
    let left = converge(system, &expected, settings.deadline.saturating_sub(healed.elapsed())).await;
    let convergence_s = left.is_ok().then(|| healed.elapsed().as_secs_f64());
    let left = left.err().unwrap_or_default();
    let stale: Vec<String> = check::stale(system)?.into_iter().filter(|s| in_run(s, prefix)).collect();
    let dead = dead_before.and_then(|id| check::dead_letters_after(system.store, system.db_url(), id));
    let mut details: Vec<String> =
        left.iter().chain(&stale).chain(dead.iter().flatten()).take(10).cloned().collect();
    if unaccepted > 0 {
        details.push(format!("{unaccepted} operations not accepted within the workload deadline"));
    }
    Ok(Outcome {
        broker: system.broker,
        store: system.store,
        fault,
        operations,
        unaccepted,
        lost: left.len(),
        stale: stale.len(),
        rewrites: check::rewrites(system, &format!("{prefix}-"))?,
        duplicate_statuses: check::duplicate_statuses(system.store, system.db_url()),
        dead_letters: dead.map(|d| d.len()),
        convergence_s,
        details,
    })
}

/// True when a `consumer/name: …` line is about a bundle of the run `prefix`.
fn in_run(line: &str, prefix: &str) -> bool {
    line.split_once('/').is_some_and(|(_, rest)| rest.starts_with(&format!("{prefix}-")))
}

/// The workload until `stop`: one operation at a time, about 20 per second.
async fn run_load(
    source: maestro_client::SourceClient,
    mut expected: Expected,
    mut rng: StdRng,
    prefix: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Expected, usize, usize) {
    let (mut operations, mut unaccepted, mut next) = (0, 0, 0);
    while !*stop.borrow() {
        if workload::step(&source, &mut expected, &mut rng, &prefix, &mut next).await {
            operations += 1;
        } else {
            unaccepted += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (expected, operations, unaccepted)
}

/// Waits until every bundle is at its expected state; `Err` with what is left when `within`
/// passes first.
async fn converge(system: &System, expected: &Expected, within: Duration) -> Result<(), Vec<String>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = match check::mismatches(system, expected).await {
            Ok(left) if left.is_empty() => return Ok(()),
            Ok(left) => left,
            Err(e) => vec![format!("listing the bundles: {e}")],
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(left);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
