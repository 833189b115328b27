//! # maestro-api: the Maestro / OCM wire model
//!
//! Pure types and codecs, no I/O. Everything here follows `docs/protocol.md`
//! ("the protocol") to the letter, because interoperating with Go Maestro and the OCM work
//! agent depends on exact strings, field names and numbers.
//!
//! Module map:
//! - [`types`]: CloudEvent `type` strings (`<group>.<version>.<resource>.<subresource>.<action>`,
//!   docs/protocol.md §2).
//! - [`ext`]: extension attribute names and their typing rules (docs/protocol.md §3.2).
//! - [`payload`]: ManifestBundle, ManifestBundleStatus and resync payloads (docs/protocol.md §4).
//! - [`validate`]: agent-side bundle validation (docs/protocol.md §4.1) and server-side manifest
//!   validation (docs/protocol.md §12.3).
//! - [`codec`]: building and decoding spec, status and resync events.
//! - [`snowflake`]: sequence ids (docs/protocol.md §6.2).
//! - [`statushash`]: the status hash (docs/protocol.md §5.4).
//! - [`grpc`]: the OCM gRPC attribute mapping (docs/protocol.md §7.1.2) and the generated
//!   `io.cloudevents.v1` protobuf types and service stubs ([`pb`]).
//! - [`mqtt`]: the MQTT 5 CloudEvents binding (user properties `ce-*`, docs/protocol.md §7.2).
//! - [`pubsub`]: the GCP Pub/Sub CloudEvents binding (attributes `ce-*`, docs/protocol.md §7.3).
//! - [`json`]: structured-mode CloudEvent JSON (used for storage and by structured transports).
//! - [`merge`]: manifest identity and the merge apply of several writers sharing a bundle.
//!
//! The in-memory event model is `cloudevents::Event` (re-exported as [`Event`]).

mod binding;
pub mod codec;
pub mod error;
pub mod ext;
pub mod grpc;
pub mod grpc_codec;
pub mod json;
pub mod merge;
pub mod mqtt;
pub mod payload;
pub mod pubsub;
pub mod snowflake;
pub mod statushash;
pub mod types;
pub mod validate;

pub use cloudevents::event::ExtensionValue;
pub use cloudevents::{AttributesReader, AttributesWriter, Data, Event, EventBuilder, EventBuilderV10};
pub use error::{Error, Result};

/// Generated protobuf messages and tonic service stubs for `io.cloudevents.v1`
/// (`proto/io/cloudevents/v1/cloudevent.proto`, docs/protocol.md §7.1.1).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    tonic::include_proto!("io.cloudevents.v1");
}
