//! The sending side of a store's status feed ([`crate::Store::status_feed`]): committed status
//! event rows handed to the in-process fan-out, so it need not read them back.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use crate::{STATUS_FEED_CAPACITY, StatusFeedBatch};

/// A bounded single-reader channel of committed batches, and whether its reader took it.
#[derive(Debug)]
pub(crate) struct StatusFeed {
    tx: mpsc::Sender<StatusFeedBatch>,
    rx: Mutex<Option<mpsc::Receiver<StatusFeedBatch>>>,
    taken: AtomicBool,
}

impl Default for StatusFeed {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(STATUS_FEED_CAPACITY);
        StatusFeed { tx, rx: Mutex::new(Some(rx)), taken: AtomicBool::new(false) }
    }
}

impl StatusFeed {
    /// The receiver, on the first call only.
    pub(crate) fn take(&self) -> Option<mpsc::Receiver<StatusFeedBatch>> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if rx.is_some() {
            self.taken.store(true, Ordering::Release);
        }
        rx
    }

    /// True while a reader holds the feed: only then are its rows worth building (a store
    /// nobody reads the feed of, e.g. the benchmark's store alone, does no extra work).
    pub(crate) fn wanted(&self) -> bool {
        self.taken.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    /// Hands over one committed batch; drops it when the reader is
    /// [`STATUS_FEED_CAPACITY`] batches behind (the reader then finds a gap in `seq`s and
    /// reads the rows from the database).
    pub(crate) fn send(&self, batch: StatusFeedBatch) {
        if batch.is_empty() {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(b)) = self.tx.try_send(batch) {
            tracing::debug!(rows = b.len(), "status feed full; the reader will read these rows back");
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
        let feed = StatusFeed::default();
        assert!(!feed.wanted(), "nobody reads it yet");
        let mut rx = feed.take().expect("first take");
        assert!(feed.take().is_none(), "one reader only");
        assert!(feed.wanted());
        for seq in 1..=(STATUS_FEED_CAPACITY as i64 + 5) {
            feed.send(vec![row(seq)]);
        }
        let mut got = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            got.extend(batch.into_iter().map(|r| r.seq));
        }
        assert_eq!(got, (1..=STATUS_FEED_CAPACITY as i64).collect::<Vec<_>>());
        drop(rx);
        assert!(!feed.wanted(), "the reader is gone");
    }
}
