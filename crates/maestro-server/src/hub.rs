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

use crate::spec::own_spec_form;

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

/// Builds the source-facing status event from a stored agent status event and the spec
/// (protocol.md §7.1.3): the status event, typed `status.update_request`, with the spec's
/// `metadata` extension and its bundle as `data.manifestBundle`. `None` when the status is not
/// a CloudEvent.
pub fn source_status_event(status: &Value, spec_payload: &Value) -> Option<Event> {
    source_status_event_owned(status.clone(), spec_payload.clone())
}

/// [`source_status_event`] consuming both JSON trees, so neither is copied (the fan-out's path:
/// a tree of each ~1–3 KB event per status).
pub fn source_status_event_owned(status: Value, spec_payload: Value) -> Option<Event> {
    let mut ev = json::from_value(status).ok()?;
    let (metadata, bundle) = spec_parts(spec_payload);
    if let Some(meta) = metadata {
        ext::set_str(&mut ev, ext::METADATA, &meta);
    }
    ev.set_type(EventType::manifest_bundles(SubResource::Status, Action::Update).to_string());
    if let (Some(bundle), Some(Data::Json(Value::Object(_)))) = (bundle, ev.data())
        && let Some(Data::Json(Value::Object(mut data))) = ev.set_data_unchecked(Data::Json(Value::Null))
    {
        data.insert("manifestBundle".into(), bundle);
        ev.set_data("application/json", Data::Json(Value::Object(data)));
    }
    Some(ev)
}

/// The `metadata` extension and the bundle (`data`) of a stored spec event: taken from the
/// tree when it is in this server's own form ([`crate::spec::own_spec_form`]), else through the
/// CloudEvent decoder.
fn spec_parts(spec: Value) -> (Option<String>, Option<Value>) {
    match spec {
        Value::Object(mut m) if own_spec_form(&m).is_some() => {
            let meta = m.get(ext::METADATA).and_then(Value::as_str).map(str::to_owned);
            (meta, m.remove("data"))
        }
        other => {
            let spec = json::from_value(other).ok();
            let meta = spec.as_ref().and_then(|s| ext::get_str(s, ext::METADATA));
            let bundle = spec.as_ref().and_then(|s| data_as::<Value>(s, "ManifestBundle").ok());
            (meta, bundle)
        }
    }
}

/// The source-facing status event of a stored resource, if it has a status.
pub fn resource_status_event(r: &Resource) -> Option<SourceStatus> {
    let status = r.status.as_ref()?;
    Some(SourceStatus::new(r.source.clone(), &source_status_event(status, &r.payload)?))
}

fn row_status(row: StatusEventRow) -> Option<SourceStatus> {
    Some(SourceStatus::new(row.source, &source_status_event_owned(row.status, row.payload)?))
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
                let full = rows.len() as i64 == FANOUT_BATCH;
                for row in rows {
                    let seq = row.seq;
                    last = last.max(seq);
                    match row_status(row) {
                        Some(s) => {
                            hub.send(s);
                        }
                        None => tracing::warn!(seq, "unreadable status event row skipped"),
                    }
                }
                delivered.store(last, Ordering::Release);
                // A short batch read everything committed so far: wait for the next signal
                // (a commit after the read leaves a wake, `Store::status_signal`).
                if full {
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

#[cfg(test)]
mod tests {
    use super::*;
    use maestro_api::codec::{SpecEventBuilder, StatusEventBuilder};
    use maestro_api::payload::ManifestBundleStatus;
    use maestro_api::{AttributesReader, Data};
    use serde_json::json;

    fn stored_pair() -> (Value, Value) {
        let bundle =
            json!({"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}]});
        let meta = json!({"name": "work-1", "labels": {"a": "b"}});
        let spec = SpecEventBuilder::new("maestro", "rid", 3, "c1")
            .metadata(meta.as_object().cloned().unwrap_or_default())
            .bundle_json(bundle)
            .build();
        let status = StatusEventBuilder {
            source: "c1-work-agent",
            resource_id: "rid",
            resource_version: 3,
            cluster_name: "c1",
            original_source: "maestro",
            sequence_id: "1834773391719010304",
            status_hash: "0",
            metadata: None,
            action: Action::Update,
        }
        .build(&ManifestBundleStatus::default());
        (json::to_value(&status), json::to_value(&spec))
    }

    fn data(ev: &Event) -> Value {
        match ev.data() {
            Some(Data::Json(v)) => v.clone(),
            other => panic!("JSON data expected, got {other:?}"),
        }
    }

    /// The fan-out's event: the status event typed `status.update_request`, with the spec's
    /// `metadata` extension and bundle (protocol.md §7.1.3), everything else of the status kept.
    #[test]
    fn the_source_status_event_carries_the_spec_metadata_and_bundle() {
        let (status, spec) = stored_pair();
        let ev = source_status_event_owned(status.clone(), spec.clone()).expect("an event");
        let original = json::from_value(status).expect("status");
        let spec_ev = json::from_value(spec).expect("spec");
        assert_eq!(
            ev.ty(),
            "io.open-cluster-management.works.v1alpha1.manifestbundles.status.update_request"
        );
        assert_eq!(ext::get_str(&ev, ext::METADATA), ext::get_str(&spec_ev, ext::METADATA));
        assert!(ext::get_str(&ev, ext::METADATA).is_some_and(|m| m.contains("work-1")));
        assert_eq!(ev.id(), original.id());
        assert_eq!(ext::get_str(&ev, ext::RESOURCE_ID).as_deref(), Some("rid"));
        let mut want = data(&original);
        want["manifestBundle"] = data(&spec_ev);
        assert_eq!(data(&ev), want);
    }

    /// A spec stored with binary data (`data_base64`, not this server's form) goes through the
    /// CloudEvent decoder and gives the same event.
    #[test]
    fn a_spec_with_binary_data_gives_the_same_event() {
        let (status, spec) = stored_pair();
        let mut binary = json::from_value(spec.clone()).expect("spec");
        let bytes = serde_json::to_vec(&data(&binary)).expect("bytes");
        binary.set_data("application/json", Data::Binary(bytes));
        let binary = json::to_value(&binary);
        assert!(binary.get("data_base64").is_some() && binary.get("data").is_none());
        let fast = source_status_event_owned(status.clone(), spec).expect("fast path");
        let slow = source_status_event(&status, &binary).expect("decoder path");
        assert_eq!(json::to_value(&fast), json::to_value(&slow));
        assert!(source_status_event(&json!({"not": "an event"}), &json!({})).is_none());
    }
}
