//! A Subscribe stream of the hosted broker (docs/protocol.md §7.1.3): the subscriber's queue
//! with heartbeats in between, polled by hyper's task for the HTTP/2 stream itself. A stream
//! has no task of its own: one task and its state less per connected agent (~1.5 KB of the
//! server's heap each; docs/benchmarks.md).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use maestro_api::{grpc, pb};
use tokio::time::{Interval, MissedTickBehavior};
use tonic::Status;

use crate::queue::QueueRx;
use crate::server::{Queued, Shared};

/// The body of a Subscribe response: the events queued for the subscriber, in order, and a
/// heartbeat event whenever the heartbeat interval passes while the queue is empty. It ends
/// once the broker dropped the subscriber's queue and the events already queued are sent
/// (the subscriber was removed: its buffer stayed full, the broker paused or closed). When the
/// stream is dropped first (the agent went away, the connection was cut), the subscriber
/// leaves the broker's registry.
pub(crate) struct SubscribeStream {
    rx: QueueRx,
    heartbeat: Option<Interval>,
    /// Held for its `Drop`.
    _leave: Leave,
}

impl SubscribeStream {
    /// The stream of subscriber `id` of `shared`, reading `rx`.
    pub(crate) fn new(shared: Arc<Shared>, id: u64, rx: QueueRx) -> Self {
        let heartbeat = shared.config.heartbeat().map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        SubscribeStream { rx, heartbeat, _leave: Leave { shared, id } }
    }
}

impl SubscribeStream {
    /// The next event to send: a queued one, else a heartbeat when one is due; `None` once
    /// the queue is dropped and drained.
    pub(crate) fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Queued>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(event) => return Poll::Ready(event),
            Poll::Pending => {}
        }
        match self.heartbeat.as_mut().map(|ticker| ticker.poll_tick(cx)) {
            Some(Poll::Ready(_)) => Poll::Ready(Some(Arc::new(grpc::heartbeat()))),
            _ => Poll::Pending,
        }
    }
}

impl Stream for SubscribeStream {
    type Item = Result<pb::CloudEvent, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_event(cx).map(|event| event.map(|event| Ok(take(event))))
    }
}

/// Takes an event off a Subscribe queue (copying it only when other streams still share it).
fn take(event: Queued) -> pb::CloudEvent {
    Arc::try_unwrap(event).unwrap_or_else(|shared| (*shared).clone())
}

/// Removes subscriber `id` from the registry when its stream is dropped (a no-op when the
/// broker removed it already).
struct Leave {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.shared.remove(self.id, "client went away");
    }
}
