//! A work's executor (OCM `ManifestWork.spec.executor`, the bundle's `executer`;
//! docs/protocol.md §8.6): the ServiceAccount whose permissions a work is applied with.
//!
//! Before each manifest is written, the agent asks the cluster's authorizer whether the
//! executor may `create`, `update`, `patch` and `get` it (and `delete` it when the work owns
//! it, so a later deletion cannot be refused), one `SubjectAccessReview` per verb; for RBAC
//! objects (roles, cluster roles and their bindings) it also creates the object as the
//! executor in dry-run mode, since only that shows a permission escalation. A refusal leaves
//! the manifest not applied (`Applied`=False with the refusal) and is tried again later. The
//! writes themselves use the agent's own identity, as the OCM work agent does.

use serde_json::Value;

use crate::cluster::{AccessReview, Cluster, ObjectRef};
use crate::error::ClusterError;

/// The verbs a work's executor needs on every manifest it applies.
const APPLY_VERBS: [&str; 4] = ["create", "update", "patch", "get"];

/// Why the executor may not apply a manifest; the `Display` text is the condition message
/// (OCM's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExecutorError {
    /// The executor is not a ServiceAccount subject.
    #[error("only support ServiceAccount type for the executor")]
    NotServiceAccount,
    /// The subject names no ServiceAccount.
    #[error("the executor service account is nil")]
    NoServiceAccount,
    /// An access review said no.
    #[error(
        "not allowed to apply the resource {group} {resource}, {namespace} {name}, will try again in 1m0s"
    )]
    NotAllowed {
        /// API group.
        group: String,
        /// Plural resource.
        resource: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The impersonated dry-run write of an RBAC object was forbidden.
    #[error(
        "not allowed to apply the resource {group} {resource}, {namespace} {name}, error: permission escalation, \
         will try again in 1m0s"
    )]
    Escalation {
        /// API group.
        group: String,
        /// Plural resource.
        resource: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The cluster could not answer.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A ServiceAccount executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Executor {
    namespace: String,
    name: String,
}

impl Executor {
    /// The executor of a bundle (`executer`: `{subject: {type: ServiceAccount, serviceAccount:
    /// {namespace, name}}}`); `Ok(None)` when it has none.
    ///
    /// # Errors
    /// [`ExecutorError::NotServiceAccount`] for another subject type,
    /// [`ExecutorError::NoServiceAccount`] when the ServiceAccount is missing.
    pub(crate) fn of(executor: Option<&Value>) -> Result<Option<Self>, ExecutorError> {
        let Some(subject) = executor.filter(|e| !e.is_null()).map(|e| &e["subject"]) else { return Ok(None) };
        if subject["type"].as_str() != Some("ServiceAccount") {
            return Err(ExecutorError::NotServiceAccount);
        }
        let sa = &subject["serviceAccount"];
        let field = |k: &str| sa[k].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        match (field("namespace"), field("name")) {
            (Some(namespace), Some(name)) => Ok(Some(Executor { namespace, name })),
            _ => Err(ExecutorError::NoServiceAccount),
        }
    }

    /// The Kubernetes user name of the ServiceAccount.
    pub(crate) fn user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// The groups of the ServiceAccount.
    fn groups(&self) -> Vec<String> {
        vec![
            "system:serviceaccounts".into(),
            "system:authenticated".into(),
            format!("system:serviceaccounts:{}", self.namespace),
        ]
    }

    /// Checks that the executor may apply `manifest` to `object` (and delete it when `owned`).
    ///
    /// # Errors
    /// [`ExecutorError::NotAllowed`], [`ExecutorError::Escalation`], or the cluster's failure.
    pub(crate) async fn check(
        &self,
        cluster: &dyn Cluster,
        object: &ObjectRef,
        owned: bool,
        manifest: &Value,
    ) -> Result<(), ExecutorError> {
        let verbs = APPLY_VERBS.iter().chain(owned.then_some(&"delete"));
        for verb in verbs {
            let review = AccessReview {
                user: self.user(),
                groups: self.groups(),
                verb: (*verb).to_owned(),
                mapping: object.mapping.clone(),
                namespace: object.namespace.clone(),
                name: object.name.clone(),
            };
            if !cluster.review_access(&review).await? {
                return Err(self.refusal(object, false));
            }
        }
        if object.mapping.group == "rbac.authorization.k8s.io" {
            match cluster.dry_run_create_as(&self.user(), object, manifest).await {
                Err(ClusterError::Api { status: Some(403), .. }) => return Err(self.refusal(object, true)),
                Err(ClusterError::Api { status: Some(409), .. }) | Ok(()) => {} // exists: checked at creation
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn refusal(&self, object: &ObjectRef, escalation: bool) -> ExecutorError {
        let m = &object.mapping;
        let (group, resource) = (m.group.clone(), m.resource.clone());
        let (namespace, name) = (object.namespace.clone(), object.name.clone());
        tracing::info!(executor = %self.user(), %object, escalation, "the work's executor may not apply the resource");
        if escalation {
            ExecutorError::Escalation { group, resource, namespace, name }
        } else {
            ExecutorError::NotAllowed { group, resource, namespace, name }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_service_account_subject_is_an_executor() {
        assert_eq!(Executor::of(None), Ok(None));
        assert_eq!(Executor::of(Some(&Value::Null)), Ok(None));
        let sa = json!({"subject": {"type": "ServiceAccount", "serviceAccount": {"namespace": "ns", "name": "deployer"}}});
        let executor = Executor::of(Some(&sa)).expect("parses").expect("some");
        assert_eq!(executor.user(), "system:serviceaccount:ns:deployer");
        let user = json!({"subject": {"type": "User", "user": {"name": "bob"}}});
        assert_eq!(Executor::of(Some(&user)), Err(ExecutorError::NotServiceAccount));
        let empty = json!({"subject": {"type": "ServiceAccount"}});
        assert_eq!(Executor::of(Some(&empty)), Err(ExecutorError::NoServiceAccount));
    }
}
