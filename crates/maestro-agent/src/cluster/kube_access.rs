//! Authorization questions to a real API server for a work's executor (docs/protocol.md
//! §8.6): `SubjectAccessReview`s, and dry-run creates impersonating the executor (a
//! permission escalation on RBAC objects shows only there).

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, DynamicObject, PostParams};
use kube::{Client, Config};
use serde_json::Value;

use super::{AccessReview, ObjectRef};
use crate::error::ClusterError;

use super::kube::api_error;

/// The dynamic API of `object`'s resource (namespaced or cluster-wide).
pub(super) fn dynamic_api(client: Client, object: &ObjectRef) -> Api<DynamicObject> {
    let ar = super::kube_watch::api_resource(&object.mapping);
    if object.mapping.namespaced {
        Api::namespaced_with(client, &object.namespace, &ar)
    } else {
        Api::all_with(client, &ar)
    }
}

/// Creates a `SubjectAccessReview` for `review` and returns `status.allowed`.
pub(super) async fn review_access(client: &Client, review: &AccessReview) -> Result<bool, ClusterError> {
    let m = &review.mapping;
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(review.user.clone()),
            groups: Some(review.groups.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(m.group.clone()),
                version: Some(m.version.clone()),
                resource: Some(m.resource.clone()),
                namespace: non_empty(&review.namespace),
                name: non_empty(&review.name),
                verb: Some(review.verb.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &sar).await.map_err(api_error)?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Creates `manifest` as `user` in dry-run mode (`dryRun=All`) with a client impersonating
/// `user` built from `config`. `Ok` when the server would accept it.
///
/// # Errors
/// [`ClusterError::Api`] with the server's status (403 forbidden, 409 exists), or without one
/// when this cluster was built from a client alone (no configuration to impersonate with).
pub(super) async fn dry_run_create_as(
    config: Option<&Config>,
    user: &str,
    object: &ObjectRef,
    manifest: &Value,
) -> Result<(), ClusterError> {
    let Some(config) = config else {
        return Err(ClusterError::Api {
            status: None,
            message: "impersonating the work's executor needs the cluster's configuration".into(),
        });
    };
    let mut config = config.clone();
    config.auth_info.impersonate = Some(user.to_owned());
    let client =
        Client::try_from(config).map_err(|e| ClusterError::Api { status: None, message: e.to_string() })?;
    let obj: DynamicObject =
        serde_json::from_value(manifest.clone()).map_err(|e| ClusterError::InvalidManifest(e.to_string()))?;
    let params = PostParams { dry_run: true, ..Default::default() };
    dynamic_api(client, object).create(&params, &obj).await.map_err(api_error)?;
    Ok(())
}
