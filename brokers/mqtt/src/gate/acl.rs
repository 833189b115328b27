//! The topic ACL the gate enforces: rules in the spirit of Mosquitto's `acl_file` (`user` +
//! `topic` lines, `pattern` lines with `%u` for the user name), evaluated like Mosquitto:
//! anything not granted is denied.
//!
//! A SUBSCRIBE filter is allowed only when every topic it can match is granted: a filter
//! wildcard needs a wildcard at the same level of the rule (`sources/+/consumers/me/…` is
//! within `sources/+/consumers/me/…`; `sources/+/consumers/+/…` is not). A `$share/<group>/`
//! prefix is ignored for the check. So no message outside the grant can ever be routed to the
//! subscriber, and messages need no check on delivery.
//!
//! `%u` is replaced only by a user name that is a valid topic level (non-empty, without `/`,
//! `+`, `#`, NUL); for other names the pattern grants nothing.
//!
//! [`Acl::allow_all`] grants every well-formed topic to everyone: the gate then only checks
//! framing (the embedded broker without a password file).

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Subscribing (Mosquitto `read`).
    Subscribe,
    /// Publishing, including a CONNECT's will message (Mosquitto `write`).
    Publish,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    /// One user (Mosquitto `user` + `topic`).
    User(String),
    /// Every authenticated user, `%u` = its name (Mosquitto `pattern`).
    Everyone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    who: Who,
    access: Access,
    topic: String,
}

/// A set of grants; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    rules: Vec<Rule>,
    /// Grants every well-formed topic and filter to everyone ([`Acl::allow_all`]).
    allow_all: bool,
}

impl Acl {
    /// An ACL that grants nothing.
    pub fn new() -> Acl {
        Acl::default()
    }

    /// An ACL that grants every user every well-formed topic name (publish) and filter
    /// (subscribe), `$`-topics and `$share/<group>/` filters included; only malformed ones
    /// (a wildcard in a topic name, a misplaced `#`, NUL, empty) are refused. For a gate that
    /// checks framing only: the embedded broker without a password file (docs/security.md,
    /// "MQTT"). Rules added to it change nothing.
    pub fn allow_all() -> Acl {
        Acl { rules: Vec::new(), allow_all: true }
    }

    /// Grants `access` to `topic` (a topic filter) to `user`.
    #[must_use]
    pub fn user(mut self, user: &str, access: Access, topic: &str) -> Acl {
        self.rules.push(Rule { who: Who::User(user.to_owned()), access, topic: topic.to_owned() });
        self
    }

    /// Grants `access` to `topic` (a topic filter where a `%u` level stands for the user name)
    /// to every authenticated user.
    #[must_use]
    pub fn pattern(mut self, access: Access, topic: &str) -> Acl {
        self.rules.push(Rule { who: Who::Everyone, access, topic: topic.to_owned() });
        self
    }

    /// Maestro's topic layout for source `source_id` (docs/protocol.md §7.2), the rules of
    /// `deploy/mqtt/acl`. The user named `source_id` is the server: it publishes specs and
    /// status resync requests to every consumer and reads every agent's events. Every other
    /// user is an agent whose user name is its consumer name: it reads its own spec topic (of
    /// any source) and the source broadcast, and publishes on its own status topic and agent
    /// broadcast topic only.
    pub fn maestro(source_id: &str) -> Acl {
        use Access::{Publish, Subscribe};
        Acl::new()
            .user(source_id, Publish, &format!("sources/{source_id}/consumers/+/sourceevents"))
            .user(source_id, Publish, &format!("sources/{source_id}/sourcebroadcast"))
            .user(source_id, Subscribe, &format!("sources/{source_id}/consumers/+/agentevents"))
            .user(source_id, Subscribe, "sources/+/agentbroadcast")
            .pattern(Subscribe, "sources/+/consumers/%u/sourceevents")
            .pattern(Subscribe, "sources/+/sourcebroadcast")
            .pattern(Publish, "sources/+/consumers/%u/agentevents")
            .pattern(Publish, "sources/%u/agentbroadcast")
    }

    /// True when `user` may `access` `topic` (a topic name to publish to, or a filter to
    /// subscribe to).
    pub fn allows(&self, user: &str, access: Access, topic: &str) -> bool {
        let topic = match access {
            Access::Publish if !valid_topic(topic) => return false,
            Access::Publish => topic,
            Access::Subscribe => match strip_share(topic) {
                Some(filter) if valid_filter(filter) => filter,
                _ => return false,
            },
        };
        if self.allow_all {
            return true;
        }
        self.rules.iter().filter(|r| r.access == access).any(|rule| {
            let grant = match &rule.who {
                Who::User(name) if name == user => rule.topic.clone(),
                Who::User(_) => return false,
                Who::Everyone => match substitute(&rule.topic, user) {
                    Some(t) => t,
                    None => return false,
                },
            };
            match access {
                Access::Publish => topic_matches(&grant, topic),
                Access::Subscribe => filter_within(&grant, topic),
            }
        })
    }
}

/// True when `name` can stand for a single topic level.
pub fn valid_level(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '+', '#', '\0'])
}

/// The rule topic with every `%u` level replaced by `user`; `None` when it has `%u` levels
/// and `user` is not a valid level.
fn substitute(topic: &str, user: &str) -> Option<String> {
    if !topic.split('/').any(|l| l == "%u") {
        return Some(topic.to_owned());
    }
    if !valid_level(user) {
        return None;
    }
    Some(topic.split('/').map(|l| if l == "%u" { user } else { l }).collect::<Vec<_>>().join("/"))
}

/// The filter without its `$share/<group>/` prefix; `None` for a malformed shared filter.
fn strip_share(filter: &str) -> Option<&str> {
    match filter.strip_prefix("$share/") {
        Some(rest) => {
            let (group, filter) = rest.split_once('/')?;
            valid_level(group).then_some(filter)
        }
        None => Some(filter),
    }
}

/// A topic name one may publish to: non-empty, no wildcard, no NUL.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// A well-formed filter: `+` and `#` fill whole levels, `#` only last.
fn valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && !filter.contains('\0')
        && levels.iter().enumerate().all(|(i, l)| match *l {
            "#" => i + 1 == levels.len(),
            "+" => true,
            l => !l.contains(['+', '#']),
        })
}

/// MQTT matching of topic name `topic` against filter `grant`. Wildcards never match a first
/// level starting with `$` (MQTT 5 §4.7.2).
fn topic_matches(grant: &str, topic: &str) -> bool {
    let mut g = grant.split('/');
    let mut t = topic.split('/');
    if topic.starts_with('$') && !grant.starts_with('$') {
        return false;
    }
    loop {
        match (g.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True when every topic matched by `filter` is matched by `grant` (a grant `a/#` also covers
/// the filter `a`, as `#` matches the parent level).
fn filter_within(grant: &str, filter: &str) -> bool {
    if filter.starts_with('$') && !grant.starts_with('$') {
        return false;
    }
    let mut g = grant.split('/');
    let mut f = filter.split('/');
    loop {
        match (g.next(), f.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b && b != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maestro_server_and_agents() {
        let acl = Acl::maestro("maestro");
        let sub = |u: &str, f: &str| acl.allows(u, Access::Subscribe, f);
        let publ = |u: &str, t: &str| acl.allows(u, Access::Publish, t);
        // The server.
        assert!(publ("maestro", "sources/maestro/consumers/cluster-a/sourceevents"));
        assert!(publ("maestro", "sources/maestro/sourcebroadcast"));
        assert!(sub("maestro", "sources/maestro/consumers/+/agentevents"));
        assert!(sub("maestro", "$share/statussubscribers/sources/maestro/consumers/+/agentevents"));
        assert!(sub("maestro", "sources/+/agentbroadcast"));
        assert!(!publ("maestro", "sources/other/consumers/cluster-a/sourceevents"));
        assert!(!sub("maestro", "#"));
        // An agent: its own topics only.
        assert!(sub("cluster-a", "sources/maestro/consumers/cluster-a/sourceevents"));
        assert!(sub("cluster-a", "sources/+/consumers/cluster-a/sourceevents"));
        assert!(sub("cluster-a", "$share/g/sources/maestro/consumers/cluster-a/sourceevents"));
        assert!(sub("cluster-a", "sources/+/sourcebroadcast"));
        assert!(publ("cluster-a", "sources/maestro/consumers/cluster-a/agentevents"));
        assert!(publ("cluster-a", "sources/cluster-a/agentbroadcast"));
        for f in [
            "sources/maestro/consumers/cluster-b/sourceevents",
            "sources/maestro/consumers/+/sourceevents",
            "sources/maestro/consumers/#",
            "sources/#",
            "#",
            "+/maestro/consumers/cluster-a/sourceevents",
            "sources/maestro/consumers/cluster-a/sourceevents/#",
            "$share/g/sources/maestro/consumers/cluster-b/sourceevents",
            "$share/sources/maestro/consumers/cluster-a/sourceevents",
            "sources/maestro/consumers/cluster-a/agentevents",
            "sources/maestro/consumers/+/agentevents",
            "sources/mae+stro/consumers/cluster-a/sourceevents",
        ] {
            assert!(!sub("cluster-a", f), "cluster-a may not subscribe to {f}");
        }
        for t in [
            "sources/maestro/consumers/cluster-b/agentevents",
            "sources/maestro/consumers/cluster-a/sourceevents",
            "sources/maestro/consumers/cluster-b/sourceevents",
            "sources/maestro/sourcebroadcast",
            "sources/cluster-b/agentbroadcast",
            "sources/maestro/consumers/+/agentevents",
            "sources/maestro/consumers/cluster-a/agentevents/x",
            "",
        ] {
            assert!(!publ("cluster-a", t), "cluster-a may not publish to {t:?}");
        }
    }

    #[test]
    fn user_names_that_are_not_a_level_get_no_pattern_rights() {
        let acl = Acl::maestro("maestro");
        for user in ["+", "#", "", "a/b", "cluster-b/agentevents"] {
            assert!(!acl.allows(user, Access::Subscribe, "sources/+/consumers/+/sourceevents"), "{user}");
            assert!(!acl.allows(user, Access::Publish, "sources/maestro/consumers/x/agentevents"), "{user}");
        }
        // Rules without %u still apply to any authenticated user.
        assert!(acl.allows("a/b", Access::Subscribe, "sources/maestro/sourcebroadcast"));
    }

    #[test]
    fn allow_all_grants_every_well_formed_topic_and_filter() {
        let acl = Acl::allow_all();
        assert_ne!(acl, Acl::new());
        for user in ["", "anyone", "a/b", "#"] {
            for t in ["sources/maestro/consumers/c/sourceevents", "$SYS/x", "a"] {
                assert!(acl.allows(user, Access::Publish, t), "{user} publish {t}");
            }
            for f in ["#", "+/+/#", "$SYS/#", "$share/g/sources/+/consumers/+/agentevents"] {
                assert!(acl.allows(user, Access::Subscribe, f), "{user} subscribe {f}");
            }
            for t in ["", "a/+", "a/#", "a\0b"] {
                assert!(!acl.allows(user, Access::Publish, t), "{user} publish {t:?}");
            }
            for f in ["", "a/#/b", "a/b#", "$share/g", "$share//a"] {
                assert!(!acl.allows(user, Access::Subscribe, f), "{user} subscribe {f:?}");
            }
        }
    }

    #[test]
    fn matching_rules() {
        assert!(filter_within("a/#", "a"));
        assert!(filter_within("a/#", "a/+/c"));
        assert!(filter_within("a/#", "a/#"));
        assert!(!filter_within("a/+", "a/#"));
        assert!(!filter_within("a/b", "a/+"));
        assert!(!filter_within("+/b", "$SYS/b"));
        assert!(topic_matches("a/#", "a"));
        assert!(!topic_matches("+/b", "$SYS/b"));
        assert!(!valid_filter("a/#/b"));
        assert!(!valid_filter("a/b#"));
        assert!(valid_filter("+/+/#"));
        assert!(Acl::new().user("u", Access::Publish, "a/#").allows("u", Access::Publish, "a/b"));
        assert!(!Acl::new().user("u", Access::Publish, "a/#").allows("v", Access::Publish, "a/b"));
        assert!(!Acl::new().user("u", Access::Publish, "a/#").allows("u", Access::Subscribe, "a/b"));
    }
}
