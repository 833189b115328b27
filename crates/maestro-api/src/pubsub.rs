//! The GCP Pub/Sub CloudEvents binding as Go's sdk-go `generic/options/v2/pubsub/codec.go`
//! speaks it (docs/protocol.md §7.3 "Message encoding", §7.5). Pure: no I/O and no Pub/Sub client
//! types — a message is an attribute map plus data bytes ([`PubSubMessage`]).
//!
//! **Encoding** ([`encode`], "binary-like"):
//! - `data` = the event data bytes (JSON; empty when the event has no data);
//! - attributes `ce-specversion`, `ce-type`, `ce-source`, `ce-id`, `ce-time` (RFC 3339 with
//!   nanoseconds, UTC, trailing zeros trimmed like Go's `time.RFC3339Nano`), `ce-subject` /
//!   `ce-dataschema` when set and non-empty;
//! - attribute **`Content-Type`** = `datacontenttype` (when set);
//! - `ce-<name>` for every extension, string-formatted (integers decimal, booleans
//!   `true`/`false`), **kept even when empty** (e.g. `ce-originalsource` = `""`, §3.2).
//!
//! **Decoding** ([`decode`]): `ce-specversion` (must be `1.0`), `ce-id`, `ce-source` and
//! `ce-type` are required and non-empty; `datacontenttype` defaults to `application/json`;
//! unknown `ce-` attributes become string extensions; attributes without the `ce-` prefix
//! (other than `Content-Type`) are ignored. Data is parsed as JSON when the content type is
//! JSON.

use std::collections::BTreeMap;

use cloudevents::{AttributesReader, AttributesWriter};

use crate::binding::{self, Binding};
use crate::mqtt::format_rfc3339_nano;
use crate::{Data, Error, Event, Result, json};

const BINDING: Binding = Binding { error: Error::InvalidPubSub, what: "attribute", skip_empty: true };

/// Prefix of every CloudEvents attribute.
pub const PREFIX: &str = binding::PREFIX;
/// The attribute carrying `datacontenttype`.
pub const CONTENT_TYPE: &str = "Content-Type";
/// The attribute carrying the cluster name (the agent subscription filter key, §7.3).
pub const ATTR_CLUSTER_NAME: &str = "ce-clustername";
/// The attribute carrying the original source (the source subscription filter key, §7.3).
pub const ATTR_ORIGINAL_SOURCE: &str = "ce-originalsource";

/// One Pub/Sub message as the binding sees it: no message id, publish time or ordering key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PubSubMessage {
    /// Message attributes (`ce-*` and `Content-Type`).
    pub attributes: BTreeMap<String, String>,
    /// The message data: the event data bytes.
    pub data: Vec<u8>,
}

impl PubSubMessage {
    /// The attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    /// The encoded size in bytes as Pub/Sub counts it (data + attribute keys and values),
    /// for size limits. Pub/Sub's own limit is 10 MB per message.
    pub fn encoded_len(&self) -> usize {
        let attrs: usize = self.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.data.len() + attrs
    }
}

/// Encodes an event as Go's Pub/Sub codec does (see the module docs).
pub fn encode(event: &Event) -> PubSubMessage {
    let mut attrs = BTreeMap::new();
    let mut put = |name: &str, value: String| {
        attrs.insert(format!("{PREFIX}{name}"), value);
    };
    put("specversion", event.specversion().to_string());
    put("type", event.ty().to_owned());
    put("source", event.source().to_string());
    put("id", event.id().to_owned());
    if let Some(t) = event.time() {
        put("time", format_rfc3339_nano(t));
    }
    if let Some(s) = event.subject().filter(|s| !s.is_empty()) {
        put("subject", s.to_owned());
    }
    if let Some(u) = event.dataschema() {
        put("dataschema", u.to_string());
    }
    for (name, value) in event.iter_extensions() {
        put(name, binding::extension_string(value));
    }
    if let Some(ct) = event.datacontenttype().filter(|c| !c.is_empty()) {
        attrs.insert(CONTENT_TYPE.to_owned(), ct.to_owned());
    }
    PubSubMessage { attributes: attrs, data: json::data_bytes(event) }
}

/// Decodes a received message (see the module docs).
///
/// # Errors
/// [`Error::InvalidPubSub`] when a required attribute (`ce-specversion` `1.0`, `ce-id`,
/// `ce-source`, `ce-type`) is missing or empty, `ce-time` / `ce-dataschema` is malformed, an
/// extension name is not `[a-z0-9]+`, or JSON data does not parse.
pub fn decode(msg: &PubSubMessage) -> Result<Event> {
    let mut event = binding::required(BINDING, |name| msg.attribute(name))?;
    for (key, value) in &msg.attributes {
        let Some(name) = key.strip_prefix(PREFIX) else { continue };
        binding::apply(BINDING, &mut event, name, value)?;
    }
    set_data(&mut event, msg.attribute(CONTENT_TYPE), &msg.data)?;
    Ok(event)
}

fn set_data(event: &mut Event, content_type: Option<&str>, data: &[u8]) -> Result<()> {
    let content_type = content_type.filter(|c| !c.is_empty()).unwrap_or(crate::codec::JSON).to_owned();
    if data.is_empty() {
        event.set_datacontenttype(Some(content_type));
        return Ok(());
    }
    let value = if json::is_json_content_type(&content_type) {
        Data::Json(
            serde_json::from_slice(data)
                .map_err(|e| Error::InvalidPubSub(format!("data is not JSON: {e}")))?,
        )
    } else {
        Data::Binary(data.to_vec())
    };
    event.set_data(content_type, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, StatusEventBuilder};
    use crate::ext;
    use crate::payload::ManifestBundleStatus;
    use crate::types::Action;
    use chrono::DateTime;
    use serde_json::json;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn spec_event_encodes_like_go() {
        let bundle = json!({"manifests":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"default"}}]});
        let ev = codec::SpecEventBuilder::new("maestro", "rid-1", 3, "cluster1")
            .action(Action::Update)
            .bundle_json(bundle.clone())
            .build();
        let msg = encode(&ev);
        assert_eq!(msg.attribute("Content-Type"), Some("application/json"));
        assert_eq!(msg.attribute("ce-specversion"), Some("1.0"));
        assert_eq!(msg.attribute("ce-type"), Some(ev.ty()));
        assert_eq!(msg.attribute("ce-source"), Some("maestro"));
        assert_eq!(msg.attribute("ce-id"), Some(ev.id()));
        assert_eq!(msg.attribute("ce-resourceid"), Some("rid-1"));
        assert_eq!(msg.attribute("ce-resourceversion"), Some("3"));
        assert_eq!(msg.attribute(ATTR_CLUSTER_NAME), Some("cluster1"));
        assert_eq!(msg.attribute(ATTR_ORIGINAL_SOURCE), Some(""), "empty extensions are kept");
        assert!(msg.attribute("ce-time").is_some_and(|t| t.ends_with('Z')));
        assert_eq!(msg.attribute("ce-datacontenttype"), None);
        assert_eq!(msg.attribute("ce-subject"), None);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&msg.data).expect("json"), bundle);
        let back = decode(&msg).expect("decode");
        assert_eq!(back.id(), ev.id());
        assert_eq!(back.time(), ev.time());
        assert_eq!(ext::resource_version(&back).expect("v"), 3);
        let spec = codec::decode_spec(&back).expect("decode_spec");
        assert_eq!(spec.resource_id, "rid-1");
    }

    #[test]
    fn deletion_spec_has_no_data() {
        let at = DateTime::from_timestamp(1_700_000_000, 120_000_000).expect("ts");
        let ev = codec::SpecEventBuilder::new("maestro", "rid", 2, "c1")
            .action(Action::Delete)
            .deletion(at)
            .build();
        let msg = encode(&ev);
        assert!(msg.data.is_empty());
        assert_eq!(msg.attribute("ce-deletiontimestamp"), Some(ext::format_timestamp(&at).as_str()));
        let back = decode(&msg).expect("decode");
        assert_eq!(ext::deletion_timestamp(&back).expect("ts"), Some(at));
        assert!(back.data().is_none());
        assert_eq!(back.datacontenttype(), Some("application/json"), "defaulted");
    }

    #[test]
    fn status_event_round_trips() {
        let seq = "1834773391719010304";
        let ev = StatusEventBuilder {
            source: "cluster1-work-agent",
            resource_id: "rid-1",
            resource_version: 1,
            cluster_name: "cluster1",
            original_source: "maestro",
            sequence_id: seq,
            status_hash: "abc",
            metadata: None,
            action: Action::Update,
        }
        .build(&ManifestBundleStatus::default());
        let back = decode(&encode(&ev)).expect("decode");
        let st = codec::decode_status(&back).expect("decode_status");
        assert_eq!(st.sequence_id, seq);
        assert_eq!(st.original_source, "maestro");
        assert_eq!(st.resource_version, 1);
    }

    /// Attributes exactly as the Go work agent publishes a status update to `agentevents`.
    #[test]
    fn go_agent_status_attributes_decode() {
        let msg = PubSubMessage {
            attributes: attrs(&[
                ("Content-Type", "application/json"),
                ("ce-specversion", "1.0"),
                ("ce-id", "0b2a9a8e-7f37-4a0c-9a66-1c1b7e3f9d11"),
                ("ce-source", "c1-work-agent"),
                ("ce-type", "io.open-cluster-management.works.v1alpha1.manifestbundles.status.update_request"),
                ("ce-time", "2024-09-13T06:11:10.123456789Z"),
                ("ce-resourceid", "68ebf474-6709-48bb-b760-386181268060"),
                ("ce-resourceversion", "1"),
                ("ce-clustername", "c1"),
                ("ce-originalsource", "maestro"),
                ("ce-sequenceid", "1834773391719010304"),
                ("ce-statushash", "6b7c3d1f"),
                ("ce-logtracing", "{}"),
                ("ce-metadata", r#"{"name":"68ebf474-6709-48bb-b760-386181268060"}"#),
            ]),
            data: br#"{"conditions":[{"type":"Applied","status":"True","lastTransitionTime":"2024-09-13T06:11:10Z","reason":"AppliedManifestWorkComplete","message":"Apply manifest work complete"}]}"#.to_vec(),
        };
        let ev = decode(&msg).expect("decode");
        let st = codec::decode_status(&ev).expect("decode_status");
        assert_eq!(st.resource_version, 1);
        assert_eq!(st.cluster_name, "c1");
        assert_eq!(st.original_source, "maestro");
        assert_eq!(st.status_hash.as_deref(), Some("6b7c3d1f"));
        assert_eq!(st.status.conditions.len(), 1);
        assert_eq!(ev.time().map(|t| t.timestamp_subsec_nanos()), Some(123_456_789));
        // Re-encoding reproduces every attribute exactly.
        assert_eq!(encode(&ev).attributes, msg.attributes);
    }

    #[test]
    fn content_type_defaults_to_json_and_other_attributes_are_ignored() {
        let msg = PubSubMessage {
            attributes: attrs(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "s"),
                ("ce-type", "t"),
                ("ce-custom", "x"),
                ("googclient_foo", "y"),
            ]),
            data: br#"{"a":1}"#.to_vec(),
        };
        let ev = decode(&msg).expect("decode");
        assert_eq!(ev.datacontenttype(), Some("application/json"));
        assert_eq!(ext::get_str(&ev, "custom").as_deref(), Some("x"));
        assert!(ev.extension("googclient_foo").is_none());
        assert!(matches!(ev.data(), Some(Data::Json(v)) if v["a"] == 1));
    }

    #[test]
    fn malformed_messages_are_refused_with_a_reason() {
        let base = [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "s"), ("ce-type", "t")];
        let with = |extra: &[(&str, &str)]| {
            let mut a = attrs(&base);
            a.extend(attrs(extra));
            a
        };
        assert!(decode(&PubSubMessage { attributes: attrs(&base), data: vec![] }).is_ok());
        let cases: Vec<(BTreeMap<String, String>, &[u8], &str)> = vec![
            (attrs(&[]), b"", "ce-specversion"),
            (with(&[("ce-specversion", "0.3")]), b"", "0.3"),
            (attrs(&base[..3]), b"", "ce-type"),
            (with(&[("ce-source", "")]), b"", "ce-source"),
            (with(&[("ce-time", "yesterday")]), b"", "ce-time"),
            (with(&[("ce-Bad", "x")]), b"", "extension name"),
            (attrs(&base), b"{oops", "not JSON"),
        ];
        for (attributes, data, want) in cases {
            let err = decode(&PubSubMessage { attributes, data: data.to_vec() }).expect_err(want).to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }
}
