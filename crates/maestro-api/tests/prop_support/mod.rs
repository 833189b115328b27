//! Shared proptest strategies for the wire decoder property tests (`prop_decoders.rs`,
//! `prop_roundtrip.rs`): arbitrary JSON, spec and status events built with the codec builders
//! (arbitrary ids, versions, cluster names, metadata, payloads and times), and mutations of
//! wire messages that keep them close enough to valid to reach the decoders' deeper checks.

#![allow(dead_code, unreachable_pub)]

use chrono::{DateTime, Utc};
use maestro_api::codec::{SpecEventBuilder, StatusEventBuilder};
use maestro_api::payload::{
    Condition, FeedbackValue, FieldValue, ManifestBundle, ManifestBundleStatus, ManifestCondition,
    ManifestResourceMeta, StatusFeedback,
};
use maestro_api::types::Action;
use maestro_api::{AttributesWriter, Event};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Cases per property: modest so the suites stay fast in debug builds.
pub const CASES: u32 = 128;

/// A proptest configuration with [`CASES`] cases, or `PROPTEST_CASES` when set (for longer
/// local runs).
pub fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(CASES);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Short arbitrary text: any Unicode scalar values, often empty.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z0-9-]{0,12}",
        2 => ".{0,16}",
        1 => any::<String>(),
    ]
    .boxed()
}

/// Non-empty arbitrary text (ids, sources: the bindings refuse empty required attributes).
pub fn nonempty_text() -> BoxedStrategy<String> {
    prop_oneof![3 => "[a-z0-9-]{1,12}", 2 => ".{1,16}"].boxed()
}

/// JSON without floats (floats do not survive serde_json's default best-effort float parsing
/// bit for bit, and no Kubernetes object field the protocol carries is one).
pub fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(text(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Any JSON, floats included (for decoders that must only not panic).
pub fn any_json() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => json_value(),
        1 => any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ]
    .boxed()
}

/// A JSON object without floats.
pub fn json_object() -> BoxedStrategy<Map<String, Value>> {
    btree_map(text(), json_value(), 0..4).prop_map(|m| m.into_iter().collect()).boxed()
}

/// A time between years 1 and 9999 (the range RFC 3339 and protobuf Timestamps cover), with
/// nanoseconds.
pub fn time() -> BoxedStrategy<DateTime<Utc>> {
    (-62_135_596_800i64..=253_402_300_799i64, 0u32..1_000_000_000)
        .prop_filter_map("in range", |(s, n)| DateTime::from_timestamp(s, n))
        .boxed()
}

/// A resource version: mostly in the int32 range the protocol allows, sometimes any i64.
pub fn version() -> BoxedStrategy<i64> {
    prop_oneof![
        4 => i64::from(i32::MIN)..=i64::from(i32::MAX),
        1 => any::<i64>(),
    ]
    .boxed()
}

/// An int32-range resource version.
pub fn valid_version() -> BoxedStrategy<i64> {
    (i64::from(i32::MIN)..=i64::from(i32::MAX)).boxed()
}

/// A manifest that passes the agent-side validation: an object with a non-empty
/// `metadata.name` and no `generateName`.
pub fn manifest() -> BoxedStrategy<Value> {
    (nonempty_text(), text(), json_object(), json_value())
        .prop_map(|(name, ns, labels, spec)| {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "data": spec,
            })
        })
        .boxed()
}

/// A valid ManifestBundle of 1–3 manifests.
pub fn bundle() -> BoxedStrategy<ManifestBundle> {
    (vec(manifest(), 1..4), proptest::option::of(json_value()))
        .prop_map(|(manifests, executor)| ManifestBundle {
            manifests,
            executor: executor.filter(|e| !e.is_null()),
            ..ManifestBundle::default()
        })
        .boxed()
}

fn condition() -> BoxedStrategy<Condition> {
    (text(), prop_oneof![Just("True"), Just("False"), Just("Unknown")], any::<i64>(), text(), text())
        .prop_map(|(kind, status, observed_generation, reason, message)| Condition {
            kind,
            status: status.to_owned(),
            observed_generation,
            last_transition_time: "2024-09-13T06:11:10Z".to_owned(),
            reason,
            message,
        })
        .boxed()
}

fn field_value() -> BoxedStrategy<FieldValue> {
    prop_oneof![
        any::<i64>().prop_map(|integer| FieldValue::Integer { integer }),
        text().prop_map(|string| FieldValue::String { string }),
        any::<bool>().prop_map(|boolean| FieldValue::Boolean { boolean }),
        json_value().prop_map(|v| FieldValue::JsonRaw { json_raw: v.to_string() }),
    ]
    .boxed()
}

fn manifest_condition() -> BoxedStrategy<ManifestCondition> {
    (any::<i32>(), text(), text(), text(), vec((text(), field_value()), 0..3), vec(condition(), 0..2))
        .prop_map(|(ordinal, group, kind, name, values, conditions)| ManifestCondition {
            resource_meta: ManifestResourceMeta {
                ordinal,
                group,
                version: "v1".into(),
                kind,
                resource: "configmaps".into(),
                name,
                namespace: String::new(),
            },
            status_feedback: StatusFeedback {
                values: values
                    .into_iter()
                    .map(|(name, field_value)| FeedbackValue { name, field_value })
                    .collect(),
            },
            conditions,
        })
        .boxed()
}

/// A ManifestBundleStatus with arbitrary conditions and per-manifest statuses.
pub fn status() -> BoxedStrategy<ManifestBundleStatus> {
    (proptest::option::of(bundle()), vec(condition(), 0..3), vec(manifest_condition(), 0..3))
        .prop_map(|(manifest_bundle, conditions, resource_status)| ManifestBundleStatus {
            manifest_bundle,
            conditions,
            resource_status,
        })
        .boxed()
}

/// A spec action.
pub fn spec_action() -> BoxedStrategy<Action> {
    prop_oneof![
        Just(Action::Create),
        Just(Action::Update),
        Just(Action::Delete),
        Just(Action::ResyncResponse)
    ]
    .boxed()
}

/// The inputs of one spec event.
#[derive(Debug, Clone)]
pub struct SpecInput {
    /// CloudEvent `id`.
    pub id: String,
    /// CloudEvent `source`.
    pub source: String,
    /// CloudEvent `time`.
    pub time: DateTime<Utc>,
    /// `resourceid`.
    pub resource_id: String,
    /// `resourceversion`.
    pub version: i64,
    /// `clustername`.
    pub cluster: String,
    /// The action.
    pub action: Action,
    /// `metadata`.
    pub metadata: Option<Map<String, Value>>,
    /// The bundle (always sent unless deleting).
    pub bundle: Option<ManifestBundle>,
    /// `deletiontimestamp`.
    pub deletion: Option<DateTime<Utc>>,
}

impl SpecInput {
    /// The event, built with [`SpecEventBuilder`].
    pub fn build(&self) -> Event {
        let mut b = SpecEventBuilder::new(&self.source, &self.resource_id, self.version, &self.cluster)
            .action(self.action);
        if let Some(m) = &self.metadata {
            b = b.metadata(m.clone());
        }
        if let Some(bundle) = &self.bundle {
            b = b.bundle(bundle);
        }
        if let Some(t) = self.deletion {
            b = b.deletion(t);
        }
        let mut ev = b.build();
        ev.set_id(self.id.clone());
        ev.set_time(Some(self.time));
        ev
    }
}

/// Spec event inputs with `version` drawn from `versions`.
pub fn spec_input_with(versions: BoxedStrategy<i64>) -> BoxedStrategy<SpecInput> {
    (
        (nonempty_text(), nonempty_text(), time(), nonempty_text(), versions, text()),
        (spec_action(), proptest::option::of(json_object()), bundle(), proptest::option::of(time())),
    )
        .prop_map(|((id, source, time, resource_id, version, cluster), (action, metadata, bundle, del))| {
            let deleting = action == Action::Delete;
            SpecInput {
                id,
                source,
                time,
                resource_id,
                version,
                cluster,
                action,
                metadata,
                // A deletion carries no bundle, as the server sends it.
                bundle: (!deleting).then_some(bundle),
                deletion: if deleting { Some(del.unwrap_or(time)) } else { None },
            }
        })
        .boxed()
}

/// Spec event inputs (any i64 version, mostly in range).
pub fn spec_input() -> BoxedStrategy<SpecInput> {
    spec_input_with(version())
}

/// The inputs of one status event.
#[derive(Debug, Clone)]
pub struct StatusInput {
    /// CloudEvent `id`.
    pub id: String,
    /// CloudEvent `source` (the agent id).
    pub source: String,
    /// CloudEvent `time`.
    pub time: DateTime<Utc>,
    /// `resourceid`.
    pub resource_id: String,
    /// `resourceversion`.
    pub version: i64,
    /// `clustername`.
    pub cluster: String,
    /// `originalsource`.
    pub original_source: String,
    /// `sequenceid`.
    pub sequence_id: String,
    /// `statushash`.
    pub status_hash: String,
    /// `metadata`.
    pub metadata: Option<Map<String, Value>>,
    /// `update_request` or `resync_response`.
    pub action: Action,
    /// The payload.
    pub status: ManifestBundleStatus,
}

impl StatusInput {
    /// The event, built with [`StatusEventBuilder`].
    pub fn build(&self) -> Event {
        let mut ev = StatusEventBuilder {
            source: &self.source,
            resource_id: &self.resource_id,
            resource_version: self.version,
            cluster_name: &self.cluster,
            original_source: &self.original_source,
            sequence_id: &self.sequence_id,
            status_hash: &self.status_hash,
            metadata: self.metadata.as_ref(),
            action: self.action,
        }
        .build(&self.status);
        ev.set_id(self.id.clone());
        ev.set_time(Some(self.time));
        ev
    }
}

/// Status event inputs with `version` drawn from `versions`.
pub fn status_input_with(versions: BoxedStrategy<i64>) -> BoxedStrategy<StatusInput> {
    (
        (nonempty_text(), nonempty_text(), time(), nonempty_text(), versions, text()),
        (
            text(),
            (0..=i64::MAX).prop_map(|n| n.to_string()),
            text(),
            proptest::option::of(json_object()),
            prop_oneof![Just(Action::Update), Just(Action::ResyncResponse)],
            status(),
        ),
    )
        .prop_map(
            |(
                (id, source, time, resource_id, version, cluster),
                (original_source, sequence_id, status_hash, metadata, action, status),
            )| StatusInput {
                id,
                source,
                time,
                resource_id,
                version,
                cluster,
                original_source,
                sequence_id,
                status_hash,
                metadata,
                action,
                status,
            },
        )
        .boxed()
}

/// Status event inputs (any i64 version, mostly in range).
pub fn status_input() -> BoxedStrategy<StatusInput> {
    status_input_with(version())
}

/// A spec or a status event.
pub fn any_event() -> BoxedStrategy<Event> {
    prop_oneof![spec_input().prop_map(|s| s.build()), status_input().prop_map(|s| s.build())].boxed()
}

/// One edit of a wire message's `(name, value)` attribute list.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Remove the attribute at this index (modulo the length).
    Remove(usize),
    /// Replace the value of the attribute at this index.
    SetValue(usize, String),
    /// Rename the attribute at this index.
    Rename(usize, String),
    /// Add an attribute.
    Add(String, String),
}

/// An attribute name: the ones the bindings know, `ce-` names, or anything.
pub fn attribute_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "ce-subject",
            "ce-dataschema", "ce-datacontenttype", "ce-resourceid", "ce-resourceversion",
            "ce-clustername", "ce-originalsource", "ce-deletiontimestamp", "ce-metadata",
            "ce-sequenceid", "ce-statushash", "ce-logtracing", "ce-data", "Content-Type",
            "contenttype",
        ])
        .prop_map(str::to_owned),
        2 => "ce-[a-z0-9]{0,8}",
        1 => "ce-.{0,8}",
        1 => ".{0,12}",
    ]
    .boxed()
}

/// An attribute value: the interesting shapes (numbers, times, JSON, specversions) or anything.
pub fn attribute_value() -> BoxedStrategy<String> {
    prop_oneof![
        2 => text(),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "1.0", "0.3", "", "2024-03-01T10:00:00Z", "2024-03-01T10:00:00.123456789+02:00",
            "yesterday", "{}", "[1]", "{", "application/json", "application/cloudevents+json",
            "text/plain", "http://example.com/schema", "not a uri",
            "io.open-cluster-management.works.v1alpha1.manifestbundles.status.update_request",
            "io.open-cluster-management.works.v1alpha1.manifestbundles.spec.resync_request",
        ])
        .prop_map(str::to_owned),
        1 => json_value().prop_map(|v| v.to_string()),
    ]
    .boxed()
}

/// A list of edits.
pub fn edits() -> BoxedStrategy<Vec<Edit>> {
    vec(
        prop_oneof![
            any::<usize>().prop_map(Edit::Remove),
            (any::<usize>(), attribute_value()).prop_map(|(i, v)| Edit::SetValue(i, v)),
            (any::<usize>(), attribute_name()).prop_map(|(i, n)| Edit::Rename(i, n)),
            (attribute_name(), attribute_value()).prop_map(|(n, v)| Edit::Add(n, v)),
        ],
        0..4,
    )
    .boxed()
}

/// Applies `edits` to an attribute list.
pub fn apply_edits(attrs: &mut Vec<(String, String)>, edits: &[Edit]) {
    for e in edits {
        let n = attrs.len();
        match e {
            Edit::Remove(i) if n > 0 => {
                attrs.remove(i % n);
            }
            Edit::SetValue(i, v) if n > 0 => attrs[i % n].1 = v.clone(),
            Edit::Rename(i, k) if n > 0 => attrs[i % n].0 = k.clone(),
            Edit::Add(k, v) => attrs.push((k.clone(), v.clone())),
            _ => {}
        }
    }
}

/// A payload: the original, arbitrary bytes, or arbitrary JSON (floats included).
pub fn payload_edit() -> BoxedStrategy<Option<Vec<u8>>> {
    prop_oneof![
        4 => Just(None),
        1 => vec(any::<u8>(), 0..64).prop_map(Some),
        1 => any_json().prop_map(|v| Some(v.to_string().into_bytes())),
    ]
    .boxed()
}
