//! Authorization rules of the [`super::SimulatedCluster`]: which user may do what, to exercise
//! a work's executor checks (docs/protocol.md §8.6) without an API server.

use super::AccessReview;

/// One permission: `user` may do `verb` on `resource` of API group `group` in `namespace`.
/// `"*"` in any field matches everything; `namespace` `""` is cluster scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    /// The user (`system:serviceaccount:<namespace>:<name>` for a ServiceAccount) or `*`.
    pub user: String,
    /// A verb (`create`, `update`, `patch`, `get`, `delete`, `escalate`, `bind`) or `*`.
    pub verb: String,
    /// API group (`""` for core) or `*`.
    pub group: String,
    /// Plural resource (`configmaps`) or `*`.
    pub resource: String,
    /// Namespace or `*`.
    pub namespace: String,
}

impl AccessRule {
    /// A rule from `user verb group resource namespace` fields.
    pub fn new(user: &str, verb: &str, group: &str, resource: &str, namespace: &str) -> Self {
        AccessRule {
            user: user.into(),
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
        }
    }

    fn matches(&self, user: &str, verb: &str, group: &str, resource: &str, namespace: &str) -> bool {
        let m = |rule: &str, value: &str| rule == "*" || rule == value;
        m(&self.user, user)
            && m(&self.verb, verb)
            && m(&self.group, group)
            && m(&self.resource, resource)
            && m(&self.namespace, namespace)
    }
}

/// Whether `rules` allow `review`.
pub(super) fn allows(rules: &[AccessRule], review: &AccessReview) -> bool {
    let m = &review.mapping;
    rules.iter().any(|r| r.matches(&review.user, &review.verb, &m.group, &m.resource, &review.namespace))
}

/// Whether `rules` let `user` write the RBAC object of `group`/`resource` in `namespace`
/// beyond their own permissions: `escalate` on roles, `bind` on bindings, as Kubernetes'
/// RBAC authorizer asks. Objects of other kinds need nothing more.
pub(super) fn may_escalate(
    rules: &[AccessRule],
    user: &str,
    group: &str,
    resource: &str,
    namespace: &str,
) -> bool {
    if group != "rbac.authorization.k8s.io" {
        return true;
    }
    let verb = match resource {
        "roles" | "clusterroles" => "escalate",
        "rolebindings" | "clusterrolebindings" => "bind",
        _ => return true,
    };
    rules.iter().any(|r| r.matches(user, verb, group, resource, namespace))
}
