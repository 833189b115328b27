//! Status fan-out to gRPC source subscribers. Accepted statuses are appended to the store's
//! status event table in the same transaction as the status (architecture.md §5); the fan-out
//! task reads new rows after each commit signal (and on a sweep), turns each into the event
//! Maestro pushes to sources (protocol.md §7.1.3: the agent's status event with the spec's
//! `metadata` and `data.manifestBundle` filled from the spec), and broadcasts it in-process.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use maestro_api::codec::data_as;
use maestro_api::types::{Action, EventType, SubResource};
use maestro_api::{AttributesWriter, Data, Event, ext, json};
use maestro_store::{DynStore, Resource, StatusEventRow};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

/// A status event addressed to the subscribers of one source, already in its protobuf form:
/// encoded once for every subscriber, and far smaller than a JSON tree while the broadcast
/// ring holds it (the ring keeps its last [`StatusHub::new`] `capacity` events).
#[derive(Debug, Clone)]
pub struct SourceStatus {
    /// The source the resource belongs to.
    pub source: String,
    /// The event to push.
    pub event: maestro_api::pb::CloudEvent,
}

impl SourceStatus {
    /// The status `event` for the subscribers of `source`.
    pub fn new(source: String, event: &Event) -> Self {
        SourceStatus { source, event: maestro_api::grpc::to_proto(event) }
    }
}

/// The in-process broadcaster.
#[derive(Debug, Clone)]
pub struct StatusHub {
    tx: broadcast::Sender<Arc<SourceStatus>>,
}

impl StatusHub {
    /// A hub buffering up to `capacity` events per slow subscriber.
    pub fn new(capacity: usize) -> Self {
        StatusHub { tx: broadcast::channel(capacity).0 }
    }

    /// A new receiver (sees events sent from now on).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<SourceStatus>> {
        self.tx.subscribe()
    }

    /// Broadcasts one event; returns how many receivers got it.
    pub fn send(&self, status: SourceStatus) -> usize {
        self.tx.send(Arc::new(status)).unwrap_or(0)
    }
}

/// Builds the source-facing status event from a stored agent status event and the spec.
pub fn source_status_event(status: &Value, spec_payload: &Value) -> Option<Event> {
    let mut ev = json::from_value(status.clone()).ok()?;
    let spec = json::from_value(spec_payload.clone()).ok();
    if let Some(meta) = spec.as_ref().and_then(|s| ext::get_str(s, ext::METADATA)) {
        ext::set_str(&mut ev, ext::METADATA, meta);
    }
    ev.set_type(EventType::manifest_bundles(SubResource::Status, Action::Update).to_string());
    let bundle = spec.as_ref().and_then(|s| data_as::<Value>(s, "ManifestBundle").ok());
    if let (Some(bundle), Some(Data::Json(Value::Object(mut data)))) = (bundle, ev.data().cloned()) {
        data.insert("manifestBundle".into(), bundle);
        ev.set_data("application/json", Data::Json(Value::Object(data)));
    }
    Some(ev)
}

/// The source-facing status event of a stored resource, if it has a status.
pub fn resource_status_event(r: &Resource) -> Option<SourceStatus> {
    let status = r.status.as_ref()?;
    Some(SourceStatus::new(r.source.clone(), &source_status_event(status, &r.payload)?))
}

fn row_status(row: &StatusEventRow) -> Option<SourceStatus> {
    Some(SourceStatus::new(row.source.clone(), &source_status_event(&row.status, &row.payload)?))
}

/// Status event rows read per query by the fan-out.
const FANOUT_BATCH: i64 = 500;

/// How often the status event rows already fanned out are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// Runs the fan-out until `shutdown` becomes true. Starts after the newest existing row
/// (sources get no history on Subscribe, as in Maestro). Delivered rows are pruned every
/// [`PRUNE_EVERY`] alongside, never in the fan-out's way: a prune deletes thousands of rows
/// under load, and statuses waiting behind it would reach their sources late.
pub async fn run_fanout(store: DynStore, hub: StatusHub, shutdown: watch::Receiver<bool>) {
    let delivered = AtomicI64::new(store.last_status_event_seq().await.unwrap_or(0));
    tokio::join!(fanout(&store, &hub, &delivered, shutdown.clone()), prune(&store, &delivered, shutdown));
}

/// Reads new status event rows and sends them to the hub; `delivered` follows the last seq.
async fn fanout(
    store: &DynStore,
    hub: &StatusHub,
    delivered: &AtomicI64,
    mut shutdown: watch::Receiver<bool>,
) {
    let signal = store.status_signal();
    let mut last = delivered.load(Ordering::Acquire);
    loop {
        match store.status_events_after(last, FANOUT_BATCH).await {
            Ok(rows) if !rows.is_empty() => {
                for row in &rows {
                    last = last.max(row.seq);
                    match row_status(row) {
                        Some(s) => {
                            hub.send(s);
                        }
                        None => tracing::warn!(seq = row.seq, "unreadable status event row skipped"),
                    }
                }
                delivered.store(last, Ordering::Release);
                // A short batch read everything committed so far: wait for the next signal
                // (a commit after the read leaves a wake, `Store::status_signal`).
                if rows.len() as i64 == FANOUT_BATCH {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading status events failed"),
        }
        tokio::select! {
            _ = signal.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Every [`PRUNE_EVERY`], deletes the rows up to `delivered`.
async fn prune(store: &DynStore, delivered: &AtomicI64, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = store.prune_status_events(delivered.load(Ordering::Acquire)).await {
            tracing::warn!(error = %e, "pruning status events failed");
        }
    }
}
