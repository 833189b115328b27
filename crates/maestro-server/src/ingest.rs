//! Agent events arriving at the server through the broker: status updates (stored under the
//! acceptance rules of architecture.md §5) and spec resync requests (answered per
//! protocol.md §5.2).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use maestro_api::codec::{data_as, decode_status};
use maestro_api::payload::ResourceVersionList;
use maestro_api::types::{Action, EventType, SubResource};
use maestro_api::{AttributesReader, Event, ext, json};
use maestro_store::{DynStore, StatusOutcome, StatusWrite};
use maestro_transport::{DynSourceTransport, EventHandler, HandlerError};

use crate::spec::{outgoing_spec, unknown_resource_delete};

/// The handler the server gives to its source transport.
#[derive(Debug)]
pub struct Ingest {
    store: DynStore,
    transport: DynSourceTransport,
    source_id: String,
}

impl Ingest {
    /// A handler storing statuses in `store` and answering resyncs through `transport`.
    pub fn new(store: DynStore, transport: DynSourceTransport, source_id: &str) -> Arc<Self> {
        Arc::new(Ingest { store, transport, source_id: source_id.to_owned() })
    }

    async fn status(&self, event: &Event) -> Result<StatusOutcome, HandlerError> {
        let st = decode_status(event).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        if st.original_source != self.source_id {
            return Err(HandlerError::Permanent(format!(
                "status for resource {} has originalsource {:?}, not this server's {:?}",
                st.resource_id, st.original_source, self.source_id
            )));
        }
        let data = data_as::<serde_json::Value>(event, "ManifestBundleStatus")
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let write = StatusWrite {
            resource_id: st.resource_id.clone(),
            consumer_name: st.cluster_name.clone(),
            version: st.resource_version,
            sequence_id: st.sequence_id.clone(),
            status_hash: st.status_hash.clone(),
            event: json::to_value(event),
            data,
            deleted: st.status.is_true("Deleted"),
        };
        let outcome = self.store.apply_status(write).await.map_err(|e| {
            if e.is_retryable() {
                HandlerError::Retryable(e.to_string())
            } else {
                HandlerError::Permanent(e.to_string())
            }
        })?;
        tracing::debug!(resource = %st.resource_id, consumer = %st.cluster_name, version = st.resource_version, ?outcome, "status");
        Ok(outcome)
    }

    /// Answers a spec resync request (protocol.md §5.2).
    async fn spec_resync(&self, event: &Event) -> Result<(), HandlerError> {
        let cluster = ext::get_str(event, ext::CLUSTER_NAME).unwrap_or_default();
        if cluster.is_empty() {
            return Err(HandlerError::Permanent("spec resync request without clustername".into()));
        }
        let request: ResourceVersionList =
            data_as(event, "ResourceVersionList").map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let mut agent: HashMap<String, i64> =
            request.resource_versions.into_iter().map(|v| (v.resource_id, v.resource_version)).collect();
        let resources = self
            .store
            .resources_for_consumer(&cluster)
            .await
            .map_err(|e| HandlerError::Retryable(e.to_string()))?;
        let mut out = Vec::new();
        for r in &resources {
            let agent_version = agent.remove(&r.id).unwrap_or(0);
            if r.deleted_at.is_some() || r.version == 0 || r.version > agent_version {
                out.push(outgoing_spec(r, &self.source_id, Action::ResyncResponse));
            }
        }
        for (id, version) in agent {
            out.push(unknown_resource_delete(&self.source_id, &id, version, &cluster));
        }
        tracing::info!(consumer = %cluster, held = resources.len(), sending = out.len(), "spec resync");
        // On a broker that stores messages (MQTT, Pub/Sub), a status the agent published just
        // before a broker outage can be lost, and the server's status resync broadcast after
        // its own resubscription can miss an agent that resubscribes later (Pub/Sub recreates
        // the agent's subscription only then). The agent's spec resync marks its return: ask it
        // for its statuses too (protocol.md §5.1; it resends only what differs).
        if self.transport.backend() != "grpc" {
            out.extend(crate::resync::batches(&self.source_id, &cluster, &resources));
        }
        for ev in &out {
            if let Err(e) = self.transport.publish(ev).await {
                return Err(if e.is_retryable() {
                    HandlerError::Retryable(format!("resync publish: {e}"))
                } else {
                    HandlerError::Permanent(format!("resync publish: {e}"))
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventHandler for Ingest {
    async fn handle(&self, event: Event) -> Result<(), HandlerError> {
        let ty = EventType::parse(event.ty()).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        if !ty.is_manifest_bundles() {
            return Err(HandlerError::Permanent(format!("unsupported data type {:?}", ty.data_type)));
        }
        match (ty.sub_resource, ty.action) {
            (SubResource::Spec, Action::ResyncRequest) => self.spec_resync(&event).await,
            (SubResource::Status, Action::ResyncRequest) => Ok(()), // ignored by sources (§5.2)
            (SubResource::Status, _) => self.status(&event).await.map(|_| ()),
            _ => Err(HandlerError::Permanent(format!("unexpected event type {} from an agent", event.ty()))),
        }
    }
}
