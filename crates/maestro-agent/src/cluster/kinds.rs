//! Built-in REST mappings for common kinds, used by the simulated cluster (and as a fallback
//! when a kind is not otherwise known).

use super::ResourceMapping;

/// `(group, kind, plural, namespaced)` for kinds the simulated cluster knows.
const KNOWN: &[(&str, &str, &str, bool)] = &[
    ("", "ConfigMap", "configmaps", true),
    ("", "Secret", "secrets", true),
    ("", "Service", "services", true),
    ("", "ServiceAccount", "serviceaccounts", true),
    ("", "Pod", "pods", true),
    ("", "PersistentVolumeClaim", "persistentvolumeclaims", true),
    ("", "Endpoints", "endpoints", true),
    ("", "Namespace", "namespaces", false),
    ("", "PersistentVolume", "persistentvolumes", false),
    ("", "Node", "nodes", false),
    ("apps", "Deployment", "deployments", true),
    ("apps", "DaemonSet", "daemonsets", true),
    ("apps", "StatefulSet", "statefulsets", true),
    ("apps", "ReplicaSet", "replicasets", true),
    ("batch", "Job", "jobs", true),
    ("batch", "CronJob", "cronjobs", true),
    ("rbac.authorization.k8s.io", "Role", "roles", true),
    ("rbac.authorization.k8s.io", "RoleBinding", "rolebindings", true),
    ("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", false),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", false),
    ("networking.k8s.io", "Ingress", "ingresses", true),
    ("networking.k8s.io", "NetworkPolicy", "networkpolicies", true),
    ("policy", "PodDisruptionBudget", "poddisruptionbudgets", true),
    ("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions", false),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
    ),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", false),
    ("storage.k8s.io", "StorageClass", "storageclasses", false),
    ("work.open-cluster-management.io", "AppliedManifestWork", "appliedmanifestworks", false),
];

/// Splits `apiVersion` into `(group, version)`; the core group is `""`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// The built-in mapping of `apiVersion`/`kind`, if the kind is one of the common kinds.
pub fn known_mapping(api_version: &str, kind: &str) -> Option<ResourceMapping> {
    let (group, version) = split_api_version(api_version);
    KNOWN.iter().find(|(g, k, _, _)| *g == group && *k == kind).map(|(g, k, plural, namespaced)| {
        ResourceMapping {
            group: (*g).to_owned(),
            version: version.to_owned(),
            kind: (*k).to_owned(),
            resource: (*plural).to_owned(),
            namespaced: *namespaced,
        }
    })
}

/// The fallback mapping: lower-case kind + `s`, namespaced.
pub(crate) fn fallback_mapping(api_version: &str, kind: &str) -> ResourceMapping {
    let (group, version) = split_api_version(api_version);
    ResourceMapping {
        group: group.to_owned(),
        version: version.to_owned(),
        kind: kind.to_owned(),
        resource: format!("{}s", kind.to_lowercase()),
        namespaced: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_fallback() {
        let d = known_mapping("apps/v1", "Deployment").expect("known");
        assert_eq!(
            (d.resource.as_str(), d.namespaced, d.api_version()),
            ("deployments", true, "apps/v1".into())
        );
        let ns = known_mapping("v1", "Namespace").expect("known");
        assert!(!ns.namespaced && ns.group.is_empty());
        assert!(known_mapping("v1", "Widget").is_none());
        assert_eq!(fallback_mapping("example.com/v1", "Widget").resource, "widgets");
    }
}
