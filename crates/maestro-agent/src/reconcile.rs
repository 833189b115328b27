//! Reconcile: apply a work's manifests with their update strategies, garbage-collect resources
//! that left the bundle, read every resource back for conditions and feedback, and store the
//! new status (docs/protocol.md §8.2–§8.5). One work is reconciled by one worker at a time.

use std::sync::Arc;
use std::time::Duration;

use maestro_api::payload::{
    FeedbackRule, ManifestBundle, ManifestBundleStatus, ManifestCondition, ManifestConfigOption,
    ManifestResourceMeta, StatusFeedback, UpdateStrategyType,
};
use maestro_transport::retry;
use serde_json::Value;
use tracing::Instrument;

use crate::agent::Shared;
use crate::cluster::{ApplyMode, ObjectRef};
use crate::conditions::{self as cond, carry_over, set_condition};
use crate::config::DEFAULT_FIELD_MANAGER;
use crate::error::ClusterError;
use crate::executor::{Executor, ExecutorError};
use crate::ownership::{Owner, owned_by_policy, uid_of};
use crate::work::AppliedResource;
use crate::{delete, feedback};

/// What a reconcile works from: a copy of the work taken under the store lock.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) uid: String,
    pub(crate) name: String,
    pub(crate) generation: i64,
    pub(crate) spec_rev: u64,
    pub(crate) bundle: Option<Arc<ManifestBundle>>,
    pub(crate) deleting: bool,
    pub(crate) needs_apply: bool,
    pub(crate) status: Option<ManifestBundleStatus>,
    pub(crate) applied: Vec<AppliedResource>,
    /// The work's trace context ([`crate::work::Work::trace`]).
    pub(crate) trace: Option<maestro_transport::trace::TraceContext>,
    /// Orphaned by the fleet-wipe guard, restored or waiting for its eviction: neither
    /// applied nor deleted ([`crate::work::Work::on_hold`]).
    pub(crate) orphaned: bool,
}

/// One manifest with its resolved target and configuration.
#[derive(Debug)]
pub(crate) struct Resolved {
    meta: ManifestResourceMeta,
    manifest: Value,
    pub(crate) object: Result<ObjectRef, String>,
    strategy: Option<maestro_api::payload::UpdateStrategy>,
    feedback: Vec<FeedbackRule>,
    /// `feedbackScrapeType: Watch` (docs/protocol.md §8.5): the first matching config that
    /// sets a scrape type says `Watch`.
    pub(crate) watch: bool,
}

/// The outcome of applying one manifest.
#[derive(Debug, Default)]
struct Applied {
    error: Option<String>,
    /// The error is about the manifest's `ignoreFields` (its own `Applied` reason).
    ignore_fields_error: bool,
    retry: bool,
    /// The earliest retry, when sooner is pointless (an executor refusal: 60 s, as OCM).
    retry_after: Option<Duration>,
    live: Option<Value>,
    resource: Option<AppliedResource>,
    /// Not written because it is `Complete`: what was tracked for its target is kept.
    kept: bool,
}

impl Applied {
    /// The manifest's `Applied` condition for this outcome.
    fn condition(&self, generation: i64) -> maestro_api::payload::Condition {
        match &self.error {
            Some(e) if self.ignore_fields_error => cond::manifest_ignore_fields_failed(e, generation),
            error => cond::manifest_applied(error.as_deref(), generation),
        }
    }

    /// A failed apply; `retry` asks for another attempt later.
    fn failed(error: impl ToString, retry: bool) -> Self {
        Applied { error: Some(error.to_string()), retry, ..Default::default() }
    }
}

/// Runs reconcile for queued works forever. Yields to the runtime after each work: a sync of
/// thousands of unchanged works never awaits anything, and would otherwise hold a runtime
/// thread for its whole length, starving the transport (and, in one process, other agents).
pub(crate) async fn run_worker(shared: Arc<Shared>) {
    while let Some(id) = shared.cancel.run_until_cancelled(shared.queue.get()).await {
        let retry = reconcile(&shared, &id).await;
        shared.queue.done(&id);
        if let Some(at_least) = retry {
            schedule_retry(&shared, &id, at_least);
        }
        tokio::task::yield_now().await;
    }
}

/// Queues `id` again after its backoff delay, and no sooner than `at_least`.
fn schedule_retry(shared: &Arc<Shared>, id: &str, at_least: Duration) {
    let attempts = shared.works().get(id).map(|w| w.attempts).unwrap_or_default();
    let delay = shared.config.retry_delay_at(attempts.saturating_sub(1)).max(at_least);
    let (cancel, weak, id) = (shared.cancel.clone(), Arc::downgrade(shared), id.to_owned());
    shared.tasks.spawn(async move {
        if retry::pause(delay, &cancel).await
            && let Some(shared) = weak.upgrade()
        {
            shared.queue.add(&id);
        }
    });
}

fn snapshot(shared: &Shared, id: &str) -> Option<Snapshot> {
    let works = shared.works();
    let w = works.get(id).filter(|w| !w.finalized)?;
    Some(Snapshot {
        uid: w.uid.clone(),
        name: w.name.clone(),
        generation: w.generation,
        spec_rev: w.spec_rev,
        bundle: w.bundle.clone(),
        deleting: w.deleting,
        needs_apply: w.needs_apply,
        status: w.status.clone(),
        applied: w.applied.clone(),
        trace: w.trace.clone(),
        orphaned: w.on_hold(),
    })
}

/// Reconciles one work. Returns `Some(at_least)` when it must be retried later, no sooner
/// than `at_least`.
async fn reconcile(shared: &Arc<Shared>, id: &str) -> Option<Duration> {
    let snap = snapshot(shared, id)?;
    if snap.orphaned {
        return None; // kept as it is (docs/operations.md §3.5, docs/protocol.md §8.3)
    }
    if snap.deleting {
        return delete::finalize(shared, &snap).await.then_some(Duration::ZERO);
    }
    let bundle = snap.bundle.clone()?;
    let resolved = resolve_all(shared, &bundle).await;
    let mut retry = false;
    let mut at_least = Duration::ZERO;
    let mut new_applied = None;
    let applied = if snap.needs_apply {
        let started = std::time::Instant::now();
        let span = tracing::info_span!("work apply", resource = %snap.uid, generation = snap.generation, trace_id = tracing::field::Empty);
        if let Some(cx) = &snap.trace {
            cx.link(&span);
        }
        maestro_transport::trace::record_trace_id(&span);
        let results = apply_all(shared, &snap, &bundle, &resolved).instrument(span.clone()).await;
        crate::metrics::applied(started.elapsed());
        // The statuses of this apply continue its trace.
        if let Some(cx) = maestro_transport::trace::TraceContext::of_span(&span)
            && let Some(w) = shared.works().get_mut(&snap.uid)
        {
            w.trace = Some(cx);
        }
        retry = results.iter().any(|r| r.retry);
        at_least = results.iter().filter_map(|r| r.retry_after).max().unwrap_or_default();
        let (list, gc_retry) = track_and_collect(shared, &snap, &resolved, &results).await;
        retry |= gc_retry;
        new_applied = Some(list);
        Some(results)
    } else {
        None
    };
    crate::watch::track(shared, &snap.uid, &resolved);
    let status = build_status(shared, &snap, &resolved, applied.as_deref()).await;
    if let Some(list) = &new_applied {
        // Before the status goes out: whoever sees the status finds the record written.
        crate::eviction::record(shared, &snap.uid, Some(list), Some(snap.generation)).await;
    }
    commit(shared, &snap, status, new_applied, applied.is_some(), retry).then_some(at_least)
}

fn commit(
    shared: &Shared,
    snap: &Snapshot,
    status: ManifestBundleStatus,
    new_applied: Option<Vec<AppliedResource>>,
    did_apply: bool,
    retry: bool,
) -> bool {
    let mut works = shared.works();
    let Some(w) = works.get_mut(&snap.uid) else { return false };
    if let Some(list) = new_applied {
        w.applied = list;
    }
    if w.spec_rev != snap.spec_rev || w.deleting {
        return false; // changed meanwhile: queued again by the intake
    }
    if w.orphaned.is_some() && !snap.orphaned {
        // Orphaned meanwhile: its status says so now, and a status built from the snapshot
        // would drop that condition (docs/operations.md §3.5).
        return false;
    }
    if retry {
        w.attempts = w.attempts.saturating_add(1);
    } else if did_apply {
        w.needs_apply = false;
        w.attempts = 0;
    }
    let hash = maestro_api::statushash::status_hash(&status);
    if w.status_hash.as_deref() != Some(hash.as_str()) {
        tracing::debug!(resource_id = %w.uid, generation = w.generation, %hash, "status changed");
        w.status = Some(status);
        w.status_hash = Some(hash);
        let id = w.uid.clone();
        drop(works);
        shared.status_changed(&id);
    }
    retry
}

/// True when `value` matches `pattern`, where `*` matches any sequence.
pub(crate) fn wildcard_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((prefix, rest)) => {
            let Some(tail) = value.strip_prefix(prefix) else { return false };
            (0..=tail.len()).filter(|i| tail.is_char_boundary(*i)).any(|i| wildcard_match(rest, &tail[i..]))
        }
    }
}

fn config_matches(c: &ManifestConfigOption, meta: &ManifestResourceMeta) -> bool {
    let id = &c.resource_identifier;
    id.group == meta.group
        && id.resource == meta.resource
        && wildcard_match(&id.name, &meta.name)
        && wildcard_match(&id.namespace, &meta.namespace)
}

pub(crate) async fn resolve_all(shared: &Shared, bundle: &ManifestBundle) -> Vec<Resolved> {
    let mut out = Vec::with_capacity(bundle.manifests.len());
    for (i, manifest) in bundle.manifests.iter().enumerate() {
        out.push(resolve_one(shared, bundle, i, manifest).await);
    }
    out
}

async fn resolve_one(shared: &Shared, bundle: &ManifestBundle, i: usize, manifest: &Value) -> Resolved {
    let s = |p: &str| manifest.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (api_version, kind) = (s("/apiVersion"), s("/kind"));
    let (group, version) = crate::cluster::split_api_version(&api_version);
    let mut meta = ManifestResourceMeta {
        ordinal: i32::try_from(i).unwrap_or(i32::MAX),
        group: group.to_owned(),
        version: version.to_owned(),
        kind: kind.clone(),
        resource: String::new(),
        name: s("/metadata/name"),
        namespace: s("/metadata/namespace"),
    };
    let object = match shared.cluster.resolve(&api_version, &kind).await {
        Ok(mapping) => {
            meta.resource = mapping.resource.clone();
            if !mapping.namespaced {
                meta.namespace.clear();
            } else if meta.namespace.is_empty() {
                meta.namespace = "default".into();
            }
            Ok(ObjectRef { mapping, namespace: meta.namespace.clone(), name: meta.name.clone() })
        }
        Err(e) => Err(e.to_string()),
    };
    let matching = || bundle.manifest_configs.iter().filter(|c| config_matches(c, &meta));
    let strategy = matching().find_map(|c| c.update_strategy.clone());
    let feedback = matching().find(|c| !c.feedback_rules.is_empty()).map(|c| c.feedback_rules.clone());
    let watch = matching().find_map(|c| c.feedback_scrape_type.as_deref()) == Some(crate::watch::WATCH);
    let feedback = feedback.unwrap_or_default();
    Resolved { strategy, feedback, watch, meta, manifest: manifest.clone(), object }
}

/// The AppliedManifestWork owner of the work, created on the cluster when supported.
pub(crate) async fn owner(shared: &Shared, snap: &Snapshot) -> Result<Owner, ClusterError> {
    let applied_work = shared.applied_work_ref(&snap.name);
    let uid = shared.cluster.applied_work_uid(&applied_work).await?;
    Ok(Owner { applied_work, uid })
}

async fn apply_all(
    shared: &Shared,
    snap: &Snapshot,
    bundle: &ManifestBundle,
    resolved: &[Resolved],
) -> Vec<Applied> {
    let owner = owner(shared, snap).await;
    let mut out = Vec::with_capacity(resolved.len());
    for r in resolved {
        let result = match &owner {
            Ok(owner) => apply_one(shared, snap, bundle, r, owner).await,
            Err(e) => Applied { error: Some(e.to_string()), retry: true, ..Default::default() },
        };
        if let Some(e) = &result.error {
            tracing::warn!(resource_id = %snap.uid, ordinal = r.meta.ordinal, kind = %r.meta.kind,
                name = %r.meta.name, error = %e, "apply failed");
        }
        out.push(result);
    }
    out
}

fn apply_mode(strategy: Option<&maestro_api::payload::UpdateStrategy>) -> Option<ApplyMode> {
    let Some(s) = strategy else { return Some(ApplyMode::Update) };
    Some(match s.kind {
        UpdateStrategyType::Update => ApplyMode::Update,
        UpdateStrategyType::CreateOnly => ApplyMode::CreateOnly,
        UpdateStrategyType::ReadOnly => return None,
        UpdateStrategyType::ServerSideApply => {
            let ssa = s.server_side_apply.clone().unwrap_or_default();
            let field_manager = if ssa.field_manager.is_empty() {
                DEFAULT_FIELD_MANAGER.to_owned()
            } else {
                ssa.field_manager
            };
            ApplyMode::ServerSideApply { field_manager, force: ssa.force }
        }
    })
}

async fn apply_one(
    shared: &Shared,
    snap: &Snapshot,
    bundle: &ManifestBundle,
    r: &Resolved,
    owner: &Owner,
) -> Applied {
    let object = match &r.object {
        Ok(o) => o,
        Err(e) => return Applied::failed(e, true),
    };
    if is_complete(snap, &r.meta) {
        // A manifest whose `Complete` condition is True is not updated any more (§8.2).
        return Applied { kept: true, ..Default::default() };
    }
    let manifest = prepare_manifest(&r.manifest, object);
    let owned = owned_by_policy(bundle.delete_option.as_ref(), object);
    if let Err(refused) = executor_allows(shared, bundle, object, owned, &manifest).await {
        return refused;
    }
    let Some(mode) = apply_mode(r.strategy.as_ref()) else {
        // ReadOnly: never written, only read.
        return match shared.cluster.get(object).await {
            Ok(live) => Applied { live, ..Default::default() },
            Err(_) => Applied::default(),
        };
    };
    let owner = owned.then_some(owner);
    if matches!(mode, ApplyMode::ServerSideApply { .. }) {
        let ssa = r.strategy.as_ref().and_then(|s| s.server_side_apply.as_ref());
        let ignore = ssa.map_or(&[][..], |c| c.ignore_fields.as_slice());
        return apply_ssa(shared, object, manifest, &mode, ignore, owner).await;
    }
    write(shared, object, marked(manifest, owner), &mode).await
}

/// Checks that the work's executor, when it has one, may write `object` (and delete it when
/// `owned`): docs/protocol.md §8.6. A refusal is the manifest's failed outcome, retried after
/// 60 s as the OCM work agent does; a malformed executor is retried with the usual backoff.
async fn executor_allows(
    shared: &Shared,
    bundle: &ManifestBundle,
    object: &ObjectRef,
    owned: bool,
    manifest: &Value,
) -> Result<(), Applied> {
    let executor = match Executor::of(bundle.executor.as_ref()) {
        Ok(None) => return Ok(()),
        Ok(Some(executor)) => executor,
        Err(e) => return Err(Applied::failed(e, true)),
    };
    match executor.check(shared.cluster.as_ref(), object, owned, manifest).await {
        Ok(()) => Ok(()),
        Err(e @ ExecutorError::Cluster(_)) => Err(Applied::failed(e, true)),
        Err(e) => Err(Applied { retry_after: Some(EXECUTOR_RETRY), ..Applied::failed(e, true) }),
    }
}

/// When a manifest its executor may not apply is tried again (OCM's `RequeueTime`).
const EXECUTOR_RETRY: Duration = Duration::from_secs(60);

/// True when the manifest's previous status (same resource meta) has `Complete`=True.
fn is_complete(snap: &Snapshot, meta: &ManifestResourceMeta) -> bool {
    snap.status
        .iter()
        .flat_map(|s| &s.resource_status)
        .find(|m| &m.resource_meta == meta)
        .is_some_and(|m| m.conditions.iter().any(|c| c.kind == cond::COMPLETE && c.status == cond::TRUE))
}

/// The manifest as written: server-maintained metadata removed, the namespace resolved.
fn prepare_manifest(manifest: &Value, object: &ObjectRef) -> Value {
    let mut manifest = manifest.clone();
    if let Some(meta) = manifest.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"] {
            meta.remove(k);
        }
        if object.namespace.is_empty() {
            meta.remove("namespace");
        } else {
            meta.insert("namespace".into(), Value::String(object.namespace.clone()));
        }
    }
    manifest
}

/// `manifest` with the work's ownership recorded when the work owns the object.
fn marked(mut manifest: Value, owner: Option<&Owner>) -> Value {
    if let Some(owner) = owner {
        owner.mark(&mut manifest);
    }
    manifest
}

/// Server-side apply with `ignoreFields` (docs/protocol.md §8.2): an existing object gets the
/// manifest without its `OnSpokePresent` fields, a new one the whole manifest; an object whose
/// spec-hash annotation matches is not applied again (only its owner is made sure of).
async fn apply_ssa(
    shared: &Shared,
    object: &ObjectRef,
    mut manifest: Value,
    mode: &ApplyMode,
    ignore_fields: &[Value],
    owner: Option<&Owner>,
) -> Applied {
    crate::ignore_fields::strip_null_creation_timestamps(&mut manifest);
    let prepared = match crate::ignore_fields::prepare(&manifest, ignore_fields) {
        Ok(Some(p)) => p,
        Ok(None) => return write(shared, object, marked(manifest, owner), mode).await,
        Err(e) => return Applied { ignore_fields_error: true, ..Applied::failed(e, false) },
    };
    let desired = match shared.cluster.get(object).await {
        Err(e) => return Applied::failed(e, true),
        Ok(None) => prepared.full,
        Ok(Some(live)) if crate::ignore_fields::unchanged(&live, &prepared.hash) => {
            let owner_only = marked(prepared.full, owner);
            return write(shared, object, owner_only, &ApplyMode::CreateOnly).await;
        }
        Ok(Some(_)) => prepared.trimmed,
    };
    write(shared, object, marked(desired, owner), mode).await
}

/// Writes `manifest` with `mode`; a server-side apply conflict is not retried.
async fn write(shared: &Shared, object: &ObjectRef, manifest: Value, mode: &ApplyMode) -> Applied {
    match shared.cluster.apply(object, manifest, mode).await {
        Ok(live) => Applied {
            resource: Some(AppliedResource { object: object.clone(), uid: uid_of(&live).to_owned() }),
            live: Some(live),
            ..Default::default()
        },
        Err(e) => {
            let retry = !matches!(e, ClusterError::Conflict { .. });
            Applied::failed(e, retry)
        }
    }
}

/// The new applied-resources list after an apply pass, garbage-collecting resources that
/// left the bundle (docs/protocol.md §8.3). Returns the list and whether a deletion must be retried.
async fn track_and_collect(
    shared: &Shared,
    snap: &Snapshot,
    resolved: &[Resolved],
    results: &[Applied],
) -> (Vec<AppliedResource>, bool) {
    let mut list: Vec<AppliedResource> = Vec::new();
    for (r, a) in resolved.iter().zip(results) {
        match (&a.resource, &r.object) {
            (Some(res), _) => list.push(res.clone()),
            (None, Ok(obj)) if a.error.is_some() || a.kept => {
                list.extend(snap.applied.iter().filter(|old| old.same_target(obj)).cloned());
            }
            _ => {}
        }
    }
    if resolved.iter().any(|r| r.object.is_err()) {
        // Cannot tell which targets are still wanted: keep everything, collect later.
        let keep: Vec<AppliedResource> = snap
            .applied
            .iter()
            .filter(|old| !list.iter().any(|n| n.same_target(&old.object)))
            .cloned()
            .collect();
        list.extend(keep);
        return (list, false);
    }
    let stale: Vec<&AppliedResource> = snap
        .applied
        .iter()
        .filter(|old| !resolved.iter().any(|r| r.object.as_ref().is_ok_and(|o| old.same_target(o))))
        .collect();
    if stale.is_empty() {
        return (list, false);
    }
    let owner = match owner(shared, snap).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(resource_id = %snap.uid, error = %e, "garbage collection postponed");
            list.extend(stale.into_iter().cloned());
            return (list, true);
        }
    };
    let mut retry = false;
    for res in stale {
        match delete::delete_owned(shared, res, &owner).await {
            Ok(true) => tracing::info!(resource_id = %snap.uid, object = %res.object, "garbage-collected"),
            Ok(false) | Err(_) => {
                retry = true;
                list.push(res.clone());
            }
        }
    }
    (list, retry)
}

/// Reads the resources back and builds the work status: per-manifest Applied (from this
/// apply pass, else carried over), Available and StatusFeedbackSynced, plus the aggregated
/// work-level Applied and Available conditions.
async fn build_status(
    shared: &Shared,
    snap: &Snapshot,
    resolved: &[Resolved],
    applied: Option<&[Applied]>,
) -> ManifestBundleStatus {
    let previous = snap.status.clone().unwrap_or_default();
    let generation = snap.generation;
    let mut manifests = Vec::with_capacity(resolved.len());
    for (i, r) in resolved.iter().enumerate() {
        let prev = previous.resource_status.iter().find(|m| m.resource_meta == r.meta);
        let prev_conds = prev.map(|m| m.conditions.as_slice()).unwrap_or_default();
        let applied_cond = match applied.and_then(|a| a.get(i)) {
            Some(a) => a.condition(generation),
            None => prev_conds
                .iter()
                .find(|c| c.kind == cond::APPLIED)
                .cloned()
                .unwrap_or_else(|| cond::manifest_applied(Some("not applied yet"), generation)),
        };
        let fresh = applied.and_then(|a| a.get(i)).and_then(|a| a.live.clone());
        let live: Result<Option<Value>, String> = match (&r.object, fresh) {
            (_, Some(v)) => Ok(Some(v)),
            (Ok(obj), None) => shared.cluster.get(obj).await.map_err(|e| e.to_string()),
            (Err(e), None) => Err(e.clone()),
        };
        let rules = snap
            .bundle
            .iter()
            .flat_map(|b| &b.manifest_configs)
            .filter(|c| config_matches(c, &r.meta))
            .find(|c| !c.condition_rules.is_empty())
            .map_or(&[][..], |c| c.condition_rules.as_slice());
        let object = live.as_ref().ok().and_then(Option::as_ref);
        let ruled = crate::condition_rules::manifest_conditions(rules, object, prev_conds, generation);
        let mut manifest = manifest_status(shared, r, applied_cond, live, prev_conds, generation);
        ruled.merge_into(&mut manifest.conditions);
        manifests.push(manifest);
    }
    let mut conditions = previous.conditions.clone();
    let all_applied = manifests
        .iter()
        .all(|m| m.conditions.iter().any(|c| c.kind == cond::APPLIED && c.status == cond::TRUE));
    set_condition(&mut conditions, cond::work_applied(all_applied, generation));
    set_condition(&mut conditions, cond::work_available(&manifests, generation));
    crate::condition_rules::roll_up(&mut conditions, &manifests, generation);
    ManifestBundleStatus { manifest_bundle: None, conditions, resource_status: manifests }
}

fn manifest_status(
    shared: &Shared,
    r: &Resolved,
    applied: maestro_api::payload::Condition,
    live: Result<Option<Value>, String>,
    previous: &[maestro_api::payload::Condition],
    generation: i64,
) -> ManifestCondition {
    let complete = !r.meta.resource.is_empty() && !r.meta.version.is_empty() && !r.meta.name.is_empty();
    let available = cond::manifest_available(
        live.as_ref().map(Option::is_some).map_err(String::as_str),
        complete,
        generation,
    );
    let (values, error) = match &live {
        Ok(Some(obj)) => feedback::evaluate(
            &r.feedback,
            obj,
            &r.meta.group,
            &r.meta.kind,
            &r.meta.version,
            shared.config.max_json_raw_bytes,
        ),
        _ => (Vec::new(), None),
    };
    let synced = cond::feedback_synced(!r.feedback.is_empty(), error.as_deref(), generation);
    ManifestCondition {
        resource_meta: r.meta.clone(),
        status_feedback: StatusFeedback { values },
        conditions: vec![
            carry_over(previous, applied),
            carry_over(previous, available),
            carry_over(previous, synced),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("web-*", "web-1"));
        assert!(wildcard_match("*-db", "orders-db"));
        assert!(wildcard_match("a*c*e", "abcde"));
        assert!(!wildcard_match("web-*", "api-1"));
        assert!(!wildcard_match("web", "web-1"));
        assert!(wildcard_match("", ""));
    }
}
