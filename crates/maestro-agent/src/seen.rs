//! What the agent remembers of spec events past (docs/protocol.md §6.1): a broker delivers at
//! least once, and one that redelivers a message late (the Pub/Sub emulator redelivers what it
//! sent to a dead stream 10 s later, after newer events) would otherwise have the agent apply
//! an old version again, or re-create a work it has since deleted.
//!
//! - [`SeenEvents`]: the spec events taken, by CloudEvent id and resource version. A redelivered
//!   event (same id, same version) is dropped. The version is part of the key because the
//!   server resends a stored spec event with its id, and a store written behind the server's
//!   back (or a source reusing ids) may keep an id across versions: a new version is never a
//!   redelivery.
//! - [`Tombstones`]: the works deleted and dropped, by resource id and incarnation (the
//!   bundle's `metadata.creationTimestamp`, which the server stamps). A spec of a buried
//!   incarnation that is not a deletion is late: the server never takes a deletion back. A
//!   source that re-creates the bundle under the same id makes a new incarnation, which is a
//!   new work. A spec without the stamp (a server that does not send it) is never dropped.
//!
//! Both memories are bounded ([`CAPACITY`] entries each, the oldest forgotten first) and last
//! as long as the agent process; what they miss is caught by the version rules.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use serde_json::{Map, Value};

/// How many entries each memory keeps.
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

/// The incarnation of a bundle: its `metadata.creationTimestamp` when it is a non-empty string.
pub(crate) fn incarnation(metadata: Option<&Map<String, Value>>) -> Option<&str> {
    metadata?.get("creationTimestamp")?.as_str().filter(|s| !s.is_empty())
}

/// The works deleted and dropped lately: resource id → incarnation.
#[derive(Debug, Default)]
pub(crate) struct Tombstones {
    inner: Mutex<(HashMap<String, String>, VecDeque<String>)>,
}

impl Tombstones {
    /// Notes that work `id` of `incarnation` was deleted and dropped.
    pub(crate) fn bury(&self, id: &str, incarnation: &str) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        if map.insert(id.to_owned(), incarnation.to_owned()).is_none() {
            order.push_back(id.to_owned());
        }
        if order.len() > CAPACITY
            && let Some(old) = order.pop_front()
        {
            map.remove(&old);
        }
    }

    /// True when work `id` of `incarnation` was deleted and dropped: a spec of it is late.
    pub(crate) fn buried(&self, id: &str, incarnation: &str) -> bool {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.get(id).is_some_and(|i| i == incarnation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buried_incarnation_stays_buried_and_a_new_one_is_alive() {
        let graves = Tombstones::default();
        assert!(!graves.buried("a", "t1"));
        graves.bury("a", "t1");
        assert!(graves.buried("a", "t1"));
        assert!(!graves.buried("a", "t2"), "a re-created bundle is a new work");
        graves.bury("a", "t2");
        assert!(!graves.buried("a", "t1"), "the id's latest incarnation is the one remembered");
        for i in 0..CAPACITY {
            graves.bury(&i.to_string(), "t");
        }
        assert!(!graves.buried("a", "t2"), "forgotten after CAPACITY newer ids");
    }

    #[test]
    fn only_a_non_empty_string_is_an_incarnation() {
        let meta = |v: Value| v.as_object().cloned();
        assert_eq!(incarnation(meta(serde_json::json!({"creationTimestamp": "t"})).as_ref()), Some("t"));
        assert_eq!(incarnation(meta(serde_json::json!({"creationTimestamp": null})).as_ref()), None);
        assert_eq!(incarnation(meta(serde_json::json!({"creationTimestamp": ""})).as_ref()), None);
        assert_eq!(incarnation(None), None);
    }

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
