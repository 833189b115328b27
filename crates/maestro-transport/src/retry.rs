//! The project's one retry and cancellation model (docs/architecture.md, "Tasks, shutdown and
//! retries"): every retry waits by an exponential [`backon`] backoff built with
//! [`exponential`], and every long-lived task and every wait between attempts ends when its
//! [`CancellationToken`] is cancelled. Long-lived tasks are spawned on a
//! [`tokio_util::task::TaskTracker`] by their owner so shutdown can wait for them to drain.

use std::time::Duration;

pub use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder, Retryable};
pub use tokio_util::sync::{CancellationToken, DropGuard};
pub use tokio_util::task::TaskTracker;

/// An exponential backoff that never gives up: the first delay `initial`, doubled per attempt
/// up to `max`, each delay then stretched by a random factor in `[1, 2)` (backon's jitter) so
/// that many clients cut off together do not come back together. Usable in `const` items.
pub const fn exponential(initial: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(initial)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

/// Sleeps for `delay` unless `cancel` is cancelled first. Returns `true` when the whole delay
/// passed, `false` when cancelled (at once if it already was).
pub async fn pause(delay: Duration, cancel: &CancellationToken) -> bool {
    cancel.run_until_cancelled(tokio::time::sleep(delay)).await.is_some()
}

/// The delays of `backoff`, endless: its iterator ends only with a `with_max_times` limit, and
/// then the last delay repeats (`max` when nothing was drawn yet).
pub fn delays(backoff: ExponentialBuilder, max: Duration) -> impl Iterator<Item = Duration> {
    let mut last = max;
    let mut inner = backoff.build();
    std::iter::from_fn(move || {
        last = inner.next().unwrap_or(last);
        Some(last)
    })
}

/// The delay before retry `n` (0-based) of `backoff`, for a retry counted elsewhere (e.g. per
/// work); `n` beyond 32 counts as 32 (the delay has long reached `max` by then).
pub fn nth_delay(backoff: ExponentialBuilder, n: u32, max: Duration) -> Duration {
    delays(backoff, max).nth(n.min(32) as usize).unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delays double from `initial` and stay within `[delay, 2 × delay)` of the capped
    /// exponential (the jitter only stretches).
    #[test]
    fn exponential_doubles_caps_and_jitters_upward() {
        let (initial, max) = (Duration::from_millis(10), Duration::from_millis(70));
        let got: Vec<Duration> = delays(exponential(initial, max), max).take(8).collect();
        let base = [10, 20, 40, 70, 70, 70, 70, 70].map(Duration::from_millis);
        for (d, b) in got.iter().zip(base) {
            assert!(*d >= b && *d < b * 2, "delay {d:?} outside [{b:?}, {:?})", b * 2);
        }
    }

    /// A cancelled token ends a pause at once; an uncancelled one lets it run out.
    #[tokio::test]
    async fn pause_ends_on_cancel() {
        let cancel = CancellationToken::new();
        assert!(pause(Duration::from_millis(5), &cancel).await);
        let waiter = tokio::spawn({
            let cancel = cancel.clone();
            async move { pause(Duration::from_secs(3600), &cancel).await }
        });
        tokio::task::yield_now().await;
        cancel.cancel();
        assert!(!waiter.await.expect("pause task"), "a cancelled pause reports false");
        assert!(!pause(Duration::from_secs(3600), &cancel).await, "already cancelled");
    }
}
