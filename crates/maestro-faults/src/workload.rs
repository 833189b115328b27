//! The workload: a source creating, updating and deleting bundles (one ConfigMap each, whose
//! `data.gen` is the bundle's generation in this workload) over the source gRPC API, as a real
//! source does through faults: every operation is retried until the server takes it. What it
//! last got accepted is the expected state the invariants compare with.

use std::collections::BTreeMap;
use std::time::Duration;

use maestro_api::payload::ManifestBundle;
use maestro_client::{ClientError, ManifestWorkInput, SourceClient};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;

/// The expected state: per (consumer, bundle name), its generation, `None` once deleted.
pub type Expected = BTreeMap<(String, String), Option<u64>>;

/// How long one operation is retried before the workload gives up on it (it then counts as
/// not accepted: its bundle keeps its previous expectation).
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(90);

fn work(name: &str, generation: u64) -> ManifestWorkInput {
    let manifest = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"gen": generation.to_string()}});
    ManifestWorkInput {
        name: name.to_owned(),
        labels: Default::default(),
        annotations: Default::default(),
        bundle: ManifestBundle { manifests: vec![manifest], ..Default::default() },
    }
}

/// Applies generation `generation` of bundle `name` on `consumer`, retrying until accepted.
/// Returns false when the deadline passed first.
pub async fn put(source: &SourceClient, consumer: &str, name: &str, generation: u64) -> bool {
    retry(|| async { source.apply(consumer, &work(name, generation)).await.map(|_| ()) }).await
}

/// Deletes bundle `name` on `consumer`, retrying until accepted (already gone counts).
pub async fn delete(source: &SourceClient, consumer: &str, name: &str) -> bool {
    retry(|| async {
        match source.delete(consumer, name).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    })
    .await
}

async fn retry<F, Fut>(mut op: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let deadline = tokio::time::Instant::now() + OPERATION_DEADLINE;
    let mut delay = Duration::from_millis(100);
    loop {
        if op().await.is_ok() {
            return true;
        }
        if tokio::time::Instant::now() + delay > deadline {
            return false;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// One step of the random workload: update a live bundle to its next generation (70%),
/// delete one (15%) or create a new one (15%). Returns false when the operation was not
/// accepted before [`OPERATION_DEADLINE`]: its bundle is then dropped from `expected` (the
/// server may or may not have taken it), and the run reports it.
pub async fn step(
    source: &SourceClient,
    expected: &mut Expected,
    rng: &mut StdRng,
    prefix: &str,
    next: &mut usize,
) -> bool {
    let live: Vec<(String, String, u64)> =
        expected.iter().filter_map(|((c, n), g)| g.map(|g| (c.clone(), n.clone(), g))).collect();
    let roll: f64 = rng.random();
    let (key, outcome, accepted) = if live.is_empty() || roll >= 0.85 {
        let mut consumers: Vec<String> = expected.keys().map(|(c, _)| c.clone()).collect();
        consumers.dedup();
        let Some(consumer) = consumers.get(rng.random_range(0..consumers.len().max(1))).cloned() else {
            return true;
        };
        let name = format!("{prefix}-new-{next}");
        *next += 1;
        let ok = put(source, &consumer, &name, 1).await;
        ((consumer, name), Some(1), ok)
    } else {
        let (consumer, name, generation) = live[rng.random_range(0..live.len())].clone();
        if roll < 0.70 {
            let ok = put(source, &consumer, &name, generation + 1).await;
            ((consumer, name), Some(generation + 1), ok)
        } else {
            let ok = delete(source, &consumer, &name).await;
            ((consumer, name), None, ok)
        }
    };
    if accepted {
        expected.insert(key, outcome);
    } else {
        expected.remove(&key);
    }
    accepted
}
