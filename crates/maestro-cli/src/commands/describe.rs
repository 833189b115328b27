//! `describe`: one work shown like `kubectl describe` — metadata, version, conditions, each
//! manifest with its manager, conditions and feedback, and an events timeline.
//!
//! The timeline is derived, not recorded: the server keeps no event history, so the events
//! are the `lastTransitionTime` of every work and manifest condition plus the work's
//! `created_at`, `updated_at` and `deleted_at`, sorted by time. A condition that flipped
//! several times therefore shows only its latest transition.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use maestro_api::merge::{MANAGERS_ANNOTATION, ManifestIdentity, managers};
use maestro_api::payload::{Condition, ManifestCondition, ManifestConfigOption};
use maestro_client::ResourceBundle;
use maestro_client::types::{describe_manifest, field_value_text};
use serde_json::Value;

use crate::cli::DescribeArgs;
use crate::commands::Context;
use crate::exit::CliError;
use crate::output::{age, print_table, structured, table};

/// Width of the `Key:` column of the header lines.
const KEY_WIDTH: usize = 16;

/// Runs `describe`: looks the work up as `get` does (by `--id`, or by the resource id of
/// `--name`/`--consumer` with a search fallback); `-o json|yaml` prints the REST object.
///
/// # Errors
/// Not found (exit 1), connection and server errors.
pub(crate) async fn run(ctx: &Context, args: &DescribeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rest = ctx.rest()?;
    let bundle = match (&args.id, &args.name, &args.consumer) {
        (Some(id), _, _) => rest.get_bundle(id).await?,
        (None, Some(name), Some(consumer)) => rest.get_bundle_by_name(&ctx.source_id, consumer, name).await?,
        _ => return Err(CliError::usage("pass --id, or --name with --consumer").into()),
    };
    if structured(out, ctx.output, &bundle)? {
        return Ok(());
    }
    let mut bundle = bundle;
    // The REST view carries no source; a work whose id derives from our source id is ours.
    if !bundle.extra.contains_key("source")
        && bundle.id == maestro_client::resource_id(&ctx.source_id, &bundle.consumer_name, &bundle.name)
    {
        bundle.extra.insert("source".into(), Value::String(ctx.source_id.clone()));
    }
    render(&bundle, Utc::now(), out).context("writing output")
}

/// Writes the description of `b`, with ages relative to `now`.
fn render(b: &ResourceBundle, now: DateTime<Utc>, out: &mut dyn Write) -> std::io::Result<()> {
    header(b, now, out)?;
    conditions(b, out)?;
    manifests(b, out)?;
    configs(b, out)?;
    events(b, out)
}

/// Writes `Key:` padded to [`KEY_WIDTH`] and the value; further lines of a multi-line value
/// are indented under the first.
fn field(out: &mut dyn Write, key: &str, value: &str) -> std::io::Result<()> {
    let mut lines = value.lines();
    writeln!(out, "{:<KEY_WIDTH$}{}", format!("{key}:"), lines.next().unwrap_or(""))?;
    for line in lines {
        writeln!(out, "{:KEY_WIDTH$}{line}", "")?;
    }
    Ok(())
}

/// A time as RFC 3339 (seconds, `Z`).
fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2024-03-01T10:00:00Z (5m ago)`, or `<unknown>`.
fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(|| "<unknown>".to_owned(), |t| format!("{} ({} ago)", time(t), age(Some(t), now)))
}

/// `key=value` lines of a string map, `<none>` when empty.
fn pairs(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "<none>".into();
    }
    map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("\n")
}

/// The work annotations except [`MANAGERS_ANNOTATION`] (shown per manifest instead).
fn annotations(b: &ResourceBundle) -> BTreeMap<String, String> {
    let Some(map) = b.metadata.get("annotations").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    map.iter()
        .filter(|(k, _)| k.as_str() != MANAGERS_ANNOTATION)
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect()
}

/// The header lines: identity, version, times, labels, annotations, delete option, status.
fn header(b: &ResourceBundle, now: DateTime<Utc>, out: &mut dyn Write) -> std::io::Result<()> {
    let namespace = b.metadata.get("namespace").and_then(Value::as_str).unwrap_or(&b.consumer_name);
    let source = b.extra.get("source").and_then(Value::as_str).unwrap_or("<another source>");
    field(out, "Name", &b.name)?;
    field(out, "Namespace", namespace)?;
    field(out, "Consumer", &b.consumer_name)?;
    field(out, "Source", source)?;
    field(out, "ID", &b.id)?;
    field(out, "Version", &b.version.to_string())?;
    field(out, "Created", &when(b.created_at, now))?;
    field(out, "Updated", &when(b.updated_at, now))?;
    let deleting =
        if b.is_deleting() { format!("requested {}", when(b.deleted_at, now)) } else { "no".into() };
    field(out, "Deleting", &deleting)?;
    field(out, "Labels", &pairs(&b.labels()))?;
    field(out, "Annotations", &pairs(&annotations(b)))?;
    let policy = b.delete_option.as_ref().and_then(|d| d.get("propagationPolicy")).and_then(Value::as_str);
    field(out, "Delete Option", policy.unwrap_or("Foreground (default)"))?;
    let status = match &b.status {
        None => "not reported yet".to_owned(),
        Some(s) => {
            let current = if b.status_is_current() { "current" } else { "stale" };
            format!("observed version {} ({current})", s.observed_version)
        }
    };
    field(out, "Status", &status)
}

/// Writes `t` with every line indented by `indent` spaces.
fn indented_table(out: &mut dyn Write, t: &comfy_table::Table, indent: usize) -> std::io::Result<()> {
    let mut buf = Vec::new();
    print_table(&mut buf, t)?;
    for line in String::from_utf8_lossy(&buf).lines() {
        writeln!(out, "{:indent$}{line}", "")?;
    }
    Ok(())
}

/// `2 (current)` / `1 (stale)`: the version a work condition was computed for against the
/// work's current version (the condition's `observedGeneration`, else the status's observed
/// version).
fn observed(c: &Condition, status_version: i64, current: i64) -> String {
    let v = if c.observed_generation != 0 { c.observed_generation } else { status_version };
    format!("{v} ({})", if v == current { "current" } else { "stale" })
}

/// `Conditions:` with the work conditions table.
fn conditions(b: &ResourceBundle, out: &mut dyn Write) -> std::io::Result<()> {
    let Some(status) = b.status.as_ref().filter(|s| !s.conditions.is_empty()) else {
        return field(out, "Conditions", "<none>");
    };
    writeln!(out, "Conditions:")?;
    let mut t = table(&["TYPE", "STATUS", "REASON", "OBSERVED", "MESSAGE"]);
    for c in &status.conditions {
        t.add_row(vec![
            c.kind.clone(),
            c.status.clone(),
            dash(&c.reason),
            observed(c, status.observed_version, b.version),
            dash(&c.message),
        ]);
    }
    indented_table(out, &t, 2)
}

/// `s`, or `-` when empty.
fn dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.to_owned() }
}

/// True when status entry `mc` reports on the manifest with identity `id`.
fn reports_on(mc: &ManifestCondition, id: &ManifestIdentity) -> bool {
    let m = &mc.resource_meta;
    m.kind == id.kind && m.name == id.name && m.namespace == id.namespace && m.group == id.group
}

/// `Manifests:`: every spec manifest with its identity, recorded manager, conditions and
/// feedback, then status entries that match no spec manifest (a stale status).
fn manifests(b: &ResourceBundle, out: &mut dyn Write) -> std::io::Result<()> {
    let recorded = managers(&b.metadata);
    let statuses: &[ManifestCondition] = b.status.as_ref().map_or(&[], |s| s.resource_status.as_slice());
    let mut matched = vec![false; statuses.len()];
    writeln!(out, "Manifests:")?;
    for (i, m) in b.manifests.iter().enumerate() {
        let id = match ManifestIdentity::of(m) {
            Ok(id) => id,
            Err(e) => {
                writeln!(out, "  [{i}] <invalid manifest: {e}>")?;
                continue;
            }
        };
        writeln!(out, "  [{i}] {id}")?;
        if let Some(manager) = recorded.get(&id.key()) {
            writeln!(out, "      Manager:     {manager}")?;
        }
        match statuses.iter().position(|mc| reports_on(mc, &id)) {
            Some(at) => {
                matched[at] = true;
                manifest_status(&statuses[at], out)?;
            }
            None => writeln!(out, "      Conditions:  <none reported>")?,
        }
    }
    for (mc, _) in statuses.iter().zip(&matched).filter(|(_, seen)| !**seen) {
        writeln!(out, "  [status only] {} (not in the spec)", describe_manifest(mc))?;
        manifest_status(mc, out)?;
    }
    Ok(())
}

/// The conditions and feedback values of one manifest.
fn manifest_status(mc: &ManifestCondition, out: &mut dyn Write) -> std::io::Result<()> {
    if mc.conditions.is_empty() {
        writeln!(out, "      Conditions:  <none reported>")?;
    } else {
        writeln!(out, "      Conditions:")?;
        let mut t = table(&["TYPE", "STATUS", "REASON", "MESSAGE"]);
        for c in &mc.conditions {
            t.add_row(vec![c.kind.clone(), c.status.clone(), dash(&c.reason), dash(&c.message)]);
        }
        indented_table(out, &t, 8)?;
    }
    if !mc.status_feedback.values.is_empty() {
        writeln!(out, "      Feedback:")?;
        let mut t = table(&["NAME", "VALUE"]);
        for v in &mc.status_feedback.values {
            t.add_row(vec![v.name.clone(), field_value_text(&v.field_value)]);
        }
        indented_table(out, &t, 8)?;
    }
    Ok(())
}

/// One line per manifest config: the resource it targets, its update strategy and feedback
/// rules (nothing when there are none).
fn configs(b: &ResourceBundle, out: &mut dyn Write) -> std::io::Result<()> {
    if b.manifest_configs.is_empty() {
        return Ok(());
    }
    writeln!(out, "Manifest Configs:")?;
    for raw in &b.manifest_configs {
        match serde_json::from_value::<ManifestConfigOption>(raw.clone()) {
            Ok(c) => writeln!(out, "  {}", config_text(&c))?,
            Err(_) => writeln!(out, "  {raw}")?,
        }
    }
    Ok(())
}

/// `deployments default/web (apps): update strategy ServerSideApply, feedback JSONPaths
/// (replicas=.status.replicas)`.
fn config_text(c: &ManifestConfigOption) -> String {
    let r = &c.resource_identifier;
    let group = if r.group.is_empty() { "core" } else { r.group.as_str() };
    let target = if r.namespace.is_empty() {
        format!("{} {} ({group})", r.resource, r.name)
    } else {
        format!("{} {}/{} ({group})", r.resource, r.namespace, r.name)
    };
    let strategy = c.update_strategy.as_ref().map_or_else(
        || "Update (default)".to_owned(),
        |u| serde_json::to_value(u.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
    );
    let rules: Vec<String> = c
        .feedback_rules
        .iter()
        .map(|rule| {
            let kind = serde_json::to_value(rule.kind).ok().and_then(|v| v.as_str().map(str::to_owned));
            let paths: Vec<String> =
                rule.json_paths.iter().map(|p| format!("{}={}", p.name, p.path)).collect();
            let kind = kind.unwrap_or_default();
            if paths.is_empty() { kind } else { format!("{kind} ({})", paths.join(", ")) }
        })
        .collect();
    let feedback = if rules.is_empty() { "none".to_owned() } else { rules.join("; ") };
    format!("{target}: update strategy {strategy}, feedback {feedback}")
}

/// One row of the events timeline.
struct Event {
    /// When it happened.
    at: DateTime<Utc>,
    /// `work` or the manifest (`Kind namespace/name`).
    object: String,
    /// `Created`, `Updated`, `DeletionRequested` or `<Condition>=<Status>`.
    event: String,
    /// The condition's reason (`-` for the lifecycle events).
    reason: String,
    /// The condition's message, or a lifecycle detail.
    message: String,
}

impl Event {
    /// The event of condition `c` of `object`, `None` without a parsable transition time.
    fn of_condition(object: &str, c: &Condition) -> Option<Event> {
        let at = DateTime::parse_from_rfc3339(&c.last_transition_time).ok()?.with_timezone(&Utc);
        Some(Event {
            at,
            object: object.to_owned(),
            event: format!("{}={}", c.kind, c.status),
            reason: dash(&c.reason),
            message: dash(&c.message),
        })
    }

    /// A lifecycle event of the work.
    fn lifecycle(at: DateTime<Utc>, event: &str, message: String) -> Event {
        Event { at, object: "work".into(), event: event.into(), reason: "-".into(), message }
    }
}

/// Every event of `b`, sorted by time (ties keep lifecycle, work, then manifest order).
fn timeline(b: &ResourceBundle) -> Vec<Event> {
    let mut events = Vec::new();
    if let Some(t) = b.created_at {
        events.push(Event::lifecycle(t, "Created", "-".into()));
    }
    if let Some(s) = &b.status {
        events.extend(s.conditions.iter().filter_map(|c| Event::of_condition("work", c)));
        for mc in &s.resource_status {
            let object = describe_manifest(mc);
            events.extend(mc.conditions.iter().filter_map(|c| Event::of_condition(&object, c)));
        }
    }
    if let Some(t) = b.updated_at.filter(|t| Some(*t) != b.created_at && b.version > 1) {
        events.push(Event::lifecycle(t, "Updated", format!("last change; now at version {}", b.version)));
    }
    if let Some(t) = b.deleted_at {
        events.push(Event::lifecycle(t, "DeletionRequested", "waiting for the agent to confirm".into()));
    }
    // Transition times have whole seconds: compare at that precision so that, within a
    // second, lifecycle events stay before the conditions they caused.
    events.sort_by_key(|e| e.at.timestamp());
    events
}

/// `Events:`: the timeline table (see the module documentation for where it comes from).
fn events(b: &ResourceBundle, out: &mut dyn Write) -> std::io::Result<()> {
    let events = timeline(b);
    if events.is_empty() {
        return field(out, "Events", "<none>");
    }
    writeln!(out, "Events:")?;
    let mut t = table(&["TIME", "OBJECT", "EVENT", "REASON", "MESSAGE"]);
    for e in events {
        t.add_row(vec![time(e.at), e.object, e.event, e.reason, e.message]);
    }
    indented_table(out, &t, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A version-2 work with a stale status, a manifest manager and a status-only entry.
    fn bundle() -> ResourceBundle {
        serde_json::from_value(json!({
            "id": "rid", "name": "web", "consumer_name": "c1", "version": 2,
            "created_at": "2024-03-01T10:00:00Z", "updated_at": "2024-03-01T10:05:00Z",
            "metadata": {"annotations": {MANAGERS_ANNOTATION: "{\"/v1/ConfigMap/default/a\":\"adapter\"}", "team": "x"}},
            "manifests": [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}},
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b", "namespace": "default"}}],
            "status": {"ObservedVersion": 1, "conditions": [
                {"type": "Applied", "status": "True", "lastTransitionTime": "2024-03-01T10:01:00Z"}],
              "resourceStatus": [
                {"resourceMeta": {"ordinal": 0, "version": "v1", "kind": "ConfigMap", "name": "a", "namespace": "default"},
                 "conditions": [{"type": "Available", "status": "False", "lastTransitionTime": "2024-03-01T10:00:30Z", "reason": "Waiting"}]},
                {"resourceMeta": {"ordinal": 1, "version": "v1", "kind": "ConfigMap", "name": "gone", "namespace": "default"},
                 "conditions": []}]}
        }))
        .expect("bundle")
    }

    /// The description of `b`.
    fn text(b: &ResourceBundle) -> String {
        let mut out = Vec::new();
        render(b, Utc::now(), &mut out).expect("render");
        String::from_utf8(out).expect("utf8")
    }

    /// The managers annotation becomes per-manifest `Manager:` lines; stale conditions and status-only entries are marked.
    #[test]
    fn managers_are_shown_per_manifest_not_as_annotations() {
        let out = text(&bundle());
        assert!(out.contains("Annotations:    team=x\n"), "{out}");
        assert!(!out.contains(MANAGERS_ANNOTATION), "{out}");
        assert!(out.contains("  [0] ConfigMap default/a (v1)\n      Manager:     adapter\n"), "{out}");
        assert!(out.contains("  [1] Secret default/b (v1)\n      Conditions:  <none reported>\n"), "{out}");
        assert!(out.contains("[status only] ConfigMap default/gone (not in the spec)"), "{out}");
        assert!(out.contains("1 (stale)"), "a condition of version 1 on version 2 is stale: {out}");
    }

    /// Events are ordered by time, whatever object they belong to.
    #[test]
    fn events_are_sorted_by_transition_time() {
        let kinds: Vec<String> = timeline(&bundle()).into_iter().map(|e| e.event).collect();
        assert_eq!(kinds, ["Created", "Available=False", "Applied=True", "Updated"]);
        let mut b = bundle();
        b.status = None;
        b.updated_at = b.created_at;
        assert_eq!(timeline(&b).len(), 1, "updated_at equal to created_at is no event");
    }
}
