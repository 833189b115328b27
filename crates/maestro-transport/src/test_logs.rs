//! Test helper for backends' tests (feature `conformance`): the messages of the events logged
//! on the test's thread, so a test can wait for a task to reach a given point (e.g. the wait
//! before a reconnect) without sleeping.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The captured messages; see [`Logs::capture`].
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<String>>>);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Logs {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(message.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Logs {
    /// Captures the events of this thread (all tasks of a current-thread runtime) until
    /// the guard is dropped.
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let guard = tracing::subscriber::set_default(logs.clone());
        (logs, guard)
    }

    /// True when a message containing `needle` was logged.
    pub fn contains(&self, needle: &str) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|m| m.contains(needle))
    }

    /// Waits (yielding, at most 10 s) until a message containing `needle` was logged.
    pub async fn wait_for(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.contains(needle) {
            assert!(tokio::time::Instant::now() < deadline, "nothing logged {needle:?} in 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
