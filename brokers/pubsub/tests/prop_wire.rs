//! Property tests of the Pub/Sub broker's wire decoding, without the emulator.
//!
//! - The receive path (a `google_cloud_pubsub::model::Message` → `PubSubMessage` →
//!   [`pubsub::decode`] → the codec decoders) takes arbitrary attributes and data, and arbitrary
//!   JSON read as a Pub/Sub message (the REST / push form), without panicking.
//! - Spec and status events built with the codec builders survive the publish path (the
//!   `Message` the endpoint publishes) through the message's JSON form and back unchanged
//!   (extensions as strings, as the binding carries them).

use google_cloud_pubsub::model::Message;
use maestro_api::codec::{self, SpecEventBuilder, StatusEventBuilder};
use maestro_api::payload::ManifestBundleStatus;
use maestro_api::types::Action;
use maestro_api::{AttributesReader, AttributesWriter, Event, ext, pubsub};
use proptest::collection::{hash_map, vec};
use proptest::prelude::*;
use serde_json::json;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![3 => "[a-z0-9-]{0,12}", 1 => ".{0,12}"].boxed()
}

fn nonempty() -> BoxedStrategy<String> {
    prop_oneof![3 => "[a-z0-9-]{1,12}", 1 => ".{1,12}"].boxed()
}

/// A spec (with a one-manifest bundle, or a deletion) or status event from the builders, with
/// arbitrary ids, versions, cluster names and metadata.
fn event() -> BoxedStrategy<Event> {
    let spec = (
        nonempty(),
        nonempty(),
        any::<i32>(),
        text(),
        any::<bool>(),
        nonempty(),
        proptest::option::of(text()),
    )
        .prop_map(|(source, rid, version, cluster, delete, name, label)| {
            let mut b = SpecEventBuilder::new(&source, &rid, i64::from(version), &cluster);
            if let Some(l) = label {
                b = b.metadata([("labels".to_owned(), json!({ "l": l }))].into_iter().collect());
            }
            if delete {
                b.action(Action::Delete).deletion(chrono::DateTime::UNIX_EPOCH).build()
            } else {
                b.action(Action::Update)
                    .bundle_json(json!({"manifests": [{"apiVersion": "v1", "kind": "ConfigMap",
                                                      "metadata": {"name": name}}]}))
                    .build()
            }
        });
    let status = (nonempty(), nonempty(), any::<i32>(), text(), text(), 0..=i64::MAX, text(), text())
        .prop_map(|(source, rid, version, cluster, original, seq, hash, reason)| {
            let mut st = ManifestBundleStatus::default();
            st.conditions.push(maestro_api::payload::Condition {
                kind: "Applied".into(),
                status: "True".into(),
                reason,
                ..Default::default()
            });
            StatusEventBuilder {
                source: &source,
                resource_id: &rid,
                resource_version: i64::from(version),
                cluster_name: &cluster,
                original_source: &original,
                sequence_id: &seq.to_string(),
                status_hash: &hash,
                metadata: None,
                action: Action::Update,
            }
            .build(&st)
        });
    prop_oneof![spec, status].boxed()
}

/// What the endpoint's worker does with a received message: decode it and read it as a spec
/// or status event.
fn receive(message: Message) -> Option<Event> {
    let msg = pubsub::PubSubMessage {
        attributes: message.attributes.into_iter().collect(),
        data: message.data.to_vec(),
    };
    let event = pubsub::decode(&msg).ok()?;
    let _ = codec::decode_spec(&event);
    let _ = codec::decode_status(&event);
    Some(event)
}

/// The message the endpoint publishes for `ev`.
fn published(ev: &Event) -> Message {
    let msg = pubsub::encode(ev);
    Message::new().set_data(msg.data).set_attributes(msg.attributes)
}

/// The event as Pub/Sub carries it: every extension a string, `application/json` when it had
/// no content type.
fn expected(ev: &Event) -> Event {
    let mut out = ev.clone();
    for (name, value) in ev.iter_extensions() {
        out.set_extension(name, ext::get_str(ev, name).unwrap_or_else(|| value.to_string()));
    }
    if out.datacontenttype().is_none() {
        out.set_datacontenttype(Some(codec::JSON));
    }
    out
}

fn attribute_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "ce-subject",
            "ce-dataschema", "ce-resourceid", "ce-resourceversion", "ce-clustername",
            "ce-originalsource", "ce-deletiontimestamp", "ce-metadata", "ce-sequenceid",
            "ce-data", "Content-Type", "googclient_x",
        ])
        .prop_map(str::to_owned),
        1 => "ce-[a-z0-9]{0,6}",
        1 => ".{0,8}",
    ]
    .boxed()
}

fn attribute_value() -> BoxedStrategy<String> {
    prop_oneof![
        2 => text(),
        1 => prop::sample::select(vec![
            "1.0", "", "2024-03-01T10:00:00Z", "yesterday", "{}", "{", "application/json",
            "text/plain", "not a uri", "http://e.x/s", "1", "2147483648",
            "io.open-cluster-management.works.v1alpha1.manifestbundles.status.update_request",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// Arbitrary JSON, a few levels deep (numbers, strings, arrays, objects).
fn any_json() -> BoxedStrategy<serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        text().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary attributes and data through the receive path.
    #[test]
    fn received_messages_never_panic(
        attributes in hash_map(attribute_name(), attribute_value(), 0..10),
        data in prop_oneof![vec(any::<u8>(), 0..48), any_json().prop_map(|v| v.to_string().into_bytes())],
    ) {
        let _ = receive(Message::new().set_data(data).set_attributes(attributes));
    }

    /// Valid published messages with attributes removed, changed or added, and the data
    /// possibly replaced.
    #[test]
    fn mutated_messages_never_panic(
        ev in event(),
        remove in vec(attribute_name(), 0..3),
        set in hash_map(attribute_name(), attribute_value(), 0..3),
        data in proptest::option::of(vec(any::<u8>(), 0..32)),
    ) {
        let mut m = published(&ev);
        for k in &remove {
            m.attributes.remove(k);
        }
        m.attributes.extend(set);
        if let Some(d) = data {
            m.data = d.into();
        }
        let _ = receive(m);
    }

    /// Arbitrary JSON and bytes read as the JSON form of a Pub/Sub message, then received.
    #[test]
    fn json_messages_never_panic(
        v in any_json(),
        attributes in hash_map(attribute_name(), attribute_value(), 0..6),
        data in any_json(),
        bytes in vec(any::<u8>(), 0..64),
    ) {
        if let Ok(m) = serde_json::from_value::<Message>(v) {
            let _ = receive(m);
        }
        if let Ok(m) = serde_json::from_slice::<Message>(&bytes) {
            let _ = receive(m);
        }
        let shaped = json!({"attributes": attributes, "data": data});
        if let Ok(m) = serde_json::from_value::<Message>(shaped) {
            let _ = receive(m);
        }
    }

    /// Events survive the published message's JSON form and the receive path unchanged, and
    /// decode as they did before sending.
    #[test]
    fn events_round_trip_through_the_message_json(ev in event()) {
        let wire = serde_json::to_vec(&published(&ev)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let m: Message = serde_json::from_slice(&wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = receive(m);
        prop_assert_eq!(back.as_ref(), Some(&expected(&ev)));
        let decoded = back.map(|b| {
            (codec::decode_spec(&b).map_err(|e| e.to_string()), codec::decode_status(&b).map_err(|e| e.to_string()))
        });
        prop_assert_eq!(
            decoded,
            Some((codec::decode_spec(&ev).map_err(|e| e.to_string()), codec::decode_status(&ev).map_err(|e| e.to_string())))
        );
    }
}
