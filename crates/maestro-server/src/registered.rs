//! Which consumers are registered ([`RegisteredConsumers`]), asked once or twice per agent
//! connection: the gRPC agent broker refuses a Subscribe for a consumer the store does not know,
//! and the server refuses a spec resync request from one (docs/security.md, "Limits").
//!
//! Both are answered from one snapshot of all consumer names, not from a query per agent: when
//! a fleet of agents connects (a server start, a network cut), a query per agent costs the
//! database thousands of round trips and holds each agent's RPC open meanwhile; on PostgreSQL
//! the two checks' queries left ~3.6 KiB per agent resident in the server (docs/benchmarks.md,
//! "Where an agent's bytes go"). The snapshot holds every consumer's name (tens of bytes each:
//! 10,000 consumers ≈ 0.5 MiB) and no bundle.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use maestro_store::{ConsumerQuery, DynStore, Paging, StoreError};
use tokio::sync::Mutex;

/// How long the snapshot answers "registered" before it is loaded again: 30 s. Consumers are
/// rarely deleted, and a deleted consumer has no bundles left to receive, so an agent of a
/// consumer deleted in the last 30 s may still subscribe and ask for a resync (answered with
/// nothing).
pub const REGISTERED_TTL: Duration = Duration::from_secs(30);

/// A snapshot younger than this is not reloaded for a name it lacks: the name is looked up
/// alone instead, so made-up names cost one query each (as without a snapshot) and at most
/// one full load every 5 s.
const RELOAD_AFTER: Duration = Duration::from_secs(5);

/// Consumers read per page when the snapshot is loaded.
const LOAD_PAGE: i64 = 10_000;

/// Whether a consumer is registered, i.e. the store has a consumer of that name.
///
/// Answers come from a snapshot of the store's consumer names, loaded on the first check and
/// again when a check finds it older than [`REGISTERED_TTL`] (30 s) or lacking the name and
/// older than 5 s; a name the snapshot lacks is otherwise looked up alone
/// (`get_consumer_by_name`), so a consumer registered after the snapshot is accepted at
/// once. A consumer deleted less than 30 s ago may still pass. Concurrent checks wait for one
/// load instead of each querying. So the store is read at most once per 30 s for registered
/// names and once per 5 s for missing ones (plus one single-name query per such check), each
/// load a full list of the consumers (10,000 per page).
#[derive(Debug)]
pub struct RegisteredConsumers {
    lookup: Box<dyn ConsumerLookup>,
    snapshot: Mutex<Snapshot>,
}

#[derive(Debug, Default)]
struct Snapshot {
    names: HashSet<Box<str>>,
    loaded: Option<Instant>,
}

impl Snapshot {
    fn age(&self) -> Option<Duration> {
        self.loaded.map(|at| at.elapsed())
    }
}

impl RegisteredConsumers {
    /// The consumers of `store`; nothing is read until the first check.
    pub fn new(store: DynStore) -> Self {
        RegisteredConsumers::with_lookup(Box::new(store))
    }

    /// The consumers `lookup` reads; nothing is read until the first check.
    pub fn with_lookup(lookup: Box<dyn ConsumerLookup>) -> Self {
        RegisteredConsumers { lookup, snapshot: Mutex::new(Snapshot::default()) }
    }

    /// Whether `consumer` is registered (see [`RegisteredConsumers`]).
    ///
    /// # Errors
    /// The store's error while loading the snapshot or looking the name up (e.g. the database
    /// is down); the snapshot is kept as it was.
    pub async fn is_registered(&self, consumer: &str) -> Result<bool, StoreError> {
        let mut snapshot = self.snapshot.lock().await;
        let age = snapshot.age();
        let known = snapshot.names.contains(consumer);
        let fresh = age.is_some_and(|a| a < REGISTERED_TTL);
        if known && fresh {
            return Ok(true);
        }
        if fresh && age.is_some_and(|a| a < RELOAD_AFTER) {
            drop(snapshot);
            return self.lookup.exists(consumer).await;
        }
        let loaded = Instant::now();
        snapshot.names = self.lookup.names().await?;
        snapshot.loaded = Some(loaded);
        Ok(snapshot.names.contains(consumer))
    }
}

/// How [`RegisteredConsumers`] reads consumers: the store ([`DynStore`]), or in tests a
/// wrapper counting reads.
#[async_trait]
pub trait ConsumerLookup: Send + Sync + std::fmt::Debug {
    /// Every consumer's name.
    async fn names(&self) -> Result<HashSet<Box<str>>, StoreError>;
    /// Whether a consumer is named `name`.
    async fn exists(&self, name: &str) -> Result<bool, StoreError>;
}

#[async_trait]
impl ConsumerLookup for DynStore {
    /// Pages of 10,000 consumers in the store's default order until a short page.
    async fn names(&self) -> Result<HashSet<Box<str>>, StoreError> {
        consumer_names(self).await
    }

    async fn exists(&self, name: &str) -> Result<bool, StoreError> {
        match self.get_consumer_by_name(name).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Every consumer's name, in the store's default order, read 10,000 consumers at a time.
///
/// # Errors
/// The store's.
pub(crate) async fn consumer_names<C, N>(store: &DynStore) -> Result<C, StoreError>
where
    C: Default + Extend<N>,
    N: From<String>,
{
    names_in_pages(store, LOAD_PAGE).await
}

/// Every consumer's name, read `size` consumers at a time until a short page.
async fn names_in_pages<C, N>(store: &DynStore, size: i64) -> Result<C, StoreError>
where
    C: Default + Extend<N>,
    N: From<String>,
{
    let mut names = C::default();
    for page in 1.. {
        let query = ConsumerQuery { paging: Paging { page, size }, ..ConsumerQuery::default() };
        let items = store.list_consumers(&query).await?.items;
        let short = items.len() < usize::try_from(size).unwrap_or(usize::MAX);
        names.extend(items.into_iter().map(|c| N::from(c.name)));
        if short {
            break;
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use maestro_store::NewConsumer;

    use super::*;

    /// The real SQLite store (in memory), counting the registry's reads of it.
    #[derive(Debug)]
    struct Counting {
        store: DynStore,
        loads: AtomicUsize,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl ConsumerLookup for Arc<Counting> {
        async fn names(&self) -> Result<HashSet<Box<str>>, StoreError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            self.store.names().await
        }

        async fn exists(&self, name: &str) -> Result<bool, StoreError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            self.store.exists(name).await
        }
    }

    async fn store_with(consumers: usize) -> DynStore {
        let store = maestro_store::open("sqlite::memory:").await.expect("store");
        for i in 0..consumers {
            let new = NewConsumer { name: Some(format!("c{i}")), ..NewConsumer::default() };
            store.create_consumer(new).await.expect("consumer");
        }
        store
    }

    async fn counting(consumers: usize) -> Arc<Counting> {
        let store = store_with(consumers).await;
        Arc::new(Counting { store, loads: AtomicUsize::new(0), lookups: AtomicUsize::new(0) })
    }

    fn reads(c: &Counting) -> (usize, usize) {
        (c.loads.load(Ordering::SeqCst), c.lookups.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_fleet_is_checked_with_one_load() {
        let counting = counting(25).await;
        let registry = Arc::new(RegisteredConsumers::with_lookup(Box::new(counting.clone())));
        let checks = (0..25).map(|i| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.is_registered(&format!("c{i}")).await })
        });
        for check in checks {
            assert!(check.await.expect("task").expect("answer"), "a stored consumer is registered");
        }
        assert_eq!(reads(&counting), (1, 0), "25 concurrent checks share one load and no lookup");
    }

    #[tokio::test]
    async fn names_missing_from_a_young_snapshot_are_looked_up() {
        let counting = counting(3).await;
        let registry = RegisteredConsumers::with_lookup(Box::new(counting.clone()));
        assert!(registry.is_registered("c0").await.expect("answer"));
        assert!(!registry.is_registered("made-up").await.expect("answer"), "unknown name refused");
        assert_eq!(reads(&counting), (1, 1), "a miss on a young snapshot is one lookup, not a reload");
        let new = NewConsumer { name: Some("late".into()), ..NewConsumer::default() };
        counting.store.create_consumer(new).await.expect("consumer");
        assert!(registry.is_registered("late").await.expect("answer"), "registered after the load");
        assert_eq!(reads(&counting), (1, 2));
    }

    #[tokio::test]
    async fn an_old_snapshot_is_reloaded() {
        let counting = counting(2).await;
        let registry = RegisteredConsumers::with_lookup(Box::new(counting.clone()));
        assert!(registry.is_registered("c1").await.expect("answer"));
        let Some(old) = Instant::now().checked_sub(RELOAD_AFTER) else { return };
        registry.snapshot.lock().await.loaded = Some(old);
        assert!(!registry.is_registered("nobody").await.expect("answer"));
        assert_eq!(reads(&counting), (2, 0), "a miss on a snapshot older than 5 s reloads it");
        let Some(stale) = Instant::now().checked_sub(REGISTERED_TTL) else { return };
        let id = counting.store.get_consumer_by_name("c1").await.expect("c1").id;
        counting.store.delete_consumer(&id).await.expect("delete");
        assert!(registry.is_registered("c1").await.expect("answer"), "deleted within the TTL still passes");
        registry.snapshot.lock().await.loaded = Some(stale);
        assert!(!registry.is_registered("c1").await.expect("answer"), "a stale snapshot is reloaded");
        assert_eq!(reads(&counting), (3, 0));
    }

    #[tokio::test]
    async fn the_store_is_read_in_pages() {
        let store = store_with(5).await;
        let want: HashSet<Box<str>> = (0..5).map(|i| format!("c{i}").into_boxed_str()).collect();
        for size in [1, 2, 5, 6] {
            let names: HashSet<Box<str>> = names_in_pages(&store, size).await.expect("names");
            assert_eq!(names, want, "pages of {size}");
        }
        assert_eq!(store.names().await.expect("names"), want);
        assert!(store.exists("c4").await.expect("exists") && !store.exists("c5").await.expect("exists"));
    }
}
