//! Extension attributes (docs/protocol.md §3.2) and their typing rules.
//!
//! `cloudevents::ExtensionValue` has only string, boolean and integer variants, so
//! `deletiontimestamp` is held as an RFC 3339 string in memory and re-typed as a timestamp
//! by the gRPC mapping ([`crate::grpc`]).

use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::event::ExtensionValue;

use crate::{Error, Event, Result};

/// `resourceid`: the resource (work) UID. String.
pub const RESOURCE_ID: &str = "resourceid";
/// `resourceversion`: the spec generation, int32 range. Integer (or decimal string).
pub const RESOURCE_VERSION: &str = "resourceversion";
/// `clustername`: the consumer. Always present, may be `""`.
pub const CLUSTER_NAME: &str = "clustername";
/// `originalsource`: the source that created the work. Always present, may be `""`.
pub const ORIGINAL_SOURCE: &str = "originalsource";
/// `deletiontimestamp`: present on spec events of a deleting resource. Timestamp.
pub const DELETION_TIMESTAMP: &str = "deletiontimestamp";
/// `metadata`: JSON of a Kubernetes ObjectMeta, as a string.
pub const METADATA: &str = "metadata";
/// `sequenceid`: decimal snowflake id on every status event.
pub const SEQUENCE_ID: &str = "sequenceid";
/// `statushash`: lower-case hex SHA-256 of the status, on every status event.
pub const STATUS_HASH: &str = "statushash";
/// `logtracing`: a JSON object as a string (`{}` when empty).
pub const LOG_TRACING: &str = "logtracing";
/// `fieldmanager`: this project's addition on a source's spec `create_request` /
/// `update_request`: present and non-empty, it asks for a **merge apply** by that manager
/// ([`crate::merge`], docs/cli.md "Merge apply"). String. Go Maestro ignores it.
pub const FIELD_MANAGER: &str = "fieldmanager";
/// `storeid`: this project's addition on every spec `resync_response` the server sends: its
/// store identity, a random id created with its database (docs/protocol.md §5.5). String. Go
/// agents ignore it.
pub const STORE_ID: &str = "storeid";
/// `resyncdeletes`: this project's addition on every spec `resync_response` the server sends:
/// how many works that answer deletes because the store does not hold them (docs/protocol.md
/// §5.2 step 4, §5.5). Decimal string (an integer is accepted too).
pub const RESYNC_DELETES: &str = "resyncdeletes";
/// `resyncevents`: this project's addition on every spec event of a spec resync answer the
/// server sends (its `resync_response`s and the deletions of bundles deleted lately): how many
/// spec events that answer has, so an agent knows when it has all of them (docs/protocol.md
/// §5.2, §6.1). Decimal string (an integer is accepted too).
pub const RESYNC_EVENTS: &str = "resyncevents";
/// `resyncanswer`: this project's addition on every spec event of a spec resync answer the
/// server sends, beside [`RESYNC_EVENTS`]: the CloudEvent id of the request it answers, so an
/// agent counts each answer on its own and tells the answers to its own requests from late
/// answers to a predecessor's (docs/protocol.md §5.2, §6.1). String.
pub const RESYNC_ANSWER: &str = "resyncanswer";
/// `wipeconfirmed`: this project's addition on a spec `resync_response` deleting a work the
/// store does not hold, sent while an operator's wipe confirmation for the consumer holds
/// (docs/protocol.md §5.5): the agent deletes instead of orphaning. The string `"true"` (a
/// boolean is accepted too).
pub const WIPE_CONFIRMED: &str = "wipeconfirmed";

/// Returns a string extension, or `None` when absent. Integers and booleans are rendered as
/// strings (string-only transports and Go's `ToString` accept either).
pub fn get_str(event: &Event, name: &str) -> Option<String> {
    event.extension(name).map(|v| match v {
        ExtensionValue::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Returns a required string extension.
///
/// # Errors
/// [`Error::MissingExtension`] when absent.
pub fn require_str(event: &Event, name: &'static str) -> Result<String> {
    get_str(event, name).ok_or(Error::MissingExtension(name))
}

/// The `resourceid` extension (required, non-empty).
///
/// # Errors
/// [`Error::MissingExtension`] or [`Error::InvalidExtension`] when empty.
pub fn resource_id(event: &Event) -> Result<String> {
    let id = require_str(event, RESOURCE_ID)?;
    if id.is_empty() {
        return Err(Error::InvalidExtension { name: RESOURCE_ID, reason: "empty".into() });
    }
    Ok(id)
}

/// The `resourceversion` extension, accepted as an integer or a decimal string and checked to
/// be in int32 range (docs/protocol.md §3.2).
///
/// # Errors
/// [`Error::MissingExtension`] when absent; [`Error::InvalidExtension`] when not a number or out
/// of range.
pub fn resource_version(event: &Event) -> Result<i64> {
    let value = event.extension(RESOURCE_VERSION).ok_or(Error::MissingExtension(RESOURCE_VERSION))?;
    let n = match value {
        ExtensionValue::Integer(i) => *i,
        ExtensionValue::String(s) => s.trim().parse::<i64>().map_err(|_| Error::InvalidExtension {
            name: RESOURCE_VERSION,
            reason: format!("{s:?} is not a decimal integer"),
        })?,
        ExtensionValue::Boolean(_) => {
            return Err(Error::InvalidExtension { name: RESOURCE_VERSION, reason: "boolean".into() });
        }
    };
    if n < i64::from(i32::MIN) || n > i64::from(i32::MAX) {
        return Err(Error::InvalidExtension {
            name: RESOURCE_VERSION,
            reason: format!("{n} is outside the int32 range"),
        });
    }
    Ok(n)
}

/// The `deletiontimestamp` extension, accepted as an RFC 3339 (nano) string. `None` when absent.
///
/// # Errors
/// [`Error::InvalidExtension`] when present but not a timestamp.
pub fn deletion_timestamp(event: &Event) -> Result<Option<DateTime<Utc>>> {
    match event.extension(DELETION_TIMESTAMP) {
        None => Ok(None),
        Some(ExtensionValue::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| Error::InvalidExtension {
                name: DELETION_TIMESTAMP,
                reason: format!("{s:?} is not RFC 3339: {e}"),
            }),
        Some(other) => Err(Error::InvalidExtension {
            name: DELETION_TIMESTAMP,
            reason: format!("{other} is not a timestamp"),
        }),
    }
}

/// Formats a timestamp the way Go's CloudEvents SDK stringifies one (RFC 3339, UTC).
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The `metadata` extension parsed as a JSON object. `None` when absent or empty.
///
/// # Errors
/// [`Error::InvalidExtension`] when present but not a JSON object.
pub fn metadata(event: &Event) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
    let Some(raw) = get_str(event, METADATA) else { return Ok(None) };
    if raw.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<serde_json::Value>(&raw) {
        Ok(serde_json::Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(Error::InvalidExtension { name: METADATA, reason: "not a JSON object".into() }),
        Err(e) => Err(Error::InvalidExtension { name: METADATA, reason: e.to_string() }),
    }
}

/// Sets a string extension.
pub fn set_str(event: &mut Event, name: &str, value: impl Into<String>) {
    event.set_extension(name, ExtensionValue::String(value.into()));
}

/// Sets `resourceversion` as an integer.
pub fn set_resource_version(event: &mut Event, version: i64) {
    event.set_extension(RESOURCE_VERSION, ExtensionValue::Integer(version));
}

/// Sets `deletiontimestamp` (held as an RFC 3339 string; typed as a timestamp on gRPC).
pub fn set_deletion_timestamp(event: &mut Event, t: &DateTime<Utc>) {
    event.set_extension(DELETION_TIMESTAMP, ExtensionValue::String(format_timestamp(t)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventBuilderV10;
    use cloudevents::EventBuilder;

    fn ev(ext: &[(&str, ExtensionValue)]) -> Event {
        let mut b = EventBuilderV10::new().id("1").source("s").ty("t");
        for (k, v) in ext {
            b = b.extension(k, v.clone());
        }
        b.build().expect("event")
    }

    #[test]
    fn resource_version_accepts_integer_and_decimal_string() {
        assert_eq!(resource_version(&ev(&[(RESOURCE_VERSION, 7i64.into())])).ok(), Some(7));
        assert_eq!(resource_version(&ev(&[(RESOURCE_VERSION, "12".into())])).ok(), Some(12));
        assert!(resource_version(&ev(&[(RESOURCE_VERSION, "x1".into())])).is_err());
        assert!(resource_version(&ev(&[(RESOURCE_VERSION, (1i64 << 31).into())])).is_err());
        assert!(matches!(resource_version(&ev(&[])), Err(Error::MissingExtension(_))));
    }

    #[test]
    fn deletion_timestamp_accepts_rfc3339_and_nano() {
        let e = ev(&[(DELETION_TIMESTAMP, "2024-03-01T10:00:00Z".into())]);
        assert!(deletion_timestamp(&e).expect("ok").is_some());
        let e = ev(&[(DELETION_TIMESTAMP, "2024-03-01T10:00:00.123456789+02:00".into())]);
        assert!(deletion_timestamp(&e).expect("ok").is_some());
        let e = ev(&[(DELETION_TIMESTAMP, "yesterday".into())]);
        assert!(deletion_timestamp(&e).is_err());
        assert!(deletion_timestamp(&ev(&[])).expect("ok").is_none());
    }

    #[test]
    fn empty_strings_are_real_attributes() {
        let e = ev(&[(CLUSTER_NAME, "".into())]);
        assert_eq!(get_str(&e, CLUSTER_NAME).as_deref(), Some(""));
        assert_eq!(get_str(&e, ORIGINAL_SOURCE), None);
    }

    #[test]
    fn metadata_must_be_an_object() {
        let e = ev(&[(METADATA, r#"{"name":"a"}"#.into())]);
        assert_eq!(metadata(&e).expect("ok").and_then(|m| m.get("name").cloned()), Some("a".into()));
        assert!(metadata(&ev(&[(METADATA, "[1]".into())])).is_err());
        assert!(metadata(&ev(&[(METADATA, "{".into())])).is_err());
    }
}
