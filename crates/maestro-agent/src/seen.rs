//! Spec events already taken, by CloudEvent id and resource version (docs/protocol.md §6.1):
//! a broker delivers at
//! least once, and one that redelivers a message late (the Pub/Sub emulator redelivers what it
//! sent to a dead stream 10 s later, after newer events) would otherwise have the agent apply
//! an old version again, or re-create a work it has since deleted. A redelivered event (same
//! id, same version) is dropped. The version is part of the key because the server resends a
//! stored spec event with its id, and a store written behind the server's back (or a source
//! reusing ids) may keep an id across versions: a new version is never a redelivery. The memory is bounded ([`CAPACITY`] ids, the oldest forgotten first) and lasts as
//! long as the agent process; what it misses is caught by the version rules.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// How many (id, version) keys are remembered.
pub(crate) const CAPACITY: usize = 8192;

/// The ids of the latest spec events taken.
#[derive(Debug, Default)]
pub(crate) struct SeenEvents {
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl SeenEvents {
    /// Notes event `id` at resource `version`; false when it was already taken (a redelivery).
    pub(crate) fn first_time(&self, id: &str, version: i64) -> bool {
        let key = format!("{version}/{id}");
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        if !set.insert(key.clone()) {
            return false;
        }
        order.push_back(key);
        if order.len() > CAPACITY
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_id_is_refused_until_forgotten() {
        let seen = SeenEvents::default();
        assert!(seen.first_time("a", 1));
        assert!(!seen.first_time("a", 1));
        assert!(seen.first_time("a", 2), "a new version under the same id is not a redelivery");
        for i in 0..CAPACITY {
            assert!(seen.first_time(&i.to_string(), 1));
        }
        assert!(seen.first_time("a", 1), "forgotten after CAPACITY newer keys");
    }
}
