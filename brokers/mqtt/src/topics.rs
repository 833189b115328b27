//! Topic validation and derivation, exactly as sdk-go does it (protocol.md §7.2,
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

/// Checks every configured topic against its pattern (sdk-go `validateTopics`).
///
/// # Errors
/// A message listing every invalid topic and the pattern it must match.
pub fn validate(topics: &MqttTopics) -> Result<(), String> {
    if topics.source_events.is_empty() && topics.agent_events.is_empty() {
        return Err("the topics must be set (topics.sourceEvents and topics.agentEvents)".into());
    }
    let mut errs = Vec::new();
    let mut check = |what: &str, topic: &str, re: &Regex, pattern: &str| {
        if !re.is_match(topic) {
            errs.push(format!("invalid {what} topic {topic:?}, it should match `{pattern}`"));
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
    if errs.is_empty() { Ok(()) } else { Err(errs.join("; ")) }
}

/// The source segment of an events topic: index 1, or 3 after `$share/<group>/` (sdk-go
/// `getSourceFromEventsTopic`). May be `+`.
///
/// # Errors
/// When the topic does not match [`EVENTS_PATTERN`].
pub fn source_from_events_topic(topic: &str) -> Result<&str, String> {
    if !EVENTS.is_match(topic) {
        return Err(format!("failed to get source from topic: {topic:?}"));
    }
    let index = if topic.starts_with("$share") { 3 } else { 1 };
    topic.split('/').nth(index).ok_or_else(|| format!("failed to get source from topic: {topic:?}"))
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

fn check_segment(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.contains(['/', '+', '#', '\0']) {
        return Err(format!("{what} {value:?} cannot be used as a topic segment"));
    }
    Ok(())
}

fn check_publish_topic(topic: String) -> Result<String, String> {
    if topic.contains(['+', '#']) || topic.starts_with("$share/") {
        return Err(format!("derived publish topic {topic:?} still has a wildcard or a $share prefix"));
    }
    Ok(topic)
}

fn action(event: &Event) -> Result<Action, String> {
    EventType::parse(event.ty()).map(|t| t.action).map_err(|e| format!("unsupported event type: {e}"))
}

/// Where a source publishes `event` (protocol.md §7.2): a `resync_request` with
/// `clustername == ""` goes to `sourceBroadcast` with its first `+` replaced by `source_id`;
/// everything else to `sourceEvents` with the first `+` replaced by the event's `clustername`.
///
/// # Errors
/// An unparsable type; no `clustername`; a broadcast without `sourceBroadcast`; an empty or
/// invalid cluster name; a result that is not a valid publish topic.
pub fn source_publish_topic(topics: &MqttTopics, source_id: &str, event: &Event) -> Result<String, String> {
    let action = action(event)?;
    let cluster = ext::get_str(event, ext::CLUSTER_NAME)
        .ok_or_else(|| "the event has no clustername extension".to_owned())?;
    if action == Action::ResyncRequest && cluster.is_empty() {
        let broadcast = topics.source_broadcast().ok_or_else(|| {
            "the source broadcast topic not set (needed for a resync to all clusters)".to_owned()
        })?;
        check_segment("source id", source_id)?;
        return check_publish_topic(replace_first(broadcast, source_id));
    }
    check_segment("clustername", &cluster)?;
    check_publish_topic(replace_first(&topics.source_events, &cluster))
}

/// What a source subscribes to: `agentEvents` as configured (+ `agentBroadcast` if set).
///
/// # Errors
/// When the source segment of `agentEvents` is not `source_id` (sdk-go refuses this too).
pub fn source_subscriptions(topics: &MqttTopics, source_id: &str) -> Result<Vec<String>, String> {
    let topic_source = source_from_events_topic(&topics.agent_events)?;
    if topic_source != source_id {
        return Err(format!(
            "the topic source {:?} of {:?} does not match the client sourceID {source_id:?}",
            topic_source, topics.agent_events
        ));
    }
    let mut subs = vec![topics.agent_events.clone()];
    subs.extend(topics.agent_broadcast().map(str::to_owned));
    Ok(subs)
}

/// What an agent subscribes to: `sourceEvents` with its last `+` replaced by `cluster`
/// (+ `sourceBroadcast` as configured, if set).
///
/// # Errors
/// When `cluster` is not a valid topic segment.
pub fn agent_subscriptions(topics: &MqttTopics, cluster: &str) -> Result<Vec<String>, String> {
    check_segment("cluster name", cluster)?;
    let mut subs = vec![replace_last(&topics.source_events, cluster)];
    subs.extend(topics.source_broadcast().map(str::to_owned));
    Ok(subs)
}

/// Where an agent publishes `event` (protocol.md §7.2): a `resync_request` with
/// `originalsource == ""` goes to `agentBroadcast` (first `+` → cluster) if set, else to
/// `agentEvents` (last `+` → cluster); everything else to `agentEvents` with the last `+`
/// replaced by the cluster and then the (new) last `+` replaced by the source segment of
/// `agentEvents`.
///
/// # Errors
/// An unparsable type; no `originalsource`; a result that is not a valid publish topic (e.g.
/// `agentEvents` names no source: `sources/+/consumers/+/agentevents`).
pub fn agent_publish_topic(topics: &MqttTopics, cluster: &str, event: &Event) -> Result<String, String> {
    let action = action(event)?;
    let original_source = ext::get_str(event, ext::ORIGINAL_SOURCE)
        .ok_or_else(|| "the event has no originalsource extension".to_owned())?;
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

/// Which consumer an agent event's topic belongs to (protocol.md §7.2).
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
/// A message naming the topic's consumer and the claimed cluster: the topic is not an agent
/// topic; the event has no (or another) `clustername`; a broadcast that is not a spec resync.
pub fn check_agent_origin(topic: &str, event: &Event) -> Result<(), String> {
    let place = agent_topic(topic).ok_or_else(|| format!("{topic:?} is not an agent events topic"))?;
    let (AgentTopic::Events(consumer) | AgentTopic::Broadcast(consumer)) = place;
    let claimed = ext::get_str(event, ext::CLUSTER_NAME);
    if claimed.as_deref() != Some(consumer) {
        return Err(format!(
            "the event claims clustername {claimed:?} but arrived on consumer {consumer:?}'s topic {topic:?}"
        ));
    }
    if let AgentTopic::Broadcast(_) = place {
        let ty = EventType::parse(event.ty()).map_err(|e| format!("unsupported event type: {e}"))?;
        if ty.sub_resource != SubResource::Spec || ty.action != Action::ResyncRequest {
            return Err(format!(
                "only spec resync requests are accepted on the agent broadcast topic {topic:?}, not {:?}",
                event.ty()
            ));
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
        assert!(validate(&bad).unwrap_err().contains("source events"));
        assert!(validate(&MqttTopics::default()).unwrap_err().contains("must be set"));
        let bad = MqttTopics { agent_broadcast: Some("sources/+/sourcebroadcast".into()), ..server() };
        assert!(validate(&bad).unwrap_err().contains("agent broadcast"));
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
        let err = source_publish_topic(&MqttTopics::maestro("maestro"), "maestro", &all).unwrap_err();
        assert!(err.contains("broadcast topic not set"), "{err}");
        // An empty clustername on a spec event cannot be routed.
        let no_cluster = SpecEventBuilder::new("maestro", "r", 1, "").build();
        assert!(source_publish_topic(&server(), "maestro", &no_cluster).unwrap_err().contains("clustername"));
        // First `+` is replaced (Go quirk): a source-wildcard layout leaves a `+` behind.
        let two = MqttTopics { source_events: "sources/+/consumers/+/sourceevents".into(), ..server() };
        assert!(source_publish_topic(&two, "maestro", &spec).unwrap_err().contains("wildcard"));
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
        assert!(source_subscriptions(&server(), "other").unwrap_err().contains("does not match"));
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
        assert!(agent_publish_topic(&shared_server(), "cluster1", &st).unwrap_err().contains("$share"));
        let any_source = MqttTopics { agent_events: "sources/+/consumers/+/agentevents".into(), ..server() };
        assert!(agent_publish_topic(&any_source, "cluster1", &st).unwrap_err().contains("wildcard"));
        let mut no_os = st.clone();
        no_os.remove_extension(ext::ORIGINAL_SOURCE);
        assert!(
            agent_publish_topic(&agent("cluster1"), "cluster1", &no_os)
                .unwrap_err()
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
        let err = check_agent_origin(own, &status("cluster-b", "maestro")).unwrap_err();
        assert!(err.contains("cluster-b") && err.contains(own), "{err}");
        let mut none = status("cluster-a", "maestro");
        none.remove_extension(ext::CLUSTER_NAME);
        assert!(check_agent_origin(own, &none).unwrap_err().contains("None"));
        assert!(check_agent_origin(own, &status("", "maestro")).is_err());
        // The broadcast topic carries only the spec resyncs of its own consumer.
        let resync = codec::spec_resync_request("agent", "cluster-a", &ResourceVersionList::default());
        check_agent_origin("sources/cluster-a/agentbroadcast", &resync).unwrap();
        check_agent_origin(own, &resync).unwrap();
        assert!(check_agent_origin("sources/cluster-b/agentbroadcast", &resync).is_err());
        let err = check_agent_origin("sources/cluster-a/agentbroadcast", &status("cluster-a", "maestro"))
            .unwrap_err();
        assert!(err.contains("only spec resync"), "{err}");
        assert!(check_agent_origin("sources/maestro/consumers/cluster-a/sourceevents", &resync).is_err());
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
