//! [`MqttConfig`]: the sdk-go MQTT config file keys (docs/protocol.md §7.2) plus our own reconnect,
//! size and timeout settings, with a pure [`MqttConfig::validate`] and a YAML/JSON file loader
//! ([`MqttConfig::from_file`]) so an existing Maestro `--workload-source-config` /
//! `--mqtt-config` file works as is. Also the Go duration parser ([`parse_duration`]).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::BACKEND;
use crate::topics;

pub use maestro_transport::duration::{DurationError, format_duration, parse_duration};

/// Default keepalive: 60 s (docs/protocol.md §7.2).
pub const DEFAULT_KEEP_ALIVE_SECS: u16 = 60;
/// Default dial (connect + CONNACK) timeout: 60 s (docs/protocol.md §7.2).
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(60);
/// Default maximum event size: 512 KiB, the broker limit Maestro assumes (docs/protocol.md §7.2).
pub const DEFAULT_MAX_EVENT_BYTES: usize = maestro_transport::DEFAULT_MAX_EVENT_BYTES;
/// Default publish acknowledgement timeout: 10 s.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// The source client id Maestro uses when none is configured (`--client-id`, docs/protocol.md §7.2).
pub const DEFAULT_SOURCE_CLIENT_ID: &str = "maestro";

pub(crate) fn invalid(reason: impl Into<String>) -> maestro_transport::Error {
    maestro_transport::Error::invalid_config(BACKEND, reason)
}

/// [`maestro_transport::Error::InvalidConfig`] caused by `source`, whose message is the reason.
pub(crate) fn invalid_because(
    source: impl std::error::Error + Send + Sync + 'static,
) -> maestro_transport::Error {
    maestro_transport::Error::InvalidConfig {
        backend: BACKEND,
        reason: source.to_string(),
        source: Some(Box::new(source)),
    }
}

/// Why a config document cannot be parsed ([`MqttConfig::from_yaml`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigParseError {
    /// The text is not YAML/JSON, or a key has a value of the wrong type.
    #[error("{0}")]
    Yaml(#[source] serde_yaml_ng::Error),
}

/// The four topic patterns (`topics.*`, docs/protocol.md §7.2). `sourceEvents` and `agentEvents`
/// are required; the broadcast topics are optional (empty string = not set, as in Go).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttTopics {
    /// Source → agent events, e.g. `sources/maestro/consumers/+/sourceevents`.
    #[serde(default)]
    pub source_events: String,
    /// Agent → source events, e.g. `sources/maestro/consumers/+/agentevents` (the source may
    /// use `$share/<group>/…`).
    #[serde(default)]
    pub agent_events: String,
    /// Source → all agents (status resync for every cluster), e.g. `sources/maestro/sourcebroadcast`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_broadcast: Option<String>,
    /// Agent → all sources (spec resync from every source), e.g. `sources/+/agentbroadcast`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_broadcast: Option<String>,
}

impl MqttTopics {
    /// Maestro's layout for `source` (`sources/<source>/consumers/+/{sourceevents,agentevents}`),
    /// without broadcast topics.
    pub fn maestro(source: &str) -> Self {
        MqttTopics {
            source_events: format!("sources/{source}/consumers/+/sourceevents"),
            agent_events: format!("sources/{source}/consumers/+/agentevents"),
            source_broadcast: None,
            agent_broadcast: None,
        }
    }

    /// The source broadcast topic when set and non-empty.
    pub fn source_broadcast(&self) -> Option<&str> {
        self.source_broadcast.as_deref().filter(|s| !s.is_empty())
    }

    /// The agent broadcast topic when set and non-empty.
    pub fn agent_broadcast(&self) -> Option<&str> {
        self.agent_broadcast.as_deref().filter(|s| !s.is_empty())
    }
}

/// The MQTT client configuration. sdk-go keys (camelCase) plus ours; durations accept Go
/// strings (`"10s"`, `"500ms"`) or numbers (seconds).
///
/// TLS: used when a CA (`caFile`/`caData`) is configured; with a client certificate and key
/// as well it is mutual TLS. Go only enables TLS when a client cert+key is set (and then
/// requires a CA); we additionally accept a CA alone (server-authenticated TLS with
/// username/password), which Go would silently ignore. TLS 1.3 only, rustls with ring.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttConfig {
    /// Broker address `host:port` (required).
    #[serde(default)]
    pub broker_host: String,
    /// Username (sent when non-empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password (sent when non-empty; never logged, redacted in `Debug`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Keepalive in seconds. Default 60. rumqttc needs at least 5.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: u16,
    /// Timeout of TCP/TLS connect plus CONNACK. Default 60 s.
    #[serde(default = "default_dial_timeout", with = "maestro_transport::duration::go")]
    pub dial_timeout: Duration,
    /// Publish QoS, 0 or 1. Default 1. QoS 2 is refused.
    #[serde(default = "default_qos", rename = "pubQoS")]
    pub pub_qos: u8,
    /// Subscribe QoS, 0 or 1. Default 1. QoS 2 is refused.
    #[serde(default = "default_qos", rename = "subQoS")]
    pub sub_qos: u8,
    /// Topic patterns (required).
    #[serde(default)]
    pub topics: MqttTopics,
    /// Broker CA certificate file (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Broker CA certificate: PEM text or base64 of PEM (Go `[]byte`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_data: Option<String>,
    /// Client certificate file (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    /// Client certificate: PEM text or base64 of PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_data: Option<String>,
    /// Client private key file (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
    /// Client private key: PEM text or base64 of PEM (never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    /// Overrides the MQTT client id (default: source = the client id given to
    /// [`crate::MqttSource::connect`], agent = `<agentID>-client`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// First reconnect delay; doubled per failed attempt (with jitter), capped by
    /// `reconnectMaxBackoff`. Default 500 ms.
    #[serde(default = "default_initial_backoff", with = "maestro_transport::duration::go")]
    pub reconnect_initial_backoff: Duration,
    /// Reconnect delay cap. Default 30 s.
    #[serde(default = "default_max_backoff", with = "maestro_transport::duration::go")]
    pub reconnect_max_backoff: Duration,
    /// Largest event published, bytes of structured JSON ([`maestro_transport::event_size`]);
    /// larger ones fail with `TooLarge`. Also bounds received packets (twice this plus 64 KiB).
    /// Default 512 KiB.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// How long a publish waits for the broker's PUBACK. Default 10 s.
    #[serde(default = "default_publish_timeout", with = "maestro_transport::duration::go")]
    pub publish_timeout: Duration,
}

fn default_keep_alive() -> u16 {
    DEFAULT_KEEP_ALIVE_SECS
}
fn default_dial_timeout() -> Duration {
    DEFAULT_DIAL_TIMEOUT
}
fn default_qos() -> u8 {
    1
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_max_event_bytes() -> usize {
    DEFAULT_MAX_EVENT_BYTES
}
fn default_publish_timeout() -> Duration {
    DEFAULT_PUBLISH_TIMEOUT
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("MqttConfig")
            .field("broker_host", &self.broker_host)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("keep_alive", &self.keep_alive)
            .field("dial_timeout", &self.dial_timeout)
            .field("pub_qos", &self.pub_qos)
            .field("sub_qos", &self.sub_qos)
            .field("topics", &self.topics)
            .field("ca_file", &self.ca_file)
            .field("ca_data", &self.ca_data.as_ref().map(|_| "<set>"))
            .field("client_cert_file", &self.client_cert_file)
            .field("client_cert_data", &self.client_cert_data.as_ref().map(|_| "<set>"))
            .field("client_key_file", &self.client_key_file)
            .field("client_key_data", &redacted(&self.client_key_data))
            .field("client_id", &self.client_id)
            .field("reconnect_initial_backoff", &self.reconnect_initial_backoff)
            .field("reconnect_max_backoff", &self.reconnect_max_backoff)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("publish_timeout", &self.publish_timeout)
            .finish()
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

impl MqttConfig {
    /// A configuration for `broker_host` (`host:port`) and `topics`, every other field at its
    /// default.
    pub fn new(broker_host: impl Into<String>, topics: MqttTopics) -> Self {
        MqttConfig {
            broker_host: broker_host.into(),
            username: None,
            password: None,
            keep_alive: DEFAULT_KEEP_ALIVE_SECS,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            pub_qos: 1,
            sub_qos: 1,
            topics,
            ca_file: None,
            ca_data: None,
            client_cert_file: None,
            client_cert_data: None,
            client_key_file: None,
            client_key_data: None,
            client_id: None,
            reconnect_initial_backoff: default_initial_backoff(),
            reconnect_max_backoff: default_max_backoff(),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
        }
    }

    /// Reads a YAML (or JSON, a subset of YAML) config file with the sdk-go keys.
    ///
    /// # Errors
    /// [`maestro_transport::Error::InvalidConfig`] when the file cannot be read or parsed,
    /// or [`MqttConfig::validate`] fails.
    pub fn from_file(path: impl AsRef<Path>) -> maestro_transport::Result<Self> {
        let path = path.as_ref();
        let text = maestro_transport::Error::read_config_file(BACKEND, path)?;
        let config = Self::from_yaml(&text)
            .map_err(|e| maestro_transport::Error::invalid_config_from(BACKEND, path.display(), e))?;
        config.validate()?;
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

    /// The broker host and port.
    ///
    /// # Errors
    /// [`maestro_transport::Error::InvalidConfig`] unless `brokerHost` is `host:port`
    /// (`[v6]:port` accepted) with a non-zero port.
    pub fn host_port(&self) -> maestro_transport::Result<(String, u16)> {
        let bad = || invalid(format!("brokerHost {:?} must be host:port", self.broker_host));
        let (host, port) = self.broker_host.trim().rsplit_once(':').ok_or_else(bad)?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 || host.contains('/') {
            return Err(bad());
        }
        Ok((host.to_owned(), port))
    }

    /// True when TLS is used (a CA is configured).
    pub fn uses_tls(&self) -> bool {
        non_empty(&self.ca_file).is_some() || non_empty(&self.ca_data).is_some()
    }

    /// Checks every value without touching the file system or the network.
    ///
    /// # Errors
    /// [`maestro_transport::Error::InvalidConfig`] naming the first problem: `brokerHost`
    /// not `host:port`; `keepAlive` under 5; a zero timeout, backoff or size; a QoS other
    /// than 0/1 (2 is "not supported"); a topic not matching its docs/protocol.md §7.2 pattern;
    /// only one of client cert / key; a client cert without a CA (as Go); both the file and
    /// the data form of one TLS item.
    pub fn validate(&self) -> maestro_transport::Result<()> {
        self.host_port()?;
        if self.keep_alive < 5 {
            return Err(invalid("keepAlive must be at least 5 seconds"));
        }
        for (name, qos) in [("pubQoS", self.pub_qos), ("subQoS", self.sub_qos)] {
            match qos {
                0 | 1 => {}
                2 => return Err(invalid(format!("{name} 2 (exactly once) is not supported; use 0 or 1"))),
                n => return Err(invalid(format!("{name} {n} is not a QoS level; use 0 or 1"))),
            }
        }
        if self.dial_timeout.is_zero() || self.publish_timeout.is_zero() {
            return Err(invalid("dialTimeout and publishTimeout must be positive"));
        }
        if self.reconnect_initial_backoff.is_zero() || self.reconnect_max_backoff.is_zero() {
            return Err(invalid("reconnectInitialBackoff and reconnectMaxBackoff must be positive"));
        }
        if self.max_event_bytes == 0 || self.max_event_bytes > (u32::MAX as usize) / 4 {
            return Err(invalid("maxEventBytes must be positive and below 1 GiB"));
        }
        topics::validate(&self.topics).map_err(invalid_because)?;
        self.validate_tls()
    }

    fn validate_tls(&self) -> maestro_transport::Result<()> {
        let pairs = [
            ("caFile", &self.ca_file, "caData", &self.ca_data),
            ("clientCertFile", &self.client_cert_file, "clientCertData", &self.client_cert_data),
            ("clientKeyFile", &self.client_key_file, "clientKeyData", &self.client_key_data),
        ];
        for (file, f, data, d) in pairs {
            if non_empty(f).is_some() && non_empty(d).is_some() {
                return Err(invalid(format!("set only one of {file} and {data}")));
            }
        }
        let cert = non_empty(&self.client_cert_file).or(non_empty(&self.client_cert_data)).is_some();
        let key = non_empty(&self.client_key_file).or(non_empty(&self.client_key_data)).is_some();
        if cert != key {
            return Err(invalid("either both or none of the client certificate and key must be set"));
        }
        if cert && !self.uses_tls() {
            return Err(invalid("a client certificate requires caFile or caData"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MAESTRO_SERVER_YAML: &str = r#"
brokerHost: maestro-mqtt:1883
username: ""
password: s3cret
topics:
  sourceEvents: sources/maestro/consumers/+/sourceevents
  agentEvents: $share/statussubscribers/sources/maestro/consumers/+/agentevents
  sourceBroadcast: sources/maestro/sourcebroadcast
"#;

    #[test]
    fn parses_a_maestro_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mqtt.yaml");
        std::fs::write(&path, MAESTRO_SERVER_YAML).unwrap();
        let cfg = MqttConfig::from_file(&path).unwrap();
        assert_eq!(cfg.host_port().unwrap(), ("maestro-mqtt".to_owned(), 1883));
        assert_eq!((cfg.keep_alive, cfg.pub_qos, cfg.sub_qos), (60, 1, 1));
        assert_eq!(cfg.dial_timeout, Duration::from_secs(60));
        assert_eq!(cfg.topics.source_broadcast(), Some("sources/maestro/sourcebroadcast"));
        assert_eq!(cfg.topics.agent_broadcast(), None);
        assert_eq!(cfg.max_event_bytes, 512 * 1024);
        assert!(!cfg.uses_tls());
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("s3cret") && dbg.contains("<redacted>"), "{dbg}");
        let json: MqttConfig = serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
        assert_eq!(json, cfg);
    }

    #[test]
    fn our_keys_and_go_durations() {
        let cfg = MqttConfig::from_yaml(
            "{brokerHost: '[::1]:1884', keepAlive: 30, dialTimeout: 5s, pubQoS: 0, \
             reconnectInitialBackoff: 50ms, publishTimeout: 1.5, clientId: x, \
             topics: {sourceEvents: sources/maestro/consumers/c1/sourceevents, \
             agentEvents: sources/maestro/consumers/c1/agentevents}}",
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.host_port().unwrap(), ("::1".to_owned(), 1884));
        assert_eq!(cfg.dial_timeout, Duration::from_secs(5));
        assert_eq!(cfg.reconnect_initial_backoff, Duration::from_millis(50));
        assert_eq!(cfg.publish_timeout, Duration::from_millis(1500));
        assert_eq!(cfg.pub_qos, 0);
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("10x").is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let ok = MqttConfig::new("localhost:1883", MqttTopics::maestro("maestro"));
        ok.validate().unwrap();
        let check = |f: &dyn Fn(&mut MqttConfig), want: &str| {
            let mut c = ok.clone();
            f(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        };
        check(&|c| c.broker_host = "localhost".into(), "host:port");
        check(&|c| c.broker_host = ":1883".into(), "host:port");
        check(&|c| c.pub_qos = 2, "not supported");
        check(&|c| c.sub_qos = 3, "not a QoS level");
        check(&|c| c.keep_alive = 1, "keepAlive");
        check(
            &|c| c.topics.source_events = "sources/Maestro/consumers/+/sourceevents".into(),
            "source events",
        );
        check(&|c| c.topics.agent_events = String::new(), "agent events");
        check(&|c| c.topics.source_broadcast = Some("sources/+/broadcast".into()), "source broadcast");
        check(&|c| c.client_cert_file = Some("c.pem".into()), "both or none");
        check(
            &|c| {
                c.client_cert_file = Some("c.pem".into());
                c.client_key_file = Some("k.pem".into());
            },
            "requires caFile",
        );
        check(
            &|c| {
                c.ca_file = Some("ca.pem".into());
                c.ca_data = Some("x".into());
            },
            "only one of caFile",
        );
        check(&|c| c.max_event_bytes = 0, "maxEventBytes");
        assert!(MqttConfig::from_yaml("brokerHost: [").is_err());
    }
}
