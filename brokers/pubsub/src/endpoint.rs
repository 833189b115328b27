//! The machinery both roles share (docs/protocol.md §7.3, §7.6): a health loop that checks (and,
//! with `autoCreate`, recreates) the topics and subscriptions and holds the connected state;
//! publishing with routing by action; and the receive loop — StreamingPull on both
//! subscriptions (this crate's own client, [`crate::pull`], whose streams end cleanly) feeding
//! one sequential worker that acks only after the handler succeeded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use maestro_api::{AttributesReader, Event, ext, pubsub};
use maestro_transport::deliver::{DELIVERY_BACKOFF, Outcome, deliver};
use maestro_transport::retry::{CancellationToken, delays, exponential, pause};
use maestro_transport::{DynHandler, Error, Rejected, Result, Subscribed};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::config::{DEFAULT_STREAM_ACK_DEADLINE, PUBSUB_MESSAGE_LIMIT};
use crate::conn::Clients;
use crate::pull::{AckHandle, PubsubMessage, PullError, PullSettings, PullStream, Received, ShutdownToken};
use crate::{BACKEND, PubSubConfig};
use maestro_transport::tasks::Tasks;

/// Which side this endpoint is, with the identity the client-side check uses.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// A source with this source id.
    Source(String),
    /// An agent of this consumer (cluster).
    Agent(String),
}

/// One subscription this endpoint pulls from, with what `autoCreate` needs to recreate it.
#[derive(Debug, Clone)]
pub(crate) struct SubSpec {
    pub(crate) name: String,
    /// The topic; empty when not configured (then it cannot be recreated).
    pub(crate) topic: String,
    pub(crate) filter: String,
}

/// The topics and subscriptions of one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) role: Role,
    pub(crate) events_topic: String,
    pub(crate) broadcast_topic: String,
    pub(crate) subs: [SubSpec; 2],
}

struct Inner {
    config: PubSubConfig,
    layout: Layout,
    clients: Clients,
    admin: Admin,
    events: Publisher,
    broadcast: Publisher,
    /// True while the last health check passed.
    up: watch::Sender<bool>,
    /// Wakes the health loop for an immediate check.
    poke: Notify,
    /// Bumped when a check had to recreate a topic or subscription (the service lost them,
    /// e.g. an emulator restart the checks did not see as an outage): resubscribe.
    resets: watch::Sender<u64>,
    /// Cancelled by `close` (or drop): ends the health loop, the receive loop (after it shut
    /// its streams down), the worker, and every wait in them.
    cancel: CancellationToken,
    /// The health loop, the receive loop, the StreamingPull readers and the worker.
    tasks: Tasks,
    signal: watch::Sender<u64>,
    /// The permanent cause of being down last logged (as an error, once per cause).
    last_permanent: Mutex<Option<String>>,
}

/// A connected endpoint (either role).
pub(crate) struct Endpoint {
    inner: Arc<Inner>,
    started: AtomicBool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("project", &self.inner.config.project_id)
            .field("role", &self.inner.layout.role)
            .field("up", &*self.inner.up.borrow())
            .finish_non_exhaustive()
    }
}

fn is_resync_request(event: &Event) -> bool {
    event.ty().ends_with(".resync_request")
}

impl Endpoint {
    /// The largest event published: `maxEventBytes`, at most Pub/Sub's message limit.
    pub(crate) fn max_event_bytes(&self) -> usize {
        self.inner.config.max_event_bytes.min(PUBSUB_MESSAGE_LIMIT)
    }

    /// Builds the clients, runs one health check (so the state is known) and starts the
    /// health loop. An unreachable service is not an error: the loop keeps checking.
    pub(crate) async fn connect(config: PubSubConfig, layout: Layout) -> Result<Endpoint> {
        let clients = Clients::new(&config).await?;
        let admin = Admin::from_clients(&config, clients.clone());
        let events = clients.publisher(&layout.events_topic).await?;
        let broadcast = clients.publisher(&layout.broadcast_topic).await?;
        let inner = Arc::new(Inner {
            config,
            layout,
            clients,
            admin,
            events,
            broadcast,
            up: watch::channel(false).0,
            poke: Notify::new(),
            resets: watch::channel(0).0,
            cancel: CancellationToken::new(),
            tasks: Tasks::default(),
            signal: watch::channel(0).0,
            last_permanent: Mutex::new(None),
        });
        let first = inner.check().await;
        inner.set_up(first.map(|_| ()));
        inner.tasks.spawn("health loop", health_loop(inner.clone()));
        Ok(Endpoint { inner, started: AtomicBool::new(false) })
    }

    /// The admin client (same endpoint and credentials).
    pub(crate) fn admin(&self) -> &Admin {
        &self.inner.admin
    }

    /// True while the last health check passed.
    pub(crate) fn is_connected(&self) -> bool {
        *self.inner.up.borrow()
    }

    /// Publishes with routing by action (resync requests to the broadcast topic).
    pub(crate) async fn publish(&self, event: &Event) -> Result<()> {
        let inner = &self.inner;
        if inner.cancel.is_cancelled() {
            return Err(Error::Closed { backend: BACKEND });
        }
        let limit = inner.config.max_event_bytes;
        let size = maestro_transport::event_size(event);
        if size > limit {
            return Err(Error::TooLarge { backend: BACKEND, size, limit });
        }
        let msg = pubsub::encode(event);
        if msg.encoded_len() > PUBSUB_MESSAGE_LIMIT {
            let size = msg.encoded_len();
            return Err(Error::TooLarge { backend: BACKEND, size, limit: PUBSUB_MESSAGE_LIMIT });
        }
        let mut up = inner.up.subscribe();
        if !*up.borrow_and_update() {
            return Err(Error::Disconnected { backend: BACKEND });
        }
        let publisher = if is_resync_request(event) { &inner.broadcast } else { &inner.events };
        let fut = publisher.publish(Message::new().set_data(msg.data).set_attributes(msg.attributes));
        let timeout = inner.config.publish_timeout;
        tokio::select! {
            res = fut => res.map(|_| ()).map_err(|e| {
                let err = crate::error::publish_error(e);
                tracing::debug!(backend = BACKEND, id = event.id(), error = %err, retryable = err.is_retryable(), "publish failed");
                inner.poke.notify_one();
                err
            }),
            _ = up.wait_for(|u| !*u) => Err(Error::Disconnected { backend: BACKEND }),
            _ = tokio::time::sleep(timeout) => {
                Err(Error::rejected(BACKEND, format!("publish timed out after {timeout:?}"), true))
            }
        }
    }

    /// Starts the receive loop.
    pub(crate) fn start(&self, handler: DynHandler) -> Result<()> {
        if self.inner.cancel.is_cancelled() {
            return Err(Error::Closed { backend: BACKEND });
        }
        if self.started.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyStarted { backend: BACKEND });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks = &self.inner.tasks;
        tasks.spawn("delivery worker", worker(self.inner.clone(), rx, handler));
        tasks.spawn("receive loop", receive_loop(self.inner.clone(), tx));
        Ok(())
    }

    pub(crate) fn subscribed(&self) -> Subscribed {
        self.inner.signal.subscribe()
    }

    /// Cancels every task (also a wait between health checks or before resubscribing, and a
    /// delivery in progress, whose message is nacked) and waits for them to end. The receive
    /// loop is given [`CLOSE_GRACE`] to shut its streams down, which nacks every message
    /// received but not handled, so the service redelivers them at once (to the next client of
    /// the subscription) instead of after the ack deadline. Idempotent.
    pub(crate) async fn close(&self) {
        let first = !self.inner.cancel.is_cancelled();
        self.inner.cancel.cancel();
        self.inner.up.send_replace(false);
        self.inner.tasks.drain(BACKEND, "Pub/Sub endpoint").await;
        if first {
            tracing::info!(backend = BACKEND, role = ?self.inner.layout.role, "Pub/Sub endpoint closed");
        }
    }
}

/// How long the receive loop, once cancelled, waits for its streams to nack what they hold.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(3);

impl Drop for Endpoint {
    /// As [`Endpoint::close`] without waiting: the tasks end by themselves.
    fn drop(&mut self) {
        self.inner.cancel.cancel();
        self.inner.up.send_replace(false);
    }
}

/// Why the endpoint counts as down (publishes fail with [`Error::Disconnected`] and the
/// health loop keeps checking).
#[derive(Debug, thiserror::Error)]
enum Down {
    /// A publish topic is missing and `autoCreate` is off.
    #[error("topic {0} does not exist (autoCreate is off)")]
    MissingTopic(String),
    /// A subscription is missing and cannot be recreated.
    #[error("subscription {0} does not exist (autoCreate is off or its topic is not configured)")]
    MissingSubscription(String),
    /// An admin call failed.
    #[error("{0}")]
    Call(#[source] Error),
    /// An admin call did not answer within `healthCheckTimeout`.
    #[error("admin call timed out after {0:?}")]
    Timeout(Duration),
    /// A receive stream stopped.
    #[error("{0}")]
    Stream(#[source] StreamStop),
}

impl Down {
    /// True when the cause can go away without anyone changing the project or the
    /// configuration (an outage), false when it cannot (a missing resource, a refused
    /// permission): then the health loop still checks, but the cause is logged as an error.
    fn is_retryable(&self) -> bool {
        match self {
            Down::MissingTopic(_) | Down::MissingSubscription(_) => false,
            Down::Call(e) => e.is_retryable(),
            Down::Timeout(_) => true,
            Down::Stream(stop) => stop.is_retryable(),
        }
    }
}

/// Why a StreamingPull reader stopped.
#[derive(Debug, thiserror::Error)]
enum StreamStop {
    /// The worker that handles the messages is gone.
    #[error("the worker stopped")]
    WorkerStopped,
    /// The stream failed.
    #[error("subscription {subscription}: {source}")]
    Failed {
        /// The subscription.
        subscription: String,
        /// What failed.
        #[source]
        source: PullError,
    },
    /// The stream ended.
    #[error("subscription {0}: stream ended")]
    Ended(String),
}

impl StreamStop {
    /// True unless the stream failed with a permanent status (e.g. `PERMISSION_DENIED` on the
    /// subscription, see [`crate::error::code_is_retryable`]).
    fn is_retryable(&self) -> bool {
        match self {
            StreamStop::Failed { source, .. } => source.is_retryable(),
            StreamStop::WorkerStopped | StreamStop::Ended(_) => true,
        }
    }
}

impl Inner {
    fn set_up(&self, ok: std::result::Result<(), Down>) {
        let role = &self.layout.role;
        let mut last_permanent = self.last_permanent.lock().unwrap_or_else(|p| p.into_inner());
        match ok {
            Ok(()) => {
                *last_permanent = None;
                if !self.up.send_replace(true) {
                    tracing::info!(
                        backend = BACKEND,
                        ?role,
                        "Pub/Sub reachable; topics and subscriptions present"
                    );
                }
            }
            Err(reason) if !reason.is_retryable() && !self.recreatable(&reason) => {
                self.up.send_replace(false);
                let text = reason.to_string();
                if last_permanent.as_deref() == Some(text.as_str()) {
                    tracing::debug!(backend = BACKEND, ?role, %reason, "Pub/Sub still unusable");
                } else {
                    tracing::error!(backend = BACKEND, ?role, %reason,
                        "Pub/Sub unusable until the project or the configuration changes; still checking");
                    *last_permanent = Some(text);
                }
            }
            Err(reason) => {
                if self.up.send_replace(false) {
                    tracing::warn!(backend = BACKEND, ?role, %reason, "Pub/Sub unavailable");
                } else {
                    tracing::debug!(backend = BACKEND, ?role, %reason, "Pub/Sub still unavailable");
                }
            }
        }
    }

    /// True for a stream that stopped because its subscription is gone while autoCreate is
    /// on: the health check poked right after creates it again (a broker that restarted empty,
    /// as the emulator does), so it is an outage to log as a warning, not an error.
    fn recreatable(&self, reason: &Down) -> bool {
        self.config.auto_create_enabled()
            && matches!(reason, Down::Stream(StreamStop::Failed { source, .. }) if source.is_not_found())
    }

    /// The waits between attempts while down, from the first (`reconnectInitialBackoff`,
    /// doubling to `reconnectMaxBackoff`, jittered).
    fn reconnect_delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let (initial, max) = (self.config.reconnect_initial_backoff, self.config.reconnect_max_backoff);
        delays(exponential(initial, max), max)
    }

    async fn bounded<T>(&self, fut: impl Future<Output = Result<T>>) -> std::result::Result<T, Down> {
        let t = self.config.health_check_timeout;
        match tokio::time::timeout(t, fut).await {
            Ok(r) => r.map_err(Down::Call),
            Err(_) => Err(Down::Timeout(t)),
        }
    }

    /// One health check: the publish topics and the subscriptions exist; missing ones are
    /// recreated when `autoCreate` is on. Returns whether anything was recreated. Every admin
    /// call is bounded by `healthCheckTimeout` (a slow but progressing recreation is not cut
    /// short, while a dead service fails fast).
    async fn check(&self) -> std::result::Result<bool, Down> {
        let mut created = false;
        let auto = self.config.auto_create_enabled();
        let admin = &self.admin;
        for topic in [&self.layout.events_topic, &self.layout.broadcast_topic] {
            if !self.bounded(admin.topic_exists(topic)).await? {
                if !auto {
                    return Err(Down::MissingTopic(topic.clone()));
                }
                self.bounded(admin.create_topic(topic)).await?;
                created = true;
            }
        }
        for sub in &self.layout.subs {
            if self.bounded(admin.subscription_filter(&sub.name)).await?.is_some() {
                continue;
            }
            if !auto || sub.topic.is_empty() {
                return Err(Down::MissingSubscription(sub.name.clone()));
            }
            self.bounded(admin.create_topic(&sub.topic)).await?;
            self.bounded(admin.create_subscription(&sub.name, &sub.topic, &sub.filter)).await?;
            created = true;
        }
        Ok(created)
    }
}

/// Runs [`check_forever`] until the endpoint is closed.
async fn health_loop(inner: Arc<Inner>) {
    inner.cancel.run_until_cancelled(check_forever(&inner)).await;
}

/// Checks every `healthCheckInterval` while up, with backoff while down (the delays start over
/// once up), and at once when poked (a failed publish or stream).
async fn check_forever(inner: &Inner) {
    let interval = inner.config.health_check_interval;
    let mut delays = inner.reconnect_delays();
    loop {
        let wait = if *inner.up.borrow() {
            delays = inner.reconnect_delays();
            interval
        } else {
            let wait = delays.next().unwrap_or(interval).min(interval);
            tracing::debug!(backend = BACKEND, role = ?inner.layout.role, ?wait, "down; next health check");
            wait
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.poke.notified() => {}
        }
        let result = inner.check().await;
        if matches!(result, Ok(true)) {
            inner.resets.send_modify(|n| *n += 1);
        }
        inner.set_up(result.map(|_| ()));
    }
}

/// A message received on subscription `sub` (index into the layout).
struct Delivery {
    sub: usize,
    message: PubsubMessage,
    handler: AckHandle,
}

/// While up: runs a [`receive_round`] until the service goes down or a stream ends, then
/// another. A stream that failed while the service looked up is followed by the next reconnect
/// delay (the delays start over after a round that lasted a minute). Ends when the endpoint is
/// closed, also during a wait.
async fn receive_loop(inner: Arc<Inner>, tx: mpsc::UnboundedSender<Delivery>) {
    let mut up = inner.up.subscribe();
    let mut resets = inner.resets.subscribe();
    let mut delays = inner.reconnect_delays();
    loop {
        if !matches!(inner.cancel.run_until_cancelled(up.wait_for(|u| *u)).await, Some(Ok(_))) {
            return;
        }
        resets.borrow_and_update();
        let opened = tokio::time::Instant::now();
        let Some(stopped) = receive_round(&inner, &tx, &mut up, &mut resets).await else { return };
        tracing::warn!(backend = BACKEND, role = ?inner.layout.role, reason = %stopped, "receive streams stopped; resubscribing");
        if let Stopped::Stream(stop) = stopped
            && *up.borrow()
        {
            // A stream failed while the last check passed: treat the service as down until a
            // fresh check passes (so the subscribed signal never bumps during an outage).
            inner.set_up(Err(Down::Stream(stop)));
            inner.poke.notify_one();
            if opened.elapsed() > Duration::from_secs(60) {
                delays = inner.reconnect_delays();
            }
            let delay = delays.next().unwrap_or(inner.config.reconnect_max_backoff);
            if !pause(delay, &inner.cancel).await {
                return;
            }
        }
    }
}

/// One round of receive streams: opens StreamingPull on both subscriptions, bumps the
/// subscribed signal and pumps messages to the worker until the service goes down, a stream
/// stops or the layout was recreated; then shuts the streams down. `None` when the endpoint was
/// closed.
async fn receive_round(
    inner: &Arc<Inner>,
    tx: &mpsc::UnboundedSender<Delivery>,
    up: &mut watch::Receiver<bool>,
    resets: &mut watch::Receiver<u64>,
) -> Option<Stopped> {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<StreamStop>();
    let mut pumps = Pumps::default();
    for i in 0..inner.layout.subs.len() {
        let stream = open_stream(inner, i);
        pumps.tokens.push(stream.shutdown_token());
        let reader = pump(inner.clone(), i, stream, tx.clone(), done_tx.clone());
        pumps.tasks.push(inner.tasks.spawn("StreamingPull reader", reader));
    }
    inner.signal.send_modify(|n| *n += 1);
    tracing::info!(backend = BACKEND, role = ?inner.layout.role, "subscribed");
    let stopped = tokio::select! {
        _ = inner.cancel.cancelled() => None,
        _ = up.wait_for(|u| !*u) => Some(Stopped::Unavailable),
        r = done_rx.recv() => Some(Stopped::Stream(r.unwrap_or(StreamStop::WorkerStopped))),
        _ = resets.changed() => Some(Stopped::Recreated),
    };
    pumps.shutdown().await;
    stopped.filter(|_| !inner.cancel.is_cancelled())
}

/// Why a round of receive streams ended.
#[derive(Debug, thiserror::Error)]
enum Stopped {
    /// The health check failed.
    #[error("the service became unavailable")]
    Unavailable,
    /// A stream stopped.
    #[error("{0}")]
    Stream(StreamStop),
    /// The health check recreated a topic or subscription.
    #[error("topics or subscriptions were recreated")]
    Recreated,
}

/// The StreamingPull readers of one subscription round. Dropping it (the receive loop was
/// dropped) aborts the readers, which drops their streams: each then closes by itself as
/// [`ShutdownToken::shutdown`] does (nacks what it held, half-closes).
#[derive(Default)]
struct Pumps {
    tasks: Vec<JoinHandle<()>>,
    tokens: Vec<ShutdownToken>,
}

impl Pumps {
    /// Shuts the streams down (nacking every message not yet handled, then ending each stream
    /// cleanly), bounded by [`CLOSE_GRACE`], then stops the readers.
    async fn shutdown(&mut self) {
        let all = futures::future::join_all(self.tokens.iter().map(ShutdownToken::shutdown));
        if tokio::time::timeout(CLOSE_GRACE, all).await.is_err() {
            tracing::debug!(backend = BACKEND, "stream shutdown timed out");
        }
        self.tokens.clear();
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Pumps {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens StreamingPull on subscription `sub` with the receive settings (unset: 1,000 messages
/// and 100 MiB outstanding, leases kept up to 1 h, the stream ack deadline
/// [`DEFAULT_STREAM_ACK_DEADLINE`]).
fn open_stream(inner: &Inner, sub: usize) -> PullStream {
    let name = &inner.layout.subs[sub].name;
    let rs = &inner.config.receive_settings;
    let settings = PullSettings {
        ack_deadline: rs
            .max_duration_per_ack_extension
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_STREAM_ACK_DEADLINE),
        max_lease: rs.max_extension.filter(|d| !d.is_zero()).unwrap_or(DEFAULT_MAX_LEASE),
        max_outstanding_messages: rs.max_outstanding_messages.filter(|n| *n > 0).unwrap_or(1_000),
        max_outstanding_bytes: rs.max_outstanding_bytes.filter(|n| *n > 0).unwrap_or(100 << 20),
        reconnect_initial_backoff: inner.config.reconnect_initial_backoff,
        reconnect_max_backoff: inner.config.reconnect_max_backoff,
        close_grace: STREAM_CLOSE_GRACE,
        // An agent's spec resync is cheap and fetches what a broken stream swallowed; the
        // server's resync resends every consumer's statuses and specs, so its streams
        // reopening (which the service also does by itself from time to time) do not count.
        reopened: matches!(inner.layout.role, Role::Agent(_)).then(|| inner.signal.clone()),
    };
    inner.clients.puller.subscribe(name.clone(), settings)
}

/// The longest a message stays leased by default (`receiveSettings.maxExtension`, as the
/// Google clients).
const DEFAULT_MAX_LEASE: Duration = Duration::from_secs(3600);
/// How long a closing stream waits for the service to end it, and then for the nacks of what
/// still arrived: twice this fits in [`CLOSE_GRACE`].
const STREAM_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Reads one subscription's StreamingPull until it fails; reports why on `done`. A delivery
/// the worker can no longer take is dropped, which nacks it.
async fn pump(
    inner: Arc<Inner>,
    sub: usize,
    mut stream: PullStream,
    tx: mpsc::UnboundedSender<Delivery>,
    done: mpsc::UnboundedSender<StreamStop>,
) {
    let name = &inner.layout.subs[sub].name;
    let reason = loop {
        match stream.next().await {
            Some(Ok(Received { message, handle })) => {
                if tx.send(Delivery { sub, message, handler: handle }).is_err() {
                    break StreamStop::WorkerStopped;
                }
            }
            Some(Err(source)) => break StreamStop::Failed { subscription: name.clone(), source },
            None => break StreamStop::Ended(name.clone()),
        }
    };
    let _ = done.send(reason);
}

/// Decodes, checks and delivers messages one at a time; acks after the handler accepted or
/// permanently rejected the event, nacks on close.
async fn worker(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Delivery>, handler: DynHandler) {
    while let Some(d) = inner.cancel.run_until_cancelled(rx.recv()).await.flatten() {
        let sub = &inner.layout.subs[d.sub].name;
        let msg = pubsub::PubSubMessage {
            attributes: d.message.attributes.into_iter().collect(),
            data: d.message.data.to_vec(),
        };
        let event = match pubsub::decode(&msg) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(backend = BACKEND, subscription = %sub, message_id = %d.message.message_id, %error, "undecodable message acked and dropped");
                let reason = error.to_string();
                let message = Rejected {
                    backend: BACKEND,
                    channel: sub,
                    consumer: None,
                    payload: &msg.data,
                    event: None,
                    reason: &reason,
                };
                handler.rejected(message).await;
                d.handler.ack();
                continue;
            }
        };
        if let Some(reason) = not_ours(&inner.layout.role, &event) {
            tracing::debug!(backend = BACKEND, subscription = %sub, id = event.id(), %reason, "event for someone else acked and dropped");
            d.handler.ack();
            continue;
        }
        match deliver(&handler, event, DELIVERY_BACKOFF, &inner.cancel, BACKEND).await {
            Outcome::Acked | Outcome::Dropped(_) => d.handler.ack(),
            Outcome::Closed => {
                d.handler.nack();
                return;
            }
        }
    }
}

/// The client-side check (the emulator does not apply subscription filters): why `event` is
/// not for this endpoint, or `None` when it is.
pub(crate) fn not_ours(role: &Role, event: &Event) -> Option<String> {
    match role {
        Role::Agent(consumer) => {
            if is_resync_request(event) {
                return None;
            }
            let cluster = ext::get_str(event, ext::CLUSTER_NAME).unwrap_or_default();
            (cluster != *consumer).then(|| format!("clustername {cluster:?} is not {consumer:?}"))
        }
        Role::Source(source_id) => {
            let original = ext::get_str(event, ext::ORIGINAL_SOURCE).unwrap_or_default();
            if original == *source_id || (original.is_empty() && is_resync_request(event)) {
                return None;
            }
            Some(format!("originalsource {original:?} is not {source_id:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maestro_api::codec::{SpecEventBuilder, spec_resync_request, status_resync_request};
    use maestro_api::payload::{ResourceVersionList, StatusHashList};

    /// `close` interrupts the waits of an endpoint that cannot reach the service: with a 1 h
    /// reconnect backoff and health-check interval and nothing listening, the health loop is
    /// waiting for its next check (and the receive loop for the service to come up) when
    /// `close` is called; `close` returns in time and every task has ended (not merely the
    /// drain timing out, which would log that tasks did not finish).
    #[tokio::test]
    async fn close_interrupts_the_reconnect_backoff() {
        let (logs, _capture) = maestro_transport::test_logs::Logs::capture();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        drop(listener); // nothing listens there any more
        let endpoint = format!("127.0.0.1:{port}");
        let mut config = PubSubConfig::maestro_defaults("maestro-test", Some(&endpoint)).for_agent("c1");
        config.health_check_interval = Duration::from_secs(3600);
        config.health_check_timeout = Duration::from_secs(1);
        config.reconnect_initial_backoff = Duration::from_secs(3600);
        config.reconnect_max_backoff = Duration::from_secs(3600);
        let sub = |name: &str, topic: &str| SubSpec {
            name: name.into(),
            topic: topic.into(),
            filter: String::new(),
        };
        let (t, s) = (&config.topics, &config.subscriptions);
        let layout = Layout {
            role: Role::Agent("c1".into()),
            events_topic: t.agent_events.clone(),
            broadcast_topic: t.agent_broadcast.clone(),
            subs: [sub(&s.source_events, &t.source_events), sub(&s.source_broadcast, &t.source_broadcast)],
        };
        let endpoint = Endpoint::connect(config, layout).await.expect("connect");
        assert!(!endpoint.is_connected());
        endpoint.start(maestro_transport::conformance::Recorder::new()).expect("start");
        logs.wait_for("down; next health check").await;
        let closing = tokio::time::timeout(Duration::from_secs(10), endpoint.close()).await;
        closing.expect("close returns during the backoff");
        assert_eq!(endpoint.inner.tasks.len(), 0, "every task of the endpoint ended");
        assert!(!logs.contains("did not finish"), "close waited for nothing");
        let event = SpecEventBuilder::new("maestro", "r", 1, "c1").build();
        assert!(matches!(endpoint.publish(&event).await, Err(Error::Closed { .. })));
    }

    #[test]
    fn client_side_check() {
        let agent = Role::Agent("c1".into());
        assert_eq!(not_ours(&agent, &SpecEventBuilder::new("maestro", "r", 1, "c1").build()), None);
        assert!(not_ours(&agent, &SpecEventBuilder::new("maestro", "r", 1, "c2").build()).is_some());
        let all = status_resync_request("maestro", "", &StatusHashList::default());
        assert_eq!(not_ours(&agent, &all), None, "broadcast resync requests reach every agent");
        assert!(is_resync_request(&all));

        let source = Role::Source("maestro".into());
        let resync = spec_resync_request("a", "c1", &ResourceVersionList::default());
        assert_eq!(not_ours(&source, &resync), None, "spec resync with originalsource \"\"");
        let mut status = SpecEventBuilder::new("agent", "r", 1, "c1").build();
        ext::set_str(&mut status, ext::ORIGINAL_SOURCE, "maestro");
        assert_eq!(not_ours(&source, &status), None);
        ext::set_str(&mut status, ext::ORIGINAL_SOURCE, "other");
        assert!(not_ours(&source, &status).is_some());
        ext::set_str(&mut status, ext::ORIGINAL_SOURCE, "");
        assert!(
            not_ours(&source, &status).is_some(),
            "only resync requests may have an empty originalsource"
        );
    }
}
