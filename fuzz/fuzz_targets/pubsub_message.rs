//! Pub/Sub messages as the binding sees them (attributes, data) through `pubsub::decode`; a
//! decoded event must re-encode and decode to the same attributes and extensions.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use maestro_api::pubsub::{self, PubSubMessage};
use maestro_fuzz::{exercise, same_but_data};

#[derive(Debug, Arbitrary)]
struct Input {
    /// Attributes; names are prefixed with `ce-` when the flag is set.
    attributes: Vec<(bool, String, String)>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let attributes: BTreeMap<String, String> =
        input.attributes.into_iter().map(|(ce, k, v)| (if ce { format!("ce-{k}") } else { k }, v)).collect();
    let msg = PubSubMessage { attributes, data: input.data };
    let _ = msg.encoded_len();
    let Ok(ev) = pubsub::decode(&msg) else { return };
    exercise(&ev);
    match pubsub::decode(&pubsub::encode(&ev)) {
        Ok(again) => assert!(same_but_data(&ev, &again), "re-encoding changed the event"),
        Err(e) => panic!("a decoded event does not decode after re-encoding: {e}\n{ev:?}"),
    }
});
