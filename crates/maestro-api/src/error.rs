//! The error type of the wire model.

/// A decoding or validation failure. Every variant names what was wrong, so the message can be
/// logged or returned to a peer as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CloudEvent `type` attribute does not follow docs/protocol.md §2.
    #[error("invalid event type {ty:?}: {reason}")]
    InvalidType {
        /// The offending type string.
        ty: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The event's data type is not one this implementation handles.
    #[error("unsupported data type {0:?} (expected {expected})", expected = crate::types::MANIFEST_BUNDLES)]
    UnsupportedDataType(String),
    /// A required extension attribute is missing (docs/protocol.md §3.2).
    #[error("missing extension attribute {0:?}")]
    MissingExtension(&'static str),
    /// An extension attribute has a value of the wrong type or format.
    #[error("invalid extension attribute {name:?}: {reason}")]
    InvalidExtension {
        /// Attribute name.
        name: &'static str,
        /// What was wrong with its value.
        reason: String,
    },
    /// The event has no data where data is required.
    #[error("event {ty} has no data")]
    MissingData {
        /// The event type.
        ty: String,
    },
    /// The event data is not valid JSON for the expected payload.
    #[error("invalid {what} payload: {source}")]
    InvalidPayload {
        /// Which payload was expected (e.g. "ManifestBundle").
        what: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A resource bundle failed validation (docs/protocol.md §4.1, docs/protocol.md §12.3).
    #[error("invalid resource bundle: {0}")]
    InvalidBundle(String),
    /// A protobuf CloudEvent could not be mapped (docs/protocol.md §7.1.2).
    #[error("invalid protobuf CloudEvent: {0}")]
    InvalidProto(String),
    /// An MQTT 5 message could not be mapped to a CloudEvent (docs/protocol.md §7.2, [`crate::mqtt`]).
    #[error("invalid MQTT CloudEvent: {0}")]
    InvalidMqtt(String),
    /// A Pub/Sub message could not be mapped to a CloudEvent (docs/protocol.md §7.3,
    /// [`crate::pubsub`]).
    #[error("invalid Pub/Sub CloudEvent: {0}")]
    InvalidPubSub(String),
    /// A structured-mode JSON CloudEvent could not be parsed.
    #[error("invalid structured CloudEvent JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// A sequence id is not a valid snowflake id (docs/protocol.md §6.2).
    #[error("invalid sequence id {id:?}: {reason}")]
    InvalidSequenceId {
        /// The offending id.
        id: String,
        /// What was wrong.
        reason: &'static str,
    },
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
