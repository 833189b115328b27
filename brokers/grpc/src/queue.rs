//! A Subscribe stream's queue: the events the broker routed to one subscriber, bounded, in
//! order. It replaces a `tokio::sync::mpsc` channel, which allocates ~0.8 KB per channel when it
//! is created (its cache-padded state and a first block of 32 slots): with 10,000 idle agents
//! that is ~8 MiB for queues that are almost always empty. This one is one allocation of ~130
//! bytes; its buffer is allocated at the first event (docs/benchmarks.md, "Issue 20 A/B").
//!
//! Same semantics as the bounded channel it replaces: senders wait for room in arrival order
//! (a FIFO semaphore) and fail with [`SendError::Closed`] once either side is gone; the
//! receiver gets the queued events, then the end once the broker dropped its [`QueueTx`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::server::Queued;

/// Buffers grown past this many slots by a burst are released once the queue is empty again.
const KEPT_SLOTS: usize = 16;

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendError {
    /// No room within the timeout: the subscriber does not keep up.
    Timeout,
    /// The stream is gone or the broker removed the subscriber.
    Closed,
}

/// The state shared by both ends.
pub(crate) struct Queue {
    state: Mutex<State>,
    /// One permit per free slot; closed when either end goes away.
    room: Semaphore,
}

#[derive(Default)]
struct State {
    events: VecDeque<Queued>,
    /// The broker dropped the subscriber's [`QueueTx`]: no more events; the stream ends once
    /// the queued ones are taken.
    closed: bool,
    /// The stream (the receiver) was dropped.
    gone: bool,
    /// The stream's task, waiting for an event.
    waker: Option<Waker>,
}

/// A queue of `capacity` events (at least 1): the broker's end and the stream's end.
pub(crate) fn queue(capacity: usize) -> (QueueTx, QueueRx) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State::default()),
        room: Semaphore::new(capacity.clamp(1, Semaphore::MAX_PERMITS)),
    });
    (QueueTx(queue.clone()), QueueRx(queue))
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`, waiting up to `timeout` for room (in arrival order with other senders).
    pub(crate) async fn send_timeout(&self, item: Queued, timeout: Duration) -> Result<(), SendError> {
        let permit = match self.room.try_acquire() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(SendError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                match tokio::time::timeout(timeout, self.room.acquire()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Err(SendError::Closed),
                    Err(_) => return Err(SendError::Timeout),
                }
            }
        };
        let waker = {
            let mut st = self.lock();
            if st.closed || st.gone {
                return Err(SendError::Closed);
            }
            // The slot is now the event's; the receiver gives it back when it takes it.
            permit.forget();
            st.events.push_back(item);
            st.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Ends the queue from `side` (marks it, stops waiting senders, wakes the receiver).
    fn close(&self, receiver_gone: bool) {
        let (waker, dropped) = {
            let mut st = self.lock();
            if receiver_gone {
                st.gone = true;
            } else {
                st.closed = true;
            }
            // The stream will never take them: free them now.
            let dropped = if receiver_gone { std::mem::take(&mut st.events) } else { VecDeque::new() };
            (st.waker.take(), dropped)
        };
        self.room.close();
        drop(dropped);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The broker's end (held in the subscriber's registry entry); dropping it ends the stream
/// after the events already queued.
pub(crate) struct QueueTx(Arc<Queue>);

impl QueueTx {
    /// A handle to send through, kept while sending outside the registry's lock.
    pub(crate) fn queue(&self) -> Arc<Queue> {
        self.0.clone()
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        self.0.close(false);
    }
}

/// The stream's end; dropping it makes every send fail with [`SendError::Closed`].
pub(crate) struct QueueRx(Arc<Queue>);

impl QueueRx {
    /// The next event; `None` once the broker closed the queue and every event was taken.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Queued>> {
        let mut st = self.0.lock();
        if let Some(event) = st.events.pop_front() {
            if st.events.is_empty() && st.events.capacity() > KEPT_SLOTS {
                st.events = VecDeque::new();
            }
            drop(st);
            self.0.room.add_permits(1);
            return Poll::Ready(Some(event));
        }
        if st.closed {
            return Poll::Ready(None);
        }
        match &mut st.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        self.0.close(true);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::future::{Future, poll_fn};
    use std::pin::pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Wake;

    use maestro_api::pb;

    use super::*;

    fn event(id: &str) -> Queued {
        Arc::new(pb::CloudEvent { id: id.into(), ..Default::default() })
    }

    const SHORT: Duration = Duration::from_millis(50);
    const LONG: Duration = Duration::from_secs(5);

    /// Polls `f` once without waiting (a sender queues as a waiter for room this way).
    fn poll_once<T>(f: std::pin::Pin<&mut impl Future<Output = T>>) -> Poll<T> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    async fn recv(rx: &mut QueueRx) -> Option<String> {
        poll_fn(|cx| rx.poll_recv(cx)).await.map(|e| e.id.clone())
    }

    #[tokio::test]
    async fn delivers_in_order_then_ends_when_the_sender_is_dropped() {
        let (tx, mut rx) = queue(4);
        let q = tx.queue();
        for id in ["a", "b", "c"] {
            q.send_timeout(event(id), SHORT).await.unwrap();
        }
        drop(tx);
        assert_eq!(q.send_timeout(event("late"), SHORT).await, Err(SendError::Closed));
        let mut got = Vec::new();
        while let Some(id) = recv(&mut rx).await {
            got.push(id);
        }
        assert_eq!(got, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_full_queue_times_out_and_room_is_given_back_in_order() {
        let (tx, mut rx) = queue(1);
        let q = tx.queue();
        q.send_timeout(event("a"), SHORT).await.unwrap();
        assert_eq!(q.send_timeout(event("b"), SHORT).await, Err(SendError::Timeout));
        let mut first = pin!(q.send_timeout(event("b"), LONG));
        let mut second = pin!(q.send_timeout(event("c"), LONG));
        assert!(poll_once(first.as_mut()).is_pending(), "no room: the first sender waits");
        assert!(poll_once(second.as_mut()).is_pending(), "no room: the second sender waits behind it");
        assert_eq!(recv(&mut rx).await.as_deref(), Some("a"));
        assert!(poll_once(second.as_mut()).is_pending(), "the freed slot is the first sender's");
        assert_eq!(poll_once(first.as_mut()), Poll::Ready(Ok(())));
        assert_eq!(recv(&mut rx).await.as_deref(), Some("b"));
        assert_eq!(poll_once(second.as_mut()), Poll::Ready(Ok(())));
        assert_eq!(recv(&mut rx).await.as_deref(), Some("c"));
    }

    #[tokio::test]
    async fn a_dropped_receiver_fails_waiting_and_later_senders() {
        let (tx, rx) = queue(1);
        let q = tx.queue();
        q.send_timeout(event("a"), SHORT).await.unwrap();
        let mut waiting = pin!(q.send_timeout(event("b"), LONG));
        assert!(poll_once(waiting.as_mut()).is_pending());
        drop(rx);
        assert_eq!(poll_once(waiting.as_mut()), Poll::Ready(Err(SendError::Closed)));
        assert_eq!(q.send_timeout(event("c"), SHORT).await, Err(SendError::Closed));
        assert!(q.lock().events.is_empty(), "queued events are freed with the stream");
    }

    /// A waker that records being woken.
    #[derive(Default)]
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_receiver_is_woken_by_a_send() {
        let (tx, mut rx) = queue(2);
        let q = tx.queue();
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        assert!(rx.poll_recv(&mut Context::from_waker(&waker)).is_pending());
        q.send_timeout(event("a"), SHORT).await.unwrap();
        assert!(flag.0.load(Ordering::SeqCst), "the send woke the waiting receiver");
        assert_eq!(recv(&mut rx).await.as_deref(), Some("a"));
    }
}
