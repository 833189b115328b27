//! The spec dispatcher: publishes pending spec outbox rows to agents (architecture.md §5).
//! It wakes on the store's commit signal and on a periodic sweep, processes rows oldest first,
//! publishes the resource's CURRENT state (so a burst of updates coalesces), and marks rows
//! done. A consumer whose publish fails with a retryable error keeps its rows pending and is
//! skipped for the rest of the pass, so per-consumer order is kept.

use std::collections::HashSet;
use std::time::Duration;

use maestro_api::types::Action;
use maestro_store::{DynStore, PendingSpec, Resource, SpecAction, SpecEventRow, StoreError};
use maestro_transport::{DynSourceTransport, Error as TransportError};
use tokio::sync::watch;

use crate::spec::outgoing_spec;

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Rows fetched per pass.
    pub batch: i64,
    /// Sweep period when no commit signal arrives (default 2 s).
    pub sweep: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig { batch: 500, sweep: Duration::from_secs(2) }
    }
}

/// Runs the dispatcher until `shutdown` becomes true.
pub async fn run(
    store: DynStore,
    transport: DynSourceTransport,
    source_id: String,
    config: DispatchConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let signal = store.spec_signal();
    loop {
        let more = match pass(&store, &transport, &source_id, config.batch).await {
            Ok(n) => n as i64 >= config.batch,
            Err(e) => {
                tracing::warn!(error = %e, "spec dispatch pass failed");
                false
            }
        };
        if more {
            continue;
        }
        tokio::select! {
            _ = signal.notified() => {}
            _ = tokio::time::sleep(config.sweep) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One pass over pending rows (read with their resources in one batch); returns how many
/// rows were fetched.
///
/// # Errors
/// Store failures.
pub async fn pass(
    store: &DynStore,
    transport: &DynSourceTransport,
    source_id: &str,
    batch: i64,
) -> Result<usize, StoreError> {
    let pending = store.pending_spec_deliveries(batch).await?;
    let fetched = pending.len();
    let mut blocked: HashSet<String> = HashSet::new();
    let mut done = Vec::new();
    for PendingSpec { event: row, resource } in pending {
        if blocked.contains(&row.consumer_name) {
            continue;
        }
        // No resource row: its deletion is already confirmed, nothing to send.
        let Some(resource) = resource else {
            done.push(row.seq);
            continue;
        };
        match deliver(transport, source_id, &row, &resource).await {
            Ok(()) => done.push(row.seq),
            Err(e) => {
                tracing::debug!(consumer = %row.consumer_name, resource = %row.resource_id, error = %e, "spec publish deferred");
                blocked.insert(row.consumer_name.clone());
            }
        }
    }
    if !done.is_empty() {
        store.complete_spec_events(&done).await?;
    }
    Ok(fetched)
}

/// Publishes the resource's current state for one outbox row. `Err` only for a retryable
/// transport failure (the row stays pending).
async fn deliver(
    transport: &DynSourceTransport,
    source_id: &str,
    row: &SpecEventRow,
    resource: &Resource,
) -> Result<(), TransportError> {
    if resource.version > row.version && row.action != SpecAction::Delete && resource.deleted_at.is_none() {
        return Ok(()); // a newer outbox row carries the current state
    }
    let action = match (row.action, resource.version) {
        (_, _) if resource.deleted_at.is_some() => Action::Delete,
        (SpecAction::Create, 1) => Action::Create,
        _ => Action::Update,
    };
    let event = outgoing_spec(resource, source_id, action);
    match transport.publish(&event).await {
        Ok(()) => Ok(()),
        // No agent of this consumer is connected here: its spec resync on connect delivers.
        Err(TransportError::NoSubscriber { .. }) => Ok(()),
        Err(e) if e.is_retryable() => Err(e),
        Err(e) => {
            tracing::error!(resource = %resource.id, consumer = %resource.consumer_name, error = %e, "spec event cannot be delivered; dropped");
            Ok(())
        }
    }
}
