//! MQTT 5 messages as the binding sees them (content type, user properties, payload) through
//! `mqtt::decode`; an event decoded in binary mode must re-encode and decode to the same
//! attributes and extensions.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use maestro_api::mqtt::{self, MqttMessage};
use maestro_fuzz::{exercise, same_but_data};

#[derive(Debug, Arbitrary)]
struct Input {
    content_type: Option<String>,
    /// User properties; names are prefixed with `ce-` when the flag is set (so most reach the
    /// binding's attribute handling).
    user_properties: Vec<(bool, String, String)>,
    payload: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let msg = MqttMessage {
        content_type: input.content_type,
        user_properties: input
            .user_properties
            .into_iter()
            .map(|(ce, k, v)| (if ce { format!("ce-{k}") } else { k }, v))
            .collect(),
        payload: input.payload,
    };
    let _ = msg.encoded_len();
    let Ok(ev) = mqtt::decode(&msg) else { return };
    exercise(&ev);
    if msg.user_property("ce-specversion").is_some() {
        match mqtt::decode(&mqtt::encode(&ev)) {
            Ok(again) => assert!(same_but_data(&ev, &again), "re-encoding changed the event"),
            Err(e) => panic!("a decoded event does not decode after re-encoding: {e}\n{ev:?}"),
        }
    }
});
