//! Which consumers exist ([`ConsumerRegistry`]): the broker refuses a Subscribe for a consumer
//! the server does not know (docs/security.md, "Limits"), so no client can hold streams, queues
//! and resync work for made-up cluster names. The broker does not depend on the store: the
//! server binary implements the trait over it.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a consumer found registered is remembered before it is looked up again: 30 s.
/// Consumers are rarely deleted, and a deleted consumer has no bundles left to receive, so an
/// agent of a consumer deleted in the last 30 s may still subscribe, and only the lookups of
/// reconnecting fleets are saved. Unknown consumers are never remembered, so a consumer
/// registered after its agent started is accepted at the agent's next attempt.
pub const REGISTERED_TTL: Duration = Duration::from_secs(30);

/// Remembered consumers are first pruned of expired entries when the map holds this many;
/// then whenever it has doubled since the last pruning (so pruning stays amortized O(1)).
const PRUNE_AT: usize = 4_096;

/// A registry that could not answer (e.g. the database is down). The text is logged by the
/// broker, never sent to the agent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RegistryError(pub String);

/// The answer of [`ConsumerRegistry::is_registered`] (a boxed future, so implementors need no
/// macro crate: `Box::pin(async move { … })`).
pub type Registered<'a> = Pin<Box<dyn Future<Output = Result<bool, RegistryError>> + Send + 'a>>;

/// Answers whether a consumer (cluster name) is registered with the server.
pub trait ConsumerRegistry: Send + Sync + fmt::Debug {
    /// Resolves to `Ok(true)` when `consumer` is registered, `Ok(false)` when it is not.
    ///
    /// # Errors
    /// [`RegistryError`] when the answer cannot be known now; the Subscribe is refused with
    /// `UNAVAILABLE` and the agent retries.
    fn is_registered<'a>(&'a self, consumer: &'a str) -> Registered<'a>;
}

/// Consumers found registered, each with when it was found ([`REGISTERED_TTL`]).
#[derive(Debug)]
pub(crate) struct KnownConsumers {
    state: Mutex<Known>,
}

#[derive(Debug)]
struct Known {
    seen: HashMap<String, Instant>,
    /// Size at which expired entries are next pruned.
    prune_at: usize,
}

impl Default for KnownConsumers {
    fn default() -> Self {
        KnownConsumers { state: Mutex::new(Known { seen: HashMap::new(), prune_at: PRUNE_AT }) }
    }
}

impl KnownConsumers {
    fn state(&self) -> std::sync::MutexGuard<'_, Known> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when `consumer` was found registered less than [`REGISTERED_TTL`] ago.
    pub(crate) fn is_fresh(&self, consumer: &str) -> bool {
        self.state().seen.get(consumer).is_some_and(|at| at.elapsed() < REGISTERED_TTL)
    }

    /// Remembers that `consumer` is registered (now).
    pub(crate) fn remember(&self, consumer: &str) {
        let mut state = self.state();
        if state.seen.len() >= state.prune_at {
            state.seen.retain(|_, at| at.elapsed() < REGISTERED_TTL);
            state.prune_at = PRUNE_AT.max(state.seen.len().saturating_mul(2));
        }
        state.seen.insert(consumer.to_owned(), Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_prunes() {
        let known = KnownConsumers::default();
        assert!(!known.is_fresh("c1"));
        known.remember("c1");
        assert!(known.is_fresh("c1"));
        let stale = Instant::now().checked_sub(REGISTERED_TTL + Duration::from_secs(1));
        if let Some(stale) = stale {
            known.state().seen.insert("old".into(), stale);
            assert!(!known.is_fresh("old"), "an expired entry is looked up again");
            for i in 0..PRUNE_AT {
                known.remember(&format!("c{i}"));
            }
            assert!(!known.state().seen.contains_key("old"), "expired entries are pruned");
        }
    }
}
