//! `maestro-bench --scale`: ACM size on one server (docs/benchmarks.md, "Scale"). On a fresh
//! PostgreSQL database, with the gRPC broker: `consumers` simulated agents (connected in waves
//! of [`crate::fleet::WAVE`]) and `per_consumer` realistic bundles each ([`scale_work`]: 1–5
//! manifests, 2–8 KiB), published end to end through the source gRPC API. Then, on the loaded
//! server:
//!
//! - load time and rate (publish to Applied), server CPU per 1,000 bundles, server RSS;
//! - REST pages: one consumer's page of 100 (Go grpcsource's search) and a work-label search,
//!   each beside the same query on the store alone;
//! - the full list of every bundle over REST, in streamed pages of [`FULL_LIST_PAGE`], beside
//!   PostgreSQL's own `COPY` of the same rows through `psql` (the raw read);
//! - one consumer's reconnect resync (its agent restarted on an empty cluster);
//! - a status update storm: every agent reports a change at once (its first Deployment's
//!   `readyReplicas` drops to 0, a WellKnownStatus feedback value scraped on watch), with REST
//!   probes until the source has seen every change;
//! - a server restart (SIGKILL, start again with everything stored): start-to-ready, every
//!   agent's reconnect resync, REST probes ([`crate::storm::restart_and_converge`]);
//! - beside them, PostgreSQL's own limits ([`crate::raw`]): the pgbench write limit of the
//!   server's statements per bundle (on a fresh database first), and the pgbench latency of
//!   reading one consumer's rows.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use maestro_agent::ObjectKey;
use maestro_api::payload::{
    FeedbackRule, FeedbackRuleType, FieldValue, ManifestBundle, ManifestBundleStatus, ManifestConfigOption,
    ResourceIdentifier,
};
use maestro_client::ManifestWorkInput;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::env::{Broker, BrokerProcess, Database, StoreKind};
use crate::fleet::{Fleet, ServerProcess, maestro_bin};
use crate::load::{self, RESYNC_STALL, Resync, SCENARIO_DEADLINE, Throughput};
use crate::pages::{KEEP_DB_ENV, PageTiming, time_page};
use crate::raw::{self, WriteLimit};
use crate::storm::{StormRun, probe, probe_percentiles, restart_and_converge};
use crate::{Params, bar};

/// Items per page of the full REST list (Go's largest page is 65,500).
pub const FULL_LIST_PAGE: usize = 50_000;
/// Bundles per consumer published in one round of the load (the source's status stream is
/// opened once per round).
const LOAD_ROUND: usize = 10;
/// The simulated agents' periodic status sync. At the agent's default (10 s) 2,000 in-process
/// agents polling 100 works each cost this harness more CPU than the two cores have, and
/// real agents each run on their own cluster; watched feedback (the status storm) and every
/// apply still report at once.
pub const AGENT_STATUS_SYNC: Duration = Duration::from_secs(600);
/// Untimed and timed requests of one consumer's page.
const PAGE_SAMPLES: (usize, usize) = (3, 30);
/// Untimed and timed requests of the label search: each reads every row's payload (seconds
/// at 200,000 bundles), so fewer.
const LABEL_SAMPLES: (usize, usize) = (1, 5);
/// The work label value the label search asks for (1 in 20 bundles carries it).
const SEARCHED_APP: &str = "app-7";

/// Sizes of the scale scenario.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ScaleParams {
    /// Consumers, one simulated agent each.
    pub consumers: usize,
    /// Bundles per consumer.
    pub per_consumer: usize,
    /// Publishes in flight while loading.
    pub concurrency: usize,
    /// The pgbench grid of the write limit.
    pub grid: raw::Grid,
}

impl ScaleParams {
    /// ACM size (issue 25): 2,000 consumers × 100 bundles = 200,000, 64 publishes in flight,
    /// the full pgbench grid.
    pub const FULL: ScaleParams =
        ScaleParams { consumers: 2_000, per_consumer: 100, concurrency: 64, grid: raw::FULL_GRID };
}

/// Sizes of the generated bundles: manifest JSON bytes per bundle and manifests per bundle.
#[derive(Debug, Clone, Serialize)]
pub struct BundleSizes {
    /// Smallest, mean and largest manifest JSON of one bundle, bytes.
    pub bytes: (usize, f64, usize),
    /// Mean manifests per bundle.
    pub manifests: f64,
}

/// The full REST list against PostgreSQL's own read of the same rows.
#[derive(Debug, Clone, Serialize)]
pub struct FullList {
    /// Items listed (the pages' `size` keys added up).
    pub items: usize,
    /// Pages requested.
    pub pages: usize,
    /// Response bytes.
    pub bytes: u64,
    /// Wall time of all pages, s.
    pub seconds: f64,
    /// `psql -c "COPY (SELECT * FROM resources ORDER BY created_at, id) TO STDOUT"`, s.
    pub raw_copy_s: f64,
}

/// The status update storm.
#[derive(Debug, Clone, Serialize)]
pub struct StatusStorm {
    /// Agents that reported a change.
    pub agents: usize,
    /// From the changes on every cluster until the source saw all of them, s.
    pub converged_s: f64,
    /// REST probes made meanwhile.
    pub probes: usize,
    /// Probes that failed or took longer than [`crate::storm::PROBE_TIMEOUT`].
    pub probe_failures: usize,
    /// Probe p50, p99, max, ms.
    pub probe_ms: (f64, f64, f64),
}

/// PostgreSQL's own limits, same run ([`crate::raw`]).
#[derive(Debug, Clone, Serialize)]
pub struct RawLimits {
    /// pgbench running the server's statements per bundle.
    pub write: WriteLimit,
    /// pgbench latency of one consumer's rows (`SELECT *`, its 100 in list order), ms.
    pub consumer_rows_ms: f64,
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// The sizes asked for.
    pub params: ScaleParams,
    /// Bundles stored (consumers × per consumer).
    pub bundles: usize,
    /// What one bundle holds.
    pub sizes: BundleSizes,
    /// Consumers registered and agents connected, s.
    pub agents_s: f64,
    /// Publish to Applied of every bundle.
    pub load: Throughput,
    /// Server CPU during the load, s per 1,000 bundles.
    pub load_cpu_s_per_1000: f64,
    /// Server RSS holding every bundle with every agent connected, after the load, MiB.
    pub rss_mib: f64,
    /// One consumer's page of 100, grpcsource search.
    pub consumer_page: PageTiming,
    /// A work-label search, page of 100.
    pub label_search: PageTiming,
    /// Every bundle over REST.
    pub full_list: FullList,
    /// One consumer's reconnect resync.
    pub resync_one: Resync,
    /// Every agent reports a status change at once.
    pub status_storm: StatusStorm,
    /// The server killed and started again: `restart_s` is kill to ready.
    pub restart: StormRun,
    /// PostgreSQL's own limits.
    pub raw: RawLimits,
}

/// Scale bundle `i`: a Deployment `d-<i>` (its WellKnownStatus feedback scraped on watch),
/// then `i % 5` more of a Service, ConfigMaps and a Secret, the last one padded by an
/// annotation so the manifests' JSON is 2–8 KiB (spread over `i`); work labels
/// `app: app-<i % 20>` and `tier: t-<i % 3>`.
pub fn scale_work(i: usize) -> ManifestWorkInput {
    let mut manifests = vec![deployment(i)];
    for k in 1..=i % 5 {
        manifests.push(match k {
            1 => service(i),
            3 => secret(i),
            _ => config_map(i, k),
        });
    }
    let target = 2048 + i.wrapping_mul(2_654_435_761) % 6145;
    let used: usize = manifests.iter().map(|m| m.to_string().len()).sum();
    let pad = target.saturating_sub(used + 40);
    if let Some(last) = manifests.last_mut() {
        last["metadata"]["annotations"] = json!({"bench.maestro.io/padding": "x".repeat(pad)});
    }
    let config = ManifestConfigOption {
        resource_identifier: ResourceIdentifier {
            group: "apps".into(),
            resource: "deployments".into(),
            name: format!("d-{i}"),
            namespace: "default".into(),
        },
        feedback_rules: vec![FeedbackRule { kind: FeedbackRuleType::WellKnownStatus, json_paths: vec![] }],
        feedback_scrape_type: Some("Watch".into()),
        ..Default::default()
    };
    ManifestWorkInput {
        name: format!("b-{i}"),
        labels: [("app".to_owned(), format!("app-{}", i % 20)), ("tier".to_owned(), format!("t-{}", i % 3))]
            .into_iter()
            .collect(),
        bundle: ManifestBundle { manifests, manifest_configs: vec![config], ..Default::default() },
        ..Default::default()
    }
}

fn deployment(i: usize) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("d-{i}"), "namespace": "default", "labels": {"app": format!("d-{i}")}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": format!("d-{i}")}},
            "template": {
                "metadata": {"labels": {"app": format!("d-{i}")}},
                "spec": {"containers": [{
                    "name": "main",
                    "image": format!("quay.io/example/app:1.{}", i % 10),
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "MODE", "value": "production"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}
                }]}
            }
        }
    })
}

fn service(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("s-{i}"), "namespace": "default"},
        "spec": {"selector": {"app": format!("d-{i}")}, "ports": [{"port": 80, "targetPort": 8080}]}
    })
}

fn config_map(i: usize, k: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i}-{k}"), "namespace": "default"},
        "data": {"settings.yaml": format!("replicas: 2\nlevel: info\nshard: {k}\n")}
    })
}

fn secret(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("sec-{i}"), "namespace": "default"},
        "type": "Opaque",
        "data": {"token": "c2NhbGUtYmVuY2htYXJr"}
    })
}

/// Manifest JSON sizes and counts of the bundles `0..per_consumer` (every consumer holds the
/// same indices).
fn bundle_sizes(per_consumer: usize) -> BundleSizes {
    let works: Vec<ManifestWorkInput> = (0..per_consumer).map(scale_work).collect();
    let bytes: Vec<usize> =
        works.iter().map(|w| w.bundle.manifests.iter().map(|m| m.to_string().len()).sum()).collect();
    let n = works.len().max(1) as f64;
    BundleSizes {
        bytes: (
            bytes.iter().copied().min().unwrap_or(0),
            bytes.iter().sum::<usize>() as f64 / n,
            bytes.iter().copied().max().unwrap_or(0),
        ),
        manifests: works.iter().map(|w| w.bundle.manifests.len()).sum::<usize>() as f64 / n,
    }
}

/// Runs the scenario on a fresh database of `postgres_admin`.
///
/// # Errors
/// Any failed step, naming it.
pub async fn run(postgres_admin: &str, sp: ScaleParams) -> anyhow::Result<ScaleReport> {
    let write = raw::write_limit(postgres_admin, sp.consumers.max(1), sp.grid)
        .await
        .context("the pgbench write limit")?;
    let db = Database::fresh(StoreKind::Postgres, Some(postgres_admin)).await?;
    let mut process = BrokerProcess::start(Broker::Grpc).await?;
    let result = measure(&db, &mut process, sp, write).await;
    if std::env::var_os(KEEP_DB_ENV).is_some() {
        eprintln!("database kept: {}", db.url);
    } else {
        db.remove().await;
    }
    result
}

async fn measure(
    db: &Database,
    process: &mut BrokerProcess,
    sp: ScaleParams,
    write: WriteLimit,
) -> anyhow::Result<ScaleReport> {
    let server = ServerProcess::start(&maestro_bin()?, process, &db.url).await?;
    let mut fleet = Fleet::start(server).await?;
    fleet.set_status_sync_interval(AGENT_STATUS_SYNC);
    let consumers: Vec<String> = (0..sp.consumers.max(1)).map(|i| format!("scale-{i:05}")).collect();
    let t = Instant::now();
    let pb = bar("scale: consumers".into());
    fleet.add_consumers(&consumers, &pb).await?;
    pb.finish();
    let pb = bar("scale: agents".into());
    fleet.start_agents(&consumers, &pb).await?;
    pb.finish();
    let agents_s = t.elapsed().as_secs_f64();

    let cpu0 = fleet.server.usage().cpu_s;
    let load = load_bundles(&fleet, &consumers, sp).await?;
    let usage = fleet.server.usage();
    let load_cpu_s_per_1000 = (usage.cpu_s - cpu0) / load.bundles.max(1) as f64 * 1000.0;

    let (consumer_page, label_search) = pages(&fleet, &db.url, &consumers).await?;
    let full_list = full_list(&fleet, &db.url).await?;
    let rows = format!(
        "SELECT * FROM resources WHERE consumer_name = '{}' ORDER BY created_at, id",
        consumers[consumers.len() / 2]
    );
    let raw = RawLimits { write, consumer_rows_ms: raw::read_latency_ms(&db.url, &rows).await? };
    eprintln!("  resync of one consumer");
    let objects: usize = (0..sp.per_consumer).map(|i| 1 + i % 5).sum();
    let mut resync_one = load::resync(&mut fleet, &consumers[0], objects, RESYNC_STALL).await?;
    resync_one.bundles = sp.per_consumer;
    eprintln!("  status storm");
    let status_storm = status_storm(&mut fleet, &consumers).await?;
    eprintln!("  server restart");
    let params = Params { concurrency: sp.concurrency, ..Params::quick() };
    let mut restart = restart_and_converge(&mut fleet, process, &consumers, sp.per_consumer, &params).await?;
    restart.store = StoreKind::Postgres.to_string();
    fleet.shutdown().await;
    Ok(ScaleReport {
        params: sp,
        bundles: load.bundles,
        sizes: bundle_sizes(sp.per_consumer),
        agents_s,
        load,
        load_cpu_s_per_1000,
        rss_mib: usage.rss_mib,
        consumer_page,
        label_search,
        full_list,
        resync_one,
        status_storm,
        restart,
        raw,
    })
}

/// Publishes every bundle in rounds of [`LOAD_ROUND`] per consumer; the load as one figure.
async fn load_bundles(fleet: &Fleet, consumers: &[String], sp: ScaleParams) -> anyhow::Result<Throughput> {
    let pb = bar("scale: bundles Applied".into());
    let sources = std::slice::from_ref(&fleet.source);
    let (mut bundles, mut seconds) = (0, 0.0);
    let mut first = 0;
    while first < sp.per_consumer {
        let n = LOAD_ROUND.min(sp.per_consumer - first);
        let round = load::throughput_of(scale_work, sources, consumers, (first, n), sp.concurrency, &pb)
            .await
            .with_context(|| format!("loading bundles {first}..{} of every consumer", first + n))?;
        bundles += round.bundles;
        seconds += round.seconds;
        first += n;
        eprintln!("  {bundles} bundles Applied, {:.0}/s", bundles as f64 / seconds);
    }
    pb.finish();
    Ok(Throughput { bundles, seconds, per_second: bundles as f64 / seconds.max(f64::EPSILON) })
}

/// One consumer's page of 100 and a work-label search, over REST and on the store alone.
async fn pages(
    fleet: &Fleet,
    db_url: &str,
    consumers: &[String],
) -> anyhow::Result<(PageTiming, PageTiming)> {
    let store = maestro_store::open(db_url).await?;
    let base = format!("http://{}/api/maestro/v1/resource-bundles", fleet.server.http);
    maestro_tls::install_process_provider();
    let http = reqwest::Client::new();
    let consumer = &consumers[consumers.len() / 2];
    let on = (&http, base.as_str(), &store);
    eprintln!("  page: one consumer");
    let search = format!("source='{}' and consumer_name='{consumer}'", crate::fleet::SOURCE_ID);
    let label = "one consumer, page of 100".to_owned();
    let one = time_page(on, label, vec![("search", search)], PAGE_SAMPLES).await?;
    eprintln!("  page: label search");
    let search = format!(r#"payload->'metadata'->'labels'@>'{{"app":"{SEARCHED_APP}"}}'"#);
    let label = "work label @>, page of 100".to_owned();
    let label = time_page(on, label, vec![("search", search)], LABEL_SAMPLES).await?;
    Ok((one, label))
}

/// Lists every bundle over REST in pages of [`FULL_LIST_PAGE`] (bytes counted and dropped as
/// they stream), then times PostgreSQL's `COPY` of the same rows.
async fn full_list(fleet: &Fleet, db_url: &str) -> anyhow::Result<FullList> {
    eprintln!("  full list");
    let base = format!("http://{}/api/maestro/v1/resource-bundles", fleet.server.http);
    maestro_tls::install_process_provider();
    let http = reqwest::Client::builder().timeout(SCENARIO_DEADLINE).build()?;
    let (mut items, mut pages, mut bytes) = (0, 0, 0u64);
    let t = Instant::now();
    loop {
        pages += 1;
        let query = [("page", pages.to_string()), ("size", FULL_LIST_PAGE.to_string())];
        let mut resp = http.get(&base).query(&query).send().await?.error_for_status()?;
        let mut tail = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            bytes += chunk.len() as u64;
            tail.extend_from_slice(&chunk);
            tail.drain(..tail.len().saturating_sub(128));
        }
        let size = page_size(&tail).with_context(|| format!("page {pages} has no size key at its end"))?;
        items += size;
        if size < FULL_LIST_PAGE {
            break;
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    raw::psql(db_url, "COPY (SELECT * FROM resources ORDER BY created_at, id) TO STDOUT").await?;
    Ok(FullList { items, pages, bytes, seconds, raw_copy_s: t.elapsed().as_secs_f64() })
}

/// The `size` key of a page from the last bytes of its body (it comes after `items`).
fn page_size(tail: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(tail);
    let at = text.rfind("\"size\":")? + "\"size\":".len();
    let digits: String = text[at..].trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Every agent's first Deployment (`d-0`) reports `readyReplicas: 0` at once; waits until
/// the source has seen the change of every one, probing REST meanwhile.
async fn status_storm(fleet: &mut Fleet, consumers: &[String]) -> anyhow::Result<StatusStorm> {
    let mut stream = fleet.source.watch().await.context("opening the status stream")?;
    let key = ObjectKey::new("apps/v1", "Deployment", "default", "d-0");
    let clusters: Vec<_> = consumers.iter().map(|c| fleet.cluster(c)).collect();
    let start = Instant::now();
    let missing =
        clusters.iter().filter(|c| !c.modify(&key, |o| o["status"]["readyReplicas"] = json!(0))).count();
    anyhow::ensure!(missing == 0, "{missing} clusters hold no Deployment d-0");
    let stop = CancellationToken::new();
    let wait = async {
        let mut seen = HashSet::new();
        let deadline = tokio::time::Instant::now() + SCENARIO_DEADLINE;
        while seen.len() < consumers.len() {
            let next = tokio::time::timeout_at(deadline, stream.next()).await.with_context(|| {
                format!(
                    "{} of {} status changes seen after {SCENARIO_DEADLINE:?}",
                    seen.len(),
                    consumers.len()
                )
            })?;
            let update = next.context("the status stream ended")??;
            if no_ready_replicas(&update.status) {
                seen.insert(update.resource_id);
            }
        }
        stop.cancel();
        anyhow::Ok(start.elapsed().as_secs_f64())
    };
    let (probes, converged) = tokio::join!(probe(&fleet.rest, consumers, stop.clone()), wait);
    Ok(StatusStorm {
        agents: consumers.len(),
        converged_s: converged?,
        probes: probes.len(),
        probe_failures: probes.iter().filter(|t| t.is_none()).count(),
        probe_ms: probe_percentiles(&probes),
    })
}

/// True when a Deployment of `status` has the feedback value `ReadyReplicas` = 0.
fn no_ready_replicas(status: &ManifestBundleStatus) -> bool {
    status.resource_status.iter().filter(|m| m.resource_meta.kind == "Deployment").any(|m| {
        m.status_feedback
            .values
            .iter()
            .any(|v| v.name == "ReadyReplicas" && matches!(v.field_value, FieldValue::Integer { integer: 0 }))
    })
}

/// The report as a Markdown table, each figure beside its target (docs/benchmarks.md).
pub fn markdown(r: &ScaleReport) -> String {
    let s = &r.sizes;
    let mut md = format!(
        "{} consumers × {} bundles = {} on PostgreSQL, gRPC broker; bundles {}–{} bytes of manifests \
         (mean {:.0}), {:.1} manifests on average.\n\n| figure | value | target |\n|---|---|---|\n",
        r.params.consumers, r.params.per_consumer, r.bundles, s.bytes.0, s.bytes.2, s.bytes.1, s.manifests
    );
    load_rows(&mut md, r);
    read_rows(&mut md, r);
    storm_rows(&mut md, r);
    md
}

/// One row of the table.
fn row(md: &mut String, figure: &str, value: String, target: &str) {
    md.push_str(&format!("| {figure} | {value} | {target} |\n"));
}

/// The rows of the write limit, the load, its CPU and the RSS.
fn load_rows(md: &mut String, r: &ScaleReport) {
    let w = &r.raw.write;
    row(
        md,
        "PostgreSQL write limit (pgbench, the server's statements per bundle)",
        format!("{:.0} bundles/s ({} clients, {} per transaction)", w.bundles_per_s, w.clients, w.batch),
        "",
    );
    row(md, "consumers registered and agents connected", format!("{:.1} s", r.agents_s), "");
    row(
        md,
        "load, publish to Applied",
        format!("{:.1} s, {:.0} bundles/s", r.load.seconds, r.load.per_second),
        "",
    );
    row(
        md,
        "load ÷ pgbench write limit",
        format!("{:.2}", r.load.per_second / w.bundles_per_s.max(f64::EPSILON)),
        "≥ 0.6 (full run)",
    );
    row(
        md,
        "server CPU during the load",
        format!("{:.2} s per 1,000 bundles", r.load_cpu_s_per_1000),
        "≤ 0.15",
    );
    row(
        md,
        "server RSS holding them, agents connected",
        format!("{:.1} MiB", r.rss_mib),
        "< 150 MB (143 MiB)",
    );
}

/// The rows of the pages, the raw read, the full list and one consumer's resync.
fn read_rows(md: &mut String, r: &ScaleReport) {
    let f = &r.full_list;
    let page = |p: &PageTiming| {
        format!(
            "{} / {} items, REST p50 {:.1} / p95 {:.1} ms, store alone p50 {:.1} ms",
            p.items, p.total, p.rest_ms.0, p.rest_ms.1, p.store_ms.0
        )
    };
    row(md, "one consumer's page of 100", page(&r.consumer_page), "< 20 ms");
    row(
        md,
        "one consumer's rows, pgbench (raw read)",
        format!(
            "{:.2} ms; REST page ÷ raw {:.1}, resync ÷ raw {:.1}",
            r.raw.consumer_rows_ms,
            r.consumer_page.rest_ms.0 / r.raw.consumer_rows_ms.max(f64::EPSILON),
            r.resync_one.seconds * 1000.0 / r.raw.consumer_rows_ms.max(f64::EPSILON)
        ),
        "",
    );
    row(md, "work-label search, page of 100", page(&r.label_search), "");
    row(
        md,
        "full list over REST",
        format!(
            "{} items in {} pages, {:.0} MB, {:.1} s; psql COPY {:.1} s; ratio {:.2}",
            f.items,
            f.pages,
            f.bytes as f64 / 1e6,
            f.seconds,
            f.raw_copy_s,
            f.seconds / f.raw_copy_s.max(f64::EPSILON)
        ),
        "≤ 2× the raw read",
    );
    row(
        md,
        "one consumer's resync",
        format!("{} bundles, {:.0} ms", r.resync_one.bundles, r.resync_one.seconds * 1000.0),
        "< 100 ms",
    );
}

/// The rows of the status storm and the server restart.
fn storm_rows(md: &mut String, r: &ScaleReport) {
    let st = &r.status_storm;
    row(
        md,
        "status storm, every agent at once",
        format!(
            "{} agents, all seen in {:.1} s; {} probes ({} failed), p50 / p99 / max {:.0} / {:.0} / {:.0} ms",
            st.agents,
            st.converged_s,
            st.probes,
            st.probe_failures,
            st.probe_ms.0,
            st.probe_ms.1,
            st.probe_ms.2
        ),
        "no request over 1 s",
    );
    let rs = &r.restart;
    row(md, "server restart, kill to ready", format!("{:.1} s", rs.restart_s), "< 5 s");
    row(
        md,
        "every agent's reconnect resync after the restart",
        format!(
            "all subscribed {:.1} s, all converged {:.1} s; {} probes ({} failed), p50 / p99 / max {:.0} / {:.0} / {:.0} ms",
            rs.resubscribed_s,
            rs.converged_s,
            rs.probes,
            rs.probe_failures,
            rs.probe_ms.0,
            rs.probe_ms.1,
            rs.probe_ms.2
        ),
        "< 60 s, no request over 1 s",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_bundles_hold_one_to_five_manifests_of_two_to_eight_kib() {
        for i in 0..500 {
            let w = scale_work(i);
            let n = w.bundle.manifests.len();
            assert_eq!(n, 1 + i % 5, "bundle {i}");
            let bytes: usize = w.bundle.manifests.iter().map(|m| m.to_string().len()).sum();
            assert!((1900..=8300).contains(&bytes), "bundle {i}: {bytes} bytes");
        }
        let sizes = bundle_sizes(100);
        assert!(sizes.bytes.1 > 4000.0 && sizes.bytes.1 < 6500.0, "{sizes:?}");
    }

    #[test]
    fn the_page_size_is_read_from_the_end_of_a_page() {
        assert_eq!(page_size(br#"...}],"size":50000,"total":200000}"#), Some(50000));
        assert_eq!(page_size(br#"..."items":[]}"#), None);
    }
}
