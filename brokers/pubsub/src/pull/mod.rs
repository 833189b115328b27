//! Maestro's own StreamingPull client (docs/protocol.md §7.3, "Receiving"), over the gRPC
//! API generated from `proto/google/pubsub/v1/pubsub.proto`.
//!
//! Why not the `google-cloud-pubsub` subscriber: its streams end by being dropped, which
//! resets them (HTTP/2 `RST_STREAM`), and the Pub/Sub emulator keeps routing messages to a
//! reset stream's client until their ack deadline runs out (the reproduction is
//! `pull::repro`; docs/benchmarks.md, "Known problems"). A stream here ends cleanly: what it
//! holds is nacked on the stream, the request side is closed (half-close), and the response is
//! read until the service ends it; messages that still arrive are nacked with
//! `ModifyAckDeadline` 0. Only if the service does not end the stream within the grace period
//! is it reset.
//!
//! Semantics as the library's: at-least-once (exactly-once delivery is not used: acks are not
//! confirmed, a lost ack means a redelivery, which the receivers deduplicate); acks and
//! nacks (ack deadline 0) are sent on the stream; every message held (received, not yet acked
//! or nacked) has its lease extended by the stream ack deadline every half deadline, for at
//! most `max_lease` since it was received; server-side flow control
//! (`max_outstanding_messages`, `max_outstanding_bytes`); a stream that fails with a retryable
//! status (or is ended by the service) is opened again with backoff, held leases kept; a
//! permanent status (e.g. `NOT_FOUND`, `PERMISSION_DENIED`) is reported. Messages are handed
//! on in the order the service sent them (ordering keys need nothing more).

use std::collections::HashMap;
use std::time::Duration;

use google_cloud_auth::credentials::{CacheableResource, Credentials};
use maestro_transport::retry::{CancellationToken, DropGuard, delays, exponential, pause};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::PubSubConfig;

mod proto;
#[cfg(test)]
mod repro;

pub(crate) use proto::PubsubMessage;
use proto::subscriber_client::SubscriberClient;
use proto::{AcknowledgeRequest, ModifyAckDeadlineRequest, StreamingPullRequest, StreamingPullResponse};

/// The service endpoint when none is configured.
const DEFAULT_URL: &str = "https://pubsub.googleapis.com";
/// An empty request is sent when nothing else was for this long, so that an idle stream is not
/// closed by the service (as the Google clients do).
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Most ack ids in one request (Pub/Sub limits a request's size).
const MAX_IDS_PER_REQUEST: usize = 1_000;
/// Responses buffered between a stream's reader and its loop.
const RESPONSE_BUFFER: usize = 16;

/// Why StreamingPull failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    /// The endpoint URL or its TLS settings are unusable.
    #[error("Pub/Sub endpoint {url:?}: {source}")]
    Endpoint {
        /// The URL.
        url: String,
        /// The transport's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The credentials gave no authorization headers.
    #[error("credentials: {0}")]
    Credentials(#[source] google_cloud_auth::errors::CredentialsError),
    /// The service answered with this status (opening or during the stream).
    #[error("StreamingPull on {subscription}: {status}")]
    Status {
        /// The subscription.
        subscription: String,
        /// The gRPC status.
        #[source]
        status: tonic::Status,
    },
}

impl PullError {
    /// True when trying again can succeed: a status as [`crate::error::code_is_retryable`]
    /// says, credentials when the library calls the failure transient; never for a bad
    /// endpoint.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            PullError::Endpoint { .. } => false,
            PullError::Credentials(e) => e.is_transient(),
            PullError::Status { status, .. } => status_is_retryable(status),
        }
    }

    /// True when the subscription does not exist (`NOT_FOUND`), e.g. on a broker that
    /// restarted empty.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, PullError::Status { status, .. } if status.code() == tonic::Code::NotFound)
    }
}

/// How a subscription is pulled.
#[derive(Debug, Clone)]
pub(crate) struct PullSettings {
    /// The stream ack deadline, also each lease extension (whole seconds, 10–600).
    pub(crate) ack_deadline: Duration,
    /// The longest a message is kept leased after it was received.
    pub(crate) max_lease: Duration,
    /// Server-side flow control: unacked messages outstanding on the stream (0 = no limit).
    pub(crate) max_outstanding_messages: i64,
    /// Server-side flow control: unacked bytes outstanding on the stream (0 = no limit).
    pub(crate) max_outstanding_bytes: i64,
    /// The first wait before opening a failed stream again (doubling).
    pub(crate) reconnect_initial_backoff: Duration,
    /// The longest wait before opening a failed stream again.
    pub(crate) reconnect_max_backoff: Duration,
    /// How long a closing stream waits for the service to end it before resetting it.
    pub(crate) close_grace: Duration,
    /// Bumped each time the stream is open again after it broke, once the new one delivered
    /// a response or stayed up for [`REOPEN_SETTLE`]: the subscribed signal of an agent
    /// (docs/protocol.md §5.1), whose spec resync then fetches what the broken stream took
    /// and never delivered (the service redelivers that only after its ack deadline).
    pub(crate) reopened: Option<watch::Sender<u64>>,
}

/// How long a stream opened again must stay up before it counts as a resubscription.
pub(crate) const REOPEN_SETTLE: Duration = Duration::from_secs(1);

/// The StreamingPull client of one endpoint: one gRPC channel (HTTP/2 connection, made on
/// first use and again after a failure) shared by its streams, and the credentials.
#[derive(Clone)]
pub(crate) struct Puller {
    client: SubscriberClient<Channel>,
    creds: Credentials,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller").finish_non_exhaustive()
    }
}

impl Puller {
    /// A client for `config`'s endpoint (TLS for `https://`, the native root certificates;
    /// HTTP/2 keepalive from `keepaliveSettings`), authorized by `creds`. Connects lazily.
    pub(crate) fn new(config: &PubSubConfig, creds: Credentials) -> Result<Puller, PullError> {
        let url = config.resolve_endpoint().url.unwrap_or_else(|| DEFAULT_URL.to_owned());
        let bad = |source| PullError::Endpoint { url: url.clone(), source };
        let mut endpoint = Endpoint::from_shared(url.clone()).map_err(bad)?;
        if url.starts_with("https://") {
            endpoint = endpoint.tls_config(ClientTlsConfig::new().with_native_roots()).map_err(bad)?;
        }
        let ka = &config.keepalive_settings;
        if !ka.time.is_zero() {
            endpoint = endpoint
                .http2_keep_alive_interval(ka.time)
                .keep_alive_timeout(ka.timeout)
                .keep_alive_while_idle(ka.permit_without_stream);
        }
        let channel = endpoint.connect_timeout(Duration::from_secs(10)).connect_lazy();
        Ok(Puller { client: SubscriberClient::new(channel).max_decoding_message_size(usize::MAX), creds })
    }

    /// The request metadata: the credentials' headers and the routing header.
    async fn metadata(&self, subscription: &str) -> Result<MetadataMap, PullError> {
        let headers = match self.creds.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            Ok(CacheableResource::NotModified) => http::HeaderMap::new(),
            Err(e) => return Err(PullError::Credentials(e)),
        };
        let mut md = MetadataMap::from_headers(headers);
        if let Ok(v) = MetadataValue::try_from(format!("subscription={subscription}")) {
            md.insert("x-goog-request-params", v);
        }
        Ok(md)
    }

    /// Acks (`deadline` `None`) or sets the ack deadline of `ids` outside a stream.
    async fn unary(
        &self,
        subscription: &str,
        ids: Vec<String>,
        deadline: Option<i32>,
    ) -> Result<(), PullError> {
        let failed = |status| PullError::Status { subscription: subscription.to_owned(), status };
        let mut client = self.client.clone();
        let md = self.metadata(subscription).await?;
        for chunk in ids.chunks(MAX_IDS_PER_REQUEST) {
            let md = md.clone();
            let ack_ids = chunk.to_vec();
            let subscription = subscription.to_owned();
            match deadline {
                None => {
                    let mut req = tonic::Request::new(AcknowledgeRequest { subscription, ack_ids });
                    *req.metadata_mut() = md;
                    client.acknowledge(req).await.map_err(failed)?;
                }
                Some(ack_deadline_seconds) => {
                    let body = ModifyAckDeadlineRequest { subscription, ack_ids, ack_deadline_seconds };
                    let mut req = tonic::Request::new(body);
                    *req.metadata_mut() = md;
                    client.modify_ack_deadline(req).await.map_err(failed)?;
                }
            }
        }
        Ok(())
    }

    /// Starts pulling `subscription`: a task opens the stream (and opens it again after a
    /// retryable failure) and hands on the messages; see [`PullStream`].
    pub(crate) fn subscribe(&self, subscription: String, settings: PullSettings) -> PullStream {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (actions_tx, actions_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let (done_tx, done_rx) = watch::channel(false);
        let task = StreamTask {
            puller: self.clone(),
            subscription,
            client_id: uuid::Uuid::new_v4().to_string(),
            settings,
            out: out_tx,
            actions_tx,
            actions: actions_rx,
            leases: HashMap::new(),
            cancel: cancel.clone(),
            reopening: false,
        };
        tokio::spawn(async move {
            task.run().await;
            done_tx.send_replace(true);
        });
        PullStream {
            rx: out_rx,
            token: ShutdownToken { cancel: cancel.clone(), done: done_rx },
            _guard: cancel.drop_guard(),
        }
    }
}

/// A message received, with the handle that acks or nacks it.
#[derive(Debug)]
pub(crate) struct Received {
    /// The message.
    pub(crate) message: PubsubMessage,
    /// Acks or nacks it; dropping it nacks it.
    pub(crate) handle: AckHandle,
}

/// What the application decided about a message.
#[derive(Debug)]
enum Action {
    Ack(String),
    Nack(String),
}

/// Acks or nacks one received message (on the stream it came from, or, once that closed, not
/// at all: the service then redelivers it after its deadline). Dropped without either: nack.
#[derive(Debug)]
pub(crate) struct AckHandle {
    ack_id: String,
    actions: mpsc::UnboundedSender<Action>,
    done: bool,
}

impl AckHandle {
    /// Acknowledges the message: the service does not deliver it again (at least once: unless
    /// the ack is lost).
    pub(crate) fn ack(mut self) {
        self.done = true;
        let _ = self.actions.send(Action::Ack(std::mem::take(&mut self.ack_id)));
    }

    /// Gives the message back (ack deadline 0): the service redelivers it at once.
    pub(crate) fn nack(mut self) {
        self.done = true;
        let _ = self.actions.send(Action::Nack(std::mem::take(&mut self.ack_id)));
    }
}

impl Drop for AckHandle {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.actions.send(Action::Nack(std::mem::take(&mut self.ack_id)));
        }
    }
}

/// Signals a [`PullStream`] to close and waits until it has (cleanly, or reset after the grace
/// period).
#[derive(Debug, Clone)]
pub(crate) struct ShutdownToken {
    cancel: CancellationToken,
    done: watch::Receiver<bool>,
}

impl ShutdownToken {
    /// Closes the stream: nacks what it holds, half-closes it, and waits for the service to end
    /// it (nacking what still arrives), at most the grace period.
    pub(crate) async fn shutdown(&self) {
        self.cancel.cancel();
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}

/// The messages of one subscription, in the order the service sent them. Dropping it closes
/// the stream as [`ShutdownToken::shutdown`] does, without waiting.
#[derive(Debug)]
pub(crate) struct PullStream {
    rx: mpsc::UnboundedReceiver<Result<Received, PullError>>,
    token: ShutdownToken,
    _guard: DropGuard,
}

impl PullStream {
    /// The next message; an error when the stream failed for good (then nothing follows);
    /// `None` once closed.
    pub(crate) async fn next(&mut self) -> Option<Result<Received, PullError>> {
        self.rx.recv().await
    }

    /// A token that closes this stream.
    pub(crate) fn shutdown_token(&self) -> ShutdownToken {
        self.token.clone()
    }
}

/// Why one stream (one open of StreamingPull) ended.
enum StreamEnd {
    /// Closed on request.
    Closed,
    /// The service ended it or it failed; `None` = ended without an error.
    Broken(Option<tonic::Status>),
}

/// The task behind a [`PullStream`].
struct StreamTask {
    puller: Puller,
    subscription: String,
    /// Sent when opening; the same for every open of this stream, so the service can carry
    /// its state over to the new one.
    client_id: String,
    settings: PullSettings,
    out: mpsc::UnboundedSender<Result<Received, PullError>>,
    /// Cloned into each [`AckHandle`].
    actions_tx: mpsc::UnboundedSender<Action>,
    actions: mpsc::UnboundedReceiver<Action>,
    /// Held messages: ack id → when received.
    leases: HashMap<String, Instant>,
    cancel: CancellationToken,
    /// The stream broke and was not announced open again yet ([`PullSettings::reopened`]).
    reopening: bool,
}

impl StreamTask {
    /// A stream that broke is open again: bumps [`PullSettings::reopened`], once.
    fn announce_reopened(&mut self) {
        if !std::mem::take(&mut self.reopening) {
            return;
        }
        if let Some(signal) = &self.settings.reopened {
            signal.send_modify(|n| *n += 1);
            tracing::info!(backend = crate::BACKEND, subscription = %self.subscription, "StreamingPull open again after it broke: resubscribed");
        }
    }

    fn failed(&self, status: tonic::Status) -> PullError {
        PullError::Status { subscription: self.subscription.clone(), status }
    }

    fn ack_deadline_seconds(&self) -> i32 {
        i32::try_from(self.settings.ack_deadline.as_secs().clamp(10, 600)).unwrap_or(10)
    }

    /// Opens the stream again and again until closed or failed for good.
    async fn run(mut self) {
        let (initial, max) = (self.settings.reconnect_initial_backoff, self.settings.reconnect_max_backoff);
        let mut waits = delays(exponential(initial, max), max);
        loop {
            let opened = Instant::now();
            let md = match self.puller.metadata(&self.subscription).await {
                Ok(md) => md,
                Err(e) if e.is_retryable() => {
                    tracing::debug!(backend = crate::BACKEND, subscription = %self.subscription, error = %e, "StreamingPull credentials failed; retrying");
                    if !pause(waits.next().unwrap_or(max), &self.cancel).await {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    let _ = self.out.send(Err(e));
                    break;
                }
            };
            let (received, end) = self.stream(md).await;
            match end {
                StreamEnd::Closed => return,
                StreamEnd::Broken(Some(status)) if !status_is_retryable(&status) => {
                    let _ = self.out.send(Err(self.failed(status)));
                    break;
                }
                StreamEnd::Broken(status) => {
                    tracing::debug!(backend = crate::BACKEND, subscription = %self.subscription, ?status, "StreamingPull ended; opening it again");
                    self.reopening = true;
                }
            }
            if received || opened.elapsed() > Duration::from_secs(60) {
                waits = delays(exponential(initial, max), max);
            }
            if !pause(waits.next().unwrap_or(max), &self.cancel).await {
                break;
            }
        }
        // Closed (or failed for good) with no stream open: give back what is held.
        self.nack_outside(Vec::new()).await;
    }

    /// One open of StreamingPull, until it breaks or is closed; whether it received anything.
    async fn stream(&mut self, md: MetadataMap) -> (bool, StreamEnd) {
        let (req_tx, req_rx) = mpsc::channel::<StreamingPullRequest>(64);
        let first = StreamingPullRequest {
            subscription: self.subscription.clone(),
            stream_ack_deadline_seconds: self.ack_deadline_seconds(),
            client_id: self.client_id.clone(),
            max_outstanding_messages: self.settings.max_outstanding_messages,
            max_outstanding_bytes: self.settings.max_outstanding_bytes,
            // Heartbeats (empty responses) are welcome.
            protocol_version: 1,
            ..Default::default()
        };
        if req_tx.try_send(first).is_err() {
            return (false, StreamEnd::Broken(None));
        }
        let mut req = tonic::Request::new(ReceiverStream::new(req_rx));
        *req.metadata_mut() = md;
        let mut responses = spawn_reader(self.puller.client.clone(), req);
        let mut req_tx = Some(req_tx);
        let period = (self.settings.ack_deadline / 2).max(Duration::from_secs(1));
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        let mut last_sent = Instant::now();
        let mut received = false;
        let settled = tokio::time::sleep(REOPEN_SETTLE);
        tokio::pin!(settled);
        let end = loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break StreamEnd::Closed,
                () = &mut settled, if self.reopening => self.announce_reopened(),
                r = responses.recv() => match r {
                    Some(Ok(resp)) => {
                        self.announce_reopened();
                        received |= !resp.received_messages.is_empty();
                        if !self.hand_on(resp) {
                            // Nobody reads any more: close.
                            self.cancel.cancel();
                        }
                    }
                    Some(Err(status)) => break StreamEnd::Broken(Some(status)),
                    None => break StreamEnd::Broken(None),
                },
                Some(action) = self.actions.recv() => {
                    let req = self.decided(action);
                    if let Some(tx) = &req_tx && tx.send(req).await.is_err() {
                        break StreamEnd::Broken(None);
                    }
                    last_sent = Instant::now();
                }
                _ = tick.tick() => {
                    let reqs = self.extension(last_sent.elapsed() >= KEEPALIVE);
                    if !reqs.is_empty() {
                        last_sent = Instant::now();
                    }
                    for req in reqs {
                        if let Some(tx) = &req_tx && tx.send(req).await.is_err() {
                            break;
                        }
                    }
                }
            }
        };
        if matches!(end, StreamEnd::Broken(_)) {
            return (received, end);
        }
        // Closing: give back what is held (and send what was decided) on the stream, end the
        // request side, and read until the service ends the stream.
        let mut req = StreamingPullRequest::default();
        while let Ok(action) = self.actions.try_recv() {
            merge(&mut req, self.decided(action));
        }
        let held: Vec<String> = self.leases.drain().map(|(id, _)| id).collect();
        req.modify_deadline_seconds.extend(std::iter::repeat_n(0, held.len()));
        req.modify_deadline_ack_ids.extend(held);
        if let Some(tx) = req_tx.take() {
            for part in split(req) {
                if tx.send(part).await.is_err() {
                    break;
                }
            }
            drop(tx); // half-close
        }
        let mut late = Vec::new();
        let drained = tokio::time::timeout(self.settings.close_grace, async {
            while let Some(r) = responses.recv().await {
                match r {
                    Ok(resp) => late.extend(resp.received_messages.into_iter().map(|m| m.ack_id)),
                    Err(status) => return Some(status),
                }
            }
            None
        })
        .await;
        match drained {
            Ok(None) => {
                tracing::debug!(backend = crate::BACKEND, subscription = %self.subscription, late = late.len(), "StreamingPull closed")
            }
            Ok(Some(status)) => {
                tracing::debug!(backend = crate::BACKEND, subscription = %self.subscription, %status, "StreamingPull closed with an error")
            }
            Err(_) => {
                tracing::debug!(backend = crate::BACKEND, subscription = %self.subscription, "StreamingPull not ended by the service in time; reset")
            }
        }
        drop(responses); // resets the stream if the service has not ended it
        self.nack_outside(late).await;
        (received, StreamEnd::Closed)
    }

    /// Hands on the messages of one response; false when nobody reads any more.
    fn hand_on(&mut self, resp: StreamingPullResponse) -> bool {
        let now = Instant::now();
        for rm in resp.received_messages {
            let Some(message) = rm.message else { continue };
            self.leases.insert(rm.ack_id.clone(), now);
            let handle = AckHandle { ack_id: rm.ack_id, actions: self.actions_tx.clone(), done: false };
            if self.out.send(Ok(Received { message, handle })).is_err() {
                return false;
            }
        }
        true
    }

    /// The request that sends `first` and every other decision already made.
    fn decided(&mut self, first: Action) -> StreamingPullRequest {
        let mut req = StreamingPullRequest::default();
        let mut next = Some(first);
        let mut n = 0;
        while let Some(action) = next {
            match action {
                Action::Ack(id) => {
                    self.leases.remove(&id);
                    req.ack_ids.push(id);
                }
                Action::Nack(id) => {
                    self.leases.remove(&id);
                    req.modify_deadline_seconds.push(0);
                    req.modify_deadline_ack_ids.push(id);
                }
            }
            n += 1;
            next = if n < MAX_IDS_PER_REQUEST { self.actions.try_recv().ok() } else { None };
        }
        req
    }

    /// The lease extension of every held message still within `max_lease` (the others are
    /// let go: the service redelivers them after their deadline); an empty request when there
    /// is none and `keepalive`; else nothing.
    fn extension(&mut self, keepalive: bool) -> Vec<StreamingPullRequest> {
        let max_lease = self.settings.max_lease;
        self.leases.retain(|_, at| at.elapsed() < max_lease);
        if self.leases.is_empty() {
            return if keepalive { vec![StreamingPullRequest::default()] } else { Vec::new() };
        }
        let deadline = self.ack_deadline_seconds();
        let ids: Vec<String> = self.leases.keys().cloned().collect();
        split(StreamingPullRequest {
            modify_deadline_seconds: vec![deadline; ids.len()],
            modify_deadline_ack_ids: ids,
            ..Default::default()
        })
    }

    /// With no stream open: nacks `late` and what is still held, and sends the decisions made
    /// since, with unary calls (best effort, within the grace period).
    async fn nack_outside(&mut self, mut late: Vec<String>) {
        let mut acks = Vec::new();
        while let Ok(action) = self.actions.try_recv() {
            match action {
                Action::Ack(id) => acks.push(id),
                Action::Nack(id) => late.push(id),
            }
        }
        late.extend(self.leases.drain().map(|(id, _)| id));
        if late.is_empty() && acks.is_empty() {
            return;
        }
        let sub = self.subscription.clone();
        let calls = async {
            if !acks.is_empty() {
                self.puller.unary(&sub, acks, None).await?;
            }
            if !late.is_empty() {
                self.puller.unary(&sub, late, Some(0)).await?;
            }
            Ok::<(), PullError>(())
        };
        match tokio::time::timeout(self.settings.close_grace, calls).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(backend = crate::BACKEND, subscription = %sub, error = %e, "nack after close failed")
            }
            Err(_) => {
                tracing::debug!(backend = crate::BACKEND, subscription = %sub, "nack after close timed out")
            }
        }
    }
}

/// Whether `status` is worth trying again, by [`crate::error::code_is_retryable`] (written for
/// the Google API codes, which are gRPC's).
fn status_is_retryable(status: &tonic::Status) -> bool {
    crate::error::code_is_retryable(google_cloud_gax::error::rpc::Code::from(status.code() as i32))
}

/// Adds `more`'s acks and deadline changes to `req`.
fn merge(req: &mut StreamingPullRequest, more: StreamingPullRequest) {
    req.ack_ids.extend(more.ack_ids);
    req.modify_deadline_seconds.extend(more.modify_deadline_seconds);
    req.modify_deadline_ack_ids.extend(more.modify_deadline_ack_ids);
}

/// `req` as requests of at most [`MAX_IDS_PER_REQUEST`] ids of each kind.
fn split(req: StreamingPullRequest) -> Vec<StreamingPullRequest> {
    let acks: Vec<Vec<String>> = req.ack_ids.chunks(MAX_IDS_PER_REQUEST).map(<[String]>::to_vec).collect();
    let mods: Vec<Vec<String>> =
        req.modify_deadline_ack_ids.chunks(MAX_IDS_PER_REQUEST).map(<[String]>::to_vec).collect();
    let secs: Vec<Vec<i32>> =
        req.modify_deadline_seconds.chunks(MAX_IDS_PER_REQUEST).map(<[i32]>::to_vec).collect();
    let n = acks.len().max(mods.len());
    let (mut acks, mut mods, mut secs) = (acks.into_iter(), mods.into_iter(), secs.into_iter());
    (0..n)
        .map(|_| StreamingPullRequest {
            ack_ids: acks.next().unwrap_or_default(),
            modify_deadline_ack_ids: mods.next().unwrap_or_default(),
            modify_deadline_seconds: secs.next().unwrap_or_default(),
            ..Default::default()
        })
        .collect()
}

/// Opens StreamingPull with `req` on a task of its own and forwards the responses (and the
/// final error, if any); the channel closes when the stream has ended. The response stream is
/// dropped only after it ended, or when the receiver is gone (which resets the stream).
fn spawn_reader(
    mut client: SubscriberClient<Channel>,
    req: tonic::Request<ReceiverStream<StreamingPullRequest>>,
) -> mpsc::Receiver<Result<StreamingPullResponse, tonic::Status>> {
    let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
    tokio::spawn(async move {
        let mut stream = tokio::select! {
            r = client.streaming_pull(req) => match r {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            },
            () = tx.closed() => return,
        };
        loop {
            let next = tokio::select! {
                m = stream.message() => m,
                () = tx.closed() => return,
            };
            match next {
                Ok(Some(resp)) => {
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
    });
    rx
}
