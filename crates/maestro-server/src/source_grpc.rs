//! The source-facing gRPC service (`io.cloudevents.v1.CloudEventService`, default port 8090;
//! protocol.md §7.1.3, maestro-reference.md §3.3): sources Publish spec create/update/delete
//! requests and status resync requests, and Subscribe to the statuses of their bundles.
//!
//! Every call passes the listener's [`Gate`] (docs/security.md, "Source gRPC"): the caller is
//! authenticated, publishes only as a source it may act as (`pub`), changes only bundles that
//! source created, and subscribes only to statuses of sources it may read (`sub`).

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use maestro_api::codec::data_as;
use maestro_api::payload::StatusHashList;
use maestro_api::pb::{self, cloud_event_service_server::CloudEventService};
use maestro_api::types::{Action, EventType, MANIFEST_BUNDLES, SubResource};
use maestro_api::{AttributesReader, Event, grpc};
use maestro_auth::policy::SourceVerb;
use maestro_auth::{Gate, Identity};
use maestro_store::DynStore;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::ServiceError;
use crate::hub::{StatusHub, resource_status_event};
use crate::spec::apply_source_spec;

/// The service implementation.
#[derive(Debug, Clone)]
pub struct SourceService {
    store: DynStore,
    hub: StatusHub,
    limits: crate::spec::SpecLimits,
    heartbeat: Option<Duration>,
    gate: Gate,
}

/// The listener name in authentication log lines.
const LISTENER: &str = "source-grpc";

impl SourceService {
    /// A service over `store` and `hub`; specs over `limits` are refused; `heartbeat` is the
    /// Subscribe heartbeat period (`None` disables); `gate` authenticates and authorizes every
    /// call.
    pub fn new(
        store: DynStore,
        hub: StatusHub,
        limits: crate::spec::SpecLimits,
        heartbeat: Option<Duration>,
        gate: Gate,
    ) -> Self {
        SourceService { store, hub, limits, heartbeat, gate }
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
        let identity = self.gate.authenticate_grpc(LISTENER, &request).await?;
        let msg = request.into_inner().event.ok_or_else(|| Status::invalid_argument("missing event"))?;
        let event = grpc::from_proto(msg).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let ty = EventType::parse(event.ty()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.authorize(&identity, &event.source().to_string(), SourceVerb::Pub).await?;
        let result = if ty.sub_resource == SubResource::Status && ty.action == Action::ResyncRequest {
            self.status_resync(&event).await
        } else {
            apply_source_spec(&self.store, &event, self.limits).await.map(|outcome| {
                tracing::info!(source = %event.source(), ty = %event.ty(), kind = outcome_kind(&outcome), "spec accepted");
            })
        };
        result.map(|()| Response::new(())).map_err(|e| {
            tracing::info!(source = %event.source(), ty = %event.ty(), error = %e, "spec refused");
            e.to_status()
        })
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscriptionRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let identity = self.gate.authenticate_grpc(LISTENER, &request).await?;
        let req = request.into_inner();
        if req.source.is_empty() {
            return Err(Status::invalid_argument("subscription request has an empty source"));
        }
        self.authorize(&identity, &req.source, SourceVerb::Sub).await?;
        if !req.data_type.is_empty() && req.data_type != MANIFEST_BUNDLES {
            return Err(Status::invalid_argument(format!("unsupported data type {:?}", req.data_type)));
        }
        let (tx, rx) = mpsc::channel(100);
        let sub_id = uuid::Uuid::new_v4().to_string();
        tracing::info!(source = %req.source, subscription = %sub_id, "source subscribed");
        tokio::spawn(forward(self.hub.subscribe(), tx, req.source, self.heartbeat));
        let mut resp = Response::new(Box::pin(ReceiverStream::new(rx)) as EventStream);
        if let Ok(v) = sub_id.parse() {
            resp.metadata_mut().insert("subscription-id", v);
        }
        Ok(resp)
    }
}

fn outcome_kind(o: &crate::spec::SpecOutcome) -> &'static str {
    match o {
        crate::spec::SpecOutcome::Created(_) => "created",
        crate::spec::SpecOutcome::Updated(_) => "updated",
        crate::spec::SpecOutcome::Deleting(_) => "deleting",
    }
}

async fn forward(
    mut statuses: broadcast::Receiver<std::sync::Arc<crate::hub::SourceStatus>>,
    tx: mpsc::Sender<Result<pb::CloudEvent, Status>>,
    source: String,
    heartbeat: Option<Duration>,
) {
    let period = heartbeat.unwrap_or(Duration::from_secs(3600 * 24 * 365));
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
            _ = ticker.tick(), if heartbeat.is_some() => grpc::heartbeat(),
            _ = tx.closed() => return,
        };
        if tx.send(Ok(msg)).await.is_err() {
            tracing::info!(%source, "source subscriber gone");
            return;
        }
    }
}
