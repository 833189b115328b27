//! Status feedback (docs/protocol.md §8.5): `WellKnownStatus` fields per kind and `JSONPaths`
//! rules, evaluated against the live object.
//!
//! Paths are kubectl-style JSONPath (`.status.readyReplicas`, `{.status.phase}`), converted to
//! RFC 9535 (`$.status.readyReplicas`) for `serde_json_path`. Typing: an integer ⇒ `Integer`,
//! a string ⇒ `String`, a boolean ⇒ `Boolean`; anything else (objects, arrays, floats, or
//! several matches) ⇒ `JsonRaw` limited to a configurable size; no match ⇒ no value.

use maestro_api::payload::{FeedbackRule, FeedbackRuleType, FeedbackValue, FieldValue};
use serde_json::Value;

/// Why one feedback path gives no value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedbackError {
    /// The path is not a JSONPath (after [`to_rfc9535`]).
    #[error("invalid JSONPath {path:?}: {source}")]
    InvalidPath {
        /// The path as configured.
        path: String,
        /// The parser's error.
        #[source]
        source: serde_json_path::ParseError,
    },
    /// The `JsonRaw` value is over the configured limit.
    #[error("the length of the raw JSON of {path:?} ({size} bytes) is larger than the limit {limit}")]
    RawTooLarge {
        /// The path as configured.
        path: String,
        /// The size of the raw JSON in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
}

/// The well-known status fields of a kind: `(name, kubectl path)` (docs/protocol.md §8.5).
pub fn well_known_paths(group: &str, kind: &str) -> &'static [(&'static str, &'static str)] {
    match (group, kind) {
        ("apps", "Deployment") => &[
            ("ReadyReplicas", ".status.readyReplicas"),
            ("Replicas", ".status.replicas"),
            ("AvailableReplicas", ".status.availableReplicas"),
        ],
        ("apps", "DaemonSet") => &[
            ("NumberReady", ".status.numberReady"),
            ("DesiredNumberScheduled", ".status.desiredNumberScheduled"),
            ("NumberAvailable", ".status.numberAvailable"),
        ],
        ("batch", "Job") => &[
            ("JobComplete", r#".status.conditions[?(@.type=="Complete")].status"#),
            ("JobSucceeded", ".status.succeeded"),
        ],
        ("", "Pod") => {
            &[("PodReady", r#".status.conditions[?(@.type=="Ready")].status"#), ("PodPhase", ".status.phase")]
        }
        _ => &[],
    }
}

/// Converts a kubectl-style JSONPath to RFC 9535: strips one pair of surrounding braces and
/// prefixes the root `$`.
pub fn to_rfc9535(path: &str) -> String {
    let p = path.trim();
    let p = p.strip_prefix('{').and_then(|s| s.strip_suffix('}')).unwrap_or(p).trim();
    if p.starts_with('$') {
        p.to_owned()
    } else if p.starts_with('.') || p.starts_with('[') {
        format!("${p}")
    } else {
        format!("$.{p}")
    }
}

/// Evaluates one path against `object`; `Ok(None)` when nothing matches.
///
/// # Errors
/// [`FeedbackError::InvalidPath`] when the path does not parse; [`FeedbackError::RawTooLarge`]
/// when a `JsonRaw` value exceeds `max_raw` bytes.
pub fn evaluate_path(
    object: &Value,
    path: &str,
    max_raw: usize,
) -> Result<Option<FieldValue>, FeedbackError> {
    let compiled = serde_json_path::JsonPath::parse(&to_rfc9535(path))
        .map_err(|source| FeedbackError::InvalidPath { path: path.to_owned(), source })?;
    let nodes = compiled.query(object).all();
    let value = match nodes.as_slice() {
        [] | [Value::Null] => return Ok(None),
        [one] => (*one).clone(),
        many => Value::Array(many.iter().map(|v| (*v).clone()).collect()),
    };
    Ok(Some(match value {
        Value::Number(n) if n.is_i64() => FieldValue::Integer { integer: n.as_i64().unwrap_or_default() },
        Value::String(s) => FieldValue::String { string: s },
        Value::Bool(b) => FieldValue::Boolean { boolean: b },
        other => {
            let raw = other.to_string();
            if raw.len() > max_raw {
                return Err(FeedbackError::RawTooLarge {
                    path: path.to_owned(),
                    size: raw.len(),
                    limit: max_raw,
                });
            }
            FieldValue::JsonRaw { json_raw: raw }
        }
    }))
}

/// Evaluates `rules` against the live object of kind `group`/`kind` served in `version`.
/// Returns the values found and, when some rule failed, the messages of the
/// [`FeedbackError`]s joined with `; ` (the `StatusFeedbackSynced` condition message, so the
/// values of the rules that worked are still returned).
pub fn evaluate(
    rules: &[FeedbackRule],
    object: &Value,
    group: &str,
    kind: &str,
    version: &str,
    max_raw: usize,
) -> (Vec<FeedbackValue>, Option<String>) {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    let mut push = |name: &str, path: &str| match evaluate_path(object, path, max_raw) {
        Ok(Some(field_value)) => values.push(FeedbackValue { name: name.to_owned(), field_value }),
        Ok(None) => {}
        Err(e) => errors.push(e.to_string()),
    };
    for rule in rules {
        match rule.kind {
            FeedbackRuleType::WellKnownStatus => {
                for (name, path) in well_known_paths(group, kind) {
                    push(name, path);
                }
            }
            FeedbackRuleType::JsonPaths => {
                for jp in &rule.json_paths {
                    if jp.version.as_deref().is_some_and(|v| !v.is_empty() && v != version) {
                        continue;
                    }
                    push(&jp.name, &jp.path);
                }
            }
        }
    }
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    (values, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use maestro_api::payload::JsonPath;
    use serde_json::json;

    fn obj() -> Value {
        json!({"apiVersion":"batch/v1","kind":"Job","status":{"succeeded":1,"ratio":0.5,"phase":"Done","ok":true,
            "conditions":[{"type":"Complete","status":"True"},{"type":"Failed","status":"False"}]}})
    }

    #[test]
    fn converts_kubectl_paths() {
        assert_eq!(to_rfc9535(".status.readyReplicas"), "$.status.readyReplicas");
        assert_eq!(to_rfc9535("{.status.phase}"), "$.status.phase");
        assert_eq!(to_rfc9535("status"), "$.status");
        assert_eq!(to_rfc9535("$.a"), "$.a");
    }

    #[test]
    fn types_values() {
        let o = obj();
        let v = |p| evaluate_path(&o, p, 1024).expect("valid");
        assert_eq!(v(".status.succeeded"), Some(FieldValue::Integer { integer: 1 }));
        assert_eq!(v(".status.phase"), Some(FieldValue::String { string: "Done".into() }));
        assert_eq!(v(".status.ok"), Some(FieldValue::Boolean { boolean: true }));
        assert_eq!(v(".status.ratio"), Some(FieldValue::JsonRaw { json_raw: "0.5".into() }));
        assert_eq!(v(".status.missing"), None);
        assert_eq!(
            v(".status.conditions[*].type"),
            Some(FieldValue::JsonRaw { json_raw: r#"["Complete","Failed"]"#.into() })
        );
        let err = evaluate_path(&o, ".status.conditions", 10).expect_err("raw limit");
        assert!(matches!(err, FeedbackError::RawTooLarge { limit: 10, .. }), "{err}");
        assert!(err.to_string().contains("larger than the limit 10"), "{err}");
        let err = evaluate_path(&o, ".status[", 10).expect_err("not a path");
        assert!(matches!(err, FeedbackError::InvalidPath { .. }), "{err}");
        assert!(std::error::Error::source(&err).is_some(), "the parser's error is kept");
    }

    #[test]
    fn rules() {
        let rules = vec![
            FeedbackRule { kind: FeedbackRuleType::WellKnownStatus, json_paths: vec![] },
            FeedbackRule {
                kind: FeedbackRuleType::JsonPaths,
                json_paths: vec![
                    JsonPath { name: "p".into(), version: Some("v2".into()), path: ".status.phase".into() },
                    JsonPath { name: "q".into(), version: Some("v1".into()), path: ".status.phase".into() },
                ],
            },
        ];
        let (values, err) = evaluate(&rules, &obj(), "batch", "Job", "v1", 1024);
        assert!(err.is_none());
        let names: Vec<_> = values.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["JobComplete", "JobSucceeded", "q"]);
        assert_eq!(values[0].field_value, FieldValue::String { string: "True".into() });
    }
}
