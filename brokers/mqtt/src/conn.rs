//! One MQTT 5 connection shared by both roles: a rumqttc `AsyncClient` plus an owned
//! `EventLoop` task that (re)connects with `CleanStart=true`, subscribes after every CONNACK,
//! bumps the subscribed signal on SUBACK, completes publishes on PUBACK, and feeds incoming
//! messages, in order per topic, to delivery lanes; each message is acknowledged only after the
//! handler accepted it, in arrival order (manual acks; docs/protocol.md §7.2, §7.6).
//!
//! Publish tracking: requests go through rumqttc's FIFO request channel, so the n-th
//! `Outgoing::Publish(pkid)` event belongs to the n-th accepted publish. Publishes are only
//! accepted while connected, under the state lock, and on a connection error the request
//! channel and rumqttc's replay queue are drained under the same lock (the session is never
//! resumed with `CleanStart=true`), so the FIFO of waiters stays aligned.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use maestro_api::mqtt::{self, MqttMessage};
use maestro_api::{AttributesReader, Event};
use maestro_transport::deliver::{DELIVERY_BACKOFF, Outcome, deliver};
use maestro_transport::retry::{CancellationToken, delays, exponential, pause};
use maestro_transport::{DynHandler, Error, Rejected, Result};
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PubAck, PubAckReason, Publish, PublishProperties, SubAck};
use rumqttc::v5::{AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, MqttOptions};
use tokio::sync::{mpsc, oneshot, watch};

use crate::BACKEND;
use crate::config::{MqttConfig, invalid};
use maestro_transport::tasks::Tasks;

/// Capacity of rumqttc's request channel (publishes, acks, subscribes).
const REQUEST_CHANNEL_CAPACITY: usize = 1024;
/// Most QoS 1 publishes awaiting their PUBACK per connection (further publishes wait their
/// turn). rumqttc sizes a table by this bound up front: its default (65,535) costs ~16 MiB per
/// connection, which a fleet simulator with thousands of agents cannot afford.
const MAX_INFLIGHT: u16 = 128;
/// How long the event loop, once cancelled while connected, keeps going to send the DISCONNECT
/// that `close` queued (so the broker sees a clean disconnect, not a lost client).
const DISCONNECT_GRACE: Duration = Duration::from_millis(500);

type Waiter = oneshot::Sender<Result<()>>;
type Delivery = (Publish, u64);

/// Who this connection is, for logs.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// `source` or `agent`.
    pub(crate) role: &'static str,
    /// The source id or the consumer.
    pub(crate) name: String,
    /// The MQTT client id.
    pub(crate) client_id: String,
    /// Source role: refuse agent events whose `clustername` is not the consumer of the topic
    /// they arrived on ([`crate::topics::check_agent_origin`]).
    pub(crate) verify_agent_origin: bool,
}

#[derive(Default)]
struct State {
    connected: bool,
    /// The largest packet the broker accepts (CONNACK `Maximum Packet Size`), if it said.
    broker_max_packet: Option<u32>,
    /// Incremented on every CONNACK; acks are only sent on the connection a message came from.
    generation: u64,
    deliveries: Option<mpsc::UnboundedSender<Delivery>>,
    waiters: VecDeque<Waiter>,
    inflight: HashMap<u16, Waiter>,
}

struct Shared {
    id: Identity,
    client: AsyncClient,
    state: Mutex<State>,
    signal: watch::Sender<u64>,
    /// Cancelled by `close` (or drop): ends the event loop, the delivery tasks and every wait
    /// in them (reconnect delays, redeliveries).
    cancel: CancellationToken,
    filters: Vec<String>,
    sub_qos: QoS,
    pub_qos: QoS,
    publish_timeout: Duration,
    reconnect_initial_backoff: Duration,
    reconnect_max_backoff: Duration,
}

/// A connection with its event-loop and delivery tasks.
pub(crate) struct Conn {
    shared: Arc<Shared>,
    tasks: Tasks,
}

fn qos(level: u8) -> QoS {
    if level == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce }
}

fn options(config: &MqttConfig, client_id: &str) -> Result<MqttOptions> {
    let (host, port) = config.host_port()?;
    let mut opts = MqttOptions::new(client_id, host, port);
    opts.set_clean_start(true)
        .set_keep_alive(Duration::from_secs(u64::from(config.keep_alive)))
        .set_manual_acks(true)
        .set_outgoing_inflight_upper_limit(MAX_INFLIGHT)
        .set_connection_timeout(config.dial_timeout.as_secs_f64().ceil().max(1.0) as u64);
    // Publishes wait for their PUBACK one round trip at a time: never let Nagle's algorithm
    // hold a small packet back waiting for a delayed ACK.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    opts.set_network_options(network);
    let max_packet = config.max_event_bytes.saturating_mul(2).saturating_add(64 * 1024);
    opts.set_max_packet_size(Some(u32::try_from(max_packet).unwrap_or(u32::MAX)));
    let user = config.username.clone().unwrap_or_default();
    let pass = config.password.clone().unwrap_or_default();
    if !user.is_empty() || !pass.is_empty() {
        opts.set_credentials(user, pass);
    }
    if let Some(tls) = crate::tls::client_config(config)? {
        opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls)));
    }
    Ok(opts)
}

impl Conn {
    /// Starts connecting in the background (publishes fail with `Disconnected` until the
    /// first CONNACK). `filters` are subscribed once [`Conn::start`] was called.
    pub(crate) fn open(config: &MqttConfig, id: Identity, filters: Vec<String>) -> Result<Conn> {
        if id.client_id.is_empty() {
            return Err(invalid("the MQTT client id must not be empty"));
        }
        let (client, eventloop) = AsyncClient::new(options(config, &id.client_id)?, REQUEST_CHANNEL_CAPACITY);
        let (signal, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            id,
            client,
            state: Mutex::new(State::default()),
            signal,
            cancel: CancellationToken::new(),
            filters,
            sub_qos: qos(config.sub_qos),
            pub_qos: qos(config.pub_qos),
            publish_timeout: config.publish_timeout,
            reconnect_initial_backoff: config.reconnect_initial_backoff,
            reconnect_max_backoff: config.reconnect_max_backoff,
        });
        tracing::info!(backend = BACKEND, role = shared.id.role, name = %shared.id.name,
            client_id = %shared.id.client_id, broker = %config.broker_host, tls = config.uses_tls(), "MQTT connecting");
        let tasks = Tasks::default();
        tasks.spawn("event loop", run(shared.clone(), eventloop));
        Ok(Conn { shared, tasks })
    }

    /// True after CONNACK until the connection fails.
    pub(crate) fn is_connected(&self) -> bool {
        self.shared.state().connected
    }

    /// True once [`Conn::close`] ran.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// The subscribed signal.
    pub(crate) fn subscribed(&self) -> watch::Receiver<u64> {
        self.shared.signal.subscribe()
    }

    /// Registers the handler and subscribes (now if connected, else after the next CONNACK).
    pub(crate) fn start(&self, handler: DynHandler) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed { backend: BACKEND });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut st = self.shared.state();
            if st.deliveries.is_some() {
                return Err(Error::AlreadyStarted { backend: BACKEND });
            }
            st.deliveries = Some(tx);
            if st.connected {
                self.shared.subscribe();
            }
        }
        let delivery = delivery_loop(self.shared.clone(), rx, handler, self.tasks.clone());
        self.tasks.spawn("delivery loop", delivery);
        Ok(())
    }

    /// Publishes `msg` on `topic` and waits for the broker's PUBACK (QoS 1) or for the packet
    /// to be written (QoS 0), bounded by `publishTimeout`.
    pub(crate) async fn publish(&self, topic: String, msg: MqttMessage) -> Result<()> {
        let rx = {
            let mut st = self.shared.state();
            if self.is_closed() {
                return Err(Error::Closed { backend: BACKEND });
            }
            if !st.connected {
                return Err(Error::Disconnected { backend: BACKEND });
            }
            let props = PublishProperties {
                content_type: msg.content_type,
                user_properties: msg.user_properties,
                ..PublishProperties::default()
            };
            let payload = bytes::Bytes::from(msg.payload);
            if let Some(limit) = st.broker_max_packet {
                check_packet_size(&topic, self.shared.pub_qos, &payload, &props, limit)?;
            }
            self.shared
                .client
                .try_publish_with_properties(topic.as_str(), self.shared.pub_qos, false, payload, props)
                .map_err(|e| {
                    Error::rejected_from(
                        BACKEND,
                        true,
                        format_args!("cannot queue the publish on {topic:?}"),
                        e,
                    )
                })?;
            let (tx, rx) = oneshot::channel();
            st.waiters.push_back(tx);
            rx
        };
        let timeout = self.shared.publish_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Disconnected { backend: BACKEND }),
            Err(_) => {
                Err(Error::rejected(BACKEND, format!("no PUBACK for {topic:?} within {timeout:?}"), true))
            }
        }
    }

    /// Fails the publishes in flight with [`Error::Closed`], queues a DISCONNECT, cancels
    /// every task (also a reconnect wait or a redelivery in progress) and waits for them to
    /// end. Idempotent.
    pub(crate) async fn close(&self) {
        let first = !self.is_closed();
        self.shared.shut_down();
        self.tasks.drain(BACKEND, "MQTT connection").await;
        if first {
            tracing::info!(backend = BACKEND, role = self.shared.id.role, name = %self.shared.id.name, "MQTT connection closed");
        }
    }
}

impl Drop for Conn {
    /// As [`Conn::close`] without waiting: the tasks end by themselves.
    fn drop(&mut self) {
        self.shared.shut_down();
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails the publishes in flight with [`Error::Closed`], queues a DISCONNECT (sent by the
    /// event loop within [`DISCONNECT_GRACE`]) and cancels every task.
    fn shut_down(&self) {
        if self.cancel.is_cancelled() {
            return;
        }
        // Cancelled first, so that no publish is accepted after `fail_all` and the event loop
        // does not log the DISCONNECT's end of the connection as a loss.
        self.cancel.cancel();
        self.fail_all(|| Error::Closed { backend: BACKEND });
        let _ = self.client.try_disconnect();
    }

    /// Sends SUBSCRIBE for every filter (caller holds the state lock).
    fn subscribe(&self) {
        let filters = self.filters.iter().map(|f| Filter::new(f.clone(), self.sub_qos));
        if let Err(error) = self.client.try_subscribe_many(filters) {
            tracing::error!(backend = BACKEND, role = self.id.role, %error, "cannot queue SUBSCRIBE");
        }
    }

    fn fail_all(&self, err: impl Fn() -> Error) {
        let mut st = self.state();
        for w in st.waiters.drain(..) {
            let _ = w.send(Err(err()));
        }
        for (_, w) in st.inflight.drain() {
            let _ = w.send(Err(err()));
        }
    }

    /// The waits between connection attempts, from the first (`reconnectInitialBackoff`,
    /// doubling to `reconnectMaxBackoff`, jittered).
    fn reconnect_delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let (initial, max) = (self.reconnect_initial_backoff, self.reconnect_max_backoff);
        delays(exponential(initial, max), max)
    }

    /// Handles one event-loop event; returns true on CONNACK.
    fn on_event(&self, event: MqttEvent) -> bool {
        match event {
            MqttEvent::Incoming(Packet::ConnAck(ack)) => {
                let mut st = self.state();
                st.connected = true;
                st.broker_max_packet = ack.properties.as_ref().and_then(|p| p.max_packet_size);
                st.generation += 1;
                if st.deliveries.is_some() {
                    self.subscribe();
                }
                tracing::info!(backend = BACKEND, role = self.id.role, name = %self.id.name, client_id = %self.id.client_id, "MQTT connected");
                return true;
            }
            MqttEvent::Incoming(Packet::SubAck(ack)) => self.on_suback(&ack),
            MqttEvent::Incoming(Packet::PubAck(ack)) => self.on_puback(&ack),
            MqttEvent::Incoming(Packet::Publish(publish)) => self.on_publish(publish),
            MqttEvent::Incoming(Packet::Disconnect(d)) => {
                tracing::warn!(backend = BACKEND, role = self.id.role, reason = ?d.reason_code, "the broker sent DISCONNECT");
            }
            MqttEvent::Outgoing(Outgoing::Publish(pkid)) => {
                let mut st = self.state();
                if let Some(w) = st.waiters.pop_front() {
                    if pkid == 0 {
                        let _ = w.send(Ok(()));
                    } else {
                        st.inflight.insert(pkid, w);
                    }
                }
            }
            _ => {}
        }
        false
    }

    fn on_suback(&self, ack: &SubAck) {
        use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;
        let failed: Vec<_> =
            ack.return_codes.iter().filter(|c| !matches!(c, SubscribeReasonCode::Success(_))).collect();
        if failed.is_empty() {
            self.signal.send_modify(|n| *n += 1);
            tracing::info!(backend = BACKEND, role = self.id.role, name = %self.id.name, filters = ?self.filters, "subscribed");
        } else {
            tracing::error!(backend = BACKEND, role = self.id.role, filters = ?self.filters, codes = ?failed, "subscription refused by the broker");
        }
    }

    fn on_puback(&self, ack: &PubAck) {
        let Some(w) = self.state().inflight.remove(&ack.pkid) else { return };
        let _ = w.send(puback_result(ack.reason));
    }

    fn on_publish(&self, publish: Publish) {
        let st = self.state();
        let generation = st.generation;
        match &st.deliveries {
            Some(tx) if tx.send((publish.clone(), generation)).is_ok() => {}
            _ => {
                drop(st);
                tracing::warn!(
                    backend = BACKEND,
                    role = self.id.role,
                    "message received before start; dropped"
                );
                self.ack(&publish, generation);
            }
        }
    }

    /// Fails the publishes in flight with [`Error::Disconnected`], drops the queued requests and
    /// logs the failure; `delay` is the wait before the next attempt.
    fn on_error(&self, eventloop: &mut EventLoop, error: &ConnectionError, delay: Duration) {
        let mut st = self.state();
        let was_connected = std::mem::replace(&mut st.connected, false);
        for w in st.waiters.drain(..) {
            let _ = w.send(Err(Error::Disconnected { backend: BACKEND }));
        }
        for (_, w) in st.inflight.drain() {
            let _ = w.send(Err(Error::Disconnected { backend: BACKEND }));
        }
        // Drop queued requests (publishes already failed, stale acks, subscribes): the next
        // session starts clean and resubscribes on CONNACK.
        eventloop.clean();
        eventloop.pending.clear();
        drop(st);
        if self.cancel.is_cancelled() {
            return;
        }
        if was_connected {
            tracing::warn!(backend = BACKEND, role = self.id.role, name = %self.id.name, %error, ?delay, "MQTT connection lost; reconnecting");
        } else {
            tracing::debug!(backend = BACKEND, role = self.id.role, name = %self.id.name, %error, ?delay, "MQTT connect failed; retrying");
        }
    }

    /// Acknowledges `publish` if it came on the current connection (else the broker, with
    /// CleanStart, has forgotten it and the packet id may already be reused).
    fn ack(&self, publish: &Publish, generation: u64) {
        let st = self.state();
        if !st.connected || st.generation != generation {
            return;
        }
        if let Err(error) = self.client.try_ack(publish) {
            tracing::warn!(backend = BACKEND, role = self.id.role, %error, "cannot queue PUBACK");
        }
    }

    /// Decodes and delivers one message; returns the outcome (dropped messages are acked).
    async fn handle(&self, handler: &DynHandler, publish: &Publish) -> Outcome {
        let topic = String::from_utf8_lossy(&publish.topic);
        if !self.filters.iter().any(|f| crate::topics::matches_filter(f, &topic)) {
            tracing::warn!(backend = BACKEND, role = self.id.role, %topic, "message on an unexpected topic dropped");
            return Outcome::Dropped("unexpected topic".into());
        }
        let props = publish.properties.clone().unwrap_or_default();
        let msg = MqttMessage {
            content_type: props.content_type,
            user_properties: props.user_properties,
            payload: publish.payload.to_vec(),
        };
        match mqtt::decode(&msg) {
            Ok(event) => {
                if self.id.verify_agent_origin
                    && let Err(error) = crate::topics::check_agent_origin(&topic, &event)
                {
                    let reason = error.to_string();
                    let claimed = maestro_api::ext::get_str(&event, maestro_api::ext::CLUSTER_NAME);
                    tracing::warn!(backend = BACKEND, role = self.id.role, topic = ?topic, claimed_cluster = ?claimed,
                        id = ?event.id(), %reason, "agent event refused: it speaks for another consumer than its topic's; acknowledged and dropped");
                    handler.rejected(rejected(&topic, &publish.payload, Some(&event), &reason)).await;
                    return Outcome::Dropped(reason);
                }
                deliver(handler, event, DELIVERY_BACKOFF, &self.cancel, BACKEND).await
            }
            Err(error) => {
                tracing::warn!(backend = BACKEND, role = self.id.role, topic = ?topic, %error, "undecodable message dropped");
                let reason = error.to_string();
                handler.rejected(rejected(&topic, &publish.payload, None, &reason)).await;
                Outcome::Dropped(reason)
            }
        }
    }
}

/// A refusal the MQTT broker answered with, kept as the source of [`Error::Rejected`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MqttRefusal {
    /// The PUBACK of a QoS 1 publish carried a failure reason code (MQTT 5 §3.4.2.1).
    #[error("the broker refused the publish: {0:?}")]
    PubAck(PubAckReason),
}

/// Whether a publish the broker refused with PUBACK `reason` can succeed when sent again:
///
/// | reason code | retryable | why |
/// |---|---|---|
/// | `NotAuthorized` (0x87) | no | the broker's ACL refuses this client on this topic |
/// | `TopicNameInvalid` (0x90) | no | the topic is refused by this broker |
/// | `PayloadFormatInvalid` (0x99) | no | the payload is refused as it is |
/// | `QuotaExceeded` (0x97) | yes | a rate or administrative limit, which clears |
/// | `PacketIdentifierInUse` (0x91) | yes | client session state; a new attempt gets a new id |
/// | `UnspecifiedError` (0x80), `ImplementationSpecificError` (0x83) | yes | the broker does not say what is wrong, so nothing shows that it will not pass later |
///
/// `Success` and `NoMatchingSubscribers` are not refusals (true).
pub(crate) fn puback_is_retryable(reason: PubAckReason) -> bool {
    match reason {
        PubAckReason::NotAuthorized | PubAckReason::TopicNameInvalid | PubAckReason::PayloadFormatInvalid => {
            false
        }
        PubAckReason::Success
        | PubAckReason::NoMatchingSubscribers
        | PubAckReason::QuotaExceeded
        | PubAckReason::PacketIdentifierInUse
        | PubAckReason::UnspecifiedError
        | PubAckReason::ImplementationSpecificError => true,
    }
}

/// The outcome of a publish the broker answered with PUBACK `reason`: `Ok` for `Success` and
/// `NoMatchingSubscribers`, else [`Error::Rejected`] classified by [`puback_is_retryable`]
/// with the [`MqttRefusal`] as its source.
pub(crate) fn puback_result(reason: PubAckReason) -> Result<()> {
    match reason {
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Ok(()),
        reason => {
            let refusal = MqttRefusal::PubAck(reason);
            Err(Error::Rejected {
                backend: BACKEND,
                reason: refusal.to_string(),
                retryable: puback_is_retryable(reason),
                source: Some(Box::new(refusal)),
            })
        }
    }
}

/// Refuses, as [`Error::TooLarge`] (permanent), a PUBLISH larger than the `limit` the broker
/// announced in its CONNACK: rumqttc would fail the whole connection on it, and every attempt
/// again.
fn check_packet_size(
    topic: &str,
    qos: QoS,
    payload: &bytes::Bytes,
    props: &PublishProperties,
    limit: u32,
) -> Result<()> {
    let mut packet = Publish::new(topic, qos, payload.clone(), Some(props.clone()));
    if qos != QoS::AtMostOnce {
        packet.pkid = 1; // counted in the size like the id the packet will carry
    }
    let size = packet.size();
    if size > limit as usize {
        return Err(Error::TooLarge { backend: BACKEND, size, limit: limit as usize });
    }
    Ok(())
}

/// The event loop: poll, dispatch, and on errors wait the next reconnect delay and poll again
/// (rumqttc reconnects on the next poll; the delays start over after every CONNACK). Ends when
/// cancelled, after sending the DISCONNECT `close` queued.
async fn run(shared: Arc<Shared>, mut eventloop: EventLoop) {
    let mut delays = shared.reconnect_delays();
    while let Some(polled) = shared.cancel.run_until_cancelled(eventloop.poll()).await {
        match polled {
            Ok(event) => {
                if shared.on_event(event) {
                    delays = shared.reconnect_delays();
                }
            }
            Err(error) => {
                let delay = delays.next().unwrap_or(shared.reconnect_max_backoff);
                shared.on_error(&mut eventloop, &error, delay);
                if !pause(delay, &shared.cancel).await {
                    break;
                }
            }
        }
    }
    say_goodbye(&shared, &mut eventloop).await;
    shared.fail_all(|| Error::Closed { backend: BACKEND });
}

/// While connected, polls `eventloop` (at most [`DISCONNECT_GRACE`]) until the queued
/// DISCONNECT went out. Never polls a disconnected event loop, which would reconnect.
async fn say_goodbye(shared: &Shared, eventloop: &mut EventLoop) {
    if !shared.state().connected {
        return;
    }
    let sent = async {
        while let Ok(event) = eventloop.poll().await {
            if matches!(event, MqttEvent::Outgoing(Outgoing::Disconnect)) {
                return;
            }
        }
    };
    if tokio::time::timeout(DISCONNECT_GRACE, sent).await.is_err() {
        tracing::debug!(backend = BACKEND, role = shared.id.role, "DISCONNECT not sent in time");
    }
}

/// Delivery lanes per connection. Messages of one topic about one resource (same
/// `ce-resourceid` user property, or none) always take the same lane, so they reach the handler
/// in the order they were published: status ordering is per resource (`sequenceid`,
/// docs/protocol.md §6.2) and spec ordering per resource (`resourceversion`, §6.1). Messages about
/// different resources or consumers are handled concurrently, so the server can write the
/// statuses of many resources of one consumer in one group commit instead of one commit each.
const LANES: usize = 16;

type LaneJob = (Arc<Publish>, oneshot::Sender<Outcome>);

/// A message handed to a lane, with the connection generation it came on and where its
/// outcome goes.
type AckJob = (Arc<Publish>, u64, oneshot::Receiver<Outcome>);

/// Feeds received messages to the handler (in order per topic, see [`LANES`]) and acks each
/// one after it was handled, in arrival order (MQTT 5 §4.6: PUBACKs go out in the order the
/// PUBLISHes came). The lanes and the acker are tasks of `tasks`; everything ends when the
/// connection's token is cancelled.
async fn delivery_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    handler: DynHandler,
    tasks: Tasks,
) {
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<AckJob>();
    let lanes: Vec<mpsc::UnboundedSender<LaneJob>> = (0..LANES)
        .map(|_| {
            let (tx, lane) = mpsc::unbounded_channel::<LaneJob>();
            let run = shared.cancel.clone().run_until_cancelled_owned(run_lane(
                shared.clone(),
                lane,
                handler.clone(),
            ));
            tasks.spawn("delivery lane", run);
            tx
        })
        .collect();
    tasks.spawn("acker", shared.cancel.clone().run_until_cancelled_owned(run_acker(shared.clone(), ack_rx)));
    while let Some((publish, generation)) = shared.cancel.run_until_cancelled(rx.recv()).await.flatten() {
        let publish = Arc::new(publish);
        let (done_tx, done_rx) = oneshot::channel();
        let lane = &lanes[lane_of(&publish)];
        if lane.send((publish.clone(), done_tx)).is_err()
            || ack_tx.send((publish, generation, done_rx)).is_err()
        {
            break;
        }
    }
}

/// Handles the messages of one lane in order; stops after one that found the connection
/// closed.
async fn run_lane(shared: Arc<Shared>, mut lane: mpsc::UnboundedReceiver<LaneJob>, handler: DynHandler) {
    while let Some((publish, done)) = lane.recv().await {
        let outcome = shared.handle(&handler, &publish).await;
        let closed = outcome == Outcome::Closed;
        let _ = done.send(outcome);
        if closed {
            break;
        }
    }
}

/// Acks the messages in arrival order, each once its lane handled it.
async fn run_acker(shared: Arc<Shared>, mut ack_rx: mpsc::UnboundedReceiver<AckJob>) {
    while let Some((publish, generation, done)) = ack_rx.recv().await {
        match done.await {
            Ok(Outcome::Closed) | Err(_) => break,
            Ok(_) => shared.ack(&publish, generation),
        }
    }
}

/// The user property naming the resource an event is about (binary mode, docs/protocol.md §7.2).
const RESOURCE_ID_PROPERTY: &str = "ce-resourceid";

/// The lane of a message: a hash of its topic and its `ce-resourceid` user property (if any)
/// modulo [`LANES`].
fn lane_of(publish: &Publish) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    publish.topic.hash(&mut h);
    let resource = publish.properties.as_ref().and_then(|p| {
        p.user_properties.iter().find(|(k, _)| k == RESOURCE_ID_PROPERTY).map(|(_, v)| v.as_str())
    });
    resource.hash(&mut h);
    (h.finish() % LANES as u64) as usize
}

/// What the handler is told of a message dropped on `topic` ([`EventHandler::rejected`]).
fn rejected<'a>(
    topic: &'a str,
    payload: &'a [u8],
    event: Option<&'a Event>,
    reason: &'a str,
) -> Rejected<'a> {
    let consumer = crate::topics::agent_topic(topic)
        .map(|(crate::topics::AgentTopic::Events(c) | crate::topics::AgentTopic::Broadcast(c))| c);
    Rejected { backend: BACKEND, channel: topic, consumer, payload, event, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(topic: &str, resource: Option<&str>) -> Publish {
        let props = PublishProperties {
            user_properties: resource
                .map(|r| {
                    vec![
                        ("ce-type".to_owned(), "x".to_owned()),
                        (RESOURCE_ID_PROPERTY.to_owned(), r.to_owned()),
                    ]
                })
                .unwrap_or_default(),
            ..PublishProperties::default()
        };
        Publish::new(topic, QoS::AtLeastOnce, "{}", Some(props))
    }

    /// `close` interrupts the wait between connection attempts: with a 1 h reconnect backoff
    /// and nothing listening, the event loop is waiting out its first delay when `close` is
    /// called; `close` returns in time and every task (event loop, delivery loop, lanes, acker)
    /// has ended (not merely the drain timing out, which would log that tasks did not finish).
    #[tokio::test]
    async fn close_interrupts_the_reconnect_backoff() {
        let (logs, _capture) = maestro_transport::test_logs::Logs::capture();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        drop(listener); // nothing listens there any more
        let mut config = MqttConfig::new(format!("127.0.0.1:{port}"), crate::MqttTopics::maestro("maestro"));
        config.reconnect_initial_backoff = Duration::from_secs(3600);
        config.reconnect_max_backoff = Duration::from_secs(3600);
        let id = Identity {
            role: "agent",
            name: "c1".into(),
            client_id: "c1-client".into(),
            verify_agent_origin: false,
        };
        let filters = vec!["sources/maestro/consumers/c1/sourceevents".into()];
        let conn = Conn::open(&config, id, filters).expect("open");
        conn.start(maestro_transport::conformance::Recorder::new()).expect("start");
        logs.wait_for("MQTT connect failed; retrying").await;
        let closing = tokio::time::timeout(Duration::from_secs(10), conn.close()).await;
        closing.expect("close returns during the backoff");
        assert_eq!(conn.tasks.len(), 0, "every task of the connection ended");
        assert!(!logs.contains("did not finish"), "close waited for nothing");
        let msg = MqttMessage { content_type: None, user_properties: Vec::new(), payload: Vec::new() };
        assert!(matches!(conn.publish("a/b".into(), msg).await, Err(Error::Closed { .. })));
    }

    /// The PUBACK reason codes that cannot pass later are permanent; the others retryable.
    #[test]
    fn puback_refusals_are_classified_by_reason_code() {
        for reason in
            [PubAckReason::NotAuthorized, PubAckReason::TopicNameInvalid, PubAckReason::PayloadFormatInvalid]
        {
            let err = puback_result(reason).expect_err("a refusal");
            assert!(!err.is_retryable(), "{reason:?} must be permanent: {err}");
            assert!(err.to_string().contains(&format!("{reason:?}")), "{err}");
            let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<MqttRefusal>());
            assert_eq!(source, Some(&MqttRefusal::PubAck(reason)));
        }
        for reason in [
            PubAckReason::QuotaExceeded,
            PubAckReason::PacketIdentifierInUse,
            PubAckReason::UnspecifiedError,
            PubAckReason::ImplementationSpecificError,
        ] {
            let err = puback_result(reason).expect_err("a refusal");
            assert!(err.is_retryable(), "{reason:?} must be retryable: {err}");
        }
        assert!(puback_result(PubAckReason::Success).is_ok());
        assert!(puback_result(PubAckReason::NoMatchingSubscribers).is_ok());
    }

    /// A PUBLISH over the broker's announced maximum packet size is refused before it is sent,
    /// permanently; one that fits passes.
    #[test]
    fn packets_over_the_brokers_maximum_are_too_large() {
        let props = PublishProperties::default();
        let payload = bytes::Bytes::from(vec![b'x'; 100]);
        let err = check_packet_size("a/b", QoS::AtLeastOnce, &payload, &props, 64).expect_err("too large");
        assert!(matches!(err, Error::TooLarge { limit: 64, .. }) && !err.is_retryable(), "{err}");
        check_packet_size("a/b", QoS::AtLeastOnce, &payload, &props, 1024).expect("fits");
    }

    /// Messages about one resource keep one lane (so they stay in order); the resources of one
    /// consumer topic spread over several lanes (so they are handled concurrently).
    #[test]
    fn lanes_are_per_topic_and_resource() {
        let topic = "sources/maestro/consumers/c1/agentevents";
        assert_eq!(lane_of(&status(topic, Some("r-1"))), lane_of(&status(topic, Some("r-1"))));
        assert_eq!(
            lane_of(&status(topic, None)),
            lane_of(&Publish::new(topic, QoS::AtLeastOnce, "{}", None))
        );
        let lanes: std::collections::HashSet<usize> =
            (0..64).map(|i| lane_of(&status(topic, Some(&format!("r-{i}"))))).collect();
        assert!(lanes.len() > LANES / 2, "64 resources of one consumer took only {} lanes", lanes.len());
    }
}
