//! The fleet-wipe guard (docs/operations.md §3.5, docs/protocol.md §5.5): the agent never
//! deletes a fleet's workloads on the word of a store that lost them.
//!
//! A server answers an agent's spec resync by deleting every work the agent holds that its
//! store does not ([`maestro_api::ext::RESYNC_DELETES`] of them). When the database was
//! recreated, replaced or restored from an old backup, that is every work. So the agent
//! gathers one answer's deletions of unknown works and, before deleting:
//! - when the answer's store identity ([`maestro_api::ext::STORE_ID`]) differs from the one the
//!   agent last synced with, or
//! - when the deletions are more than [`crate::AgentConfig::wipe_guard_percent`] of the works
//!   it holds,
//!
//! it **orphans** them instead: the objects stay on the cluster, the work gets the condition
//! `Orphaned`=True (reason [`REASON_IDENTITY`] or [`REASON_SHARE`]) in its status, and is
//! neither applied nor deleted any more. A source publishing the work again adopts it (no
//! object is re-created); an operator's wipe confirmation (`maestro-cli consumer
//! confirm-wipe`, deletions marked [`maestro_api::ext::WIPE_CONFIRMED`]) deletes it.
//!
//! The agent remembers the identity of the first spec event that carries one, and takes a
//! new one only from a resync answer that deletes nothing (the store holds everything the
//! agent holds) or from a confirmed deletion. The memory lasts as long as the agent process:
//! a restarted agent holds no works, so its resync deletes nothing.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use maestro_api::codec::SpecEvent;
use maestro_api::types::Action;
use maestro_api::{Event, ext};
use tokio::time::Instant;

use crate::agent::Shared;
use crate::conditions::{self as cond, set_condition};

/// The work-level condition type of an orphaned work.
pub const ORPHANED: &str = "Orphaned";
/// `Orphaned` reason: the server's store identity changed.
pub const REASON_IDENTITY: &str = "StoreIdentityChanged";
/// `Orphaned` reason: one resync answer would delete too large a share of the works.
pub const REASON_SHARE: &str = "ResyncDeleteShareExceeded";
/// When an answer does not say how many works it deletes (a Go server), it is taken as
/// complete this long after its last deletion.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Why a work is orphaned (its `Orphaned` condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Orphan {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// The guard's inputs a spec event carries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Marks {
    /// The sender's store identity.
    pub(crate) store_id: Option<String>,
    /// How many unknown works the resync answer deletes.
    pub(crate) resync_deletes: Option<usize>,
    /// An operator confirmed the deletion.
    pub(crate) confirmed: bool,
    /// A spec `resync_response`.
    pub(crate) resync: bool,
}

impl Marks {
    /// Reads the marks of `event`, whose action is `action`.
    pub(crate) fn of(event: &Event, action: Action) -> Self {
        Marks {
            store_id: ext::get_str(event, ext::STORE_ID).filter(|s| !s.is_empty()),
            resync_deletes: ext::get_str(event, ext::RESYNC_DELETES).and_then(|n| n.trim().parse().ok()),
            confirmed: ext::get_str(event, ext::WIPE_CONFIRMED).is_some_and(|v| v == "true"),
            resync: action == Action::ResyncResponse,
        }
    }

    /// True when `spec` deletes a work the store does not hold (docs/protocol.md §5.2 step 4:
    /// a resync answer's deletion without data).
    pub(crate) fn deletes_unknown(&self, spec: &SpecEvent) -> bool {
        self.resync && spec.deletion.is_some() && spec.bundle.is_none()
    }
}

/// One answer's deletions of unknown works, waiting for the rest of it.
#[derive(Debug, Default)]
struct State {
    /// The store identity the agent last synced with.
    synced: Option<String>,
    /// Works proposed for deletion (not orphaned yet).
    batch: Vec<String>,
    /// Deletions received from this answer, orphaned works' included.
    received: usize,
    store_id: Option<String>,
    expected: Option<usize>,
    last: Option<Instant>,
    timer: bool,
}

/// The guard of one agent.
#[derive(Debug, Default)]
pub(crate) struct WipeGuard {
    state: Mutex<State>,
}

impl WipeGuard {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes the store identity of a spec event that is not an unconfirmed deletion of an
    /// unknown work: the first one is remembered; a different one replaces it only from a
    /// resync answer that deletes nothing or a confirmed deletion.
    pub(crate) fn observe(&self, marks: &Marks) {
        let Some(id) = &marks.store_id else { return };
        let adopt = marks.confirmed || (marks.resync && marks.resync_deletes == Some(0));
        let mut state = self.state();
        if state.synced.is_none() || adopt {
            if state.synced.as_ref().is_some_and(|s| s != id) {
                tracing::info!(from = ?state.synced, to = %id, "the server's store identity is adopted");
            }
            state.synced = Some(id.clone());
        }
    }

    /// The store identity the agent trusts, when it knows one.
    pub(crate) fn synced(&self) -> Option<String> {
        self.state().synced.clone()
    }

    /// Adds one deletion of an unknown work (`id`, or `None` for a work already orphaned,
    /// which only counts). Returns true when the answer is complete (as many as it announced).
    fn add(&self, id: Option<String>, marks: &Marks) -> bool {
        let mut state = self.state();
        state.batch.extend(id);
        state.received += 1;
        state.store_id = marks.store_id.clone().or(state.store_id.take());
        state.expected = marks.resync_deletes.or(state.expected);
        state.last = Some(Instant::now());
        state.expected.is_some_and(|n| state.received >= n)
    }

    /// Takes the batch, resetting the answer.
    fn take(&self) -> (Vec<String>, Option<String>, Option<String>) {
        let mut state = self.state();
        let synced = state.synced.clone();
        let taken = (std::mem::take(&mut state.batch), state.store_id.take(), synced);
        state.received = 0;
        state.expected = None;
        state.last = None;
        taken
    }
}

/// Takes one unconfirmed deletion of an unknown work (`spec`): deleted or orphaned with the
/// rest of its answer, once complete.
pub(crate) fn propose(shared: &Arc<Shared>, spec: &SpecEvent, marks: &Marks) {
    let id = &spec.resource_id;
    let candidate = shared.works().get_mut(id).is_some_and(|w| {
        // Its `Deleted` or `Orphaned` status goes to the answer's source.
        w.learn_source(&spec.source);
        w.orphaned.is_none()
    });
    if shared.guard.add(candidate.then(|| id.clone()), marks) {
        decide(shared);
    } else {
        start_timer(shared);
    }
}

/// Decides the batch [`SETTLE`] after its last deletion, unless it completed before.
fn start_timer(shared: &Arc<Shared>) {
    {
        let mut state = shared.guard.state();
        if state.timer {
            return;
        }
        state.timer = true;
    }
    let weak = Arc::downgrade(shared);
    shared.tasks.spawn(async move {
        loop {
            let Some(shared) = weak.upgrade() else { return };
            let last = shared.guard.state().last;
            let Some(last) = last else { break };
            if last.elapsed() >= SETTLE {
                decide(&shared);
                break;
            }
            let cancel = shared.cancel.clone();
            drop(shared);
            if cancel.run_until_cancelled(tokio::time::sleep_until(last + SETTLE)).await.is_none() {
                return;
            }
        }
        if let Some(shared) = weak.upgrade() {
            shared.guard.state().timer = false;
        }
    });
}

/// Deletes the batch's works, or orphans them when a rule says so.
fn decide(shared: &Arc<Shared>) {
    let (batch, store_id, synced) = shared.guard.take();
    let mut works = shared.works();
    let live = works.values().filter(|w| !w.finalized && !w.deleting && w.orphaned.is_none()).count();
    let batch: Vec<String> = batch
        .into_iter()
        .filter(|id| works.get(id).is_some_and(|w| !w.finalized && !w.deleting && w.orphaned.is_none()))
        .collect();
    if batch.is_empty() {
        return;
    }
    let orphan = verdict(shared, batch.len(), live, store_id.as_deref(), synced.as_deref());
    let mut delete_now = Vec::new();
    for id in &batch {
        let Some(w) = works.get_mut(id) else { continue };
        match &orphan {
            Some(o) => orphan_work(w, o.clone()),
            None if crate::eviction::begin(shared, w) => delete_now.push(id.clone()),
            None => {}
        }
    }
    let orphaned = works.values().filter(|w| w.orphaned.is_some()).count();
    drop(works);
    if orphan.is_none() {
        shared.guard.observe(&Marks { store_id, confirmed: true, ..Marks::default() });
    }
    crate::metrics::orphaned(&shared.config.consumer, orphaned);
    for id in &batch {
        if orphan.is_some() {
            shared.status_changed(id);
        }
    }
    for id in &delete_now {
        shared.queue.add(id);
    }
}

/// Whether deleting `n` of the `live` works would be a wipe: the `Orphan` to set if so.
fn verdict(
    shared: &Shared,
    n: usize,
    live: usize,
    store_id: Option<&str>,
    synced: Option<&str>,
) -> Option<Orphan> {
    let consumer = &shared.config.consumer;
    let remedy = format!(
        "the agent keeps the objects: publish the work again to adopt them, or confirm the deletion with \
         `maestro-cli consumer confirm-wipe {consumer}`"
    );
    let percent = usize::from(shared.config.wipe_guard_percent);
    let orphan = match (store_id, synced) {
        (Some(now), Some(before)) if now != before => Orphan {
            reason: REASON_IDENTITY,
            message: format!(
                "the server's store identity changed from {before} to {now} (its database was recreated or \
                 replaced) and it does not hold this work; {remedy}"
            ),
        },
        _ if percent < 100 && n * 100 > percent * live => Orphan {
            reason: REASON_SHARE,
            message: format!(
                "a spec resync would delete {n} of the {live} works this agent holds, more than {percent}% \
                 (the server's database may have been restored from an old backup); {remedy}"
            ),
        },
        _ => return None,
    };
    tracing::warn!(consumer = %consumer, works = n, held = live, reason = orphan.reason,
        "fleet-wipe guard: the server asked to delete works its store does not hold; orphaning them instead");
    Some(orphan)
}

/// Marks `work` orphaned and sets its `Orphaned` condition.
fn orphan_work(work: &mut crate::work::Work, orphan: Orphan) {
    let mut status = work.status.clone().unwrap_or_default();
    let c = cond::condition(ORPHANED, cond::TRUE, orphan.reason, orphan.message.clone(), work.generation);
    set_condition(&mut status.conditions, c);
    work.status_hash = Some(maestro_api::statushash::status_hash(&status));
    work.status = Some(status);
    work.orphaned = Some(orphan);
    work.needs_apply = false;
}

/// A spec that adopts the orphaned `work` (the source published it again): the work is no
/// longer orphaned and its `Orphaned` condition goes.
pub(crate) fn adopt(work: &mut crate::work::Work) {
    if work.orphaned.take().is_some() {
        tracing::info!(resource_id = %work.uid, "orphaned work adopted");
        if let Some(status) = work.status.as_mut() {
            status.conditions.retain(|c| c.kind != ORPHANED);
        }
    }
}
