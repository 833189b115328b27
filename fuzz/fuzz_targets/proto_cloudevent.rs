//! Protobuf bytes as the gRPC broker receives them (`io.cloudevents.v1.CloudEvent` and the
//! `PublishRequest` around it) through `grpc::from_proto`, then every codec decoder and the
//! storage check on what it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maestro_api::{grpc, pb};
use maestro_fuzz::exercise;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = pb::CloudEvent::decode(data) {
        let _ = grpc::has_json_data(&msg);
        if let Ok(ev) = grpc::from_proto(msg) {
            exercise(&ev);
        }
    }
    if let Ok(req) = pb::PublishRequest::decode(data)
        && let Some(msg) = req.event
        && let Ok(ev) = grpc::from_proto(msg)
    {
        exercise(&ev);
    }
});
