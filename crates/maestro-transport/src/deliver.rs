//! Sequential delivery with redelivery on handler failure: the part of the contract every
//! backend shares. A backend that receives events in order feeds them to [`deliver`] one at a
//! time; a [`HandlerError::Retryable`] failure is retried with exponential backoff
//! ([`Backoff`]) before the next event is looked at, so per-consumer order is kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use maestro_api::{AttributesReader, Event};
use tokio::sync::mpsc;

use crate::{DynHandler, HandlerError};

/// Exponential backoff: `initial`, doubled per attempt, capped at `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Upper bound.
    pub max: Duration,
}

impl Default for Backoff {
    /// 50 ms doubling to 5 s.
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(50), max: Duration::from_secs(5) }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (0-based retry count).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// [`Backoff::delay`] with jitter: a random delay in `[delay/2, delay]`, so that many
    /// clients cut off together do not reconnect together.
    pub fn jittered(&self, attempt: u32) -> Duration {
        self.delay(attempt).mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler accepted the event.
    Acked,
    /// The handler rejected it permanently; it was dropped.
    Dropped(String),
    /// The transport closed before the handler accepted it.
    Closed,
}

/// Delivers `event` to `handler`, retrying retryable failures with `backoff` until it is
/// accepted, permanently rejected, or `closed` becomes true.
pub async fn deliver(
    handler: &DynHandler,
    event: Event,
    backoff: Backoff,
    closed: &AtomicBool,
    backend: &'static str,
) -> Outcome {
    let mut attempt = 0u32;
    loop {
        if closed.load(Ordering::Acquire) {
            return Outcome::Closed;
        }
        match handler.handle(event.clone()).await {
            Ok(()) => return Outcome::Acked,
            Err(HandlerError::Permanent(reason)) => {
                tracing::warn!(backend, id = event.id(), ty = event.ty(), %reason, "event dropped");
                return Outcome::Dropped(reason);
            }
            Err(HandlerError::Retryable(reason)) => {
                let delay = backoff.delay(attempt);
                tracing::debug!(backend, id = event.id(), %reason, ?delay, attempt, "handler failed; redelivering");
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Spawns a task that feeds the events of `rx`, in order, to `handler` through [`deliver`].
/// The task ends when `rx` closes or `closed` becomes true.
pub fn spawn_sequential(
    mut rx: mpsc::UnboundedReceiver<Event>,
    handler: DynHandler,
    closed: Arc<AtomicBool>,
    backend: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if deliver(&handler, event, Backoff::default(), &closed, backend).await == Outcome::Closed {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(70) };
        assert_eq!(b.delay(0), Duration::from_millis(10));
        assert_eq!(b.delay(2), Duration::from_millis(40));
        assert_eq!(b.delay(3), Duration::from_millis(70));
        assert_eq!(b.delay(40), Duration::from_millis(70));
    }
}
