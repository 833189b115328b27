//! Agent events arriving at the server through the broker: status updates (stored under the
//! acceptance rules of docs/architecture.md §5) and spec resync requests (answered per
//! docs/protocol.md §5.2, in the background so the handler returns at once; see
//! [`crate::spec_resync`]).
//!
//! An event that can never be handled (malformed, not this server's, refused by a limit or by
//! the database itself) is set aside as a dead letter with the reason and acknowledged, so it
//! never holds the events behind it (docs/security.md, "Dead letters").

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use maestro_api::codec::{data_as, decode_status};
use maestro_api::payload::ResourceVersionList;
use maestro_api::types::{Action, EventType, SubResource};
use maestro_api::{AttributesReader, Event, ext, json};
use maestro_store::{DeadLetterOrigin, DynStore, NewDeadLetter, StatusOutcome, StatusWrite, StoreError};
use maestro_transport::retry::{ExponentialBuilder, delays, exponential};
use maestro_transport::{DynSourceTransport, EventHandler, HandlerError, Rejected};

use tracing::Instrument;

use crate::metrics;
use crate::registered::RegisteredConsumers;
use crate::spec_resync::{Answers, SpecResyncAnswer};
pub use crate::spec_resync::{IngestLimits, MAX_CONCURRENT_RESYNC_ANSWERS, RESYNC_ANSWER_ATTEMPTS};

/// Dead letters stored per second at most (burst [`DEAD_LETTER_BURST`]); beyond it a refused
/// event is only logged, so a flood of bad events cannot fill the database.
pub const DEAD_LETTERS_PER_SECOND: u32 = 20;
/// Dead letters stored at once before [`DEAD_LETTERS_PER_SECOND`] applies.
pub const DEAD_LETTER_BURST: u32 = 100;
/// Delay between attempts at storing a status: 100 ms doubling to 2 s (jittered).
const STATUS_RETRY: ExponentialBuilder = exponential(Duration::from_millis(100), STATUS_RETRY_MAX);
const STATUS_RETRY_MAX: Duration = Duration::from_secs(2);

/// The handler the server gives to its source transport.
#[derive(Debug)]
pub struct Ingest {
    store: DynStore,
    transport: DynSourceTransport,
    source_id: String,
    limits: IngestLimits,
    answers: Answers,
    dead_letters: DefaultDirectRateLimiter,
    /// Several instances with the gRPC broker: where agents connected here are recorded.
    holders: Option<crate::instances::AgentHolders>,
    /// `--subscription-type broadcast`: events of consumers another instance owns are left to
    /// it.
    owner_only: Option<crate::ownership::Membership>,
    /// Which consumers may ask for a spec resync.
    consumers: Arc<RegisteredConsumers>,
}

/// Why an event was not taken.
enum Refusal {
    /// Never: set it aside.
    Permanent(DeadLetterOrigin, String),
    /// Not now: deliver it again.
    Retryable(String),
}

fn permanent(origin: DeadLetterOrigin) -> impl Fn(maestro_api::Error) -> Refusal {
    move |e| Refusal::Permanent(origin, e.to_string())
}

impl Ingest {
    /// A handler storing statuses in `store` and answering resyncs through `transport`, with
    /// the default [`IngestLimits`].
    pub fn new(store: DynStore, transport: DynSourceTransport, source_id: &str) -> Arc<Self> {
        Self::with_limits(store, transport, source_id, IngestLimits::default())
    }

    /// [`Ingest::new`] with explicit limits.
    pub fn with_limits(
        store: DynStore,
        transport: DynSourceTransport,
        source_id: &str,
        limits: IngestLimits,
    ) -> Arc<Self> {
        let consumers = Arc::new(RegisteredConsumers::new(store.clone()));
        Self::for_instance(store, transport, source_id, limits, None, None, consumers)
    }

    /// [`Ingest::with_limits`] for one of several server instances on a shared database
    /// (docs/architecture.md §9): with the gRPC broker, before answering a consumer's spec
    /// resync its agent is recorded in `holders` as connected here; with `owner_only`
    /// (`--subscription-type broadcast`) the events of consumers another live instance owns are
    /// acknowledged and left to it. A spec resync request is answered only for a consumer of
    /// `consumers`.
    pub fn for_instance(
        store: DynStore,
        transport: DynSourceTransport,
        source_id: &str,
        limits: IngestLimits,
        holders: Option<crate::instances::AgentHolders>,
        owner_only: Option<crate::ownership::Membership>,
        consumers: Arc<RegisteredConsumers>,
    ) -> Arc<Self> {
        let quota = Quota::per_second(NonZeroU32::new(DEAD_LETTERS_PER_SECOND).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(DEAD_LETTER_BURST).unwrap_or(NonZeroU32::MIN));
        Arc::new(Ingest {
            answers: Answers::new(&limits, store.clone()),
            store,
            transport,
            source_id: source_id.to_owned(),
            limits,
            holders,
            owner_only,
            consumers,
            dead_letters: RateLimiter::direct(quota),
        })
    }

    async fn status(&self, event: &Event) -> Result<StatusOutcome, Refusal> {
        let origin = DeadLetterOrigin::Status;
        let st = decode_status(event).map_err(permanent(origin))?;
        if st.original_source != self.source_id {
            return Err(Refusal::Permanent(
                origin,
                format!(
                    "status for resource {:?} has originalsource {:?}, not this server's {:?}",
                    st.resource_id, st.original_source, self.source_id
                ),
            ));
        }
        let write = StatusWrite {
            resource_id: st.resource_id.clone(),
            consumer_name: st.cluster_name.clone(),
            version: st.resource_version,
            sequence_id: st.sequence_id.clone(),
            status_hash: st.status_hash.clone(),
            event: json::to_string(event),
            deleted: st.status.is_true("Deleted"),
        };
        let deleted = write.deleted;
        let outcome = self.store_status(write).await?;
        if outcome == StatusOutcome::UnknownResource && !deleted {
            self.delete_recreated(&st.resource_id, &st.cluster_name).await;
        }
        if outcome == StatusOutcome::UnknownResource && st.status.is_true("Orphaned") {
            let reason = st.status.condition("Orphaned").map(|c| c.reason.clone()).unwrap_or_default();
            tracing::warn!(consumer = %st.cluster_name, resource = %st.resource_id, %reason,
                "an agent keeps a work this store does not hold (fleet-wipe guard): publish it again, or confirm \
                 with maestro-cli consumer confirm-wipe (docs/operations.md §3.5)");
        }
        metrics::status_stored(&st.cluster_name);
        tracing::debug!(resource = ?st.resource_id, consumer = ?st.cluster_name, version = st.resource_version, ?outcome, "status");
        Ok(outcome)
    }

    /// A status of a work the store does not hold, from the agent of `consumer`: when the
    /// bundle was deleted lately (docs/protocol.md §5.6), either the status is late or the
    /// agent re-created the work from a late spec; its deletion is sent again, as a `spec.delete_request`, which the agent applies
    /// at once (no fleet-wipe guard, no eviction grace period: the store knows the source
    /// deleted it). Failures are logged: the agent's next status tries again.
    async fn delete_recreated(&self, id: &str, consumer: &str) {
        let deleted = match self.store.deleted_resource(id).await {
            Ok(Some(d)) if d.consumer_name == consumer => d,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(resource = %id, %consumer, error = %e, "looking up a deleted bundle failed");
                return;
            }
        };
        let mut ev = crate::spec::deleted_resource_delete(&self.source_id, &deleted);
        if let Ok(store_id) = self.store.store_identity().await {
            ext::set_str(&mut ev, ext::STORE_ID, store_id);
        }
        // Debug, not info: on Pub/Sub a late status of a bundle deleted since is common too.
        tracing::debug!(resource = %id, %consumer, version = deleted.version,
            "a status of a bundle deleted lately (late, or from a work re-created by a late spec): sending its deletion again");
        if let Err(e) = self.transport.publish(&ev).await {
            tracing::warn!(resource = %id, %consumer, error = %e, "sending the deletion again failed");
        }
    }

    /// Stores a status, retrying a retryable failure [`IngestLimits::status_attempts`] times.
    /// An outage ([`StoreError::is_outage`]: the database unreachable, shutting down, out of
    /// disk) is never the status's fault: the status waits (the broker delivers it again). Any
    /// other retryable failure that keeps coming back while the database answers belongs to
    /// this status (a poison message): it is refused for good. The database is asked with a
    /// ping only then, so an outage ending between the last attempt and the ping cannot turn a
    /// good status into a dead letter.
    async fn store_status(&self, write: StatusWrite) -> Result<StatusOutcome, Refusal> {
        let (mut attempt, mut delays) = (0u32, delays(STATUS_RETRY, STATUS_RETRY_MAX));
        loop {
            let error = match self.store.apply_status(write.clone()).await {
                Ok(outcome) => return Ok(outcome),
                Err(e) if !e.is_retryable() => return Err(refused_by_database(DeadLetterOrigin::Status, &e)),
                Err(e) => e,
            };
            attempt += 1;
            if attempt >= self.limits.status_attempts.max(1) {
                if error.is_outage() {
                    return Err(Refusal::Retryable(error.to_string()));
                }
                return match self.store.ping().await {
                    Ok(()) => Err(Refusal::Permanent(
                        DeadLetterOrigin::Status,
                        format!(
                            "storing the status failed {attempt} times while the database answers: {error}"
                        ),
                    )),
                    Err(_) => Err(Refusal::Retryable(error.to_string())),
                };
            }
            tokio::time::sleep(delays.next().unwrap_or(STATUS_RETRY_MAX)).await;
        }
    }

    /// Takes a spec resync request (docs/protocol.md §5.2): checks it against the limits, then
    /// answers it in the background and returns at once. Answering inline would hold the
    /// broker acknowledgement of every later message on the server's connection (MQTT acks go
    /// in arrival order) for as long as the hundreds of answer publishes take; on the embedded
    /// rumqttd that deadlocked once 100 statuses were waiting for their ack.
    async fn spec_resync(&self, event: &Event) -> Result<(), Refusal> {
        let origin = DeadLetterOrigin::SpecResync;
        let cluster = ext::get_str(event, ext::CLUSTER_NAME).unwrap_or_default();
        if cluster.is_empty() {
            return Err(Refusal::Permanent(origin, "spec resync request without clustername".into()));
        }
        let size = maestro_transport::event_size(event);
        if size > self.limits.max_resync_request_bytes {
            return Err(Refusal::Permanent(
                origin,
                format!(
                    "spec resync request of {size} bytes, over the limit of {} bytes",
                    self.limits.max_resync_request_bytes
                ),
            ));
        }
        let request: ResourceVersionList =
            data_as(event, "ResourceVersionList").map_err(permanent(origin))?;
        if request.resource_versions.len() > self.limits.max_resync_ids {
            return Err(Refusal::Permanent(
                origin,
                format!(
                    "spec resync request lists {} resources, over the limit of {}",
                    request.resource_versions.len(),
                    self.limits.max_resync_ids
                ),
            ));
        }
        match self.consumers.is_registered(&cluster).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(Refusal::Permanent(origin, format!("consumer {cluster:?} is not registered")));
            }
            Err(e) if e.is_retryable() => return Err(Refusal::Retryable(e.to_string())),
            Err(e) => return Err(refused_by_database(origin, &e)),
        }
        let agent =
            request.resource_versions.into_iter().map(|v| (v.resource_id, v.resource_version)).collect();
        self.answers.start(SpecResyncAnswer {
            store: self.store.clone(),
            transport: self.transport.clone(),
            source_id: self.source_id.clone(),
            consumer: cluster,
            agent,
            request_id: event.id().to_owned(),
            holders: self.holders.clone(),
        });
        Ok(())
    }

    async fn route(&self, event: &Event) -> Result<(), Refusal> {
        let origin = DeadLetterOrigin::Agent;
        let ty = EventType::parse(event.ty()).map_err(permanent(origin))?;
        if !ty.is_manifest_bundles() {
            return Err(Refusal::Permanent(origin, format!("unsupported data type {:?}", ty.data_type)));
        }
        if let (Some(membership), Some(cluster)) = (&self.owner_only, ext::get_str(event, ext::CLUSTER_NAME))
            && !membership.owns(&cluster)
        {
            return Ok(()); // its owner, which received it too, handles it
        }
        match (ty.sub_resource, ty.action) {
            (SubResource::Spec, Action::ResyncRequest) => self.spec_resync(event).await,
            (SubResource::Status, Action::ResyncRequest) => Ok(()), // ignored by sources (§5.2)
            (SubResource::Status, _) => {
                let span = tracing::info_span!(
                    "status ingest",
                    consumer = tracing::field::Empty,
                    trace_id = tracing::field::Empty
                );
                maestro_transport::trace::link(&span, event);
                maestro_transport::trace::record_trace_id(&span);
                if let Some(cluster) = ext::get_str(event, ext::CLUSTER_NAME) {
                    span.record("consumer", cluster);
                }
                self.status(event).instrument(span).await.map(|_| ())
            }
            _ => Err(Refusal::Permanent(
                origin,
                format!("unexpected event type {:?} from an agent", event.ty()),
            )),
        }
    }

    /// Counts an accepted agent event ([`metrics::CLOUDEVENTS_RECEIVED`]), and the time a
    /// status event took ([`metrics::STATUS_PROCESSING`]).
    fn count_received(&self, event: &Event, elapsed: std::time::Duration) {
        let consumer = ext::get_str(event, ext::CLUSTER_NAME).unwrap_or_default();
        metrics::count_event(metrics::CLOUDEVENTS_RECEIVED, &self.source_id, &consumer, event);
        if EventType::parse(event.ty()).is_ok_and(|t| t.sub_resource == SubResource::Status) {
            let instance = self.store.instance_id().unwrap_or_default();
            let labels = [("source", self.source_id.clone()), ("server_instance_id", instance)];
            ::metrics::histogram!(metrics::STATUS_PROCESSING, &labels).record(elapsed);
        }
    }

    /// Stores `event` as a dead letter ([`Ingest::store_dead_letter`]). A retryable store
    /// failure asks for the event again (it will be refused again and stored once the database
    /// is back).
    async fn set_aside(
        &self,
        event: &Event,
        origin: DeadLetterOrigin,
        reason: &str,
    ) -> Result<(), HandlerError> {
        let consumer = ext::get_str(event, ext::CLUSTER_NAME);
        tracing::warn!(origin = origin.as_str(), consumer = ?consumer, id = ?event.id(), ty = ?event.ty(), reason = ?reason, "agent event refused; set aside as a dead letter");
        self.store_dead_letter(dead_letter(self.transport.backend(), origin, event, consumer, reason)).await
    }

    /// Stores a dead letter, rate limited ([`DEAD_LETTERS_PER_SECOND`]: over it the letter is
    /// only logged). `Err(Retryable)` when the store may take it later; any other store failure
    /// only logs.
    async fn store_dead_letter(&self, letter: NewDeadLetter) -> Result<(), HandlerError> {
        if self.dead_letters.check().is_err() {
            tracing::warn!(id = ?letter.event_id, "dead letter not stored: over {DEAD_LETTERS_PER_SECOND} per second");
            return Ok(());
        }
        match self.store.add_dead_letter(letter).await {
            Ok(id) => {
                tracing::info!(dead_letter = id, "dead letter stored");
                Ok(())
            }
            Err(e) if e.is_retryable() => Err(HandlerError::Retryable(format!("storing a dead letter: {e}"))),
            Err(e) => {
                tracing::error!(error = %e, "storing a dead letter failed; the event is dropped");
                Ok(())
            }
        }
    }
}

/// The dead letter of a decoded `event` (also the spec dispatcher's, [`crate::dispatch`]).
pub(crate) fn dead_letter(
    broker: &str,
    origin: DeadLetterOrigin,
    event: &Event,
    consumer: Option<String>,
    reason: &str,
) -> NewDeadLetter {
    NewDeadLetter {
        origin,
        broker: broker.to_owned(),
        consumer_name: consumer,
        resource_id: ext::get_str(event, ext::RESOURCE_ID),
        event_id: Some(event.id().to_owned()),
        event_type: Some(event.ty().to_owned()),
        reason: reason.to_owned(),
        event: String::from_utf8_lossy(&json::to_vec(event)).into_owned(),
    }
}

/// A permanent refusal for a write the database refused because of the data.
fn refused_by_database(origin: DeadLetterOrigin, e: &StoreError) -> Refusal {
    Refusal::Permanent(origin, format!("the database refused the write: {e}"))
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.answers.abort_all();
    }
}

#[async_trait]
impl EventHandler for Ingest {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let started = std::time::Instant::now();
        match self.route(event).await {
            Ok(()) => {
                self.count_received(event, started.elapsed());
                Ok(())
            }
            Err(Refusal::Retryable(reason)) => Err(HandlerError::Retryable(reason)),
            Err(Refusal::Permanent(origin, reason)) => {
                self.set_aside(event, origin, &reason).await?;
                Err(HandlerError::Permanent(reason))
            }
        }
    }

    /// Keeps a message the transport dropped (undecodable bytes, an event on another
    /// consumer's topic) as an `agent` dead letter: the decoded event when there is one, else
    /// the payload as text (invalid UTF-8 replaced). The transport has acknowledged it
    /// already, so a store failure only logs.
    async fn rejected(&self, message: Rejected<'_>) {
        let letter = match message.event {
            Some(event) => {
                let consumer = message.consumer.map(str::to_owned);
                dead_letter(message.backend, DeadLetterOrigin::Agent, event, consumer, message.reason)
            }
            None => NewDeadLetter {
                origin: DeadLetterOrigin::Agent,
                broker: message.backend.to_owned(),
                consumer_name: message.consumer.map(str::to_owned),
                resource_id: None,
                event_id: None,
                event_type: None,
                reason: format!("{} (on {:?})", message.reason, message.channel),
                event: String::from_utf8_lossy(message.payload).into_owned(),
            },
        };
        if let Err(error) = self.store_dead_letter(letter).await {
            tracing::warn!(%error, "the dead letter of a dropped message was not stored");
        }
    }
}
