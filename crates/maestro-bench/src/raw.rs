//! PostgreSQL's own limits for the scale scenario, measured by its own tools rather than this
//! project's store code (docs/benchmarks.md, "Scale"):
//!
//! - **write limit**: `pgbench` with custom scripts running, per bundle, the statements the
//!   server runs — the resource and spec outbox inserts behind the consumer check (one
//!   transaction), the outbox row marked done (asynchronous commit, as the dispatcher does),
//!   and the status write (rows locked, status updated, status event appended under the
//!   advisory lock) — over a grid of client counts and batch sizes, each run on emptied tables;
//!   the best is the limit. The status written is the agents' status event of a one-ConfigMap
//!   bundle ([`crate::limits`], 1,752 bytes), not the larger one of a scale bundle; the
//!   dispatcher's and fan-out's reads and the outbox claim columns are left out;
//! - **read limit**: `pgbench` latency of reading one consumer's rows (100 at full size), and `psql`'s
//!   `COPY` of every resource row (in [`crate::scale`]).

use std::path::{Path, PathBuf};
use tokio::process::Command;

use anyhow::Context;
use maestro_api::codec::SpecEventBuilder;
use maestro_store::NewConsumer;
use serde::Serialize;

use crate::env::{Database, StoreKind};
use crate::limits::status;
use crate::scale::scale_work;

/// The client counts and bundles per transaction tried for the write limit (the server's group
/// commit writes every queued creation in one transaction).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Grid {
    /// Client counts (connections).
    pub clients: &'static [usize],
    /// Bundles per transaction.
    pub batches: &'static [usize],
}

/// The full grid: 16 runs (80 s), for the scale scenario and the full run.
pub const FULL_GRID: Grid = Grid { clients: &[2, 4, 16, 64], batches: &[1, 8, 32, 128] };
/// Where the full grid's best runs have been (2–4 clients, 32–128 per transaction): 4 runs
/// (20 s), for the quick run.
pub const QUICK_GRID: Grid = Grid { clients: &[2, 4], batches: &[32, 128] };
/// Seconds each pgbench run lasts.
const RUN_SECONDS: u64 = 5;
/// Bundle indices of the write scripts (one script each, picked at random by pgbench): 1 to 5
/// manifests, each near the scale bundles' mean size (5,009–5,253 bytes of manifest JSON
/// against a mean of 5,111 over `0..100`).
const SCRIPT_BUNDLES: [usize; 5] = [95, 36, 57, 53, 19];

/// One pgbench run of the write scripts.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WriteTry {
    /// Clients (connections).
    pub clients: usize,
    /// Bundles per transaction.
    pub batch: usize,
    /// Bundles written per second (script runs per second × batch).
    pub bundles_per_s: f64,
}

/// The write limit: the best of the grid.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WriteLimit {
    /// The best bundles per second.
    pub bundles_per_s: f64,
    /// Clients of the best run.
    pub clients: usize,
    /// Batch of the best run.
    pub batch: usize,
    /// Every run.
    pub tried: Vec<WriteTry>,
}

/// The `pgbench` binary: `$PGBENCH`, else on `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin/pgbench`.
///
/// # Errors
/// When none is found, naming where it looked.
pub fn pgbench_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PGBENCH") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("pgbench"));
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin/pgbench")))
        .collect();
    installed.sort_by_key(|p| p.to_string_lossy().split('/').nth(4).and_then(|v| v.parse::<u32>().ok()));
    on_path.chain(installed.into_iter().rev()).find(|p| p.is_file()).context(
        "pgbench was not found on PATH or under /usr/lib/postgresql/*/bin (install postgresql, or set PGBENCH)",
    )
}

/// Measures the write limit over `grid` on a fresh database of `admin` holding `consumers`
/// consumers (`scale-00000`…), each script's bundles on a random one of them.
///
/// # Errors
/// Database, pgbench and output-parsing failures.
pub async fn write_limit(admin: &str, consumers: usize, grid: Grid) -> anyhow::Result<WriteLimit> {
    let db = Database::fresh(StoreKind::Postgres, Some(admin)).await?;
    let result = write_limit_on(&db.url, consumers, grid).await;
    db.remove().await;
    result
}

async fn write_limit_on(url: &str, consumers: usize, grid: Grid) -> anyhow::Result<WriteLimit> {
    {
        let store = maestro_store::open(url).await?;
        for c in 0..consumers {
            store
                .create_consumer(NewConsumer { name: Some(format!("scale-{c:05}")), ..Default::default() })
                .await?;
        }
    }
    let dir = tempfile::tempdir().context("creating a directory for the pgbench scripts")?;
    let bin = pgbench_bin()?;
    let mut tried = Vec::new();
    for &batch in grid.batches {
        let scripts = write_scripts(dir.path(), consumers, batch)?;
        for &clients in grid.clients {
            eprintln!("  pgbench write: {clients} clients, {batch} bundles per transaction");
            // Each run starts from the same (empty) tables, as the first did.
            psql(url, "TRUNCATE resources, spec_events, status_events").await?;
            let out = pgbench(&bin, url, clients, &scripts).await?;
            let tps = parse_after(&out, "tps = ").context("no tps in pgbench's output")?;
            tried.push(WriteTry { clients, batch, bundles_per_s: tps * batch as f64 });
        }
    }
    let best = tried
        .iter()
        .max_by(|a, b| a.bundles_per_s.total_cmp(&b.bundles_per_s))
        .context("no pgbench run")?
        .clone();
    Ok(WriteLimit { bundles_per_s: best.bundles_per_s, clients: best.clients, batch: best.batch, tried })
}

/// Average latency (ms) of `sql` run over and over by one pgbench client for [`RUN_SECONDS`].
///
/// # Errors
/// pgbench and output-parsing failures.
pub async fn read_latency_ms(url: &str, sql: &str) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir().context("creating a directory for the pgbench script")?;
    let script = dir.path().join("read.sql");
    std::fs::write(&script, format!("{sql};\n"))?;
    let out = pgbench(&pgbench_bin()?, url, 1, &[script]).await?;
    parse_after(&out, "latency average = ").context("no latency in pgbench's output")
}

/// Runs `sql` through `psql` on `url`, its output dropped.
///
/// # Errors
/// psql missing, or failing (with its standard error).
pub async fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new("psql");
    cmd.args([url, "-qc", sql]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let out = cmd.output().await.context("running psql")?;
    anyhow::ensure!(
        out.status.success(),
        "psql {sql:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Runs pgbench (prepared statements, no vacuum, `clients` connections over 2 threads) with
/// `scripts` for [`RUN_SECONDS`]; its standard output.
async fn pgbench(bin: &Path, url: &str, clients: usize, scripts: &[PathBuf]) -> anyhow::Result<String> {
    let mut cmd = Command::new(bin);
    cmd.args(["-n", "-M", "prepared", "-j", "2", "-c", &clients.to_string(), "-T", &RUN_SECONDS.to_string()]);
    for s in scripts {
        cmd.arg("-f").arg(s);
    }
    cmd.arg(url);
    let out = cmd.output().await.with_context(|| format!("running {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success() && !stdout.contains("aborted"),
        "pgbench failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// The number after `key` in pgbench's output.
fn parse_after(out: &str, key: &str) -> Option<f64> {
    let at = out.find(key)? + key.len();
    out[at..].split_whitespace().next()?.parse().ok()
}

/// Writes one script per bundle of [`SCRIPT_BUNDLES`] for `batch` bundles per transaction.
fn write_scripts(dir: &Path, consumers: usize, batch: usize) -> anyhow::Result<Vec<PathBuf>> {
    let status = status("00000000-0000-4000-8000-000000000001").event.to_string();
    SCRIPT_BUNDLES
        .iter()
        .map(|&i| {
            let path = dir.join(format!("write-{i}-{batch}.sql"));
            std::fs::write(&path, write_script(i, consumers, batch, &status))?;
            Ok(path)
        })
        .collect()
}

/// The statements of `batch` creations of bundle `i` on a random consumer, their outbox rows
/// marked done, and their status writes (docs/benchmarks.md, "Scale", lists them).
fn write_script(i: usize, consumers: usize, batch: usize, status: &str) -> String {
    let spec =
        SpecEventBuilder::new(crate::fleet::SOURCE_ID, "00000000-0000-4000-8000-000000000000", 1, "scale")
            .bundle(&scale_work(i).bundle)
            .build();
    let payload = sql_text(&maestro_api::json::to_value(&spec).to_string());
    let status = sql_text(status);
    // `{c:05}` as the consumers were named: lpad would cut a number of six digits or more.
    let consumer = "'scale-' || CASE WHEN :c < 100000 THEN lpad(:c::text, 5, '0') ELSE :c::text END";
    format!(
        "\\set c random(0, {last})\n\
         BEGIN;\n\
         SELECT name FROM consumers WHERE name = ANY(ARRAY[{consumer}]) ORDER BY name FOR KEY SHARE;\n\
         WITH r AS (INSERT INTO resources (id, name, consumer_name, source, version, payload, created_at, updated_at) \
         SELECT gen_random_uuid()::text, 'b-' || gen_random_uuid()::text, {consumer}, 'maestro-bench', 1, {payload}::json, now(), now() \
         FROM generate_series(1, {batch}) ON CONFLICT (id) DO NOTHING RETURNING id, consumer_name, version, created_at), \
         e AS (INSERT INTO spec_events (resource_id, consumer_name, action, version, created_at) \
         SELECT id, consumer_name, 'Create', version, created_at FROM r RETURNING seq, resource_id) \
         SELECT array_agg(seq)::text AS seqs, array_agg(resource_id)::text AS ids FROM e \\gset\n\
         COMMIT;\n\
         BEGIN;\n\
         SET LOCAL synchronous_commit = off;\n\
         UPDATE spec_events SET done_at = now() WHERE done_at IS NULL AND seq = ANY(:seqs::bigint[]);\n\
         COMMIT;\n\
         BEGIN;\n\
         SELECT id, version, status_hash, sequence_id FROM resources WHERE id = ANY(:ids::text[]) ORDER BY id FOR UPDATE;\n\
         UPDATE resources SET status = {status}::json, status_hash = md5(id), sequence_id = '1834773391719010304', updated_at = now() \
         WHERE id = ANY(:ids::text[]);\n\
         SELECT pg_advisory_xact_lock(7);\n\
         INSERT INTO status_events (resource_id, source, consumer_name, kind, payload, status, created_at) \
         SELECT r.id, r.source, r.consumer_name, 'StatusUpdate', r.payload, {status}::json, now() \
         FROM resources r WHERE r.id = ANY(:ids::text[]) RETURNING seq;\n\
         COMMIT;\n",
        last = consumers.saturating_sub(1),
    )
}

/// `text` as an SQL escape string literal: backslashes doubled, quotes doubled, and every colon
/// written `\x3a`, as pgbench would take `:word` for a variable even inside a literal.
fn sql_text(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''").replace(':', "\\x3a"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_figures_are_read_from_its_output() {
        let out = "number of failed transactions: 0 (0.000%)\nlatency average = 1.234 ms\n\
                   initial connection time = 3.1 ms\ntps = 812.5 (without initial connection time)\n";
        assert_eq!(parse_after(out, "tps = "), Some(812.5));
        assert_eq!(parse_after(out, "latency average = "), Some(1.234));
        assert_eq!(parse_after(out, "nothing = "), None);
    }

    #[test]
    fn a_write_script_carries_the_payload_and_batch() {
        let s = write_script(3, 2000, 8, r#"{"a":"it's"}"#);
        assert!(s.starts_with("\\set c random(0, 1999)\n"), "{s}");
        assert!(s.contains("generate_series(1, 8)"), "{s}");
        assert!(
            s.contains("CASE WHEN :c < 100000 THEN lpad(:c::text, 5, '0') ELSE :c::text END"),
            "consumer names as `{{c:05}}` names them, six digits and more too: {s}"
        );
        assert!(s.contains(r#"E'{"a"\x3a"it''s"}'::json"#), "quotes doubled, colons escaped: {s}");
        assert!(s.contains(r#""kind"\x3a"Deployment""#), "{s}");
        assert_eq!(sql_text(r#"a\nb"#), r#"E'a\\nb'"#, "backslashes doubled");
    }
}
