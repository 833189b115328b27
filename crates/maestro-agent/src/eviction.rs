//! Works that vanish from the source (docs/protocol.md §8.3): AppliedManifestWork records, the
//! works a restarted agent restores from them, and the eviction grace period.
//!
//! After every apply pass the agent writes the work's record into its AppliedManifestWork: the
//! resource id and the identity of the store that published it (annotations), the applied
//! resources and the eviction start (OCM's status fields). A restarted agent holds no works,
//! so it reads the records of its agent id and hub hash back before it subscribes and holds
//! each as a *restored* work (no bundle, version 0): its spec resync request lists them, and
//! the answer either publishes the work again (adopted, applied over the objects kept) or
//! deletes it as a work the store does not hold, through the fleet-wipe guard
//! (`wipe_guard`), which also learns the recorded store identity.
//!
//! Such a deletion ("the store does not hold it", not a source's delete) that the guard lets
//! through starts the work's eviction: its objects stay for
//! [`crate::AgentConfig::eviction_grace_period`] (OCM's
//! `--appliedmanifestwork-eviction-grace-period`, 60 min), counted from the recorded start so
//! agent restarts do not extend it; a spec for the work meanwhile cancels it. When it has passed,
//! the work is deleted as any deletion (only objects it still owns, with UID preconditions).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;

use crate::agent::Shared;
use crate::cluster::AppliedWorkRecord;
use crate::wipe_guard::Marks;
use crate::work::{AppliedResource, Work};

/// Holds the works recorded on the cluster for this agent (its agent id and hub hash) that it
/// does not hold, and trusts the store identity most of them record. Called before the
/// transport starts. A failed list is logged and nothing is restored.
pub(crate) async fn restore(shared: &Shared) {
    let agent_id = &shared.config.agent_id;
    let records = match shared.cluster.list_applied_works(agent_id).await {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(%agent_id, error = %e, "cannot list the AppliedManifestWorks; nothing restored");
            return;
        }
    };
    let mine: Vec<AppliedWorkRecord> =
        records.into_iter().filter(|r| r.owner.hub_hash == shared.hub_hash).collect();
    if let Some(identity) = most_common_identity(&mine) {
        shared.guard.observe(&Marks { store_id: Some(identity), ..Marks::default() });
    }
    let mut works = shared.works();
    let mut restored = 0usize;
    for record in mine {
        if works.contains_key(&record.resource_id) {
            continue;
        }
        let mut work = Work::new(record.resource_id.clone(), 0);
        work.name = record.owner.work_name.clone();
        work.applied = record.applied.clone();
        work.needs_apply = false;
        work.restored = true;
        work.eviction_start = record.eviction_start;
        work.recorded = Some(record);
        works.insert(work.uid.clone(), work);
        restored += 1;
    }
    if restored > 0 && works.values().any(|w| w.recorded.as_ref().is_some_and(|r| r.store_identity.is_some()))
    {
        // This project's server: its answer names the bundles deleted meanwhile, and counts
        // its events (docs/protocol.md §6.1).
        shared.hold.begin(shared.config.startup_hold);
    }
    if restored > 0 {
        tracing::info!(consumer = %shared.config.consumer, restored,
            "works restored from their AppliedManifestWork records; the spec resync adopts or deletes them");
    }
}

/// The store identity recorded by the most records (ties: the smallest).
fn most_common_identity(records: &[AppliedWorkRecord]) -> Option<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in records.iter().filter_map(|r| r.store_identity.as_deref()) {
        *counts.entry(id).or_default() += 1;
    }
    counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))).map(|(id, _)| id.to_owned())
}

/// A work the store does not hold, cleared by the fleet-wipe guard: starts its eviction (kept
/// if it had started before). Returns true when it is to be deleted now (no grace period).
pub(crate) fn begin(shared: &Shared, work: &mut Work) -> bool {
    work.restored = false; // the store answered for it
    let grace = shared.config.eviction_grace_period;
    if grace.is_zero() {
        tracing::info!(resource_id = %work.uid, "work deleting: the store does not hold it");
        work.deleting = true;
        return true;
    }
    let start = *work.eviction_start.get_or_insert_with(Utc::now);
    tracing::info!(resource_id = %work.uid, eviction_start = %start, grace_period = ?grace,
        "the store does not hold this work: its objects are deleted after the eviction grace period \
         unless a source publishes it again");
    false
}

/// A spec for `work` from a source: it is no longer restored nor evicted.
pub(crate) fn cancel(work: &mut Work) {
    if work.eviction_start.take().is_some() {
        tracing::info!(resource_id = %work.uid, "eviction cancelled: a source published the work again");
    }
    work.restored = false;
}

/// Every [`crate::AgentConfig::orphan_recheck_interval`]: deletes the works whose eviction
/// grace period has passed, and records the eviction start of the others.
pub(crate) async fn run(shared: Arc<Shared>) {
    let every = shared.config.orphan_recheck_interval.max(std::time::Duration::from_millis(100));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while shared.cancel.run_until_cancelled(ticker.tick()).await.is_some() {
        let (due, waiting) = sweep(&shared);
        for id in &due {
            shared.queue.add(id);
        }
        for id in &waiting {
            record(&shared, id, None, None).await;
        }
        crate::metrics::evicting(&shared.config.consumer, waiting.len());
    }
}

/// Marks the works whose grace period has passed deleting; returns them, and the ones still
/// waiting.
fn sweep(shared: &Shared) -> (Vec<String>, Vec<String>) {
    let grace =
        chrono::Duration::from_std(shared.config.eviction_grace_period).unwrap_or(chrono::Duration::MAX);
    let now = Utc::now();
    let (mut due, mut waiting) = (Vec::new(), Vec::new());
    for w in shared.works().values_mut().filter(|w| !w.finalized && !w.deleting) {
        let Some(start) = w.eviction_start else { continue };
        if start.checked_add_signed(grace).is_some_and(|end| end <= now) {
            tracing::info!(resource_id = %w.uid, eviction_start = %start, "eviction grace period over: work deleting");
            w.deleting = true;
            w.eviction_start = None;
            due.push(w.uid.clone());
        } else {
            waiting.push(w.uid.clone());
        }
    }
    (due, waiting)
}

/// Writes work `id`'s AppliedManifestWork record, with `applied` as its applied resources and
/// `generation` as its applied version when given (an apply pass's, not stored yet), when it
/// changed since last written. A failure is logged; the next apply pass or eviction check
/// writes it again.
pub(crate) async fn record(
    shared: &Shared,
    id: &str,
    applied: Option<&[AppliedResource]>,
    generation: Option<i64>,
) {
    let Some(record) = pending_record(shared, id, applied, generation) else { return };
    match shared.cluster.record_applied_work(&record).await {
        Ok(()) => {
            if let Some(w) = shared.works().get_mut(id) {
                w.recorded = Some(record);
            }
        }
        Err(e) => {
            tracing::warn!(resource_id = %id, error = %e, "cannot record the AppliedManifestWork; will retry")
        }
    }
}

/// The record of work `id` as it is now, unless it is the one last written (or the work is
/// gone, deleting or restored without any change).
fn pending_record(
    shared: &Shared,
    id: &str,
    applied: Option<&[AppliedResource]>,
    generation: Option<i64>,
) -> Option<AppliedWorkRecord> {
    let identity = shared.guard.synced();
    let works = shared.works();
    let w = works.get(id).filter(|w| !w.finalized && !w.deleting)?;
    let record = AppliedWorkRecord {
        owner: shared.applied_work_ref(&w.name),
        resource_id: w.uid.clone(),
        store_identity: identity.or_else(|| w.recorded.as_ref().and_then(|r| r.store_identity.clone())),
        generation: generation.or_else(|| w.recorded.as_ref().and_then(|r| r.generation)),
        incarnation: w.incarnation().map(str::to_owned),
        applied: applied.unwrap_or(&w.applied).to_vec(),
        eviction_start: w.eviction_start,
    };
    (w.recorded.as_ref() != Some(&record)).then_some(record)
}
