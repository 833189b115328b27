//! The long-lived tasks of one endpoint ([`Tasks`]): spawned on a [`TaskTracker`] the endpoint
//! owns, so that its `close` can cancel them (the project's retry and cancellation model,
//! [`crate::retry`]) and then wait, bounded by [`DRAIN_TIMEOUT`], until they ended.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::retry::TaskTracker;
use tokio::task::JoinHandle;

/// How long `close` waits for an endpoint's tasks to end once it cancelled them: 5 s.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// The tracker of the endpoint the running task belongs to: `close` called from one of the
    /// endpoint's own tasks (a handler closing its transport) must not wait for itself.
    static OWNER: TaskTracker;
}

/// How many tasks of each kind run, by the name given to [`Tasks::spawn`].
type Running = Arc<Mutex<BTreeMap<&'static str, usize>>>;

fn lock(running: &Running) -> MutexGuard<'_, BTreeMap<&'static str, usize>> {
    running.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts one task of kind `what` while it lives (also when it is dropped unfinished).
struct Counted {
    what: &'static str,
    running: Running,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut running = lock(&self.running);
        if let Some(n) = running.get_mut(self.what) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(self.what);
            }
        }
    }
}

/// The tasks of one endpoint; clones share them.
#[derive(Debug, Default, Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    running: Running,
}

impl Tasks {
    /// Spawns `task`, named `what` in the warning of [`Tasks::drain`]. The task must end by
    /// itself once the endpoint's cancellation token is cancelled.
    pub fn spawn<F>(&self, what: &'static str, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        *lock(&self.running).entry(what).or_default() += 1;
        let counted = Counted { what, running: self.running.clone() };
        let task = async move {
            let _counted = counted;
            task.await
        };
        self.tracker.spawn(OWNER.scope(self.tracker.clone(), task))
    }

    /// Waits until every task ended, at most [`DRAIN_TIMEOUT`]; logs a warning naming the
    /// kinds of task still running after that. Call it after cancelling the tasks' token.
    /// Returns at once when called from one of these tasks (it would wait for itself).
    pub async fn drain(&self, backend: &'static str, owner: &str) {
        self.tracker.close();
        if OWNER.try_with(|t| TaskTracker::ptr_eq(t, &self.tracker)).unwrap_or(false) {
            tracing::debug!(backend, owner, "closed from one of its own tasks; not waiting for them");
            return;
        }
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tracker.wait()).await.is_err() {
            let unfinished = lock(&self.running)
                .iter()
                .map(|(what, n)| format!("{what} ({n})"))
                .collect::<Vec<_>>()
                .join(", ");
            tracing::warn!(backend, owner, %unfinished, "tasks did not finish within {DRAIN_TIMEOUT:?} of close");
        }
    }

    /// The number of tasks still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task runs.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}
