//! Property tests: spec and status events built with the codec builders
//! ([`SpecEventBuilder`](maestro_api::codec::SpecEventBuilder),
//! [`StatusEventBuilder`](maestro_api::codec::StatusEventBuilder)) from arbitrary ids, sources,
//! times, resource versions, cluster names, metadata and payloads survive encode → decode
//! unchanged on every binding: protobuf (binary mode through the encoded bytes, and structured
//! mode), MQTT 5 (binary and structured), Pub/Sub and structured JSON; and
//! [`codec::decode_spec`] / [`codec::decode_status`] give back exactly the builder's inputs.
//! Also: relaying an event across all bindings in a row keeps it, versions outside the int32
//! range are refused alike by every binding, and [`EventType`] strings round-trip.

mod prop_support;

use cloudevents::event::ExtensionValue;
use maestro_api::codec::{self, SpecEvent, StatusEvent};
use maestro_api::mqtt::{self, MqttMessage};
use maestro_api::pb;
use maestro_api::pb::cloud_event_attribute_value::Attr;
use maestro_api::pubsub;
use maestro_api::types::{Action, EventType, MANIFEST_BUNDLES, SubResource};
use maestro_api::{AttributesReader, AttributesWriter, Event, grpc, json};
use prop_support::*;
use proptest::prelude::*;
use prost::Message as _;

/// The event as a string-only binding (MQTT, Pub/Sub) carries it: every extension a string.
fn stringified(ev: &Event) -> Event {
    let mut out = ev.clone();
    for (name, value) in ev.iter_extensions() {
        let s = match value {
            ExtensionValue::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.set_extension(name, ExtensionValue::String(s));
    }
    out
}

/// Through the protobuf bytes, as the gRPC broker sends and receives.
fn via_proto(ev: &Event) -> Result<Event, String> {
    let bytes = grpc::to_proto(ev).encode_to_vec();
    let msg = pb::CloudEvent::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    grpc::from_proto(msg).map_err(|e| e.to_string())
}

fn via_mqtt(ev: &Event) -> Result<Event, String> {
    mqtt::decode(&mqtt::encode(ev)).map_err(|e| e.to_string())
}

fn via_pubsub(ev: &Event) -> Result<Event, String> {
    pubsub::decode(&pubsub::encode(ev)).map_err(|e| e.to_string())
}

fn via_json(ev: &Event) -> Result<Event, String> {
    json::from_slice(&json::to_vec(ev)).map_err(|e| e.to_string())
}

/// What the spec decoder must return for `input` (int32-range version).
fn expected_spec(input: &SpecInput) -> SpecEvent {
    SpecEvent {
        event_type: EventType::manifest_bundles(SubResource::Spec, input.action),
        source: input.source.clone(),
        resource_id: input.resource_id.clone(),
        resource_version: input.version,
        cluster_name: input.cluster.clone(),
        deletion: input.deletion,
        metadata: input.metadata.clone(),
        bundle: input.bundle.clone(),
    }
}

/// What the status decoder must return for `input` (int32-range version).
fn expected_status(input: &StatusInput) -> StatusEvent {
    StatusEvent {
        event_type: EventType::manifest_bundles(SubResource::Status, input.action),
        source: input.source.clone(),
        resource_id: input.resource_id.clone(),
        resource_version: input.version,
        cluster_name: input.cluster.clone(),
        original_source: input.original_source.clone(),
        sequence_id: input.sequence_id.clone(),
        status_hash: Some(input.status_hash.clone()).filter(|h| !h.is_empty()),
        status: input.status.clone(),
    }
}

/// Decodes `ev` as a spec event, or its error message.
fn spec_of(ev: &Event) -> Result<SpecEvent, String> {
    codec::decode_spec(ev).map_err(|e| e.to_string())
}

/// Decodes `ev` as a status event, or its error message.
fn status_of(ev: &Event) -> Result<StatusEvent, String> {
    codec::decode_status(ev).map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(config())]

    /// The builders' events decode to exactly their inputs.
    #[test]
    fn builders_decode_to_their_inputs(
        spec in spec_input_with(valid_version()),
        status in status_input_with(valid_version()),
    ) {
        prop_assert_eq!(spec_of(&spec.build()), Ok(expected_spec(&spec)));
        prop_assert_eq!(status_of(&status.build()), Ok(expected_status(&status)));
    }

    /// gRPC binary mode through the protobuf bytes: the event comes back identical (typed
    /// extensions included).
    #[test]
    fn proto_round_trip(
        spec in spec_input_with(valid_version()),
        status in status_input_with(valid_version()),
    ) {
        let ev = spec.build();
        let back = via_proto(&ev);
        prop_assert_eq!(back.as_ref(), Ok(&ev));
        prop_assert_eq!(back.and_then(|b| spec_of(&b)), Ok(expected_spec(&spec)));
        let ev = status.build();
        let back = via_proto(&ev);
        prop_assert_eq!(back.as_ref(), Ok(&ev));
        prop_assert_eq!(back.and_then(|b| status_of(&b)), Ok(expected_status(&status)));
    }

    /// gRPC structured mode (`contenttype` `application/cloudevents+json`, the event JSON as
    /// `binary_data`).
    #[test]
    fn proto_structured_round_trip(ev in any_event()) {
        let msg = pb::CloudEvent {
            attributes: [(
                grpc::CONTENT_TYPE_KEY.to_owned(),
                pb::CloudEventAttributeValue { attr: Some(Attr::CeString(json::STRUCTURED_CONTENT_TYPE.into())) },
            )]
            .into(),
            data: Some(pb::cloud_event::Data::BinaryData(json::to_vec(&ev))),
            ..Default::default()
        };
        let bytes = msg.encode_to_vec();
        let back = pb::CloudEvent::decode(bytes.as_slice()).map_err(|e| e.to_string())
            .and_then(|m| grpc::from_proto(m).map_err(|e| e.to_string()));
        prop_assert_eq!(back, Ok(ev));
    }

    /// MQTT binary mode: identical but for extensions, which travel as strings; the codec
    /// decoders read them the same.
    #[test]
    fn mqtt_round_trip(
        spec in spec_input_with(valid_version()),
        status in status_input_with(valid_version()),
    ) {
        let ev = spec.build();
        let back = via_mqtt(&ev);
        prop_assert_eq!(back.as_ref(), Ok(&stringified(&ev)));
        prop_assert_eq!(back.and_then(|b| spec_of(&b)), Ok(expected_spec(&spec)));
        let ev = status.build();
        let back = via_mqtt(&ev);
        prop_assert_eq!(back.as_ref(), Ok(&stringified(&ev)));
        prop_assert_eq!(back.and_then(|b| status_of(&b)), Ok(expected_status(&status)));
    }

    /// MQTT structured mode (`Content-Type` `application/cloudevents+json`, no user
    /// properties): the event comes back identical.
    #[test]
    fn mqtt_structured_round_trip(ev in any_event()) {
        let msg = MqttMessage {
            content_type: Some(json::STRUCTURED_CONTENT_TYPE.into()),
            user_properties: vec![],
            payload: json::to_vec(&ev),
        };
        prop_assert_eq!(mqtt::decode(&msg).map_err(|e| e.to_string()), Ok(ev));
    }

    /// Pub/Sub: identical but for string extensions and the content type, which defaults to
    /// `application/json` when the event has none (a deletion without data).
    #[test]
    fn pubsub_round_trip(
        spec in spec_input_with(valid_version()),
        status in status_input_with(valid_version()),
    ) {
        let ev = spec.build();
        let mut want = stringified(&ev);
        if want.datacontenttype().is_none() {
            want.set_datacontenttype(Some(codec::JSON));
        }
        let back = via_pubsub(&ev);
        prop_assert_eq!(back.as_ref(), Ok(&want));
        prop_assert_eq!(back.and_then(|b| spec_of(&b)), Ok(expected_spec(&spec)));
        let ev = status.build();
        let back = via_pubsub(&ev);
        prop_assert_eq!(back.as_ref(), Ok(&stringified(&ev)));
        prop_assert_eq!(back.and_then(|b| status_of(&b)), Ok(expected_status(&status)));
    }

    /// Structured JSON (storage): identical; the raw-data reader gives the same attributes and
    /// the data's own text.
    #[test]
    fn json_round_trip(ev in any_event()) {
        let bytes = json::to_vec(&ev);
        prop_assert_eq!(json::from_slice(&bytes).map_err(|e| e.to_string()), Ok(ev.clone()));
        prop_assert_eq!(json::from_value(json::to_value(&ev)).map_err(|e| e.to_string()), Ok(ev.clone()));
        let text = String::from_utf8(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (bare, data) = json::from_str_raw_data(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut without_data = ev.clone();
        without_data.take_data();
        prop_assert_eq!(bare.id(), ev.id());
        prop_assert_eq!(bare.iter_extensions().count(), ev.iter_extensions().count());
        for (name, value) in ev.iter_extensions() {
            prop_assert_eq!(bare.extension(name), Some(value));
        }
        prop_assert_eq!(bare.time(), ev.time());
        let data: Option<serde_json::Value> = data.map(|d| serde_json::from_str(d.get())).transpose()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(data, codec::data_as::<serde_json::Value>(&ev, "data").ok());
    }

    /// Relayed across every binding in a row (as the server does: gRPC in, JSON in the
    /// database, MQTT or Pub/Sub out), any event decodes as it did at the start; versions
    /// outside the int32 range are refused by the decoder before and after alike.
    #[test]
    fn relay_across_bindings_keeps_the_decoded_event(spec in spec_input(), status in status_input()) {
        let relay = |ev: &Event| -> Result<Event, String> {
            let ev = via_proto(ev)?;
            let ev = via_json(&ev)?;
            let ev = via_mqtt(&ev)?;
            let ev = via_pubsub(&ev)?;
            via_proto(&ev)
        };
        let ev = spec.build();
        let back = relay(&ev).map_err(TestCaseError::fail)?;
        prop_assert_eq!(spec_of(&back), spec_of(&ev));
        let in_range = i32::try_from(spec.version).is_ok();
        prop_assert_eq!(spec_of(&ev).is_ok(), in_range);
        let ev = status.build();
        let back = relay(&ev).map_err(TestCaseError::fail)?;
        prop_assert_eq!(status_of(&back), status_of(&ev));
        prop_assert_eq!(status_of(&ev).is_ok(), i32::try_from(status.version).is_ok());
    }

    /// Event types: any data type of three or more non-empty dot-free segments, with every
    /// subresource and action, prints and parses back to itself.
    #[test]
    fn event_type_round_trip(
        segments in proptest::collection::vec("[^.]{1,8}", 3..6),
        sub in prop_oneof![Just(SubResource::Spec), Just(SubResource::Status)],
        action in prop_oneof![
            Just(Action::Create), Just(Action::Update), Just(Action::Delete),
            Just(Action::ResyncRequest), Just(Action::ResyncResponse), Just(Action::Watch),
        ],
        manifest_bundles in any::<bool>(),
    ) {
        let data_type = if manifest_bundles { MANIFEST_BUNDLES.to_owned() } else { segments.join(".") };
        let t = EventType { data_type, sub_resource: sub, action };
        let s = t.to_string();
        prop_assert_eq!(EventType::parse(&s).map_err(|e| e.to_string()), Ok(t.clone()));
    }
}
