//! Change feeds: how the store's readers (the spec dispatcher, the status fan-out) learn of new
//! spec outbox rows and status event rows (docs/architecture.md §5.7), the same way on every backend.
//!
//! A commit hands its rows to the feed's one reader in process ([`Change::Rows`]), so the
//! reader need not read them back. Rows it does not hand over wake the reader instead
//! ([`Change::Read`]: read the store): spec updates and deletions, a batch the reader was too
//! far behind to take, every commit while nobody reads the feed, and (PostgreSQL,
//! `crate::postgres`) the commits of other server instances, announced with `NOTIFY`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::rules::PlannedEvent;
use crate::sql::Returned;
use crate::{FEED_CAPACITY, PendingSpec, Resource, SpecAction, SpecEventRow, StatusEventRow};

/// What [`Feed::next`] reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T> {
    /// One committed transaction's rows, in `seq` order, handed over by this process.
    Rows(Vec<T>),
    /// Rows may have been committed that were not handed over: read them from the store
    /// (spurious wakes are possible; never skip the read).
    Read,
}

/// The reading side of a store's feed of one kind of row: spec outbox rows with their
/// resources ([`crate::Store::spec_changes`]) or status event rows
/// ([`crate::Store::status_changes`]).
#[derive(Debug)]
pub struct Feed<T> {
    rows: Option<mpsc::Receiver<Vec<T>>>,
    wake: Arc<Notify>,
}

impl<T> Feed<T> {
    /// A feed of the batches `rows` brings (`None`: wake-ups only) and the wake-ups of `wake`
    /// (fired with `notify_waiters()` then `notify_one()`, so a wake is never lost).
    pub fn new(rows: Option<mpsc::Receiver<Vec<T>>>, wake: Arc<Notify>) -> Self {
        Feed { rows, wake }
    }

    /// Waits for the next change; queued rows come first. Once the rows' channel is closed
    /// the feed reports [`Change::Read`] once, then wake-ups only. Cancel safe.
    pub async fn next(&mut self) -> Change<T> {
        let rows = async {
            match &mut self.rows {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let fed = tokio::select! {
            biased;
            batch = rows => batch,
            () = self.wake.notified() => return Change::Read,
        };
        match fed {
            Some(rows) => Change::Rows(rows),
            None => {
                tracing::warn!("a store feed closed; reading the store only");
                self.rows = None;
                Change::Read
            }
        }
    }

    /// Whether this feed hands over rows (the store's first feed of its kind) or only
    /// wake-ups.
    pub fn has_rows(&self) -> bool {
        self.rows.is_some()
    }

    /// A batch already queued, without waiting.
    pub fn try_rows(&mut self) -> Option<Vec<T>> {
        self.rows.as_mut()?.try_recv().ok()
    }
}

/// Wakes every task waiting on `notify` now and leaves one permit for the next `notified()`,
/// so a wake between two checks is not lost.
pub(crate) fn fire(notify: &Notify) {
    notify.notify_waiters();
    notify.notify_one();
}

/// The sending side of one feed: a bounded single-reader channel of committed batches, the
/// readers' wake, and whether other server instances have yet to hear of a commit.
#[derive(Debug)]
pub(crate) struct Channel<T> {
    tx: mpsc::Sender<Vec<T>>,
    rx: Mutex<Option<mpsc::Receiver<Vec<T>>>>,
    taken: AtomicBool,
    wake: Arc<Notify>,
    unannounced: AtomicBool,
    /// Shared by a store's channels: fired after every commit, for the announcer.
    outbound: Arc<Notify>,
}

impl<T> Channel<T> {
    fn new(outbound: Arc<Notify>) -> Self {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        let (rx, taken, unannounced) = (Mutex::new(Some(rx)), AtomicBool::new(false), AtomicBool::new(false));
        Channel { tx, rx, taken, wake: Arc::default(), unannounced, outbound }
    }

    /// The batches' receiver, on the first call only.
    pub(crate) fn take(&self) -> Option<mpsc::Receiver<Vec<T>>> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.taken.fetch_or(rx.is_some(), Ordering::AcqRel);
        rx
    }

    /// The readers' wake.
    pub(crate) fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// True while a reader holds the channel: only then are batches worth building (a store
    /// nobody reads the feeds of, e.g. the benchmark's store alone, does no extra work).
    pub(crate) fn wanted(&self) -> bool {
        self.taken.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    /// After a commit that appended rows: hands `batch` to the reader, or wakes the readers
    /// when there is none, it was not built, or the reader is [`FEED_CAPACITY`] batches behind
    /// (the rows are then read from the store). Other instances are told either way.
    pub(crate) fn committed(&self, batch: Option<Vec<T>>) {
        if batch.is_none_or(|b| self.tx.try_send(b).is_err()) {
            fire(&self.wake);
        }
        self.unannounced.store(true, Ordering::Release);
        self.outbound.notify_one();
    }

    /// Tells other instances of rows they may now take (released claims), without waking
    /// this store's readers.
    pub(crate) fn announce(&self) {
        self.unannounced.store(true, Ordering::Release);
        self.outbound.notify_one();
    }

    /// True, and cleared, when a commit has not been announced to other instances yet.
    pub(crate) fn take_unannounced(&self) -> bool {
        self.unannounced.swap(false, Ordering::AcqRel)
    }
}

/// A store's two feeds, and the wake of the announcer (PostgreSQL `NOTIFY`).
#[derive(Debug)]
pub(crate) struct Signals {
    /// Spec outbox rows: creations are fed with their resources, updates and deletions wake.
    pub(crate) spec: Channel<PendingSpec>,
    /// Status event rows.
    pub(crate) status: Channel<StatusEventRow>,
    /// Fired after every commit of either kind.
    pub(crate) outbound: Arc<Notify>,
    /// The registered server instance (`crate::Store::register_instance`): the spec rows fed
    /// to its dispatcher are claimed by it as they are written (docs/architecture.md §9).
    pub(crate) claimant: std::sync::OnceLock<String>,
}

impl Default for Signals {
    fn default() -> Self {
        let outbound = Arc::new(Notify::new());
        let (spec, status) = (Channel::new(outbound.clone()), Channel::new(outbound.clone()));
        Signals { spec, status, outbound, claimant: std::sync::OnceLock::new() }
    }
}

impl Signals {
    /// Wakes the readers of both feeds (another instance may have committed rows unseen).
    pub(crate) fn wake_all(&self) {
        fire(&self.spec.wake);
        fire(&self.status.wake);
    }
}

/// The spec feed's batch of a committed creation group: each outbox row with its resource, in
/// `seq` order. `None` (not fed: the rows are found pending) if the returned rows do not match
/// the created resources one to one, which cannot happen.
pub(crate) fn feed_creations(created: &[Resource], mut seqs: Vec<(i64, String)>) -> Option<Vec<PendingSpec>> {
    if seqs.len() != created.len() {
        return None;
    }
    seqs.sort_unstable_by_key(|(seq, _)| *seq);
    let by_id: HashMap<&str, &Resource> = created.iter().map(|r| (r.id.as_str(), r)).collect();
    let pending = |(seq, resource_id): (i64, String)| {
        let r = *by_id.get(resource_id.as_str())?;
        let (consumer_name, action, version, created_at) =
            (r.consumer_name.clone(), SpecAction::Create, r.version, r.created_at);
        let event = SpecEventRow { seq, resource_id, consumer_name, action, version, created_at };
        Some(PendingSpec { event, resource: Some(Arc::new(r.clone())) })
    };
    seqs.into_iter().map(pending).collect()
}

/// The status feed's rows of a committed group: the planned events with the `seq` and spec
/// payload the insert returned. `None` (not fed: the fan-out is woken to read the rows) if the
/// returned rows do not match the events one to one, which cannot happen.
pub(crate) fn feed_rows(
    events: &[PlannedEvent],
    texts: &[Option<&str>],
    mut returned: Returned,
    now: DateTime<Utc>,
) -> Option<Vec<StatusEventRow>> {
    // Inserted in event order (PostgreSQL: under the sequence lock): `seq` order is event order.
    returned.sort_unstable_by_key(|(seq, _, _)| *seq);
    if returned.len() != events.len()
        || returned.iter().zip(events).any(|((_, id, _), e)| *id != e.resource.id)
    {
        tracing::error!(events = events.len(), "status feed rows do not match; not fed");
        return None;
    }
    let mut rows = Vec::with_capacity(events.len());
    for ((seq, resource_id, payload), e) in returned.into_iter().zip(events) {
        let status = texts.get(e.write).copied().flatten()?.to_owned();
        let (source, consumer_name) = (e.resource.source.clone(), e.resource.consumer_name.clone());
        rows.push(StatusEventRow {
            seq,
            resource_id,
            source,
            consumer_name,
            kind: e.kind,
            payload,
            status,
            created_at: now,
        });
    }
    Some(rows)
}
