//! Agent events arriving at the server through the broker: status updates (stored under the
//! acceptance rules of architecture.md §5) and spec resync requests (answered per
//! protocol.md §5.2, in the background so the handler returns at once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use maestro_api::codec::{data_as, decode_status};
use maestro_api::payload::ResourceVersionList;
use maestro_api::types::{Action, EventType, SubResource};
use maestro_api::{AttributesReader, Event, ext, json};
use maestro_store::{DynStore, StatusOutcome, StatusWrite};
use maestro_transport::deliver::Backoff;
use maestro_transport::{DynSourceTransport, EventHandler, HandlerError};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use crate::spec::{outgoing_spec, unknown_resource_delete};

/// The handler the server gives to its source transport.
#[derive(Debug)]
pub struct Ingest {
    store: DynStore,
    transport: DynSourceTransport,
    source_id: String,
    /// The spec resync answer being sent to each consumer.
    resyncs: Mutex<HashMap<String, AbortHandle>>,
    /// Bounds the answers sent at once ([`MAX_CONCURRENT_RESYNC_ANSWERS`]).
    resync_permits: Arc<Semaphore>,
}

impl Ingest {
    /// A handler storing statuses in `store` and answering resyncs through `transport`.
    pub fn new(store: DynStore, transport: DynSourceTransport, source_id: &str) -> Arc<Self> {
        Arc::new(Ingest {
            store,
            transport,
            source_id: source_id.to_owned(),
            resyncs: Mutex::default(),
            resync_permits: Arc::new(Semaphore::new(MAX_CONCURRENT_RESYNC_ANSWERS)),
        })
    }

    async fn status(&self, event: &Event) -> Result<StatusOutcome, HandlerError> {
        let st = decode_status(event).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        if st.original_source != self.source_id {
            return Err(HandlerError::Permanent(format!(
                "status for resource {} has originalsource {:?}, not this server's {:?}",
                st.resource_id, st.original_source, self.source_id
            )));
        }
        let data = data_as::<serde_json::Value>(event, "ManifestBundleStatus")
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let write = StatusWrite {
            resource_id: st.resource_id.clone(),
            consumer_name: st.cluster_name.clone(),
            version: st.resource_version,
            sequence_id: st.sequence_id.clone(),
            status_hash: st.status_hash.clone(),
            event: json::to_value(event),
            data,
            deleted: st.status.is_true("Deleted"),
        };
        let outcome = self.store.apply_status(write).await.map_err(|e| {
            if e.is_retryable() {
                HandlerError::Retryable(e.to_string())
            } else {
                HandlerError::Permanent(e.to_string())
            }
        })?;
        tracing::debug!(resource = %st.resource_id, consumer = %st.cluster_name, version = st.resource_version, ?outcome, "status");
        Ok(outcome)
    }

    /// Takes a spec resync request (protocol.md §5.2): checks it, then answers it in the
    /// background ([`SpecResyncAnswer`]) and returns at once. Answering inline would hold the
    /// broker acknowledgement of every later message on the server's connection (MQTT acks go
    /// in arrival order) for as long as the hundreds of answer publishes take; on the embedded
    /// rumqttd that deadlocked once 100 statuses were waiting for their ack. A newer request
    /// from the same consumer replaces an answer still being sent.
    fn spec_resync(&self, event: &Event) -> Result<(), HandlerError> {
        let cluster = ext::get_str(event, ext::CLUSTER_NAME).unwrap_or_default();
        if cluster.is_empty() {
            return Err(HandlerError::Permanent("spec resync request without clustername".into()));
        }
        let request: ResourceVersionList =
            data_as(event, "ResourceVersionList").map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let agent =
            request.resource_versions.into_iter().map(|v| (v.resource_id, v.resource_version)).collect();
        let answer = SpecResyncAnswer {
            store: self.store.clone(),
            transport: self.transport.clone(),
            source_id: self.source_id.clone(),
            consumer: cluster.clone(),
            agent,
        };
        let task = tokio::spawn(answer.run(self.resync_permits.clone()));
        let mut running = self.resyncs.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|_, t| !t.is_finished());
        if let Some(previous) = running.insert(cluster, task.abort_handle()) {
            previous.abort();
        }
        Ok(())
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let running = self.resyncs.get_mut().unwrap_or_else(|p| p.into_inner());
        for (_, task) in running.drain() {
            task.abort();
        }
    }
}

/// Most spec resync answers sent at once (a fleet reconnecting after an outage sends one
/// request per agent; each answer reads the consumer's bundles from the store).
pub const MAX_CONCURRENT_RESYNC_ANSWERS: usize = 16;
/// Attempts at answering one spec resync request when the store or the broker fails.
pub const RESYNC_ANSWER_ATTEMPTS: u32 = 8;
/// Delay between attempts: 1 s doubling to 30 s.
const RESYNC_ANSWER_BACKOFF: Backoff =
    Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30) };

/// The answer to one consumer's spec resync request (protocol.md §5.2), sent by a task.
struct SpecResyncAnswer {
    store: DynStore,
    transport: DynSourceTransport,
    source_id: String,
    consumer: String,
    /// The versions the agent holds, by resource id.
    agent: HashMap<String, i64>,
}

impl SpecResyncAnswer {
    /// Sends the answer; a store failure or a retryable publish failure starts it again after
    /// a backoff, up to [`RESYNC_ANSWER_ATTEMPTS`] times (the agent ignores versions it
    /// already holds). Gives up with an error log.
    async fn run(self, permits: Arc<Semaphore>) {
        let Ok(_permit) = permits.acquire_owned().await else { return };
        for attempt in 0..RESYNC_ANSWER_ATTEMPTS {
            match self.send().await {
                Ok(()) => return,
                Err((error, true)) if attempt + 1 < RESYNC_ANSWER_ATTEMPTS => {
                    tracing::warn!(consumer = %self.consumer, %error, attempt, "spec resync answer failed; retrying");
                    tokio::time::sleep(RESYNC_ANSWER_BACKOFF.delay(attempt)).await;
                }
                Err((error, _)) => {
                    tracing::error!(consumer = %self.consumer, %error, "spec resync answer failed; giving up");
                    return;
                }
            }
        }
    }

    /// One attempt; errors come with whether a retry may succeed.
    async fn send(&self) -> Result<(), (String, bool)> {
        let resources =
            self.store.resources_for_consumer(&self.consumer).await.map_err(|e| (e.to_string(), true))?;
        let mut agent = self.agent.clone();
        let mut out = Vec::new();
        for r in &resources {
            let agent_version = agent.remove(&r.id).unwrap_or(0);
            if r.deleted_at.is_some() || r.version == 0 || r.version > agent_version {
                out.push(outgoing_spec(r, &self.source_id, Action::ResyncResponse));
            }
        }
        for (id, version) in agent {
            out.push(unknown_resource_delete(&self.source_id, &id, version, &self.consumer));
        }
        tracing::info!(consumer = %self.consumer, held = resources.len(), sending = out.len(), "spec resync");
        // On a broker that stores messages (MQTT, Pub/Sub), a status the agent published just
        // before a broker outage can be lost, and the server's status resync broadcast after
        // its own resubscription can miss an agent that resubscribes later (Pub/Sub recreates
        // the agent's subscription only then). The agent's spec resync marks its return: ask it
        // for its statuses too (protocol.md §5.1; it resends only what differs).
        if self.transport.backend() != "grpc" {
            out.extend(crate::resync::batches(&self.source_id, &self.consumer, &resources));
        }
        for ev in &out {
            self.transport
                .publish(ev)
                .await
                .map_err(|e| (format!("resync publish: {e}"), e.is_retryable()))?;
        }
        Ok(())
    }
}

#[async_trait]
impl EventHandler for Ingest {
    async fn handle(&self, event: Event) -> Result<(), HandlerError> {
        let ty = EventType::parse(event.ty()).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        if !ty.is_manifest_bundles() {
            return Err(HandlerError::Permanent(format!("unsupported data type {:?}", ty.data_type)));
        }
        match (ty.sub_resource, ty.action) {
            (SubResource::Spec, Action::ResyncRequest) => self.spec_resync(&event),
            (SubResource::Status, Action::ResyncRequest) => Ok(()), // ignored by sources (§5.2)
            (SubResource::Status, _) => self.status(&event).await.map(|_| ()),
            _ => Err(HandlerError::Permanent(format!("unexpected event type {} from an agent", event.ty()))),
        }
    }
}
