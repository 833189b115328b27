//! Condition types, reasons and messages (docs/protocol.md §8.4, exact strings) and the helpers that
//! keep `lastTransitionTime` stable while a condition's status does not flip.

use chrono::{SecondsFormat, Utc};
use maestro_api::payload::{Condition, ManifestCondition};

/// Condition type `Applied` (work-level and per manifest).
pub const APPLIED: &str = "Applied";
/// Condition type `Available` (work-level and per manifest).
pub const AVAILABLE: &str = "Available";
/// Condition type `StatusFeedbackSynced` (per manifest).
pub const STATUS_FEEDBACK_SYNCED: &str = "StatusFeedbackSynced";
/// Condition type `Deleted` (work-level, final event; docs/protocol.md §6.3).
pub const DELETED: &str = "Deleted";
/// Condition type `Deleting` (work-level, while the work's resources are deleted;
/// docs/protocol.md §6.3).
pub const DELETING: &str = "Deleting";
/// Reason of the per-manifest `Applied`=False when `ignoreFields` cannot be processed
/// (docs/protocol.md §8.2).
pub const APPLIED_MANIFEST_SSA_IGNORE_FIELD_ERROR: &str = "AppliedManifestSSAIgnoreFieldError";

/// Condition type `Complete` (a condition rule's; OCM `ManifestComplete` / `WorkComplete`).
pub const COMPLETE: &str = "Complete";
/// Condition type `Progressing`: its work-level roll-up is True when any manifest's is.
pub const PROGRESSING: &str = "Progressing";
/// Type of the condition that reports a condition rule which cannot be read (docs/protocol.md
/// §8.4; this project's own: OCM's API server rejects such rules).
pub const INVALID_CONDITION_RULE: &str = "InvalidConditionRule";

/// The prefix of every reason set by condition rules: it marks the conditions they made.
pub const CONDITION_RULE_REASON_PREFIX: &str = "ConditionRule";
/// Reason of a condition rule evaluated without error.
pub const CONDITION_RULE_EVALUATED: &str = "ConditionRuleEvaluated";
/// Reason of a condition rule that cannot be evaluated (unknown type, unreadable rule).
pub const CONDITION_RULE_INVALID: &str = "ConditionRuleInvalid";
/// Reason of a condition rule whose expression fails to compile or evaluate.
pub const CONDITION_RULE_EXPRESSION_ERROR: &str = "ConditionRuleExpressionError";
/// Reason of a condition rule that failed for a cause outside its expression.
pub const CONDITION_RULE_INTERNAL_ERROR: &str = "ConditionRuleInternalError";
/// Reason of a work-level condition rolled up from the manifests' rule conditions.
pub const CONDITION_RULES_AGGREGATED: &str = "ConditionRulesAggregated";

/// `True`.
pub const TRUE: &str = "True";
/// `False`.
pub const FALSE: &str = "False";
/// `Unknown`.
pub const UNKNOWN: &str = "Unknown";

/// The current time as RFC 3339 with second precision (`2024-05-01T10:00:00Z`).
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A condition with `lastTransitionTime` = now.
pub fn condition(
    kind: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    generation: i64,
) -> Condition {
    Condition {
        kind: kind.to_owned(),
        status: status.to_owned(),
        observed_generation: generation,
        last_transition_time: now_rfc3339(),
        reason: reason.to_owned(),
        message: message.into(),
    }
}

/// Sets `new` in `conditions` (replacing the condition of the same type): when the status did
/// not change the previous `lastTransitionTime` is kept (`meta.SetStatusCondition` semantics).
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.kind == new.kind) {
        Some(old) => {
            if old.status == new.status && !old.last_transition_time.is_empty() {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// True when `c` was made by a condition rule: its reason starts with `ConditionRule`.
pub fn is_rule_generated(c: &Condition) -> bool {
    c.reason.starts_with(CONDITION_RULE_REASON_PREFIX)
}

/// Removes the rule-made conditions of an earlier generation: removing a rule changes the
/// work's generation, so those come from rules that are gone.
pub fn prune_rule_conditions(conditions: &mut Vec<Condition>, generation: i64) {
    conditions.retain(|c| !is_rule_generated(c) || c.observed_generation == generation);
}

/// Like [`set_condition`] but takes the previous transition time from `previous`.
pub fn carry_over(previous: &[Condition], mut new: Condition) -> Condition {
    if let Some(old) = previous.iter().find(|c| c.kind == new.kind)
        && old.status == new.status
        && !old.last_transition_time.is_empty()
    {
        new.last_transition_time = old.last_transition_time.clone();
    }
    new
}

/// Work-level `Applied`: True `AppliedManifestWorkComplete` / False `AppliedManifestWorkFailed`.
pub fn work_applied(all_applied: bool, generation: i64) -> Condition {
    if all_applied {
        condition(APPLIED, TRUE, "AppliedManifestWorkComplete", "Apply manifest work complete", generation)
    } else {
        condition(APPLIED, FALSE, "AppliedManifestWorkFailed", "Failed to apply manifest work", generation)
    }
}

/// Work-level `Available`, aggregated from the manifests' `Available` conditions: any False ⇒
/// False `ResourcesNotAvailable` "N of M resources are not available"; else any Unknown or
/// missing ⇒ Unknown `ResourcesStatusUnknown`; else True `ResourcesAvailable`.
pub fn work_available(manifests: &[ManifestCondition], generation: i64) -> Condition {
    let total = manifests.len();
    let (mut available, mut unavailable, mut unknown) = (0usize, 0usize, 0usize);
    for m in manifests {
        match m.conditions.iter().find(|c| c.kind == AVAILABLE).map(|c| c.status.as_str()) {
            Some(TRUE) => available += 1,
            Some(FALSE) => unavailable += 1,
            _ => unknown += 1,
        }
    }
    if unavailable > 0 {
        let msg = format!("{unavailable} of {total} resources are not available");
        condition(AVAILABLE, FALSE, "ResourcesNotAvailable", msg, generation)
    } else if unknown > 0 {
        let msg = format!("{unknown} of {total} resources have unknown status");
        condition(AVAILABLE, UNKNOWN, "ResourcesStatusUnknown", msg, generation)
    } else if available == 0 {
        condition(
            AVAILABLE,
            UNKNOWN,
            "ResourcesStatusUnknown",
            "cannot get any available resource",
            generation,
        )
    } else {
        condition(AVAILABLE, TRUE, "ResourcesAvailable", "All resources are available", generation)
    }
}

/// Per-manifest `Applied`: True `AppliedManifestComplete` "Apply manifest complete" / False
/// `AppliedManifestFailed` "Failed to apply manifest: <error>".
pub fn manifest_applied(error: Option<&str>, generation: i64) -> Condition {
    match error {
        None => condition(APPLIED, TRUE, "AppliedManifestComplete", "Apply manifest complete", generation),
        Some(e) => condition(
            APPLIED,
            FALSE,
            "AppliedManifestFailed",
            format!("Failed to apply manifest: {e}"),
            generation,
        ),
    }
}

/// Per-manifest `Applied` when the manifest's `ignoreFields` cannot be processed: False
/// `AppliedManifestSSAIgnoreFieldError` "Failed to process ignoreFields: <error>".
pub fn manifest_ignore_fields_failed(error: &str, generation: i64) -> Condition {
    condition(
        APPLIED,
        FALSE,
        APPLIED_MANIFEST_SSA_IGNORE_FIELD_ERROR,
        format!("Failed to process ignoreFields: {error}"),
        generation,
    )
}

/// Per-manifest `Available`: exists ⇒ True `ResourceAvailable`; missing ⇒ False
/// `ResourceNotAvailable`; read failure ⇒ Unknown `FetchingResourceFailed`; no resource meta ⇒
/// Unknown `IncompleteResourceMeta`.
pub fn manifest_available(found: Result<bool, &str>, meta_complete: bool, generation: i64) -> Condition {
    if !meta_complete {
        return condition(
            AVAILABLE,
            UNKNOWN,
            "IncompleteResourceMeta",
            "Resource meta is incomplete",
            generation,
        );
    }
    match found {
        Ok(true) => condition(AVAILABLE, TRUE, "ResourceAvailable", "Resource is available", generation),
        Ok(false) => {
            condition(AVAILABLE, FALSE, "ResourceNotAvailable", "Resource is not available", generation)
        }
        Err(e) => condition(
            AVAILABLE,
            UNKNOWN,
            "FetchingResourceFailed",
            format!("Failed to fetch resource: {e}"),
            generation,
        ),
    }
}

/// Per-manifest `StatusFeedbackSynced`: no rules ⇒ True `NoStatusFeedbackSynced`; success ⇒
/// True `StatusFeedbackSynced`; failure ⇒ False `StatusFeedbackSyncFailed`.
pub fn feedback_synced(has_rules: bool, error: Option<&str>, generation: i64) -> Condition {
    match (has_rules, error) {
        (false, _) => condition(STATUS_FEEDBACK_SYNCED, TRUE, "NoStatusFeedbackSynced", "", generation),
        (true, None) => condition(STATUS_FEEDBACK_SYNCED, TRUE, "StatusFeedbackSynced", "", generation),
        (true, Some(e)) => condition(
            STATUS_FEEDBACK_SYNCED,
            FALSE,
            "StatusFeedbackSyncFailed",
            format!("Sync status feedback failed with error {e}"),
            generation,
        ),
    }
}

/// Work-level `Deleted`: True `ManifestsDeleted` "The manifests are deleted from the cluster
/// <consumer>" (docs/protocol.md §6.3).
pub fn deleted(consumer: &str, generation: i64) -> Condition {
    condition(
        DELETED,
        TRUE,
        "ManifestsDeleted",
        format!("The manifests are deleted from the cluster {consumer}"),
        generation,
    )
}

/// Work-level `Deleting`: True `WorkDeleting` "ManifestWork is being deleted", set before the
/// work's resources are deleted (docs/protocol.md §6.3).
pub fn deleting(generation: i64) -> Condition {
    condition(DELETING, TRUE, "WorkDeleting", "ManifestWork is being deleted", generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_kept_unless_status_flips() {
        let mut conds =
            vec![Condition { last_transition_time: "2020-01-01T00:00:00Z".into(), ..work_applied(true, 1) }];
        set_condition(&mut conds, work_applied(true, 2));
        assert_eq!(conds[0].last_transition_time, "2020-01-01T00:00:00Z");
        assert_eq!(conds[0].observed_generation, 2);
        set_condition(&mut conds, work_applied(false, 2));
        assert_ne!(conds[0].last_transition_time, "2020-01-01T00:00:00Z");
        assert_eq!(conds[0].reason, "AppliedManifestWorkFailed");
        assert_eq!(conds.len(), 1);
    }

    #[test]
    fn availability_aggregation() {
        let m = |s: Result<bool, &str>| ManifestCondition {
            conditions: vec![manifest_available(s, true, 1)],
            ..Default::default()
        };
        let c = work_available(&[m(Ok(true)), m(Ok(false)), m(Ok(false))], 1);
        assert_eq!((c.status.as_str(), c.message.as_str()), (FALSE, "2 of 3 resources are not available"));
        assert_eq!(work_available(&[m(Ok(true)), m(Err("x"))], 1).reason, "ResourcesStatusUnknown");
        assert_eq!(work_available(&[m(Ok(true))], 1).message, "All resources are available");
        assert!(now_rfc3339().ends_with('Z') && now_rfc3339().len() == 20);
    }
}
