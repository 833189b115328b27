//! The source-facing gRPC service (`io.cloudevents.v1.CloudEventService`, default port 8090;
//! docs/protocol.md §7.1.3, docs/protocol.md §12.4): sources Publish spec create/update/delete
//! requests and status resync requests, and Subscribe to the statuses of their bundles.
//!
//! Every call passes the listener's [`Gate`] (docs/security.md, "Source gRPC"): the caller is
//! authenticated, publishes only as a source it may act as (`pub`), changes only bundles that
//! source created, and subscribes only to statuses of sources it may read (`sub`).
//!
//! Subscribe streams are limited per source and in total ([`SourceGrpcLimits`]; a stream over
//! a limit is refused with `RESOURCE_EXHAUSTED`), and the listener's connections by
//! [`GrpcListenerLimits`] (docs/security.md, "Limits").

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::metrics::{counter, gauge};
use futures::Stream;
use maestro_api::codec::data_as;
use maestro_api::payload::StatusHashList;
use maestro_api::pb::{self, cloud_event_service_server::CloudEventService};
use maestro_api::types::{Action, EventType, MANIFEST_BUNDLES, SubResource};
use maestro_api::{AttributesReader, Event, grpc};
use maestro_auth::policy::SourceVerb;
use maestro_auth::{Gate, Identity};
use maestro_store::DynStore;
use maestro_transport::retry::{CancellationToken, TaskTracker};
use maestro_transport::trace;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::error::ServiceError;
use crate::hub::{StatusHub, resource_status_event};
use crate::metrics;
use crate::spec::apply_source_spec;

pub use maestro_tls::grpc_listener::GrpcListenerLimits;

/// Default limit of concurrent Subscribe streams of one source: 16.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_SOURCE: usize = 16;
/// Default limit of concurrent Subscribe streams in total: 1,000.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1_000;

/// Limits of the source gRPC API (docs/security.md, "Limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceGrpcLimits {
    /// Concurrent Subscribe streams of one source (the request's `source`); one more is refused
    /// with `RESOURCE_EXHAUSTED`. Default 16.
    pub max_subscriptions_per_source: usize,
    /// Concurrent Subscribe streams in total; one more is refused with `RESOURCE_EXHAUSTED`.
    /// Default 1,000.
    pub max_subscriptions: usize,
    /// Connection settings: keepalive, connection age and timeout, streams per connection,
    /// largest received message.
    pub listener: GrpcListenerLimits,
}

impl Default for SourceGrpcLimits {
    fn default() -> Self {
        SourceGrpcLimits {
            max_subscriptions_per_source: DEFAULT_MAX_SUBSCRIPTIONS_PER_SOURCE,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            listener: GrpcListenerLimits::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    per_source: HashMap<String, usize>,
    total: usize,
}

/// The live Subscribe streams, counted against the limits.
#[derive(Debug, Clone)]
struct Slots {
    counts: Arc<Mutex<Counts>>,
    per_source: usize,
    total: usize,
}

impl Slots {
    fn new(per_source: usize, total: usize) -> Self {
        Slots { counts: Arc::default(), per_source, total }
    }

    /// Takes a slot for a stream of `source`, held until the returned guard is dropped.
    ///
    /// # Errors
    /// `RESOURCE_EXHAUSTED` naming the limit when `source` or the listener is at its limit.
    fn acquire(&self, source: &str) -> Result<Slot, Status> {
        let mut counts = lock(&self.counts);
        if counts.total >= self.total {
            tracing::warn!(
                source,
                total = counts.total,
                limit = self.total,
                "source Subscribe refused: total limit reached"
            );
            return Err(Status::resource_exhausted(format!(
                "the server's limit of {} concurrent Subscribe streams in total is reached",
                self.total
            )));
        }
        let of_source = counts.per_source.get(source).copied().unwrap_or(0);
        if of_source >= self.per_source {
            tracing::warn!(
                source,
                streams = of_source,
                limit = self.per_source,
                "source Subscribe refused: per-source limit reached"
            );
            return Err(Status::resource_exhausted(format!(
                "source {source:?} already has {of_source} Subscribe streams, the limit per source"
            )));
        }
        counts.total += 1;
        *counts.per_source.entry(source.to_owned()).or_default() += 1;
        Ok(Slot { counts: self.counts.clone(), source: source.to_owned() })
    }
}

fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|p| p.into_inner())
}

/// One Subscribe stream's place under the limits; freed when the stream's task ends.
#[derive(Debug)]
struct Slot {
    counts: Arc<Mutex<Counts>>,
    source: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_source.remove(&self.source);
            }
        }
    }
}

/// The service implementation.
#[derive(Debug, Clone)]
pub struct SourceService {
    store: DynStore,
    hub: StatusHub,
    limits: crate::spec::SpecLimits,
    heartbeat: Option<Duration>,
    gate: Gate,
    slots: Slots,
    /// Ends every Subscribe stream when cancelled ([`SourceService::with_shutdown`]).
    cancel: CancellationToken,
    /// Where the Subscribe stream tasks run.
    tasks: TaskTracker,
}

/// The listener name in authentication log lines.
const LISTENER: &str = "source-grpc";

impl SourceService {
    /// A service over `store` and `hub`; specs over `limits` are refused; `heartbeat` is the
    /// Subscribe heartbeat period (`None` disables); `gate` authenticates and authorizes every
    /// call. Subscribe streams are limited by [`SourceGrpcLimits::default`] until
    /// [`SourceService::with_subscription_limits`].
    pub fn new(
        store: DynStore,
        hub: StatusHub,
        limits: crate::spec::SpecLimits,
        heartbeat: Option<Duration>,
        gate: Gate,
    ) -> Self {
        let slots = Slots::new(DEFAULT_MAX_SUBSCRIPTIONS_PER_SOURCE, DEFAULT_MAX_SUBSCRIPTIONS);
        let (cancel, tasks) = (CancellationToken::new(), TaskTracker::new());
        SourceService { store, hub, limits, heartbeat, gate, slots, cancel, tasks }
    }

    /// The same service running its Subscribe stream tasks on `tasks` and ending them once
    /// `cancel` is cancelled, so a graceful server shutdown does not wait for subscribed
    /// sources to leave.
    pub fn with_shutdown(mut self, cancel: CancellationToken, tasks: TaskTracker) -> Self {
        (self.cancel, self.tasks) = (cancel, tasks);
        self
    }

    /// The same service with the Subscribe stream limits of `limits` (values below 1 count
    /// as 1). Call it before serving: the streams counted so far are forgotten.
    pub fn with_subscription_limits(mut self, limits: &SourceGrpcLimits) -> Self {
        self.slots = Slots::new(limits.max_subscriptions_per_source.max(1), limits.max_subscriptions.max(1));
        self
    }

    /// Refuses `identity` acting as `source` for `verb` unless the gate allows it.
    async fn authorize(&self, identity: &Identity, source: &str, verb: SourceVerb) -> Result<(), Status> {
        if self.gate.may_act_as_source(identity, source, verb).await {
            return Ok(());
        }
        let what = match verb {
            SourceVerb::Pub => "publish",
            SourceVerb::Sub => "subscribe",
        };
        tracing::warn!(%identity, source, call = what, "source call refused by the authorization policy");
        Err(Status::permission_denied(format!("{} may not {what} as source {source:?}", identity.user)))
    }

    /// Handles a source's status resync request: re-broadcast the statuses whose stored hash
    /// differs from the listed one (all of them for an empty list).
    async fn status_resync(&self, event: &Event) -> Result<(), ServiceError> {
        let list: StatusHashList = data_as(event, "StatusHashList")?;
        let known: std::collections::HashMap<String, String> =
            list.status_hashes.into_iter().map(|h| (h.resource_id, h.status_hash)).collect();
        let source = event.source().to_string();
        for r in self.store.resources_for_source(&source).await? {
            let same = known.get(&r.id).is_some_and(|h| Some(h) == r.status_hash.as_ref());
            if let Some(s) = resource_status_event(&r).filter(|_| known.is_empty() || !same) {
                self.hub.send(s);
            }
        }
        Ok(())
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::CloudEvent, Status>> + Send>>;

#[tonic::async_trait]
impl CloudEventService for SourceService {
    async fn publish(&self, request: Request<pb::PublishRequest>) -> Result<Response<()>, Status> {
        let started = Instant::now();
        let mut source = String::new();
        let result = self.publish_event(request, &mut source).await;
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        metrics::grpc_call("Publish", &source, code, started.elapsed());
        if !source.is_empty() {
            counter!(metrics::GRPC_RECEIVED, "type" => "Publish", "source" => source).increment(1);
        }
        result
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscriptionRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let started = Instant::now();
        let mut source = String::new();
        let result = self.subscribe_stream(request, &mut source).await;
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        metrics::grpc_call("Subscribe", &source, code, started.elapsed());
        result
    }
}

impl SourceService {
    /// [`CloudEventService::publish`]; `source` is set to the event's source once the caller
    /// is authorized to act as it (a label of the call's metrics).
    async fn publish_event(
        &self,
        request: Request<pb::PublishRequest>,
        source: &mut String,
    ) -> Result<Response<()>, Status> {
        let identity = self.gate.authenticate_grpc(LISTENER, &request).await?;
        let msg = request.into_inner().event.ok_or_else(|| Status::invalid_argument("missing event"))?;
        let mut event = grpc::from_proto(msg).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let ty = EventType::parse(event.ty()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.authorize(&identity, &event.source().to_string(), SourceVerb::Pub).await?;
        *source = event.source().to_string();
        let result = if ty.sub_resource == SubResource::Status && ty.action == Action::ResyncRequest {
            self.status_resync(&event).await
        } else {
            // The bundle's trace starts here (or continues the source's): the stored event
            // carries this span's context to the dispatcher (docs/operations.md §4.6).
            let span =
                tracing::info_span!("spec publish", source = %source, trace_id = tracing::field::Empty);
            trace::link(&span, &event);
            trace::stamp(&mut event, &span);
            trace::record_trace_id(&span);
            let applied = apply_source_spec(&self.store, &event, self.limits).instrument(span).await;
            applied.map(|outcome| {
                counter!(metrics::RESOURCES_PROCESSED, "action" => outcome_action(&outcome)).increment(1);
                tracing::info!(source = %event.source(), ty = %event.ty(), kind = outcome_kind(&outcome), "spec accepted");
            })
        };
        result.map(|()| Response::new(())).map_err(|e| {
            tracing::info!(source = %event.source(), ty = %event.ty(), error = %e, "spec refused");
            e.to_status()
        })
    }

    /// [`CloudEventService::subscribe`]; `source` is set to the requested source once the
    /// caller is authorized to read it.
    async fn subscribe_stream(
        &self,
        request: Request<pb::SubscriptionRequest>,
        source: &mut String,
    ) -> Result<Response<EventStream>, Status> {
        let identity = self.gate.authenticate_grpc(LISTENER, &request).await?;
        let req = request.into_inner();
        if req.source.is_empty() {
            return Err(Status::invalid_argument("subscription request has an empty source"));
        }
        self.authorize(&identity, &req.source, SourceVerb::Sub).await?;
        source.clone_from(&req.source);
        if !req.data_type.is_empty() && req.data_type != MANIFEST_BUNDLES {
            return Err(Status::invalid_argument(format!("unsupported data type {:?}", req.data_type)));
        }
        let slot = self.slots.acquire(&req.source)?;
        let (tx, rx) = mpsc::channel(100);
        let sub_id = uuid::Uuid::new_v4().to_string();
        tracing::info!(source = %req.source, subscription = %sub_id, "source subscribed");
        let stream =
            Forward { tx, source: req.source, heartbeat: self.heartbeat, cancel: self.cancel.clone() };
        self.tasks.spawn(stream.run(self.hub.subscribe(), slot));
        let mut resp = Response::new(Box::pin(ReceiverStream::new(rx)) as EventStream);
        if let Ok(v) = sub_id.parse() {
            resp.metadata_mut().insert("subscription-id", v);
        }
        Ok(resp)
    }
}

/// The `action` label of [`metrics::RESOURCES_PROCESSED`] for an accepted spec.
fn outcome_action(o: &crate::spec::SpecOutcome) -> &'static str {
    match o {
        crate::spec::SpecOutcome::Created(_) => "create",
        crate::spec::SpecOutcome::Updated(_) => "update",
        crate::spec::SpecOutcome::Deleting(_) => "delete",
    }
}

fn outcome_kind(o: &crate::spec::SpecOutcome) -> &'static str {
    match o {
        crate::spec::SpecOutcome::Created(_) => "created",
        crate::spec::SpecOutcome::Updated(_) => "updated",
        crate::spec::SpecOutcome::Deleting(_) => "deleting",
    }
}

/// One source Subscribe stream.
struct Forward {
    tx: mpsc::Sender<Result<pb::CloudEvent, Status>>,
    source: String,
    heartbeat: Option<Duration>,
    cancel: CancellationToken,
}

impl Forward {
    /// Streams the source's statuses (and heartbeats) to the subscriber until it goes away or
    /// the server shuts down; `_slot` is its place under the Subscribe limits, freed when this
    /// returns.
    async fn run(self, statuses: broadcast::Receiver<Arc<crate::hub::SourceStatus>>, slot: Slot) {
        let clients = gauge!(metrics::GRPC_SOURCE_CLIENTS, "source" => self.source.clone());
        clients.increment(1);
        self.forward(statuses, slot).await;
        clients.decrement(1);
    }

    /// [`Forward::run`] without the gauge of open streams.
    async fn forward(self, mut statuses: broadcast::Receiver<Arc<crate::hub::SourceStatus>>, _slot: Slot) {
        let source = self.source.clone();
        let sent = counter!(metrics::GRPC_SENT, "type" => "Subscribe", "source" => source.clone());
        let period = self.heartbeat.unwrap_or(Duration::from_secs(3600 * 24 * 365));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            let msg = tokio::select! {
                r = statuses.recv() => match r {
                    Ok(s) if s.source == source => s.event.clone(),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(%source, missed = n, "source subscriber lagging; statuses skipped (send a status resync)");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if self.heartbeat.is_some() => grpc::heartbeat(),
                _ = self.tx.closed() => return,
                () = self.cancel.cancelled() => return,
            };
            let delivered = tokio::select! {
                r = self.tx.send(Ok(msg)) => r.is_ok(),
                () = self.cancel.cancelled() => return,
            };
            if !delivered {
                tracing::info!(%source, "source subscriber gone");
                return;
            }
            sent.increment(1);
        }
    }
}
