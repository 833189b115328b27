//! Resource bundle lists written from the stored JSON text ([`RawResource`]): the parts of the
//! stored spec and status events a bundle shows (`manifests`, `manifestConfigs`,
//! `deleteOption`, `conditions`, `resourceStatus`) are copied as text, without building a JSON
//! tree per bundle, in one pass over each stored event (its top-level keys and its `data`
//! object's keys together). A 6,000-bundle list spent most of its time parsing and freeing
//! those trees, and a 200,000-bundle list a third of its time re-reading the stored text
//! (docs/benchmarks.md). The JSON means the same as [`presenters::resource_bundle`]'s, with the
//! same top-level keys in the same order; inside the copied parts the key order is the one the
//! database stored (the order they were written in; rows migrated from PostgreSQL `jsonb`
//! columns keep `jsonb`'s order, by key length). Insignificant whitespace is dropped. The
//! same keys are left out when empty (`delete_option`, `manifest_configs`, `deleted_at`,
//! `status`), and `source` is never shown: Go's client refuses list items with keys its
//! schema lacks (docs/rest.md, "Response shapes"). Stored events in an unusual form fall back
//! to [`presenters::resource_bundle`].

use chrono::{DateTime, Utc};
use maestro_store::{RawResource, StoredJson};
use serde::de::Visitor;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::presenters::{self, BASE};

/// One bundle of a list: copied from the stored text, or built as a tree for unusual rows.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BundleItem<'a> {
    /// Written from the stored text.
    Raw(Box<RawBundle<'a>>),
    /// Built by [`presenters::resource_bundle`].
    Built(Value),
}

/// A resource bundle written from its stored text; fields in the sorted key order of
/// [`presenters::resource_bundle`]'s JSON map.
#[derive(Debug, Serialize)]
pub struct RawBundle<'a> {
    consumer_name: &'a str,
    created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_option: Option<Part<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted_at: Option<DateTime<Utc>>,
    href: String,
    id: &'a str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest_configs: Option<Part<'a>>,
    manifests: Part<'a>,
    metadata: Map<String, Value>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<RawStatus<'a>>,
    updated_at: DateTime<Utc>,
    version: i64,
}

/// The `status` of a [`RawBundle`] (keys in sorted order).
#[derive(Debug, Serialize)]
#[allow(non_snake_case)]
pub struct RawStatus<'a> {
    ObservedVersion: i64,
    SequenceID: String,
    conditions: Part<'a>,
    resourceStatus: Part<'a>,
}

/// A part of a bundle: stored text (borrowed, or compacted) or a default value.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Part<'a> {
    Stored(&'a RawValue),
    Compacted(Box<RawValue>),
    Default(Value),
}

/// `r` as list JSON.
///
/// # Errors
/// When the stored text is not JSON (the database guarantees it is).
pub fn bundle_item(r: &RawResource) -> Result<BundleItem<'_>, serde_json::Error> {
    match raw_bundle(r) {
        Some(b) => Ok(BundleItem::Raw(Box::new(b))),
        None => Ok(BundleItem::Built(presenters::resource_bundle(&r.parse()?))),
    }
}

/// A key of a stored event kept as text: `None` when absent; a JSON `null` is kept as the text
/// `null` (as the tree-built JSON keeps it).
#[derive(Debug, Default, Clone, Copy)]
struct Field<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|v| Field(Some(v)))
    }
}

impl<'a> Field<'a> {
    /// The stored text (a `null` kept as `null`), or `default` when absent.
    fn or(self, default: Value) -> Part<'a> {
        self.0.map_or(Part::Default(default), compact)
    }

    /// The stored text, or `default` when absent or `null`.
    fn or_if_null(self, default: Value) -> Part<'a> {
        Field(self.0.filter(|v| v.get() != "null")).or(default)
    }

    /// The stored text; `None` when absent, `null`, `{}` or `[]` (what
    /// [`presenters::is_empty_json`] leaves out).
    fn non_empty(self) -> Option<Part<'a>> {
        let part = compact(self.0?);
        let text = match &part {
            Part::Stored(raw) => raw.get(),
            Part::Compacted(raw) => raw.get(),
            Part::Default(_) => return Some(part),
        };
        (!matches!(text, "null" | "{}" | "[]")).then_some(part)
    }
}

/// The keys of a stored structured-mode event the list reads (docs/protocol.md §5.2: extensions
/// are top-level keys), and the wanted keys of its `data` object, read in one pass over the
/// stored text.
#[derive(Deserialize)]
struct StoredEvent<'a, D> {
    data: ObjectOf<D>,
    #[serde(borrow, default, rename = "metadata")]
    metadata: Field<'a>,
    #[serde(borrow, default, rename = "resourceversion")]
    resource_version: Field<'a>,
    #[serde(borrow, default, rename = "sequenceid")]
    sequence_id: Field<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecData<'a> {
    #[serde(borrow, default)]
    manifests: Field<'a>,
    #[serde(borrow, default)]
    manifest_configs: Field<'a>,
    #[serde(borrow, default)]
    delete_option: Field<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusData<'a> {
    #[serde(borrow, default)]
    conditions: Field<'a>,
    #[serde(borrow, default)]
    resource_status: Field<'a>,
}

/// `T` read from a JSON object only: a derived struct also reads an array as its fields in
/// order, and a stored event whose `data` is not an object falls back to the built JSON.
struct ObjectOf<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOf<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(MapOnly(d)).map(ObjectOf)
    }
}

/// A deserializer that asks for a map whatever its caller asks for.
struct MapOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for MapOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// Reads a stored event's top-level keys and the wanted keys of its `data` object; `None`
/// unless it is an object with a `data` object.
fn stored_event<'a, D: Deserialize<'a>>(text: &'a StoredJson) -> Option<StoredEvent<'a, D>> {
    serde_json::from_str(text.get()).ok()
}

fn raw_bundle(r: &RawResource) -> Option<RawBundle<'_>> {
    let spec = stored_event::<SpecData>(&r.payload)?;
    let data = &spec.data.0;
    let mut metadata = metadata_map(spec.metadata)?;
    metadata.insert("creationTimestamp".into(), json!(r.created_at));
    if let Some(d) = r.deleted_at {
        metadata.insert("deletionTimestamp".into(), json!(d));
    }
    let status = match r.status.as_ref() {
        None => None,
        Some(stored) => Some(raw_status(stored)?),
    };
    Some(RawBundle {
        consumer_name: &r.consumer_name,
        created_at: r.created_at,
        delete_option: data.delete_option.non_empty(),
        deleted_at: r.deleted_at,
        href: format!("{BASE}/resource-bundles/{}", r.id),
        id: &r.id,
        kind: "ResourceBundle",
        manifest_configs: data.manifest_configs.non_empty(),
        manifests: data.manifests.or_if_null(json!([])),
        metadata,
        name: &r.name,
        status,
        updated_at: r.updated_at,
        version: r.version,
    })
}

/// The `metadata` extension (a string holding a JSON object) as a map; `None` (fall back)
/// when the extension is not a string.
fn metadata_map(field: Field<'_>) -> Option<Map<String, Value>> {
    let Some(raw) = field.0 else { return Some(Map::new()) };
    let text: String = serde_json::from_str(raw.get()).ok()?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Some(m),
        _ => Some(Map::new()),
    }
}

fn raw_status(stored: &StoredJson) -> Option<RawStatus<'_>> {
    let event = stored_event::<StatusData>(stored)?;
    let data = &event.data.0;
    let version = match event.resource_version.0.map(|raw| serde_json::from_str::<Value>(raw.get())) {
        Some(Ok(Value::Number(n))) => n.as_i64(),
        Some(Ok(Value::String(s))) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let sequence_id = match event.sequence_id.0 {
        None => String::new(),
        Some(raw) => serde_json::from_str::<String>(raw.get()).ok()?,
    };
    Some(RawStatus {
        ObservedVersion: version.filter(|n| i32::try_from(*n).is_ok()).unwrap_or(0),
        SequenceID: sequence_id,
        conditions: data.conditions.or(Value::Null),
        resourceStatus: data.resource_status.or(json!([])),
    })
}

/// `raw` without whitespace outside strings (PostgreSQL's `jsonb` output, still in rows written
/// before the `json` columns, puts a space after every `:` and `,`); borrowed as stored when it
/// has none, as the server's own writes never do (spaces inside strings are common and kept).
/// Dropping ASCII whitespace bytes keeps the text valid UTF-8.
fn compact(raw: &RawValue) -> Part<'_> {
    let text = raw.get().as_bytes();
    let Some(first) = outside_whitespace(text, 0) else { return Part::Stored(raw) };
    let mut out = Vec::with_capacity(text.len());
    let mut from = 0;
    let mut at = Some(first);
    while let Some(space) = at {
        out.extend_from_slice(&text[from..space]);
        from = space + 1;
        at = outside_whitespace(text, from);
    }
    out.extend_from_slice(&text[from..]);
    match String::from_utf8(out).ok().and_then(|s| RawValue::from_string(s).ok()) {
        Some(compacted) => Part::Compacted(compacted),
        None => Part::Stored(raw),
    }
}

/// The index of the first ASCII whitespace byte outside a string in JSON `text` from `from`
/// (which must not be inside a string). String contents are skipped with `memchr`: most of
/// a bundle's bytes are inside strings.
fn outside_whitespace(text: &[u8], mut from: usize) -> Option<usize> {
    while let Some(&b) = text.get(from) {
        match b {
            b' ' | b'\n' | b'\r' | b'\t' => return Some(from),
            b'"' => from = string_end(text, from + 1),
            _ => from += 1,
        }
    }
    None
}

/// The index after the quote closing the string whose contents start at `from` (the end of
/// `text` when it is not closed).
fn string_end(text: &[u8], mut from: usize) -> usize {
    loop {
        let Some(k) = text.get(from..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) else {
            return text.len();
        };
        let at = from + k;
        if text[at] == b'"' {
            return at + 1;
        }
        // An escape: the next byte is part of it, whatever it is.
        from = at + 2;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use maestro_api::codec::{SpecEventBuilder, StatusEventBuilder};
    use maestro_api::payload::{ManifestBundle, ManifestBundleStatus};
    use maestro_api::types::Action;
    use maestro_api::{ext, json};
    use maestro_store::Resource;

    use super::*;

    fn stored(deleted: bool, with_status: bool) -> Resource {
        let mut meta = Map::new();
        meta.insert("name".into(), json!("web"));
        meta.insert("labels".into(), json!({"app": "web"}));
        let bundle = ManifestBundle {
            manifests: vec![json!({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "c"}, "data": {"k": "two words, \"quoted\": x"}})],
            ..Default::default()
        };
        let spec =
            SpecEventBuilder::new("maestro", "r1", 3, "c1").metadata(meta.clone()).bundle(&bundle).build();
        let status: ManifestBundleStatus = serde_json::from_value(json!({
            "conditions": [{"type": "Applied", "status": "True", "reason": "Done", "message": "all good",
                            "lastTransitionTime": "2024-01-01T00:00:00Z"}],
            "resourceStatus": [{"resourceMeta": {"kind": "ConfigMap", "name": "c"}, "conditions": []}]
        }))
        .unwrap();
        let status_event = StatusEventBuilder {
            source: "c1-work-agent",
            resource_id: "r1",
            resource_version: 3,
            cluster_name: "c1",
            original_source: "maestro",
            sequence_id: "1834773391719010304",
            status_hash: "abc",
            metadata: Some(&meta),
            action: Action::Update,
        }
        .build(&status);
        let now = chrono::Utc::now();
        Resource {
            id: "r1".into(),
            name: "web".into(),
            consumer_name: "c1".into(),
            source: "maestro".into(),
            version: 3,
            payload: json::to_value(&spec).into(),
            status: with_status.then(|| json::to_value(&status_event)),
            status_hash: None,
            sequence_id: None,
            deleted_at: deleted.then_some(now),
            created_at: now,
            updated_at: now,
        }
    }

    /// `r` as the store returns it raw; `spaced` mimics PostgreSQL's `jsonb` output.
    fn raw(r: &Resource, spaced: bool) -> RawResource {
        let text = |v: &Value| {
            let s = if spaced { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) };
            StoredJson::from_text(s.unwrap())
        };
        RawResource {
            id: r.id.clone(),
            name: r.name.clone(),
            consumer_name: r.consumer_name.clone(),
            source: r.source.clone(),
            version: r.version,
            payload: text(&r.payload),
            status: r.status.as_ref().map(text),
            deleted_at: r.deleted_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }

    #[test]
    fn stored_event_keys_are_the_extension_names() {
        assert_eq!(
            (ext::METADATA, ext::RESOURCE_VERSION, ext::SEQUENCE_ID),
            ("metadata", "resourceversion", "sequenceid"),
            "the serde renames of StoredEvent"
        );
    }

    /// Spec variants: a name, an edit of the stored spec's `data`, and whether
    /// `delete_option` and `manifest_configs` show.
    type Variant = (&'static str, fn(&mut Value), bool);
    const VARIANTS: [Variant; 4] = [
        ("absent", |_| {}, false),
        (
            "empty",
            |d| {
                d["deleteOption"] = json!({});
                d["manifestConfigs"] = json!([]);
            },
            false,
        ),
        (
            "null",
            |d| {
                d["deleteOption"] = Value::Null;
                d["manifestConfigs"] = Value::Null;
            },
            false,
        ),
        (
            "set",
            |d| {
                d["deleteOption"] = json!({"propagationPolicy": "Orphan"});
                d["manifestConfigs"] = json!([{"resourceIdentifier": {"name": "c"}}]);
            },
            true,
        ),
    ];

    #[test]
    fn raw_json_is_byte_for_byte_the_built_json_and_omits_what_go_omits() {
        for (deleted, with_status) in [(false, true), (true, false), (false, false), (true, true)] {
            for (variant, edit, shown) in VARIANTS {
                let case = format!("deleted={deleted} status={with_status} spec={variant}");
                let mut r = stored(deleted, with_status);
                edit(&mut std::sync::Arc::make_mut(&mut r.payload)["data"]);
                let built = presenters::resource_bundle(&r);
                let keys: Vec<&str> = built.as_object().unwrap().keys().map(String::as_str).collect();
                assert!(
                    keys.iter().all(|k| presenters::RESOURCE_BUNDLE_KEYS.contains(k)),
                    "{case}: {keys:?}"
                );
                let shows = |k: &str| built.get(k).is_some();
                assert_eq!((shows("deleted_at"), shows("status")), (deleted, with_status), "{case}");
                assert_eq!((shows("delete_option"), shows("manifest_configs")), (shown, shown), "{case}");
                let built = serde_json::to_string(&built).unwrap();
                for spaced in [false, true] {
                    let raw = raw(&r, spaced);
                    let item = bundle_item(&raw).unwrap();
                    assert!(matches!(item, BundleItem::Raw(_)), "the usual form is copied as text");
                    assert_eq!(serde_json::to_string(&item).unwrap(), built, "{case} spaced={spaced}");
                }
            }
        }
    }

    #[test]
    fn unusual_stored_events_fall_back_to_the_built_json() {
        let cases: [fn(&mut Resource); 4] = [
            |r| std::sync::Arc::make_mut(&mut r.payload)["metadata"] = json!(42),
            |r| std::sync::Arc::make_mut(&mut r.payload)["data"] = json!([1, 2]),
            |r| r.status.as_mut().unwrap()["sequenceid"] = Value::Null,
            |r| r.status.as_mut().unwrap()["data"] = json!("text"),
        ];
        for (i, edit) in cases.iter().enumerate() {
            let mut r = stored(false, true);
            edit(&mut r);
            let raw = raw(&r, false);
            let item = bundle_item(&raw).unwrap();
            assert!(matches!(item, BundleItem::Built(_)), "case {i}");
            assert_eq!(serde_json::to_value(&item).unwrap(), presenters::resource_bundle(&r), "case {i}");
        }
    }

    #[test]
    fn nulls_and_missing_parts_read_as_the_built_json() {
        let mut r = stored(false, true);
        std::sync::Arc::make_mut(&mut r.payload)["data"]["deleteOption"] = Value::Null;
        std::sync::Arc::make_mut(&mut r.payload)["data"]["manifests"] = Value::Null;
        std::sync::Arc::make_mut(&mut r.payload)["data"].as_object_mut().unwrap().remove("manifestConfigs");
        r.status.as_mut().unwrap()["resourceversion"] = json!("7");
        let raw = raw(&r, true);
        let item = bundle_item(&raw).unwrap();
        assert!(matches!(item, BundleItem::Raw(_)));
        let built = presenters::resource_bundle(&r);
        assert_eq!((built.get("delete_option"), built.get("manifest_configs")), (None, None));
        assert_eq!(built["manifests"], json!([]), "a null manifests list reads as empty");
        assert_eq!(built["status"]["ObservedVersion"], json!(7));
        assert_eq!(serde_json::to_string(&item).unwrap(), serde_json::to_string(&built).unwrap());
    }
    /// Any JSON value whose strings are likely to hold whitespace, quotes and backslashes.
    fn spaced_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text = "[a \"\\\\\n\t\r:,{}\\[\\]é]{0,8}";
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            text.prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(text, inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Compact text is borrowed as stored, whitespace inside its strings and all; spaced
        /// text (as `jsonb` printed it) comes out as the compact text.
        #[test]
        fn compact_drops_only_whitespace_outside_strings(v in spaced_json()) {
            let compact_text = serde_json::to_string(&v).unwrap();
            let stored = RawValue::from_string(compact_text.clone()).unwrap();
            proptest::prop_assert!(matches!(compact(&stored), Part::Stored(_)));
            for spaced in [serde_json::to_string_pretty(&v).unwrap(), jsonb_style(&v)] {
                let stored = RawValue::from_string(spaced).unwrap();
                let out = match compact(&stored) {
                    Part::Stored(raw) => raw.get().to_owned(),
                    Part::Compacted(raw) => raw.get().to_owned(),
                    Part::Default(_) => unreachable!("compact never defaults"),
                };
                proptest::prop_assert_eq!(&out, &compact_text);
            }
        }
    }

    /// `v` printed the way PostgreSQL prints `jsonb`: a space after every `:` and `,`.
    fn jsonb_style(v: &Value) -> String {
        match v {
            Value::Array(items) => {
                format!("[{}]", items.iter().map(jsonb_style).collect::<Vec<_>>().join(", "))
            }
            Value::Object(m) => {
                let keys = m.iter().map(|(k, v)| format!("{}: {}", json!(k), jsonb_style(v)));
                format!("{{{}}}", keys.collect::<Vec<_>>().join(", "))
            }
            other => other.to_string(),
        }
    }
}
