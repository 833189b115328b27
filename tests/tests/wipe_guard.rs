//! The fleet-wipe guard end to end (docs/operations.md §3.5): three running agents hold 300
//! works on their (simulated) clusters when the server's PostgreSQL database is emptied, or
//! restored from a dump taken before the works existed. The agents' spec resync on the
//! server's return would delete every work; instead not one object is deleted, every work is
//! reported `Orphaned`, and when the sources publish the works again the agents adopt them
//! without re-creating any object (same uid and resourceVersion on the cluster). An
//! operator's `maestro-cli consumer confirm-wipe` then lets the works nobody published again
//! be deleted.
//!
//! Real PostgreSQL (and its `pg_dump`/`psql`), the server's gRPC broker, simulated clusters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use maestro::stack::{LocalStack, StackConfig};
use maestro_agent::SimulatedCluster;
use maestro_agent::wipe_guard::{ORPHANED, REASON_IDENTITY, REASON_SHARE};
use maestro_tests::broker_restart::config_map_work;
use maestro_tests::{cli_binary, wait_for};
use sqlx::{Connection, PgConnection};

const CONSUMERS: [&str; 3] = ["wipe-a", "wipe-b", "wipe-c"];
const PER_CONSUMER: usize = 100;

/// Every object on every cluster: (consumer, name) → (uid, resourceVersion).
type Objects = BTreeMap<(String, String), (String, String)>;

async fn stack(url: &str) -> LocalStack {
    let mut config = StackConfig::new(url);
    config.status_sync_interval = Duration::from_millis(500);
    config.orphan_recheck_interval = Duration::from_millis(500);
    LocalStack::start(config).await.unwrap()
}

async fn register_consumers(stack: &LocalStack) {
    for c in CONSUMERS {
        stack.rest.create_consumer(c, &Default::default()).await.unwrap();
    }
}

/// Publishes works `range` of every consumer (version 1 in a fresh store).
async fn publish(stack: &LocalStack, range: std::ops::Range<usize>) {
    for c in CONSUMERS {
        for i in range.clone() {
            stack.source.apply(c, &config_map_work(i, 1)).await.unwrap();
        }
    }
}

/// Waits until `n` bundles are Applied at their current version.
async fn wait_applied(stack: &LocalStack, n: usize) {
    wait_for(&format!("{n} bundles Applied"), || async {
        let bundles = stack.rest.all_bundles(&Default::default()).await.ok()?;
        let applied = bundles.iter().filter(|b| b.is_true_at_current_version("Applied")).count();
        (applied == n).then_some(())
    })
    .await;
}

/// The simulated cluster of every consumer.
fn clusters(stack: &mut LocalStack) -> Vec<(&'static str, Arc<SimulatedCluster>)> {
    CONSUMERS.iter().map(|c| (*c, stack.cluster(c))).collect()
}

fn objects(clusters: &[(&'static str, Arc<SimulatedCluster>)]) -> Objects {
    let mut out = Objects::new();
    for (c, cluster) in clusters {
        for o in cluster.objects() {
            let meta = &o["metadata"];
            let key = ((*c).to_owned(), meta["name"].as_str().unwrap().to_owned());
            let value = (meta["uid"].as_str().unwrap().to_owned(), meta["resourceVersion"].to_string());
            out.insert(key, value);
        }
    }
    out
}

/// Waits until every agent holds `n` orphaned works, each with the `Orphaned` condition of
/// `reason` in its published status.
async fn wait_orphaned(stack: &LocalStack, n: usize, reason: &str) {
    for c in CONSUMERS {
        let agent = stack.agent(c).expect("agent running");
        wait_for(&format!("{c}: {n} works orphaned ({reason}) and reported"), || async {
            let works = agent.works();
            let orphaned: Vec<_> = works.iter().filter(|w| w.orphaned.as_deref() == Some(reason)).collect();
            let reported = orphaned.iter().all(|w| {
                w.last_published
                    .as_ref()
                    .and_then(|s| s.condition(ORPHANED))
                    .is_some_and(|cond| cond.status == "True" && cond.reason == reason)
            });
            (orphaned.len() == n && reported).then_some(())
        })
        .await;
    }
}

/// Runs `psql`/`pg_dump` style commands; fails loudly when the tool is missing.
fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is needed (apt-get install postgresql-client): {e}"));
    assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Drops every table of the database (the operator's "recreated database").
async fn empty_database(url: &str) {
    let mut db = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;").execute(&mut db).await.unwrap();
}

/// Starts the agents and gives them their works, all Applied; returns the clusters and
/// their objects.
async fn hold_works(stack: &mut LocalStack) -> (Vec<(&'static str, Arc<SimulatedCluster>)>, Objects) {
    for c in CONSUMERS {
        stack.start_agent(c).await.unwrap();
    }
    publish(stack, 0..PER_CONSUMER).await;
    wait_applied(stack, CONSUMERS.len() * PER_CONSUMER).await;
    let clusters = clusters(stack);
    let before = objects(&clusters);
    assert_eq!(before.len(), CONSUMERS.len() * PER_CONSUMER);
    (clusters, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_emptied_database_orphans_every_work_and_republishing_adopts_them() {
    maestro_tests::logging();
    let url = maestro_store::testing::postgres_url().await;
    let mut stack = stack(&url).await;
    register_consumers(&stack).await;
    let (clusters, before) = hold_works(&mut stack).await;

    // The database is recreated empty; the consumers are registered again (as the restore
    // procedure does) before the server comes back, so the agents' resync is answered.
    stack.stop_server().await;
    empty_database(&url).await;
    let store = maestro_store::open(&url).await.unwrap();
    for c in CONSUMERS {
        store
            .create_consumer(maestro_store::NewConsumer { name: Some(c.into()), ..Default::default() })
            .await
            .unwrap();
    }
    stack.restart_server().await.unwrap();
    wait_orphaned(&stack, PER_CONSUMER, REASON_IDENTITY).await;
    assert_eq!(objects(&clusters), before, "no object deleted or changed");

    // The sources publish everything again: adopted, nothing re-created.
    publish(&stack, 0..PER_CONSUMER).await;
    wait_applied(&stack, CONSUMERS.len() * PER_CONSUMER).await;
    wait_orphaned(&stack, 0, REASON_IDENTITY).await;
    assert_eq!(objects(&clusters), before, "adopted without re-creating or changing an object");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_dump_orphans_by_share_until_republished_or_confirmed() {
    maestro_tests::logging();
    let url = maestro_store::testing::postgres_url().await;
    let mut stack = stack(&url).await;
    register_consumers(&stack).await;
    let dump = tempfile::NamedTempFile::new().unwrap();
    let dump_path = dump.path().to_str().unwrap();
    run("pg_dump", &["--dbname", &url, "--file", dump_path, "--no-owner"]);
    let (clusters, before) = hold_works(&mut stack).await;

    // Restored from the dump taken before the works: same store identity, no works.
    stack.stop_server().await;
    empty_database(&url).await;
    run("psql", &["--dbname", &url, "--quiet", "--set", "ON_ERROR_STOP=1", "--file", dump_path]);
    stack.restart_server().await.unwrap();
    wait_orphaned(&stack, PER_CONSUMER, REASON_SHARE).await;
    assert_eq!(objects(&clusters), before, "no object deleted or changed");

    // Half is published again (adopted); the operator confirms the rest is gone for good.
    let kept = PER_CONSUMER / 2;
    publish(&stack, 0..kept).await;
    wait_applied(&stack, CONSUMERS.len() * kept).await;
    for c in CONSUMERS {
        let out = Command::new(cli_binary())
            .args([
                "--http-endpoint",
                &format!("http://{}", stack.http_addr()),
                "consumer",
                "confirm-wipe",
                c,
            ])
            .args(["--ttl", "10m"])
            .output()
            .unwrap();
        assert!(out.status.success(), "confirm-wipe {c}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("wipe confirmed"), "{out:?}");
    }
    let want: HashSet<(String, String)> =
        before.keys().filter(|(_, name)| name[3..].parse::<usize>().unwrap() < kept).cloned().collect();
    wait_for("the works nobody published again deleted", || {
        let now = objects(&clusters);
        let left: HashSet<(String, String)> = now.keys().cloned().collect();
        std::future::ready((left == want).then_some(now))
    })
    .await
    .iter()
    .for_each(|(key, value)| assert_eq!(before.get(key), Some(value), "{key:?} kept as it was"));
    wait_orphaned(&stack, 0, REASON_SHARE).await;
    stack.shutdown().await;
}
