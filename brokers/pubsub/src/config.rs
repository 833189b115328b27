//! [`PubSubConfig`]: the sdk-go Pub/Sub client configuration (docs/protocol.md §7.3 "Config keys",
//! serde camelCase like the Go YAML) plus our own limits, health checking and reconnect
//! settings; and [`PubSubConfig::maestro_defaults`], Maestro's topic/subscription layout.
//!
//! Durations accept Go strings (`"5m"`, `"20s"`, `"500ms"`, `"1m30s"`) or numbers (seconds).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::BACKEND;

pub use maestro_transport::duration::{DurationError, format_duration, parse_duration};

/// Environment variable naming the emulator (`host:port`), honoured when no `endpoint` is set.
pub const EMULATOR_HOST_ENV: &str = "PUBSUB_EMULATOR_HOST";
/// Default stream ack deadline (`receiveSettings.maxDurationPerAckExtension`): 10 s, the
/// service minimum: what a vanished client held (or what the service sent it after it was
/// gone) comes back after this long. google-cloud-pubsub's own default is 60 s.
pub const DEFAULT_STREAM_ACK_DEADLINE: Duration = Duration::from_secs(10);
/// Pub/Sub's hard limit on one message (data + attributes): 10 MB.
pub const PUBSUB_MESSAGE_LIMIT: usize = 10_000_000;
/// Default `maxEventBytes`: the 10 MB Pub/Sub limit minus 64 KiB headroom for attributes and
/// the structured-JSON overhead our size measure includes.
pub const DEFAULT_MAX_EVENT_BYTES: usize = PUBSUB_MESSAGE_LIMIT - 64 * 1024;

fn invalid(reason: impl Into<String>) -> maestro_transport::Error {
    maestro_transport::Error::invalid_config(BACKEND, reason)
}

/// Why a config document cannot be parsed ([`PubSubConfig::from_yaml`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigParseError {
    /// The text is not YAML/JSON, or a key has a value of the wrong type.
    #[error("{0}")]
    Yaml(#[source] serde_yaml_ng::Error),
}

/// Topic names (full resource names `projects/<p>/topics/<name>`). Empty = not configured.
/// A source needs `sourceEvents` + `sourceBroadcast`, an agent `agentEvents` +
/// `agentBroadcast`; `autoCreate` also uses the other two to recreate subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Topics {
    /// Spec events, source → agents (Maestro: `sourceevents`).
    pub source_events: String,
    /// Status resync requests, source → all agents (`sourcebroadcast`).
    pub source_broadcast: String,
    /// Status events, agents → sources (`agentevents`).
    pub agent_events: String,
    /// Spec resync requests, agents → all sources (`agentbroadcast`).
    pub agent_broadcast: String,
}

/// Subscription names (`projects/<p>/subscriptions/<name>`). Empty = not configured. A source
/// needs `agentEvents` + `agentBroadcast`, an agent `sourceEvents` + `sourceBroadcast`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Subscriptions {
    /// The agent's subscription on `sourceevents` (`sourceevents-<cluster>`).
    pub source_events: String,
    /// The agent's subscription on `sourcebroadcast` (`sourcebroadcast-<cluster>`).
    pub source_broadcast: String,
    /// The source's subscription on `agentevents` (`agentevents-<source>`).
    pub agent_events: String,
    /// The source's subscription on `agentbroadcast` (`agentbroadcast-<source>`).
    pub agent_broadcast: String,
}

/// gRPC keepalive (`keepaliveSettings`; Go defaults `time` 5 m, `timeout` 20 s): HTTP/2 pings
/// on the StreamingPull connection (`time` 0 = none). Not applied to the admin and publish
/// clients (google-cloud-pubsub 1.7 exposes no HTTP/2 keepalive setting); their liveness comes
/// from the health check ([`PubSubConfig::health_check_interval`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeepaliveSettings {
    /// Ping interval.
    #[serde(with = "maestro_transport::duration::go")]
    pub time: Duration,
    /// Ping ack timeout.
    #[serde(with = "maestro_transport::duration::go")]
    pub timeout: Duration,
    /// Ping without active streams.
    pub permit_without_stream: bool,
}

impl Default for KeepaliveSettings {
    fn default() -> Self {
        KeepaliveSettings {
            time: Duration::from_secs(300),
            timeout: Duration::from_secs(20),
            permit_without_stream: false,
        }
    }
}

/// StreamingPull receive settings (`receiveSettings`, Go `pubsub.ReceiveSettings`). Unset
/// fields keep the Google clients' defaults (1 h, 10 s here, 1,000 messages, 100 MiB). Applied: `maxOutstandingMessages`,
/// `maxOutstandingBytes` (flow control), `maxExtension` (max lease) and
/// `maxDurationPerAckExtension` (max lease extension). Accepted but unused:
/// `minDurationPerAckExtension` and `numGoroutines` (delivery is one sequential worker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReceiveSettings {
    /// Longest time a message is kept leased (default 1 h).
    #[serde(with = "maestro_transport::duration::go_opt", skip_serializing_if = "Option::is_none")]
    pub max_extension: Option<Duration>,
    /// Longest single ack-deadline extension, also the stream's ack deadline: how long the
    /// service waits before redelivering what a vanished client held. Default
    /// [`DEFAULT_STREAM_ACK_DEADLINE`] (10 s, the service minimum and the Go client's start).
    #[serde(with = "maestro_transport::duration::go_opt", skip_serializing_if = "Option::is_none")]
    pub max_duration_per_ack_extension: Option<Duration>,
    /// Shortest ack-deadline extension. Unused.
    #[serde(with = "maestro_transport::duration::go_opt", skip_serializing_if = "Option::is_none")]
    pub min_duration_per_ack_extension: Option<Duration>,
    /// Flow control: unacked messages outstanding per stream (default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_outstanding_messages: Option<i64>,
    /// Flow control: unacked bytes outstanding per stream (default 100 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_outstanding_bytes: Option<i64>,
    /// Go receive goroutines. Unused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_goroutines: Option<i64>,
}

/// The Pub/Sub client configuration (sdk-go keys, docs/protocol.md §7.3) and our own settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PubSubConfig {
    /// GCP project id: 6–30 characters, `^[a-z][a-z0-9-]*[a-z0-9]$`.
    #[serde(rename = "projectID")]
    pub project_id: String,
    /// Service endpoint: `host:port` or a URL (regional endpoint or emulator). Unset: the
    /// emulator from `PUBSUB_EMULATOR_HOST`, else `https://pubsub.googleapis.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Service account / authorized user JSON key file. Unset: application default
    /// credentials. Ignored (anonymous) when TLS is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
    /// Plain-text connection without credentials (the emulator). Requires `endpoint`.
    #[serde(rename = "disableTLS", default)]
    pub disable_tls: bool,
    /// Topic names.
    #[serde(default)]
    pub topics: Topics,
    /// Subscription names.
    #[serde(default)]
    pub subscriptions: Subscriptions,
    /// gRPC keepalive (accepted, not applied; see [`KeepaliveSettings`]).
    #[serde(default)]
    pub keepalive_settings: KeepaliveSettings,
    /// StreamingPull settings.
    #[serde(default)]
    pub receive_settings: ReceiveSettings,
    /// Largest event published, bytes of structured JSON ([`maestro_transport::event_size`]).
    /// Default [`DEFAULT_MAX_EVENT_BYTES`]; messages over 10 MB are refused anyway.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Recreate missing topics and this client's subscriptions (with Maestro's filters).
    /// Default (`None`): on for the emulator (plain text), off for real GCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create: Option<bool>,
    /// Server only: create a consumer's subscriptions (`sourceevents-<consumer>` with its
    /// filter, `sourcebroadcast-<consumer>`) when the consumer is registered. Turn it off where
    /// Terraform or a chart owns them. Default (`None`): the value of `autoCreate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_consumer_subscriptions: Option<bool>,
    /// How often the client checks (admin `GetTopic`/`GetSubscription`) that the service is
    /// reachable and its topics/subscriptions exist. Default 10 s; the tests use 250 ms.
    #[serde(default = "default_health_interval", with = "maestro_transport::duration::go")]
    pub health_check_interval: Duration,
    /// Deadline of each admin call of a health check (a dead service is noticed within
    /// about `healthCheckInterval` + this). Default 3 s.
    #[serde(default = "default_health_timeout", with = "maestro_transport::duration::go")]
    pub health_check_timeout: Duration,
    /// First retry delay after a failed check while down; doubled, jittered. Default 500 ms.
    #[serde(default = "default_initial_backoff", with = "maestro_transport::duration::go")]
    pub reconnect_initial_backoff: Duration,
    /// Retry delay cap. Default 30 s.
    #[serde(default = "default_max_backoff", with = "maestro_transport::duration::go")]
    pub reconnect_max_backoff: Duration,
    /// Deadline of one publish. Default 10 s.
    #[serde(default = "default_publish_timeout", with = "maestro_transport::duration::go")]
    pub publish_timeout: Duration,
}

fn default_max_event_bytes() -> usize {
    DEFAULT_MAX_EVENT_BYTES
}
fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_publish_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Where and how to connect, resolved from [`PubSubConfig`] and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    /// The endpoint URL (`http://…` or `https://…`); `None` = the library default.
    pub url: Option<String>,
    /// Plain text and anonymous credentials (emulator).
    pub plaintext: bool,
}

/// The subscription filter on an agent's `sourceevents-<cluster>` subscription (§7.3).
pub fn cluster_filter(cluster: &str) -> String {
    format!("attributes.\"ce-clustername\"=\"{cluster}\"")
}

/// The subscription filter on a source's `agentevents-<source>` subscription (§7.3).
pub fn source_filter(source_id: &str) -> String {
    format!("attributes.\"ce-originalsource\"=\"{source_id}\"")
}

impl PubSubConfig {
    /// A configuration for `project_id` with no endpoint, topics or subscriptions and every
    /// other field at its default.
    pub fn new(project_id: impl Into<String>) -> Self {
        PubSubConfig {
            project_id: project_id.into(),
            endpoint: None,
            credentials_file: None,
            disable_tls: false,
            topics: Topics::default(),
            subscriptions: Subscriptions::default(),
            keepalive_settings: KeepaliveSettings::default(),
            receive_settings: ReceiveSettings::default(),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            auto_create: None,
            create_consumer_subscriptions: None,
            health_check_interval: default_health_interval(),
            health_check_timeout: default_health_timeout(),
            reconnect_initial_backoff: default_initial_backoff(),
            reconnect_max_backoff: default_max_backoff(),
            publish_timeout: default_publish_timeout(),
        }
    }

    /// `projects/<p>/topics/<name>`.
    pub fn topic_name(&self, name: &str) -> String {
        format!("projects/{}/topics/{name}", self.project_id)
    }

    /// `projects/<p>/subscriptions/<name>`.
    pub fn subscription_name(&self, name: &str) -> String {
        format!("projects/{}/subscriptions/{name}", self.project_id)
    }

    /// Maestro's layout (docs/protocol.md §7.3) on `project`: the four topics `sourceevents`,
    /// `sourcebroadcast`, `agentevents`, `agentbroadcast`. Subscriptions are per client:
    /// complete them with [`PubSubConfig::for_source`] / [`PubSubConfig::for_agent`].
    /// `endpoint` (`host:port`), when given, is the emulator: plain text, auto-create on.
    pub fn maestro_defaults(project: &str, endpoint: Option<&str>) -> Self {
        let mut cfg = PubSubConfig::new(project);
        cfg.topics = Topics {
            source_events: cfg.topic_name("sourceevents"),
            source_broadcast: cfg.topic_name("sourcebroadcast"),
            agent_events: cfg.topic_name("agentevents"),
            agent_broadcast: cfg.topic_name("agentbroadcast"),
        };
        if let Some(ep) = endpoint {
            cfg.endpoint = Some(ep.to_owned());
            cfg.disable_tls = true;
        }
        cfg
    }

    /// Sets the source subscriptions `agentevents-<source_id>` and `agentbroadcast-<source_id>`.
    pub fn for_source(mut self, source_id: &str) -> Self {
        self.subscriptions.agent_events = self.subscription_name(&format!("agentevents-{source_id}"));
        self.subscriptions.agent_broadcast = self.subscription_name(&format!("agentbroadcast-{source_id}"));
        self
    }

    /// Sets the agent subscriptions `sourceevents-<cluster>` and `sourcebroadcast-<cluster>`.
    pub fn for_agent(mut self, cluster: &str) -> Self {
        self.subscriptions.source_events = self.subscription_name(&format!("sourceevents-{cluster}"));
        self.subscriptions.source_broadcast = self.subscription_name(&format!("sourcebroadcast-{cluster}"));
        self
    }

    /// Resolves endpoint and TLS: `endpoint` (with `http://` when `disableTLS`, else
    /// `https://`, unless it has a scheme); else `PUBSUB_EMULATOR_HOST` (plain text); else the
    /// default service endpoint with TLS.
    pub fn resolve_endpoint(&self) -> ResolvedEndpoint {
        let with_scheme = |ep: &str, plain: bool| {
            if ep.contains("://") {
                ep.to_owned()
            } else if plain {
                format!("http://{ep}")
            } else {
                format!("https://{ep}")
            }
        };
        match self.endpoint.as_deref().filter(|e| !e.is_empty()) {
            Some(ep) => {
                let plaintext = self.disable_tls || ep.starts_with("http://");
                ResolvedEndpoint { url: Some(with_scheme(ep, plaintext)), plaintext }
            }
            None => match std::env::var(EMULATOR_HOST_ENV).ok().filter(|h| !h.is_empty()) {
                Some(host) => ResolvedEndpoint { url: Some(with_scheme(&host, true)), plaintext: true },
                None => ResolvedEndpoint { url: None, plaintext: false },
            },
        }
    }

    /// Whether missing topics/subscriptions are recreated (`autoCreate`, default: plain text).
    pub fn auto_create_enabled(&self) -> bool {
        self.auto_create.unwrap_or_else(|| self.resolve_endpoint().plaintext)
    }

    /// Reads an sdk-go style YAML (or JSON) Pub/Sub config file, e.g. Go Maestro's
    /// `--message-broker-config-file` / `--workload-source-config` (docs/protocol.md §7.3 "Config
    /// keys"), and checks it with [`PubSubConfig::validate`].
    ///
    /// # Errors
    /// [`maestro_transport::Error::InvalidConfig`] naming the file and what is wrong (unreadable,
    /// not a config document, or an invalid value).
    pub fn from_file(path: impl AsRef<std::path::Path>) -> maestro_transport::Result<Self> {
        let path = path.as_ref();
        let text = maestro_transport::Error::read_config_file(BACKEND, path)?;
        let config = Self::from_yaml(&text)
            .map_err(|e| maestro_transport::Error::invalid_config_from(BACKEND, path.display(), e))?;
        config.validate().map_err(|e| match e {
            maestro_transport::Error::InvalidConfig { backend, reason, source } => {
                maestro_transport::Error::InvalidConfig {
                    backend,
                    reason: format!("{}: {reason}", path.display()),
                    source,
                }
            }
            other => other,
        })?;
        Ok(config)
    }

    /// Parses YAML/JSON text (no validation).
    ///
    /// # Errors
    /// [`ConfigParseError::Yaml`] (the parser's error) when the text is not a valid config
    /// document.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigParseError> {
        serde_yaml_ng::from_str(text).map_err(ConfigParseError::Yaml)
    }

    /// Whether the server creates a consumer's subscriptions when it is registered
    /// (`createConsumerSubscriptions`, default: [`PubSubConfig::auto_create_enabled`]).
    pub fn create_consumer_subscriptions_enabled(&self) -> bool {
        self.create_consumer_subscriptions.unwrap_or_else(|| self.auto_create_enabled())
    }

    /// Checks the values common to both roles.
    ///
    /// # Errors
    /// [`maestro_transport::Error::InvalidConfig`] for a bad project id, `disableTLS` without
    /// `endpoint`, a malformed topic/subscription name, or a zero size/interval.
    pub fn validate(&self) -> maestro_transport::Result<()> {
        validate_project_id(&self.project_id)?;
        if self.disable_tls && self.endpoint.as_deref().is_none_or(str::is_empty) {
            return Err(invalid("disableTLS requires endpoint"));
        }
        let t = &self.topics;
        for (key, v) in [
            ("topics.sourceEvents", &t.source_events),
            ("topics.sourceBroadcast", &t.source_broadcast),
            ("topics.agentEvents", &t.agent_events),
            ("topics.agentBroadcast", &t.agent_broadcast),
        ] {
            if !v.is_empty() {
                validate_resource_name(key, v, "topics")?;
            }
        }
        let s = &self.subscriptions;
        for (key, v) in [
            ("subscriptions.sourceEvents", &s.source_events),
            ("subscriptions.sourceBroadcast", &s.source_broadcast),
            ("subscriptions.agentEvents", &s.agent_events),
            ("subscriptions.agentBroadcast", &s.agent_broadcast),
        ] {
            if !v.is_empty() {
                validate_resource_name(key, v, "subscriptions")?;
            }
        }
        if self.max_event_bytes == 0 {
            return Err(invalid("maxEventBytes must be positive"));
        }
        let durations = [
            self.health_check_interval,
            self.health_check_timeout,
            self.reconnect_initial_backoff,
            self.publish_timeout,
        ];
        if durations.iter().any(Duration::is_zero) {
            return Err(invalid(
                "healthCheckInterval, healthCheckTimeout, reconnectInitialBackoff and publishTimeout must be positive",
            ));
        }
        Ok(())
    }

    /// Checks the keys a source needs: topics `sourceEvents`, `sourceBroadcast`, subscriptions
    /// `agentEvents`, `agentBroadcast` (docs/protocol.md §7.3).
    ///
    /// # Errors
    /// [`maestro_transport::Error::InvalidConfig`] naming the first missing key.
    pub fn validate_source(&self) -> maestro_transport::Result<()> {
        self.validate()?;
        require(&[
            ("topics.sourceEvents", &self.topics.source_events),
            ("topics.sourceBroadcast", &self.topics.source_broadcast),
            ("subscriptions.agentEvents", &self.subscriptions.agent_events),
            ("subscriptions.agentBroadcast", &self.subscriptions.agent_broadcast),
        ])
    }

    /// Checks the keys an agent needs: topics `agentEvents`, `agentBroadcast`, subscriptions
    /// `sourceEvents`, `sourceBroadcast` (docs/protocol.md §7.3).
    ///
    /// # Errors
    /// [`maestro_transport::Error::InvalidConfig`] naming the first missing key.
    pub fn validate_agent(&self) -> maestro_transport::Result<()> {
        self.validate()?;
        require(&[
            ("topics.agentEvents", &self.topics.agent_events),
            ("topics.agentBroadcast", &self.topics.agent_broadcast),
            ("subscriptions.sourceEvents", &self.subscriptions.source_events),
            ("subscriptions.sourceBroadcast", &self.subscriptions.source_broadcast),
        ])
    }
}

fn require(keys: &[(&str, &String)]) -> maestro_transport::Result<()> {
    match keys.iter().find(|(_, v)| v.is_empty()) {
        Some((key, _)) => Err(invalid(format!("{key} is required"))),
        None => Ok(()),
    }
}

/// Checks a GCP project id: 6–30 characters, `^[a-z][a-z0-9-]*[a-z0-9]$`.
///
/// # Errors
/// [`maestro_transport::Error::InvalidConfig`] explaining the rule.
pub fn validate_project_id(id: &str) -> maestro_transport::Result<()> {
    let b = id.as_bytes();
    let ok = (6..=30).contains(&b.len())
        && b.first().is_some_and(u8::is_ascii_lowercase)
        && b.last().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("projectID {id:?} must be 6-30 characters matching ^[a-z][a-z0-9-]*[a-z0-9]$")))
    }
}

/// Checks `projects/<project>/<kind>/<name>`: a valid project id and a 3–255 character name
/// starting with a letter, of letters, digits and `-_.~+%`, not starting with `goog`.
fn validate_resource_name(key: &str, value: &str, kind: &str) -> maestro_transport::Result<()> {
    let bad = |why: &str| invalid(format!("{key} {value:?} is not projects/<project>/{kind}/<name>: {why}"));
    let parts: Vec<&str> = value.split('/').collect();
    let [p, project, k, name] = parts.as_slice() else {
        return Err(bad("wrong number of segments"));
    };
    if *p != "projects" || *k != kind {
        return Err(bad("wrong segment names"));
    }
    validate_project_id(project).map_err(|_| bad("invalid project id"))?;
    let nb = name.as_bytes();
    let ok = (3..=255).contains(&nb.len())
        && nb.first().is_some_and(u8::is_ascii_alphabetic)
        && !name.starts_with("goog")
        && nb.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.~+%".contains(c));
    if ok { Ok(()) } else { Err(bad("invalid name")) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_sdk_go_keys() {
        let cfg: PubSubConfig = serde_json::from_value(serde_json::json!({
            "projectID": "maestro-test",
            "endpoint": "localhost:8085",
            "disableTLS": true,
            "topics": {
                "sourceEvents": "projects/maestro-test/topics/sourceevents",
                "sourceBroadcast": "projects/maestro-test/topics/sourcebroadcast"
            },
            "subscriptions": {
                "agentEvents": "projects/maestro-test/subscriptions/agentevents-maestro",
                "agentBroadcast": "projects/maestro-test/subscriptions/agentbroadcast-maestro"
            },
            "keepaliveSettings": {"time": "5m", "timeout": "20s", "permitWithoutStream": true},
            "receiveSettings": {
                "maxExtension": "10m", "maxDurationPerAckExtension": "1m",
                "minDurationPerAckExtension": "10s", "maxOutstandingMessages": 500,
                "maxOutstandingBytes": 1000000, "numGoroutines": 4
            }
        }))
        .unwrap();
        cfg.validate_source().unwrap();
        assert!(cfg.validate_agent().unwrap_err().to_string().contains("topics.agentEvents"));
        assert_eq!(cfg.keepalive_settings.time, Duration::from_secs(300));
        assert!(cfg.keepalive_settings.permit_without_stream);
        assert_eq!(cfg.receive_settings.max_extension, Some(Duration::from_secs(600)));
        assert_eq!(cfg.receive_settings.max_outstanding_messages, Some(500));
        assert_eq!(cfg.receive_settings.num_goroutines, Some(4));
        assert_eq!(cfg.max_event_bytes, DEFAULT_MAX_EVENT_BYTES);
        let ep = cfg.resolve_endpoint();
        assert_eq!(ep.url.as_deref(), Some("http://localhost:8085"));
        assert!(ep.plaintext && cfg.auto_create_enabled());
        let back: PubSubConfig = serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn validation_rules() {
        for bad in ["abc", "Maestro-test", "maestro-", "1maestro", "a234567890123456789012345678901"] {
            assert!(validate_project_id(bad).is_err(), "{bad}");
        }
        validate_project_id("maestro-test-1").unwrap();
        let mut cfg = PubSubConfig::new("maestro-test");
        cfg.disable_tls = true;
        assert!(cfg.validate().unwrap_err().to_string().contains("disableTLS requires endpoint"));
        let mut cfg = PubSubConfig::new("maestro-test");
        for bad in [
            "sourceevents",
            "projects/maestro-test/subscriptions/x1y",
            "projects/x/topics/abc",
            "projects/maestro-test/topics/9ab",
        ] {
            cfg.topics.source_events = bad.into();
            assert!(cfg.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn maestro_layout() {
        let cfg = PubSubConfig::maestro_defaults("maestro-test", Some("127.0.0.1:8085")).for_agent("c1");
        assert_eq!(cfg.topics.source_events, "projects/maestro-test/topics/sourceevents");
        assert_eq!(cfg.topics.agent_broadcast, "projects/maestro-test/topics/agentbroadcast");
        assert_eq!(cfg.subscriptions.source_events, "projects/maestro-test/subscriptions/sourceevents-c1");
        assert_eq!(
            cfg.subscriptions.source_broadcast,
            "projects/maestro-test/subscriptions/sourcebroadcast-c1"
        );
        cfg.validate_agent().unwrap();
        let src = PubSubConfig::maestro_defaults("maestro-test", None).for_source("maestro");
        assert_eq!(src.subscriptions.agent_events, "projects/maestro-test/subscriptions/agentevents-maestro");
        src.validate_source().unwrap();
        assert_eq!(cluster_filter("c1"), r#"attributes."ce-clustername"="c1""#);
        assert_eq!(source_filter("maestro"), r#"attributes."ce-originalsource"="maestro""#);
    }

    #[test]
    fn reads_a_go_maestro_yaml_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pubsub.yaml");
        std::fs::write(
            &path,
            "projectID: maestro-test\nendpoint: localhost:8085\ndisableTLS: true\ntopics:\n  \
             agentEvents: projects/maestro-test/topics/agentevents\n  \
             agentBroadcast: projects/maestro-test/topics/agentbroadcast\nsubscriptions:\n  \
             sourceEvents: projects/maestro-test/subscriptions/sourceevents-c1\n  \
             sourceBroadcast: projects/maestro-test/subscriptions/sourcebroadcast-c1\n",
        )
        .unwrap();
        let cfg = PubSubConfig::from_file(&path).unwrap();
        cfg.validate_agent().unwrap();
        assert_eq!(cfg.endpoint.as_deref(), Some("localhost:8085"));
        std::fs::write(&path, "projectID: Bad_Project\n").unwrap();
        let err = PubSubConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("pubsub.yaml") && err.contains("project"), "{err}");
        std::fs::write(&path, "projectID: [unclosed\n").unwrap();
        assert!(PubSubConfig::from_file(&path).unwrap_err().to_string().contains("pubsub.yaml"));
        let missing = PubSubConfig::from_file(dir.path().join("none.yaml")).unwrap_err().to_string();
        assert!(missing.contains("cannot read"), "{missing}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        for bad in ["", "10x", "-1s", "5m3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
