//! Spec writes from sources (docs/protocol.md §7.1.3 "Publish handling", docs/protocol.md §12
//! §3.3): create, update and delete requests become store writes, each with its outbox row in
//! the same transaction; and the spec events the dispatcher sends to agents are built from
//! the stored rows (restamped with the server's source id, docs/protocol.md §1).

use chrono::{DateTime, Utc};
use maestro_api::codec::{SpecEventBuilder, data_as};
use maestro_api::payload::ManifestBundle;
use maestro_api::types::{Action, EventType, SubResource};
use maestro_api::{AttributesReader, Event, ext, json};
use maestro_store::{DeletedResource, DynStore, NewResource, Resource};
use serde_json::{Map, Value};

use crate::error::ServiceError;

/// What a source's Publish did.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecOutcome {
    /// A resource was created (version 1).
    Created(Resource),
    /// A resource was updated (or unchanged).
    Updated(Resource),
    /// A resource was marked deleting (or was already, or did not exist).
    Deleting(Option<Resource>),
}

/// Validates a source spec event's bundle: a ManifestBundle passing the server-side manifest
/// validation, at most `max_bytes` of manifests.
pub(crate) fn validated_bundle(event: &Event, max_bytes: usize) -> Result<ManifestBundle, ServiceError> {
    let bundle: ManifestBundle = data_as(event, "ManifestBundle")?;
    maestro_api::validate::validate_manifests(&bundle.manifests)?;
    let size: usize =
        bundle.manifests.iter().map(|m| serde_json::to_vec(m).map(|v| v.len()).unwrap_or(0)).sum();
    if size > max_bytes {
        return Err(ServiceError::Validation(format!(
            "resource bundle manifests are {size} bytes, over the {max_bytes}-byte limit"
        )));
    }
    Ok(bundle)
}

pub(crate) fn required_cluster(event: &Event) -> Result<String, ServiceError> {
    match ext::get_str(event, ext::CLUSTER_NAME) {
        Some(c) if !c.is_empty() => Ok(c),
        _ => {
            Err(ServiceError::Validation("missing extension attribute \"clustername\" (the consumer)".into()))
        }
    }
}

/// The size limits of a spec write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecLimits {
    /// Largest bundle: total manifest bytes (the agent's limit).
    pub max_bundle_bytes: usize,
    /// Largest event the broker carries, encoded ([`maestro_transport::SourceTransport::max_event_bytes`]).
    pub max_event_bytes: usize,
}

/// Room kept for what the server changes when it sends a stored spec on (source, ids,
/// version, metadata name).
const RESTAMP_BYTES: usize = 4 * 1024;

impl SpecLimits {
    /// Refuses a spec event the broker could not carry once stored and restamped, so a bundle is
    /// never accepted and then left undelivered (docs/security.md, "Bad input").
    ///
    /// # Errors
    /// [`ServiceError::Validation`] naming both sizes.
    pub fn check_event_size(&self, event: &Event) -> Result<(), ServiceError> {
        let size = maestro_transport::event_size(event).saturating_add(RESTAMP_BYTES);
        if size > self.max_event_bytes {
            return Err(ServiceError::Validation(format!(
                "the spec event would be {size} bytes encoded, over the broker's {}-byte message limit",
                self.max_event_bytes
            )));
        }
        Ok(())
    }
}

/// Applies a source's spec event (create / update / delete request) to the store. A create
/// or update with the `fieldmanager` extension is a merge apply (docs/cli.md, "Merge apply").
///
/// The caller must already be authorized to publish as the event's `source`; an update or a
/// delete is then refused unless the **stored** bundle was created by that same source, so one
/// source can never change or delete another source's bundles (docs/security.md, "Source gRPC").
///
/// # Errors
/// [`ServiceError::Validation`] for a malformed event or bundle; `Unauthorized` for another
/// source's bundle; `NotFound` for an unknown consumer or resource;
/// `Conflict` for a stale version, an existing id, or a resource being deleted; `Internal`
/// when the store fails.
pub async fn apply_source_spec(
    store: &DynStore,
    event: &Event,
    limits: SpecLimits,
) -> Result<SpecOutcome, ServiceError> {
    let max_bytes = limits.max_bundle_bytes;
    let ty = EventType::parse(event.ty())?;
    if !ty.is_manifest_bundles() {
        return Err(ServiceError::Validation(format!("unsupported data type {:?}", ty.data_type)));
    }
    if ty.sub_resource != SubResource::Spec {
        return Err(ServiceError::Validation(format!("a source may not publish {}", event.ty())));
    }
    let id = ext::resource_id(event)?;
    let source = event.source().to_string();
    if matches!(ty.action, Action::Create | Action::Update) {
        limits.check_event_size(event)?;
    }
    if matches!(ty.action, Action::Create | Action::Update)
        && let Some(manager) = crate::spec_merge::field_manager(event)
    {
        return crate::spec_merge::merge_apply(store, event, &id, &manager, limits).await;
    }
    match ty.action {
        Action::Create => create(store, event, id, max_bytes).await,
        Action::Update => update(store, event, id, max_bytes).await,
        Action::Delete => delete(store, &source, &id).await,
        other => Err(ServiceError::Validation(format!("unsupported spec action {}", other.as_str()))),
    }
}

async fn create(
    store: &DynStore,
    event: &Event,
    id: String,
    max_bytes: usize,
) -> Result<SpecOutcome, ServiceError> {
    let consumer = required_cluster(event)?;
    validated_bundle(event, max_bytes)?;
    let name = validated_metadata(event)?
        .and_then(|m| m.get("name").and_then(Value::as_str).map(str::to_owned))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| id.clone());
    let new = NewResource {
        id,
        name,
        consumer_name: consumer,
        source: event.source().to_string(),
        payload: json::to_value(event).into(),
    };
    Ok(SpecOutcome::Created(store.create_resource(new).await?))
}

/// The `metadata` extension as an object (`None` when absent or blank), refusing one that is
/// not a JSON object or that holds a NUL character (U+0000) in a key or string: every stored
/// spec's metadata is then one PostgreSQL can read as `jsonb`, which label searches do for
/// every row (docs/rest.md, "Search language").
///
/// # Errors
/// [`ServiceError::Validation`] naming the problem.
pub(crate) fn validated_metadata(
    event: &Event,
) -> Result<Option<serde_json::Map<String, Value>>, ServiceError> {
    let metadata = ext::metadata(event)?;
    if metadata.as_ref().is_some_and(|m| m.iter().any(|(k, v)| k.contains('\0') || holds_nul(v))) {
        return Err(ServiceError::Validation(
            "the metadata extension holds a NUL character (U+0000), which cannot be stored".into(),
        ));
    }
    Ok(metadata)
}

/// Whether any key or string inside `v` holds U+0000.
fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

async fn update(
    store: &DynStore,
    event: &Event,
    id: String,
    max_bytes: usize,
) -> Result<SpecOutcome, ServiceError> {
    let version = ext::resource_version(event)?;
    validated_bundle(event, max_bytes)?;
    validated_metadata(event)?;
    let current = store.get_resource(&id).await?;
    owned_by(&current, &event.source().to_string())?;
    if let Some(c) =
        ext::get_str(event, ext::CLUSTER_NAME).filter(|c| !c.is_empty() && *c != current.consumer_name)
    {
        return Err(ServiceError::Validation(format!(
            "resource {id} belongs to consumer {:?}, not {c:?}",
            current.consumer_name
        )));
    }
    Ok(SpecOutcome::Updated(store.update_resource(&id, version, json::to_value(event)).await?))
}

/// Marks a bundle of `source` deleting (nothing to do for an unknown id: deletes are
/// idempotent).
async fn delete(store: &DynStore, source: &str, id: &str) -> Result<SpecOutcome, ServiceError> {
    match store.get_resource(id).await {
        Ok(current) => owned_by(&current, source)?,
        Err(maestro_store::StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(SpecOutcome::Deleting(store.mark_deleting(id).await?))
}

/// Refuses a change to `current` claimed by another source than the one that created it.
pub(crate) fn owned_by(current: &Resource, source: &str) -> Result<(), ServiceError> {
    if current.source == source {
        return Ok(());
    }
    Err(ServiceError::Unauthorized(format!(
        "resource {} belongs to another source; source {source:?} may not change it",
        current.id
    )))
}

/// What the server resends of a stored spec event.
pub(crate) struct StoredSpec {
    /// The `metadata` extension's object (empty when absent or unreadable).
    pub(crate) metadata: Map<String, Value>,
    /// The bundle (`data`).
    pub(crate) bundle: Option<Value>,
    /// The event id and time; `None` when the payload is not a CloudEvent.
    id_time: Option<(String, Option<DateTime<Utc>>)>,
}

/// Reads a stored spec event: this server's own form (JSON object `data`, string `id`,
/// RFC 3339 `time`, string `metadata`) straight from the tree, copying only the bundle;
/// anything else through the CloudEvent decoder.
pub(crate) fn stored_spec(payload: &Value) -> StoredSpec {
    if let Some(fast) = stored_spec_fast(payload) {
        return fast;
    }
    let stored = json::from_value(payload.clone()).ok();
    StoredSpec {
        metadata: stored.as_ref().and_then(|ev| ext::metadata(ev).ok().flatten()).unwrap_or_default(),
        bundle: stored.as_ref().and_then(|ev| data_as::<Value>(ev, "ManifestBundle").ok()),
        id_time: stored.as_ref().map(|ev| (ev.id().to_owned(), ev.time().copied())),
    }
}

/// A stored spec event in this server's own form — a CloudEvent JSON object (`specversion`)
/// with JSON object `data` (no `data_base64`) and a string `metadata` extension or none —
/// as its `metadata` text and its bundle, read straight from the tree. `None` for any other
/// form, which callers read through the CloudEvent decoder.
pub(crate) fn own_spec_form(payload: &Map<String, Value>) -> Option<(Option<&str>, &Value)> {
    if !payload.contains_key("specversion") || payload.contains_key("data_base64") {
        return None;
    }
    let bundle = payload.get("data").filter(|d| d.is_object())?;
    let metadata = match payload.get(ext::METADATA) {
        None => None,
        Some(Value::String(raw)) => Some(raw.as_str()),
        Some(_) => return None,
    };
    Some((metadata, bundle))
}

fn stored_spec_fast(payload: &Value) -> Option<StoredSpec> {
    let m = payload.as_object()?;
    let (raw_metadata, bundle) = own_spec_form(m)?;
    let id = m.get("id")?.as_str()?.to_owned();
    let time = match m.get("time") {
        None => None,
        Some(t) => Some(DateTime::parse_from_rfc3339(t.as_str()?).ok()?.with_timezone(&Utc)),
    };
    let metadata = match raw_metadata.map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(meta))) => meta,
        _ => Map::new(),
    };
    Some(StoredSpec { metadata, bundle: Some(bundle.clone()), id_time: Some((id, time)) })
}

/// Builds the spec event the server sends to the agent for a stored resource: the stored
/// event restamped with `source_id`, the current version, the consumer, the metadata name
/// reset to the resource id and `creationTimestamp` set to the bundle's creation time, µs
/// (docs/protocol.md §12.5). A deleting resource becomes a `delete_request` (or
/// `resync_response`) with `deletiontimestamp` and the stored bundle.
pub fn outgoing_spec(resource: &Resource, source_id: &str, action: Action) -> Event {
    let StoredSpec { mut metadata, bundle, id_time } = stored_spec(&resource.payload);
    metadata.insert("name".into(), Value::String(resource.id.clone()));
    // Tells the bundles one resource id had apart: a source re-creates a deleted bundle under
    // the same id (§9), and an agent drops a late spec of the deleted one (docs/protocol.md §6.1).
    metadata.insert("creationTimestamp".into(), Value::String(incarnation(resource.created_at)));
    let mut builder =
        SpecEventBuilder::new(source_id, &resource.id, resource.version, &resource.consumer_name)
            .action(action)
            .metadata(metadata);
    if let Some(data) = bundle {
        builder = builder.bundle_json(data);
    }
    if let Some(deleted_at) = resource.deleted_at {
        // Like Maestro, a delete carries the stored bundle too (docs/protocol.md §4.2): an agent that
        // lost its records (restart) still knows what to remove and with which delete option.
        let action = if action == Action::ResyncResponse { action } else { Action::Delete };
        return builder.action(action).deletion(deleted_at).build();
    }
    let mut ev = builder.build();
    if let Some((id, time)) = id_time {
        // Maestro resends the stored event: same id and time (docs/protocol.md §3.1).
        maestro_api::AttributesWriter::set_id(&mut ev, id);
        maestro_api::AttributesWriter::set_time(&mut ev, time);
    }
    ev
}

/// A bundle's `metadata.creationTimestamp` on the specs this server sends: its creation time,
/// RFC 3339 UTC with µs (docs/protocol.md §12.5).
fn incarnation(created_at: DateTime<Utc>) -> String {
    created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The `spec.delete_request` of a bundle deleted lately (docs/protocol.md §5.6): its id, last
/// version and consumer, `metadata` naming it with its `creationTimestamp`,
/// `deletiontimestamp` = when its row went, no data. An agent holding the work (re-created
/// from a late spec) deletes it; one that does not remembers the deletion and drops late
/// specs of that incarnation.
pub fn deleted_resource_delete(source_id: &str, deleted: &DeletedResource) -> Event {
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(deleted.id.clone()));
    metadata.insert("creationTimestamp".into(), Value::String(incarnation(deleted.created_at)));
    let when = DateTime::<Utc>::from_timestamp_millis(deleted.deleted_at_ms).unwrap_or_else(Utc::now);
    SpecEventBuilder::new(source_id, &deleted.id, deleted.version, &deleted.consumer_name)
        .action(Action::Delete)
        .metadata(metadata)
        .deletion(when)
        .build()
}

/// A `spec.resync_response` deleting an id the server does not know (docs/protocol.md §5.2 step
/// 4): `resourceversion` = the agent's version, `deletiontimestamp` = now, no data.
pub fn unknown_resource_delete(source_id: &str, id: &str, agent_version: i64, cluster: &str) -> Event {
    SpecEventBuilder::new(source_id, id, agent_version, cluster)
        .action(Action::ResyncResponse)
        .deletion(Utc::now())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use maestro_api::Data;
    use serde_json::json;

    fn resource(payload: Value) -> Resource {
        let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456Z").expect("time").to_utc();
        Resource {
            id: "rid".into(),
            name: "work-1".into(),
            consumer_name: "c1".into(),
            source: "maestro".into(),
            version: 2,
            payload: payload.into(),
            status: None,
            status_hash: None,
            sequence_id: None,
            deleted_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn stored_event() -> Event {
        let meta = json!({"name": "work-1", "labels": {"a": "b"}});
        SpecEventBuilder::new("client", "rid", 1, "c1")
            .metadata(meta.as_object().cloned().unwrap_or_default())
            .bundle_json(json!({"manifests": [{"apiVersion": "v1", "kind": "ConfigMap"}]}))
            .build()
    }

    /// The resent event keeps the stored id, time and bundle, and names the work after the
    /// resource (docs/protocol.md §12.5), whether the stored event's data is a JSON object
    /// (read straight from the tree) or base64 (through the CloudEvent decoder).
    #[test]
    fn outgoing_spec_reads_the_stored_event_in_either_form() {
        let stored = stored_event();
        let fast = outgoing_spec(&resource(json::to_value(&stored)), "maestro", Action::Update);
        let mut binary = stored.clone();
        let bytes = json::data_bytes(&stored);
        binary.set_data("application/json", Data::Binary(bytes));
        let slow_payload = json::to_value(&binary);
        assert!(slow_payload.get("data_base64").is_some());
        let slow = outgoing_spec(&resource(slow_payload), "maestro", Action::Update);
        assert_eq!(json::to_value(&fast), json::to_value(&slow));
        assert_eq!(fast.id(), stored.id());
        assert_eq!(fast.time(), stored.time());
        let meta = ext::metadata(&fast).expect("metadata").expect("present");
        assert_eq!(meta["name"], "rid");
        assert_eq!(meta["labels"], json!({"a": "b"}));
        let created = meta["creationTimestamp"].as_str().expect("creationTimestamp");
        let created = DateTime::parse_from_rfc3339(created).expect("RFC 3339").to_utc();
        assert_eq!(created, resource(json!({})).created_at, "the bundle's creation time, to the µs");
        assert_eq!(json::data_bytes(&fast), json::data_bytes(&stored));
        assert_eq!(ext::resource_version(&fast).expect("version"), 2);
    }
}
