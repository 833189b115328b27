//! Publishing: status events (docs/protocol.md §3.2, §4.3, §6.2), the status publisher with retry,
//! and the spec resync request on every (re)subscription (docs/protocol.md §5.1).

use std::sync::Arc;

use futures::StreamExt;
use maestro_api::Event;
use maestro_api::codec::{StatusEventBuilder, spec_resync_request};
use maestro_api::payload::{ManifestBundleStatus, ResourceVersion, ResourceVersionList};
use maestro_api::types::Action;
use maestro_transport::Subscribed;
use serde_json::{Map, Value, json};

use crate::agent::Shared;
use crate::work::Work;

/// The `metadata` extension of a status event: name, namespace (the consumer), uid and
/// generation of the work, plus labels/annotations received with the spec.
fn status_metadata(shared: &Shared, work: &Work) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(work.name));
    m.insert("namespace".into(), json!(shared.config.consumer));
    m.insert("uid".into(), json!(work.uid));
    m.insert("generation".into(), json!(work.generation));
    for key in ["labels", "annotations"] {
        if let Some(v) = work.metadata.get(key).filter(|v| v.as_object().is_some_and(|o| !o.is_empty())) {
            m.insert(key.into(), v.clone());
        }
    }
    m
}

/// Builds the status event of `work` carrying `status` (whose hash is `hash`), with a fresh
/// sequence id.
pub(crate) fn status_event(
    shared: &Shared,
    work: &Work,
    status: &ManifestBundleStatus,
    hash: &str,
    action: Action,
) -> Event {
    let sequence_id = shared.sequence.next_string();
    let metadata = status_metadata(shared, work);
    let mut event = StatusEventBuilder {
        source: &shared.config.agent_id,
        resource_id: &work.uid,
        resource_version: work.generation,
        cluster_name: &shared.config.consumer,
        original_source: &work.original_source,
        sequence_id: &sequence_id,
        status_hash: hash,
        metadata: Some(&metadata),
        action,
    }
    .build(status);
    if let Some(cx) = &work.trace {
        cx.stamp(&mut event);
    }
    event
}

/// Publishes the unpublished status of every work; after a failure waits with backoff (or
/// until woken) and tries again, so the latest status is never lost. Works whose `Deleted`
/// status was published are dropped from the store.
pub(crate) async fn run_publisher(shared: Arc<Shared>) {
    let mut backoff = shared.config.retry_backoff();
    while !shared.cancel.is_cancelled() {
        let notified = shared.publish.notified();
        let failed = publish_pending(&shared).await;
        let delay = if failed { backoff.next() } else { None };
        if !failed {
            backoff = shared.config.retry_backoff();
        }
        let wait = async {
            match delay {
                Some(delay) => tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = notified => {}
                },
                None => notified.await,
            }
        };
        if shared.cancel.run_until_cancelled(wait).await.is_none() {
            return;
        }
    }
}

/// One pass over the works whose status changed since the last pass (`Shared::unpublished`).
/// Returns true when a publish failed; the pass's works are then looked at again next time.
async fn publish_pending(shared: &Shared) -> bool {
    let ids: Vec<String> = shared.unpublished_set().drain().collect();
    let (ids, waiting) = without_source(shared, ids);
    shared.unpublished_set().extend(waiting);
    let failed = publish_works(shared, &ids).await;
    if failed {
        shared.unpublished_set().extend(ids);
    }
    failed
}

/// Splits `ids` into works whose status can go out and works that do not know their source
/// yet (restored from a record, no spec of them seen: [`crate::work::Work::source_known`]),
/// which keep their place until a spec adopts them. A finalized work that never learned its
/// source (evicted unclaimed) has nobody to tell of its deletion: it is dropped here.
fn without_source(shared: &Shared, ids: Vec<String>) -> (Vec<String>, Vec<String>) {
    let mut works = shared.works();
    let (mut ready, mut waiting) = (Vec::with_capacity(ids.len()), Vec::new());
    for id in ids {
        match works.get(&id) {
            Some(w) if !w.source_known() && w.finalized => {
                tracing::debug!(resource_id = %id, "deleted work of no known source dropped");
                works.remove(&id);
            }
            Some(w) if !w.source_known() => waiting.push(id),
            _ => ready.push(id),
        }
    }
    (ready, waiting)
}

async fn publish_works(shared: &Shared, ids: &[String]) -> bool {
    let pending: Vec<(String, Event, String, ManifestBundleStatus)> = {
        let works = shared.works();
        ids.iter()
            .filter_map(|id| works.get(id))
            .filter(|w| w.unpublished())
            .filter_map(|w| {
                let status = w.status.clone()?;
                let hash = w.status_hash.clone()?;
                let ev = status_event(shared, w, &status, &hash, Action::Update);
                Some((w.uid.clone(), ev, hash, status))
            })
            .collect()
    };
    // Statuses of different works are published as many at a time as the transport takes
    // (`AgentTransport::publish_concurrency`; one work has at most one here: its latest
    // status), and their results are taken in order.
    let mut sent = futures::stream::iter(pending)
        .map(|(id, event, hash, status)| async move {
            let result = shared.transport.publish(&event).await;
            if result.is_ok() {
                crate::metrics::count_event(
                    crate::metrics::CLOUDEVENTS_SENT,
                    &shared.config.consumer,
                    &event,
                );
            }
            (id, hash, status, result)
        })
        .buffered(shared.transport.publish_concurrency().max(1));
    while let Some((id, hash, status, result)) = sent.next().await {
        if let Err(e) = result {
            // Publishes still in flight may have been delivered; resending them is harmless
            // (the server drops a status that is not newer, docs/architecture.md §5).
            tracing::warn!(resource_id = %id, error = %e, "status publish failed; will retry");
            return true;
        }
        let mut works = shared.works();
        let Some(w) = works.get_mut(&id) else { continue };
        w.published_hash = Some(hash.clone());
        w.last_published = Some(status);
        tracing::debug!(resource_id = %id, generation = w.generation, hash = %hash, "status published");
        if w.finalized && w.status_hash.as_deref() == Some(hash.as_str()) {
            if let Some(incarnation) = w.incarnation() {
                shared.tombstones.bury(&id, incarnation);
            }
            works.remove(&id);
            tracing::info!(resource_id = %id, "work deleted and dropped");
        }
    }
    false
}

/// How long the agent gathers dropped late specs before it asks for the resync they owe.
const OWED_RESYNC_DELAY: std::time::Duration = std::time::Duration::from_secs(1);
/// Least time between two such resyncs: a broker redelivering a backlog of late specs (or a
/// slow link) must not turn each one into a full resync answer.
const OWED_RESYNC_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends one `spec.resync_request` with the versions of all works held each time the
/// transport (re)subscribes, and [`OWED_RESYNC_DELAY`] after the intake dropped a spec
/// published before the agent started (`Shared::resync_owed`; at most one such request per
/// [`OWED_RESYNC_MIN_INTERVAL`]); retries with backoff until it is accepted or the transport
/// resubscribes again. Also wakes the status publisher.
pub(crate) async fn run_spec_resync(shared: Arc<Shared>, mut subscribed: Subscribed) {
    let mut handled = 0u64;
    let mut last_owed: Option<tokio::time::Instant> = None;
    loop {
        let current = *subscribed.borrow_and_update();
        if current > handled {
            handled = current;
            shared.publish.notify_one();
            send_spec_resync(&shared, &mut subscribed).await;
            continue;
        }
        let woken = tokio::select! {
            changed = subscribed.changed() => changed.is_ok(),
            () = shared.resync_owed.notified() => owed_delay(&shared, &mut last_owed).await,
            () = shared.cancel.cancelled() => false,
        };
        if !woken {
            return;
        }
        if *subscribed.borrow() == handled {
            send_spec_resync(&shared, &mut subscribed).await;
        }
    }
}

/// When an owed resync asked for at `now` goes out, the last one having gone at `last`.
fn owed_at(now: tokio::time::Instant, last: Option<tokio::time::Instant>) -> tokio::time::Instant {
    last.map_or(now, |l| l + OWED_RESYNC_MIN_INTERVAL).max(now + OWED_RESYNC_DELAY)
}

/// Waits [`OWED_RESYNC_DELAY`], and until [`OWED_RESYNC_MIN_INTERVAL`] has passed since the
/// last owed resync (`last`, set to now when the wait ends); false when the agent stops
/// meanwhile.
async fn owed_delay(shared: &Shared, last: &mut Option<tokio::time::Instant>) -> bool {
    let at = owed_at(tokio::time::Instant::now(), *last);
    let waited = shared.cancel.run_until_cancelled(tokio::time::sleep_until(at)).await.is_some();
    *last = Some(tokio::time::Instant::now());
    waited
}

async fn send_spec_resync(shared: &Shared, subscribed: &mut Subscribed) {
    let mut backoff = shared.config.retry_backoff();
    while !shared.cancel.is_cancelled() {
        match request_spec_resync(shared).await {
            Ok(()) => return,
            Err(e) => {
                let delay = backoff.next().unwrap_or(shared.config.max_retry_delay);
                tracing::warn!(error = %e, ?delay, "spec resync request failed; will retry");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    r = subscribed.changed() => if r.is_err() { return },
                    () = shared.cancel.cancelled() => return,
                }
            }
        }
    }
}

/// The works held (not finalized), by id, at their generation; an orphaned work at version 0,
/// so the answer sends it at whatever version the server's store holds (adoption,
/// docs/operations.md §3.5).
fn held_versions(shared: &Shared) -> ResourceVersionList {
    let works = shared.works();
    let mut v: Vec<ResourceVersion> = works
        .values()
        .filter(|w| !w.finalized)
        .map(|w| ResourceVersion {
            resource_id: w.uid.clone(),
            resource_version: if w.on_hold() { 0 } else { w.generation },
        })
        .collect();
    v.sort_by(|a, b| a.resource_id.cmp(&b.resource_id));
    ResourceVersionList { resource_versions: v }
}

/// Publishes one spec resync request listing the works held.
///
/// # Errors
/// The transport's publish error.
async fn request_spec_resync(shared: &Shared) -> maestro_transport::Result<()> {
    let versions = held_versions(shared);
    let event = spec_resync_request(&shared.config.agent_id, &shared.config.consumer, &versions);
    shared.hold.note_request(maestro_api::AttributesReader::id(&event));
    shared.transport.publish(&event).await?;
    tracing::info!(works = versions.resource_versions.len(), "spec resync requested");
    Ok(())
}

/// While works are on hold (orphaned, restored, waiting for eviction:
/// [`crate::work::Work::on_hold`]), asks for a spec resync every
/// [`crate::AgentConfig::orphan_recheck_interval`]: its answer adopts the works published
/// again and deletes the others once an operator confirmed (docs/operations.md §3.5). A
/// failed request waits for the next tick.
pub(crate) async fn run_orphan_recheck(shared: Arc<Shared>) {
    let every = shared.config.orphan_recheck_interval.max(std::time::Duration::from_millis(100));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    while shared.cancel.run_until_cancelled(ticker.tick()).await.is_some() {
        let orphans = shared.works().values().filter(|w| w.on_hold() && !w.finalized && !w.deleting).count();
        if orphans == 0 {
            continue;
        }
        tracing::info!(
            works = orphans,
            "works on hold (orphaned, restored from their records or waiting for eviction); asking the server \
             for a spec resync"
        );
        if let Err(e) = request_spec_resync(&shared).await {
            tracing::warn!(error = %e, "spec resync request for the orphaned works failed; will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{OWED_RESYNC_DELAY, OWED_RESYNC_MIN_INTERVAL, owed_at};

    /// The first owed resync goes 1 s after the drop; the next waits out 30 s since the last.
    #[test]
    fn owed_resyncs_are_gathered_and_spaced() {
        let now = Instant::now();
        assert_eq!(owed_at(now, None), now + OWED_RESYNC_DELAY);
        assert_eq!(owed_at(now, Some(now)), now + OWED_RESYNC_MIN_INTERVAL);
        let long_ago = now.checked_sub(Duration::from_secs(60)).expect("an instant 60 s back");
        assert_eq!(owed_at(now, Some(long_ago)), now + OWED_RESYNC_DELAY);
    }
}
