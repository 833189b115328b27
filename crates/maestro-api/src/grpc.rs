//! The OCM gRPC attribute mapping (docs/protocol.md §7.1.2) between `cloudevents::Event` and the
//! `io.cloudevents.v1.CloudEvent` protobuf message. This is NOT the standard CloudEvents
//! protobuf mapping:
//!
//! - `id`, `source`, `spec_version`, `type` are proto fields;
//! - `datacontenttype` travels as attribute key `contenttype` (no prefix);
//! - `time` as `ce-time` (`ce_timestamp`), other spec attributes and every extension as
//!   `ce-<name>`; `resourceversion` typed `ce_integer`, `deletiontimestamp` `ce_timestamp`,
//!   other strings `ce_string`;
//! - data as `binary_data` (raw JSON bytes);
//! - a message whose `contenttype` is `application/cloudevents+json` is structured (the whole
//!   event JSON in `binary_data`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, AttributesWriter, EventBuilder};

use crate::pb::{self, CloudEventAttributeValue, cloud_event_attribute_value::Attr};
use crate::{Data, Error, Event, EventBuilderV10, Result, ext, json};

/// Attribute key of the data content type.
pub const CONTENT_TYPE_KEY: &str = "contenttype";
/// Prefix of every other attribute key.
pub const PREFIX: &str = "ce-";

fn string_attr(s: impl Into<String>) -> CloudEventAttributeValue {
    CloudEventAttributeValue { attr: Some(Attr::CeString(s.into())) }
}

fn timestamp_attr(t: &DateTime<Utc>) -> CloudEventAttributeValue {
    let ts = prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 };
    CloudEventAttributeValue { attr: Some(Attr::CeTimestamp(ts)) }
}

fn extension_attr(name: &str, value: &ExtensionValue) -> CloudEventAttributeValue {
    match (name, value) {
        (ext::DELETION_TIMESTAMP, ExtensionValue::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => timestamp_attr(&t.with_timezone(&Utc)),
            Err(_) => string_attr(s.clone()),
        },
        (ext::RESOURCE_VERSION, ExtensionValue::String(s)) => match s.trim().parse::<i32>() {
            Ok(n) => CloudEventAttributeValue { attr: Some(Attr::CeInteger(n)) },
            Err(_) => string_attr(s.clone()),
        },
        (_, ExtensionValue::String(s)) => string_attr(s.clone()),
        (_, ExtensionValue::Boolean(b)) => CloudEventAttributeValue { attr: Some(Attr::CeBoolean(*b)) },
        (_, ExtensionValue::Integer(i)) => match i32::try_from(*i) {
            Ok(n) => CloudEventAttributeValue { attr: Some(Attr::CeInteger(n)) },
            Err(_) => string_attr(i.to_string()),
        },
    }
}

/// Encodes an event in binary mode, as Go does when it sends.
pub fn to_proto(event: &Event) -> pb::CloudEvent {
    let mut attributes = HashMap::new();
    if let Some(ct) = event.datacontenttype() {
        attributes.insert(CONTENT_TYPE_KEY.to_owned(), string_attr(ct));
    }
    if let Some(t) = event.time() {
        attributes.insert(format!("{PREFIX}time"), timestamp_attr(t));
    }
    if let Some(s) = event.subject() {
        attributes.insert(format!("{PREFIX}subject"), string_attr(s));
    }
    if let Some(u) = event.dataschema() {
        attributes.insert(
            format!("{PREFIX}dataschema"),
            CloudEventAttributeValue { attr: Some(Attr::CeUri(u.to_string())) },
        );
    }
    for (name, value) in event.iter_extensions() {
        attributes.insert(format!("{PREFIX}{name}"), extension_attr(name, value));
    }
    let data = event.data().map(|_| pb::cloud_event::Data::BinaryData(json::data_bytes(event)));
    pb::CloudEvent {
        id: event.id().to_owned(),
        source: event.source().to_string(),
        spec_version: event.specversion().to_string(),
        r#type: event.ty().to_owned(),
        attributes,
        data,
    }
}

fn attr_to_extension(attr: &Attr) -> ExtensionValue {
    match attr {
        Attr::CeBoolean(b) => ExtensionValue::Boolean(*b),
        Attr::CeInteger(i) => ExtensionValue::Integer(i64::from(*i)),
        Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s) => ExtensionValue::String(s.clone()),
        Attr::CeBytes(b) => ExtensionValue::String(String::from_utf8_lossy(b).into_owned()),
        Attr::CeTimestamp(ts) => ExtensionValue::String(
            DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)
                .map(|t| ext::format_timestamp(&t))
                .unwrap_or_default(),
        ),
    }
}

fn attr_string(attr: &Attr) -> String {
    match attr_to_extension(attr) {
        ExtensionValue::String(s) => s,
        other => other.to_string(),
    }
}

/// Decodes a protobuf CloudEvent (binary or structured mode).
///
/// # Errors
/// [`Error::InvalidProto`] when required attributes are missing, the time is invalid, or JSON
/// data does not parse; [`Error::InvalidJson`] for a bad structured event.
pub fn from_proto(msg: pb::CloudEvent) -> Result<Event> {
    let content_type = content_type(&msg);
    if content_type.as_deref().is_some_and(is_structured) {
        return match msg.data {
            Some(pb::cloud_event::Data::BinaryData(b)) => json::from_slice(&b),
            _ => Err(Error::InvalidProto("structured event without binary_data".into())),
        };
    }
    if msg.spec_version.is_empty() {
        return Err(Error::InvalidProto("spec_version is empty (encoding unknown)".into()));
    }
    if msg.spec_version != "1.0" {
        return Err(Error::InvalidProto(format!("unsupported spec_version {:?}", msg.spec_version)));
    }
    let mut event = EventBuilderV10::new()
        .id(msg.id)
        .source(msg.source)
        .ty(msg.r#type)
        .build()
        .map_err(|e| Error::InvalidProto(e.to_string()))?;
    event.set_time(None::<DateTime<Utc>>);
    for (key, value) in &msg.attributes {
        let Some(attr) = value.attr.as_ref() else { continue };
        if key == CONTENT_TYPE_KEY {
            continue;
        }
        let Some(name) = key.strip_prefix(PREFIX) else { continue };
        apply_attribute(&mut event, name, attr)?;
    }
    set_data(&mut event, content_type, msg.data)?;
    Ok(event)
}

/// The message's data content type (attribute [`CONTENT_TYPE_KEY`]), if set.
fn content_type(msg: &pb::CloudEvent) -> Option<String> {
    msg.attributes.get(CONTENT_TYPE_KEY).and_then(|v| v.attr.as_ref()).map(attr_string)
}

fn is_structured(content_type: &str) -> bool {
    content_type.starts_with(json::STRUCTURED_CONTENT_TYPE)
}

/// True when a binary-mode message's `binary_data` is the event's JSON data, as
/// [`from_proto`] reads it: the content type is absent (JSON by default) or a JSON type, and
/// the message is not structured (the whole event in `binary_data`). Lets a reader parse the
/// data bytes straight into its own type instead of the JSON tree [`from_proto`] builds.
pub fn has_json_data(msg: &pb::CloudEvent) -> bool {
    content_type(msg).is_none_or(|ct| json::is_json_content_type(&ct) && !is_structured(&ct))
}

fn apply_attribute(event: &mut Event, name: &str, attr: &Attr) -> Result<()> {
    match name {
        "id" | "source" | "specversion" | "type" | "datacontenttype" => {}
        "time" => {
            let t = match attr {
                Attr::CeTimestamp(ts) => DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32),
                other => {
                    DateTime::parse_from_rfc3339(&attr_string(other)).ok().map(|t| t.with_timezone(&Utc))
                }
            }
            .filter(crate::binding::storable_time)
            .ok_or_else(|| {
                Error::InvalidProto("invalid ce-time (RFC 3339, years 0000 to 9999 UTC)".into())
            })?;
            event.set_time(Some(t));
        }
        "subject" => {
            event.set_subject(Some(attr_string(attr)));
        }
        "dataschema" => {
            if let Ok(u) = url::Url::parse(&attr_string(attr)) {
                event.set_dataschema(Some(u));
            }
        }
        _ => {
            if let Some(problem) = crate::binding::extension_name_problem(name) {
                return Err(Error::InvalidProto(format!("attribute {PREFIX}{name:?} {problem}")));
            }
            event.set_extension(name, attr_to_extension(attr));
        }
    }
    Ok(())
}

fn set_data(
    event: &mut Event,
    content_type: Option<String>,
    data: Option<pb::cloud_event::Data>,
) -> Result<()> {
    let is_json = content_type.as_deref().is_none_or(json::is_json_content_type);
    let data = match data {
        None | Some(pb::cloud_event::Data::ProtoData(_)) => None,
        Some(pb::cloud_event::Data::BinaryData(b)) if is_json => Some(Data::Json(
            serde_json::from_slice(&b)
                .map_err(|e| Error::InvalidProto(format!("binary_data is not JSON: {e}")))?,
        )),
        Some(pb::cloud_event::Data::BinaryData(b)) => Some(Data::Binary(b)),
        // Text data with a JSON content type (or none, which means JSON) is JSON: taken as
        // such, or refused, so what is stored is what was validated.
        Some(pb::cloud_event::Data::TextData(s)) if is_json => Some(Data::Json(
            serde_json::from_str(&s)
                .map_err(|e| Error::InvalidProto(format!("text_data is not JSON: {e}")))?,
        )),
        Some(pb::cloud_event::Data::TextData(s)) => Some(Data::String(s)),
    };
    match (data, content_type) {
        (Some(d), ct) => {
            event.set_data(ct.unwrap_or_else(|| "application/json".into()), d);
        }
        (None, Some(ct)) => {
            event.set_datacontenttype(Some(ct));
        }
        (None, None) => {}
    }
    Ok(())
}

/// A heartbeat event (docs/protocol.md §7.1.3): only `spec_version`, a random `id` and the type.
pub fn heartbeat() -> pb::CloudEvent {
    pb::CloudEvent {
        id: uuid::Uuid::new_v4().to_string(),
        spec_version: "1.0".into(),
        r#type: crate::types::HEARTBEAT.into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    /// What is validated is what is stored: an extension named `data` would replace the
    /// bundle in the stored JSON, and text data that is not JSON would reach agents as an
    /// unusable string.
    #[test]
    fn reserved_names_and_text_data_are_checked() {
        let spec = || to_proto(&codec::SpecEventBuilder::new("maestro", "rid-1", 1, "c1").build());
        for name in ["ce-data", "ce-Data", "ce-bad_name", "ce-"] {
            let mut pb = spec();
            pb.attributes
                .insert(name.into(), pb::CloudEventAttributeValue { attr: Some(Attr::CeString("x".into())) });
            let err = from_proto(pb).expect_err(name).to_string();
            assert!(err.contains(name.trim_start_matches("ce-")), "{name}: {err}");
        }
        let mut pb = spec();
        pb.data = Some(pb::cloud_event::Data::TextData(r#"{"manifests":[]}"#.into()));
        let ev = from_proto(pb).expect("JSON text data");
        assert_eq!(ev.data(), Some(&Data::Json(serde_json::json!({"manifests": []}))));
        let mut pb = spec();
        pb.data = Some(pb::cloud_event::Data::TextData("manifests: []".into()));
        assert!(from_proto(pb).expect_err("not JSON").to_string().contains("text_data is not JSON"));
    }

    #[test]
    fn binary_mapping_uses_ocm_keys_and_types() {
        let mut ev = codec::SpecEventBuilder::new("maestro", "rid-1", 3, "cluster1")
            .action(crate::types::Action::Delete)
            .deletion(DateTime::from_timestamp(1_700_000_000, 5).expect("ts"))
            .build();
        ext::set_str(&mut ev, ext::LOG_TRACING, "{}");
        let pb = to_proto(&ev);
        assert!(matches!(pb.attributes["ce-resourceversion"].attr, Some(Attr::CeInteger(3))));
        assert!(matches!(pb.attributes["ce-deletiontimestamp"].attr, Some(Attr::CeTimestamp(_))));
        assert!(
            matches!(pb.attributes["ce-clustername"].attr, Some(Attr::CeString(ref s)) if s == "cluster1")
        );
        assert!(
            matches!(pb.attributes["ce-originalsource"].attr, Some(Attr::CeString(ref s)) if s.is_empty())
        );
        assert!(matches!(pb.attributes["ce-time"].attr, Some(Attr::CeTimestamp(_))));
        assert!(pb.data.is_none());
        let back = from_proto(pb).expect("decode");
        assert_eq!(ext::resource_version(&back).expect("v"), 3);
        assert!(ext::deletion_timestamp(&back).expect("ts").is_some());
        assert_eq!(back.time(), ev.time());
    }

    #[test]
    fn accepts_string_resourceversion_and_json_data() {
        let mut attributes = HashMap::new();
        attributes.insert("contenttype".to_owned(), string_attr("application/json"));
        attributes.insert("ce-resourceversion".to_owned(), string_attr("4"));
        attributes.insert("ce-resourceid".to_owned(), string_attr("r"));
        let msg = pb::CloudEvent {
            id: "1".into(),
            source: "agent".into(),
            spec_version: "1.0".into(),
            r#type: "io.open-cluster-management.works.v1alpha1.manifestbundles.status.update_request".into(),
            attributes,
            data: Some(pb::cloud_event::Data::BinaryData(br#"{"conditions":null}"#.to_vec())),
        };
        let ev = from_proto(msg).expect("decode");
        assert_eq!(ext::resource_version(&ev).expect("v"), 4);
        assert!(matches!(ev.data(), Some(Data::Json(_))));
        assert_eq!(ev.datacontenttype(), Some("application/json"));
        let pb = to_proto(&ev);
        assert!(matches!(pb.attributes["ce-resourceversion"].attr, Some(Attr::CeInteger(4))));
    }

    #[test]
    fn structured_mode_and_bad_messages() {
        let ev = codec::SpecEventBuilder::new("maestro", "rid", 1, "c").build();
        let msg = pb::CloudEvent {
            attributes: HashMap::from([(
                CONTENT_TYPE_KEY.to_owned(),
                string_attr(json::STRUCTURED_CONTENT_TYPE),
            )]),
            data: Some(pb::cloud_event::Data::BinaryData(json::to_vec(&ev))),
            ..Default::default()
        };
        assert_eq!(ext::resource_id(&from_proto(msg).expect("structured")).expect("id"), "rid");
        assert!(from_proto(pb::CloudEvent::default()).is_err());
        let bad_json = pb::CloudEvent {
            id: "1".into(),
            source: "s".into(),
            spec_version: "1.0".into(),
            r#type: "t".into(),
            attributes: HashMap::from([(CONTENT_TYPE_KEY.to_owned(), string_attr("application/json"))]),
            data: Some(pb::cloud_event::Data::BinaryData(b"{oops".to_vec())),
        };
        assert!(from_proto(bad_json).is_err());
    }
}
