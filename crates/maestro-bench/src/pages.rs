//! The REST pages scenario (`maestro-bench --pages N`): N bundles with statuses stored on a
//! fresh PostgreSQL database, then pages of the REST list — sorted (`orderBy`), deep, one
//! consumer's (Go grpcsource's search), searched by work label — each timed over REST against
//! a running server and, as the raw limit of the same run, the same page read from the store
//! alone (`Store::list_resources_raw`: the count and page queries, no HTTP or JSON writing).
//! docs/rest.md, "Ordering", describes the indexes these pages use.

use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::ProgressBar;
use maestro_api::codec::SpecEventBuilder;
use maestro_search::Table;
use maestro_store::{DynStore, NewConsumer, NewResource, Paging, ResourceQuery};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::env::{Broker, BrokerProcess, Database, StoreKind};
use crate::fleet::{ServerProcess, maestro_bin};
use crate::limits::status;
use crate::load::work;

/// Timed requests per page (after [`WARM_UP`] untimed ones).
const SAMPLES: usize = 30;
/// Untimed requests before each page's samples.
const WARM_UP: usize = 3;
/// Bundle creations and status writes in flight while loading.
const LOAD_CONCURRENCY: usize = 64;
/// When set, the scenario's database is kept (its URL printed) for a look with psql.
pub const KEEP_DB_ENV: &str = "MAESTRO_BENCH_KEEP_DB";
/// The source id the bundles are stored under.
const SOURCE: &str = "maestro-bench";

/// One page's timings: p50 and p95 over [`SAMPLES`] requests, in ms.
#[derive(Debug, Clone, Serialize)]
pub struct PageTiming {
    /// What the page is.
    pub label: String,
    /// The REST query string.
    pub query: String,
    /// Items on the page.
    pub items: usize,
    /// The page's `total`.
    pub total: i64,
    /// REST p50 / p95 (ms), request to last body byte.
    pub rest_ms: (f64, f64),
    /// Store alone p50 / p95 (ms): `list_resources_raw` for the same query.
    pub store_ms: (f64, f64),
}

/// The scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct PagesReport {
    /// Bundles stored.
    pub bundles: usize,
    /// Consumers they are spread over.
    pub consumers: usize,
    /// Load time (s) of bundles and statuses through the store.
    pub load_s: f64,
    /// The pages.
    pub pages: Vec<PageTiming>,
}

/// The pages measured: (label, REST query parameters).
fn pages(consumers: usize, bundles: usize) -> Vec<(String, Vec<(&'static str, String)>)> {
    let consumer = format!("c-{:05}", consumers / 2);
    let deep = (bundles / 100).max(1);
    vec![
        ("default order (created_at, id)".into(), vec![]),
        ("orderBy=name asc".into(), vec![("orderBy", "name asc".into())]),
        ("orderBy=created_at desc".into(), vec![("orderBy", "created_at desc".into())]),
        ("orderBy=name desc, created_at asc".into(), vec![("orderBy", "name desc, created_at asc".into())]),
        (format!("last page ({deep}), default order"), vec![("page", deep.to_string())]),
        ("orderBy=updated_at desc (not indexed)".into(), vec![("orderBy", "updated_at desc".into())]),
        (
            "one consumer, grpcsource search, size 400".into(),
            vec![
                ("search", format!("source='{SOURCE}' and consumer_name='{consumer}'")),
                ("size", "400".into()),
            ],
        ),
        (
            "one consumer and a work label, grpcsource search".into(),
            vec![(
                "search",
                format!(
                    r#"source='{SOURCE}' and consumer_name='{consumer}' and payload->'metadata'->'labels'@>'{{"app":"app-0"}}'"#
                ),
            )],
        ),
        (
            "work label @> (1 in 20 bundles)".into(),
            vec![("search", r#"payload->'metadata'->'labels'@>'{"app":"app-7"}'"#.into())],
        ),
        (
            "work label in (…) (1 in 10)".into(),
            vec![("search", "payload->'metadata'->'labels'->>'app' in ('app-1','app-2')".into())],
        ),
    ]
}

/// Runs the scenario on a fresh database of `postgres_admin`.
///
/// # Errors
/// Database, server start and request failures.
pub async fn run(postgres_admin: &str, bundles: usize, consumers: usize) -> anyhow::Result<PagesReport> {
    let db = Database::fresh(StoreKind::Postgres, Some(postgres_admin)).await?;
    let result = measure(&db, bundles, consumers.max(1)).await;
    if std::env::var_os(KEEP_DB_ENV).is_some() {
        eprintln!("database kept: {}", db.url);
    } else {
        db.remove().await;
    }
    result
}

async fn measure(db: &Database, bundles: usize, consumers: usize) -> anyhow::Result<PagesReport> {
    let store = maestro_store::open(&db.url).await?;
    let start = Instant::now();
    load(&store, bundles, consumers).await?;
    let load_s = start.elapsed().as_secs_f64();
    // As autovacuum would have done on a long-running database: fresh statistics and a
    // visibility map for index-only counts.
    crate::raw::psql(&db.url, "VACUUM ANALYZE").await?;
    let broker = BrokerProcess::start(Broker::Grpc).await?;
    let server = ServerProcess::start(&maestro_bin()?, &broker, &db.url).await?;
    let base = format!("http://{}/api/maestro/v1/resource-bundles", server.http);
    maestro_tls::install_process_provider();
    let http = reqwest::Client::new();
    let mut timings = Vec::new();
    for (label, query) in pages(consumers, bundles) {
        eprintln!("  page: {label}");
        timings.push(time_page((&http, &base, &store), label, query, (WARM_UP, SAMPLES)).await?);
    }
    server.stop().await;
    Ok(PagesReport { bundles, consumers, load_s, pages: timings })
}

/// Stores `bundles` bundles over `consumers` consumers (`c-00000`…), each with an agent-sized
/// status, and marks their outbox rows done (no agent is connected to take them).
async fn load(store: &DynStore, bundles: usize, consumers: usize) -> anyhow::Result<()> {
    let bar = ProgressBar::new(bundles as u64).with_message("loading bundles");
    for c in 0..consumers {
        let labels = [("region".to_owned(), format!("r-{}", c % 4))].into_iter().collect();
        store.create_consumer(NewConsumer { name: Some(format!("c-{c:05}")), labels }).await?;
    }
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..bundles)
        .map(|i| {
            let bar = bar.clone();
            async move {
                let id = uuid_for(i);
                store.create_resource(new_resource(&id, i, consumers)).await?;
                store.apply_status(status(&id)).await?;
                bar.inc(1);
                Ok(())
            }
        })
        .buffer_unordered(LOAD_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    bar.finish_and_clear();
    loop {
        let rows = store.pending_spec_events(5_000).await?;
        if rows.is_empty() {
            return Ok(());
        }
        store.complete_spec_events(&rows.iter().map(|r| r.seq).collect::<Vec<_>>()).await?;
    }
}

fn uuid_for(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// Bundle `i`: the benchmark's ConfigMap bundle on consumer `i % consumers`, with work labels
/// `app: app-<i % 20>` and `tier: t-<i % 3>`.
fn new_resource(id: &str, i: usize, consumers: usize) -> NewResource {
    let consumer = format!("c-{:05}", i % consumers);
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(format!("b-{i}")));
    metadata
        .insert("labels".into(), json!({"app": format!("app-{}", i % 20), "tier": format!("t-{}", i % 3)}));
    let spec =
        SpecEventBuilder::new(SOURCE, id, 0, &consumer).metadata(metadata).bundle(&work(i).bundle).build();
    NewResource {
        id: id.to_owned(),
        name: format!("b-{i}"),
        consumer_name: consumer,
        source: SOURCE.into(),
        payload: maestro_api::json::to_value(&spec).into(),
    }
}

/// Times `query` over REST and on the store alone, `samples` requests each after `warm_up`
/// untimed ones.
pub(crate) async fn time_page(
    (http, base, store): (&reqwest::Client, &str, &DynStore),
    label: String,
    query: Vec<(&'static str, String)>,
    (warm_up, samples): (usize, usize),
) -> anyhow::Result<PageTiming> {
    let mut rest = Vec::with_capacity(samples);
    let mut first: Option<Value> = None;
    for n in 0..warm_up + samples {
        let t = Instant::now();
        let resp = http.get(base).query(&query).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        let took = t.elapsed();
        anyhow::ensure!(status.is_success(), "{label}: HTTP {status}: {}", String::from_utf8_lossy(&body));
        if first.is_none() {
            first = Some(serde_json::from_slice(&body)?);
        }
        if n >= warm_up {
            rest.push(took);
        }
    }
    let body = first.unwrap_or_default();
    let q = store_query(&query)?;
    let mut alone = Vec::with_capacity(samples);
    for n in 0..warm_up + samples {
        let t = Instant::now();
        store.list_resources_raw(&q).await?;
        if n >= warm_up {
            alone.push(t.elapsed());
        }
    }
    Ok(PageTiming {
        label,
        query: query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"),
        items: body["items"].as_array().map_or(0, Vec::len),
        total: body["total"].as_i64().unwrap_or(-1),
        rest_ms: percentiles(rest),
        store_ms: percentiles(alone),
    })
}

/// The store query the REST query asks for.
fn store_query(query: &[(&str, String)]) -> anyhow::Result<ResourceQuery> {
    let get = |k: &str| query.iter().find(|(key, _)| *key == k).map(|(_, v)| v.as_str());
    let paging = Paging {
        page: get("page").map_or(Ok(1), str::parse)?,
        size: get("size").map_or(Ok(100), str::parse)?,
    };
    Ok(ResourceQuery {
        paging,
        search: maestro_search::compile(get("search").unwrap_or(""), Table::Resources)?,
        order: maestro_search::parse_order_by(get("orderBy").unwrap_or(""), Table::Resources)?,
        ..Default::default()
    })
}

/// (p50, p95) in ms.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    (at(0.5), at(0.95))
}

/// The report as a Markdown table.
pub fn markdown(r: &PagesReport) -> String {
    let mut out = format!(
        "{} bundles with statuses over {} consumers on PostgreSQL, loaded in {:.1} s; pages of 100 \
         unless noted; {SAMPLES} requests each after {WARM_UP} warm-up ones.\n\n\
         | page | items / total | REST p50 / p95 (ms) | store alone p50 / p95 (ms) | REST ÷ store (p50) |\n|---|---|---|---|---|\n",
        r.bundles, r.consumers, r.load_s
    );
    for p in &r.pages {
        let ratio = if p.store_ms.0 > 0.0 { p.rest_ms.0 / p.store_ms.0 } else { 0.0 };
        out.push_str(&format!(
            "| {} | {} / {} | {:.1} / {:.1} | {:.1} / {:.1} | {ratio:.2} |\n",
            p.label, p.items, p.total, p.rest_ms.0, p.rest_ms.1, p.store_ms.0, p.store_ms.1
        ));
    }
    out
}
