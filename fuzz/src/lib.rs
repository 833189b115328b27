//! Shared pieces of the fuzz targets: the checks run on every event a decoder accepts, and an
//! `Arbitrary` event description for the codec decoders (`decode_spec`, `decode_status`).

use arbitrary::Arbitrary;
use cloudevents::event::ExtensionValue;
use maestro_api::codec::{self, SpecEventBuilder, StatusEventBuilder, data_as};
use maestro_api::payload::{ManifestBundleStatus, ResourceVersionList, StatusHashList};
use maestro_api::types::Action;
use maestro_api::{AttributesReader, AttributesWriter, Data, Event, ext, grpc, json, mqtt, pubsub};

/// The attributes and extensions of two events (not the data: serde_json's default float
/// parsing is not exact, so JSON data may differ in the last digit of a float).
pub fn same_but_data(a: &Event, b: &Event) -> bool {
    let mut ext_a: Vec<_> = a.iter_extensions().collect();
    let mut ext_b: Vec<_> = b.iter_extensions().collect();
    ext_a.sort_by_key(|(k, _)| *k);
    ext_b.sort_by_key(|(k, _)| *k);
    a.id() == b.id()
        && a.source() == b.source()
        && a.ty() == b.ty()
        && a.time() == b.time()
        && a.subject() == b.subject()
        && a.dataschema() == b.dataschema()
        && a.datacontenttype() == b.datacontenttype()
        && ext_a == ext_b
}


/// Runs every decoder and encoder that takes a decoded event, and checks what must hold for
/// any event a wire decoder accepted: it can be stored as structured JSON and read back with
/// the same attributes and extensions.
pub fn exercise(ev: &Event) {
    let _ = codec::decode_spec(ev);
    let _ = codec::decode_status(ev);
    let _ = data_as::<ResourceVersionList>(ev, "ResourceVersionList");
    let _ = data_as::<StatusHashList>(ev, "StatusHashList");
    let _ = data_as::<ManifestBundleStatus>(ev, "ManifestBundleStatus");
    let _ = ext::metadata(ev);
    let _ = ext::deletion_timestamp(ev);
    let _ = ext::resource_version(ev);
    let _ = grpc::from_proto(grpc::to_proto(ev));
    let _ = mqtt::decode(&mqtt::encode(ev));
    let _ = pubsub::decode(&pubsub::encode(ev));
    let bytes = json::to_vec(ev);
    assert_eq!(json::encoded_len(ev), bytes.len(), "encoded_len");
    match json::from_slice(&bytes) {
        Ok(back) => assert!(same_but_data(ev, &back), "storage changed the event:\n{ev:?}\n{back:?}"),
        Err(e) => panic!("an accepted event cannot be stored: {e}\n{ev:?}"),
    }
    if let Ok(text) = std::str::from_utf8(&bytes) {
        let _ = json::from_str_raw_data(text);
    }
}

/// A known or arbitrary extension name.
#[derive(Debug, Arbitrary)]
pub enum Name {
    /// `resourceid`
    ResourceId,
    /// `resourceversion`
    ResourceVersion,
    /// `clustername`
    ClusterName,
    /// `originalsource`
    OriginalSource,
    /// `deletiontimestamp`
    DeletionTimestamp,
    /// `metadata`
    Metadata,
    /// `sequenceid`
    SequenceId,
    /// `statushash`
    StatusHash,
    /// Anything.
    Other(String),
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Name::ResourceId => ext::RESOURCE_ID,
            Name::ResourceVersion => ext::RESOURCE_VERSION,
            Name::ClusterName => ext::CLUSTER_NAME,
            Name::OriginalSource => ext::ORIGINAL_SOURCE,
            Name::DeletionTimestamp => ext::DELETION_TIMESTAMP,
            Name::Metadata => ext::METADATA,
            Name::SequenceId => ext::SEQUENCE_ID,
            Name::StatusHash => ext::STATUS_HASH,
            Name::Other(s) => s,
        }
    }
}

/// An extension value.
#[derive(Debug, Arbitrary)]
pub enum Value {
    /// A string.
    String(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Boolean(bool),
}

/// Event data.
#[derive(Debug, Arbitrary)]
pub enum DataIn {
    /// Keep the template's.
    Keep,
    /// None.
    None,
    /// This text parsed as JSON (a JSON string of it when it does not parse).
    Json(String),
    /// A string.
    String(String),
    /// Bytes.
    Binary(Vec<u8>),
}

/// One edit of a template event.
#[derive(Debug, Arbitrary)]
pub enum Edit {
    /// Remove an extension.
    Remove(Name),
    /// Set an extension.
    Set(Name, Value),
    /// Replace the type: `manifestbundles.<sub>.<action>` or anything.
    Type(Option<(bool, u8)>, String),
}

/// An event for the codec decoders: a valid spec or status event from the builders (with a
/// bundle whose manifest name, version and cluster come from the input), then edits.
#[derive(Debug, Arbitrary)]
pub struct EventIn {
    /// Start from a status event (else a spec event).
    pub status: bool,
    /// `resourceversion` of the template.
    pub version: i64,
    /// `clustername` of the template.
    pub cluster: String,
    /// The manifest name of the template's bundle.
    pub name: String,
    /// `sequenceid` of a status template.
    pub sequence_id: u64,
    /// Edits.
    pub edits: Vec<Edit>,
    /// The data.
    pub data: DataIn,
}

const ACTIONS: [&str; 7] = [
    "create_request",
    "update_request",
    "delete_request",
    "resync_request",
    "resync_response",
    "watch_request",
    "explode",
];

impl EventIn {
    /// Builds the event.
    pub fn build(&self) -> Event {
        let mut ev = if self.status {
            let mut st = ManifestBundleStatus::default();
            st.conditions.push(maestro_api::payload::Condition {
                kind: "Applied".into(),
                status: "True".into(),
                ..Default::default()
            });
            StatusEventBuilder {
                source: "c1-work-agent",
                resource_id: "rid",
                resource_version: self.version,
                cluster_name: &self.cluster,
                original_source: "maestro",
                sequence_id: &self.sequence_id.to_string(),
                status_hash: "abc",
                metadata: None,
                action: Action::Update,
            }
            .build(&st)
        } else {
            SpecEventBuilder::new("maestro", "rid", self.version, &self.cluster)
                .action(Action::Update)
                .bundle_json(serde_json::json!({"manifests": [{"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": self.name, "namespace": "default"}}]}))
                .build()
        };
        for e in &self.edits {
            match e {
                Edit::Remove(n) => {
                    ev.remove_extension(n.as_str());
                }
                Edit::Set(n, v) => {
                    let v = match v {
                        Value::String(s) => ExtensionValue::String(s.clone()),
                        Value::Integer(i) => ExtensionValue::Integer(*i),
                        Value::Boolean(b) => ExtensionValue::Boolean(*b),
                    };
                    ev.set_extension(n.as_str(), v);
                }
                Edit::Type(Some((status, action)), _) => {
                    let sub = if *status { "status" } else { "spec" };
                    let action = ACTIONS[usize::from(*action) % ACTIONS.len()];
                    ev.set_type(format!("{}.{sub}.{action}", maestro_api::types::MANIFEST_BUNDLES));
                }
                Edit::Type(None, t) => {
                    ev.set_type(t.clone());
                }
            }
        }
        match &self.data {
            DataIn::Keep => {}
            DataIn::None => {
                ev.take_data();
            }
            DataIn::Json(s) => {
                let v = serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.clone()));
                ev.set_data(codec::JSON, Data::Json(v));
            }
            DataIn::String(s) => {
                ev.set_data_unchecked(Data::String(s.clone()));
            }
            DataIn::Binary(b) => {
                ev.set_data_unchecked(Data::Binary(b.clone()));
            }
        }
        ev
    }
}
