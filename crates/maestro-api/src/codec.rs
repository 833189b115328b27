//! Building and decoding the events of the work protocol: spec events (source → agent),
//! status events (agent → source) and resync requests (docs/protocol.md §2–§5).

use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader, AttributesWriter};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::payload::{ManifestBundle, ManifestBundleStatus, ResourceVersionList, StatusHashList};
use crate::types::{Action, EventType, SubResource};
use crate::validate::validate_bundle;
use crate::{Data, Error, Event, Result, ext};

/// The JSON media type used for all data.
pub const JSON: &str = "application/json";

/// Decodes the event data as `T`.
///
/// # Errors
/// [`Error::MissingData`] when there is none; [`Error::InvalidPayload`] when it does not decode.
pub fn data_as<T: DeserializeOwned>(event: &Event, what: &'static str) -> Result<T> {
    let res = match event.data() {
        None => return Err(Error::MissingData { ty: event.ty().to_owned() }),
        Some(Data::Json(v)) => T::deserialize(v),
        Some(Data::Binary(b)) => serde_json::from_slice(b),
        Some(Data::String(s)) => serde_json::from_str(s),
    };
    res.map_err(|source| Error::InvalidPayload { what, source })
}

fn base_event(ty: &EventType, source: &str) -> Event {
    let mut ev = Event::default();
    ev.set_id(uuid::Uuid::new_v4().to_string());
    ev.set_source(source.to_owned());
    ev.set_type(ty.to_string());
    ev.set_time(Some(Utc::now()));
    ev
}

fn set_json_data(ev: &mut Event, v: Value) {
    ev.set_data(JSON, Data::Json(v));
}

/// Builds a spec event (`spec.create_request`, `update_request`, `delete_request` or
/// `resync_response`) with every extension Go always sends: `resourceid`, `resourceversion`
/// (integer), `clustername`, `originalsource` (`""`), `logtracing` (`{}`), and `metadata` /
/// `deletiontimestamp` when given (docs/protocol.md §3.2, §4.1, §4.2).
#[derive(Debug, Clone)]
pub struct SpecEventBuilder {
    source: String,
    resource_id: String,
    version: i64,
    cluster: String,
    action: Action,
    metadata: Option<Map<String, Value>>,
    bundle: Option<Value>,
    deletion: Option<DateTime<Utc>>,
    field_manager: Option<String>,
}

impl SpecEventBuilder {
    /// A `create_request` for `resource_id` at `version` for consumer `cluster`.
    pub fn new(source: &str, resource_id: &str, version: i64, cluster: &str) -> Self {
        SpecEventBuilder {
            source: source.to_owned(),
            resource_id: resource_id.to_owned(),
            version,
            cluster: cluster.to_owned(),
            action: Action::Create,
            metadata: None,
            bundle: None,
            deletion: None,
            field_manager: None,
        }
    }

    /// Sets the `fieldmanager` extension: the event asks for a merge apply by `manager`
    /// ([`crate::merge`]).
    #[must_use]
    pub fn field_manager(mut self, manager: &str) -> Self {
        self.field_manager = Some(manager.to_owned());
        self
    }

    /// Sets the action.
    #[must_use]
    pub fn action(mut self, action: Action) -> Self {
        self.action = action;
        self
    }

    /// Sets the `metadata` extension (work ObjectMeta).
    #[must_use]
    pub fn metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Sets the ManifestBundle data.
    #[must_use]
    pub fn bundle(mut self, bundle: &ManifestBundle) -> Self {
        self.bundle = serde_json::to_value(bundle).ok();
        self
    }

    /// Sets raw bundle JSON as data (forwarded verbatim).
    #[must_use]
    pub fn bundle_json(mut self, bundle: Value) -> Self {
        self.bundle = Some(bundle);
        self
    }

    /// Sets `deletiontimestamp`.
    #[must_use]
    pub fn deletion(mut self, at: DateTime<Utc>) -> Self {
        self.deletion = Some(at);
        self
    }

    /// Builds the event.
    pub fn build(self) -> Event {
        let ty = EventType::manifest_bundles(SubResource::Spec, self.action);
        let mut ev = base_event(&ty, &self.source);
        ext::set_str(&mut ev, ext::RESOURCE_ID, self.resource_id);
        ext::set_resource_version(&mut ev, self.version);
        ext::set_str(&mut ev, ext::CLUSTER_NAME, self.cluster);
        ext::set_str(&mut ev, ext::ORIGINAL_SOURCE, "");
        ext::set_str(&mut ev, ext::LOG_TRACING, "{}");
        if let Some(m) = self.metadata {
            ext::set_str(&mut ev, ext::METADATA, Value::Object(m).to_string());
        }
        if let Some(t) = self.deletion {
            ext::set_deletion_timestamp(&mut ev, &t);
        }
        if let Some(m) = self.field_manager {
            ext::set_str(&mut ev, ext::FIELD_MANAGER, m);
        }
        if let Some(b) = self.bundle {
            set_json_data(&mut ev, b);
        }
        ev
    }
}

/// A decoded spec event.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecEvent {
    /// The parsed type.
    pub event_type: EventType,
    /// The CloudEvent `source`.
    pub source: String,
    /// `resourceid`.
    pub resource_id: String,
    /// `resourceversion`.
    pub resource_version: i64,
    /// `clustername` (may be empty).
    pub cluster_name: String,
    /// `deletiontimestamp`, when the resource is deleting.
    pub deletion: Option<DateTime<Utc>>,
    /// The `metadata` extension.
    pub metadata: Option<Map<String, Value>>,
    /// The bundle; `None` for deletions.
    pub bundle: Option<ManifestBundle>,
}

/// Decodes a spec event as the agent does: the type must be a `manifestbundles` `spec` event
/// other than `resync_request`; `resourceid` and `resourceversion` are required; without
/// `deletiontimestamp` the data must be a ManifestBundle passing [`validate_bundle`].
///
/// # Errors
/// Any [`Error`] naming the first problem.
pub fn decode_spec(event: &Event) -> Result<SpecEvent> {
    let event_type = EventType::parse(event.ty())?;
    if !event_type.is_manifest_bundles() {
        return Err(Error::UnsupportedDataType(event_type.data_type));
    }
    if event_type.sub_resource != SubResource::Spec || event_type.action == Action::ResyncRequest {
        return Err(Error::InvalidType { ty: event.ty().to_owned(), reason: "not a spec event" });
    }
    let deletion = ext::deletion_timestamp(event)?;
    let bundle = match deletion {
        Some(_) => data_as::<ManifestBundle>(event, "ManifestBundle").ok(),
        None => {
            let b: ManifestBundle = data_as(event, "ManifestBundle")?;
            validate_bundle(&b)?;
            Some(b)
        }
    };
    Ok(SpecEvent {
        event_type,
        source: event.source().to_string(),
        resource_id: ext::resource_id(event)?,
        resource_version: ext::resource_version(event)?,
        cluster_name: ext::get_str(event, ext::CLUSTER_NAME).unwrap_or_default(),
        deletion,
        metadata: ext::metadata(event)?,
        bundle,
    })
}

/// Builds a `status.update_request` (or `status.resync_response`) event with `resourceid`,
/// `resourceversion`, `clustername`, `originalsource`, `sequenceid`, `statushash` and the
/// ManifestBundleStatus data (docs/protocol.md §3.2, §4.3).
#[derive(Debug, Clone)]
pub struct StatusEventBuilder<'a> {
    /// CloudEvent `source`: the agent id.
    pub source: &'a str,
    /// `resourceid`.
    pub resource_id: &'a str,
    /// `resourceversion`: the generation applied.
    pub resource_version: i64,
    /// `clustername`: the agent's cluster.
    pub cluster_name: &'a str,
    /// `originalsource`: the source of the spec.
    pub original_source: &'a str,
    /// `sequenceid`.
    pub sequence_id: &'a str,
    /// `statushash`.
    pub status_hash: &'a str,
    /// `metadata` (work ObjectMeta), optional.
    pub metadata: Option<&'a Map<String, Value>>,
    /// The action: `update_request` or `resync_response`.
    pub action: Action,
}

impl StatusEventBuilder<'_> {
    /// Builds the event with `status` as data.
    pub fn build(&self, status: &ManifestBundleStatus) -> Event {
        let ty = EventType::manifest_bundles(SubResource::Status, self.action);
        let mut ev = base_event(&ty, self.source);
        ext::set_str(&mut ev, ext::RESOURCE_ID, self.resource_id);
        ext::set_resource_version(&mut ev, self.resource_version);
        ext::set_str(&mut ev, ext::CLUSTER_NAME, self.cluster_name);
        ext::set_str(&mut ev, ext::ORIGINAL_SOURCE, self.original_source);
        ext::set_str(&mut ev, ext::SEQUENCE_ID, self.sequence_id);
        ext::set_str(&mut ev, ext::STATUS_HASH, self.status_hash);
        ext::set_str(&mut ev, ext::LOG_TRACING, "{}");
        if let Some(m) = self.metadata {
            ext::set_str(&mut ev, ext::METADATA, Value::Object(m.clone()).to_string());
        }
        set_json_data(&mut ev, serde_json::to_value(status).unwrap_or(Value::Null));
        ev
    }
}

/// A decoded status event.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    /// The parsed type.
    pub event_type: EventType,
    /// The CloudEvent `source` (agent id).
    pub source: String,
    /// `resourceid`.
    pub resource_id: String,
    /// `resourceversion`.
    pub resource_version: i64,
    /// `clustername`.
    pub cluster_name: String,
    /// `originalsource`.
    pub original_source: String,
    /// `sequenceid`.
    pub sequence_id: String,
    /// `statushash`, if sent.
    pub status_hash: Option<String>,
    /// The status payload.
    pub status: ManifestBundleStatus,
}

/// Decodes a status event as a source does: a `manifestbundles` `status` event other than
/// `resync_request`, with `resourceid`, `resourceversion`, `clustername`, `originalsource`,
/// `sequenceid` (required, docs/protocol.md §3.2) and a ManifestBundleStatus.
///
/// # Errors
/// Any [`Error`] naming the first problem.
pub fn decode_status(event: &Event) -> Result<StatusEvent> {
    let event_type = EventType::parse(event.ty())?;
    if !event_type.is_manifest_bundles() {
        return Err(Error::UnsupportedDataType(event_type.data_type));
    }
    if event_type.sub_resource != SubResource::Status || event_type.action == Action::ResyncRequest {
        return Err(Error::InvalidType { ty: event.ty().to_owned(), reason: "not a status event" });
    }
    let sequence_id = ext::require_str(event, ext::SEQUENCE_ID)?;
    crate::snowflake::parse(&sequence_id)?;
    Ok(StatusEvent {
        event_type,
        source: event.source().to_string(),
        resource_id: ext::resource_id(event)?,
        resource_version: ext::resource_version(event)?,
        cluster_name: ext::require_str(event, ext::CLUSTER_NAME)?,
        original_source: ext::require_str(event, ext::ORIGINAL_SOURCE)?,
        sequence_id,
        status_hash: ext::get_str(event, ext::STATUS_HASH).filter(|h| !h.is_empty()),
        status: data_as(event, "ManifestBundleStatus")?,
    })
}

/// A `spec.resync_request` from an agent (docs/protocol.md §5.1): `clustername` = its cluster,
/// `originalsource` = `""` (all sources), data = the versions it holds.
pub fn spec_resync_request(agent_id: &str, cluster: &str, versions: &ResourceVersionList) -> Event {
    let ty = EventType::manifest_bundles(SubResource::Spec, Action::ResyncRequest);
    let mut ev = base_event(&ty, agent_id);
    ext::set_str(&mut ev, ext::CLUSTER_NAME, cluster);
    ext::set_str(&mut ev, ext::ORIGINAL_SOURCE, "");
    set_json_data(&mut ev, serde_json::to_value(versions).unwrap_or(Value::Null));
    ev
}

/// A `status.resync_request` from a source (docs/protocol.md §5.1): `clustername` = the consumer
/// (or `""` for all), data = the status hashes it holds.
pub fn status_resync_request(source: &str, cluster: &str, hashes: &StatusHashList) -> Event {
    let ty = EventType::manifest_bundles(SubResource::Status, Action::ResyncRequest);
    let mut ev = base_event(&ty, source);
    ext::set_str(&mut ev, ext::CLUSTER_NAME, cluster);
    ext::set_str(&mut ev, ext::ORIGINAL_SOURCE, "");
    set_json_data(&mut ev, serde_json::to_value(hashes).unwrap_or(Value::Null));
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Condition;
    use serde_json::json;

    fn bundle() -> ManifestBundle {
        serde_json::from_value(json!({"manifests":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"default"}}]}))
            .expect("bundle")
    }

    #[test]
    fn spec_round_trip() {
        let mut meta = Map::new();
        meta.insert("name".into(), json!("rid"));
        let ev = SpecEventBuilder::new("maestro", "rid", 2, "c1")
            .action(Action::Update)
            .metadata(meta)
            .bundle(&bundle())
            .build();
        assert_eq!(ev.ty(), "io.open-cluster-management.works.v1alpha1.manifestbundles.spec.update_request");
        let d = decode_spec(&ev).expect("decode");
        assert_eq!((d.resource_id.as_str(), d.resource_version, d.cluster_name.as_str()), ("rid", 2, "c1"));
        assert_eq!(d.bundle, Some(bundle()));
        assert_eq!(d.metadata.and_then(|m| m.get("name").cloned()), Some(json!("rid")));
        assert_eq!(ext::get_str(&ev, ext::ORIGINAL_SOURCE).as_deref(), Some(""));
    }

    #[test]
    fn delete_has_no_data_and_decodes_without_bundle() {
        let ev = SpecEventBuilder::new("maestro", "rid", 2, "c1")
            .action(Action::Delete)
            .deletion(Utc::now())
            .build();
        assert!(ev.data().is_none());
        let d = decode_spec(&ev).expect("decode");
        assert!(d.deletion.is_some() && d.bundle.is_none());
    }

    #[test]
    fn spec_decode_rejects_bad_input() {
        let empty =
            SpecEventBuilder::new("maestro", "rid", 1, "c1").bundle(&ManifestBundle::default()).build();
        assert!(matches!(decode_spec(&empty), Err(Error::InvalidBundle(_))));
        let no_data = SpecEventBuilder::new("maestro", "rid", 1, "c1").build();
        assert!(matches!(decode_spec(&no_data), Err(Error::MissingData { .. })));
        let mut no_id = SpecEventBuilder::new("maestro", "rid", 1, "c1").bundle(&bundle()).build();
        no_id.remove_extension(ext::RESOURCE_ID);
        assert!(matches!(decode_spec(&no_id), Err(Error::MissingExtension("resourceid"))));
        let mut wrong = no_id.clone();
        wrong.set_type("io.open-cluster-management.works.v1alpha1.manifests.spec.create_request");
        assert!(matches!(decode_spec(&wrong), Err(Error::UnsupportedDataType(_))));
    }

    #[test]
    fn status_round_trip_requires_sequence_id() {
        let mut status = ManifestBundleStatus::default();
        status.conditions.push(Condition {
            kind: "Applied".into(),
            status: "True".into(),
            ..Default::default()
        });
        let b = StatusEventBuilder {
            source: "c1-work-agent",
            resource_id: "rid",
            resource_version: 2,
            cluster_name: "c1",
            original_source: "maestro",
            sequence_id: "1834773391719010304",
            status_hash: "abc",
            metadata: None,
            action: Action::Update,
        };
        let ev = b.build(&status);
        let d = decode_status(&ev).expect("decode");
        assert_eq!(d.status, status);
        assert_eq!(d.original_source, "maestro");
        let mut no_seq = ev.clone();
        no_seq.remove_extension(ext::SEQUENCE_ID);
        assert!(matches!(decode_status(&no_seq), Err(Error::MissingExtension("sequenceid"))));
    }

    #[test]
    fn resync_requests() {
        let ev = spec_resync_request("a", "c1", &ResourceVersionList::default());
        assert!(ev.ty().ends_with("spec.resync_request"));
        assert_eq!(crate::json::to_value(&ev)["data"], json!({"resourceVersions":[]}));
        let ev = status_resync_request("maestro", "c1", &StatusHashList::default());
        assert!(ev.ty().ends_with("status.resync_request"));
        let l: StatusHashList = data_as(&ev, "StatusHashList").expect("decode");
        assert!(l.status_hashes.is_empty());
    }
}
