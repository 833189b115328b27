//! End-to-end scenarios on a running [`Fleet`] (the server process, the simulated agents, and a
//! load generator acting as a source over the source gRPC API): throughput, latency at a fixed
//! offered rate, REST list time and reconnect resync.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use maestro_api::payload::ManifestBundle;
use maestro_client::{BundleFilter, ManifestWorkInput, RestClient, SourceClient};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use crate::fleet::Fleet;

/// How long any one scenario may take before it is reported as failed.
pub const SCENARIO_DEADLINE: Duration = Duration::from_secs(120);

/// A realistic small bundle: one ConfigMap with ~1 KiB of data, named `b-<i>`.
pub fn work(i: usize) -> ManifestWorkInput {
    let manifest = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("b-{i}"), "namespace": "default", "labels": {"app": "bench"}},
        "data": {"config.yaml": "x".repeat(1024)}
    });
    ManifestWorkInput {
        name: format!("b-{i}"),
        bundle: ManifestBundle { manifests: vec![manifest], ..Default::default() },
        ..Default::default()
    }
}

/// Watches the source's status stream and records, per resource id, when its first
/// `Applied=True` arrived; `count` follows the number of distinct applied resources.
struct AppliedWatch {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    count: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl AppliedWatch {
    async fn start(source: &SourceClient) -> anyhow::Result<Self> {
        let mut stream = source.watch().await.context("opening the status stream")?;
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let (tx, count) = watch::channel(0usize);
        let map = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let Ok(update) = item else { continue };
                if !update.status.is_true("Applied") {
                    continue;
                }
                let mut m = map.lock().unwrap_or_else(PoisonError::into_inner);
                m.entry(update.resource_id).or_insert_with(Instant::now);
                tx.send_replace(m.len());
            }
        });
        Ok(AppliedWatch { seen, count, task })
    }

    /// Waits until `n` resources were seen Applied, ticking `bar`.
    async fn wait(&mut self, n: usize, bar: &ProgressBar) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + SCENARIO_DEADLINE;
        loop {
            let seen = *self.count.borrow_and_update();
            bar.set_position(seen as u64);
            if seen >= n {
                return Ok(());
            }
            tokio::select! {
                r = self.count.changed() => r.context("the status stream ended")?,
                () = tokio::time::sleep_until(deadline) => anyhow::bail!("only {seen}/{n} bundles Applied after {SCENARIO_DEADLINE:?}"),
            }
        }
    }

    /// Waits until every one of `ids` was seen Applied (a late status of an earlier round's
    /// bundle counts towards [`AppliedWatch::wait`]'s number but not here), ticking `bar`.
    async fn wait_for(&mut self, ids: &[String], bar: &ProgressBar) -> anyhow::Result<()> {
        self.wait(ids.len(), bar).await?;
        let mut missing: Vec<&String> = ids.iter().collect();
        let deadline = tokio::time::Instant::now() + SCENARIO_DEADLINE;
        loop {
            {
                let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
                missing.retain(|id| !seen.contains_key(id.as_str()));
            }
            if missing.is_empty() {
                return Ok(());
            }
            tokio::select! {
                r = self.count.changed() => r.context("the status stream ended")?,
                () = tokio::time::sleep_until(deadline) => anyhow::bail!(
                    "{} of {} bundles not Applied after {SCENARIO_DEADLINE:?}", missing.len(), ids.len()
                ),
            }
        }
    }

    fn applied_at(&self, id: &str) -> Option<Instant> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).get(id).copied()
    }
}

impl Drop for AppliedWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// End-to-end throughput: bundles from source publish to the Applied status visible to the
/// source.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Throughput {
    /// Bundles published and seen Applied.
    pub bundles: usize,
    /// Wall time, s.
    pub seconds: f64,
    /// Bundles per second.
    pub per_second: f64,
}

/// Publishes `per_consumer` new bundles to every consumer (`concurrency` publishes in flight,
/// starting at index `first`, spread over `sources` in turn: one per server instance) and
/// waits until all are Applied, as the first source sees them.
///
/// # Errors
/// Publish failures; not all Applied within [`SCENARIO_DEADLINE`].
pub async fn throughput(
    sources: &[SourceClient],
    consumers: &[String],
    range: (usize, usize),
    concurrency: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Throughput> {
    throughput_of(work, sources, consumers, range, concurrency, bar).await
}

/// [`throughput`] with the bundles `make(i)` instead of [`work`]`(i)`.
///
/// # Errors
/// As [`throughput`].
pub async fn throughput_of(
    make: fn(usize) -> ManifestWorkInput,
    sources: &[SourceClient],
    consumers: &[String],
    (first, per_consumer): (usize, usize),
    concurrency: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Throughput> {
    let total = consumers.len() * per_consumer;
    bar.set_length(total as u64);
    bar.set_position(0);
    let first_source = sources.first().context("no source client")?;
    let mut applied = AppliedWatch::start(first_source).await?;
    let start = Instant::now();
    let items: Vec<(usize, &String)> =
        (first..first + per_consumer).flat_map(|i| consumers.iter().map(move |c| (i, c))).collect();
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(items.into_iter().enumerate())
        .map(|(k, (i, c))| async move {
            let source = &sources[k % sources.len()];
            source.create(c, &make(i)).await.with_context(|| format!("publishing b-{i} to {c}"))
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let ids = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    applied.wait_for(&ids, bar).await?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Throughput { bundles: total, seconds, per_second: total as f64 / seconds })
}

/// Latency percentiles, ms.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Latency {
    /// Offered rate, bundles/s.
    pub offered_per_second: f64,
    /// Bundles measured.
    pub bundles: usize,
    /// Percentiles of publish → applied → status visible to the source, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Maximum, ms.
    pub max_ms: f64,
}

/// Publishes `count` new bundles at `rate` per second spread over `consumers` (index from
/// `first`) and records each one's publish → Applied-visible time.
///
/// # Errors
/// Publish failures; not all Applied within [`SCENARIO_DEADLINE`].
pub async fn latency(
    source: &SourceClient,
    consumers: &[String],
    first: usize,
    (rate, count): (f64, usize),
    bar: &ProgressBar,
) -> anyhow::Result<Latency> {
    bar.set_length(count as u64);
    bar.set_position(0);
    let mut applied = AppliedWatch::start(source).await?;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = Vec::with_capacity(count);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..count {
        ticker.tick().await;
        let (i, c) = (first + k / consumers.len(), consumers[k % consumers.len()].clone());
        let source = source.clone();
        let t0 = Instant::now();
        sent.push((source.resource_id(&c, &format!("b-{i}")), t0));
        tasks.spawn(async move {
            source.create(&c, &work(i)).await.with_context(|| format!("publishing b-{i} to {c}"))
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("publisher task")??;
    }
    applied.wait(count, bar).await?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).context("histogram bounds")?;
    let mut timed = Vec::with_capacity(sent.len());
    for (id, t0) in &sent {
        let at = applied.applied_at(id).with_context(|| format!("no Applied time for {id}"))?;
        h.record(at.duration_since(*t0).as_micros().max(1) as u64).context("recording a latency")?;
        timed.push((id.as_str(), *t0, at));
    }
    if let Some(path) = std::env::var_os(LATENCY_TRACE_ENV) {
        std::fs::write(&path, latency_trace(&timed))
            .with_context(|| format!("writing the latency trace to {}", path.to_string_lossy()))?;
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Latency {
        offered_per_second: rate,
        bundles: count,
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p99_ms: ms(0.99),
        max_ms: h.max() as f64 / 1000.0,
    })
}

/// When set, the latency scenario writes one line per bundle to this file (see
/// [`latency_trace`]): where in the run a slow delivery happened, to match with server and
/// database logs.
pub const LATENCY_TRACE_ENV: &str = "MAESTRO_BENCH_LATENCY_TRACE";

/// The latency trace of `(resource id, published, Applied seen)` in publish order: per line the
/// publish time since the first publish (ms), the latency (ms), the resource id and the
/// publish wall-clock time (Unix seconds, ms precision).
fn latency_trace(timed: &[(&str, Instant, Instant)]) -> String {
    use std::fmt::Write as _;
    let (now, wall) = (Instant::now(), std::time::SystemTime::now());
    let unix = wall.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let Some(&(_, first, _)) = timed.first() else { return String::new() };
    let mut out = String::new();
    for (id, t0, at) in timed {
        let offset_ms = t0.duration_since(first).as_secs_f64() * 1000.0;
        let latency_ms = at.duration_since(*t0).as_secs_f64() * 1000.0;
        let published = unix - now.duration_since(*t0).as_secs_f64();
        let _ = writeln!(out, "{offset_ms:.1} {latency_ms:.1} {id} {published:.3}");
    }
    out
}

/// REST list times, ms.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RestList {
    /// Bundles of one consumer.
    pub one_consumer_bundles: usize,
    /// Time to list them, ms.
    pub one_consumer_ms: f64,
    /// Bundles in all.
    pub all_bundles: usize,
    /// Time to list all, ms.
    pub all_ms: f64,
}

/// Lists one consumer's bundles and all bundles over REST (every page).
///
/// # Errors
/// REST failures.
pub async fn rest_list(rest: &RestClient, consumer: &str) -> anyhow::Result<RestList> {
    let t = Instant::now();
    let one = rest.all_bundles(&BundleFilter::consumer(consumer)).await?;
    let one_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let all = rest.all_bundles(&BundleFilter::default()).await?;
    let all_ms = t.elapsed().as_secs_f64() * 1000.0;
    Ok(RestList { one_consumer_bundles: one.len(), one_consumer_ms: one_ms, all_bundles: all.len(), all_ms })
}

/// Reconnect resync: the agent of a consumer holding `bundles` comes back on an empty cluster.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Resync {
    /// Bundles the consumer holds.
    pub bundles: usize,
    /// Time from the agent's start until every bundle is applied again, s; with more than
    /// one run (`--resync-runs`), the slowest of them.
    pub seconds: f64,
    /// Every run's time in order, s (empty in results written before `--resync-runs`).
    #[serde(default)]
    pub runs: Vec<f64>,
}

/// A resync that applies nothing new for this long has stalled (a stuck broker never resumes),
/// and fails without waiting for [`SCENARIO_DEADLINE`].
pub const RESYNC_STALL: Duration = Duration::from_secs(30);
/// [`RESYNC_STALL`] on the Pub/Sub emulator. Until issue 24 the emulator kept routing messages
/// to the restarted agent's reset StreamingPull streams and redelivered them each 10 s stream
/// ack deadline, so a resync could go several rounds with nothing new (30 s was too short in 2
/// of 4 quick runs). The transport's own StreamingPull client ends its streams cleanly since
/// (docs/benchmarks.md, "Known problems"); the wider window is kept as a margin.
pub const RESYNC_STALL_EMULATOR: Duration = Duration::from_secs(60);

/// Stops `consumer`'s agent, gives it an empty simulated cluster, restarts it and waits until
/// its `bundles` bundles (one object each) are applied again through the spec resync.
///
/// # Errors
/// Agent start failures; not resynced within [`SCENARIO_DEADLINE`] + `stall`, or no progress
/// for `stall` ([`RESYNC_STALL`], or [`RESYNC_STALL_EMULATOR`] on the Pub/Sub emulator).
pub async fn resync(
    fleet: &mut Fleet,
    consumer: &str,
    bundles: usize,
    stall: Duration,
) -> anyhow::Result<Resync> {
    fleet.stop_agent(consumer).await;
    fleet.reset_cluster(consumer);
    let cluster = fleet.cluster(consumer);
    let start = Instant::now();
    fleet.start_agent(consumer).await?;
    let (mut applied, mut progress) = (0, Instant::now());
    loop {
        let now = cluster.len();
        if now >= bundles {
            break;
        }
        if now > applied {
            (applied, progress) = (now, Instant::now());
        }
        anyhow::ensure!(
            start.elapsed() < SCENARIO_DEADLINE + stall && progress.elapsed() < stall,
            "resync of {bundles} bundles not done: {applied} applied, none for {:.0?}",
            progress.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Resync { bundles, seconds, runs: vec![seconds] })
}
