//! Work deletion (docs/protocol.md §6.3, §8.3): publish the `Deleting` condition, then delete the
//! applied resources the delete option lets the work own, remove the AppliedManifestWork, and set
//! the `Deleted` condition; the status publisher drops the work once that status is published.

use std::sync::Arc;

use maestro_api::payload::ManifestBundleStatus;

use crate::agent::Shared;
use crate::conditions::{self as cond, set_condition};
use crate::error::ClusterError;
use crate::ownership::{Owner, owned_by_policy, uid_of};
use crate::reconcile::{Snapshot, owner};
use crate::work::AppliedResource;

/// Deletes `res` if it still is the object that was applied (same UID) and is owned by
/// `owner`. Returns true when it is gone (or no longer ours), false while it still exists.
///
/// # Errors
/// Cluster API failures.
pub(crate) async fn delete_owned(
    shared: &Shared,
    res: &AppliedResource,
    owner: &Owner,
) -> Result<bool, ClusterError> {
    let Some(live) = shared.cluster.get(&res.object).await? else { return Ok(true) };
    if uid_of(&live) != res.uid || !owner.owns(&live) {
        return Ok(true);
    }
    match shared.cluster.delete(&res.object, Some(&res.uid)).await {
        Ok(_) | Err(ClusterError::PreconditionFailed { .. }) => {}
        Err(e) => {
            tracing::warn!(object = %res.object, error = %e, "delete failed");
            return Err(e);
        }
    }
    let after = shared.cluster.get(&res.object).await?;
    Ok(after.is_none_or(|a| uid_of(&a) != res.uid))
}

/// Rediscovers what a work applied when the agent holds no record of it (a delete for a work
/// it never saw since it started, e.g. after an agent restart): the bundle's manifests whose
/// live object is owned by this work's AppliedManifestWork. The ownership markers live on the
/// cluster objects, as Go's AppliedManifestWork does, so nothing is leaked.
async fn recover_applied(shared: &Shared, snap: &Snapshot, owner: &Owner) -> Vec<AppliedResource> {
    let Some(bundle) = snap.bundle.as_ref() else { return Vec::new() };
    let mut out = Vec::new();
    for r in crate::reconcile::resolve_all(shared, bundle).await {
        let Ok(object) = r.object else { continue };
        if let Ok(Some(live)) = shared.cluster.get(&object).await
            && owner.owns(&live)
        {
            out.push(AppliedResource { uid: uid_of(&live).to_owned(), object });
        }
    }
    out
}

/// Runs the deletion of a deleting work. Returns true when it must be retried.
///
/// A work that has something applied (or a bundle) first gets the `Deleting` condition, and
/// nothing is deleted until a status carrying it was published: the source sees `Deleting`
/// before `Deleted`, as from the Go agent, which patches that condition before it deletes the
/// AppliedManifestWork.
pub(crate) async fn finalize(shared: &Arc<Shared>, snap: &Snapshot) -> bool {
    shared.watches.forget(&snap.uid); // a deleting work's objects are no longer watched (§8.5)
    if !snap.applied.is_empty() || snap.bundle.is_some() {
        if !deleting_published(shared, &snap.uid) {
            return bump_attempts(shared, snap, snap.applied.clone());
        }
        if let Err(remaining) = delete_all(shared, snap).await {
            return bump_attempts(shared, snap, remaining);
        }
    }
    mark_deleted(shared, &snap.uid);
    false
}

/// Deletes the work's owned resources, then its AppliedManifestWork. `Err` holds the
/// resources still to delete (all of them when the owner cannot be resolved).
async fn delete_all(shared: &Shared, snap: &Snapshot) -> Result<(), Vec<AppliedResource>> {
    let delete_option = snap.bundle.as_ref().and_then(|b| b.delete_option.clone());
    let owner = owner(shared, snap).await.map_err(|e| {
        tracing::warn!(resource_id = %snap.uid, error = %e, "cannot resolve the owner; will retry");
        snap.applied.clone()
    })?;
    let applied = if snap.applied.is_empty() {
        recover_applied(shared, snap, &owner).await
    } else {
        snap.applied.clone()
    };
    let mut remaining = Vec::new();
    for res in &applied {
        if !owned_by_policy(delete_option.as_ref(), &res.object) {
            tracing::info!(resource_id = %snap.uid, object = %res.object, "orphaned");
            continue;
        }
        match delete_owned(shared, res, &owner).await {
            Ok(true) => tracing::info!(resource_id = %snap.uid, object = %res.object, "deleted"),
            Ok(false) | Err(_) => remaining.push(res.clone()),
        }
    }
    if !remaining.is_empty() {
        return Err(remaining);
    }
    shared.cluster.delete_applied_work(&owner.applied_work).await.map_err(|e| {
        tracing::warn!(resource_id = %snap.uid, error = %e, "cannot delete the AppliedManifestWork; will retry");
        Vec::new()
    })
}

/// True once a status with the `Deleting` condition was published. Until then sets that
/// condition on the work's status (when it is not there yet) and hands it to the publisher.
fn deleting_published(shared: &Shared, id: &str) -> bool {
    let is_deleting = |s: &ManifestBundleStatus| {
        s.conditions.iter().any(|c| c.kind == cond::DELETING && c.status == cond::TRUE)
    };
    {
        let mut works = shared.works();
        let Some(w) = works.get_mut(id) else { return true };
        if w.last_published.as_ref().is_some_and(is_deleting) {
            return true;
        }
        if !w.status.as_ref().is_some_and(is_deleting) {
            let mut status = w.status.clone().unwrap_or_default();
            set_condition(&mut status.conditions, cond::deleting(w.generation));
            w.status_hash = Some(maestro_api::statushash::status_hash(&status));
            w.status = Some(status);
            tracing::info!(resource_id = %id, generation = w.generation, "work deleting");
        }
    }
    shared.status_changed(id);
    false
}

fn bump_attempts(shared: &Shared, snap: &Snapshot, remaining: Vec<AppliedResource>) -> bool {
    if let Some(w) = shared.works().get_mut(&snap.uid) {
        w.applied = remaining;
        w.attempts = w.attempts.saturating_add(1);
    }
    true
}

fn mark_deleted(shared: &Shared, id: &str) {
    {
        let mut works = shared.works();
        let Some(w) = works.get_mut(id) else { return };
        let mut status = w.status.clone().unwrap_or_default();
        set_condition(&mut status.conditions, cond::deleted(&shared.config.consumer, w.generation));
        let hash = maestro_api::statushash::status_hash(&status);
        w.status = Some(status);
        w.status_hash = Some(hash);
        w.applied.clear();
        w.finalized = true;
        tracing::info!(resource_id = %id, generation = w.generation, "manifests deleted");
    }
    shared.status_changed(id);
}
