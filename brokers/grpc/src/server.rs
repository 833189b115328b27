//! The server-hosted agent endpoint ([`GrpcBroker`], the source role): a tonic server for the
//! OCM `CloudEventService` (docs/protocol.md §7.1.3) that agents subscribe to and publish to.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use async_trait::async_trait;
use futures::StreamExt;
use maestro_api::pb::cloud_event_service_server::{CloudEventService, CloudEventServiceServer};
use maestro_api::pb::{self, PublishRequest, SubscriptionRequest};
use maestro_api::types::{EventType, HEARTBEAT, MANIFEST_BUNDLES};
use maestro_api::{AttributesReader, Event, ext, grpc};
use maestro_auth::Gate;
use maestro_transport::deliver::{DELIVERY_BACKOFF, Outcome, deliver};
use maestro_transport::retry::CancellationToken;
use maestro_transport::{DynHandler, Error, Result, SourceTransport, Subscribed};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::conn::{Connections, accept_loop};
use crate::queue::{Queue, QueueTx, SendError, queue};
use crate::stream::SubscribeStream;
use crate::subscribe::Routes;
use crate::{BACKEND, GrpcBrokerConfig, SUBSCRIPTION_ID_HEADER};
use maestro_tls::grpc_listener::HandshakeDeadline;
use maestro_transport::tasks::Tasks;

/// Extra room over `max_event_bytes` for the protobuf framing of one message.
pub(crate) const MESSAGE_OVERHEAD: usize = 64 * 1024;

/// What a Subscribe stream's queue holds: one pointer per event (an event routed to several
/// subscribers is encoded once and shared).
pub(crate) type Queued = Arc<pb::CloudEvent>;

/// A live Subscribe stream. Its data type is always [`MANIFEST_BUNDLES`] (the only one
/// [`validate_subscription`] lets in), so it is not stored per subscriber.
struct Subscriber {
    cluster: String,
    subscription_id: Uuid,
    /// Dropped to end the stream (after the events already queued).
    tx: QueueTx,
}

#[derive(Default)]
struct Registry {
    paused: bool,
    next_id: u64,
    subs: HashMap<u64, Subscriber>,
    /// Live streams per consumer (the keys of `subs` by `cluster`), for the per-consumer limit.
    per_consumer: HashMap<String, usize>,
}

impl Registry {
    /// Removes subscriber `id`, freeing its consumer's slot.
    fn take(&mut self, id: u64) -> Option<Subscriber> {
        let sub = self.subs.remove(&id)?;
        if let Some(n) = self.per_consumer.get_mut(&sub.cluster) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_consumer.remove(&sub.cluster);
            }
        }
        Some(sub)
    }

    /// Removes every subscriber.
    fn take_all(&mut self) -> Vec<Subscriber> {
        self.per_consumer.clear();
        self.subs.drain().map(|(_, sub)| sub).collect()
    }

    /// Refuses one more stream of `consumer` over the per-consumer or the total limit
    /// (docs/security.md, "Limits").
    fn check_limits(&self, consumer: &str, config: &GrpcBrokerConfig) -> std::result::Result<(), Status> {
        let total = self.subs.len();
        if total >= config.max_streams {
            tracing::warn!(
                backend = BACKEND,
                consumer,
                total,
                limit = config.max_streams,
                "Subscribe refused: total stream limit reached"
            );
            return Err(Status::resource_exhausted(format!(
                "the broker's limit of {} concurrent Subscribe streams in total is reached",
                config.max_streams
            )));
        }
        let of_consumer = self.per_consumer.get(consumer).copied().unwrap_or(0);
        if of_consumer >= config.max_streams_per_consumer {
            tracing::warn!(
                backend = BACKEND,
                consumer,
                streams = of_consumer,
                limit = config.max_streams_per_consumer,
                "Subscribe refused: per-consumer stream limit reached"
            );
            return Err(Status::resource_exhausted(format!(
                "consumer {consumer:?} already has {of_consumer} Subscribe streams, the limit per consumer"
            )));
        }
        Ok(())
    }
}

pub(crate) struct Shared {
    pub(crate) config: GrpcBrokerConfig,
    /// Who may subscribe and publish as which consumer (docs/security.md).
    gate: Gate,
    registry: Mutex<Registry>,
    handler: OnceLock<DynHandler>,
    /// Cancelled when the broker closes: stops accepting and serving, ends every stream and
    /// every delivery in progress.
    cancel: CancellationToken,
    /// The accept loop, the TLS handshakes and the server (Subscribe streams have no task:
    /// `crate::stream`).
    tasks: Tasks,
    signal: watch::Sender<u64>,
    conns: Arc<Connections>,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes a subscriber: its stream ends once the events already queued are sent.
    pub(crate) fn remove(&self, id: u64, reason: &str) {
        if let Some(sub) = self.registry().take(id) {
            tracing::info!(backend = BACKEND, cluster = %sub.cluster, subscription_id = %sub.subscription_id, reason, "subscriber removed");
        }
    }

    /// Removes every subscriber; `pause` keeps new ones out until [`Shared::unpause`].
    fn remove_all(&self, pause: bool) {
        let mut reg = self.registry();
        reg.paused |= pause;
        drop(reg.take_all());
    }

    fn unpause(&self) {
        self.registry().paused = false;
    }
}

/// The hosted gRPC broker: serves `Subscribe`/`Publish` for agents and implements
/// [`SourceTransport`] for the server (docs/protocol.md §7.1.3).
///
/// Created with [`GrpcBroker::bind`]; stopped with [`SourceTransport::close`] (also on drop).
pub struct GrpcBroker {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// The TLS identity while it serves TLS (kept alive: dropping it stops its file checks).
    _tls: Option<maestro_tls::ReloadingServerTls>,
}

impl fmt::Debug for GrpcBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcBroker").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl GrpcBroker {
    /// Binds `config.bind_address` and starts serving (over TLS with `config.tls`). The
    /// subscribed signal is 1 on return.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad configuration or TLS files that cannot be read or do
    /// not match (the message names the file); [`Error::Other`] when the address cannot be
    /// bound.
    pub async fn bind(config: GrpcBrokerConfig) -> Result<Arc<GrpcBroker>> {
        GrpcBroker::bind_with_gate(config, Gate::open()).await
    }

    /// As [`GrpcBroker::bind`], with `gate` authenticating every agent and confining it to the
    /// consumers it may act as (docs/security.md, "Agent broker"): a Subscribe for another
    /// consumer and a Publish whose `clustername` is another consumer are refused with
    /// `PERMISSION_DENIED`, so an agent never receives another cluster's specs and never
    /// writes another cluster's statuses or asks for its resync.
    ///
    /// An authorized Subscribe is then refused with `NOT_FOUND` for a consumer
    /// `config.consumers` does not know (`UNAVAILABLE` when it cannot answer), and with
    /// `RESOURCE_EXHAUSTED` over `config.max_streams_per_consumer` or `config.max_streams`;
    /// connections follow `config.listener` (docs/security.md, "Limits").
    ///
    /// # Errors
    /// As [`GrpcBroker::bind`].
    pub async fn bind_with_gate(config: GrpcBrokerConfig, gate: Gate) -> Result<Arc<GrpcBroker>> {
        config.validate()?;
        // Not retryable: nothing binds again by itself; an address in use or not allowed needs
        // the operator.
        let io_err = |e: std::io::Error| Error::other(BACKEND, false, e);
        let listener = TcpListener::bind(config.bind_address).await.map_err(io_err)?;
        let local_addr = listener.local_addr().map_err(io_err)?;
        let cancel = CancellationToken::new();
        let conns = Arc::new(Connections::new(cancel.child_token()));
        let (signal, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            config,
            gate,
            registry: Mutex::new(Registry::default()),
            handler: OnceLock::new(),
            cancel,
            tasks: Tasks::default(),
            signal,
            conns: conns.clone(),
        });
        let tls = match &shared.config.tls {
            Some(files) => Some(
                maestro_tls::ReloadingServerTls::start(
                    files.clone(),
                    maestro_tls::ClientAuth::Required,
                    maestro_tls::RELOAD_INTERVAL,
                )
                .await
                .map_err(|e| Error::invalid_config_from(BACKEND, "TLS", e))?,
            ),
            None => None,
        };
        spawn_serving(&shared, listener, conns, tls.as_ref());
        shared.signal.send_replace(1);
        warn_if_exposed(local_addr, tls.is_some(), &shared.gate);
        let c = &shared.config;
        tracing::info!(backend = BACKEND, %local_addr, tls = tls.is_some(), authn = %shared.gate.authn(),
            max_streams = c.max_streams, max_streams_per_consumer = c.max_streams_per_consumer,
            registered_consumers_only = c.consumers.is_some(), listener = ?c.listener, "gRPC broker serving");
        Ok(Arc::new(GrpcBroker { shared, local_addr, _tls: tls }))
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The consumers with at least one live Subscribe stream, sorted, without duplicates
    /// (for readiness checks and metrics).
    pub fn connected_consumers(&self) -> Vec<String> {
        let mut out: Vec<String> = self.shared.registry().subs.values().map(|s| s.cluster.clone()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// The number of live Subscribe streams, counted against `max_streams` (for metrics).
    pub fn stream_count(&self) -> usize {
        self.shared.registry().subs.len()
    }

    /// The number of open agent connections (for metrics).
    pub fn connection_count(&self) -> usize {
        self.shared.conns.len()
    }

    /// Test/operations hook: simulates a broker outage. Stops serving, ends every Subscribe
    /// stream and cuts every connection (agents see their stream end and publishes fail);
    /// new connections are refused until [`GrpcBroker::resume`]. The listener stays bound.
    pub fn pause(&self) {
        self.shared.remove_all(true);
        self.shared.conns.pause();
        tracing::warn!(backend = BACKEND, addr = %self.local_addr, "gRPC broker paused");
    }

    /// Test/operations hook: serves again on the same address after [`GrpcBroker::pause`] and
    /// bumps the subscribed signal.
    pub fn resume(&self) {
        if self.shared.cancel.is_cancelled() {
            return;
        }
        self.shared.unpause();
        self.shared.conns.resume();
        self.shared.signal.send_modify(|n| *n += 1);
        tracing::info!(backend = BACKEND, addr = %self.local_addr, "gRPC broker resumed");
    }

    /// Cancels every task of the broker (they end by themselves), ends every Subscribe stream
    /// and cuts every connection. Idempotent.
    fn shutdown(&self) {
        if self.shared.cancel.is_cancelled() {
            return;
        }
        self.shared.cancel.cancel();
        self.shared.remove_all(true);
        self.shared.conns.close();
        tracing::info!(backend = BACKEND, addr = %self.local_addr, "gRPC broker closed");
    }

    /// Routes `event` to the matching subscribers; see [`SourceTransport::publish`].
    async fn route(&self, event: &Event) -> Result<()> {
        let shared = &self.shared;
        let cluster = ext::get_str(event, ext::CLUSTER_NAME).unwrap_or_default();
        let data_type = EventType::parse(event.ty()).map_err(|e| Error::encode_from(BACKEND, e))?.data_type;
        let targets: Vec<(u64, Arc<Queue>)> = if data_type == MANIFEST_BUNDLES {
            shared
                .registry()
                .subs
                .iter()
                .filter(|(_, s)| cluster.is_empty() || s.cluster == cluster)
                .map(|(id, s)| (*id, s.tx.queue()))
                .collect()
        } else {
            Vec::new()
        };
        let mut msg = Some(Arc::new(grpc::to_proto(event)));
        let (mut queued, last) = (0usize, targets.len().saturating_sub(1));
        for (i, (id, tx)) in targets.into_iter().enumerate() {
            // The last subscriber takes the event itself, so a lone subscriber's stream can
            // unwrap it without a copy.
            let item = if i == last { msg.take() } else { msg.clone() };
            let Some(item) = item else { break };
            match tx.send_timeout(item, shared.config.send_timeout).await {
                Ok(()) => queued += 1,
                Err(SendError::Timeout) => shared.remove(id, "stream buffer full"),
                Err(SendError::Closed) => shared.remove(id, "stream closed"),
            }
        }
        if queued == 0 && !cluster.is_empty() {
            return Err(Error::NoSubscriber { backend: BACKEND, consumer: cluster });
        }
        tracing::debug!(backend = BACKEND, id = event.id(), ty = event.ty(), %cluster, queued, "event queued");
        Ok(())
    }
}

impl Drop for GrpcBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Spawns the accept loop, the TLS handshakes (with `tls`) and the server on the broker's
/// tasks; all of them end when the broker's token is cancelled.
fn spawn_serving(
    shared: &Arc<Shared>,
    listener: TcpListener,
    conns: Arc<Connections>,
    tls: Option<&maestro_tls::ReloadingServerTls>,
) {
    let (conn_tx, conn_rx) = mpsc::channel(16);
    let (tasks, cancel) = (&shared.tasks, &shared.cancel);
    tasks.spawn("accept loop", accept_loop(listener, conns, conn_tx, cancel.clone()));
    match tls {
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config_with_alpn(&[b"h2"]));
            let (tls_tx, tls_rx) = mpsc::channel(16);
            let handshakes =
                crate::conn::handshakes(conn_rx, acceptor, tls_tx, tasks.clone(), cancel.clone());
            tasks.spawn("TLS handshakes", handshakes);
            tasks.spawn("server", serve(shared.clone(), ReceiverStream::new(tls_rx)));
        }
        None => {
            tasks.spawn("server", serve(shared.clone(), ReceiverStream::new(conn_rx)));
        }
    }
}

/// Serves the connections of `incoming` with the listener settings of `shared.config`
/// (docs/security.md, "Limits") until the broker's token is cancelled.
async fn serve<IO>(shared: Arc<Shared>, incoming: ReceiverStream<std::io::Result<IO>>)
where
    IO: tonic::transport::server::Connected
        + tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + Unpin
        + Send
        + 'static,
{
    let listener = shared.config.listener.clone();
    let stop = shared.cancel.clone().cancelled_owned();
    let send_limit = shared.config.max_event_bytes.saturating_add(MESSAGE_OVERHEAD);
    let broker = Arc::new(BrokerService { shared });
    let generated = CloudEventServiceServer::from_arc(broker.clone())
        .max_decoding_message_size(listener.max_receive_message_bytes)
        .max_encoding_message_size(send_limit);
    let svc = Routes::new(generated, broker, listener.max_receive_message_bytes, send_limit);
    let timeout = listener.connection_timeout.filter(|d| !d.is_zero());
    let incoming =
        incoming.map(move |conn| conn.map(|io| HandshakeDeadline::new("grpc-broker", io, timeout)));
    let result =
        listener.server_builder().add_service(svc).serve_with_incoming_shutdown(incoming, stop).await;
    if let Err(error) = result {
        tracing::error!(backend = BACKEND, %error, "gRPC broker server failed");
    }
}

#[async_trait]
impl SourceTransport for GrpcBroker {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> maestro_transport::Capabilities {
        maestro_transport::Capabilities::SERVER_HOSTED
    }

    fn connected_consumers(&self) -> Option<Vec<String>> {
        Some(GrpcBroker::connected_consumers(self))
    }

    /// Queues `event` on every Subscribe stream of its `clustername` (all streams when it is
    /// empty). Waits up to `send_timeout` for room in a full stream buffer; a stream that stays
    /// full is dropped as dead.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::TooLarge`] over `max_event_bytes`; [`Error::Encode`] for an
    /// unparseable type; [`Error::NoSubscriber`] when no stream of that consumer took it.
    async fn publish(&self, event: &Event) -> Result<()> {
        if self.shared.cancel.is_cancelled() {
            return Err(Error::Closed { backend: BACKEND });
        }
        let size = maestro_transport::event_size(event);
        let limit = self.shared.config.max_event_bytes;
        if size > limit {
            return Err(Error::TooLarge { backend: BACKEND, size, limit });
        }
        self.route(event).await
    }

    async fn start(&self, handler: DynHandler) -> Result<()> {
        if self.shared.cancel.is_cancelled() {
            return Err(Error::Closed { backend: BACKEND });
        }
        self.shared.handler.set(handler).map_err(|_| Error::AlreadyStarted { backend: BACKEND })
    }

    fn subscribed(&self) -> Subscribed {
        self.shared.signal.subscribe()
    }

    fn max_event_bytes(&self) -> usize {
        self.shared.config.max_event_bytes
    }

    /// Stops serving (see [`GrpcBroker::pause`]: streams end, connections are cut) for good,
    /// then waits for the broker's tasks to end. Idempotent.
    async fn close(&self) {
        self.shutdown();
        self.shared.tasks.drain(BACKEND, "gRPC broker").await;
    }
}

/// Logs a loud warning when the broker is reachable from other hosts without TLS or without
/// authentication: any client could then subscribe as any consumer (docs/security.md).
fn warn_if_exposed(addr: SocketAddr, tls: bool, gate: &Gate) {
    if addr.ip().is_loopback() {
        return;
    }
    if !tls {
        tracing::warn!(backend = BACKEND, %addr, "INSECURE: the agent broker is served WITHOUT TLS on a non-loopback address: specs (Secrets included) cross the network in clear text; set --grpc-broker-tls-cert-file and --grpc-broker-tls-key-file");
    }
    if gate.is_open() {
        tracing::warn!(backend = BACKEND, %addr, "INSECURE: the agent broker authenticates NOBODY on a non-loopback address: any client can subscribe as any consumer and read its specs; set --grpc-broker-client-ca-file (mtls) or --grpc-broker-authn-type token");
    }
}

/// The tonic service (Subscribe is served through `crate::subscribe::Routes`).
pub(crate) struct BrokerService {
    shared: Arc<Shared>,
}

impl BrokerService {
    fn register(&self, req: &SubscriptionRequest, tx: QueueTx) -> Result<(u64, Uuid), Status> {
        let mut reg = self.shared.registry();
        if reg.paused || self.shared.cancel.is_cancelled() {
            return Err(Status::unavailable("the broker is not serving"));
        }
        reg.check_limits(&req.cluster_name, &self.shared.config)?;
        let id = reg.next_id;
        reg.next_id += 1;
        let subscription_id = Uuid::new_v4();
        *reg.per_consumer.entry(req.cluster_name.clone()).or_default() += 1;
        reg.subs.insert(id, Subscriber { cluster: req.cluster_name.clone(), subscription_id, tx });
        Ok((id, subscription_id))
    }
}

impl BrokerService {
    /// Authenticates, validates and authorizes a Subscribe, then registers its stream.
    ///
    /// # Errors
    /// `UNAUTHENTICATED`; `INVALID_ARGUMENT` for a request without a cluster name or for another
    /// data type; `PERMISSION_DENIED` for another consumer's identity; `NOT_FOUND` for an
    /// unregistered consumer; `RESOURCE_EXHAUSTED` over the stream limits; `UNAVAILABLE` while
    /// the broker is not serving.
    pub(crate) async fn open_subscription(
        &self,
        request: Request<SubscriptionRequest>,
    ) -> std::result::Result<(SubscribeStream, Uuid), Status> {
        let identity = self.shared.gate.authenticate_grpc(BACKEND, &request).await?;
        let req = request.into_inner();
        validate_subscription(&req)?;
        self.authorize(&identity, &req.cluster_name, "subscribe")?;
        self.check_registered(&req.cluster_name).await?;
        let (tx, rx) = queue(self.shared.config.stream_buffer);
        let (id, subscription_id) = self.register(&req, tx)?;
        tracing::info!(backend = BACKEND, cluster = %req.cluster_name, %subscription_id, "agent subscribed");
        Ok((SubscribeStream::new(self.shared.clone(), id, rx), subscription_id))
    }

    /// Refuses a Subscribe for a consumer the registry does not know (`NOT_FOUND`) or when the
    /// registry cannot answer (`UNAVAILABLE`, the cause logged only); without a registry every
    /// consumer passes (docs/security.md, "Limits").
    async fn check_registered(&self, consumer: &str) -> std::result::Result<(), Status> {
        let Some(registry) = &self.shared.config.consumers else { return Ok(()) };
        match registry.is_registered(consumer).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::info!(backend = BACKEND, consumer, "Subscribe refused: consumer not registered");
                Err(Status::not_found(format!(
                    "consumer {consumer:?} is not registered; register it with the server first"
                )))
            }
            Err(error) => {
                tracing::warn!(backend = BACKEND, consumer, %error, "Subscribe refused: cannot check the consumer's registration");
                Err(Status::unavailable("cannot check the consumer's registration now; retry later"))
            }
        }
    }

    /// Refuses `identity` acting for `consumer` unless the gate allows it; `what` names the
    /// refused call in the log line and the status message.
    fn authorize(
        &self,
        identity: &maestro_auth::Identity,
        consumer: &str,
        what: &str,
    ) -> std::result::Result<(), Status> {
        if self.shared.gate.may_act_as_consumer(identity, consumer) {
            return Ok(());
        }
        tracing::warn!(backend = BACKEND, %identity, consumer, call = what, "agent refused: not this consumer's identity");
        Err(Status::permission_denied(format!("{} may not {what} as consumer {consumer:?}", identity.user)))
    }
}

fn validate_subscription(req: &SubscriptionRequest) -> Result<(), Status> {
    if req.cluster_name.is_empty() {
        return Err(Status::invalid_argument("cluster_name is required"));
    }
    if req.data_type != MANIFEST_BUNDLES {
        return Err(Status::invalid_argument(format!(
            "unsupported data_type {:?} (expected {MANIFEST_BUNDLES})",
            req.data_type
        )));
    }
    Ok(())
}

fn publish_error_json(reason: &str) -> String {
    serde_json::json!({ "error": reason }).to_string()
}

/// Validates a Publish request from an agent: `Ok(None)` for a heartbeat (ignored), the
/// decoded event otherwise.
///
/// # Errors
/// `InvalidArgument` for a missing event, a decoding error, an unparseable type or another
/// data type; `ResourceExhausted` over the size limit.
fn decode_publish(req: PublishRequest, limit: usize) -> std::result::Result<Option<Event>, Status> {
    let Some(msg) = req.event else {
        return Err(Status::invalid_argument("publish request without an event"));
    };
    if msg.r#type == HEARTBEAT {
        return Ok(None);
    }
    let event = grpc::from_proto(msg).map_err(|e| Status::invalid_argument(format!("invalid event: {e}")))?;
    let ty = EventType::parse(event.ty())
        .map_err(|e| Status::invalid_argument(format!("invalid event type: {e}")))?;
    if !ty.is_manifest_bundles() {
        return Err(Status::invalid_argument(format!("unsupported data type {:?}", ty.data_type)));
    }
    let size = maestro_transport::event_size(&event);
    if size > limit {
        return Err(Status::resource_exhausted(format!(
            "event of {size} bytes exceeds the {limit}-byte limit"
        )));
    }
    Ok(Some(event))
}

#[async_trait]
impl CloudEventService for BrokerService {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<SubscriptionRequest>,
    ) -> std::result::Result<Response<Self::SubscribeStream>, Status> {
        let (stream, subscription_id) = self.open_subscription(request).await?;
        let mut response = Response::new(stream);
        let value = subscription_id
            .to_string()
            .parse()
            .map_err(|_| Status::internal("cannot encode the subscription id"))?;
        response.metadata_mut().insert(SUBSCRIPTION_ID_HEADER, value);
        Ok(response)
    }

    async fn publish(&self, request: Request<PublishRequest>) -> std::result::Result<Response<()>, Status> {
        let identity = self.shared.gate.authenticate_grpc(BACKEND, &request).await?;
        let Some(event) = decode_publish(request.into_inner(), self.shared.config.max_event_bytes)? else {
            return Ok(Response::new(()));
        };
        let cluster = ext::get_str(&event, ext::CLUSTER_NAME).unwrap_or_default();
        self.authorize(&identity, &cluster, "publish")?;
        let handler = self
            .shared
            .handler
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("the broker is not started"))?;
        let (id, timeout) = (event.id().to_owned(), self.shared.config.handler_timeout);
        let delivery = deliver(&handler, event, DELIVERY_BACKOFF, &self.shared.cancel, BACKEND);
        match tokio::time::timeout(timeout, delivery).await {
            Ok(Outcome::Acked) => Ok(Response::new(())),
            Ok(Outcome::Dropped(reason)) => Err(Status::failed_precondition(publish_error_json(&reason))),
            Ok(Outcome::Closed) => Err(Status::unavailable("the broker is closed")),
            Err(_) => {
                tracing::warn!(backend = BACKEND, %id, ?timeout, "handler did not accept the event in time");
                Err(Status::unavailable(format!("the event was not handled within {timeout:?}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use maestro_api::codec::SpecEventBuilder;
    use maestro_transport::AgentTransport;
    use maestro_transport::conformance::Recorder;

    use super::*;
    use crate::{GrpcAgent, GrpcAgentConfig};
    use maestro_transport::test_logs::Logs;

    const DEADLINE: Duration = Duration::from_secs(10);

    /// `close` ends every task of the broker (accept loop, server, the Subscribe stream of a
    /// connected agent with its heartbeat interval) and returns in time; the agent, cut off,
    /// waits out a 1 h reconnect backoff, which its own `close` interrupts.
    #[tokio::test]
    async fn close_ends_the_brokers_tasks_and_the_agents_backoff() {
        let (logs, _capture) = Logs::capture();
        let config = GrpcBrokerConfig {
            bind_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            heartbeat_interval: Some(Duration::from_secs(3600)),
            ..GrpcBrokerConfig::default()
        };
        let broker = GrpcBroker::bind(config).await.unwrap();
        broker.start(Recorder::new()).await.unwrap();
        let mut agent_config = GrpcAgentConfig::new(broker.local_addr().to_string());
        agent_config.reconnect_initial_backoff = Duration::from_secs(3600);
        agent_config.reconnect_max_backoff = Duration::from_secs(3600);
        let agent = GrpcAgent::new(agent_config, "c1", "c1-agent").unwrap();
        agent.start(Recorder::new()).await.unwrap();
        let mut subscribed = agent.subscribed();
        tokio::time::timeout(DEADLINE, subscribed.wait_for(|n| *n >= 1)).await.unwrap().unwrap();
        broker.publish(&SpecEventBuilder::new("maestro", "r1", 1, "c1").build()).await.unwrap();

        tokio::time::timeout(DEADLINE, broker.close()).await.expect("the broker closes in time");
        assert_eq!(broker.shared.tasks.len(), 0, "every task of the broker ended");
        assert!(matches!(
            broker.publish(&SpecEventBuilder::new("m", "r", 1, "c1").build()).await,
            Err(Error::Closed { .. })
        ));

        logs.wait_for("waiting before the next Subscribe").await;
        tokio::time::timeout(DEADLINE, agent.close()).await.expect("the agent closes during its backoff");
        assert!(!logs.contains("did not finish"), "close waited for nothing");
    }
}
