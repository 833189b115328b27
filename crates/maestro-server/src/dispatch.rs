//! The spec dispatcher: publishes pending spec outbox rows to agents (architecture.md §5).
//! It wakes on the store's commit signal and on a periodic sweep, processes rows oldest first,
//! publishes the resource's CURRENT state (so a burst of updates coalesces), and marks rows
//! done. A consumer whose publish fails with a retryable error keeps its rows pending and is
//! skipped for the rest of the pass, so per-consumer order is kept.

use std::collections::HashSet;
use std::time::Duration;

use maestro_api::types::Action;
use maestro_store::{DynStore, SpecAction, SpecEventRow, StoreError};
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

/// One pass over pending rows; returns how many rows were fetched.
///
/// # Errors
/// Store failures.
pub async fn pass(
    store: &DynStore,
    transport: &DynSourceTransport,
    source_id: &str,
    batch: i64,
) -> Result<usize, StoreError> {
    let rows = store.pending_spec_events(batch).await?;
    let fetched = rows.len();
    let mut blocked: HashSet<String> = HashSet::new();
    let mut done = Vec::new();
    for row in rows {
        if blocked.contains(&row.consumer_name) {
            continue;
        }
        match deliver(store, transport, source_id, &row).await {
            Ok(()) => done.push(row.seq),
            Err(DeliverError::Retry(e)) => {
                tracing::debug!(consumer = %row.consumer_name, resource = %row.resource_id, error = %e, "spec publish deferred");
                blocked.insert(row.consumer_name.clone());
            }
            Err(DeliverError::Store(e)) => return Err(e),
        }
    }
    if !done.is_empty() {
        store.complete_spec_events(&done).await?;
    }
    Ok(fetched)
}

enum DeliverError {
    Retry(TransportError),
    Store(StoreError),
}

async fn deliver(
    store: &DynStore,
    transport: &DynSourceTransport,
    source_id: &str,
    row: &SpecEventRow,
) -> Result<(), DeliverError> {
    let resource = match store.get_resource(&row.resource_id).await {
        Ok(r) => r,
        Err(StoreError::NotFound { .. }) => return Ok(()), // already confirmed deleted
        Err(e) => return Err(DeliverError::Store(e)),
    };
    if resource.version > row.version && row.action != SpecAction::Delete && resource.deleted_at.is_none() {
        return Ok(()); // a newer outbox row carries the current state
    }
    let action = match (row.action, resource.version) {
        (_, _) if resource.deleted_at.is_some() => Action::Delete,
        (SpecAction::Create, 1) => Action::Create,
        _ => Action::Update,
    };
    let event = outgoing_spec(&resource, source_id, action);
    match transport.publish(&event).await {
        Ok(()) => Ok(()),
        // No agent of this consumer is connected here: its spec resync on connect delivers.
        Err(TransportError::NoSubscriber { .. }) => Ok(()),
        Err(e) if e.is_retryable() => Err(DeliverError::Retry(e)),
        Err(e) => {
            tracing::error!(resource = %resource.id, consumer = %resource.consumer_name, error = %e, "spec event cannot be delivered; dropped");
            Ok(())
        }
    }
}
