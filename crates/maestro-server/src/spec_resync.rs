//! Answers to agents' spec resync requests (docs/protocol.md §5.2, docs/security.md "Limits"): one
//! background task per consumer, at most [`MAX_CONCURRENT_RESYNC_ANSWERS`] at once, at most
//! one answer per consumer per [`IngestLimits::resync_min_interval`], the latest request
//! replacing one still waiting or being sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use maestro_api::ext;
use maestro_api::types::Action;
use maestro_store::DynStore;
use maestro_transport::DynSourceTransport;
use maestro_transport::retry::{ExponentialBuilder, delays, exponential};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::resync_reads::{ConsumerReads, ResyncReads};
use crate::spec::{deleted_resource_delete, outgoing_spec, unknown_resource_delete};

/// Limits on what agents may ask of the server through the broker (docs/security.md,
/// "Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Most resource versions one spec resync request may list (default 10,000): a request
    /// listing more is refused and set aside as a dead letter. Each listed id the server does
    /// not hold costs one delete event in the answer.
    pub max_resync_ids: usize,
    /// Largest spec resync request, bytes of its CloudEvents JSON (default 1 MiB, room for
    /// 10,000 ids): a larger one is refused and set aside as a dead letter. Each broker's
    /// message limit applies before it.
    pub max_resync_request_bytes: usize,
    /// Least time between the starts of two spec resync answers to one consumer (default
    /// 5 s). A request arriving sooner is answered once that time has passed; a newer request
    /// replaces it, so the agent always gets an answer to its latest one.
    pub resync_min_interval: Duration,
    /// Attempts at storing a status that fails with a retryable database error while the
    /// database answers pings (default 5, 0.1 s doubling): after them the status is set aside
    /// as a dead letter instead of holding every later status. During an outage
    /// ([`maestro_store::StoreError::is_outage`], or pings failing too) the status waits for
    /// the database, unbounded.
    pub status_attempts: u32,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_resync_ids: 10_000,
            max_resync_request_bytes: 1024 * 1024,
            resync_min_interval: Duration::from_secs(5),
            status_attempts: 5,
        }
    }
}

/// Most deletions of bundles deleted lately one spec resync answer carries (docs/protocol.md
/// §5.6), the newest first.
pub const DELETED_IN_ANSWER: i64 = 1000;
/// Most spec resync answers sent at once (a fleet reconnecting after an outage sends one
/// request per agent; each answer reads the consumer's bundles from the store).
pub const MAX_CONCURRENT_RESYNC_ANSWERS: usize = 16;
/// Attempts at answering one spec resync request when the store or the broker fails.
pub const RESYNC_ANSWER_ATTEMPTS: u32 = 8;
/// Delay between attempts: 1 s doubling to 30 s (jittered).
const RESYNC_ANSWER_BACKOFF: ExponentialBuilder =
    exponential(Duration::from_secs(1), RESYNC_ANSWER_MAX_DELAY);
const RESYNC_ANSWER_MAX_DELAY: Duration = Duration::from_secs(30);

/// The answers being sent or waiting, per consumer.
#[derive(Debug)]
pub(crate) struct Answers {
    min_interval: Duration,
    permits: Arc<Semaphore>,
    consumers: Arc<Mutex<HashMap<String, Slot>>>,
    reads: Arc<ResyncReads>,
}

/// One consumer's latest answer task (`None` once it is done: the handle would keep the
/// finished task's memory, ~1 KiB, alive) and when its answer last started.
#[derive(Debug)]
struct Slot {
    task: Option<AbortHandle>,
    started: Instant,
}

fn slots(consumers: &Mutex<HashMap<String, Slot>>) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
    consumers.lock().unwrap_or_else(|p| p.into_inner())
}

impl Answers {
    /// Answers reading `store`, their reads grouped ([`crate::resync_reads`]).
    pub(crate) fn new(limits: &IngestLimits, store: DynStore) -> Self {
        Answers {
            min_interval: limits.resync_min_interval,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_RESYNC_ANSWERS)),
            consumers: Arc::default(),
            reads: Arc::new(ResyncReads::new(store, MAX_CONCURRENT_RESYNC_ANSWERS)),
        }
    }

    /// Starts `answer` in the background, after the consumer's minimum interval, replacing
    /// (aborting) the consumer's previous answer if it is still waiting or being sent.
    pub(crate) fn start(&self, answer: SpecResyncAnswer) {
        let now = Instant::now();
        let mut consumers = slots(&self.consumers);
        // Forget consumers whose last answer is done and older than the interval.
        consumers.retain(|_, s| {
            s.task.as_ref().is_some_and(|t| !t.is_finished())
                || now.duration_since(s.started) < self.min_interval
        });
        let start_at = match consumers.get(&answer.consumer) {
            // The previous answer is still waiting: this one takes its place and its time.
            Some(previous) if previous.started > now => previous.started,
            Some(previous) => (previous.started + self.min_interval).max(now),
            None => now,
        };
        if start_at > now {
            tracing::debug!(consumer = ?answer.consumer, wait_ms = (start_at - now).as_millis() as u64, "spec resync request arrived within the minimum interval; answer delayed");
        }
        let consumer = answer.consumer.clone();
        let (permits, reads) = (self.permits.clone(), self.reads.clone());
        let done = (self.consumers.clone(), consumer.clone());
        let task = tokio::spawn(async move {
            answer.run(permits, &reads, start_at).await;
            // Runs once `start` has let go of the map: the slot holds this task's handle.
            let (consumers, consumer) = done;
            if let Some(slot) = slots(&consumers).get_mut(&consumer)
                && slot.task.as_ref().is_some_and(|t| t.id() == tokio::task::id())
            {
                slot.task = None;
            }
        });
        if let Some(previous) =
            consumers.insert(consumer, Slot { task: Some(task.abort_handle()), started: start_at })
            && let Some(task) = previous.task
        {
            task.abort();
        }
    }

    /// Aborts every answer (the server stops).
    pub(crate) fn abort_all(&mut self) {
        for (_, slot) in slots(&self.consumers).drain() {
            if let Some(task) = slot.task {
                task.abort();
            }
        }
    }
}

/// The answer to one consumer's spec resync request (docs/protocol.md §5.2), sent by a task.
pub(crate) struct SpecResyncAnswer {
    pub(crate) store: DynStore,
    pub(crate) transport: DynSourceTransport,
    pub(crate) source_id: String,
    pub(crate) consumer: String,
    /// The versions the agent holds, by resource id.
    pub(crate) agent: HashMap<String, i64>,
    /// The CloudEvent id of the request answered, sent back as [`ext::RESYNC_ANSWER`]: the
    /// agent tells the answers to its own requests from late ones (docs/protocol.md §6.1).
    pub(crate) request_id: String,
    /// Several instances with the gRPC broker: the agent is recorded as connected here
    /// before its bundles are read, so a spec written after the read finds where to go
    /// (docs/architecture.md §9).
    pub(crate) holders: Option<crate::instances::AgentHolders>,
}

impl SpecResyncAnswer {
    /// Waits until `start_at`, then sends the answer; a store failure or a retryable publish
    /// failure starts it again after a backoff, up to [`RESYNC_ANSWER_ATTEMPTS`] times (the
    /// agent ignores versions it already holds). Gives up with an error log.
    async fn run(self, permits: Arc<Semaphore>, reads: &ResyncReads, start_at: Instant) {
        tokio::time::sleep_until(start_at).await;
        let Ok(_permit) = permits.acquire_owned().await else { return };
        let mut delays = delays(RESYNC_ANSWER_BACKOFF, RESYNC_ANSWER_MAX_DELAY);
        let started = Instant::now();
        for attempt in 0..RESYNC_ANSWER_ATTEMPTS {
            match self.send(reads).await {
                Ok(()) => {
                    let source = self.source_id.clone();
                    ::metrics::histogram!(crate::metrics::SPEC_RESYNC_DURATION, "source" => source)
                        .record(started.elapsed());
                    return;
                }
                Err((error, true)) if attempt + 1 < RESYNC_ANSWER_ATTEMPTS => {
                    tracing::warn!(consumer = ?self.consumer, %error, attempt, "spec resync answer failed; retrying");
                    tokio::time::sleep(delays.next().unwrap_or(RESYNC_ANSWER_MAX_DELAY)).await;
                }
                Err((error, _)) => {
                    tracing::error!(consumer = ?self.consumer, %error, "spec resync answer failed; giving up");
                    return;
                }
            }
        }
    }

    /// The deletions of the consumer's bundles deleted lately (the latest
    /// [`DELETED_IN_ANSWER`] whose id is not in use again, docs/protocol.md §5.6), as
    /// `spec.delete_request`s; the ids among them are taken out of `agent` (the works the
    /// agent listed and the store does not hold), so they are not unknown deletions.
    fn deleted_lately(
        &self,
        read: &ConsumerReads,
        agent: &mut HashMap<String, i64>,
    ) -> Vec<maestro_api::Event> {
        let live: std::collections::HashSet<&str> = read.resources.iter().map(|r| r.id.as_str()).collect();
        read.deleted
            .iter()
            .filter(|d| !live.contains(d.id.as_str()))
            .inspect(|d| {
                agent.remove(&d.id);
            })
            .map(|d| deleted_resource_delete(&self.source_id, d))
            .collect()
    }

    /// One attempt; errors come with whether a retry may succeed.
    async fn send(&self, reads: &ResyncReads) -> Result<(), (String, bool)> {
        if let Some(holders) = &self.holders {
            holders.record(&self.store, &self.consumer).await.map_err(|e| (e.to_string(), true))?;
        }
        let store_err = |e: maestro_store::StoreError| (e.to_string(), true);
        let read = reads.read(&self.consumer).await.map_err(|e| (e, true))?;
        let (resources, store_id) = (&read.resources, &read.store_id);
        let mut agent = self.agent.clone();
        let mut out = Vec::new();
        for r in resources {
            let agent_version = agent.remove(&r.id).unwrap_or(0);
            if r.deleted_at.is_some() || r.version == 0 || r.version > agent_version {
                let mut ev = outgoing_spec(r, &self.source_id, Action::ResyncResponse);
                // The agent's apply joins the bundle's trace (docs/operations.md §4.6).
                if let Some(cx) = maestro_transport::trace::TraceContext::of_json(&r.payload) {
                    cx.stamp(&mut ev);
                }
                out.push(ev);
            }
        }
        out.extend(self.deleted_lately(&read, &mut agent));
        let unknown = agent.len();
        if unknown > 0 {
            let confirmed = self.store.wipe_confirmed(&self.consumer).await.map_err(store_err)?;
            tracing::info!(consumer = ?self.consumer, unknown, listed = self.agent.len(), confirmed,
                "spec resync: the agent holds works this store does not; sending their deletion");
            for (id, version) in agent {
                let mut ev = unknown_resource_delete(&self.source_id, &id, version, &self.consumer);
                if confirmed {
                    ext::set_str(&mut ev, ext::WIPE_CONFIRMED, "true");
                }
                out.push(ev);
            }
        }
        // The fleet-wipe guard's inputs (docs/protocol.md §5.5), and the answer's size for a
        // restarted agent's start-up hold (§6.1).
        let (total, answer) = (out.len().to_string(), self.request_id.as_str());
        for ev in &mut out {
            ext::set_str(ev, ext::STORE_ID, store_id.as_str());
            ext::set_str(ev, ext::RESYNC_DELETES, unknown.to_string());
            ext::set_str(ev, ext::RESYNC_EVENTS, total.as_str());
            ext::set_str(ev, ext::RESYNC_ANSWER, answer);
        }
        tracing::info!(consumer = ?self.consumer, held = resources.len(), sending = out.len(), "spec resync");
        // On a broker that stores messages (MQTT, Pub/Sub), a status the agent published just
        // before a broker outage can be lost, and the server's status resync broadcast after
        // its own resubscription can miss an agent that resubscribes later (Pub/Sub recreates
        // the agent's subscription only then). The agent's spec resync marks its return: ask it
        // for its statuses too (docs/protocol.md §5.1; it resends only what differs).
        if !self.transport.capabilities().server_hosts_agents {
            out.extend(crate::resync::batches(&self.source_id, &self.consumer, resources));
        }
        for ev in &out {
            self.transport
                .publish(ev)
                .await
                .map_err(|e| (format!("resync publish: {e}"), e.is_retryable()))?;
            crate::metrics::count_event(
                crate::metrics::CLOUDEVENTS_SENT,
                &self.source_id,
                &self.consumer,
                ev,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use maestro_transport::memory::MemoryBroker;
    use maestro_transport::{AgentTransport, EventHandler, HandlerError};

    use super::*;

    struct Ignore;

    #[async_trait::async_trait]
    impl EventHandler for Ignore {
        async fn handle(&self, _event: &maestro_api::Event) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    /// A finished answer lets go of its task at once, without waiting for the next request to
    /// sweep the map; its start time stays for the minimum interval.
    #[tokio::test]
    async fn a_done_answer_keeps_no_task() {
        let store = maestro_store::open("sqlite::memory:").await.expect("store");
        let (answers, broker) = (Answers::new(&IngestLimits::default(), store.clone()), MemoryBroker::new());
        broker.agent("c1").start(Arc::new(Ignore)).await.expect("agent");
        answers.start(SpecResyncAnswer {
            store,
            transport: broker.source(),
            source_id: "maestro".into(),
            consumer: "c1".into(),
            agent: HashMap::new(),
            request_id: "r1".into(),
            holders: None,
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while slots(&answers.consumers).get("c1").is_some_and(|s| s.task.is_some()) {
            assert!(Instant::now() < deadline, "the done answer still holds its task");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(slots(&answers.consumers).contains_key("c1"), "its start time is kept");
    }
}
