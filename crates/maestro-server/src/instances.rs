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
pub struct AgentHolders(Arc<Holders>);

#[derive(Debug, Default)]
struct Holders {
    /// Recorded in the store.
    held: Mutex<BTreeSet<String>>,
    /// Waiting for the next write: a fleet reconnecting is recorded in a few writes, not one
    /// transaction per agent.
    pending: Mutex<BTreeSet<String>>,
    /// One write at a time.
    writer: tokio::sync::Mutex<()>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AgentHolders {
    fn held(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        locked(&self.0.held)
    }

    /// Records that an agent of `consumer` is connected here (if not recorded yet), in one
    /// write with every consumer waiting to be recorded meanwhile; returns once it is stored.
    ///
    /// # Errors
    /// Store failures; the consumers of the failed write wait for the next one.
    pub async fn record(&self, store: &DynStore, consumer: &str) -> Result<(), StoreError> {
        if self.held().contains(consumer) {
            return Ok(());
        }
        locked(&self.0.pending).insert(consumer.to_owned());
        let _turn = self.0.writer.lock().await;
        if self.held().contains(consumer) {
            return Ok(()); // the write before this one took it
        }
        let mut batch = std::mem::take(&mut *locked(&self.0.pending));
        batch.insert(consumer.to_owned());
        let add: Vec<String> = batch.iter().cloned().collect();
        match store.hold_agent_streams(&add, &[]).await {
            Ok(()) => {
                self.held().extend(batch);
                Ok(())
            }
            Err(e) => {
                locked(&self.0.pending).extend(batch);
                Err(e)
            }
        }
    }

    /// Forgets every record (the instance registered again).
    fn clear(&self) {
        self.held().clear();
    }

    /// Brings the record in line with `connected`, the consumers connected now.
    async fn sync(&self, store: &DynStore, connected: Vec<String>) -> Result<(), StoreError> {
        let _turn = self.0.writer.lock().await;
        let connected: BTreeSet<String> = connected.into_iter().collect();
        let (add, remove): (Vec<String>, Vec<String>) = {
            let held = self.held();
            (connected.difference(&held).cloned().collect(), held.difference(&connected).cloned().collect())
        };
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        store.hold_agent_streams(&add, &remove).await?;
        let mut held = self.held();
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
        holders.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);

    async fn held_in_store(store: &DynStore) -> i64 {
        store.list_instances().await.expect("list").first().map_or(0, |i| i.agent_consumers)
    }

    /// Records waiting while another write is under way go out in the next write; those of a
    /// failed write (here: no instance registered yet) are kept for the next one.
    #[tokio::test]
    async fn waiting_records_are_written_together() {
        let store = maestro_store::open("sqlite::memory:").await.expect("store");
        let holders = AgentHolders::default();
        let turn = holders.0.writer.lock().await;
        let waiting: Vec<_> = (0..5)
            .map(|i| {
                let (holders, store) = (holders.clone(), store.clone());
                tokio::spawn(async move { holders.record(&store, &format!("c{i}")).await })
            })
            .collect();
        while locked(&holders.0.pending).len() < 5 {
            tokio::task::yield_now().await;
        }
        drop(turn);
        for record in waiting {
            assert!(record.await.expect("task").is_err(), "no instance registered: the write fails");
        }
        assert_eq!(locked(&holders.0.pending).len(), 5, "a failed write's consumers wait for the next");
        assert!(holders.held().is_empty());

        assert!(store.register_instance("a", LEASE, 0).await.expect("register"));
        holders.record(&store, "late").await.expect("record");
        assert_eq!(held_in_store(&store).await, 6, "one write took the five waiting and the new one");
        assert_eq!(holders.held().len(), 6);
        assert!(locked(&holders.0.pending).is_empty());
        holders.record(&store, "c0").await.expect("recorded already");
        holders.sync(&store, vec!["c1".into()]).await.expect("sync");
        assert_eq!((held_in_store(&store).await, holders.held().len()), (1, 1), "sync keeps the connected");
    }
}
