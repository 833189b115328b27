//! Intake: the [`EventHandler`] given to the transport. Refuses events whose CloudEvent
//! `source` is not one of [`crate::AgentConfig::accepted_sources`]; applies the upsert rules of
//! docs/protocol.md §6.1 to the work store and queues the work; answers status resync requests
//! (docs/protocol.md §5.3). Returns quickly: applying happens in the reconcile workers.

use std::sync::Arc;

use async_trait::async_trait;
use maestro_api::codec::{SpecEvent, data_as, decode_spec};
use maestro_api::payload::StatusHashList;
use maestro_api::types::{Action, EventType, SubResource};
use maestro_api::{AttributesReader, Event, ext};
use maestro_transport::{EventHandler, HandlerError};

use crate::agent::Shared;
use crate::status::status_event;
use crate::wipe_guard::{self, Marks};
use crate::work::Work;

/// The agent's event handler.
#[derive(Debug)]
pub(crate) struct Intake {
    shared: Arc<Shared>,
}

impl Intake {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Intake { shared }
    }
}

fn permanent(event: &Event, reason: String) -> HandlerError {
    tracing::warn!(id = event.id(), ty = event.ty(), %reason, "dropping event");
    HandlerError::Permanent(reason)
}

/// Refuses an event whose `source` is not an accepted source id: one `warn` naming the
/// source, the consumer and the resource id (empty on resync requests, which carry none), then
/// a permanent rejection, so the transport acknowledges and drops it (never redelivered, never
/// blocking later events).
fn foreign_source(event: &Event, consumer: &str, source: &str) -> HandlerError {
    let resource_id = ext::get_str(event, ext::RESOURCE_ID).unwrap_or_default();
    tracing::warn!(%source, %consumer, %resource_id, id = event.id(), ty = event.ty(),
        "refusing an event from a source this agent does not accept (see --source-id)");
    HandlerError::Permanent(format!("source {source:?} is not accepted by this agent"))
}

#[async_trait]
impl EventHandler for Intake {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let ty = EventType::parse(event.ty()).map_err(|e| permanent(event, e.to_string()))?;
        if !ty.is_manifest_bundles() {
            return Err(permanent(event, format!("unsupported data type {}", ty.data_type)));
        }
        let config = &self.shared.config;
        if !config.accepts_source(event.source()) {
            return Err(foreign_source(event, &config.consumer, event.source()));
        }
        match (ty.sub_resource, ty.action) {
            (SubResource::Status, Action::ResyncRequest) => self.status_resync(event),
            (SubResource::Spec, Action::ResyncRequest) | (SubResource::Status, _) => {
                Err(permanent(event, format!("the agent does not handle {ty}")))
            }
            (SubResource::Spec, action) => self.spec(event, action),
        }
    }
}

impl Intake {
    /// Takes one spec event (`action` is its type's action): the cluster and decode checks,
    /// then the upsert rules; the event that completes a restarted agent's first resync answer
    /// releases the specs its start-up hold kept aside, taken after it (docs/protocol.md §6.1).
    pub(crate) fn spec(&self, event: &Event, action: Action) -> Result<(), HandlerError> {
        let consumer = &self.shared.config.consumer;
        let cluster = ext::get_str(event, ext::CLUSTER_NAME).unwrap_or_default();
        if cluster != *consumer {
            tracing::debug!(id = event.id(), %cluster, %consumer, "ignoring spec event for another cluster");
            return Ok(());
        }
        crate::metrics::count_event(crate::metrics::CLOUDEVENTS_RECEIVED, consumer, event);
        let spec = decode_spec(event).map_err(|e| {
            crate::metrics::work_processed(event, false);
            permanent(event, format!("malformed spec event: {e}"))
        })?;
        crate::metrics::work_processed(event, true);
        let released = self.shared.hold.answer_event(event);
        let taken = self.take(event, spec, action);
        if let Some(released) = released {
            crate::startup_hold::replay(&self.shared, released);
        }
        taken
    }

    fn take(&self, event: &Event, spec: SpecEvent, action: Action) -> Result<(), HandlerError> {
        let marks = Marks::of(event, action);
        // Before the redelivery check: the resync answer that replaces a spec dropped here
        // carries the same event id (the stored event, docs/protocol.md §3.1).
        if self.published_before_start(event, &spec, &marks) || self.kept_aside(event, &spec, &marks, action)
        {
            return Ok(());
        }
        if !self.shared.seen.first_time(event.id(), spec.resource_version) && !self.adopts(&spec) {
            tracing::debug!(id = event.id(), resource_id = %spec.resource_id, "dropping a redelivered spec event");
            return Ok(());
        }
        if marks.deletes_unknown(&spec) && !marks.confirmed {
            wipe_guard::propose(&self.shared, &spec, &marks);
            return Ok(());
        }
        self.shared.guard.observe(&marks);
        let id = spec.resource_id.clone();
        let mut works = self.shared.works();
        if spec.deletion.is_none()
            && !works.contains_key(&id)
            && crate::seen::incarnation(spec.metadata.as_ref())
                .is_some_and(|i| self.shared.tombstones.buried(&id, i))
        {
            tracing::debug!(id = event.id(), resource_id = %id, "dropping a late spec of a deleted work");
            return Ok(());
        }
        let orphans_before = works.get(&id).is_some_and(|w| w.orphaned.is_some());
        if upsert(&mut works, spec, &marks) {
            if let Some(work) = works.get_mut(&id) {
                work.trace = maestro_transport::trace::TraceContext::of_event(event);
            }
            if orphans_before {
                let orphaned = works.values().filter(|w| w.orphaned.is_some()).count();
                crate::metrics::orphaned(&self.shared.config.consumer, orphaned);
            }
            drop(works);
            self.shared.queue.add(&id);
        }
        Ok(())
    }

    /// True for a plain create or update (not a resync answer, not a deletion) of a work the
    /// agent does not hold, published (CloudEvent `time`) before this agent started: the
    /// broker redelivers what a dead agent took, and the work may have been deleted since by a
    /// deletion the dead agent took with it. Dropped without being noted as seen: the spec
    /// resync the agent asks for at start reads the store afterwards and sends every live
    /// bundle (docs/protocol.md §5.2), as the stored event with the same id, so nothing is
    /// lost; the agent asks once more anyway, in case its clock runs ahead of the server's
    /// (docs/protocol.md §6.1). Resync answers carry their bundle's stored time and are never
    /// dropped by time.
    fn published_before_start(&self, event: &Event, spec: &SpecEvent, marks: &Marks) -> bool {
        if spec.deletion.is_some()
            || marks.resync
            || event.time().is_none_or(|t| *t >= self.shared.started_at)
        {
            return false;
        }
        let id = &spec.resource_id;
        if self.shared.works().contains_key(id) {
            return false;
        }
        tracing::debug!(id = event.id(), resource_id = %id, time = ?event.time(),
            "dropping a spec of a work not held, published before this agent started; asking for a resync");
        self.shared.resync_owed.notify_one();
        true
    }

    /// True when the start-up hold keeps this spec aside: a plain create or update, or a
    /// resync answer to a request this agent did not send (not a deletion), of a work the
    /// agent does not hold, while a restarted agent waits for its first resync answer
    /// (docs/protocol.md §6.1). Not noted as seen: it is taken again when the hold ends.
    fn kept_aside(&self, event: &Event, spec: &SpecEvent, marks: &Marks, action: Action) -> bool {
        // A resync answer is kept aside too when it answers a predecessor's request: the
        // broker delivers it late, and the bundle may have been deleted since.
        let late_answer = marks.resync && self.shared.hold.answers_another(event);
        if spec.deletion.is_some()
            || (marks.resync && !late_answer)
            || self.shared.works().contains_key(&spec.resource_id)
        {
            return false;
        }
        let kept = self.shared.hold.keep(event, action);
        if kept {
            tracing::debug!(id = event.id(), resource_id = %spec.resource_id,
                "keeping a spec of a work not held until the start-up resync answer is complete");
        }
        kept
    }

    /// A redelivered spec still adopts a work on hold at the version it holds (a store restored
    /// from backup resends the stored events with their ids): no rollback, no re-creation.
    fn adopts(&self, spec: &SpecEvent) -> bool {
        let works = self.shared.works();
        works.get(&spec.resource_id).is_some_and(|w| {
            w.on_hold() && !w.finalized && spec.deletion.is_none() && spec.resource_version == w.generation
        })
    }

    fn status_resync(&self, event: &Event) -> Result<(), HandlerError> {
        crate::metrics::count_event(
            crate::metrics::CLOUDEVENTS_RECEIVED,
            &self.shared.config.consumer,
            event,
        );
        let list: StatusHashList =
            data_as(event, "StatusHashList").map_err(|e| permanent(event, e.to_string()))?;
        let events: Vec<(String, Event)> = {
            let works = self.shared.works();
            works
                .values()
                // A restored work that no spec adopted yet has no source to answer for.
                .filter(|w| !w.finalized && w.source_known())
                .filter_map(|w| {
                    let status = w.status.clone().unwrap_or_default();
                    let hash = maestro_api::statushash::status_hash(&status);
                    let wanted = list.status_hashes.is_empty()
                        || list.status_hashes.iter().any(|h| h.resource_id == w.uid && h.status_hash != hash);
                    wanted.then(|| {
                        let ev = status_event(&self.shared, w, &status, &hash, Action::ResyncResponse);
                        (w.uid.clone(), ev)
                    })
                })
                .collect()
        };
        tracing::debug!(requested = list.status_hashes.len(), responses = events.len(), "status resync");
        // Published by a task, not here: the broker acknowledgement of every later message
        // (spec events included) waits for this handler on MQTT, and a broker that holds its
        // own acks while the agent's are outstanding (rumqttd) would never ack these publishes.
        let started = std::time::Instant::now();
        let shared = self.shared.clone();
        self.shared.tasks.spawn(async move {
            publish_resync_responses(shared, events).await;
            crate::metrics::status_resynced(started.elapsed());
        });
        Ok(())
    }
}

/// Publishes status resync responses; a failed one is left to the status publisher (the
/// work's published hash is cleared, so its status goes out again).
async fn publish_resync_responses(shared: Arc<Shared>, events: Vec<(String, Event)>) {
    for (id, ev) in events {
        let published = shared.transport.publish(&ev).await;
        if published.is_ok() {
            crate::metrics::count_event(crate::metrics::CLOUDEVENTS_SENT, &shared.config.consumer, &ev);
        }
        if let Err(e) = published {
            tracing::warn!(resource_id = %id, error = %e, "status resync response failed; will republish");
            if let Some(w) = shared.works().get_mut(&id) {
                w.published_hash = None;
            }
            shared.status_changed(&id);
        }
    }
}

/// Applies one decoded spec event, carrying `marks`, to the store (docs/protocol.md §6.1).
/// Returns true when the work must be reconciled.
pub(crate) fn upsert(
    works: &mut std::collections::HashMap<String, Work>,
    spec: SpecEvent,
    marks: &Marks,
) -> bool {
    let id = spec.resource_id.clone();
    let Some(work) = works.get_mut(&id) else {
        let mut work = Work::new(id.clone(), spec.resource_version);
        work.deleting = spec.deletion.is_some();
        replace_spec(&mut work, spec);
        tracing::info!(resource_id = %id, generation = work.generation, deleting = work.deleting, "work added");
        works.insert(id, work);
        return true;
    };
    if work.finalized {
        tracing::debug!(resource_id = %id, "ignoring spec event for a deleted work");
        return false;
    }
    if from_its_store(work, marks) && of_an_older_incarnation(work, &spec) {
        tracing::debug!(resource_id = %id, "ignoring a late spec of the bundle this one re-created");
        return false;
    }
    // An orphaned, restored or evicted work (docs/operations.md §3.5, docs/protocol.md §8.3)
    // takes any version: the store it comes from now may count versions from 1 again; but not
    // a late spec of the store it was applied from, older than what it applied.
    let orphaned = work.on_hold();
    if orphaned && late_from_its_store(work, &spec, marks) {
        tracing::debug!(resource_id = %id, got = spec.resource_version, "ignoring a late spec older than the work on hold");
        return false;
    }
    crate::wipe_guard::adopt(work);
    crate::eviction::cancel(work);
    if spec.deletion.is_some() {
        if spec.resource_version != 0 && spec.resource_version > work.generation {
            work.generation = spec.resource_version;
        }
        if !work.deleting {
            tracing::info!(resource_id = %id, generation = work.generation, "work deleting");
        }
        work.learn_source(&spec.source);
        if work.incarnation().is_none()
            && let Some(incarnation) = crate::seen::incarnation(spec.metadata.as_ref())
        {
            // ... and its incarnation, remembered once it is deleted (docs/protocol.md §6.1).
            work.metadata.insert("creationTimestamp".into(), incarnation.into());
        }
        work.deleting = true;
        return true;
    }
    if !orphaned && spec.resource_version != 0 && spec.resource_version < work.generation {
        tracing::debug!(resource_id = %id, got = spec.resource_version, have = work.generation, "ignoring stale spec");
        return false;
    }
    if !orphaned
        && spec.resource_version == work.generation
        && spec.bundle.as_ref() == work.bundle.as_deref()
        && !work.deleting
    {
        return false; // a resync response repeating what we hold
    }
    tracing::info!(resource_id = %id, from = work.generation, to = spec.resource_version, "work updated");
    work.generation = spec.resource_version;
    replace_spec(work, spec);
    true
}

/// True when the spec comes from the store the work was last applied from (the store identity
/// its record keeps; docs/protocol.md §5.5): only then do versions and creation times compare.
fn from_its_store(work: &Work, marks: &Marks) -> bool {
    let store = work.recorded.as_ref().and_then(|r| r.store_identity.as_deref());
    marks.store_id.is_some() && marks.store_id.as_deref() == store
}

/// True for a spec of an earlier incarnation of the work's bundle (an older
/// `metadata.creationTimestamp`: the bundle deleted before its source re-created it under the
/// same id), deletions included: a late redelivery must neither roll the new bundle back nor
/// delete it (docs/protocol.md §6.1). Unknown on either side (a Go server): false.
fn of_an_older_incarnation(work: &Work, spec: &SpecEvent) -> bool {
    match (crate::seen::incarnation(spec.metadata.as_ref()), work.incarnation()) {
        (Some(theirs), Some(ours)) => older_time(theirs, ours),
        _ => false,
    }
}

/// Whether RFC 3339 time `a` is before `b` (false when either does not parse).
fn older_time(a: &str, b: &str) -> bool {
    match (chrono::DateTime::parse_from_rfc3339(a), chrono::DateTime::parse_from_rfc3339(b)) {
        (Ok(a), Ok(b)) => a < b,
        _ => false,
    }
}

/// True for a spec older than the version a work on hold last applied, of the bundle
/// incarnation it applied, from the store it was applied from: a redelivery. At-least-once
/// brokers resend what a dead subscriber never acknowledged, after newer events, resync answers included (the Pub/Sub emulator: ~60 s
/// later), and a restarted agent has no memory of the event ids it took. Another store
/// counts anew, a bundle re-created under the same id (another incarnation) too, and a Go
/// server sends neither store identity nor incarnation: its specs are taken as before.
fn late_from_its_store(work: &Work, spec: &SpecEvent, marks: &Marks) -> bool {
    let recorded = work.recorded.as_ref();
    let applied = work.generation.max(recorded.and_then(|r| r.generation).unwrap_or(0));
    spec.deletion.is_none()
        && spec.resource_version != 0
        && spec.resource_version < applied
        && from_its_store(work, marks)
        && crate::seen::incarnation(spec.metadata.as_ref()).is_some_and(|i| work.incarnation() == Some(i))
}

fn replace_spec(work: &mut Work, spec: SpecEvent) {
    let mut metadata = spec.metadata.unwrap_or_default();
    metadata.remove("resourceVersion");
    work.name = metadata
        .get("name")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(&spec.resource_id)
        .to_owned();
    work.metadata = metadata;
    work.original_source = spec.source;
    if spec.bundle.is_some() || work.bundle.is_none() {
        work.bundle = spec.bundle.map(Arc::new);
    }
    work.spec_rev += 1;
    work.needs_apply = true;
    work.attempts = 0;
}
