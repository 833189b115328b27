//! A work queue with the Kubernetes workqueue guarantees: an id is queued at most once, one
//! id is processed by at most one worker at a time, and an id added while being processed is
//! processed again afterwards.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<String>,
    queued: HashSet<String>,
    running: HashSet<String>,
    dirty: HashSet<String>,
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

    /// Queues `id` unless already queued; marks it for another round when running.
    pub(crate) fn add(&self, id: &str) {
        let mut st = self.lock();
        if st.running.contains(id) {
            st.dirty.insert(id.to_owned());
            return;
        }
        if st.queued.insert(id.to_owned()) {
            st.queue.push_back(id.to_owned());
            drop(st);
            self.notify.notify_one();
        }
    }

    /// Waits for the next id and marks it running.
    pub(crate) async fn get(&self) -> String {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.lock();
                if let Some(id) = st.queue.pop_front() {
                    st.queued.remove(&id);
                    st.running.insert(id.clone());
                    let more = !st.queue.is_empty();
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
        if again {
            self.add(id);
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
        assert!(q.lock().queue.is_empty());
    }
}
