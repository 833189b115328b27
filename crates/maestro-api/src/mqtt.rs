//! The MQTT 5 CloudEvents binding as Go's `cloudevents/sdk-go/protocol/mqtt_paho/v2` speaks it
//! (docs/protocol.md §7.2, §7.5). Pure: no I/O and no MQTT client types — a message is plain
//! user-property pairs, an optional `Content-Type` property and payload bytes ([`MqttMessage`]).
//!
//! **Binary mode** (what Go sends, what [`encode`] produces):
//! - payload = the data bytes (JSON);
//! - the MQTT `Content-Type` property = `datacontenttype`;
//! - user properties `ce-specversion`, `ce-id`, `ce-source`, `ce-type`, `ce-time` (RFC 3339 with
//!   nanoseconds, UTC, trailing zeros trimmed like Go's `time.RFC3339Nano`), `ce-subject` /
//!   `ce-dataschema` when set, and `ce-<name>` for every extension. All values are strings:
//!   integers in decimal, booleans `true`/`false`, `deletiontimestamp` as held (RFC 3339).
//!   Empty strings are real values and are kept (e.g. `ce-clustername` = `""`, §3.2).
//!
//! **Decoding** ([`decode`]) follows Go's reader: a message with a `ce-specversion` user
//! property is binary; otherwise one whose `Content-Type` is `application/cloudevents+json`
//! is structured (the payload is the whole event JSON); anything else is refused. Unknown
//! `ce-` properties become string extensions; user properties without the `ce-` prefix are
//! ignored. Data is parsed as JSON when the content type is JSON or absent.

use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::{AttributesReader, AttributesWriter};

use crate::binding::{self, Binding};
use crate::{Data, Error, Event, Result, json};

const BINDING: Binding = Binding { error: Error::InvalidMqtt, what: "user property", skip_empty: false };

/// Prefix of every CloudEvents user property.
pub const PREFIX: &str = binding::PREFIX;

/// One MQTT 5 PUBLISH as the binding sees it: no topic, QoS or packet id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttMessage {
    /// The MQTT `Content-Type` property (`datacontenttype` in binary mode).
    pub content_type: Option<String>,
    /// User properties, in order (`(name, value)`).
    pub user_properties: Vec<(String, String)>,
    /// The payload: the data bytes (binary mode) or the event JSON (structured mode).
    pub payload: Vec<u8>,
}

impl MqttMessage {
    /// The first user property named `name`.
    pub fn user_property(&self, name: &str) -> Option<&str> {
        self.user_properties.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Approximate encoded size in bytes (payload + properties), for size limits.
    pub fn encoded_len(&self) -> usize {
        let props: usize = self.user_properties.iter().map(|(k, v)| k.len() + v.len() + 5).sum();
        self.payload.len() + props + self.content_type.as_ref().map_or(0, |c| c.len() + 3)
    }
}

/// Formats a timestamp like Go's `time.RFC3339Nano` in UTC: nanoseconds with trailing zeros
/// (and a bare dot) removed, `Z` suffix.
pub fn format_rfc3339_nano(t: &DateTime<Utc>) -> String {
    let s = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    match s.split_once('.') {
        Some((secs, frac)) => {
            let digits = frac.trim_end_matches('Z').trim_end_matches('0');
            if digits.is_empty() { format!("{secs}Z") } else { format!("{secs}.{digits}Z") }
        }
        None => s,
    }
}

/// Encodes an event in binary mode, as Go sends it (see the module docs).
pub fn encode(event: &Event) -> MqttMessage {
    let mut props = vec![
        (format!("{PREFIX}specversion"), event.specversion().to_string()),
        (format!("{PREFIX}id"), event.id().to_owned()),
        (format!("{PREFIX}source"), event.source().to_string()),
        (format!("{PREFIX}type"), event.ty().to_owned()),
    ];
    if let Some(t) = event.time() {
        props.push((format!("{PREFIX}time"), format_rfc3339_nano(t)));
    }
    if let Some(s) = event.subject() {
        props.push((format!("{PREFIX}subject"), s.to_owned()));
    }
    if let Some(u) = event.dataschema() {
        props.push((format!("{PREFIX}dataschema"), u.to_string()));
    }
    for (name, value) in event.iter_extensions() {
        props.push((format!("{PREFIX}{name}"), binding::extension_string(value)));
    }
    MqttMessage {
        content_type: event.datacontenttype().map(str::to_owned),
        user_properties: props,
        payload: json::data_bytes(event),
    }
}

/// Decodes a received message (binary or structured mode, see the module docs).
///
/// # Errors
/// [`Error::InvalidMqtt`] when the message is neither binary nor structured, a required
/// attribute (`ce-specversion` `1.0`, `ce-id`, `ce-source`, `ce-type`) is missing or empty, a
/// property appears twice, `ce-time` / `ce-dataschema` is malformed, or JSON data does not
/// parse; [`Error::InvalidJson`] for a bad structured event.
pub fn decode(msg: &MqttMessage) -> Result<Event> {
    let binary = msg.user_property(&format!("{PREFIX}specversion")).is_some();
    let structured =
        msg.content_type.as_deref().is_some_and(|ct| ct.trim().starts_with(json::STRUCTURED_CONTENT_TYPE));
    if !binary {
        if structured {
            return json::from_slice(&msg.payload);
        }
        return Err(Error::InvalidMqtt(
            "neither binary mode (no ce-specversion user property) nor structured mode \
             (Content-Type is not application/cloudevents+json)"
                .into(),
        ));
    }
    let mut event = binding::required(BINDING, |name| msg.user_property(name))?;
    let mut seen = std::collections::HashSet::new();
    for (key, value) in &msg.user_properties {
        let Some(name) = key.strip_prefix(PREFIX) else { continue };
        if !seen.insert(name) {
            return Err(Error::InvalidMqtt(format!("user property {key:?} appears more than once")));
        }
        binding::apply(BINDING, &mut event, name, value)?;
    }
    set_data(&mut event, msg.content_type.clone(), &msg.payload)?;
    Ok(event)
}

fn set_data(event: &mut Event, content_type: Option<String>, payload: &[u8]) -> Result<()> {
    let content_type = content_type.filter(|c| !c.is_empty());
    if payload.is_empty() {
        if let Some(ct) = content_type {
            event.set_datacontenttype(Some(ct));
        }
        return Ok(());
    }
    let is_json = content_type.as_deref().is_none_or(json::is_json_content_type);
    let data = if is_json {
        Data::Json(
            serde_json::from_slice(payload)
                .map_err(|e| Error::InvalidMqtt(format!("payload is not JSON: {e}")))?,
        )
    } else {
        Data::Binary(payload.to_vec())
    };
    event.set_data(content_type.unwrap_or_else(|| crate::codec::JSON.to_owned()), data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, StatusEventBuilder};
    use crate::ext;
    use crate::payload::ManifestBundleStatus;
    use crate::types::Action;
    use serde_json::json;

    fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn spec_event_round_trips_in_binary_mode() {
        let bundle = json!({"manifests":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"default"}}]});
        let ev = codec::SpecEventBuilder::new("maestro", "rid-1", 3, "cluster1")
            .action(Action::Update)
            .bundle_json(bundle.clone())
            .build();
        let msg = encode(&ev);
        assert_eq!(msg.content_type.as_deref(), Some("application/json"));
        assert_eq!(msg.user_property("ce-specversion"), Some("1.0"));
        assert_eq!(msg.user_property("ce-resourceversion"), Some("3"));
        assert_eq!(msg.user_property("ce-clustername"), Some("cluster1"));
        assert_eq!(msg.user_property("ce-originalsource"), Some(""));
        assert_eq!(msg.user_property("ce-logtracing"), Some("{}"));
        assert!(msg.user_property("ce-time").is_some_and(|t| t.ends_with('Z')));
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&msg.payload).expect("json"), bundle);
        let back = decode(&msg).expect("decode");
        assert_eq!(back.id(), ev.id());
        assert_eq!(back.time(), ev.time());
        assert_eq!(ext::resource_version(&back).expect("v"), 3);
        assert_eq!(ext::get_str(&back, ext::ORIGINAL_SOURCE).as_deref(), Some(""));
        let spec = codec::decode_spec(&back).expect("decode_spec");
        assert_eq!(spec.resource_id, "rid-1");
    }

    #[test]
    fn deletion_spec_carries_the_timestamp_as_a_string() {
        let at = DateTime::from_timestamp(1_700_000_000, 120_000_000).expect("ts");
        let ev = codec::SpecEventBuilder::new("maestro", "rid", 2, "c1")
            .action(Action::Delete)
            .deletion(at)
            .build();
        let msg = encode(&ev);
        assert!(msg.payload.is_empty() && msg.content_type.is_none());
        let back = decode(&msg).expect("decode");
        assert_eq!(ext::deletion_timestamp(&back).expect("ts"), Some(at));
        assert!(back.data().is_none());
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

    /// User properties exactly as the Go work agent sends a status update over MQTT.
    #[test]
    fn go_agent_status_properties_decode() {
        let msg = MqttMessage {
            content_type: Some("application/json".into()),
            user_properties: props(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "0b2a9a8e-7f37-4a0c-9a66-1c1b7e3f9d11"),
                ("ce-source", "cluster1-work-agent"),
                ("ce-type", "io.open-cluster-management.works.v1alpha1.manifestbundles.status.update_request"),
                ("ce-time", "2024-09-13T06:11:10.123456789Z"),
                ("ce-resourceid", "68ebf474-6709-48bb-b760-386181268060"),
                ("ce-resourceversion", "1"),
                ("ce-clustername", ""),
                ("ce-originalsource", "maestro"),
                ("ce-sequenceid", "1834773391719010304"),
                ("ce-statushash", "6b7c3d1f"),
                ("ce-logtracing", "{}"),
                ("ce-metadata", r#"{"name":"68ebf474-6709-48bb-b760-386181268060"}"#),
            ]),
            payload: br#"{"conditions":[{"type":"Applied","status":"True","lastTransitionTime":"2024-09-13T06:11:10Z","reason":"AppliedManifestWorkComplete","message":"Apply manifest work complete"}]}"#.to_vec(),
        };
        let ev = decode(&msg).expect("decode");
        let st = codec::decode_status(&ev).expect("decode_status");
        assert_eq!(st.resource_version, 1);
        assert_eq!(st.cluster_name, "");
        assert_eq!(st.status_hash.as_deref(), Some("6b7c3d1f"));
        assert_eq!(st.status.conditions.len(), 1);
        assert_eq!(ev.time().map(|t| t.timestamp_subsec_nanos()), Some(123_456_789));
        // Re-encoding keeps every property (the empty clustername included).
        let again = encode(&ev);
        for (k, v) in &msg.user_properties {
            assert_eq!(again.user_property(k), Some(v.as_str()), "{k}");
        }
    }

    #[test]
    fn structured_mode_is_accepted() {
        let ev = codec::SpecEventBuilder::new("maestro", "rid", 1, "c").build();
        let msg = MqttMessage {
            content_type: Some(json::STRUCTURED_CONTENT_TYPE.into()),
            user_properties: vec![],
            payload: json::to_vec(&ev),
        };
        assert_eq!(ext::resource_id(&decode(&msg).expect("structured")).expect("id"), "rid");
    }

    #[test]
    fn malformed_messages_are_refused_with_a_reason() {
        let base = [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "s"), ("ce-type", "t")];
        let ok = MqttMessage { user_properties: props(&base), ..Default::default() };
        assert!(decode(&ok).is_ok());
        type Case = (Vec<(String, String)>, &'static [u8], &'static str);
        let cases: Vec<Case> = vec![
            (props(&[]), b"", "neither binary"),
            (
                props(&[("ce-specversion", "0.3"), ("ce-id", "1"), ("ce-source", "s"), ("ce-type", "t")]),
                b"",
                "0.3",
            ),
            (props(&base[..3]), b"", "ce-type"),
            (props(&[base[0], base[1], ("ce-source", ""), base[3]]), b"", "ce-source"),
            (props(&[base[0], base[1], base[2], base[3], ("ce-time", "yesterday")]), b"", "ce-time"),
            (props(&[base[0], base[1], base[2], base[3], ("ce-Bad", "x")]), b"", "extension name"),
            (props(&[base[0], base[1], base[2], base[3], ("ce-id", "2")]), b"", "more than once"),
            (props(&base), b"{oops", "not JSON"),
        ];
        for (user_properties, payload, want) in cases {
            let msg = MqttMessage { content_type: None, user_properties, payload: payload.to_vec() };
            let err = decode(&msg).expect_err(want).to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }

    #[test]
    fn rfc3339_nano_trims_like_go() {
        let t = |s, n| DateTime::from_timestamp(s, n).expect("ts");
        assert_eq!(format_rfc3339_nano(&t(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_nano(&t(0, 120_000_000)), "1970-01-01T00:00:00.12Z");
        assert_eq!(format_rfc3339_nano(&t(0, 1)), "1970-01-01T00:00:00.000000001Z");
    }
}
