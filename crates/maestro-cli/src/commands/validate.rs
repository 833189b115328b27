//! `validate`: checks a ManifestWork or manifest list offline and lists every problem found.
//!
//! The file is parsed as `apply` parses it ([`manifestwork::parse`]: YAML/JSON, the
//! ManifestWork shape, the work name, each manifest per
//! [`maestro_api::validate::validate_manifests`]), then the bundle is checked as the agent
//! checks it ([`maestro_api::validate::validate_bundle`]: the size limit). Since parsing stops
//! at the first problem, a lenient pass first checks every manifest on its own, duplicate
//! manifest identities ([`ManifestIdentity`]) and every `manifestConfigs` entry (a
//! `resourceIdentifier` with `resource` and `name`; an `updateStrategy.type` and feedback rule
//! types that [`maestro_api::payload`] knows; `jsonPaths` entries with `name` and `path`);
//! the parse then runs on the input without the entries already reported, so its own
//! findings (name, apiVersion, spec shape…) are listed too.

use std::collections::HashMap;
use std::io::Write;

use maestro_api::merge::ManifestIdentity;
use maestro_api::payload::{FeedbackRuleType, UpdateStrategyType};
use maestro_api::validate::{validate_bundle, validate_manifests};
use maestro_client::{ClientError, ManifestWorkInput, manifestwork};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cli::ValidateArgs;
use crate::commands::Context;
use crate::exit::CliError;
use crate::output::structured;

/// The `ManifestWork` kind.
const MANIFESTWORK: &str = "ManifestWork";

/// What `validate` found (also the `-o json|yaml` output).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
struct Report {
    /// The file as given (`<stdin>` for `-`).
    file: String,
    /// True when no problem was found.
    valid: bool,
    /// The work name, when one could be determined.
    name: Option<String>,
    /// The number of manifests found.
    manifests: usize,
    /// Every problem found.
    errors: Vec<String>,
}

/// Runs `validate`: prints `<file>: valid ManifestWork <name> with N manifest(s)`, or the
/// problems one per line.
///
/// # Errors
/// A usage error (exit 2) when the file is unreadable or invalid, or `--consumer` does not
/// exist; connection and server errors of the `--consumer` check.
pub(crate) async fn run(ctx: &Context, args: &ValidateArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (file, text) = read_input(&args.manifest_file)?;
    let mut report = check(&file, &text, args.name.as_deref());
    if let Some(consumer) = &args.consumer {
        match ctx.rest()?.get_consumer(consumer).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => report.errors.push(format!("consumer {consumer:?} does not exist")),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("checking consumer {consumer:?}"))),
        }
    }
    report.valid = report.errors.is_empty();
    if !structured(out, ctx.output, &report)? {
        print_report(&report, out)?;
    }
    if report.valid {
        return Ok(());
    }
    Err(CliError::usage(format!("{file}: {} problem(s) found", report.errors.len())).into())
}

/// The file's name for messages and its text (`-` reads stdin).
fn read_input(path: &str) -> anyhow::Result<(String, String)> {
    let (file, text) = if path == "-" {
        ("<stdin>".to_owned(), std::io::read_to_string(std::io::stdin()))
    } else {
        (path.to_owned(), std::fs::read_to_string(path))
    };
    let text = text.map_err(|e| CliError::usage(format!("{file}: cannot read: {e}")))?;
    Ok((file, text))
}

/// Writes the human-readable report.
fn print_report(r: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    if r.valid {
        let name = r.name.as_deref().unwrap_or("<unnamed>");
        return writeln!(out, "{}: valid ManifestWork {name} with {} manifest(s)", r.file, r.manifests);
    }
    writeln!(out, "{}: invalid, {} problem(s):", r.file, r.errors.len())?;
    for e in &r.errors {
        writeln!(out, "  - {e}")?;
    }
    Ok(())
}

/// The manifests of the input, each with where it came from, and the ManifestWork document
/// when the input is one.
struct Shape {
    /// `(origin, manifest)` in order.
    manifests: Vec<(String, Value)>,
    /// The ManifestWork document, `None` for a manifest list.
    work: Option<Value>,
}

/// Checks `text` read from `file`; `name` overrides the work name.
fn check(file: &str, text: &str, name: Option<&str>) -> Report {
    let mut report = Report { file: file.to_owned(), ..Default::default() };
    let shape = documents(text).and_then(shape);
    let Some(shape) = shape else {
        // Syntax errors and a ManifestWork among other documents: the parse says it best.
        record_parse(&mut report, manifestwork::parse(file, text, name));
        return report;
    };
    report.manifests = shape.manifests.len();
    let (good, mut errors) = check_manifests(&shape.manifests);
    let configs = shape.work.as_ref().and_then(|w| w.pointer("/spec/manifestConfigs"));
    let config_errors = configs.map(check_configs).unwrap_or_default();
    let bad_configs = !config_errors.is_empty();
    errors.extend(config_errors);
    if errors.is_empty() {
        record_parse(&mut report, manifestwork::parse(file, text, name));
    } else {
        let input = without_reported(&shape, good, bad_configs).to_string();
        record_parse(&mut report, manifestwork::parse(file, &input, name));
        report.errors.splice(0..0, errors);
    }
    report
}

/// Adds the parse result to `report`: the name and size check when it parsed, else the
/// parse error (without the file name, which the report names already).
fn record_parse(report: &mut Report, parsed: maestro_client::Result<ManifestWorkInput>) {
    match parsed {
        Ok(work) => {
            if let Err(e) = validate_bundle(&work.bundle) {
                report.errors.push(e.to_string());
            }
            report.name = Some(work.name);
        }
        Err(ClientError::ManifestFile { message, .. }) => report.errors.push(message),
        Err(e) => report.errors.push(e.to_string()),
    }
}

/// The non-empty YAML/JSON documents of `text`; `None` when it does not parse.
fn documents(text: &str) -> Option<Vec<(usize, Value)>> {
    let trimmed = text.trim_start();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && let Ok(v) = serde_json::from_str::<Value>(text)
    {
        return Some(vec![(1, v)]);
    }
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let yaml = serde_yaml_ng::Value::deserialize(de).ok()?;
        if !yaml.is_null() {
            docs.push((i + 1, serde_json::to_value(&yaml).ok()?));
        }
    }
    Some(docs)
}

/// True for a ManifestWork document.
fn is_manifestwork(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some(MANIFESTWORK)
}

/// The manifests of the documents, named as the parse names them (`spec.workload.manifests[i]`,
/// `document N` or `document N, item M`); `None` for a ManifestWork among other documents.
fn shape(docs: Vec<(usize, Value)>) -> Option<Shape> {
    if let [(_, doc)] = docs.as_slice()
        && is_manifestwork(doc)
    {
        let listed = doc.pointer("/spec/workload/manifests").and_then(Value::as_array);
        let manifests = listed
            .map(|ms| {
                ms.iter()
                    .enumerate()
                    .map(|(i, m)| (format!("spec.workload.manifests[{i}]"), m.clone()))
                    .collect()
            })
            .unwrap_or_default();
        return Some(Shape { manifests, work: Some(doc.clone()) });
    }
    if docs.iter().any(|(_, d)| is_manifestwork(d)) {
        return None;
    }
    let mut manifests = Vec::new();
    for (n, doc) in docs {
        let items = match &doc {
            Value::Array(items) => Some(items.clone()),
            Value::Object(o) if o.get("kind").and_then(Value::as_str) == Some("List") => {
                Some(o.get("items").and_then(Value::as_array).cloned().unwrap_or_default())
            }
            _ => None,
        };
        match items {
            Some(items) => {
                manifests.extend(
                    items.into_iter().enumerate().map(|(j, m)| (format!("document {n}, item {}", j + 1), m)),
                );
            }
            None => manifests.push((format!("document {n}"), doc)),
        }
    }
    Some(Shape { manifests, work: None })
}

/// Checks each manifest alone, then identities for duplicates. Returns whether each
/// manifest passed, and the problems.
fn check_manifests(manifests: &[(String, Value)]) -> (Vec<bool>, Vec<String>) {
    let mut good = Vec::with_capacity(manifests.len());
    let mut errors = Vec::new();
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (origin, m) in manifests {
        let problem = if is_manifestwork(m) {
            Some("a ManifestWork cannot be nested in a manifest list".to_owned())
        } else {
            validate_manifests(std::slice::from_ref(m)).err().map(|e| strip_index(&e))
        };
        let duplicate = match (&problem, ManifestIdentity::of(m)) {
            (None, Ok(id)) => seen
                .insert(id.key(), origin)
                .map(|first| format!("duplicate manifest {id}, first at {first}")),
            _ => None,
        };
        let problem = problem.or(duplicate);
        good.push(problem.is_none());
        errors.extend(problem.map(|p| format!("{origin}: {p}")));
    }
    (good, errors)
}

/// `invalid resource bundle: manifest 0: kind is required` → `kind is required`.
fn strip_index(e: &maestro_api::Error) -> String {
    let text = match e {
        maestro_api::Error::InvalidBundle(m) => m.clone(),
        other => other.to_string(),
    };
    match text.split_once(": ") {
        Some((prefix, rest)) if prefix.starts_with("manifest ") => rest.to_owned(),
        _ => text,
    }
}

/// The problems of `spec.manifestConfigs`.
fn check_configs(configs: &Value) -> Vec<String> {
    match configs {
        Value::Null => Vec::new(),
        Value::Array(list) => list
            .iter()
            .enumerate()
            .flat_map(|(i, c)| check_config(&format!("spec.manifestConfigs[{i}]"), c))
            .collect(),
        other => vec![format!("spec.manifestConfigs must be a list, got {other}")],
    }
}

/// True when `v` at `key` is a non-empty string.
fn has_text(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// The problems of one manifest config at `at`.
fn check_config(at: &str, c: &Value) -> Vec<String> {
    if !c.is_object() {
        return vec![format!("{at}: must be an object, got {c}")];
    }
    let mut errors = Vec::new();
    match c.get("resourceIdentifier").filter(|r| r.is_object()) {
        None => errors.push(format!("{at}.resourceIdentifier is required")),
        Some(r) => {
            for key in ["resource", "name"] {
                if !has_text(r, key) {
                    errors.push(format!("{at}.resourceIdentifier.{key} is required"));
                }
            }
        }
    }
    if let Some(t) = c.pointer("/updateStrategy/type").filter(|t| !t.is_null())
        && let Err(e) = serde_json::from_value::<UpdateStrategyType>(t.clone())
    {
        errors.push(format!("{at}.updateStrategy.type: {e}"));
    }
    match c.get("feedbackRules") {
        None | Some(Value::Null) => {}
        Some(Value::Array(rules)) => {
            for (j, rule) in rules.iter().enumerate() {
                errors.extend(check_feedback_rule(&format!("{at}.feedbackRules[{j}]"), rule));
            }
        }
        Some(other) => errors.push(format!("{at}.feedbackRules must be a list, got {other}")),
    }
    errors
}

/// The problems of one feedback rule at `at`: a known type and, for `JSONPaths`, a non-empty
/// `jsonPaths` whose entries have a `name` and a `path`.
fn check_feedback_rule(at: &str, rule: &Value) -> Vec<String> {
    let kind = match rule.get("type") {
        None | Some(Value::Null) => {
            return vec![format!("{at}.type is required (WellKnownStatus or JSONPaths)")];
        }
        Some(t) => match serde_json::from_value::<FeedbackRuleType>(t.clone()) {
            Ok(kind) => kind,
            Err(e) => return vec![format!("{at}.type: {e}")],
        },
    };
    if kind != FeedbackRuleType::JsonPaths {
        return Vec::new();
    }
    let paths = rule.get("jsonPaths").and_then(Value::as_array).filter(|p| !p.is_empty());
    let Some(paths) = paths else {
        return vec![format!("{at}.jsonPaths is required for type JSONPaths")];
    };
    let mut errors = Vec::new();
    for (k, p) in paths.iter().enumerate() {
        for key in ["name", "path"] {
            if !has_text(p, key) {
                errors.push(format!("{at}.jsonPaths[{k}].{key} is required"));
            }
        }
    }
    errors
}

/// A placeholder manifest standing in when every manifest was reported, so that the parse
/// checks the rest of the input instead of reporting an empty work.
fn placeholder() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "placeholder"}})
}

/// The input as JSON without the manifests already reported (and without the manifest
/// configs when they had problems).
fn without_reported(shape: &Shape, good: Vec<bool>, drop_configs: bool) -> Value {
    let mut kept: Vec<Value> =
        shape.manifests.iter().zip(good).filter(|(_, ok)| *ok).map(|((_, m), _)| m.clone()).collect();
    if kept.is_empty() && !shape.manifests.is_empty() {
        kept.push(placeholder());
    }
    let Some(work) = &shape.work else { return Value::Array(kept) };
    let mut work = work.clone();
    if let Some(spec) = work.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(workload) = spec.get_mut("workload").and_then(Value::as_object_mut) {
            workload.insert("manifests".into(), Value::Array(kept));
        }
        if drop_configs {
            spec.remove("manifestConfigs");
        }
    }
    work
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "apiVersion: work.open-cluster-management.io/v1\nkind: ManifestWork\nmetadata: {name: web}\n";

    /// The problems `validate` finds in `text`.
    fn errors(text: &str) -> Vec<String> {
        check("w.yaml", text, None).errors
    }

    /// A valid work reports its name and manifest count.
    #[test]
    fn a_valid_work_has_a_name_and_a_count() {
        let text = format!(
            "{HEAD}spec: {{workload: {{manifests: [{{apiVersion: v1, kind: ConfigMap, metadata: {{name: a}}}}]}}}}\n"
        );
        let r = check("w.yaml", &text, None);
        assert_eq!((r.errors.len(), r.name.as_deref(), r.manifests), (0, Some("web"), 1), "{r:?}");
    }

    /// Every manifest and manifest config problem is listed, in order.
    #[test]
    fn every_problem_is_listed() {
        let spec = r"spec:
  workload:
    manifests:
    - {kind: ConfigMap, metadata: {name: a}}
    - {apiVersion: v1, kind: Secret, metadata: {name: b}}
    - {apiVersion: v1, kind: Secret, metadata: {name: b}}
  manifestConfigs:
  - resourceIdentifier: {resource: secrets}
    updateStrategy: {type: Replace}
    feedbackRules: [{type: JSONPaths, jsonPaths: [{name: x}]}, {type: Magic}]
";
        let text = format!("{HEAD}{spec}");
        let errs = errors(&text);
        assert_eq!(errs.len(), 6, "{errs:#?}");
        assert_eq!(errs[0], "spec.workload.manifests[0]: apiVersion is required");
        assert_eq!(
            errs[1],
            "spec.workload.manifests[2]: duplicate manifest Secret b (v1), first at spec.workload.manifests[1]"
        );
        assert_eq!(errs[2], "spec.manifestConfigs[0].resourceIdentifier.name is required");
        assert!(
            errs[3].starts_with("spec.manifestConfigs[0].updateStrategy.type: unknown variant `Replace`"),
            "{errs:#?}"
        );
        assert_eq!(errs[4], "spec.manifestConfigs[0].feedbackRules[0].jsonPaths[0].path is required");
        assert!(
            errs[5].starts_with("spec.manifestConfigs[0].feedbackRules[1].type: unknown variant `Magic`"),
            "{errs:#?}"
        );
    }

    /// Problems only the parse finds are listed after the manifest problems; bad YAML is one problem.
    #[test]
    fn parse_problems_are_listed_with_manifest_problems() {
        let text = "apiVersion: work.open-cluster-management.io/v1\nkind: ManifestWork\nmetadata: {}\n\
                    spec: {workload: {manifests: [{apiVersion: v1, kind: ConfigMap, metadata: {}}]}}\n";
        let errs = errors(text);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert_eq!(errs[0], "spec.workload.manifests[0]: metadata.name is required");
        assert!(errs[1].contains("no metadata.name"), "{errs:#?}");
        let errs = errors("a: [b\n");
        assert!(errs.len() == 1 && errs[0].contains("invalid YAML"), "{errs:#?}");
    }

    /// Manifest list problems name the document; a list needs `--name`.
    #[test]
    fn manifest_lists_need_a_name_and_name_their_documents() {
        let list =
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: Secret\nmetadata: {name: b}\n";
        let errs = errors(list);
        assert_eq!(errs[0], "document 2: apiVersion is required");
        assert!(errs[1].contains("pass --name"), "{errs:#?}");
        let r = check("l.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n", Some("web"));
        assert_eq!((r.errors.len(), r.name.as_deref()), (0, Some("web")));
    }
}
