//! The invariants checked after every fault (docs/reliability.md, "Invariants"):
//! - **lost**: bundles not at their expected state once the convergence deadline passed: a
//!   live bundle whose ConfigMap is not at its generation on its cluster, or whose stored
//!   status is not `Applied` at its current version; a deleted bundle still on the cluster or
//!   in the store;
//! - **stale**: objects whose write history ever went back: a generation lower than one
//!   written before, or a write after the object was deleted;
//! - **duplicates**: objects written twice at one generation (re-created), and status events
//!   stored twice for one sequence id (both reported, neither fails a run).

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

/// Status events stored more than once for one resource and sequence id (the CloudEvent's
/// `sequenceid` extension, in the stored event's JSON), counted with `psql` or `sqlite3` on the
/// store; `None` when the tool cannot run.
pub fn duplicate_statuses(store: Store, db_url: &str) -> Option<u64> {
    let (tool, target, seq) = match store {
        Store::Postgres => ("psql", db_url, "status->>'sequenceid'"),
        Store::Sqlite => {
            ("sqlite3", db_url.trim_start_matches("sqlite://"), "json_extract(status, '$.sequenceid')")
        }
    };
    let sql = format!(
        "select count(*) from (select 1 from (select resource_id, {seq} as s from status_events) e \
         where s is not null group by resource_id, s having count(*) > 1) d"
    );
    let args: &[&str] = match store {
        Store::Postgres => &[target, "-Atc", &sql],
        Store::Sqlite => &["-readonly", target, &sql],
    };
    let out = std::process::Command::new(tool).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok()).flatten()
}
