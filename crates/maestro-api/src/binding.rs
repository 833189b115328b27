//! The string attribute binding shared by the MQTT and Pub/Sub codecs (docs/protocol.md §7.2, §7.3):
//! CloudEvent attributes carried as `ce-<name>` strings next to the data. The two codecs differ
//! only in their error variant, what they call an attribute, and whether an empty `ce-subject` /
//! `ce-dataschema` counts as absent ([`Binding`]).

use chrono::{DateTime, Utc};
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesWriter, EventBuilder};

use crate::{Error, Event, EventBuilderV10, Result};

/// The attribute name prefix.
pub(crate) const PREFIX: &str = "ce-";

/// How one codec reports problems.
#[derive(Clone, Copy)]
pub(crate) struct Binding {
    /// Wraps a message in the codec's error variant.
    pub(crate) error: fn(String) -> Error,
    /// What the codec calls a carrier of one attribute ("user property", "attribute").
    pub(crate) what: &'static str,
    /// Whether an empty `ce-subject` / `ce-dataschema` is treated as absent.
    pub(crate) skip_empty: bool,
}

/// An extension value as the string Go writes.
pub(crate) fn extension_string(value: &ExtensionValue) -> String {
    match value {
        ExtensionValue::String(s) => s.clone(),
        ExtensionValue::Integer(i) => i.to_string(),
        ExtensionValue::Boolean(b) => b.to_string(),
    }
}

/// Builds the event from the required attributes (`ce-specversion` `1.0`, `ce-id`,
/// `ce-source`, `ce-type`) that `get` looks up by full name; no time yet.
pub(crate) fn required<'a>(b: Binding, get: impl Fn(&str) -> Option<&'a str>) -> Result<Event> {
    let get = |name: &str| {
        get(&format!("{PREFIX}{name}"))
            .filter(|v| !v.is_empty())
            .ok_or_else(|| (b.error)(format!("missing or empty {} {PREFIX}{name}", b.what)))
    };
    let version = get("specversion")?;
    if version != "1.0" {
        return Err((b.error)(format!("unsupported ce-specversion {version:?} (expected \"1.0\")")));
    }
    let mut event = EventBuilderV10::new()
        .id(get("id")?)
        .source(get("source")?)
        .ty(get("type")?)
        .build()
        .map_err(|e| (b.error)(e.to_string()))?;
    event.set_time(None::<DateTime<Utc>>);
    Ok(event)
}

/// Applies one `ce-<name>` attribute (prefix stripped) to `event`.
pub(crate) fn apply(b: Binding, event: &mut Event, name: &str, value: &str) -> Result<()> {
    let skip = b.skip_empty && value.is_empty();
    match name {
        "specversion" | "id" | "source" | "type" => {}
        // Go carries datacontenttype in the content-type property/attribute; a stray ce-
        // attribute is ignored rather than turned into an extension.
        "datacontenttype" => {}
        "time" => {
            let t = DateTime::parse_from_rfc3339(value)
                .map_err(|e| (b.error)(format!("ce-time {value:?} is not RFC 3339: {e}")))?
                .with_timezone(&Utc);
            if !storable_time(&t) {
                return Err((b.error)(format!("ce-time {value:?} is outside the years 0000 to 9999 UTC")));
            }
            event.set_time(Some(t));
        }
        "subject" if !skip => {
            event.set_subject(Some(value.to_owned()));
        }
        "dataschema" if !skip => {
            let u = url::Url::parse(value)
                .map_err(|e| (b.error)(format!("ce-dataschema {value:?} is not a URI: {e}")))?;
            event.set_dataschema(Some(u));
        }
        "subject" | "dataschema" => {}
        _ => {
            if let Some(problem) = extension_name_problem(name) {
                return Err((b.error)(format!("{} {PREFIX}{name:?} {problem}", b.what)));
            }
            event.set_extension(name, ExtensionValue::String(value.to_owned()));
        }
    }
    Ok(())
}

/// Whether `t` can be written back as RFC 3339 (years 0000 to 9999 in UTC): a time outside
/// would be stored as text no reader accepts, hiding the event (docs/security.md, "Bad input").
pub(crate) fn storable_time(t: &DateTime<Utc>) -> bool {
    use chrono::Datelike;
    (0..=9999).contains(&t.year())
}

/// Why `name` cannot be an extension name, if it cannot: CloudEvents names are `[a-z0-9]+`, and
/// `data` is the event's data in the JSON format, so an extension of that name would replace
/// the stored bundle or status (docs/security.md, "Bad input").
pub(crate) fn extension_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || !name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Some("is not a valid extension name ([a-z0-9]+)");
    }
    (name == "data").then_some("is reserved: an extension may not be named data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_names() {
        assert_eq!(extension_name_problem("clustername"), None);
        assert_eq!(extension_name_problem("v2"), None);
        assert!(extension_name_problem("data").is_some_and(|p| p.contains("reserved")));
        for bad in ["", "Data", "data_base64", "a-b", "naïve"] {
            assert!(extension_name_problem(bad).is_some(), "{bad:?}");
        }
    }
}
