//! The invariants checked after every fault (docs/reliability.md, "Invariants"):
//! - **lost**: bundles not at their expected state once the convergence deadline passed: a
//!   live bundle whose ConfigMap is not at its generation on its cluster, or whose stored
//!   status is not `Applied` at its current version; a deleted bundle still on the cluster or
//!   in the store;
//! - **stale**: objects whose write history ever went back: a generation lower than one
//!   written before, or a write after the object was deleted;
//! - **duplicates**: objects written twice at one generation (re-created), and status events
//!   stored twice for one sequence id (both reported, neither fails a run);
//! - **dead letters**: events the server set aside for good during the run. Every event the
//!   harness's agents send is well formed, so a dead letter here is an event a fault made the
//!   server give up on: it fails the run like a lost bundle.

use std::collections::{BTreeMap, HashSet};

use maestro_client::BundleFilter;

use crate::system::{Store, System};
use crate::workload::Expected;

/// The bundles not at their expected state now (each as `consumer/name: why`).
///
/// # Errors
/// When the server cannot list the bundles (it counts as not converged).
pub async fn mismatches(system: &System, expected: &Expected) -> anyhow::Result<Vec<String>> {
    let bundles = system.rest.all_bundles(&BundleFilter::default()).await?;
    let stored: BTreeMap<(String, String), &maestro_client::ResourceBundle> =
        bundles.iter().map(|b| ((b.consumer_name.clone(), b.name.clone()), b)).collect();
    let views = system.cluster_views()?;
    let mut out = Vec::new();
    for ((consumer, name), want) in expected {
        let have = views.get(consumer).and_then(|v| v.generation(name));
        let bundle = stored.get(&(consumer.clone(), name.clone()));
        let why = match (want, have, bundle) {
            (None, None, None) => continue,
            (None, Some(g), _) => format!("deleted, still on the cluster at gen {g}"),
            (None, None, Some(_)) => "deleted, still in the store".into(),
            (Some(w), h, _) if h != Some(*w) => format!("gen {h:?} on the cluster, expected {w}"),
            (Some(_), _, None) => "missing from the store".into(),
            (Some(_), _, Some(b)) => match applied_at_version(b) {
                true => continue,
                false => format!("status not Applied at version {}", b.version),
            },
        };
        out.push(format!("{consumer}/{name}: {why}"));
    }
    Ok(out)
}

fn applied_at_version(b: &maestro_client::ResourceBundle) -> bool {
    b.status.as_ref().is_some_and(|s| s.observed_version == b.version) && b.is_true("Applied")
}

/// Objects whose history went back, over every cluster (each as `consumer/name: history`).
///
/// # Errors
/// When a cluster's journal cannot be read.
pub fn stale(system: &System) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (consumer, view) in system.cluster_views()? {
        for (name, history) in view.history {
            let (mut highest, mut deleted) = (0u64, false);
            let mut bad = false;
            for g in &history {
                match g {
                    None => deleted = true,
                    Some(g) => {
                        bad |= deleted || *g < highest;
                        highest = highest.max(*g);
                    }
                }
            }
            if bad {
                out.push(format!("{consumer}/{name}: {history:?}"));
            }
        }
    }
    Ok(out)
}

/// Objects whose name starts with `prefix` written more than once at one generation, over
/// every cluster.
///
/// # Errors
/// When a cluster's journal cannot be read.
pub fn rewrites(system: &System, prefix: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    for view in system.cluster_views()?.values() {
        for (_, history) in view.history.iter().filter(|(name, _)| name.starts_with(prefix)) {
            let mut seen = HashSet::new();
            n += history.iter().flatten().filter(|g| !seen.insert(**g)).count();
        }
    }
    Ok(n)
}

/// Runs one query with `psql` or `sqlite3` on the store; its output rows (fields separated by
/// `|`), or `None` when the tool cannot run or the query fails.
fn query(store: Store, db_url: &str, sql: &str) -> Option<Vec<String>> {
    let (tool, args): (&str, Vec<&str>) = match store {
        Store::Postgres => ("psql", vec![db_url, "-Atc", sql]),
        Store::Sqlite => ("sqlite3", vec!["-readonly", db_url.trim_start_matches("sqlite://"), sql]),
    };
    let out = std::process::Command::new(tool).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
}

/// The highest dead-letter id in the store now (0 when there is none); `None` when it cannot
/// be read.
pub fn last_dead_letter(store: Store, db_url: &str) -> Option<i64> {
    query(store, db_url, "select coalesce(max(id), 0) from dead_letters")?.first()?.trim().parse().ok()
}

/// The dead letters stored after id `after` (each as `origin consumer/resource: reason`);
/// `None` when they cannot be read.
pub fn dead_letters_after(store: Store, db_url: &str, after: i64) -> Option<Vec<String>> {
    let sql = format!(
        "select origin, coalesce(consumer_name, ''), coalesce(resource_id, ''), reason \
         from dead_letters where id > {after} order by id"
    );
    let rows = query(store, db_url, &sql)?;
    Some(
        rows.iter()
            .map(|r| {
                let f: Vec<&str> = r.splitn(4, '|').collect();
                match f.as_slice() {
                    [origin, consumer, resource, reason] => {
                        format!("dead letter ({origin}) {consumer}/{resource}: {reason}")
                    }
                    _ => format!("dead letter: {r}"),
                }
            })
            .collect(),
    )
}

/// Status events stored more than once for one resource and sequence id (the CloudEvent's
/// `sequenceid` extension, in the stored event's JSON), counted with `psql` or `sqlite3` on the
/// store; `None` when the tool cannot run.
pub fn duplicate_statuses(store: Store, db_url: &str) -> Option<u64> {
    let seq = match store {
        Store::Postgres => "status->>'sequenceid'",
        Store::Sqlite => "json_extract(status, '$.sequenceid')",
    };
    let sql = format!(
        "select count(*) from (select 1 from (select resource_id, {seq} as s from status_events) e \
         where s is not null group by resource_id, s having count(*) > 1) d"
    );
    query(store, db_url, &sql)?.first()?.trim().parse().ok()
}
