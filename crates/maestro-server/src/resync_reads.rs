//! The store reads of spec resync answers, grouped (docs/architecture.md §5.4): the answers
//! being sent at once (at most [`crate::spec_resync::MAX_CONCURRENT_RESYNC_ANSWERS`]) ask one
//! reader task, which reads their bundles, their bundles deleted lately and the store identity
//! with three queries for the whole group instead of three per answer. A fleet reconnecting
//! after an outage sends one request per agent: 10,001 agents connecting in the benchmark
//! were answered from 1,628 groups (4,884 queries instead of 30,003; the group sizes are
//! logged at debug level), and the server keeps ~13 MiB less memory afterwards
//! (docs/benchmarks.md, "Where an agent's bytes go").

use std::collections::HashMap;
use std::sync::Mutex;

use maestro_store::{DeletedResource, DynStore, Resource};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// What one spec resync answer needs from the store.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConsumerReads {
    /// The consumer's bundles, deleting ones included, oldest first.
    pub(crate) resources: Vec<Resource>,
    /// The latest [`crate::spec_resync::DELETED_IN_ANSWER`] deletions of its bundles, newest
    /// first.
    pub(crate) deleted: Vec<DeletedResource>,
    /// The store identity (docs/protocol.md §5.5).
    pub(crate) store_id: String,
}

/// A read's error text (the store error's, or the reader's end); a retry may succeed.
pub(crate) type ReadError = String;

type Reply = oneshot::Sender<Result<ConsumerReads, ReadError>>;

type Queue = mpsc::UnboundedSender<(String, Reply)>;

/// The reader of one ingest, started on the first read (again after it ended: a panic fails
/// the reads it held, which are retried, not every later one) and stopped when this is dropped.
#[derive(Debug)]
pub(crate) struct ResyncReads {
    store: DynStore,
    /// Most answers read together.
    group: usize,
    reader: Mutex<Option<(Queue, AbortHandle)>>,
}

impl ResyncReads {
    /// Reads of `store`, up to `group` consumers (at least 1) per query.
    pub(crate) fn new(store: DynStore, group: usize) -> Self {
        ResyncReads { store, group: group.max(1), reader: Mutex::default() }
    }

    /// The running reader's queue, started if there is none.
    fn queue(&self) -> Queue {
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        match &*reader {
            Some((queue, _)) if !queue.is_closed() => queue.clone(),
            _ => {
                let (queue, requests) = mpsc::unbounded_channel();
                let task = tokio::spawn(read_groups(self.store.clone(), requests, self.group));
                *reader = Some((queue.clone(), task.abort_handle()));
                queue
            }
        }
    }

    /// What the answer to `consumer`'s request needs, read with the other answers waiting.
    /// Errors: the store's, as text.
    pub(crate) async fn read(&self, consumer: &str) -> Result<ConsumerReads, ReadError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || "the spec resync reader has stopped".to_owned();
        self.queue().send((consumer.to_owned(), reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for ResyncReads {
    fn drop(&mut self) {
        if let Some((_, task)) = self.reader.get_mut().unwrap_or_else(|p| p.into_inner()) {
            task.abort();
        }
    }
}

/// The reader: each turn takes every request waiting (up to `group`) and answers them from one
/// group read.
async fn read_groups(store: DynStore, mut requests: mpsc::UnboundedReceiver<(String, Reply)>, group: usize) {
    let mut batch = Vec::with_capacity(group);
    while requests.recv_many(&mut batch, group).await > 0 {
        // A replaced answer's request may still wait beside its successor's: both get the reads.
        let mut replies: HashMap<String, Vec<Reply>> = HashMap::new();
        for (consumer, reply) in batch.drain(..) {
            replies.entry(consumer).or_default().push(reply);
        }
        let names: Vec<String> = replies.keys().cloned().collect();
        tracing::debug!(consumers = names.len(), "spec resync reads");
        match read_group(&store, &names).await {
            Ok(mut reads) => {
                for (consumer, waiting) in replies {
                    let one = reads.remove(&consumer).unwrap_or_default();
                    send_all(waiting, Ok(one));
                }
            }
            Err(e) => {
                let error = e.to_string();
                for waiting in replies.into_values() {
                    send_all(waiting, Err(error.clone()));
                }
            }
        }
    }
}

/// Sends `reads` to every reply (an answer aborted meanwhile no longer listens).
fn send_all(mut waiting: Vec<Reply>, reads: Result<ConsumerReads, ReadError>) {
    let last = waiting.pop();
    for reply in waiting {
        let _ = reply.send(reads.clone());
    }
    if let Some(reply) = last {
        let _ = reply.send(reads);
    }
}

/// The reads of `consumers`, by consumer (every one of them).
async fn read_group(
    store: &DynStore,
    consumers: &[String],
) -> Result<HashMap<String, ConsumerReads>, maestro_store::StoreError> {
    let resources = store.resources_for_consumers(consumers).await?;
    let deleted = store.deleted_resources(consumers, crate::spec_resync::DELETED_IN_ANSWER).await?;
    let store_id = store.store_identity().await?;
    let mut out: HashMap<String, ConsumerReads> = consumers
        .iter()
        .map(|c| (c.clone(), ConsumerReads { store_id: store_id.clone(), ..Default::default() }))
        .collect();
    for r in resources {
        if let Some(reads) = out.get_mut(&r.consumer_name) {
            reads.resources.push(r);
        }
    }
    for d in deleted {
        if let Some(reads) = out.get_mut(&d.consumer_name) {
            reads.deleted.push(d);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use maestro_store::{NewConsumer, NewResource};
    use serde_json::json;

    use super::*;

    /// Reads asked at once, several for one consumer among them, each get their consumer's
    /// bundles and the store identity, whatever group they were read in.
    #[tokio::test]
    async fn reads_asked_together_each_get_their_consumer() {
        let store = maestro_store::open("sqlite::memory:").await.expect("store");
        for c in ["c1", "c2", "c3"] {
            let new = NewConsumer { name: Some(c.into()), labels: Default::default() };
            store.create_consumer(new).await.expect("consumer");
        }
        for (id, c) in [("r1", "c1"), ("r2", "c2"), ("r3", "c1")] {
            let payload = json!({"id": id}).into();
            let new = NewResource {
                id: id.into(),
                name: id.into(),
                consumer_name: c.into(),
                source: "s".into(),
                payload,
            };
            store.create_resource(new).await.expect("resource");
        }
        let identity = store.store_identity().await.expect("identity");
        let reads = ResyncReads::new(store, 2);
        let asked = ["c1", "c2", "c2", "c3", "c1", "c9"];
        let answers = futures::future::join_all(asked.iter().map(|c| reads.read(c))).await;
        for (consumer, answer) in asked.iter().zip(answers) {
            let read = answer.expect("read");
            let ids: Vec<&str> = read.resources.iter().map(|r| r.id.as_str()).collect();
            let expected: &[&str] = match *consumer {
                "c1" => &["r1", "r3"],
                "c2" => &["r2"],
                _ => &[],
            };
            assert_eq!(ids, expected, "{consumer}'s bundles");
            assert!(read.deleted.is_empty(), "{consumer}: nothing deleted");
            assert_eq!(read.store_id, identity, "{consumer}: the store identity");
        }
    }

    /// A reader that ended (here aborted, as a panic would end it) is started again by the
    /// next read instead of failing every later answer.
    #[tokio::test]
    async fn a_reader_that_ended_is_started_again() {
        let store = maestro_store::open("sqlite::memory:").await.expect("store");
        let reads = ResyncReads::new(store, 16);
        assert!(reads.read("c1").await.expect("first read").resources.is_empty());
        let task = reads.reader.lock().expect("lock").as_ref().map(|(_, t)| t.clone()).expect("started");
        task.abort();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !task.is_finished() {
            assert!(tokio::time::Instant::now() < deadline, "the reader did not end");
            tokio::task::yield_now().await;
        }
        let read = reads.read("c1").await.expect("read after the reader ended");
        assert!(!read.store_id.is_empty(), "answered by a new reader");
    }
}
