//! The gRPC source client (docs/protocol.md §12.4, §12.5): writes as CloudEvents over
//! `Publish`, status updates over `Subscribe`, reads over REST.

use std::pin::Pin;
use std::time::Duration;

use chrono::Utc;
use futures::{Stream, StreamExt};
use maestro_api::payload::ManifestBundleStatus;
use maestro_api::pb::cloud_event::Data;
use maestro_api::pb::cloud_event_service_client::CloudEventServiceClient;
use maestro_api::pb::{PublishRequest, SubscriptionRequest};
use maestro_api::types::{Action, EventType, HEARTBEAT, MANIFEST_BUNDLES, SubResource};
use maestro_api::{AttributesReader, codec::SpecEventBuilder, ext, grpc};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::auth::BearerToken;
use crate::error::{ClientError, Result};
use crate::ids::resource_id;
use crate::manifestwork::ManifestWorkInput;
use crate::rest::RestClient;
use crate::types::ResourceBundle;

/// Default gRPC connect timeout: 10 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The result of [`SourceClient::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The resource id (UUIDv5 of source, consumer and name).
    pub resource_id: String,
    /// True when the bundle did not exist and a `create_request` was sent; false for an
    /// `update_request`.
    pub created: bool,
    /// The bundle version read back over REST after publishing (`None` if that read failed).
    pub version: Option<i64>,
}

/// Options of [`SourceClient::apply_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// The writer's name (like a Kubernetes field manager), recorded for each manifest it
    /// applies (docs/cli.md, "Merge apply"). On a plain apply it also exempts this writer's
    /// own recorded manifests from the removal check (see `force`).
    pub manager: Option<String>,
    /// Merge apply as `manager` instead of replacing the stored bundle; needs `manager`.
    pub merge: bool,
    /// A plain apply that would remove manifests recorded for another manager (or for any
    /// manager, without `manager`) is refused as a conflict unless this is set.
    pub force: bool,
    /// Update only if the stored bundle is still at this version (the version a caller read
    /// before building `work`); otherwise [`ClientError::Conflict`]. `None`: the version read
    /// by the apply itself.
    pub expected_version: Option<i64>,
}

/// Refuses a plain apply of `work` by `manager` over `stored` that would drop manifests
/// recorded for another manager.
fn refuse_removing_managed(
    stored: &ResourceBundle,
    work: &ManifestWorkInput,
    manager: Option<&str>,
    what: &str,
) -> Result<()> {
    let managers = maestro_api::merge::managers(&stored.metadata);
    if managers.is_empty() {
        return Ok(());
    }
    let kept: std::collections::BTreeSet<String> = work
        .bundle
        .manifests
        .iter()
        .filter_map(|m| maestro_api::merge::ManifestIdentity::of(m).ok())
        .map(|id| id.key())
        .collect();
    let dropped: Vec<String> = stored
        .manifests
        .iter()
        .filter_map(|m| maestro_api::merge::ManifestIdentity::of(m).ok())
        .filter(|id| !kept.contains(&id.key()))
        .filter_map(|id| managers.get(&id.key()).map(|m| (id, m)))
        .filter(|(_, m)| Some(m.as_str()) != manager)
        .map(|(id, m)| format!("{id} (manager {m:?})"))
        .collect();
    if dropped.is_empty() {
        return Ok(());
    }
    Err(ClientError::Conflict {
        what: what.to_owned(),
        message: format!(
            "this apply would remove manifests other writers applied: {}; merge-apply with your own manager instead, or force",
            dropped.join(", ")
        ),
    })
}

/// The result of [`SourceClient::delete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The resource id.
    pub resource_id: String,
    /// The bundle version the deletion was requested at.
    pub version: i64,
}

/// A status update received on the `Subscribe` stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// The resource id.
    pub resource_id: String,
    /// The spec version the status is for.
    pub resource_version: i64,
    /// The consumer (`clustername`), empty if not sent.
    pub consumer: String,
    /// The snowflake `sequenceid`, empty if not sent.
    pub sequence_id: String,
    /// The status payload.
    pub status: ManifestBundleStatus,
}

impl StatusUpdate {
    /// True when the agent reported the work deleted (`Deleted`=True).
    pub fn is_deleted(&self) -> bool {
        self.status.is_true("Deleted")
    }
}

/// TLS settings of the source gRPC connection ([`SourceClient::connect_with`]); the default is
/// plaintext.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcTls {
    /// PEM file of the CA that signs the server's certificate; setting it turns TLS on.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM certificate and key files presented to a server that requires mutual TLS.
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl GrpcTls {
    /// The tonic TLS config, `None` for plaintext: TLS with the CA file when one is set, else
    /// with the system's roots for an `https://` endpoint.
    fn client_config(&self, https: bool) -> Result<Option<tonic::transport::ClientTlsConfig>> {
        let read = |path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| ClientError::InvalidInput(format!("cannot read {}: {e}", path.display())))
        };
        let mut config = match &self.ca_file {
            Some(ca) => tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?)),
            None if https => tonic::transport::ClientTlsConfig::new().with_native_roots(),
            None => return Ok(None),
        };
        if let Some((cert, key)) = &self.client_cert {
            config = config.identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Some(config))
    }
}

/// The stream returned by [`SourceClient::watch`].
pub type StatusStream = Pin<Box<dyn Stream<Item = Result<StatusUpdate>> + Send>>;

/// A source client: one source id, one gRPC endpoint for writes and status, one REST client
/// for reads.
#[derive(Debug, Clone)]
pub struct SourceClient {
    source_id: String,
    endpoint: String,
    grpc: CloudEventServiceClient<Channel>,
    rest: RestClient,
    /// `Bearer <token>` sent as `authorization` on every RPC (sensitive: `Debug` hides it).
    authorization: Option<MetadataValue<Ascii>>,
}

/// The `authorization` metadata of `token`, checking that it may be sent: never with a client
/// certificate (one way of authenticating, as Go's maestro CLI), never without TLS (as sdk-go:
/// "setting token requires authority certificates").
fn authorization(
    tls: &GrpcTls,
    https: bool,
    token: Option<&BearerToken>,
) -> Result<Option<MetadataValue<Ascii>>> {
    let Some(token) = token else { return Ok(None) };
    if tls.client_cert.is_some() {
        return Err(ClientError::InvalidInput(
            "a bearer token and a client certificate are mutually exclusive for gRPC: \
             authenticate with one of them"
                .into(),
        ));
    }
    if tls.ca_file.is_none() && !https {
        return Err(ClientError::InvalidInput(
            "a bearer token needs TLS for gRPC (an https:// endpoint or a CA file, GrpcTls::ca_file / --grpc-ca-file): \
             it is never sent in clear text"
                .into(),
        ));
    }
    let mut value = MetadataValue::try_from(token.header_value())
        .map_err(|_| ClientError::InvalidInput("the bearer token cannot go in gRPC metadata".into()))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

impl SourceClient {
    /// Connects to the source gRPC endpoint (`host:port` or `http://host:port`: plaintext;
    /// `https://host:port`: TLS with the system's roots; [`crate::endpoint::grpc_endpoint`]),
    /// waiting at most [`CONNECT_TIMEOUT`]; [`SourceClient::connect_with`] sets TLS files.
    ///
    /// # Errors
    /// [`ClientError::InvalidInput`] for an empty source id or a bad endpoint;
    /// [`ClientError::Connect`] naming the endpoint when it cannot be reached.
    pub async fn connect(grpc_endpoint: &str, source_id: &str, rest: RestClient) -> Result<Self> {
        Self::connect_with(grpc_endpoint, source_id, rest, &GrpcTls::default()).await
    }

    /// Like [`SourceClient::connect`], over TLS when `tls.ca_file` is set (the endpoint is then
    /// reached as `https://`), presenting `tls.client_cert` to a server that requires mutual
    /// TLS (`--grpc-client-ca-file`).
    ///
    /// # Errors
    /// As [`SourceClient::connect`]; [`ClientError::InvalidInput`] naming a TLS file that
    /// cannot be read.
    pub async fn connect_with(
        grpc_endpoint: &str,
        source_id: &str,
        rest: RestClient,
        tls: &GrpcTls,
    ) -> Result<Self> {
        Self::connect_with_token(grpc_endpoint, source_id, rest, tls, None).await
    }

    /// Like [`SourceClient::connect_with`], sending `token` (when given) as
    /// `authorization: Bearer <token>` metadata on every RPC (Publish, Subscribe). A token
    /// needs TLS (`tls.ca_file` or an `https://` endpoint) and excludes a client certificate (`tls.client_cert`).
    ///
    /// # Errors
    /// As [`SourceClient::connect_with`]; [`ClientError::InvalidInput`] for a token without
    /// `tls.ca_file` or with `tls.client_cert`.
    pub async fn connect_with_token(
        grpc_endpoint: &str,
        source_id: &str,
        rest: RestClient,
        tls: &GrpcTls,
        token: Option<&BearerToken>,
    ) -> Result<Self> {
        if source_id.is_empty() {
            return Err(ClientError::InvalidInput("the source id must not be empty".into()));
        }
        let parsed = crate::endpoint::grpc_endpoint(grpc_endpoint)?;
        let authorization = authorization(tls, parsed.https, token)?;
        let uri = match parsed.uri.strip_prefix("http://") {
            Some(authority) if tls.ca_file.is_some() => format!("https://{authority}"),
            _ => parsed.uri,
        };
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| ClientError::InvalidInput(format!("invalid gRPC endpoint {grpc_endpoint:?}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(config) = tls.client_config(parsed.https)? {
            endpoint = endpoint.tls_config(config).map_err(|e| {
                ClientError::InvalidInput(format!("TLS settings for {grpc_endpoint:?}: {}", error_chain(&e)))
            })?;
        }
        let channel = endpoint.connect().await.map_err(|e| ClientError::Connect {
            endpoint: grpc_endpoint.to_owned(),
            message: error_chain(&e),
        })?;
        Ok(SourceClient {
            source_id: source_id.to_owned(),
            endpoint: grpc_endpoint.to_owned(),
            grpc: CloudEventServiceClient::new(channel),
            rest,
            authorization,
        })
    }

    /// `message` as a request carrying the bearer token, if any.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        request
    }

    /// The source id.
    pub fn source_id(&self) -> &str {
        &self.source_id
    }

    /// The REST client used for reads.
    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    /// The resource id of work `name` on `consumer` for this source.
    pub fn resource_id(&self, consumer: &str, name: &str) -> String {
        resource_id(&self.source_id, consumer, name)
    }

    /// Creates or updates `work` on `consumer` (a plain apply: the work replaces the stored
    /// one): as [`SourceClient::apply_with`] with default options.
    ///
    /// # Errors
    /// As [`SourceClient::apply_with`].
    pub async fn apply(&self, consumer: &str, work: &ManifestWorkInput) -> Result<ApplyOutcome> {
        self.apply_with(consumer, work, &ApplyOptions::default()).await
    }

    /// Creates or updates `work` on `consumer`. GETs the bundle by its resource id first:
    /// missing ⇒ `create_request`, else `update_request` at the version read, so a change made
    /// by someone else in between is a conflict, never silently overwritten. With
    /// [`ApplyOptions::manager`] the request is a merge apply instead (docs/cli.md, "Merge
    /// apply"): the server merges this writer's manifests into the stored bundle, retrying on
    /// concurrent writes. Finally reads the bundle back for its version.
    ///
    /// # Errors
    /// [`ClientError::InvalidInput`] (server rejected the bundle); [`ClientError::Conflict`]
    /// when the bundle is being deleted, changed since it was read, a plain apply would remove
    /// manifests a merge-apply manager recorded (unless [`ApplyOptions::force`]), or a merge
    /// lists another manager's manifest; REST and gRPC transport errors.
    pub async fn apply_with(
        &self,
        consumer: &str,
        work: &ManifestWorkInput,
        options: &ApplyOptions,
    ) -> Result<ApplyOutcome> {
        let rid = self.resource_id(consumer, &work.name);
        let what = format!("resource bundle {} ({rid}) on consumer {consumer}", work.name);
        let existing = self.rest.find_bundle(&rid).await?;
        if existing.as_ref().is_some_and(|b| b.is_deleting()) {
            return Err(ClientError::Conflict {
                what,
                message: "it is being deleted; wait for the deletion to finish and apply again".into(),
            });
        }
        let manager = options.manager.as_deref().filter(|m| !m.is_empty());
        if options.merge && manager.is_none() {
            return Err(ClientError::InvalidInput("a merge apply needs a manager name".into()));
        }
        if let (Some(b), false, false) = (&existing, options.merge, options.force) {
            refuse_removing_managed(b, work, manager, &what)?;
        }
        let action = if existing.is_some() { Action::Update } else { Action::Create };
        let version = existing.as_ref().map_or(0, |b| b.version);
        if let Some(expected) = options.expected_version.filter(|e| *e != version) {
            return Err(ClientError::Conflict {
                what,
                message: format!("it is at version {version} now, not {expected} as read; read it again"),
            });
        }
        let mut metadata = work.metadata(consumer, &rid);
        let mut builder = SpecEventBuilder::new(&self.source_id, &rid, version, consumer).action(action);
        match manager {
            Some(m) if options.merge => builder = builder.field_manager(m),
            Some(m) => {
                maestro_api::merge::set_managers(&mut metadata, &maestro_api::merge::claim(&work.bundle, m))
            }
            None => {}
        }
        let builder = builder.metadata(metadata).bundle(&work.bundle);
        self.publish(builder.build(), action, &what).await?;
        let version = self.rest.find_bundle(&rid).await.ok().flatten().map(|b| b.version);
        Ok(ApplyOutcome { resource_id: rid, created: existing.is_none(), version })
    }

    /// Publishes a `create_request` for `work` on `consumer` without the REST round trips of
    /// [`SourceClient::apply`] (for load generators and sources that know the bundle is new).
    /// Returns the resource id.
    ///
    /// # Errors
    /// As [`SourceClient::apply`]; creating a bundle that exists is a conflict.
    pub async fn create(&self, consumer: &str, work: &ManifestWorkInput) -> Result<String> {
        let rid = self.resource_id(consumer, &work.name);
        let event = SpecEventBuilder::new(&self.source_id, &rid, 0, consumer)
            .action(Action::Create)
            .metadata(work.metadata(consumer, &rid))
            .bundle(&work.bundle)
            .build();
        let what = format!("resource bundle {} ({rid}) on consumer {consumer}", work.name);
        self.publish(event, Action::Create, &what).await?;
        Ok(rid)
    }

    /// Requests deletion of work `name` on `consumer` (`delete_request` with
    /// `deletiontimestamp`). The bundle disappears once the agent confirms.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when the bundle does not exist; REST and gRPC errors.
    pub async fn delete(&self, consumer: &str, name: &str) -> Result<DeleteOutcome> {
        let rid = self.resource_id(consumer, name);
        let what = format!("resource bundle {name:?} ({rid}) on consumer {consumer:?}");
        let bundle = self
            .rest
            .find_bundle(&rid)
            .await?
            .ok_or_else(|| ClientError::NotFound { what: what.clone(), detail: String::new() })?;
        let mut builder =
            SpecEventBuilder::new(&self.source_id, &rid, bundle.version, consumer).action(Action::Delete);
        if !bundle.metadata.is_empty() {
            builder = builder.metadata(bundle.metadata.clone());
        }
        let event = builder.deletion(Utc::now()).build();
        self.publish(event, Action::Delete, &what).await?;
        Ok(DeleteOutcome { resource_id: rid, version: bundle.version })
    }

    async fn publish(&self, event: maestro_api::Event, action: Action, what: &str) -> Result<()> {
        let operation = format!("publish {}", action.as_str());
        tracing::debug!(ty = event.ty(), id = event.id(), "publishing");
        let req = self.request(PublishRequest { event: Some(grpc::to_proto(&event)) });
        let mut client = self.grpc.clone();
        client
            .publish(req)
            .await
            .map_err(|s| ClientError::from_status(&self.endpoint, &operation, what, &s))?;
        Ok(())
    }

    /// Subscribes to status updates of this source's bundles. Heartbeats are skipped; events
    /// that do not decode are yielded as [`ClientError::InvalidResponse`]. No history is
    /// replayed: read current state over REST.
    ///
    /// # Errors
    /// gRPC errors opening the stream; stream items carry later errors.
    pub async fn watch(&self) -> Result<StatusStream> {
        let req = self.request(SubscriptionRequest {
            source: self.source_id.clone(),
            cluster_name: String::new(),
            data_type: MANIFEST_BUNDLES.to_owned(),
        });
        let mut client = self.grpc.clone();
        let endpoint = self.endpoint.clone();
        let stream = client
            .subscribe(req)
            .await
            .map_err(|s| ClientError::from_status(&endpoint, "subscribe", "status stream", &s))?
            .into_inner();
        let mapped = stream.filter_map(move |item| {
            let endpoint = endpoint.clone();
            async move {
                match item {
                    Err(s) => {
                        Some(Err(ClientError::from_status(&endpoint, "subscribe", "status stream", &s)))
                    }
                    Ok(msg) if msg.r#type == HEARTBEAT => None,
                    Ok(msg) => Some(decode_status_update(msg).map_err(|message| {
                        ClientError::InvalidResponse { endpoint: endpoint.clone(), message }
                    })),
                }
            }
        });
        Ok(Box::pin(mapped))
    }
}

/// Decodes a status event leniently (only `resourceid`, `resourceversion` and the data are
/// required).
///
/// JSON data (the usual `binary_data`) is read straight into the status, without the JSON tree
/// the event decoder would build first.
fn decode_status_update(mut msg: maestro_api::pb::CloudEvent) -> std::result::Result<StatusUpdate, String> {
    let json_bytes = match msg.data.take() {
        Some(Data::BinaryData(bytes)) if grpc::has_json_data(&msg) => Some(bytes),
        other => {
            msg.data = other;
            None
        }
    };
    let event = grpc::from_proto(msg).map_err(|e| e.to_string())?;
    let ty = EventType::parse(event.ty()).map_err(|e| e.to_string())?;
    if ty.sub_resource != SubResource::Status {
        return Err(format!("unexpected event type {}", event.ty()));
    }
    let status = match json_bytes {
        Some(bytes) => serde_json::from_slice::<ManifestBundleStatus>(&bytes)
            .map_err(|e| format!("invalid ManifestBundleStatus payload: {e}"))?,
        None => maestro_api::codec::data_as::<ManifestBundleStatus>(&event, "ManifestBundleStatus")
            .map_err(|e| e.to_string())?,
    };
    Ok(StatusUpdate {
        resource_id: ext::resource_id(&event).map_err(|e| e.to_string())?,
        resource_version: ext::resource_version(&event).map_err(|e| e.to_string())?,
        consumer: ext::get_str(&event, ext::CLUSTER_NAME).unwrap_or_default(),
        sequence_id: ext::get_str(&event, ext::SEQUENCE_ID).unwrap_or_default(),
        status,
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        message = format!("{message}: {s}");
        src = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use maestro_api::codec::StatusEventBuilder;
    use maestro_api::payload::Condition;

    /// The status event of resource `rid` at `version` on consumer `c1`.
    fn status_event(status: &ManifestBundleStatus, version: i64) -> maestro_api::Event {
        StatusEventBuilder {
            source: "maestro",
            resource_id: "rid",
            resource_version: version,
            cluster_name: "c1",
            original_source: "maestro-cli",
            sequence_id: "1834773391719010304",
            status_hash: "h",
            metadata: None,
            action: Action::Update,
        }
        .build(status)
    }

    #[test]
    fn decodes_status_events_and_flags_deleted() {
        let mut status = ManifestBundleStatus::default();
        status.conditions.push(Condition {
            kind: "Deleted".into(),
            status: "True".into(),
            ..Default::default()
        });
        let ev = status_event(&status, 3);
        let u = decode_status_update(grpc::to_proto(&ev)).expect("decode");
        assert_eq!((u.resource_id.as_str(), u.resource_version, u.consumer.as_str()), ("rid", 3, "c1"));
        assert!(u.is_deleted());
        let spec = SpecEventBuilder::new("s", "rid", 1, "c1").build();
        assert!(decode_status_update(grpc::to_proto(&spec)).is_err());
    }

    /// A status as the server pushes it (with `manifestBundle`) decodes straight from its bytes
    /// to what the event decoder's path gives; bad JSON data is an error naming the payload.
    #[test]
    fn status_data_decodes_from_bytes_as_through_the_event() {
        let mut status: ManifestBundleStatus = serde_json::from_value(serde_json::json!({
            "manifestBundle": {"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}]},
            "conditions": [{"type": "Applied", "status": "True", "reason": "AppliedManifestWorkComplete"}],
        }))
        .expect("status");
        status.resource_status = Vec::new();
        let ev = status_event(&status, 2);
        let msg = grpc::to_proto(&ev);
        assert!(grpc::has_json_data(&msg));
        let through_event = maestro_api::codec::data_as::<ManifestBundleStatus>(
            &grpc::from_proto(msg.clone()).expect("event"),
            "ManifestBundleStatus",
        )
        .expect("status");
        let decoded = decode_status_update(msg.clone()).expect("decode");
        assert_eq!(decoded.status, through_event);
        assert!(decoded.status.manifest_bundle.is_some() && decoded.status.is_true("Applied"));
        let mut bad = msg;
        bad.data = Some(Data::BinaryData(b"{not json".to_vec()));
        assert!(
            decode_status_update(bad)
                .is_err_and(|e| e.contains("not JSON") || e.contains("ManifestBundleStatus"))
        );
    }
}
