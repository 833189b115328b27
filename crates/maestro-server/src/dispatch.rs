//! The spec dispatcher: publishes pending spec outbox rows to agents (docs/architecture.md §5).
//! Creations arrive through the store's change feed as they commit; everything else is read
//! from the outbox when the feed says so (updates, deletions, other server instances' rows)
//! and on a periodic sweep. Rows go oldest first, each publishing the resource's CURRENT state
//! (so a burst of updates coalesces), and are marked done. A consumer whose publish fails with
//! a retryable error keeps its rows pending and is skipped until the next sweep, so
//! per-consumer order is kept.
//!
//! On a database several server instances share (docs/architecture.md §9) each instance
//! dispatches only the rows it claimed (its own fed creations, and what its sweeps claim),
//! so one instance sends each row. With the gRPC broker, hosted by the server itself, only the
//! instance holding a consumer's agent stream can deliver: sweeps claim only rows of consumers
//! held here, a row for an agent not connected here is released for the instance that holds
//! it; rows of consumers nobody holds are completed by the instance registry's heartbeat
//! (`crate::instances`; the agent's spec resync on connect delivers).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use maestro_api::types::Action;
use maestro_store::{
    Change, DeadLetterOrigin, DynStore, PendingSpec, Resource, SpecAction, SpecEventRow, StoreError,
};
use maestro_transport::retry::CancellationToken;
use maestro_transport::trace::{self, TraceContext};
use maestro_transport::{DynSourceTransport, Error as TransportError};
use tracing::Instrument;

use crate::metrics;
use crate::spec::outgoing_spec;

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Rows fetched per pass.
    pub batch: i64,
    /// Sweep period when the change feed is quiet (default 2 s).
    pub sweep: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig { batch: 500, sweep: Duration::from_secs(2) }
    }
}

/// Runs the dispatcher until `cancel` is cancelled.
///
/// Creations come from the store's change feed ([`maestro_store::Store::spec_changes`]):
/// delivered as they commit, without reading them back. The outbox is read (a sweep) at
/// start, whenever the feed says so ([`Change::Read`]: updates, deletions, creations that were
/// not fed, other server instances' rows), and every [`DispatchConfig::sweep`]; fed batches
/// already queued are delivered before each sweep, and a fed row the previous sweep already
/// sent is skipped, so a row is sent once.
pub async fn run(
    store: DynStore,
    transport: DynSourceTransport,
    source_id: String,
    config: DispatchConfig,
    cancel: CancellationToken,
) {
    let mut changes = store.spec_changes();
    let mut sweep = tokio::time::interval(config.sweep);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Claims need a registered instance (the server registers before it starts the
    // dispatcher); a store used without one dispatches as the only instance.
    let shared = store.is_shared() && store.instance_id().is_some();
    let mut state = Dispatcher {
        store: &store,
        transport: &transport,
        source_id: &source_id,
        store_id: None,
        shared,
        held_only: shared && transport.capabilities().server_hosts_agents,
        blocked: HashSet::new(),
        swept: HashSet::new(),
    };
    let mut read = true;
    loop {
        if read {
            while let Some(batch) = changes.try_rows() {
                state.deliver_fed(batch).await;
            }
            read = match state.sweep(config.batch).await {
                Ok(n) => n as i64 >= config.batch,
                Err(e) => {
                    tracing::warn!(error = %e, "spec dispatch pass failed");
                    false
                }
            };
            if read {
                continue;
            }
        }
        tokio::select! {
            change = changes.next() => match change {
                Change::Rows(batch) => state.deliver_fed(batch).await,
                Change::Read => read = true,
            },
            _ = sweep.tick() => read = true,
            () = cancel.cancelled() => return,
        }
    }
}

/// The dispatcher's state between passes.
struct Dispatcher<'a> {
    store: &'a DynStore,
    transport: &'a DynSourceTransport,
    source_id: &'a str,
    /// The store identity every spec event carries (docs/protocol.md §5.5); read by the
    /// first sweep (again by the next while it fails).
    store_id: Option<String>,
    /// Other server instances may share the store: rows are claimed, and a row for an agent
    /// not connected here is released, not done.
    shared: bool,
    /// Claim only rows of consumers whose agents are connected here (gRPC broker, shared).
    held_only: bool,
    /// Consumers whose delivery failed since the last sweep: their later fed rows wait
    /// (pending) for the next sweep, which sends them in order.
    blocked: HashSet<String>,
    /// Outbox rows the last sweep sent: a fed batch that arrives after the sweep read its rows
    /// does not send them again.
    swept: HashSet<i64>,
}

impl Dispatcher<'_> {
    /// Delivers a fed batch and marks what was sent done.
    async fn deliver_fed(&mut self, batch: Vec<PendingSpec>) {
        let batch = batch.into_iter().filter(|p| !self.swept.contains(&p.event.seq)).collect();
        let passed = self.deliver_all(batch).await;
        if let Err(e) = self.settle(&passed).await {
            // The rows stay pending: the next sweep sends them again (agents ignore a version
            // they hold).
            tracing::warn!(error = %e, rows = passed.done.len(), "marking fed spec rows done failed");
        }
    }

    /// Marks the sent rows done and releases those for agents connected elsewhere.
    async fn settle(&self, passed: &Passed) -> Result<(), StoreError> {
        self.store.release_spec_events(&passed.elsewhere).await?;
        self.store.complete_spec_events(&passed.done).await
    }

    /// One pass over the pending outbox rows (read with their resources in one batch); returns
    /// how many were fetched, less those released for another instance (a full batch of rows
    /// for an agent that just left this instance is not read again at once).
    ///
    /// # Errors
    /// Store failures.
    async fn sweep(&mut self, batch: i64) -> Result<usize, StoreError> {
        if self.store_id.is_none() {
            self.store_id = Some(self.store.store_identity().await?);
        }
        self.blocked.clear();
        self.swept.clear();
        let pending = if self.shared {
            self.store.claim_spec_deliveries(batch, self.held_only).await?
        } else {
            self.store.pending_spec_deliveries(batch).await?
        };
        let fetched = pending.len();
        let passed = self.deliver_all(pending).await;
        self.swept.extend(passed.done.iter().copied());
        self.settle(&passed).await?;
        Ok(fetched - passed.elsewhere.len())
    }

    /// Delivers rows in order, skipping the consumers in `blocked` and adding those whose
    /// delivery fails (their later rows stay pending, so per-consumer order is kept); or, on a
    /// broker that keeps no order ([`maestro_transport::SourceTransport::publish_concurrency`]
    /// over 1), up to that many at once: [`Dispatcher::deliver_unordered`].
    async fn deliver_all(&mut self, rows: Vec<PendingSpec>) -> Passed {
        let concurrency = self.transport.publish_concurrency();
        if concurrency > 1 {
            return self.deliver_unordered(rows, concurrency).await;
        }
        let mut passed = Passed::with_capacity(rows.len());
        for PendingSpec { event: row, resource } in rows {
            if self.blocked.contains(&row.consumer_name) {
                continue;
            }
            let ids = (self.source_id, self.store_id.as_deref());
            let outcome = deliver_row(self.store, self.transport, ids, &row, resource.as_deref()).await;
            if let Some(failed) = passed.record(row, outcome, self.shared) {
                self.blocked.insert(failed);
            }
        }
        passed
    }

    /// Delivers rows with up to `concurrency` publishes in flight, skipping the consumers
    /// already in `blocked`. A row whose publish fails retryably stays pending and blocks its
    /// consumer's fed rows until the next sweep, as in order; its consumer's rows published
    /// beside it are done (they reached the broker), and the retried row then sends the
    /// resource's current state.
    async fn deliver_unordered(&mut self, rows: Vec<PendingSpec>, concurrency: usize) -> Passed {
        let mut passed = Passed::with_capacity(rows.len());
        let ids = (self.source_id, self.store_id.as_deref());
        let (store, transport, blocked) = (self.store, self.transport, &self.blocked);
        let mut sent =
            futures::stream::iter(rows.into_iter().filter(|p| !blocked.contains(&p.event.consumer_name)))
                .map(|PendingSpec { event: row, resource }| async move {
                    let outcome = deliver_row(store, transport, ids, &row, resource.as_deref()).await;
                    (row, outcome)
                })
                .buffer_unordered(concurrency);
        let mut failed = Vec::new();
        while let Some((row, outcome)) = sent.next().await {
            failed.extend(passed.record(row, outcome, self.shared));
        }
        drop(sent);
        self.blocked.extend(failed);
        passed
    }
}

/// What a pass did with its rows.
struct Passed {
    /// Rows to mark done: sent, set aside as dead letters, or with nothing to send.
    done: Vec<i64>,
    /// Rows whose consumer has no agent connected here (gRPC broker): released.
    elsewhere: Vec<i64>,
}

impl Passed {
    fn with_capacity(rows: usize) -> Passed {
        Passed { done: Vec::with_capacity(rows), elsewhere: Vec::new() }
    }

    /// Files one row by how its delivery went; returns its consumer when it failed (retryably:
    /// the row stays pending).
    fn record(
        &mut self,
        row: SpecEventRow,
        outcome: Result<Delivered, String>,
        shared: bool,
    ) -> Option<String> {
        match outcome {
            Ok(Delivered::Sent) => self.done.push(row.seq),
            // Another instance may hold the agent: it takes the row once released.
            Ok(Delivered::NotHere) if shared => self.elsewhere.push(row.seq),
            // No other instance: the agent's spec resync on connect delivers.
            Ok(Delivered::NotHere) => self.done.push(row.seq),
            Err(e) => {
                tracing::debug!(consumer = ?row.consumer_name, resource = ?row.resource_id, error = %e, "spec publish deferred");
                return Some(row.consumer_name);
            }
        }
        None
    }
}

/// How a row left [`deliver`].
enum Delivered {
    /// Sent (or stale, or set aside as a dead letter): done.
    Sent,
    /// The broker has no agent of the consumer here.
    NotHere,
}

/// [`deliver`] for a row with its resource; a row without one (its deletion already
/// confirmed) has nothing to send and is done.
async fn deliver_row(
    store: &DynStore,
    transport: &DynSourceTransport,
    ids: (&str, Option<&str>),
    row: &SpecEventRow,
    resource: Option<&Resource>,
) -> Result<Delivered, String> {
    match resource {
        Some(resource) => deliver(store, transport, ids, row, resource).await,
        None => Ok(Delivered::Sent),
    }
}

/// Publishes the resource's current state for one outbox row. `Err` only for a retryable
/// failure (the row stays pending): a retryable transport failure, or a permanent one whose
/// dead letter could not be stored, since a row is marked done only when the broker took its
/// event or the failure is recorded where the source can see it (docs/security.md, "Dead
/// letters").
async fn deliver(
    store: &DynStore,
    transport: &DynSourceTransport,
    (source_id, store_id): (&str, Option<&str>),
    row: &SpecEventRow,
    resource: &Resource,
) -> Result<Delivered, String> {
    let started = Instant::now();
    let event_type = match row.action {
        SpecAction::Create => "create",
        SpecAction::Update => "update",
        SpecAction::Delete => "delete",
    };
    if resource.version > row.version && row.action != SpecAction::Delete && resource.deleted_at.is_none() {
        metrics::spec_reconciled(event_type, "skipped", started.elapsed());
        return Ok(Delivered::Sent); // a newer outbox row carries the current state
    }
    let action = match (row.action, resource.version) {
        (_, _) if resource.deleted_at.is_some() => Action::Delete,
        (SpecAction::Create, 1) => Action::Create,
        _ => Action::Update,
    };
    let mut event = outgoing_spec(resource, source_id, action);
    if let Some(id) = store_id {
        maestro_api::ext::set_str(&mut event, maestro_api::ext::STORE_ID, id);
    }
    let span = tracing::info_span!("spec dispatch", consumer = %resource.consumer_name, version = resource.version, trace_id = tracing::field::Empty);
    if let Some(cx) = TraceContext::of_json(&resource.payload) {
        cx.link(&span);
    }
    trace::record_trace_id(&span);
    trace::stamp(&mut event, &span);
    let publish_started = Instant::now();
    let published = transport.publish(&event).instrument(span).await;
    let broker = transport.backend();
    let (outcome, status, error_kind) = match published {
        Ok(()) => {
            metrics::count_event(metrics::CLOUDEVENTS_SENT, source_id, &resource.consumer_name, &event);
            (Ok(Delivered::Sent), "success", None)
        }
        Err(TransportError::NoSubscriber { .. }) => {
            (Ok(Delivered::NotHere), "skipped", Some("no_subscriber"))
        }
        Err(e) if e.is_retryable() => (Err(e.to_string()), "error", Some("retryable")),
        Err(e) => {
            tracing::error!(resource = ?resource.id, consumer = ?resource.consumer_name, version = resource.version, error = %e, "spec event refused by the broker; set aside as a dead letter");
            let stored = record_refused(store, broker, &event, resource, &e).await;
            (stored.map(|()| Delivered::Sent), "error", Some("permanent"))
        }
    };
    metrics::published(broker, publish_started, error_kind);
    metrics::spec_reconciled(event_type, status, started.elapsed());
    outcome
}

/// Stores the dead letter of a spec event the broker refused for good.
async fn record_refused(
    store: &DynStore,
    broker: &str,
    event: &maestro_api::Event,
    resource: &Resource,
    error: &TransportError,
) -> Result<(), String> {
    let reason = format!("version {} refused by the broker: {error}", resource.version);
    let consumer = Some(resource.consumer_name.clone());
    let letter = crate::ingest::dead_letter(broker, DeadLetterOrigin::SpecPublish, event, consumer, &reason);
    store.add_dead_letter(letter).await.map(|_| ()).map_err(|e| format!("storing a dead letter: {e}"))
}
