//! The in-memory broker: a complete backend for tests and single-process setups. One
//! [`MemoryBroker`] connects one source and any number of agents; [`MemoryBroker::interrupt`]
//! and [`MemoryBroker::resume`] simulate a broker outage.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use maestro_api::{Event, ext};
use tokio::sync::{mpsc, watch};

use crate::deliver::spawn_sequential;
use crate::retry::CancellationToken;
use crate::{
    AgentTransport, DEFAULT_MAX_EVENT_BYTES, DynHandler, Error, Result, SourceTransport, Subscribed,
};

const BACKEND: &str = "memory";

#[derive(Default)]
struct Routes {
    source: Option<mpsc::UnboundedSender<Event>>,
    agents: HashMap<String, mpsc::UnboundedSender<Event>>,
    signals: Vec<watch::Sender<u64>>,
}

struct Inner {
    up: AtomicBool,
    closed: CancellationToken,
    max_bytes: usize,
    routes: Mutex<Routes>,
}

impl Inner {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self, event: &Event) -> Result<()> {
        if !self.up.load(Ordering::Acquire) {
            return Err(Error::Disconnected { backend: BACKEND });
        }
        let size = crate::event_size(event);
        if size > self.max_bytes {
            return Err(Error::TooLarge { backend: BACKEND, size, limit: self.max_bytes });
        }
        Ok(())
    }
}

/// An in-memory broker.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBroker").field("up", &self.inner.up.load(Ordering::Relaxed)).finish()
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl MemoryBroker {
    /// A broker that is up, with the default size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A broker with a custom size limit (bytes of structured JSON per event).
    pub fn with_max_event_bytes(max_bytes: usize) -> Self {
        MemoryBroker {
            inner: Arc::new(Inner {
                up: AtomicBool::new(true),
                closed: CancellationToken::new(),
                max_bytes,
                routes: Mutex::new(Routes::default()),
            }),
        }
    }

    /// The source endpoint.
    pub fn source(&self) -> Arc<MemorySource> {
        let (tx, _) = watch::channel(0);
        Arc::new(MemorySource { broker: self.clone(), signal: tx })
    }

    /// An agent endpoint for `consumer`.
    pub fn agent(&self, consumer: &str) -> Arc<MemoryAgent> {
        let (tx, _) = watch::channel(0);
        Arc::new(MemoryAgent { broker: self.clone(), consumer: consumer.to_owned(), signal: tx })
    }

    /// Takes the broker down: publishes fail with [`Error::Disconnected`].
    pub fn interrupt(&self) {
        self.inner.up.store(false, Ordering::Release);
    }

    /// Brings the broker back and signals every started endpoint as resubscribed.
    pub fn resume(&self) {
        self.inner.up.store(true, Ordering::Release);
        for s in &self.inner.routes().signals {
            s.send_modify(|n| *n += 1);
        }
    }

    fn register(&self, signal: &watch::Sender<u64>) {
        let mut routes = self.inner.routes();
        routes.signals.push(signal.clone());
        if self.inner.up.load(Ordering::Acquire) {
            signal.send_modify(|n| *n += 1);
        }
    }
}

/// The source endpoint of a [`MemoryBroker`].
pub struct MemorySource {
    broker: MemoryBroker,
    signal: watch::Sender<u64>,
}

impl fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemorySource")
    }
}

#[async_trait]
impl SourceTransport for MemorySource {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn max_event_bytes(&self) -> usize {
        self.broker.inner.max_bytes
    }

    async fn publish(&self, event: &Event) -> Result<()> {
        let inner = &self.broker.inner;
        inner.check(event)?;
        let cluster = ext::get_str(event, ext::CLUSTER_NAME).unwrap_or_default();
        let routes = inner.routes();
        if cluster.is_empty() {
            for tx in routes.agents.values() {
                let _ = tx.send(event.clone());
            }
            return Ok(());
        }
        match routes.agents.get(&cluster) {
            Some(tx) if tx.send(event.clone()).is_ok() => Ok(()),
            _ => Err(Error::NoSubscriber { backend: BACKEND, consumer: cluster }),
        }
    }

    async fn start(&self, handler: DynHandler) -> Result<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut routes = self.broker.inner.routes();
            if routes.source.is_some() {
                return Err(Error::AlreadyStarted { backend: BACKEND });
            }
            routes.source = Some(tx);
        }
        spawn_sequential(rx, handler, self.broker.inner.closed.clone(), BACKEND);
        self.broker.register(&self.signal);
        Ok(())
    }

    fn subscribed(&self) -> Subscribed {
        self.signal.subscribe()
    }

    async fn close(&self) {
        self.broker.inner.closed.cancel();
        self.broker.inner.routes().source = None;
    }
}

/// An agent endpoint of a [`MemoryBroker`].
pub struct MemoryAgent {
    broker: MemoryBroker,
    consumer: String,
    signal: watch::Sender<u64>,
}

impl fmt::Debug for MemoryAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryAgent").field("consumer", &self.consumer).finish()
    }
}

#[async_trait]
impl AgentTransport for MemoryAgent {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn consumer(&self) -> &str {
        &self.consumer
    }

    async fn publish(&self, event: &Event) -> Result<()> {
        let inner = &self.broker.inner;
        inner.check(event)?;
        match &inner.routes().source {
            Some(tx) if tx.send(event.clone()).is_ok() => Ok(()),
            _ => Err(Error::NoSubscriber { backend: BACKEND, consumer: "<source>".into() }),
        }
    }

    async fn start(&self, handler: DynHandler) -> Result<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut routes = self.broker.inner.routes();
            if routes.agents.contains_key(&self.consumer) {
                return Err(Error::AlreadyStarted { backend: BACKEND });
            }
            routes.agents.insert(self.consumer.clone(), tx);
        }
        spawn_sequential(rx, handler, self.broker.inner.closed.clone(), BACKEND);
        self.broker.register(&self.signal);
        Ok(())
    }

    fn subscribed(&self) -> Subscribed {
        self.signal.subscribe()
    }

    async fn close(&self) {
        self.broker.inner.routes().agents.remove(&self.consumer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{self, Harness};
    use crate::{DynAgentTransport, DynSourceTransport};

    struct MemHarness(MemoryBroker);

    #[async_trait]
    impl Harness for MemHarness {
        fn max_event_bytes(&self) -> usize {
            DEFAULT_MAX_EVENT_BYTES
        }
        async fn source(&mut self) -> DynSourceTransport {
            self.0.source()
        }
        async fn agent(&mut self, consumer: &str) -> DynAgentTransport {
            self.0.agent(consumer)
        }
        async fn interrupt(&mut self) {
            self.0.interrupt();
        }
        async fn resume(&mut self) {
            self.0.resume();
        }
    }

    #[tokio::test]
    async fn memory_broker_passes_the_conformance_suite() {
        conformance::run_all(&mut MemHarness(MemoryBroker::new())).await;
    }
}
