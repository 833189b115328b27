//! A work queue with the Kubernetes workqueue guarantees: an id is queued at most once, one
//! id is processed by at most one worker at a time, and an id added while being processed is
//! processed again afterwards.
//!
//! Ids come in two priorities. Spec changes and retries are *urgent*; the periodic status sync
//! and re-apply of every work are *background* and are taken only when no urgent id waits, so
//! a sync of thousands of works never delays a new spec (the Go agent runs them as separate
//! controllers with their own queues). An urgent add of an id waiting in the background
//! promotes it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// The priority of a queued id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Priority {
    Background,
    Urgent,
}

#[derive(Debug, Default)]
struct State {
    urgent: VecDeque<String>,
    /// May hold ids since promoted to `urgent` or already taken: skipped when popped.
    background: VecDeque<String>,
    queued: HashMap<String, Priority>,
    running: HashSet<String>,
    /// Ids added while running, with the highest priority they were added at.
    dirty: HashMap<String, Priority>,
}

impl State {
    fn pop(&mut self) -> Option<String> {
        if let Some(id) = self.urgent.pop_front() {
            self.queued.remove(&id);
            return Some(id);
        }
        while let Some(id) = self.background.pop_front() {
            if self.queued.get(&id) == Some(&Priority::Background) {
                self.queued.remove(&id);
                return Some(id);
            }
        }
        None
    }

    fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }
}

/// The reconcile queue of work ids.
#[derive(Debug, Default)]
pub(crate) struct WorkQueue {
    state: Mutex<State>,
    notify: Notify,
}

impl WorkQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `id` as urgent (a spec change, a retry) unless already queued as urgent;
    /// marks it for another round when running.
    pub(crate) fn add(&self, id: &str) {
        self.push(id, Priority::Urgent);
    }

    /// Queues `id` behind every urgent id (the periodic status sync and re-apply) unless
    /// already queued; marks it for another round when running.
    pub(crate) fn add_background(&self, id: &str) {
        self.push(id, Priority::Background);
    }

    fn push(&self, id: &str, priority: Priority) {
        let mut st = self.lock();
        if st.running.contains(id) {
            let dirty = st.dirty.entry(id.to_owned()).or_insert(priority);
            *dirty = (*dirty).max(priority);
            return;
        }
        if st.queued.get(id).is_some_and(|&queued| queued >= priority) {
            return;
        }
        st.queued.insert(id.to_owned(), priority);
        match priority {
            Priority::Urgent => st.urgent.push_back(id.to_owned()),
            Priority::Background => st.background.push_back(id.to_owned()),
        }
        drop(st);
        self.notify.notify_one();
    }

    /// Waits for the next id (urgent ones first) and marks it running.
    pub(crate) async fn get(&self) -> String {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.lock();
                if let Some(id) = st.pop() {
                    st.running.insert(id.clone());
                    let more = st.has_queued();
                    drop(st);
                    if more {
                        self.notify.notify_one();
                    }
                    return id;
                }
            }
            notified.await;
        }
    }

    /// Marks `id` done; re-queues it when it was added while running.
    pub(crate) fn done(&self, id: &str) {
        let again = {
            let mut st = self.lock();
            st.running.remove(id);
            st.dirty.remove(id)
        };
        if let Some(priority) = again {
            self.push(id, priority);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedupes_and_requeues_dirty() {
        let q = WorkQueue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.get().await, "a");
        q.add("a"); // while running
        assert_eq!(q.get().await, "b");
        q.done("b");
        q.done("a");
        assert_eq!(q.get().await, "a");
        q.done("a");
        assert!(!q.lock().has_queued());
    }

    /// Urgent ids are taken before background ones; an urgent add promotes a waiting
    /// background id (taken once), and a background add never demotes an urgent one.
    #[tokio::test]
    async fn urgent_ids_overtake_background_ones() {
        let q = WorkQueue::default();
        for id in ["s1", "s2", "s3"] {
            q.add_background(id);
        }
        q.add("new");
        q.add("s2");
        q.add_background("new");
        assert_eq!(q.get().await, "new");
        assert_eq!(q.get().await, "s2");
        assert_eq!(q.get().await, "s1");
        assert_eq!(q.get().await, "s3");
        assert!(!q.lock().has_queued(), "s2 is not taken twice");
        // Added while running: the highest priority wins for the next round.
        q.add_background("s1");
        q.add("s1");
        q.add_background("x");
        q.done("s1");
        assert_eq!(q.get().await, "s1");
        assert_eq!(q.get().await, "x");
    }
}
