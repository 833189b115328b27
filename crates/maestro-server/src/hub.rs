//! Status fan-out to gRPC source subscribers. Accepted statuses are appended to the store's
//! status event table in the same transaction as the status (docs/architecture.md §5); the fan-out
//! task takes new rows from the store's change feed (reading them when it says so, and on a
//! sweep), turns each into the event Maestro pushes to sources (docs/protocol.md §7.1.3: the
//! agent's status event with the spec's `metadata` and `data.manifestBundle` filled from the
//! spec), and broadcasts it in-process.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use maestro_api::codec::data_as;
use maestro_api::types::{Action, EventType, SubResource};
use maestro_api::{AttributesWriter, Data, Event, ext, json};
use maestro_store::{Change, DynStore, Feed, Resource, StatusEventRow};
use maestro_transport::retry::{CancellationToken, pause};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use crate::ownership::{HOUSEKEEPING, Membership};
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
/// (docs/protocol.md §7.1.3): the status event, typed `status.update_request`, with the spec's
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

/// [`source_status_event`] from the stored JSON texts of the status and spec events, without
/// building either one's data tree: the spec's bundle text is spliced into the status's data
/// text. `None` when either event is not in the form this handles (the status's data is not a
/// JSON object or already names `manifestBundle`; the spec is not in this server's own form,
/// [`crate::spec::own_spec_form`]); callers then go through [`source_status_event_owned`].
fn source_status_event_text(status: &str, spec: &str) -> Option<Event> {
    let (metadata, bundle) = spec_parts_text(spec)?;
    let (mut ev, data) = json::from_str_raw_data(status).ok()?;
    let data = data?.get();
    let fields = data.strip_prefix('{')?.trim_start();
    if data.contains("\"manifestBundle\"") {
        return None;
    }
    let mut spliced = String::with_capacity(data.len() + bundle.len() + 20);
    spliced.push_str("{\"manifestBundle\":");
    spliced.push_str(bundle);
    if !fields.starts_with('}') {
        spliced.push(',');
    }
    spliced.push_str(fields);
    if let Some(meta) = metadata {
        ext::set_str(&mut ev, ext::METADATA, &meta);
    }
    ev.set_type(EventType::manifest_bundles(SubResource::Status, Action::Update).to_string());
    ev.set_data("application/json", Data::Binary(spliced.into_bytes()));
    Some(ev)
}

/// The fields of a stored spec event [`spec_parts_text`] reads; the rest is skipped.
#[derive(serde::Deserialize)]
struct StoredSpecText<'a> {
    #[serde(borrow)]
    specversion: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    data_base64: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

/// The `metadata` extension and the bundle text of a stored spec event in this server's own
/// form (the conditions of [`crate::spec::own_spec_form`], read from text).
fn spec_parts_text(spec: &str) -> Option<(Option<String>, &str)> {
    let parts: StoredSpecText<'_> = serde_json::from_str(spec).ok()?;
    parts.specversion?;
    if parts.data_base64.is_some() {
        return None;
    }
    let bundle = parts.data.map(RawValue::get).filter(|d| d.starts_with('{'))?;
    let metadata = match parts.metadata {
        None => None,
        Some(raw) => Some(serde_json::from_str::<String>(raw.get()).ok()?),
    };
    Some((metadata, bundle))
}

fn row_status(row: StatusEventRow) -> Option<SourceStatus> {
    let event = match source_status_event_text(&row.status, &row.payload) {
        Some(event) => event,
        None => source_status_event_owned(
            serde_json::from_str(&row.status).ok()?,
            serde_json::from_str(&row.payload).ok()?,
        )?,
    };
    Some(SourceStatus::new(row.source, &event))
}

/// Status event rows read per query by the fan-out.
const FANOUT_BATCH: i64 = 500;

/// How often the fan-out reads the table even while the store's change feed is quiet: rows
/// whose wake-up was lost (another server instance's announcement missed).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The status fan-out before it runs: its place in the status event table, taken at start-up
/// (sources get no history on Subscribe, as in Maestro).
#[derive(Debug)]
pub struct Fanout {
    feed: Feed<StatusEventRow>,
    delivered: Arc<AtomicI64>,
}

impl Fanout {
    /// Takes the store's status feed, then reads the newest status event: the fan-out starts
    /// after it.
    pub async fn prepare(store: &DynStore) -> Fanout {
        // Taken before the newest seq is read: a row committed in between is in the feed and
        // skipped there, never missed.
        let feed = store.status_changes();
        let delivered = Arc::new(AtomicI64::new(store.last_status_event_seq().await.unwrap_or(0)));
        Fanout { feed, delivered }
    }

    /// The last status event `seq` delivered, kept up to date while [`Fanout::run`] runs (the
    /// instance registry records it: rows are pruned only once every live instance delivered
    /// them, docs/architecture.md §9).
    pub fn cursor(&self) -> Arc<AtomicI64> {
        self.delivered.clone()
    }

    /// Runs the fan-out until `cancel` is cancelled. Delivered rows are pruned every
    /// `prune_every` (default 30 s, [`crate::retention::RetentionConfig`]) alongside, never in
    /// the fan-out's way: a prune deletes thousands of rows under load, and statuses waiting
    /// behind it would reach their sources late. Of several instances, the owner of
    /// [`crate::ownership::HOUSEKEEPING`] prunes (up to the slowest live instance's cursor).
    pub async fn run(
        self,
        store: DynStore,
        hub: StatusHub,
        (prune_every, membership): (Duration, Membership),
        cancel: CancellationToken,
    ) {
        let Fanout { feed, delivered } = self;
        tokio::join!(
            fanout(&store, &hub, feed, &delivered, &cancel),
            prune(&store, &delivered, (prune_every, &membership), &cancel)
        );
    }
}

/// Sends new status event rows to the hub in `seq` order; `delivered` follows the last seq.
///
/// Rows come from the store's change feed ([`maestro_store::Store::status_changes`]): the rows
/// this instance commits, handed over without a read. The table is read from the last
/// delivered seq instead at a gap in the fed seqs, whenever the feed says so
/// ([`Change::Read`]: rows not fed, other server instances' rows), and every [`SWEEP_EVERY`].
async fn fanout(
    store: &DynStore,
    hub: &StatusHub,
    mut feed: Feed<StatusEventRow>,
    delivered: &AtomicI64,
    cancel: &CancellationToken,
) {
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = delivered.load(Ordering::Acquire);
    let mut read = true;
    loop {
        if read {
            // A full batch may leave more behind: read again at once.
            read = read_rows(store, hub, &mut last).await;
            delivered.store(last, Ordering::Release);
            if read {
                continue;
            }
        }
        tokio::select! {
            change = feed.next() => match change {
                Change::Rows(rows) => {
                    read = !send_fed(hub, rows, &mut last);
                    delivered.store(last, Ordering::Release);
                }
                Change::Read => read = true,
            },
            _ = sweep.tick() => read = true,
            () = cancel.cancelled() => return,
        }
    }
}

/// Sends the fed rows after `last`, in order, while their seqs follow on; false at a gap (the
/// rows from there are read from the table, where they are committed).
fn send_fed(hub: &StatusHub, rows: Vec<StatusEventRow>, last: &mut i64) -> bool {
    for row in rows {
        if row.seq <= *last {
            continue;
        }
        if row.seq != *last + 1 {
            return false;
        }
        *last = row.seq;
        send_row(hub, row);
    }
    true
}

/// Reads one batch of rows after `last` from the table and sends them; true when the batch was
/// full (more may follow).
async fn read_rows(store: &DynStore, hub: &StatusHub, last: &mut i64) -> bool {
    match store.status_events_after(*last, FANOUT_BATCH).await {
        Ok(rows) => {
            let full = rows.len() as i64 == FANOUT_BATCH;
            for row in rows {
                *last = (*last).max(row.seq);
                send_row(hub, row);
            }
            full
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading status events failed");
            false
        }
    }
}

fn send_row(hub: &StatusHub, row: StatusEventRow) {
    let seq = row.seq;
    match row_status(row) {
        Some(s) => {
            hub.send(s);
            ::metrics::counter!(crate::metrics::STATUS_RECONCILES, "status" => "success").increment(1);
        }
        None => {
            tracing::warn!(seq, "unreadable status event row skipped");
            ::metrics::counter!(crate::metrics::STATUS_RECONCILES, "status" => "error").increment(1);
        }
    }
}

/// Every `every`, while `membership` owns the housekeeping, deletes the rows up to `delivered`
/// (the store keeps those another live instance has not delivered yet).
async fn prune(
    store: &DynStore,
    delivered: &AtomicI64,
    (every, membership): (Duration, &Membership),
    cancel: &CancellationToken,
) {
    while pause(every, cancel).await {
        if !membership.owns(HOUSEKEEPING) {
            continue;
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
    /// `metadata` extension and bundle (docs/protocol.md §7.1.3), everything else of the status kept.
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

    /// The source's event as its gRPC message reads back: attributes, extensions and data
    /// (parsed, so the key order of the data does not matter).
    fn pushed(status: SourceStatus) -> Value {
        json::to_value(&maestro_api::grpc::from_proto(status.event).expect("a valid message"))
    }

    fn row(status: &Value, spec: &Value) -> StatusEventRow {
        StatusEventRow {
            seq: 1,
            resource_id: "rid".into(),
            source: "maestro".into(),
            consumer_name: "c1".into(),
            kind: maestro_store::StatusEventKind::StatusUpdate,
            payload: spec.to_string(),
            status: status.to_string(),
            created_at: chrono::Utc::now(),
        }
    }

    /// The fan-out's text path (the spec's bundle spliced into the status data as text) pushes
    /// the same event as the tree path, for a status with data and one with empty data; a
    /// status already naming `manifestBundle` and a spec with binary data take the tree path
    /// and still give its event.
    #[test]
    fn the_text_path_pushes_what_the_tree_path_pushes() {
        let (status, spec) = stored_pair();
        let mut empty = status.clone();
        empty["data"] = json!({});
        let mut named = status.clone();
        named["data"]["manifestBundle"] = json!({"stale": true});
        let mut binary_spec = json::from_value(spec.clone()).expect("spec");
        let bytes = serde_json::to_vec(&data(&binary_spec)).expect("bytes");
        binary_spec.set_data("application/json", Data::Binary(bytes));
        let binary_spec = json::to_value(&binary_spec);
        let cases = [
            (&status, &spec, true),
            (&empty, &spec, true),
            (&named, &spec, false),
            (&status, &binary_spec, false),
        ];
        for (i, (status, spec, text_path)) in cases.into_iter().enumerate() {
            let r = row(status, spec);
            assert_eq!(source_status_event_text(&r.status, &r.payload).is_some(), text_path, "case {i}");
            let tree = SourceStatus::new(
                "maestro".into(),
                &source_status_event(status, spec).expect("tree path event"),
            );
            let text = row_status(r).expect("an event");
            assert_eq!(text.source, "maestro");
            assert_eq!(pushed(text), pushed(tree), "case {i}");
        }
        let mut pushed_data = pushed(row_status(row(&empty, &spec)).expect("event"));
        assert_eq!(pushed_data["data"].as_object_mut().map(|d| d.len()), Some(1), "only the bundle");
    }
}
