//! Group commit: concurrent writes of one kind (resource creations, agent statuses) queue on a
//! writer task that applies everything queued in ONE transaction, so a burst of N writes costs
//! one commit (one WAL flush with durable settings) instead of N.
//!
//! Each caller still gets its own answer, and only after the commit that holds its write: the
//! same contract as one transaction per call. A group never waits to fill up: the writer takes
//! whatever is queued when it becomes free (at most [`MAX_GROUP`]), so an idle server commits a
//! lone write at once and a loaded one batches more. When a group's transaction fails as a
//! whole, every write of it is retried in a transaction of its own, so one bad write (e.g. a
//! payload the database refuses) fails alone and cannot fail or lose its neighbours.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{Result, StoreError};

/// Most writes applied in one transaction.
pub(crate) const MAX_GROUP: usize = 256;

/// The future of one group's transaction: one answer per write, in order, or the error that
/// failed the whole transaction (nothing of it committed).
pub(crate) type GroupFuture<Out> = Pin<Box<dyn Future<Output = Result<Vec<Result<Out>>>> + Send>>;

/// Applies a group of writes in one transaction.
pub(crate) type GroupFn<Op, Out> = Arc<dyn Fn(Arc<Vec<Op>>) -> GroupFuture<Out> + Send + Sync>;

type Job<Op, Out> = (Op, oneshot::Sender<Result<Out>>);

/// A [`GroupFn`] running `apply(ctx, group)`, with `ctx` (e.g. a pool and the commit signals)
/// cloned per group.
pub(crate) fn group_fn<C, Op, Out, F, Fut>(ctx: C, apply: F) -> GroupFn<Op, Out>
where
    C: Clone + Send + Sync + 'static,
    F: Fn(C, Arc<Vec<Op>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<Result<Out>>>> + Send + 'static,
{
    Arc::new(move |ops| Box::pin(apply(ctx.clone(), ops)))
}

/// The queue in front of a writer task. Dropping every handle stops the task.
pub(crate) struct GroupCommit<Op, Out> {
    tx: mpsc::UnboundedSender<Job<Op, Out>>,
}

impl<Op, Out> std::fmt::Debug for GroupCommit<Op, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<Op: Send + Sync + 'static, Out: Send + 'static> GroupCommit<Op, Out> {
    /// Spawns the writer task (on the current Tokio runtime) running `apply` per group.
    pub(crate) fn start(apply: GroupFn<Op, Out>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job<Op, Out>>();
        tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(MAX_GROUP);
            while rx.recv_many(&mut jobs, MAX_GROUP).await > 0 {
                let (ops, replies): (Vec<Op>, Vec<_>) = jobs.drain(..).unzip();
                run_group(&apply, ops, replies).await;
            }
        });
        GroupCommit { tx }
    }

    /// Queues `op` and waits for its answer (after its transaction ended).
    ///
    /// # Errors
    /// The write's own error; [`StoreError::Invalid`] if the writer task is gone (the runtime
    /// that opened the store has shut down).
    pub(crate) async fn submit(&self, op: Op) -> Result<Out> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((op, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Invalid("the store's writer task has stopped (its runtime shut down)".to_owned())
}

async fn run_group<Op, Out>(
    apply: &GroupFn<Op, Out>,
    ops: Vec<Op>,
    replies: Vec<oneshot::Sender<Result<Out>>>,
) {
    let n = ops.len();
    let ops = Arc::new(ops);
    if n > 1 {
        match apply(ops.clone()).await {
            Ok(outs) if outs.len() == n => {
                for (reply, out) in replies.into_iter().zip(outs) {
                    let _ = reply.send(out);
                }
                return;
            }
            Ok(outs) => tracing::error!(
                writes = n,
                answers = outs.len(),
                "group answer count mismatch; retrying one by one"
            ),
            Err(e) => {
                tracing::debug!(writes = n, error = %e, "group transaction failed; retrying one by one")
            }
        }
    }
    // One transaction per write: `apply` of a group of one. Reclaim the ops (the group future
    // has been dropped, so this Arc is the only one left).
    let ops = Arc::try_unwrap(ops).unwrap_or_else(|_| Vec::new());
    if ops.len() != n {
        for reply in replies {
            let _ = reply.send(Err(StoreError::Invalid("group commit lost its writes".to_owned())));
        }
        return;
    }
    for (op, reply) in ops.into_iter().zip(replies) {
        let out = match apply(Arc::new(vec![op])).await {
            Ok(mut outs) if outs.len() == 1 => outs.pop().unwrap_or_else(|| Err(mismatch())),
            Ok(_) => Err(mismatch()),
            Err(e) => Err(e),
        };
        let _ = reply.send(out);
    }
}

fn mismatch() -> StoreError {
    StoreError::Invalid("a write got no answer from its transaction".to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A group fails as a whole when it holds a negative number; single writes of negatives
    /// fail alone. Counts transactions.
    fn doubling(transactions: Arc<AtomicUsize>) -> GroupFn<i64, i64> {
        Arc::new(move |ops: Arc<Vec<i64>>| {
            let transactions = transactions.clone();
            Box::pin(async move {
                transactions.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                if ops.iter().any(|v| *v < 0) {
                    return Err(StoreError::Invalid(format!("negative in {ops:?}")));
                }
                Ok(ops.iter().map(|v| Ok(v * 2)).collect())
            })
        })
    }

    #[tokio::test]
    async fn concurrent_writes_share_transactions_and_get_their_own_answers() {
        let transactions = Arc::new(AtomicUsize::new(0));
        let group = Arc::new(GroupCommit::start(doubling(transactions.clone())));
        let calls = (0..100i64).map(|v| {
            let group = group.clone();
            tokio::spawn(async move { group.submit(v).await })
        });
        for (v, call) in (0..100i64).zip(calls.collect::<Vec<_>>()) {
            assert_eq!(call.await.expect("join").expect("write"), v * 2);
        }
        assert!(transactions.load(Ordering::SeqCst) < 100, "no write shared a transaction");
    }

    #[tokio::test]
    async fn a_failing_write_fails_alone() {
        let transactions = Arc::new(AtomicUsize::new(0));
        let group = Arc::new(GroupCommit::start(doubling(transactions)));
        let calls: Vec<_> = [1i64, -1, 3]
            .into_iter()
            .map(|v| {
                let group = group.clone();
                tokio::spawn(async move { group.submit(v).await })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.expect("join"));
        }
        assert_eq!(answers[0].as_ref().expect("1 is written"), &2);
        assert!(answers[1].as_ref().is_err_and(|e| e.to_string().contains("negative in [-1]")));
        assert_eq!(answers[2].as_ref().expect("3 is written"), &6);
    }
}
