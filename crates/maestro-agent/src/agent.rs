//! The [`Agent`]: wires the transport, the work store, the reconcile workers, the status
//! publisher and the periodic tasks together.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use maestro_api::snowflake::Generator;
use maestro_transport::DynAgentTransport;
use maestro_transport::retry::{CancellationToken, TaskTracker};
use tokio::sync::Notify;

use crate::cluster::{AppliedWorkRef, Cluster};
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::intake::Intake;
use crate::queue::WorkQueue;
use crate::wipe_guard::WipeGuard;
use crate::work::{Work, WorkSnapshot};
use crate::{reconcile, status};

/// State shared by every task of one agent.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: AgentConfig,
    pub(crate) transport: DynAgentTransport,
    pub(crate) cluster: Arc<dyn Cluster>,
    pub(crate) works: Mutex<HashMap<String, Work>>,
    pub(crate) queue: WorkQueue,
    /// Wakes the status publisher.
    pub(crate) publish: Notify,
    /// Ids of the works whose status may be unpublished: the publisher looks at these only,
    /// not at every work (an agent can hold thousands).
    pub(crate) unpublished: Mutex<HashSet<String>>,
    /// Sequence ids for status events (node 1, docs/protocol.md §6.2).
    pub(crate) sequence: Generator,
    pub(crate) hub_hash: String,
    /// Cancelled when the agent stops: every task of the agent ends at its next wait.
    pub(crate) cancel: CancellationToken,
    /// Every task of the agent, waited for on shutdown.
    pub(crate) tasks: TaskTracker,
    /// The fleet-wipe guard's state (docs/operations.md §3.5).
    pub(crate) guard: WipeGuard,
    /// The ids of the spec events taken lately, to drop redeliveries.
    pub(crate) seen: crate::seen::SeenEvents,
    /// The works deleted and dropped lately, to drop late specs of them.
    pub(crate) tombstones: crate::seen::Tombstones,
    /// `feedbackScrapeType: Watch`: the objects watched and their works (docs/protocol.md §8.5).
    pub(crate) watches: crate::watch::Watches,
    /// When this agent was built, by its own clock ([`AgentConfig::clock_skew_ms`] added): a
    /// spec published before it, of a work the agent does not hold, is late
    /// (docs/protocol.md §6.1).
    pub(crate) started_at: chrono::DateTime<chrono::Utc>,
    /// Woken when the agent dropped such a spec: it asks for a spec resync again.
    pub(crate) resync_owed: Notify,
    /// A restarted agent's hold on plain specs of works it does not hold, until its first
    /// spec resync answer is complete (docs/protocol.md §6.1).
    pub(crate) hold: crate::startup_hold::StartupHold,
}

impl Shared {
    pub(crate) fn works(&self) -> MutexGuard<'_, HashMap<String, Work>> {
        self.works.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that the status of work `id` changed (or must go out again) and wakes the
    /// publisher. Call without holding the works lock.
    pub(crate) fn status_changed(&self, id: &str) {
        self.unpublished_set().insert(id.to_owned());
        self.publish.notify_one();
    }

    /// The set of works whose status may be unpublished.
    pub(crate) fn unpublished_set(&self) -> MutexGuard<'_, HashSet<String>> {
        self.unpublished.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The AppliedManifestWork of the work named `work_name` (docs/protocol.md §8.3).
    pub(crate) fn applied_work_ref(&self, work_name: &str) -> AppliedWorkRef {
        AppliedWorkRef {
            name: format!("{}-{}", self.hub_hash, work_name),
            hub_hash: self.hub_hash.clone(),
            agent_id: self.config.agent_id.clone(),
            work_name: work_name.to_owned(),
        }
    }

    /// Enqueues every work that is not finalized at background priority (behind spec
    /// changes), optionally marking it for a re-apply.
    pub(crate) fn enqueue_all(&self, reapply: bool) {
        let ids: Vec<String> = {
            let mut works = self.works();
            works
                .values_mut()
                .filter(|w| !w.finalized)
                .map(|w| {
                    w.needs_apply |= reapply;
                    w.uid.clone()
                })
                .collect()
        };
        for id in ids {
            self.queue.add_background(&id);
        }
    }
}

/// The work agent of one consumer (docs/protocol.md §8): receives spec events through an
/// [`maestro_transport::AgentTransport`], applies the bundles on a [`Cluster`] and publishes
/// their status.
#[derive(Debug)]
pub struct Agent {
    shared: Arc<Shared>,
}

/// A cheap, cloneable handle for inspecting a (running) agent.
#[derive(Debug, Clone)]
pub struct AgentHandle {
    shared: Arc<Shared>,
}

impl Agent {
    /// An agent for `config.consumer` talking through `transport` to `cluster`. Nothing runs
    /// until [`Agent::run`].
    pub fn new(config: AgentConfig, transport: DynAgentTransport, cluster: Arc<dyn Cluster>) -> Self {
        let hub_hash = config.hub_hash();
        let skew_ms = config.clock_skew_ms;
        let sequence = Generator::with_clock_offset(maestro_api::snowflake::AGENT_NODE, skew_ms);
        Agent {
            shared: Arc::new(Shared {
                config,
                transport,
                cluster,
                works: Mutex::new(HashMap::new()),
                queue: WorkQueue::default(),
                publish: Notify::new(),
                unpublished: Mutex::default(),
                sequence,
                hub_hash,
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
                guard: WipeGuard::default(),
                seen: Default::default(),
                tombstones: Default::default(),
                watches: Default::default(),
                started_at: chrono::Utc::now() + chrono::Duration::milliseconds(skew_ms),
                resync_owed: Notify::new(),
                hold: Default::default(),
            }),
        }
    }

    /// A handle for inspection.
    pub fn handle(&self) -> AgentHandle {
        AgentHandle { shared: self.shared.clone() }
    }

    /// Starts the transport and runs the agent until `shutdown` completes; then stops taking
    /// new work, lets the applies and publishes in flight finish (at most
    /// [`AgentConfig::shutdown_timeout`]), and closes the transport.
    ///
    /// # Errors
    /// [`AgentError::Config`] for an invalid configuration ([`AgentConfig::validate`]: an
    /// empty consumer or no accepted source id); [`AgentError::Transport`] when the transport
    /// cannot be started.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), AgentError> {
        let shared = self.shared;
        shared.config.validate().map_err(AgentError::Config)?;
        crate::eviction::restore(&shared).await;
        let tasks = &shared.tasks;
        for _ in 0..shared.config.workers.max(1) {
            tasks.spawn(reconcile::run_worker(shared.clone()));
        }
        let subscribed = shared.transport.subscribed();
        tasks.spawn(status::run_publisher(shared.clone()));
        tasks.spawn(crate::startup_hold::run(shared.clone(), subscribed.clone()));
        tasks.spawn(status::run_spec_resync(shared.clone(), subscribed));
        tasks.spawn(status::run_orphan_recheck(shared.clone()));
        tasks.spawn(crate::eviction::run(shared.clone()));
        tasks.spawn(run_ticker(shared.clone(), shared.config.status_sync_interval, false));
        if let Some(every) = shared.config.resync_interval {
            tasks.spawn(run_ticker(shared.clone(), every, true));
        }
        let started = shared.transport.start(Arc::new(Intake::new(shared.clone()))).await;
        if let Err(e) = started {
            shared.stop_tasks().await;
            return Err(e.into());
        }
        tracing::info!(consumer = %shared.config.consumer, agent_id = %shared.config.agent_id,
            backend = shared.transport.backend(), accepted_sources = ?shared.config.accepted_sources,
            "work agent started");
        shutdown.await;
        shared.stop_tasks().await;
        shared.transport.close().await;
        tracing::info!(consumer = %shared.config.consumer, "work agent stopped");
        Ok(())
    }
}

async fn run_ticker(shared: Arc<Shared>, every: std::time::Duration, reapply: bool) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    while shared.cancel.run_until_cancelled(ticker.tick()).await.is_some() {
        shared.enqueue_all(reapply);
    }
}

impl Shared {
    /// Cancels every task of the agent and waits for them, at most the shutdown timeout: the
    /// applies and publishes in flight finish, nothing new starts.
    async fn stop_tasks(&self) {
        self.cancel.cancel();
        self.tasks.close();
        let limit = self.config.shutdown_timeout;
        if tokio::time::timeout(limit, self.tasks.wait()).await.is_err() {
            tracing::warn!(consumer = %self.config.consumer, tasks = self.tasks.len(), timeout = ?limit,
                "agent tasks still running after the shutdown timeout; abandoning them");
        }
    }
}

impl AgentHandle {
    /// The consumer this agent serves.
    pub fn consumer(&self) -> &str {
        &self.shared.config.consumer
    }

    /// The agent id.
    pub fn agent_id(&self) -> &str {
        &self.shared.config.agent_id
    }

    /// Every work held, ordered by id.
    pub fn works(&self) -> Vec<WorkSnapshot> {
        let mut list: Vec<WorkSnapshot> = self.shared.works().values().map(Work::snapshot).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// One work by resource id.
    pub fn work(&self, id: &str) -> Option<WorkSnapshot> {
        self.shared.works().get(id).map(Work::snapshot)
    }

    /// Asks for an immediate status sync of every work (as the periodic sync does).
    pub fn sync_now(&self) {
        self.shared.enqueue_all(false);
    }

    /// The objects watched for `feedbackScrapeType: Watch`, each with the ids of the works
    /// queued when it changes (both ordered); docs/protocol.md §8.5.
    pub fn watched(&self) -> Vec<(crate::cluster::WatchKey, Vec<String>)> {
        self.shared.watches.snapshot()
    }
}
