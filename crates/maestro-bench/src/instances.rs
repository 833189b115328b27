//! `maestro-bench --instances N`: several server instances on one PostgreSQL database
//! (docs/architecture.md §9). For each broker, on a fresh database each time:
//!
//! 1. end-to-end throughput with one instance, then with N (the same machine: the instances
//!    share its cores, so this shows the coordination's cost, not a scale-out gain), the source
//!    writing through every instance in turn; agents reach gRPC instances through a TCP load
//!    balancer (in both runs, so both pay its copy);
//! 2. failover: with N instances, [`FAILOVER_RATE`] bundles/s for [`FAILOVER_SECONDS`] through
//!    every instance in turn; a third of the way through the first is killed (SIGKILL) and the
//!    rest go through the others. Reported: the longest time without any bundle becoming Applied
//!    after the kill, and the slowest bundle's publish → Applied time (the worst delay a write
//!    saw: a creation the killed instance had claimed waits until it is declared dead, one
//!    `--instance-lease` after its last heartbeat).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use maestro_client::{RestClient, SourceClient};
use serde::Serialize;

use crate::env::{Broker, BrokerProcess, Database, StoreKind};
use crate::fleet::SOURCE_ID;
use crate::fleet::{Fleet, ServerProcess};
use crate::load::{self, Throughput};
use crate::{Params, bar};

/// Offered rate of the failover scenario, bundles/s.
pub const FAILOVER_RATE: f64 = 100.0;
/// How long the failover scenario offers bundles, s: longer than the default
/// `--instance-lease` (15 s) plus a heartbeat, so the killed instance is declared dead while
/// bundles still flow.
pub const FAILOVER_SECONDS: f64 = 30.0;

/// One broker's figures.
#[derive(Debug, Clone, Serialize)]
pub struct InstancesRun {
    /// The broker.
    pub broker: String,
    /// Instances in the second run and the failover.
    pub instances: usize,
    /// End to end with one instance.
    pub one: Throughput,
    /// End to end with `instances`.
    pub many: Throughput,
    /// `many` ÷ `one`.
    pub ratio: f64,
    /// Server CPU per 1,000 bundles (s), all instances together: one, many.
    pub cpu_s_per_1000: (f64, f64),
    /// The failover.
    pub failover: Failover,
}

/// What a killed instance cost.
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    /// Bundles offered (all Applied in the end).
    pub bundles: usize,
    /// Offered rate, bundles/s.
    pub rate: f64,
    /// The longest time after the kill with no bundle becoming Applied, s.
    pub gap_s: f64,
    /// The slowest bundle's publish → Applied time, s.
    pub worst_s: f64,
    /// 99th percentile publish → Applied, s.
    pub p99_s: f64,
}

/// Runs the scenarios of the module doc for each of `brokers` with `n` instances.
///
/// # Errors
/// Any failed step, naming it.
pub async fn run(
    brokers: &[Broker],
    n: usize,
    p: &Params,
    postgres: &str,
) -> anyhow::Result<Vec<InstancesRun>> {
    anyhow::ensure!(n >= 2, "--instances needs at least 2");
    let mut out = Vec::new();
    for &broker in brokers {
        anyhow::ensure!(
            broker.embedded_engine().is_none(),
            "--instances: the embedded MQTT broker lives in one server process; use mosquitto"
        );
        let process = BrokerProcess::start(broker).await?;
        let (one, cpu_one) = measure(&process, 1, p, postgres, None).await.context("one instance")?;
        let mut failover = None;
        let (many, cpu_many) = measure(&process, n, p, postgres, Some(&mut failover))
            .await
            .with_context(|| format!("{n} instances"))?;
        let failover = failover.context("the failover was not measured")?;
        out.push(InstancesRun {
            broker: broker.to_string(),
            instances: n,
            ratio: many.per_second / one.per_second,
            one,
            many,
            cpu_s_per_1000: (cpu_one, cpu_many),
            failover,
        });
    }
    Ok(out)
}

/// A TCP load balancer in front of `backends` (a Kubernetes Service): each connection goes to
/// the next backend that accepts it. Returns its address.
async fn balancer(backends: Vec<SocketAddr>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the balancer")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut next = 0;
        while let Ok((mut client, _)) = listener.accept().await {
            let _ = client.set_nodelay(true);
            for _ in 0..backends.len() {
                next = (next + 1) % backends.len();
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(backends[next]).await {
                    let _ = upstream.set_nodelay(true);
                    tokio::spawn(async move {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    });
                    break;
                }
            }
        }
    });
    Ok(addr)
}

/// Starts `n` instances on a fresh database with the fleet, measures the throughput (and,
/// with `failover`, the failover), stops them. Returns the throughput and the instances' CPU
/// per 1,000 bundles.
async fn measure(
    process: &BrokerProcess,
    n: usize,
    p: &Params,
    postgres: &str,
    failover: Option<&mut Option<Failover>>,
) -> anyhow::Result<(Throughput, f64)> {
    let bin = crate::fleet::maestro_bin()?;
    let db = Database::fresh(StoreKind::Postgres, Some(postgres)).await?;
    let result = async {
        let mut servers = Vec::with_capacity(n);
        for _ in 0..n {
            servers.push(ServerProcess::start(&bin, process, &db.url).await?);
        }
        let mut first = servers.remove(0);
        if process.broker == Broker::Grpc {
            let mut ports = vec![first.agent_url().context("no agent port")?.parse()?];
            for s in &servers {
                ports.push(s.agent_url().context("no agent port")?.parse()?);
            }
            first.set_agent_url(balancer(ports).await?.to_string());
        }
        let mut fleet = Fleet::start(first).await?;
        let mut sources = vec![fleet.source.clone()];
        for s in &servers {
            let rest = RestClient::new(&format!("http://{}", s.http))?;
            sources.push(SourceClient::connect(&s.grpc.to_string(), SOURCE_ID, rest).await?);
        }
        let consumers: Vec<String> = (0..p.consumers).map(|i| format!("fleet-{i}")).collect();
        fleet.add_consumers(&consumers, &indicatif::ProgressBar::hidden()).await?;
        fleet.start_agents(&consumers, &indicatif::ProgressBar::hidden()).await?;
        load::throughput(&sources, &consumers, (0, 1), p.concurrency, &indicatif::ProgressBar::hidden())
            .await?;
        let cpu = |fleet: &Fleet, servers: &[ServerProcess]| {
            fleet.server.usage().cpu_s + servers.iter().map(|s| s.usage().cpu_s).sum::<f64>()
        };
        let cpu0 = cpu(&fleet, &servers);
        let pb = bar(format!("{} / {n} instance(s) e2e", process.broker));
        let t =
            load::throughput(&sources, &consumers, (1, p.bundles_per_consumer), p.concurrency, &pb).await?;
        pb.finish_with_message(format!("{:.0} bundles/s", t.per_second));
        let cpu_per_1000 = (cpu(&fleet, &servers) - cpu0) / t.bundles as f64 * 1000.0;
        if let Some(slot) = failover {
            let first = 1 + p.bundles_per_consumer;
            *slot = Some(kill_one(&mut fleet, &sources, &consumers, first).await?);
        }
        fleet.shutdown().await;
        for s in servers {
            s.stop().await;
        }
        Ok((t, cpu_per_1000))
    }
    .await;
    db.remove().await;
    result
}

/// The failover of the module doc: bundles at [`FAILOVER_RATE`] for [`FAILOVER_SECONDS`]
/// through `sources` in turn (the first is the fleet's instance), that instance killed a third
/// of the way through and left out from then on.
async fn kill_one(
    fleet: &mut Fleet,
    sources: &[SourceClient],
    consumers: &[String],
    first: usize,
) -> anyhow::Result<Failover> {
    let rate = FAILOVER_RATE;
    let count = (rate * FAILOVER_SECONDS) as usize;
    let survivors = sources.get(1..).filter(|s| !s.is_empty()).context("no instance survives the kill")?;
    let mut stream = survivors[0].watch().await.context("opening the status stream")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(update)) = stream.next().await {
            if update.status.is_true("Applied") && tx.send((update.resource_id, Instant::now())).is_err() {
                return;
            }
        }
    });
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    let mut published = std::collections::HashMap::new();
    let mut killed_at = None;
    for k in 0..count {
        ticker.tick().await;
        if k == count / 3 {
            fleet.server.kill().await;
            killed_at = Some(Instant::now());
        }
        let consumer = &consumers[k % consumers.len()];
        let source = match killed_at {
            None => &sources[k % sources.len()],
            Some(_) => &survivors[k % survivors.len()],
        };
        let id = source.create(consumer, &load::work(first + k)).await.context("publishing")?;
        published.insert(id, Instant::now());
    }
    let killed_at = killed_at.context("nothing published")?;
    let deadline = Instant::now() + load::SCENARIO_DEADLINE;
    let mut applied: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
    while published.keys().any(|id| !applied.contains_key(id)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let (id, at) = tokio::time::timeout(left, rx.recv())
            .await
            .with_context(|| format!("only {}/{count} Applied after the kill", applied.len()))?
            .context("the status stream ended")?;
        applied.entry(id).or_insert(at);
    }
    watcher.abort();
    let mut times: Vec<Instant> = applied.values().copied().filter(|t| *t >= killed_at).collect();
    times.push(killed_at);
    times.sort_unstable();
    let gap_s = times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).fold(0.0, f64::max);
    let mut delays: Vec<f64> =
        published.iter().filter_map(|(id, at)| Some((*applied.get(id)? - *at).as_secs_f64())).collect();
    delays.sort_by(f64::total_cmp);
    let p99_s = delays.get(delays.len().saturating_sub(1) * 99 / 100).copied().unwrap_or(0.0);
    Ok(Failover { bundles: count, rate, gap_s, worst_s: delays.last().copied().unwrap_or(0.0), p99_s })
}

/// The Markdown table of `runs`.
pub fn markdown(runs: &[InstancesRun]) -> String {
    let mut md = String::from(
        "| broker | instances | e2e, 1 instance | e2e, N | N ÷ 1 | CPU s/1,000 (1; N) | failover: offered | longest gap without an Applied | worst publish → Applied | p99 |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let f = &r.failover;
        md.push_str(&format!(
            "| {} | {} | {:.0}/s | {:.0}/s | {:.2} | {:.2}; {:.2} | {} at {:.0}/s | {:.2} s | {:.2} s | {:.2} s |\n",
            r.broker,
            r.instances,
            r.one.per_second,
            r.many.per_second,
            r.ratio,
            r.cpu_s_per_1000.0,
            r.cpu_s_per_1000.1,
            f.bundles,
            f.rate,
            f.gap_s,
            f.worst_s,
            f.p99_s
        ));
    }
    md
}
