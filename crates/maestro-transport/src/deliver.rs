//! Sequential delivery with redelivery on handler failure: the part of the contract every
//! backend shares. A backend that receives events in order feeds them to [`deliver`] one at a
//! time; a [`HandlerError::Retryable`] failure is retried with exponential backoff
//! ([`DELIVERY_BACKOFF`], the project's retry model in [`crate::retry`]) before the next event
//! is looked at, so per-consumer order is kept.

use std::time::Duration;

use maestro_api::{AttributesReader, Event};
use tokio::sync::mpsc;

use crate::retry::{CancellationToken, ExponentialBuilder, delays, exponential};
use crate::{DynHandler, HandlerError};

/// The redelivery backoff of a handler's temporary failures: 50 ms doubling to 5 s (each
/// stretched by up to 2× jitter), never giving up.
pub const DELIVERY_BACKOFF: ExponentialBuilder = exponential(Duration::from_millis(50), MAX_DELIVERY_DELAY);

/// The longest wait between two deliveries of one event, before jitter: 5 s.
const MAX_DELIVERY_DELAY: Duration = Duration::from_secs(5);

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler accepted the event.
    Acked,
    /// The handler rejected it permanently; it was dropped.
    Dropped(String),
    /// The transport closed (`cancel` was cancelled) before the handler accepted it. An attempt
    /// in progress is abandoned, as if the process had stopped: the event is not acknowledged,
    /// so the broker delivers it again.
    Closed,
}

/// Delivers `event` to `handler`, retrying retryable failures with `backoff` until it is
/// accepted, permanently rejected, or `cancel` is cancelled (also during a wait between
/// attempts).
pub async fn deliver(
    handler: &DynHandler,
    event: Event,
    backoff: ExponentialBuilder,
    cancel: &CancellationToken,
    backend: &'static str,
) -> Outcome {
    let mut delays = delays(backoff, MAX_DELIVERY_DELAY);
    let attempts = async {
        loop {
            match handler.handle(&event).await {
                Err(HandlerError::Retryable(reason)) => {
                    let delay = delays.next().unwrap_or(MAX_DELIVERY_DELAY);
                    tracing::debug!(backend, id = event.id(), %reason, ?delay, "handler failed; redelivering");
                    tokio::time::sleep(delay).await;
                }
                done => return done,
            }
        }
    };
    match cancel.run_until_cancelled(attempts).await {
        None => Outcome::Closed,
        Some(Ok(())) => Outcome::Acked,
        Some(Err(HandlerError::Permanent(reason) | HandlerError::Retryable(reason))) => {
            tracing::warn!(backend, id = event.id(), ty = event.ty(), %reason, "event dropped");
            Outcome::Dropped(reason)
        }
    }
}

/// Spawns a task that feeds the events of `rx`, in order, to `handler` through [`deliver`].
/// The task ends when `rx` closes or `cancel` is cancelled.
pub fn spawn_sequential(
    mut rx: mpsc::UnboundedReceiver<Event>,
    handler: DynHandler,
    cancel: CancellationToken,
    backend: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = cancel.run_until_cancelled(rx.recv()).await.flatten() {
            if deliver(&handler, event, DELIVERY_BACKOFF, &cancel, backend).await == Outcome::Closed {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use maestro_api::codec::SpecEventBuilder;

    use super::*;
    use crate::EventHandler;

    /// Fails every event with a temporary error, counting the attempts.
    #[derive(Default)]
    struct AlwaysBusy(AtomicU32);

    #[async_trait]
    impl EventHandler for AlwaysBusy {
        async fn handle(&self, _event: &Event) -> Result<(), HandlerError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(HandlerError::Retryable("busy".into()))
        }
    }

    fn event() -> Event {
        SpecEventBuilder::new("source", "r1", 1, "cluster1").build()
    }

    /// Cancelling ends a delivery waiting between attempts at once, not when the (here 1 h)
    /// backoff delay runs out.
    #[tokio::test]
    async fn cancel_ends_the_wait_between_attempts() {
        let busy = Arc::new(AlwaysBusy::default());
        let handler: DynHandler = busy.clone();
        let cancel = CancellationToken::new();
        let hour = Duration::from_secs(3600);
        let delivery = tokio::spawn({
            let cancel = cancel.clone();
            async move { deliver(&handler, event(), exponential(hour, hour), &cancel, "test").await }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while busy.0.load(Ordering::SeqCst) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the handler was never called");
            tokio::task::yield_now().await;
        }
        cancel.cancel();
        let outcome = tokio::time::timeout(Duration::from_secs(10), delivery).await;
        assert_eq!(outcome.expect("deliver ended on cancel").expect("task"), Outcome::Closed);
        assert_eq!(busy.0.load(Ordering::SeqCst), 1, "no attempt after the cancel");
    }
}
