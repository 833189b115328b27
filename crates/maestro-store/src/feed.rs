//! The sending side of a store's feeds ([`crate::Store::status_feed`],
//! [`crate::Store::spec_feed`]): what a commit wrote, handed to the in-process reader (the
//! status fan-out, the spec dispatcher) so it need not read it back.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use crate::FEED_CAPACITY;

/// A bounded single-reader channel of committed batches, and whether its reader took it.
#[derive(Debug)]
pub(crate) struct Feed<T> {
    tx: mpsc::Sender<Vec<T>>,
    rx: Mutex<Option<mpsc::Receiver<Vec<T>>>>,
    taken: AtomicBool,
}

impl<T> Default for Feed<T> {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        Feed { tx, rx: Mutex::new(Some(rx)), taken: AtomicBool::new(false) }
    }
}

impl<T> Feed<T> {
    /// The receiver, on the first call only.
    pub(crate) fn take(&self) -> Option<mpsc::Receiver<Vec<T>>> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if rx.is_some() {
            self.taken.store(true, Ordering::Release);
        }
        rx
    }

    /// True while a reader holds the feed: only then are its batches worth building (a store
    /// nobody reads the feeds of, e.g. the benchmark's store alone, does no extra work).
    pub(crate) fn wanted(&self) -> bool {
        self.taken.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    /// Hands over one committed batch; true when the reader will get it, false when it was
    /// dropped because the reader is [`FEED_CAPACITY`] batches behind or gone (the reader
    /// then finds the rows in the database).
    pub(crate) fn send(&self, batch: Vec<T>) -> bool {
        if batch.is_empty() {
            return true;
        }
        match self.tx.try_send(batch) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "feed batch dropped; the reader will read these rows back");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StatusEventKind, StatusEventRow};

    fn row(seq: i64) -> StatusEventRow {
        StatusEventRow {
            seq,
            resource_id: format!("r{seq}"),
            source: "s".into(),
            consumer_name: "c".into(),
            kind: StatusEventKind::StatusUpdate,
            payload: "{}".into(),
            status: "{}".into(),
            created_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn one_reader_gets_batches_in_order_and_a_full_feed_drops() {
        let feed = Feed::<StatusEventRow>::default();
        assert!(!feed.wanted(), "nobody reads it yet");
        let mut rx = feed.take().expect("first take");
        assert!(feed.take().is_none(), "one reader only");
        assert!(feed.wanted());
        for seq in 1..=(FEED_CAPACITY as i64 + 5) {
            assert_eq!(feed.send(vec![row(seq)]), seq <= FEED_CAPACITY as i64);
        }
        let mut got = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            got.extend(batch.into_iter().map(|r| r.seq));
        }
        assert_eq!(got, (1..=FEED_CAPACITY as i64).collect::<Vec<_>>());
        drop(rx);
        assert!(!feed.wanted(), "the reader is gone");
    }
}
