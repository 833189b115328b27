//! Topic validation and derivation, exactly as sdk-go does it (docs/protocol.md §7.2,
//! `generic/options/mqtt/{options,sourceoptions,agentoptions}.go`).
//!
//! Wildcard substitution is textual, like Go's `strings.Replace(t, "+", v, 1)` (first `+`) and
//! `replaceLast` (last `+`). A derived publish topic that still contains a wildcard, or a
//! substituted value that is empty or contains `/`, `+`, `#`, is an error instead of a
//! publish to a wrong topic.

use std::sync::LazyLock;

use maestro_api::types::{Action, EventType, SubResource};
use maestro_api::{AttributesReader, Event, ext};
use regex::Regex;

use crate::config::MqttTopics;

/// sdk-go `SourceEventsTopicPattern`.
pub const SOURCE_EVENTS_PATTERN: &str =
    r"^(\$share/[a-z0-9-]+/)?([a-z]+)/([a-z0-9-]+|\+)/([a-z]+)/([a-z0-9-]+|\+)/sourceevents$";
/// sdk-go `AgentEventsTopicPattern`.
pub const AGENT_EVENTS_PATTERN: &str =
    r"^(\$share/[a-z0-9-]+/)?([a-z]+)/([a-z0-9-]+|\+)/([a-z]+)/([a-z0-9-]+|\+)/agentevents$";
/// sdk-go `EventsTopicPattern` (either events topic; used to read the source segment).
pub const EVENTS_PATTERN: &str =
    r"^(\$share/[a-z0-9-]+/)?([a-z]+)/([a-z0-9-]+|\+)/([a-z]+)/([a-z0-9-]+|\+)/(sourceevents|agentevents)$";
/// sdk-go `SourceBroadcastTopicPattern`.
pub const SOURCE_BROADCAST_PATTERN: &str =
    r"^(\$share/[a-z0-9-]+/)?([a-z]+)/([a-z0-9-]+|\+)/sourcebroadcast$";
/// sdk-go `AgentBroadcastTopicPattern`.
pub const AGENT_BROADCAST_PATTERN: &str = r"^(\$share/[a-z0-9-]+/)?([a-z]+)/([a-z0-9-]+|\+)/agentbroadcast$";

#[allow(clippy::unwrap_used)] // constant patterns, checked by the tests
fn re(pattern: &'static str) -> Regex {
    Regex::new(pattern).unwrap()
}

static SOURCE_EVENTS: LazyLock<Regex> = LazyLock::new(|| re(SOURCE_EVENTS_PATTERN));
static AGENT_EVENTS: LazyLock<Regex> = LazyLock::new(|| re(AGENT_EVENTS_PATTERN));
static EVENTS: LazyLock<Regex> = LazyLock::new(|| re(EVENTS_PATTERN));
static SOURCE_BROADCAST: LazyLock<Regex> = LazyLock::new(|| re(SOURCE_BROADCAST_PATTERN));
static AGENT_BROADCAST: LazyLock<Regex> = LazyLock::new(|| re(AGENT_BROADCAST_PATTERN));

/// One configured topic that does not match its pattern ([`validate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTopic {
    /// Which topic: `source events`, `agent events`, `source broadcast` or `agent broadcast`.
    pub what: &'static str,
    /// The configured value.
    pub topic: String,
    /// The pattern it must match.
    pub pattern: &'static str,
}

impl std::fmt::Display for InvalidTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {} topic {:?}, it should match `{}`", self.what, self.topic, self.pattern)
    }
}

/// Why a topic cannot be validated, derived or trusted (docs/protocol.md §7.2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Neither `topics.sourceEvents` nor `topics.agentEvents` is set.
    #[error("the topics must be set (topics.sourceEvents and topics.agentEvents)")]
    NotSet,
    /// Configured topics do not match their patterns (every one is listed).
    #[error("{}", join(.0))]
    Invalid(Vec<InvalidTopic>),
    /// The topic is not an events topic ([`EVENTS_PATTERN`]), so it names no source.
    #[error("failed to get source from topic: {topic:?}")]
    NoSourceSegment {
        /// The topic.
        topic: String,
    },
    /// A value to put into a topic level is empty or holds `/`, `+`, `#` or NUL.
    #[error("{what} {value:?} cannot be used as a topic segment")]
    InvalidSegment {
        /// What the value is (`clustername`, `cluster name`, `source id`, `consumer`).
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The derived publish topic still has a wildcard or a `$share/` prefix.
    #[error("derived publish topic {topic:?} still has a wildcard or a $share prefix")]
    NotAPublishTopic {
        /// The derived topic.
        topic: String,
    },
    /// The event's type cannot be parsed.
    #[error("unsupported event type: {source}")]
    UnsupportedType {
        /// The parse error.
        #[source]
        source: maestro_api::Error,
    },
    /// The event lacks an extension the routing needs.
    #[error("the event has no {extension} extension")]
    MissingExtension {
        /// The extension (`clustername`, `originalsource`).
        extension: &'static str,
    },
    /// A status resync to every cluster, without `topics.sourceBroadcast`.
    #[error("the source broadcast topic not set (needed for a resync to all clusters)")]
    NoSourceBroadcast,
    /// The source segment of `agentEvents` is not the client's source id (sdk-go refuses it
    /// too).
    #[error(
        "the topic source {topic_source:?} of {topic:?} does not match the client sourceID {source_id:?}"
    )]
    SourceMismatch {
        /// The source segment of the topic.
        topic_source: String,
        /// The `agentEvents` topic.
        topic: String,
        /// The client's source id.
        source_id: String,
    },
    /// An agent event arrived on a topic that is not an agent topic.
    #[error("{topic:?} is not an agent events topic")]
    NotAnAgentTopic {
        /// The topic.
        topic: String,
    },
    /// An agent event whose `clustername` is not the consumer of the topic it arrived on.
    #[error(
        "the event claims clustername {claimed:?} but arrived on consumer {consumer:?}'s topic {topic:?}"
    )]
    ForeignCluster {
        /// The event's `clustername`, if any.
        claimed: Option<String>,
        /// The topic's consumer.
        consumer: String,
        /// The topic.
        topic: String,
    },
    /// Something other than a spec resync request on the agent broadcast topic.
    #[error("only spec resync requests are accepted on the agent broadcast topic {topic:?}, not {ty:?}")]
    NotASpecResync {
        /// The topic.
        topic: String,
        /// The event's type.
        ty: String,
    },
}

fn join(invalid: &[InvalidTopic]) -> String {
    invalid.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Checks every configured topic against its pattern (sdk-go `validateTopics`).
///
/// # Errors
/// [`TopicError::NotSet`]; [`TopicError::Invalid`] listing every invalid topic and the pattern
/// it must match.
pub fn validate(topics: &MqttTopics) -> Result<(), TopicError> {
    if topics.source_events.is_empty() && topics.agent_events.is_empty() {
        return Err(TopicError::NotSet);
    }
    let mut errs = Vec::new();
    let mut check = |what: &'static str, topic: &str, re: &Regex, pattern: &'static str| {
        if !re.is_match(topic) {
            errs.push(InvalidTopic { what, topic: topic.to_owned(), pattern });
        }
    };
    check("source events", &topics.source_events, &SOURCE_EVENTS, SOURCE_EVENTS_PATTERN);
    check("agent events", &topics.agent_events, &AGENT_EVENTS, AGENT_EVENTS_PATTERN);
    if let Some(t) = topics.source_broadcast() {
        check("source broadcast", t, &SOURCE_BROADCAST, SOURCE_BROADCAST_PATTERN);
    }
    if let Some(t) = topics.agent_broadcast() {
        check("agent broadcast", t, &AGENT_BROADCAST, AGENT_BROADCAST_PATTERN);
    }
    if errs.is_empty() { Ok(()) } else { Err(TopicError::Invalid(errs)) }
}

/// The source segment of an events topic: index 1, or 3 after `$share/<group>/` (sdk-go
/// `getSourceFromEventsTopic`). May be `+`.
///
/// # Errors
/// [`TopicError::NoSourceSegment`] when the topic does not match [`EVENTS_PATTERN`].
pub fn source_from_events_topic(topic: &str) -> Result<&str, TopicError> {
    let none = || TopicError::NoSourceSegment { topic: topic.to_owned() };
    if !EVENTS.is_match(topic) {
        return Err(none());
    }
    let index = if topic.starts_with("$share") { 3 } else { 1 };
    topic.split('/').nth(index).ok_or_else(none)
}

/// Go's `strings.Replace(s, "+", v, 1)`.
fn replace_first(s: &str, value: &str) -> String {
    s.replacen('+', value, 1)
}

/// Go's `replaceLast(s, "+", v)`.
fn replace_last(s: &str, value: &str) -> String {
    match s.rfind('+') {
        Some(i) => format!("{}{value}{}", &s[..i], &s[i + 1..]),
        None => s.to_owned(),
    }
}

fn check_segment(what: &'static str, value: &str) -> Result<(), TopicError> {
    if value.is_empty() || value.contains(['/', '+', '#', '\0']) {
        return Err(TopicError::InvalidSegment { what, value: value.to_owned() });
    }
    Ok(())
}

fn check_publish_topic(topic: String) -> Result<String, TopicError> {
    if topic.contains(['+', '#']) || topic.starts_with("$share/") {
        return Err(TopicError::NotAPublishTopic { topic });
    }
    Ok(topic)
}

fn action(event: &Event) -> Result<Action, TopicError> {
    EventType::parse(event.ty()).map(|t| t.action).map_err(|source| TopicError::UnsupportedType { source })
}

fn extension(event: &Event, extension: &'static str) -> Result<String, TopicError> {
    ext::get_str(event, extension).ok_or(TopicError::MissingExtension { extension })
}

/// Where a source publishes `event` (docs/protocol.md §7.2): a `resync_request` with
/// `clustername == ""` goes to `sourceBroadcast` with its first `+` replaced by `source_id`;
/// everything else to `sourceEvents` with the first `+` replaced by the event's `clustername`.
///
/// # Errors
/// [`TopicError::UnsupportedType`]; [`TopicError::MissingExtension`] without `clustername`;
/// [`TopicError::NoSourceBroadcast`] for a broadcast without `sourceBroadcast`;
/// [`TopicError::InvalidSegment`] for an empty or invalid cluster name;
/// [`TopicError::NotAPublishTopic`] when the result is not a valid publish topic.
pub fn source_publish_topic(
    topics: &MqttTopics,
    source_id: &str,
    event: &Event,
) -> Result<String, TopicError> {
    let action = action(event)?;
    let cluster = extension(event, ext::CLUSTER_NAME)?;
    if action == Action::ResyncRequest && cluster.is_empty() {
        let broadcast = topics.source_broadcast().ok_or(TopicError::NoSourceBroadcast)?;
        check_segment("source id", source_id)?;
        return check_publish_topic(replace_first(broadcast, source_id));
    }
    check_segment("clustername", &cluster)?;
    check_publish_topic(replace_first(&topics.source_events, &cluster))
}

/// What a source subscribes to: `agentEvents` as configured (+ `agentBroadcast` if set).
///
/// # Errors
/// [`TopicError::NoSourceSegment`] when `agentEvents` is not an events topic;
/// [`TopicError::SourceMismatch`] when its source segment is not `source_id` (sdk-go refuses
/// this too).
pub fn source_subscriptions(topics: &MqttTopics, source_id: &str) -> Result<Vec<String>, TopicError> {
    let topic_source = source_from_events_topic(&topics.agent_events)?;
    if topic_source != source_id {
        return Err(TopicError::SourceMismatch {
            topic_source: topic_source.to_owned(),
            topic: topics.agent_events.clone(),
            source_id: source_id.to_owned(),
        });
    }
    let mut subs = vec![topics.agent_events.clone()];
    subs.extend(topics.agent_broadcast().map(str::to_owned));
    Ok(subs)
}

/// What an agent subscribes to: `sourceEvents` with its last `+` replaced by `cluster`
/// (+ `sourceBroadcast` as configured, if set).
///
/// # Errors
/// [`TopicError::InvalidSegment`] when `cluster` is not a valid topic segment.
pub fn agent_subscriptions(topics: &MqttTopics, cluster: &str) -> Result<Vec<String>, TopicError> {
    check_segment("cluster name", cluster)?;
    let mut subs = vec![replace_last(&topics.source_events, cluster)];
    subs.extend(topics.source_broadcast().map(str::to_owned));
    Ok(subs)
}

/// Where an agent publishes `event` (docs/protocol.md §7.2): a `resync_request` with
/// `originalsource == ""` goes to `agentBroadcast` (first `+` → cluster) if set, else to
/// `agentEvents` (last `+` → cluster); everything else to `agentEvents` with the last `+`
/// replaced by the cluster and then the (new) last `+` replaced by the source segment of
/// `agentEvents`.
///
/// # Errors
/// [`TopicError::UnsupportedType`]; [`TopicError::MissingExtension`] without
/// `originalsource`; [`TopicError::InvalidSegment`] for an invalid cluster;
/// [`TopicError::NotAPublishTopic`] when the result is not a valid publish topic (e.g.
/// `agentEvents` names no source: `sources/+/consumers/+/agentevents`).
pub fn agent_publish_topic(topics: &MqttTopics, cluster: &str, event: &Event) -> Result<String, TopicError> {
    let action = action(event)?;
    let original_source = extension(event, ext::ORIGINAL_SOURCE)?;
    check_segment("cluster name", cluster)?;
    if action == Action::ResyncRequest && original_source.is_empty() {
        return check_publish_topic(match topics.agent_broadcast() {
            Some(broadcast) => replace_first(broadcast, cluster),
            None => replace_last(&topics.agent_events, cluster),
        });
    }
    let topic_source = source_from_events_topic(&topics.agent_events)?;
    let topic = replace_last(&topics.agent_events, cluster);
    check_publish_topic(replace_last(&topic, topic_source))
}

/// Which consumer an agent event's topic belongs to (docs/protocol.md §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentTopic<'a> {
    /// `<a>/<source>/<b>/<consumer>/agentevents`: the statuses and spec resync requests of one
    /// consumer.
    Events(&'a str),
    /// `<a>/<consumer>/agentbroadcast`: the spec resync requests of one consumer to every source.
    Broadcast(&'a str),
}

/// Reads the consumer out of the topic an agent event arrived on; `None` for any other topic
/// (or a consumer level that is empty or a wildcard).
pub fn agent_topic(topic: &str) -> Option<AgentTopic<'_>> {
    let levels: Vec<&str> = topic.split('/').collect();
    let found = match levels.as_slice() {
        [_, _, _, consumer, "agentevents"] => AgentTopic::Events(consumer),
        [_, consumer, "agentbroadcast"] => AgentTopic::Broadcast(consumer),
        _ => return None,
    };
    let (AgentTopic::Events(consumer) | AgentTopic::Broadcast(consumer)) = found;
    check_segment("consumer", consumer).ok().map(|()| found)
}

/// Checks that the agent event `event`, received on `topic`, speaks only for the consumer that
/// topic belongs to. A broker ACL lets each agent publish only on its own topics; this check
/// makes the topic's consumer binding on the event: its `clustername` must be that consumer.
/// On the agent broadcast topic only spec resync requests are accepted, so statuses arrive
/// only on per-consumer `agentevents` topics.
///
/// # Errors
/// [`TopicError::NotAnAgentTopic`]; [`TopicError::ForeignCluster`] naming the topic's
/// consumer and the claimed cluster when the event has no (or another) `clustername`;
/// [`TopicError::UnsupportedType`] or [`TopicError::NotASpecResync`] for a broadcast that is
/// not a spec resync request.
pub fn check_agent_origin(topic: &str, event: &Event) -> Result<(), TopicError> {
    let place = agent_topic(topic).ok_or_else(|| TopicError::NotAnAgentTopic { topic: topic.to_owned() })?;
    let (AgentTopic::Events(consumer) | AgentTopic::Broadcast(consumer)) = place;
    let claimed = ext::get_str(event, ext::CLUSTER_NAME);
    if claimed.as_deref() != Some(consumer) {
        return Err(TopicError::ForeignCluster {
            claimed,
            consumer: consumer.to_owned(),
            topic: topic.to_owned(),
        });
    }
    if let AgentTopic::Broadcast(_) = place {
        let ty = EventType::parse(event.ty()).map_err(|source| TopicError::UnsupportedType { source })?;
        if ty.sub_resource != SubResource::Spec || ty.action != Action::ResyncRequest {
            return Err(TopicError::NotASpecResync { topic: topic.to_owned(), ty: event.ty().to_owned() });
        }
    }
    Ok(())
}

/// True when `topic` matches the subscription `filter` (MQTT wildcards `+` and `#`; a
/// `$share/<group>/` prefix is ignored).
pub fn matches_filter(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or("", |(_, f)| f),
        None => filter,
    };
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use maestro_api::codec::{self, SpecEventBuilder, StatusEventBuilder};
    use maestro_api::payload::{ManifestBundleStatus, ResourceVersionList, StatusHashList};

    fn server() -> MqttTopics {
        MqttTopics {
            source_broadcast: Some("sources/maestro/sourcebroadcast".into()),
            ..MqttTopics::maestro("maestro")
        }
    }

    fn shared_server() -> MqttTopics {
        MqttTopics {
            agent_events: "$share/statussubscribers/sources/maestro/consumers/+/agentevents".into(),
            ..server()
        }
    }

    fn agent(cluster: &str) -> MqttTopics {
        MqttTopics {
            source_events: format!("sources/maestro/consumers/{cluster}/sourceevents"),
            agent_events: format!("sources/maestro/consumers/{cluster}/agentevents"),
            source_broadcast: Some("sources/maestro/sourcebroadcast".into()),
            agent_broadcast: None,
        }
    }

    fn status(cluster: &str, original_source: &str) -> Event {
        StatusEventBuilder {
            source: "a",
            resource_id: "r",
            resource_version: 1,
            cluster_name: cluster,
            original_source,
            sequence_id: "1",
            status_hash: "h",
            metadata: None,
            action: Action::Update,
        }
        .build(&ManifestBundleStatus::default())
    }

    #[test]
    fn patterns_accept_the_maestro_layouts() {
        for t in [server(), shared_server(), agent("cluster-1"), MqttTopics::maestro("maestro")] {
            validate(&t).unwrap();
        }
        let bad = MqttTopics { source_events: "sources/maestro/consumers/+/agentevents".into(), ..server() };
        assert!(validate(&bad).unwrap_err().to_string().contains("source events"));
        assert!(validate(&MqttTopics::default()).unwrap_err().to_string().contains("must be set"));
        let bad = MqttTopics { agent_broadcast: Some("sources/+/sourcebroadcast".into()), ..server() };
        assert!(validate(&bad).unwrap_err().to_string().contains("agent broadcast"));
    }

    #[test]
    fn source_segment_is_read_with_and_without_share() {
        assert_eq!(source_from_events_topic("sources/maestro/consumers/+/agentevents").unwrap(), "maestro");
        assert_eq!(
            source_from_events_topic("$share/statussubscribers/sources/maestro/consumers/+/agentevents")
                .unwrap(),
            "maestro"
        );
        assert_eq!(source_from_events_topic("sources/+/consumers/+/agentevents").unwrap(), "+");
        assert!(source_from_events_topic("a/b").is_err());
    }

    #[test]
    fn source_publish_rules() {
        let spec = SpecEventBuilder::new("maestro", "r", 1, "cluster1").build();
        assert_eq!(
            source_publish_topic(&server(), "maestro", &spec).unwrap(),
            "sources/maestro/consumers/cluster1/sourceevents"
        );
        assert_eq!(
            source_publish_topic(&shared_server(), "maestro", &spec).unwrap(),
            "sources/maestro/consumers/cluster1/sourceevents"
        );
        // A status resync for one cluster goes to its events topic; for all clusters to the broadcast.
        let one = codec::status_resync_request("maestro", "cluster2", &StatusHashList::default());
        assert_eq!(
            source_publish_topic(&server(), "maestro", &one).unwrap(),
            "sources/maestro/consumers/cluster2/sourceevents"
        );
        let all = codec::status_resync_request("maestro", "", &StatusHashList::default());
        assert_eq!(
            source_publish_topic(&server(), "maestro", &all).unwrap(),
            "sources/maestro/sourcebroadcast"
        );
        let with_plus = MqttTopics { source_broadcast: Some("sources/+/sourcebroadcast".into()), ..server() };
        assert_eq!(
            source_publish_topic(&with_plus, "maestro", &all).unwrap(),
            "sources/maestro/sourcebroadcast"
        );
        let err =
            source_publish_topic(&MqttTopics::maestro("maestro"), "maestro", &all).unwrap_err().to_string();
        assert!(err.contains("broadcast topic not set"), "{err}");
        // An empty clustername on a spec event cannot be routed.
        let no_cluster = SpecEventBuilder::new("maestro", "r", 1, "").build();
        assert!(
            source_publish_topic(&server(), "maestro", &no_cluster)
                .unwrap_err()
                .to_string()
                .contains("clustername")
        );
        // First `+` is replaced (Go quirk): a source-wildcard layout leaves a `+` behind.
        let two = MqttTopics { source_events: "sources/+/consumers/+/sourceevents".into(), ..server() };
        assert!(source_publish_topic(&two, "maestro", &spec).unwrap_err().to_string().contains("wildcard"));
    }

    #[test]
    fn source_subscribe_rules() {
        assert_eq!(
            source_subscriptions(&server(), "maestro").unwrap(),
            vec!["sources/maestro/consumers/+/agentevents"]
        );
        assert_eq!(
            source_subscriptions(&shared_server(), "maestro").unwrap(),
            vec!["$share/statussubscribers/sources/maestro/consumers/+/agentevents"]
        );
        let with_bc = MqttTopics { agent_broadcast: Some("sources/+/agentbroadcast".into()), ..server() };
        assert_eq!(source_subscriptions(&with_bc, "maestro").unwrap()[1], "sources/+/agentbroadcast");
        assert!(source_subscriptions(&server(), "other").unwrap_err().to_string().contains("does not match"));
    }

    #[test]
    fn agent_subscribe_rules() {
        // The agent's own layout names its cluster; the server layout gets the last `+` replaced.
        assert_eq!(
            agent_subscriptions(&agent("cluster1"), "cluster1").unwrap(),
            vec!["sources/maestro/consumers/cluster1/sourceevents", "sources/maestro/sourcebroadcast"]
        );
        assert_eq!(
            agent_subscriptions(&MqttTopics::maestro("maestro"), "c2").unwrap(),
            vec!["sources/maestro/consumers/c2/sourceevents"]
        );
        let two = MqttTopics { source_events: "sources/+/consumers/+/sourceevents".into(), ..server() };
        assert_eq!(agent_subscriptions(&two, "c3").unwrap()[0], "sources/+/consumers/c3/sourceevents");
        assert!(agent_subscriptions(&server(), "a/b").is_err());
    }

    #[test]
    fn agent_publish_rules() {
        let st = status("cluster1", "maestro");
        assert_eq!(
            agent_publish_topic(&agent("cluster1"), "cluster1", &st).unwrap(),
            "sources/maestro/consumers/cluster1/agentevents"
        );
        assert_eq!(
            agent_publish_topic(&MqttTopics::maestro("maestro"), "cluster1", &st).unwrap(),
            "sources/maestro/consumers/cluster1/agentevents"
        );
        // Spec resync to all sources: agentBroadcast (first `+` → cluster) or agentEvents.
        let resync = codec::spec_resync_request("agent", "cluster1", &ResourceVersionList::default());
        let bc = MqttTopics { agent_broadcast: Some("sources/+/agentbroadcast".into()), ..agent("cluster1") };
        assert_eq!(agent_publish_topic(&bc, "cluster1", &resync).unwrap(), "sources/cluster1/agentbroadcast");
        assert_eq!(
            agent_publish_topic(&MqttTopics::maestro("maestro"), "cluster1", &resync).unwrap(),
            "sources/maestro/consumers/cluster1/agentevents"
        );
        // A `$share` agentEvents cannot be published to; a source wildcard cannot be resolved.
        assert!(
            agent_publish_topic(&shared_server(), "cluster1", &st)
                .unwrap_err()
                .to_string()
                .contains("$share")
        );
        let any_source = MqttTopics { agent_events: "sources/+/consumers/+/agentevents".into(), ..server() };
        assert!(
            agent_publish_topic(&any_source, "cluster1", &st).unwrap_err().to_string().contains("wildcard")
        );
        let mut no_os = st.clone();
        no_os.remove_extension(ext::ORIGINAL_SOURCE);
        assert!(
            agent_publish_topic(&agent("cluster1"), "cluster1", &no_os)
                .unwrap_err()
                .to_string()
                .contains("originalsource")
        );
    }

    #[test]
    fn agent_topics_name_their_consumer() {
        assert_eq!(agent_topic("sources/maestro/consumers/c1/agentevents"), Some(AgentTopic::Events("c1")));
        assert_eq!(agent_topic("sources/c1/agentbroadcast"), Some(AgentTopic::Broadcast("c1")));
        for other in [
            "sources/maestro/consumers/c1/sourceevents",
            "sources/maestro/consumers//agentevents",
            "sources/maestro/consumers/+/agentevents",
            "sources/maestro/consumers/c1/x/agentevents",
            "sources/+/agentbroadcast",
            "sources/maestro/sourcebroadcast",
        ] {
            assert_eq!(agent_topic(other), None, "{other}");
        }
    }

    #[test]
    fn agent_origin_binds_the_clustername_to_the_topic() {
        let own = "sources/maestro/consumers/cluster-a/agentevents";
        check_agent_origin(own, &status("cluster-a", "maestro")).unwrap();
        let err = check_agent_origin(own, &status("cluster-b", "maestro")).unwrap_err().to_string();
        assert!(err.contains("cluster-b") && err.contains(own), "{err}");
        let mut none = status("cluster-a", "maestro");
        none.remove_extension(ext::CLUSTER_NAME);
        assert!(check_agent_origin(own, &none).unwrap_err().to_string().contains("None"));
        assert!(check_agent_origin(own, &status("", "maestro")).is_err());
        // The broadcast topic carries only the spec resyncs of its own consumer.
        let resync = codec::spec_resync_request("agent", "cluster-a", &ResourceVersionList::default());
        check_agent_origin("sources/cluster-a/agentbroadcast", &resync).unwrap();
        check_agent_origin(own, &resync).unwrap();
        assert!(check_agent_origin("sources/cluster-b/agentbroadcast", &resync).is_err());
        let err = check_agent_origin("sources/cluster-a/agentbroadcast", &status("cluster-a", "maestro"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("only spec resync"), "{err}");
        assert!(check_agent_origin("sources/maestro/consumers/cluster-a/sourceevents", &resync).is_err());
    }

    /// Each refusal is its own variant; an unparsable type keeps the parser's error as source.
    #[test]
    fn errors_name_what_was_wrong() {
        assert!(matches!(validate(&MqttTopics::default()), Err(TopicError::NotSet)));
        let bad = MqttTopics { source_events: "a/b".into(), agent_events: "c/d".into(), ..server() };
        let Err(TopicError::Invalid(list)) = validate(&bad) else { panic!("two invalid topics") };
        assert_eq!(list.iter().map(|t| t.what).collect::<Vec<_>>(), ["source events", "agent events"]);
        let mut odd = SpecEventBuilder::new("maestro", "r", 1, "cluster1").build();
        maestro_api::AttributesWriter::set_type(&mut odd, "not.a.maestro.type");
        let err = source_publish_topic(&server(), "maestro", &odd).unwrap_err();
        assert!(matches!(err, TopicError::UnsupportedType { .. }), "{err}");
        assert!(std::error::Error::source(&err).is_some(), "the parse error is kept");
        let bad_cluster = SpecEventBuilder::new("maestro", "r", 1, "a/b").build();
        let err = source_publish_topic(&server(), "maestro", &bad_cluster).unwrap_err();
        assert!(matches!(err, TopicError::InvalidSegment { what: "clustername", .. }), "{err}");
        let err = source_subscriptions(&server(), "other").unwrap_err();
        assert!(matches!(err, TopicError::SourceMismatch { .. }), "{err}");
        let err = check_agent_origin("a/b", &status("c1", "maestro")).unwrap_err();
        assert!(matches!(err, TopicError::NotAnAgentTopic { .. }), "{err}");
    }

    #[test]
    fn filter_matching() {
        assert!(matches_filter(
            "sources/maestro/consumers/+/agentevents",
            "sources/maestro/consumers/c1/agentevents"
        ));
        assert!(matches_filter(
            "$share/g/sources/maestro/consumers/+/agentevents",
            "sources/maestro/consumers/c1/agentevents"
        ));
        assert!(matches_filter("sources/#", "sources/a/b"));
        assert!(!matches_filter(
            "sources/maestro/consumers/+/agentevents",
            "sources/maestro/consumers/c1/sourceevents"
        ));
        assert!(!matches_filter("a/+", "a/b/c"));
        assert!(!matches_filter("a/b/c", "a/b"));
    }
}
