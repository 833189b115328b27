//! This server's place among several instances on one database (docs/architecture.md §9):
//! it registers under its instance id with a lease, renews the lease every heartbeat with its
//! status fan-out's cursor, declares dead the instances whose lease passed (the store then
//! releases their outbox claims), records which consumers' gRPC agents are connected here, and
//! leaves on shutdown so the others take over at once.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use maestro_store::{DynStore, StoreError};
use maestro_transport::DynSourceTransport;
use maestro_transport::retry::{CancellationToken, pause};
use tokio::sync::watch;

/// How this server takes part in the instance registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// The instance id (`--instance-id`; default [`default_instance_id`]). Unique among the
    /// live instances of one database.
    pub id: String,
    /// How often the lease is renewed and dead instances are looked for (default 5 s).
    pub heartbeat: Duration,
    /// How long the lease holds without renewal (default 15 s): after it, another instance
    /// declares this one dead and takes over its outbox rows and consumers.
    pub lease: Duration,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig { id: default_instance_id(), heartbeat: DEFAULT_HEARTBEAT, lease: DEFAULT_LEASE }
    }
}

/// Default [`InstanceConfig::heartbeat`].
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Default [`InstanceConfig::lease`].
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// `maestro-<host>-<pid>-<4 random hex digits>`: unique per process, readable in the registry.
pub fn default_instance_id() -> String {
    let host = hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "host".into());
    let random = &uuid::Uuid::new_v4().simple().to_string()[..4];
    format!("maestro-{host}-{}-{random}", std::process::id())
}

/// Registers the instance, waiting (up to one lease, checking every heartbeat) while a live
/// instance holds the id: the previous run of this instance that died without leaving, whose
/// lease must pass first.
///
/// # Errors
/// Store failures; [`StoreError::Conflict`] when the id is still held after the wait (another
/// running server uses it).
pub async fn join(store: &DynStore, config: &InstanceConfig, status_cursor: i64) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + config.lease + config.heartbeat;
    loop {
        if store.register_instance(&config.id, config.lease, status_cursor).await? {
            tracing::info!(instance = %config.id, lease = ?config.lease, "server instance registered");
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Conflict(format!(
                "server instance id {:?} is held by another live server; give each instance its own --instance-id",
                config.id
            )));
        }
        tracing::warn!(instance = %config.id, "a live server instance holds this id (a previous run that did not stop cleanly?); waiting for its lease to pass");
        tokio::time::sleep(config.heartbeat).await;
    }
}

/// The consumers this instance has recorded as holding gRPC agent streams of, shared by the
/// spec resync answers (which record a consumer before reading its bundles, so a spec written
/// after that read finds the holder) and the heartbeat (which brings the record in line with
/// the broker's connections).
#[derive(Debug, Clone, Default)]
pub struct AgentHolders(Arc<Mutex<BTreeSet<String>>>);

impl AgentHolders {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that an agent of `consumer` is connected here (if not recorded yet).
    ///
    /// # Errors
    /// Store failures.
    pub async fn record(&self, store: &DynStore, consumer: &str) -> Result<(), StoreError> {
        if self.lock().contains(consumer) {
            return Ok(());
        }
        store.hold_agent_streams(&[consumer.to_owned()], &[]).await?;
        self.lock().insert(consumer.to_owned());
        Ok(())
    }

    /// Brings the record in line with `connected`, the consumers connected now.
    async fn sync(&self, store: &DynStore, connected: Vec<String>) -> Result<(), StoreError> {
        let connected: BTreeSet<String> = connected.into_iter().collect();
        let (add, remove): (Vec<String>, Vec<String>) = {
            let held = self.lock();
            (connected.difference(&held).cloned().collect(), held.difference(&connected).cloned().collect())
        };
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        store.hold_agent_streams(&add, &remove).await?;
        let mut held = self.lock();
        held.extend(add);
        for gone in &remove {
            held.remove(gone);
        }
        Ok(())
    }
}

/// Every heartbeat until `cancel`: renews the lease (registering again if it passed),
/// declares dead the instances whose lease passed, and records the consumers whose gRPC agents
/// are connected here (in `holders`) and completes the outbox rows nobody can deliver, and
/// publishes the live instances to `live` (sorted ids,
/// this one among them: [`crate::ownership::Membership`]); `lease` records each heartbeat
/// that renewed the lease (readiness).
pub async fn run(
    store: DynStore,
    transport: DynSourceTransport,
    config: InstanceConfig,
    status_cursor: Arc<AtomicI64>,
    holders: AgentHolders,
    (live, lease): (watch::Sender<Arc<Vec<String>>>, crate::ops::LeaseClock),
    cancel: CancellationToken,
) {
    while pause(config.heartbeat, &cancel).await {
        let cursor = status_cursor.load(Ordering::Acquire);
        match heartbeat(&store, &transport, &config, cursor, &holders, &live).await {
            Ok(()) => lease.renewed(),
            Err(e) => tracing::warn!(instance = %config.id, error = %e, "server instance heartbeat failed"),
        }
    }
}

/// One heartbeat; see [`run`].
async fn heartbeat(
    store: &DynStore,
    transport: &DynSourceTransport,
    config: &InstanceConfig,
    cursor: i64,
    holders: &AgentHolders,
    live: &watch::Sender<Arc<Vec<String>>>,
) -> Result<(), StoreError> {
    if !store.renew_instance(config.lease, cursor).await? {
        tracing::warn!(instance = %config.id, "this server's lease had passed (a long pause, or the database was unreachable); other instances may have taken its work; registering again");
        if !store.register_instance(&config.id, config.lease, cursor).await? {
            return Err(StoreError::Conflict(format!(
                "another live server registered instance id {:?}",
                config.id
            )));
        }
        holders.lock().clear();
    }
    for dead in store.expire_instances().await? {
        tracing::warn!(instance = %dead, "server instance declared dead (its lease passed); its outbox claims and agents are taken over");
    }
    if store.is_shared() {
        let instances = store.list_instances().await?;
        let mut ids: Vec<String> = instances.into_iter().filter(|i| i.live).map(|i| i.id).collect();
        if !ids.contains(&config.id) {
            ids.push(config.id.clone());
        }
        ids.sort();
        live.send_if_modified(|view| {
            let changed = **view != ids;
            if changed {
                tracing::info!(instances = ?ids, "live server instances changed");
                *view = Arc::new(std::mem::take(&mut ids));
            }
            changed
        });
    }
    // With the gRPC broker: record the agents connected here, then complete the rows of
    // consumers no live instance holds (nobody can deliver them; the agent's spec resync on
    // connect sends the state). Once per heartbeat, not on every dispatcher sweep.
    if let Some(connected) = transport.connected_consumers().filter(|_| store.is_shared()) {
        holders.sync(store, connected).await?;
        store.complete_unheld_spec_events().await?;
    }
    Ok(())
}

/// Leaves the registry (a graceful shutdown, after the dispatcher stopped): claims released,
/// agent streams forgotten, lease ended, so the other instances take over at once.
pub async fn leave(store: &DynStore) {
    let id = store.instance_id().unwrap_or_default();
    match store.leave_instance().await {
        Ok(()) => tracing::info!(instance = %id, "server instance left the registry"),
        Err(e) => {
            tracing::warn!(instance = %id, error = %e, "leaving the registry failed; other instances take over when the lease passes")
        }
    }
}
