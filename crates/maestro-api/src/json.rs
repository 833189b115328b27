//! Structured-mode CloudEvent JSON (`application/cloudevents+json`), used for storage (the
//! database holds the whole spec and status events, as Maestro does) and by structured
//! transports.

use crate::{Data, Error, Event, Result};
use cloudevents::AttributesReader;

/// The structured-mode media type.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// True for JSON media types (`application/json`, `text/json`, `…+json`).
pub fn is_json_content_type(ct: &str) -> bool {
    let ct = ct.split(';').next().unwrap_or("").trim();
    ct == "application/json" || ct == "text/json" || ct.ends_with("+json")
}

/// Serializes an event as structured JSON.
pub fn to_vec(event: &Event) -> Vec<u8> {
    // Serializing an Event (strings, numbers, JSON data) cannot fail.
    serde_json::to_vec(event).unwrap_or_default()
}

/// Serializes an event as structured JSON text (the text of [`to_vec`]).
pub fn to_string(event: &Event) -> String {
    // Serializing an Event (strings, numbers, JSON data) cannot fail.
    serde_json::to_string(event).unwrap_or_default()
}

/// The length in bytes of [`to_vec`]'s output, counted without building it.
pub fn encoded_len(event: &Event) -> usize {
    let mut counter = ByteCounter(0);
    // Counting cannot fail, and neither can serializing an Event (see `to_vec`).
    let _ = serde_json::to_writer(&mut counter, event);
    counter.0
}

/// An `io::Write` that only counts the bytes written to it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serializes an event as a structured JSON value.
pub fn to_value(event: &Event) -> serde_json::Value {
    serde_json::to_value(event).unwrap_or(serde_json::Value::Null)
}

/// Parses a structured JSON event.
///
/// # Errors
/// [`Error::InvalidJson`] when the bytes are not a valid CloudEvent.
pub fn from_slice(bytes: &[u8]) -> Result<Event> {
    let event: Event = serde_json::from_slice(bytes).map_err(Error::InvalidJson)?;
    Ok(normalize_data(event))
}

/// Parses a structured JSON value.
///
/// # Errors
/// [`Error::InvalidJson`] when the value is not a valid CloudEvent.
pub fn from_value(value: serde_json::Value) -> Result<Event> {
    let event: Event = serde_json::from_value(value).map_err(Error::InvalidJson)?;
    Ok(normalize_data(event))
}

/// Parses a structured JSON value by reference (no copy of the tree is made first).
///
/// # Errors
/// [`Error::InvalidJson`] when the value is not a valid CloudEvent.
pub fn from_value_ref(value: &serde_json::Value) -> Result<Event> {
    let event = <Event as serde::Deserialize>::deserialize(value).map_err(Error::InvalidJson)?;
    Ok(normalize_data(event))
}

/// Parses a structured JSON event without parsing its `data`: the event comes back without
/// data, and the data as raw JSON text borrowed from `text` (`None` when absent or `null`).
/// For resending stored events without building their data trees; the attributes and
/// extensions are read exactly as [`from_slice`] reads them.
///
/// # Errors
/// [`Error::InvalidJson`] when `text` is not a CloudEvent JSON object, when an attribute name
/// holds a JSON escape, or when the data is binary (`data_base64`: use [`from_slice`]).
pub fn from_str_raw_data(text: &str) -> Result<(Event, Option<&serde_json::value::RawValue>)> {
    use serde::de::Error as _;
    let mut fields: std::collections::HashMap<&str, &serde_json::value::RawValue> =
        serde_json::from_str(text).map_err(Error::InvalidJson)?;
    let raw_data = fields.remove("data");
    let data = raw_data.filter(|d| d.get() != "null");
    if fields.contains_key("data_base64") {
        return Err(Error::InvalidJson(serde_json::Error::custom(
            "binary data (data_base64) is not raw JSON",
        )));
    }
    // The attributes straight from the text with the `data` member cut out: one pass, no
    // tree of them first (the status fan-out reads every stored status event this way).
    let without_data = match raw_data {
        None => Some(std::borrow::Cow::Borrowed(text)),
        Some(d) => without_member(text, d).map(std::borrow::Cow::Owned),
    };
    if let Some(bare) = without_data
        && let Ok(event) = serde_json::from_str::<Event>(&bare)
        && fields.len() == bare_member_count(&event)
    {
        return Ok((event, data));
    }
    let attributes = fields
        .into_iter()
        .map(|(name, value)| Ok((name.to_owned(), serde_json::from_str(value.get())?)))
        .collect::<Result<serde_json::Map<_, _>, serde_json::Error>>()
        .map_err(Error::InvalidJson)?;
    let event = serde_json::from_value(serde_json::Value::Object(attributes)).map_err(Error::InvalidJson)?;
    Ok((event, data))
}

/// `text` (a JSON object) without its member whose value is `value` (a slice of `text`): the
/// key `"data"` before it and one comma are cut too. `None` when the text around it is not
/// `"data"` `:` value (then the caller reads the event the long way).
fn without_member(text: &str, value: &serde_json::value::RawValue) -> Option<String> {
    let start = (value.get().as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let after = text.get(start + value.get().len()..)?;
    let head =
        text.get(..start)?.trim_end().strip_suffix(':')?.trim_end().strip_suffix("\"data\"")?.trim_end();
    if let Some(head) = head.strip_suffix(',') {
        return Some(format!("{head}{after}"));
    }
    // The first member: keep the brace, cut the comma after the value.
    head.ends_with('{').then(|| format!("{head}{}", after.trim_start().strip_prefix(',').unwrap_or(after)))
}

/// How many top-level members the structured JSON of `event` has besides `data`: its
/// attributes (`specversion`, `id`, `source`, `type` and the optional ones set) and extensions.
fn bare_member_count(event: &Event) -> usize {
    let optional = [
        event.datacontenttype().is_some(),
        event.dataschema().is_some(),
        event.subject().is_some(),
        event.time().is_some(),
    ];
    4 + optional.iter().filter(|set| **set).count() + event.iter_extensions().count()
}

/// Turns binary or string data with a JSON content type into `Data::Json`, so that every
/// event held in memory carries JSON data the same way whatever transport it came from.
/// Data that does not parse is left unchanged (decoders report it).
pub fn normalize_data(mut event: Event) -> Event {
    let is_json = event.datacontenttype().is_none_or(is_json_content_type);
    if !is_json {
        return event;
    }
    let parsed = match event.data() {
        Some(Data::Binary(b)) => serde_json::from_slice::<serde_json::Value>(b).ok(),
        Some(Data::String(s)) => serde_json::from_str::<serde_json::Value>(s).ok(),
        _ => None,
    };
    if let Some(v) = parsed {
        event.set_data_unchecked(Data::Json(v));
    }
    event
}

/// The event data as JSON bytes (empty when there is no data).
pub fn data_bytes(event: &Event) -> Vec<u8> {
    match event.data() {
        None => Vec::new(),
        Some(Data::Binary(b)) => b.clone(),
        Some(Data::String(s)) => s.as_bytes().to_vec(),
        Some(Data::Json(v)) => serde_json::to_vec(v).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_stored_status_event() {
        // Shape of a stored status event (Go Maestro's stored form, docs/protocol.md §10).
        let raw = serde_json::json!({
            "specversion": "1.0",
            "id": "1f21fcbe-3e41-4639-ab8d-1713c578e4cd",
            "source": "maestro-agent-59d9c485d9-7bvwb",
            "type": "io.open-cluster-management.works.v1alpha1.manifestbundles.status.update_request",
            "datacontenttype": "application/json",
            "resourceid": "68ebf474-6709-48bb-b760-386181268060",
            "clustername": "b288a9da-8bfe-4c82-94cc-2b48e773fc46",
            "originalsource": "maestro",
            "resourceversion": "1",
            "sequenceid": "1834773391719010304",
            "statushash": "6b7c3d1f",
            "data": {"conditions": [{"type":"Applied","status":"True","lastTransitionTime":"2024-09-13T06:11:10Z","reason":"AppliedManifestWorkComplete","message":"Apply manifest work complete"}]}
        });
        let ev = from_value(raw.clone()).expect("parse");
        assert_eq!(crate::ext::resource_version(&ev).expect("string version"), 1);
        let back = to_value(&ev);
        assert_eq!(back["data"], raw["data"]);
        assert_eq!(back["sequenceid"], raw["sequenceid"]);
        assert_eq!(encoded_len(&ev), to_vec(&ev).len());
        assert!(encoded_len(&ev) > 500, "the whole event is counted");

        // Without parsing the data: the same attributes and extensions, the data's own text.
        let text = raw.to_string();
        let (bare, data) = from_str_raw_data(&text).expect("raw parse");
        let data = data.expect("data");
        assert_eq!(serde_json::from_str::<serde_json::Value>(data.get()).expect("data text"), raw["data"]);
        let mut whole = to_value(&ev);
        whole.as_object_mut().map(|m| m.remove("data"));
        assert_eq!(to_value(&bare), whole);
        let mut binary = raw.clone();
        binary.as_object_mut().map(|m| m.remove("data"));
        binary["data_base64"] = serde_json::json!("e30=");
        assert!(from_str_raw_data(&binary.to_string()).is_err(), "binary data is refused");
        assert!(from_str_raw_data("[1]").is_err());
    }

    /// The attributes read with `data` cut out of the text equal those read through a tree,
    /// wherever `data` stands and however the text is spaced.
    #[test]
    fn raw_data_reading_cuts_the_data_member_anywhere() {
        let texts = [
            r#"{"data":{"a":[1,"x,y"]},"specversion":"1.0","id":"1","source":"s","type":"t","ext":"v"}"#,
            r#"{"specversion":"1.0","data" : {"a":1} ,"id":"1","source":"s","type":"t"}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2024-01-02T03:04:05Z","data":[1,2]}"#,
            r#"{ "data" : null , "specversion":"1.0","id":"1","source":"s","type":"t"}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"application/json"}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","subject":null,"data":"dat\"a"}"#,
        ];
        for text in texts {
            let (event, data) = from_str_raw_data(text).expect(text);
            let whole: serde_json::Value = serde_json::from_str(text).expect("json");
            let mut tree = whole.as_object().cloned().expect("object");
            let want_data = tree.remove("data").filter(|d| !d.is_null());
            let want: Event = serde_json::from_value(serde_json::Value::Object(tree)).expect("event");
            assert_eq!(event, want, "{text}");
            let got_data = data.map(|d| serde_json::from_str::<serde_json::Value>(d.get()).expect("data"));
            assert_eq!(got_data, want_data, "{text}");
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(from_slice(b"{not json").is_err());
        assert!(from_slice(br#"{"specversion":"1.0"}"#).is_err());
    }
}
