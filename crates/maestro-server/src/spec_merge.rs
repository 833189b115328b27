//! Merge apply (docs/cli.md, "Merge apply"): a source's `create_request` / `update_request`
//! carrying the `fieldmanager` extension is merged into the stored bundle by manifest identity
//! ([`maestro_api::merge`]) instead of replacing it. The server does the read-modify-write
//! under the stored version and retries when another write got in between, so several writers
//! can share one bundle without losing each other's manifests.

use std::time::Duration;

use maestro_api::codec::SpecEventBuilder;
use maestro_api::merge::{self, MergeError};
use maestro_api::payload::ManifestBundle;
use maestro_api::types::Action;
use maestro_api::{AttributesReader, Event, ext, json};
use maestro_store::{DynStore, NewResource, Resource, StoreError};
use maestro_transport::retry::{ExponentialBuilder, delays, exponential};
use serde_json::{Map, Value};

use crate::error::ServiceError;
use crate::spec::{
    SpecLimits, SpecOutcome, owned_by, required_cluster, stored_spec, validated_bundle, validated_metadata,
};

/// How many times a merge is tried when other writes keep getting in between.
const MAX_ATTEMPTS: u32 = 32;
/// The pause after a lost race: 2 ms doubling to 128 ms, jittered so racing writers spread out.
const RACE_BACKOFF: ExponentialBuilder = exponential(Duration::from_millis(2), RACE_MAX_DELAY);
const RACE_MAX_DELAY: Duration = Duration::from_millis(128);

/// The manager named by the event's `fieldmanager` extension; `None` when absent or empty.
pub(crate) fn field_manager(event: &Event) -> Option<String> {
    ext::get_str(event, ext::FIELD_MANAGER).filter(|m| !m.is_empty())
}

/// What the writer sent.
struct Request<'a> {
    event: &'a Event,
    id: &'a str,
    manager: &'a str,
    consumer: String,
    bundle: ManifestBundle,
    metadata: Map<String, Value>,
    limits: SpecLimits,
}

/// Merges the writer's bundle into the stored one (creating it when missing), retrying on
/// version conflicts.
///
/// # Errors
/// [`ServiceError::Validation`] for a malformed event or bundle or a manifest without
/// identity; `Unauthorized` for another source's bundle; `Conflict` when a listed manifest
/// is managed by another manager, the bundle is being deleted, or other writes kept winning
/// for [`MAX_ATTEMPTS`] tries; `NotFound` for an unknown consumer; `Internal` for store
/// failures.
pub(crate) async fn merge_apply(
    store: &DynStore,
    event: &Event,
    id: &str,
    manager: &str,
    limits: SpecLimits,
) -> Result<SpecOutcome, ServiceError> {
    let request = Request {
        event,
        id,
        manager,
        consumer: required_cluster(event)?,
        bundle: writer_bundle(event, limits.max_bundle_bytes)?,
        metadata: validated_metadata(event)?.unwrap_or_default(),
        limits,
    };
    let mut delays = delays(RACE_BACKOFF, RACE_MAX_DELAY);
    for attempt in 0..MAX_ATTEMPTS {
        let step = match store.get_resource(id).await {
            Err(StoreError::NotFound { .. }) => create(store, &request).await,
            Err(e) => return Err(e.into()),
            Ok(current) => update(store, &request, &current).await,
        };
        match step {
            Ok(Some(outcome)) => return Ok(outcome),
            Ok(None) => {
                tracing::debug!(resource_id = id, attempt, "merge apply raced another write; retrying");
                tokio::time::sleep(delays.next().unwrap_or(RACE_MAX_DELAY)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ServiceError::Conflict(format!(
        "resource {id}: other writes kept changing it; the merge apply gave up after {MAX_ATTEMPTS} tries"
    )))
}

/// The writer's bundle, validated like any spec except that it may be empty (a writer
/// withdrawing all its manifests); the merged bundle is validated again before it is stored.
fn writer_bundle(event: &Event, max_bytes: usize) -> Result<ManifestBundle, ServiceError> {
    let bundle: ManifestBundle = maestro_api::codec::data_as(event, "ManifestBundle")?;
    if bundle.manifests.is_empty() {
        return Ok(bundle);
    }
    validated_bundle(event, max_bytes)
}

/// Creates the bundle with the writer's manifests; `None` when another writer created it
/// first.
async fn create(store: &DynStore, r: &Request<'_>) -> Result<Option<SpecOutcome>, ServiceError> {
    let merged = merge::merge(&ManifestBundle::default(), &Default::default(), &r.bundle, r.manager)
        .map_err(merge_error)?;
    let mut metadata = r.metadata.clone();
    merge::set_managers(&mut metadata, &merged.managers);
    let name = metadata.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_owned);
    let payload = stored_event(r, Action::Create, 0, metadata, &merged.bundle)?;
    let new = NewResource {
        id: r.id.to_owned(),
        name: name.unwrap_or_else(|| r.id.to_owned()),
        consumer_name: r.consumer.clone(),
        source: r.event.source().to_string(),
        payload: payload.into(),
    };
    match store.create_resource(new).await {
        Ok(created) => Ok(Some(SpecOutcome::Created(created))),
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Merges into `current` and writes at its version; `None` when another write got in
/// between.
async fn update(
    store: &DynStore,
    r: &Request<'_>,
    current: &Resource,
) -> Result<Option<SpecOutcome>, ServiceError> {
    owned_by(current, &r.event.source().to_string())?;
    if current.consumer_name != r.consumer {
        return Err(ServiceError::Validation(format!(
            "resource {} belongs to consumer {:?}, not {:?}",
            current.id, current.consumer_name, r.consumer
        )));
    }
    if current.deleted_at.is_some() {
        return Err(ServiceError::Conflict(format!("resource {} is being deleted", current.id)));
    }
    let stored = stored_spec(&current.payload);
    let stored_bundle: ManifestBundle = match stored.bundle {
        Some(b) => serde_json::from_value(b).map_err(|e| {
            ServiceError::Internal(format!("stored bundle of resource {} is unreadable: {e}", current.id))
        })?,
        None => ManifestBundle::default(),
    };
    let merged = merge::merge(&stored_bundle, &merge::managers(&stored.metadata), &r.bundle, r.manager)
        .map_err(merge_error)?;
    let metadata = merged_metadata(stored.metadata.clone(), &r.metadata, &merged.managers);
    if merged.bundle == stored_bundle && metadata == stored.metadata {
        return Ok(Some(SpecOutcome::Updated(current.clone())));
    }
    let payload = stored_event(r, Action::Update, current.version, metadata, &merged.bundle)?;
    match store.update_resource(r.id, current.version, payload).await {
        Ok(updated) => Ok(Some(SpecOutcome::Updated(updated))),
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The stored metadata with the writer's labels and annotations added (the writer's value
/// wins for a key both have) and the merged managers recorded.
fn merged_metadata(
    mut stored: Map<String, Value>,
    writer: &Map<String, Value>,
    managers: &std::collections::BTreeMap<String, String>,
) -> Map<String, Value> {
    for key in ["labels", "annotations"] {
        let Some(Value::Object(add)) = writer.get(key) else { continue };
        let entry = stored.entry(key).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(into) = entry {
            into.extend(
                add.iter()
                    .filter(|(k, _)| *k != merge::MANAGERS_ANNOTATION)
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
    }
    if stored.get("name").is_none()
        && let Some(name) = writer.get("name")
    {
        stored.insert("name".into(), name.clone());
    }
    merge::set_managers(&mut stored, managers);
    stored
}

/// The event stored for a merged write, refused when the broker could not carry it.
fn stored_event(
    r: &Request<'_>,
    action: Action,
    version: i64,
    metadata: Map<String, Value>,
    bundle: &ManifestBundle,
) -> Result<Value, ServiceError> {
    let event = SpecEventBuilder::new(&r.event.source().to_string(), r.id, version, &r.consumer)
        .action(action)
        .metadata(metadata)
        .bundle(bundle)
        .field_manager(r.manager)
        .build();
    r.limits.check_event_size(&event)?;
    if bundle.manifests.is_empty() {
        return Err(ServiceError::Validation(
            "the merge would leave the resource bundle without manifests; delete it instead".into(),
        ));
    }
    validated_bundle(&event, r.limits.max_bundle_bytes)?;
    Ok(json::to_value(&event))
}

/// A merge refusal as a service error: another manager's manifest is a conflict, bad
/// writer input a validation error.
fn merge_error(e: MergeError) -> ServiceError {
    match e {
        MergeError::OwnedByOther { .. } => ServiceError::Conflict(e.to_string()),
        other => ServiceError::Validation(other.to_string()),
    }
}
