//! The authorization policy file (`--authz-policy-file`, YAML; docs/security.md "Policy file").
//!
//! ```yaml
//! sources:                     # who may act as which source (Go Maestro: pub/sub on /sources/<source>)
//!   - name: hyperfleet         # a source id, or "*" for every source
//!     verbs: [pub, sub]        # pub: create/update/delete bundles, request status resyncs; sub: receive statuses
//!     users: [hyperfleet-api]
//!     groups: [hyperfleet]
//! consumers:                   # extra identities allowed to act as a consumer's agent
//!   - name: cluster-1
//!     users: ["system:serviceaccount:open-cluster-management-agent:klusterlet-work-sa"]
//! agentUserIsConsumer: true    # default: an identity whose user equals a consumer name is its agent
//! rest:                        # REST roles: admin (every route) or read (GET/HEAD only)
//!   - role: admin
//!     users: [ops]
//!   - role: read
//!     groups: [sre]
//! ```
//!
//! Unknown keys are refused, so a typo never silently grants or removes access. A
//! [`PolicyHandle`] re-reads the file when it changes; a new file that does not parse is
//! refused with an error log and the previous policy stays in force.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use serde::Deserialize;

use crate::{AuthError, Identity};

/// What a source identity may do (Go Maestro's SubjectAccessReview verbs on `/sources/<source>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceVerb {
    /// Publish: create, update and delete the source's bundles; request status resyncs.
    Pub,
    /// Subscribe: receive the statuses of the source's bundles.
    Sub,
}

/// A REST role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestRole {
    /// GET and HEAD on every route.
    Read,
    /// Every route and method.
    Admin,
}

/// Users and groups a rule applies to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subjects {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

impl Subjects {
    fn matches(&self, id: &Identity) -> bool {
        self.users.contains(&id.user) || self.groups.iter().any(|g| id.groups.contains(g))
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceRule {
    name: String,
    verbs: Vec<SourceVerb>,
    #[serde(flatten)]
    subjects: Subjects,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumerRule {
    name: String,
    #[serde(flatten)]
    subjects: Subjects,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestRule {
    role: RestRole,
    #[serde(flatten)]
    subjects: Subjects,
}

fn yes() -> bool {
    true
}

/// A parsed policy. [`Policy::default`] grants no source and no REST role, and lets an agent
/// identity act only as the consumer its user names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    sources: Vec<SourceRule>,
    #[serde(default)]
    consumers: Vec<ConsumerRule>,
    #[serde(default = "yes")]
    agent_user_is_consumer: bool,
    #[serde(default)]
    rest: Vec<RestRule>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { sources: Vec::new(), consumers: Vec::new(), agent_user_is_consumer: true, rest: Vec::new() }
    }
}

impl Policy {
    /// Parses a policy from YAML text; `path` names the file in errors.
    ///
    /// # Errors
    /// [`AuthError::Policy`] for YAML that does not parse, unknown keys, unknown verbs or roles,
    /// an empty name, or a rule naming no user and no group.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Policy, AuthError> {
        let bad = |detail: String| AuthError::Policy { path: path.to_owned(), detail };
        let policy: Policy = if text.trim().is_empty() {
            Policy::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| bad(e.to_string()))?
        };
        for (i, r) in policy.sources.iter().enumerate() {
            if r.name.is_empty() || r.verbs.is_empty() || r.subjects.is_empty() {
                return Err(bad(format!("sources[{i}] needs a name, verbs and at least one user or group")));
            }
        }
        for (i, r) in policy.consumers.iter().enumerate() {
            if r.name.is_empty() || r.subjects.is_empty() {
                return Err(bad(format!("consumers[{i}] needs a name and at least one user or group")));
            }
        }
        if let Some(i) = policy.rest.iter().position(|r| r.subjects.is_empty()) {
            return Err(bad(format!("rest[{i}] needs at least one user or group")));
        }
        Ok(policy)
    }

    /// Reads and parses a policy file.
    ///
    /// # Errors
    /// [`AuthError::Read`] when the file cannot be read; see [`Policy::from_yaml`].
    pub fn from_file(path: &Path) -> Result<Policy, AuthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AuthError::Read { path: path.to_owned(), source })?;
        Policy::from_yaml(&text, path)
    }

    /// Whether `id` may act as `source` for `verb`.
    pub fn may_act_as_source(&self, id: &Identity, source: &str, verb: SourceVerb) -> bool {
        self.sources
            .iter()
            .any(|r| (r.name == source || r.name == "*") && r.verbs.contains(&verb) && r.subjects.matches(id))
    }

    /// Whether `id` may act as the agent of `consumer`: its user is the consumer's name (unless
    /// `agentUserIsConsumer: false`) or a `consumers` entry names it.
    pub fn may_act_as_consumer(&self, id: &Identity, consumer: &str) -> bool {
        (self.agent_user_is_consumer && !consumer.is_empty() && id.user == consumer)
            || self.consumers.iter().any(|r| r.name == consumer && r.subjects.matches(id))
    }

    /// The highest REST role `id` holds, if any.
    pub fn rest_role(&self, id: &Identity) -> Option<RestRole> {
        self.rest.iter().filter(|r| r.subjects.matches(id)).map(|r| r.role).max()
    }
}

/// A policy kept current with its file: re-read every `interval` when the file's content
/// changed. Clones share the policy; the reload task ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct PolicyHandle {
    current: Arc<RwLock<Arc<Policy>>>,
    path: Option<PathBuf>,
    refused: Arc<AtomicU64>,
}

impl PolicyHandle {
    /// A fixed policy (no file): for tests, and [`Policy::default`] when no file is configured.
    pub fn fixed(policy: Policy) -> PolicyHandle {
        PolicyHandle { current: Arc::new(RwLock::new(Arc::new(policy))), path: None, refused: Arc::default() }
    }

    /// Loads `path` and starts re-reading it every `interval` (must run inside a tokio runtime).
    ///
    /// # Errors
    /// See [`Policy::from_file`]: a bad file at start is a start error.
    pub fn watch(path: &Path, interval: Duration) -> Result<PolicyHandle, AuthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AuthError::Read { path: path.to_owned(), source })?;
        let policy = Policy::from_yaml(&text, path)?;
        let current = Arc::new(RwLock::new(Arc::new(policy)));
        let refused = Arc::new(AtomicU64::new(0));
        let watch =
            Reload { current: Arc::downgrade(&current), refused: refused.clone(), path: path.to_owned() };
        tokio::spawn(watch.run(text, interval));
        Ok(PolicyHandle { current, path: Some(path.to_owned()), refused })
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many changed versions of the file were refused since start (they did not parse).
    pub fn refused_reloads(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The file it follows, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// The reload task's view of a [`PolicyHandle`].
struct Reload {
    current: Weak<RwLock<Arc<Policy>>>,
    refused: Arc<AtomicU64>,
    path: PathBuf,
}

impl Reload {
    async fn run(self, mut seen: String, interval: Duration) {
        let path = &self.path;
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(current) = self.current.upgrade() else { return };
            let text = match tokio::fs::read_to_string(path).await {
                Ok(text) if text == seen => continue,
                Ok(text) => text,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot re-read the authorization policy; keeping the previous one");
                    continue;
                }
            };
            match Policy::from_yaml(&text, path) {
                Ok(policy) => {
                    *current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
                    tracing::info!(path = %path.display(), "authorization policy reloaded");
                }
                Err(e) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "new authorization policy refused; keeping the previous one");
                }
            }
            seen = text;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(user: &str, groups: &[&str]) -> Identity {
        Identity { user: user.into(), groups: groups.iter().map(|g| (*g).to_owned()).collect() }
    }

    const SAMPLE: &str = r#"
sources:
  - name: hyperfleet
    verbs: [pub, sub]
    users: [hyperfleet-api]
  - name: "*"
    verbs: [sub]
    groups: [auditors]
consumers:
  - name: cluster-1
    users: [work-sa]
rest:
  - role: read
    groups: [sre]
  - role: admin
    users: [ops]
    groups: [sre-admins]
"#;

    #[test]
    fn sources_consumers_and_roles() {
        let p = Policy::from_yaml(SAMPLE, Path::new("p.yaml")).expect("parses");
        let api = id("hyperfleet-api", &[]);
        assert!(p.may_act_as_source(&api, "hyperfleet", SourceVerb::Pub));
        assert!(p.may_act_as_source(&api, "hyperfleet", SourceVerb::Sub));
        assert!(!p.may_act_as_source(&api, "other", SourceVerb::Pub));
        let auditor = id("eve", &["auditors"]);
        assert!(p.may_act_as_source(&auditor, "any-source", SourceVerb::Sub));
        assert!(!p.may_act_as_source(&auditor, "any-source", SourceVerb::Pub));

        assert!(p.may_act_as_consumer(&id("cluster-2", &[]), "cluster-2"));
        assert!(!p.may_act_as_consumer(&id("cluster-2", &[]), "cluster-1"));
        assert!(p.may_act_as_consumer(&id("work-sa", &[]), "cluster-1"));
        assert!(!p.may_act_as_consumer(&id("work-sa", &[]), "cluster-3"));

        assert_eq!(p.rest_role(&id("bob", &["sre"])), Some(RestRole::Read));
        assert_eq!(p.rest_role(&id("bob", &["sre", "sre-admins"])), Some(RestRole::Admin));
        assert_eq!(p.rest_role(&id("ops", &[])), Some(RestRole::Admin));
        assert_eq!(p.rest_role(&id("mallory", &[])), None);
    }

    #[test]
    fn default_policy_grants_only_agents_their_own_consumer() {
        let p = Policy::default();
        assert!(p.may_act_as_consumer(&id("c1", &[]), "c1"));
        assert!(!p.may_act_as_consumer(&id("c1", &[]), "c2"));
        assert!(!p.may_act_as_source(&id("maestro", &[]), "maestro", SourceVerb::Pub));
        assert_eq!(p.rest_role(&id("admin", &["system:masters"])), None);
        let strict = Policy::from_yaml("agentUserIsConsumer: false\n", Path::new("p")).expect("parses");
        assert!(!strict.may_act_as_consumer(&id("c1", &[]), "c1"));
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        for (text, needle) in [
            ("sources:\n  - name: s\n    verbs: [publish]\n    users: [a]\n", "publish"),
            ("sources:\n  - name: s\n    verbs: [pub]\n", "at least one user or group"),
            ("rest:\n  - role: root\n    users: [a]\n", "root"),
            ("rets: []\n", "rets"),
            ("sources:\n  - name: s\n    verbs: [pub]\n    user: [a]\n", "user"),
            ("consumers:\n  - name: \"\"\n    users: [a]\n", "consumers[0]"),
        ] {
            let err = Policy::from_yaml(text, Path::new("policy.yaml")).expect_err(text).to_string();
            assert!(err.contains("policy.yaml") && err.contains(needle), "{text:?} gave {err}");
        }
    }

    #[tokio::test]
    async fn a_changed_file_is_reloaded_and_a_broken_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, "rest:\n  - role: read\n    users: [bob]\n").expect("write");
        let handle = PolicyHandle::watch(&path, Duration::from_millis(20)).expect("loads");
        let bob = id("bob", &[]);
        assert_eq!(handle.current().rest_role(&bob), Some(RestRole::Read));

        std::fs::write(&path, "rest:\n  - role: admin\n    users: [bob]\n").expect("write");
        wait_for(|| handle.current().rest_role(&bob) == Some(RestRole::Admin)).await;

        std::fs::write(&path, "rest:\n  - role: root\n    users: [bob]\n").expect("write");
        wait_for(|| handle.refused_reloads() == 1).await;
        assert_eq!(
            handle.current().rest_role(&bob),
            Some(RestRole::Admin),
            "a broken file keeps the old policy"
        );
    }

    async fn wait_for(mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "condition not met within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
