//! Property tests: every wire decoder of `maestro-api` takes arbitrary input without panicking
//! (it returns `Ok` or a clean `Err`).
//!
//! Covered decoders: protobuf bytes → `pb::CloudEvent` / `pb::PublishRequest` →
//! [`grpc::from_proto`]; MQTT 5 messages ([`mqtt::decode`]); Pub/Sub messages
//! ([`pubsub::decode`]); structured JSON ([`json::from_slice`], [`json::from_value`],
//! [`json::from_str_raw_data`]); [`EventType::parse`]; [`codec::decode_spec`],
//! [`codec::decode_status`] and payload decoding ([`codec::data_as`]); [`snowflake::parse`].
//! Inputs are raw random bytes and strings, random structured messages, and valid encoded
//! spec/status events with random edits (so the deeper checks are reached, not just the first
//! "missing attribute" one). Every event a decoder accepts is then put through the codec
//! decoders and every encoder, which must not panic either.

mod prop_support;

use std::collections::BTreeMap;

use maestro_api::codec::{self, data_as};
use maestro_api::grpc;
use maestro_api::mqtt::{self, MqttMessage};
use maestro_api::payload::{ManifestBundle, ManifestBundleStatus, ResourceVersionList, StatusHashList};
use maestro_api::pb::cloud_event_attribute_value::Attr;
use maestro_api::pb::{self, CloudEventAttributeValue};
use maestro_api::pubsub::{self, PubSubMessage};
use maestro_api::types::EventType;
use maestro_api::validate::validate_bundle;
use maestro_api::{AttributesWriter, Data, Event, ext, json, snowflake};
use prop_support::*;
use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message as _;

/// Runs every decoder and encoder that takes a decoded event; none may panic.
fn exercise(ev: &Event) {
    let _ = codec::decode_spec(ev);
    let _ = codec::decode_status(ev);
    let _ = data_as::<ResourceVersionList>(ev, "ResourceVersionList");
    let _ = data_as::<StatusHashList>(ev, "StatusHashList");
    let _ = data_as::<serde_json::Value>(ev, "JSON");
    let _ = ext::metadata(ev);
    let _ = ext::deletion_timestamp(ev);
    let _ = ext::resource_version(ev);
    let _ = ext::resource_id(ev);
    let _ = grpc::from_proto(grpc::to_proto(ev));
    let _ = mqtt::decode(&mqtt::encode(ev));
    let _ = pubsub::decode(&pubsub::encode(ev));
    let bytes = json::to_vec(ev);
    assert_eq!(json::encoded_len(ev), bytes.len());
    let _ = json::from_slice(&bytes);
    if let Ok(text) = std::str::from_utf8(&bytes) {
        let _ = json::from_str_raw_data(text);
    }
}

fn pb_attr() -> BoxedStrategy<CloudEventAttributeValue> {
    let attr = prop_oneof![
        any::<bool>().prop_map(Attr::CeBoolean),
        any::<i32>().prop_map(Attr::CeInteger),
        attribute_value().prop_map(Attr::CeString),
        vec(any::<u8>(), 0..16).prop_map(Attr::CeBytes),
        attribute_value().prop_map(Attr::CeUri),
        attribute_value().prop_map(Attr::CeUriRef),
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| Attr::CeTimestamp(prost_types::Timestamp { seconds, nanos })),
        (-62_135_596_800i64..=253_402_300_799i64, -5i32..2_000_000_100)
            .prop_map(|(seconds, nanos)| Attr::CeTimestamp(prost_types::Timestamp { seconds, nanos })),
    ];
    proptest::option::weighted(0.9, attr).prop_map(|attr| CloudEventAttributeValue { attr }).boxed()
}

fn pb_data() -> BoxedStrategy<Option<pb::cloud_event::Data>> {
    use pb::cloud_event::Data as D;
    prop_oneof![
        Just(None),
        vec(any::<u8>(), 0..48).prop_map(|b| Some(D::BinaryData(b))),
        any_json().prop_map(|v| Some(D::BinaryData(v.to_string().into_bytes()))),
        text().prop_map(|s| Some(D::TextData(s))),
        (text(), vec(any::<u8>(), 0..16))
            .prop_map(|(type_url, value)| Some(D::ProtoData(prost_types::Any { type_url, value }))),
    ]
    .boxed()
}

fn pb_event() -> BoxedStrategy<pb::CloudEvent> {
    (
        text(),
        text(),
        prop_oneof![Just("1.0".to_owned()), Just(String::new()), Just("0.3".to_owned()), text()],
        prop_oneof![attribute_value(), text()],
        vec((attribute_name(), pb_attr()), 0..8),
        pb_data(),
    )
        .prop_map(|(id, source, spec_version, r#type, attributes, data)| pb::CloudEvent {
            id,
            source,
            spec_version,
            r#type,
            attributes: attributes.into_iter().collect(),
            data,
        })
        .boxed()
}

/// Edits of a protobuf message's attribute map.
fn pb_edits() -> BoxedStrategy<Vec<(String, Option<CloudEventAttributeValue>)>> {
    vec((attribute_name(), proptest::option::of(pb_attr())), 0..4).boxed()
}

fn mqtt_message() -> BoxedStrategy<MqttMessage> {
    (
        proptest::option::of(prop_oneof![attribute_value(), text()]),
        vec((attribute_name(), attribute_value()), 0..10),
        prop_oneof![vec(any::<u8>(), 0..48), any_json().prop_map(|v| v.to_string().into_bytes())],
    )
        .prop_map(|(content_type, user_properties, payload)| MqttMessage {
            content_type,
            user_properties,
            payload,
        })
        .boxed()
}

fn pubsub_message() -> BoxedStrategy<PubSubMessage> {
    (
        proptest::collection::btree_map(attribute_name(), attribute_value(), 0..10),
        prop_oneof![vec(any::<u8>(), 0..48), any_json().prop_map(|v| v.to_string().into_bytes())],
    )
        .prop_map(|(attributes, data)| PubSubMessage { attributes, data })
        .boxed()
}

/// One edit of an event's extensions, type or data.
#[derive(Debug, Clone)]
enum EventEdit {
    RemoveExtension(String),
    SetExtension(String, cloudevents::event::ExtensionValue),
    SetType(String),
    SetData(Option<Data>),
}

fn extension_value() -> BoxedStrategy<cloudevents::event::ExtensionValue> {
    use cloudevents::event::ExtensionValue as V;
    prop_oneof![
        attribute_value().prop_map(V::String),
        any::<i64>().prop_map(V::Integer),
        any::<bool>().prop_map(V::Boolean),
    ]
    .boxed()
}

fn known_extension() -> BoxedStrategy<String> {
    prop::sample::select(vec![
        ext::RESOURCE_ID,
        ext::RESOURCE_VERSION,
        ext::CLUSTER_NAME,
        ext::ORIGINAL_SOURCE,
        ext::DELETION_TIMESTAMP,
        ext::METADATA,
        ext::SEQUENCE_ID,
        ext::STATUS_HASH,
        ext::LOG_TRACING,
    ])
    .prop_map(str::to_owned)
    .boxed()
}

fn event_edits() -> BoxedStrategy<Vec<EventEdit>> {
    let data = prop_oneof![
        Just(None),
        any_json().prop_map(|v| Some(Data::Json(v))),
        text().prop_map(|s| Some(Data::String(s))),
        vec(any::<u8>(), 0..48).prop_map(|b| Some(Data::Binary(b))),
    ];
    let edit = prop_oneof![
        known_extension().prop_map(EventEdit::RemoveExtension),
        (known_extension(), extension_value()).prop_map(|(n, v)| EventEdit::SetExtension(n, v)),
        prop_oneof![attribute_value(), text()].prop_map(EventEdit::SetType),
        data.prop_map(EventEdit::SetData),
    ];
    vec(edit, 0..4).boxed()
}

fn apply_event_edits(ev: &mut Event, edits: &[EventEdit]) {
    for e in edits {
        match e {
            EventEdit::RemoveExtension(n) => {
                ev.remove_extension(n);
            }
            EventEdit::SetExtension(n, v) => ev.set_extension(n, v.clone()),
            EventEdit::SetType(t) => {
                ev.set_type(t.clone());
            }
            EventEdit::SetData(None) => {
                let _ = ev.take_data();
            }
            EventEdit::SetData(Some(d)) => {
                ev.set_data_unchecked(d.clone());
            }
        }
    }
}

/// Edits of a structured JSON event object: remove a key or set it to any JSON.
fn json_edits() -> BoxedStrategy<Vec<(String, Option<serde_json::Value>)>> {
    let key = prop_oneof![
        3 => prop::sample::select(vec![
            "specversion", "id", "source", "type", "time", "subject", "dataschema",
            "datacontenttype", "data", "data_base64", "resourceid", "resourceversion",
            "clustername", "originalsource", "deletiontimestamp", "metadata", "sequenceid",
            "statushash",
        ])
        .prop_map(str::to_owned),
        1 => text(),
    ];
    vec((key, proptest::option::of(any_json())), 0..4).boxed()
}

proptest! {
    #![proptest_config(config())]

    /// Random bytes through the protobuf decoders (CloudEvent and the PublishRequest the
    /// gRPC broker receives) and [`grpc::from_proto`].
    #[test]
    fn proto_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        if let Ok(msg) = pb::CloudEvent::decode(bytes.as_slice()) {
            let _ = grpc::has_json_data(&msg);
            if let Ok(ev) = grpc::from_proto(msg) {
                exercise(&ev);
            }
        }
        if let Ok(req) = pb::PublishRequest::decode(bytes.as_slice())
            && let Some(msg) = req.event
            && let Ok(ev) = grpc::from_proto(msg)
        {
            exercise(&ev);
        }
    }

    /// Random protobuf messages (any spec version, attribute keys and typed values, data).
    #[test]
    fn proto_messages_never_panic(msg in pb_event()) {
        let _ = grpc::has_json_data(&msg);
        let bytes = msg.encode_to_vec();
        let back = pb::CloudEvent::decode(bytes.as_slice());
        prop_assert!(back.is_ok(), "a message prost encoded decodes again");
        if let Ok(ev) = grpc::from_proto(msg) {
            exercise(&ev);
        }
    }

    /// Valid spec/status events encoded for gRPC, then attributes removed, retyped or added.
    #[test]
    fn proto_mutated_events_never_panic(ev in any_event(), edits in pb_edits(), data in pb_data(), swap_data in any::<bool>()) {
        let mut msg = grpc::to_proto(&ev);
        for (key, value) in edits {
            match value {
                Some(v) => { msg.attributes.insert(key, v); }
                None => { msg.attributes.remove(&key); }
            }
        }
        if swap_data {
            msg.data = data;
        }
        if let Ok(ev) = grpc::from_proto(msg) {
            exercise(&ev);
        }
    }

    /// Random MQTT 5 messages (content type, user properties, payload).
    #[test]
    fn mqtt_messages_never_panic(msg in mqtt_message()) {
        let _ = msg.encoded_len();
        if let Ok(ev) = mqtt::decode(&msg) {
            exercise(&ev);
        }
    }

    /// Valid events encoded for MQTT, then user properties and payload edited.
    #[test]
    fn mqtt_mutated_events_never_panic(
        ev in any_event(),
        edits in edits(),
        content_type in proptest::option::of(proptest::option::of(attribute_value())),
        payload in payload_edit(),
    ) {
        let mut msg = mqtt::encode(&ev);
        apply_edits(&mut msg.user_properties, &edits);
        if let Some(ct) = content_type {
            msg.content_type = ct;
        }
        if let Some(p) = payload {
            msg.payload = p;
        }
        if let Ok(ev) = mqtt::decode(&msg) {
            exercise(&ev);
        }
    }

    /// Random Pub/Sub messages (attributes and data).
    #[test]
    fn pubsub_messages_never_panic(msg in pubsub_message()) {
        let _ = msg.encoded_len();
        if let Ok(ev) = pubsub::decode(&msg) {
            exercise(&ev);
        }
    }

    /// Valid events encoded for Pub/Sub, then attributes and data edited.
    #[test]
    fn pubsub_mutated_events_never_panic(ev in any_event(), edits in edits(), payload in payload_edit()) {
        let mut msg = pubsub::encode(&ev);
        let mut attrs: Vec<(String, String)> = msg.attributes.into_iter().collect();
        apply_edits(&mut attrs, &edits);
        msg.attributes = attrs.into_iter().collect::<BTreeMap<_, _>>();
        if let Some(p) = payload {
            msg.data = p;
        }
        if let Ok(ev) = pubsub::decode(&msg) {
            exercise(&ev);
        }
    }

    /// Random bytes and strings as structured JSON events.
    #[test]
    fn json_bytes_never_panic(bytes in vec(any::<u8>(), 0..256), s in any::<String>()) {
        if let Ok(ev) = json::from_slice(&bytes) {
            exercise(&ev);
        }
        let _ = json::from_str_raw_data(&String::from_utf8_lossy(&bytes));
        if let Ok((ev, _)) = json::from_str_raw_data(&s) {
            exercise(&ev);
        }
        let _ = json::from_slice(s.as_bytes());
    }

    /// Valid events as structured JSON objects, then keys removed or set to any JSON value.
    #[test]
    fn json_mutated_events_never_panic(ev in any_event(), edits in json_edits(), value in any_json()) {
        let mut obj = json::to_value(&ev);
        if let Some(map) = obj.as_object_mut() {
            for (k, v) in edits {
                match v {
                    Some(v) => { map.insert(k, v); }
                    None => { map.remove(&k); }
                }
            }
        }
        let text = obj.to_string();
        if let Ok(ev) = json::from_slice(text.as_bytes()) {
            exercise(&ev);
        }
        if let Ok((ev, _)) = json::from_str_raw_data(&text) {
            exercise(&ev);
        }
        if let Ok(ev) = json::from_value(obj) {
            exercise(&ev);
        }
        let _ = json::from_value(value);
    }

    /// [`EventType::parse`] takes any string, and what it accepts it prints back unchanged.
    #[test]
    fn event_type_parse_never_panics_and_is_canonical(
        s in prop_oneof![
            any::<String>(),
            vec(prop_oneof![
                Just("spec".to_owned()), Just("status".to_owned()), Just(String::new()),
                Just("create_request".to_owned()), Just("resync_request".to_owned()),
                Just("watch_request".to_owned()), "[a-z0-9_-]{0,6}", ".{0,4}",
            ], 0..8).prop_map(|parts| parts.join(".")),
        ],
    ) {
        if let Ok(t) = EventType::parse(&s) {
            prop_assert_eq!(t.to_string(), s);
        }
    }

    /// The codec decoders on valid events with extensions removed or retyped, the type
    /// changed and the data replaced (JSON, string or binary).
    #[test]
    fn codec_decoders_never_panic(ev in any_event(), edits in event_edits()) {
        let mut ev = ev;
        apply_event_edits(&mut ev, &edits);
        exercise(&ev);
    }

    /// Payload and sequence id decoding on random bytes and JSON.
    #[test]
    fn payloads_never_panic(bytes in vec(any::<u8>(), 0..128), v in any_json(), id in prop_oneof![any::<String>(), any::<i128>().prop_map(|n| n.to_string())]) {
        let _ = snowflake::parse(&id);
        let _ = snowflake::check_not_future(&id, i64::MAX, i64::MAX);
        let _ = snowflake::is_newer(&id, Some("1834773391719010304"));
        let _ = serde_json::from_slice::<ManifestBundleStatus>(&bytes);
        let _ = serde_json::from_slice::<ResourceVersionList>(&bytes);
        if let Ok(b) = serde_json::from_slice::<ManifestBundle>(&bytes) {
            let _ = validate_bundle(&b);
        }
        let _ = serde_json::from_value::<ManifestBundleStatus>(v.clone());
        let _ = serde_json::from_value::<StatusHashList>(v.clone());
        if let Ok(b) = serde_json::from_value::<ManifestBundle>(v) {
            let _ = validate_bundle(&b);
        }
    }
}

/// The storage round trip of `ev` (the database keeps events as structured JSON).
fn stored(ev: &Event) -> Result<Event, String> {
    json::from_slice(&json::to_vec(ev)).map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(config())]

    /// Whatever event an MQTT, Pub/Sub or gRPC decoder accepts, the server can store as JSON
    /// and read back unchanged.
    #[test]
    fn accepted_events_survive_storage(
        ev in any_event(),
        edits in edits(),
        pb_extra in pb_edits(),
    ) {
        let mut m = mqtt::encode(&ev);
        apply_edits(&mut m.user_properties, &edits);
        if let Ok(got) = mqtt::decode(&m) {
            prop_assert_eq!(stored(&got), Ok(got));
        }
        let mut p = pubsub::encode(&ev);
        let mut attrs: Vec<(String, String)> = p.attributes.into_iter().collect();
        apply_edits(&mut attrs, &edits);
        p.attributes = attrs.into_iter().collect();
        if let Ok(got) = pubsub::decode(&p) {
            prop_assert_eq!(stored(&got), Ok(got));
        }
        let mut g = grpc::to_proto(&ev);
        for (key, value) in pb_extra {
            if let Some(v) = value {
                g.attributes.insert(key, v);
            }
        }
        if let Ok(got) = grpc::from_proto(g) {
            prop_assert_eq!(stored(&got), Ok(got));
        }
    }
}

/// A bug these tests found: the gRPC decoder took any `ce-time` timestamp chrono can hold, and
/// the MQTT / Pub/Sub decoders RFC 3339 times whose offset moves them past year 9999 in UTC.
/// Such an event was accepted, but its structured JSON (`"time": "+10000-01-01T…"`) is not
/// RFC 3339, so the stored event could never be read back and the bundle's status vanished.
/// The decoders now refuse times outside the years 0000 to 9999 UTC; every time they accept
/// must be storable.
#[test]
fn accepted_times_are_storable() {
    let ev = codec::SpecEventBuilder::new("maestro", "rid", 1, "c1").build();
    let mut msg = grpc::to_proto(&ev);
    msg.attributes.insert(
        "ce-time".into(),
        CloudEventAttributeValue {
            attr: Some(Attr::CeTimestamp(prost_types::Timestamp { seconds: 253_402_300_800, nanos: 0 })),
        },
    );
    if let Ok(got) = grpc::from_proto(msg) {
        assert_eq!(stored(&got), Ok(got), "gRPC ce-time in year 10000");
    }
    let mut m = mqtt::encode(&ev);
    m.user_properties.retain(|(k, _)| k != "ce-time");
    m.user_properties.push(("ce-time".into(), "9999-12-31T23:59:59-23:59".into()));
    if let Ok(got) = mqtt::decode(&m) {
        assert_eq!(stored(&got), Ok(got), "MQTT ce-time past 9999 in UTC");
    }
}
