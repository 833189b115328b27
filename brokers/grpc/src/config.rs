//! Configuration of the hosted broker ([`GrpcBrokerConfig`]) and of the agent client
//! ([`GrpcAgentConfig`], the sdk-go YAML of docs/protocol.md §7.1.4), plus the Go-style duration
//! parser both use ([`parse_duration`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::BACKEND;
use crate::registry::ConsumerRegistry;

pub use maestro_tls::grpc_listener::{
    DEFAULT_CLIENT_MIN_PING_INTERVAL, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_MAX_CONCURRENT_STREAMS,
    DEFAULT_MAX_RECEIVE_MESSAGE_BYTES, DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT, GrpcListenerLimits,
};
pub use maestro_transport::duration::{DurationError, format_duration, parse_duration};

/// Default broker bind address: `0.0.0.0:8091` (`--grpc-broker-bindport`, docs/protocol.md §7.1.5).
pub const DEFAULT_BIND_ADDRESS: &str = "0.0.0.0:8091";
/// Default heartbeat interval on every Subscribe stream: 10 s (docs/protocol.md §7.1.3).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Default maximum event size: 4 MiB, the gRPC max receive message size (docs/protocol.md §7.1.5).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;
/// Default per-stream buffer: 100 events (docs/protocol.md §7.1.3).
pub const DEFAULT_STREAM_BUFFER: usize = 100;
/// Default limit of concurrent Subscribe streams of one consumer: 8. An agent holds one; the
/// rest is room for a restarting agent whose old stream has not been noticed gone yet.
pub const DEFAULT_MAX_STREAMS_PER_CONSUMER: usize = 8;
/// Default limit of concurrent Subscribe streams in total: 50,000, five times the 10,000-agent
/// fleet the broker is measured with (docs/benchmarks.md: ~25 KiB of server memory per connected
/// agent, so ~1.2 GiB at the limit, and one file descriptor per connection).
pub const DEFAULT_MAX_STREAMS: usize = 50_000;
fn invalid(reason: impl Into<String>) -> maestro_transport::Error {
    maestro_transport::Error::invalid_config(BACKEND, reason)
}

/// Configuration of the server-hosted agent endpoint ([`crate::GrpcBroker`]).
#[derive(Debug, Clone)]
pub struct GrpcBrokerConfig {
    /// Address to listen on. Default [`DEFAULT_BIND_ADDRESS`]; tests use `127.0.0.1:0`.
    pub bind_address: SocketAddr,
    /// Interval of heartbeat events on every Subscribe stream (docs/protocol.md §7.1.3). Default
    /// 10 s; `None` or zero disables heartbeats.
    pub heartbeat_interval: Option<Duration>,
    /// Largest accepted event, in bytes of structured JSON
    /// ([`maestro_transport::event_size`]); also the gRPC max message size. Default 4 MiB.
    pub max_event_bytes: usize,
    /// Events queued per Subscribe stream before `publish` waits. Default 100.
    pub stream_buffer: usize,
    /// How long `publish` waits for room in a full stream buffer before the subscriber is
    /// treated as dead and removed. Default 5 s.
    pub send_timeout: Duration,
    /// Upper bound for handing one agent event to the handler (with redeliveries) in the
    /// Publish RPC; on expiry the RPC fails with `Unavailable`. Default 30 s.
    pub handler_timeout: Duration,
    /// Serve agents over TLS with this certificate and key (Go's
    /// `--grpc-broker-tls-cert-file`, `--grpc-broker-tls-key-file`), reloaded when the files
    /// change; with a client CA (`--grpc-broker-client-ca-file`) every agent must present a
    /// certificate it signed (mutual TLS). `None` (default) serves plaintext.
    pub tls: Option<maestro_tls::ServerTlsFiles>,
    /// Concurrent Subscribe streams of one consumer; one more is refused with
    /// `RESOURCE_EXHAUSTED`. Default 8.
    pub max_streams_per_consumer: usize,
    /// Concurrent Subscribe streams in total; one more is refused with `RESOURCE_EXHAUSTED`.
    /// Default 50,000.
    pub max_streams: usize,
    /// Connection settings: keepalive, connection age and timeout, streams per connection,
    /// largest received message (docs/security.md, "Limits").
    pub listener: GrpcListenerLimits,
    /// The consumers that exist: a Subscribe for any other is refused with `NOT_FOUND` (a
    /// failing registry with `UNAVAILABLE`); it is asked at every Subscribe. `None` (default)
    /// accepts every consumer name.
    pub consumers: Option<Arc<dyn ConsumerRegistry>>,
}

impl Default for GrpcBrokerConfig {
    fn default() -> Self {
        GrpcBrokerConfig {
            bind_address: SocketAddr::from(([0, 0, 0, 0], 8091)),
            heartbeat_interval: Some(DEFAULT_HEARTBEAT_INTERVAL),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            stream_buffer: DEFAULT_STREAM_BUFFER,
            send_timeout: Duration::from_secs(5),
            handler_timeout: Duration::from_secs(30),
            tls: None,
            max_streams_per_consumer: DEFAULT_MAX_STREAMS_PER_CONSUMER,
            max_streams: DEFAULT_MAX_STREAMS,
            listener: GrpcListenerLimits::default(),
            consumers: None,
        }
    }
}

impl GrpcBrokerConfig {
    /// The effective heartbeat interval (`None` when disabled).
    pub fn heartbeat(&self) -> Option<Duration> {
        self.heartbeat_interval.filter(|d| !d.is_zero())
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`maestro_transport::Error::InvalidConfig`] when a size, buffer, timeout or stream limit
    /// is zero.
    pub fn validate(&self) -> maestro_transport::Result<()> {
        if self.max_streams_per_consumer == 0 || self.max_streams == 0 {
            return Err(invalid("max_streams_per_consumer and max_streams must be positive"));
        }
        if let Some(problem) = self.listener.problem() {
            return Err(invalid(problem));
        }
        if self.max_event_bytes == 0 {
            return Err(invalid("max_event_bytes must be positive"));
        }
        if self.stream_buffer == 0 {
            return Err(invalid("stream_buffer must be positive"));
        }
        if self.send_timeout.is_zero() || self.handler_timeout.is_zero() {
            return Err(invalid("send_timeout and handler_timeout must be positive"));
        }
        Ok(())
    }
}

/// gRPC client keepalive (`keepAliveConfig`, docs/protocol.md §7.1.4). Go defaults: disabled,
/// `time` 30 s, `timeout` 10 s, `permitWithoutStream` false.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeepAliveConfig {
    /// Whether HTTP/2 keepalive pings are sent.
    pub enable: bool,
    /// Ping interval (Go duration string, e.g. `30s`).
    #[serde(with = "maestro_transport::duration::go")]
    pub time: Duration,
    /// How long to wait for a ping ack before the connection is considered dead.
    #[serde(with = "maestro_transport::duration::go")]
    pub timeout: Duration,
    /// Ping even when no RPC is active.
    pub permit_without_stream: bool,
}

impl Default for KeepAliveConfig {
    fn default() -> Self {
        KeepAliveConfig {
            enable: false,
            time: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            permit_without_stream: false,
        }
    }
}

/// The agent's gRPC client configuration: the sdk-go YAML keys of docs/protocol.md §7.1.4 plus our
/// own reconnect/limit settings. Durations accept Go strings (`"10s"`, `"1m30s"`, `"500ms"`)
/// or numbers (seconds).
///
/// Authentication: a client certificate (`clientCertFile` + `clientKeyFile`) or a bearer token
/// (`token`, or `tokenFile`), not both; either needs `caFile` (TLS). `Debug` shows `token` as
/// `<redacted>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcAgentConfig {
    /// Broker address `host:port` (required). An `http://` prefix is accepted.
    pub url: String,
    /// Server CA file (PEM): setting it connects over TLS, trusting only this CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Server CA (base64 PEM). Rejected (not supported yet; use `caFile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_data: Option<String>,
    /// mTLS client certificate file (PEM), with `clientKeyFile` and `caFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    /// mTLS client certificate (base64 PEM). Rejected (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_data: Option<String>,
    /// mTLS client key file (PEM), with `clientCertFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
    /// mTLS client key (base64 PEM). Rejected (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    /// Bearer token, sent as `authorization: Bearer <token>` metadata on every RPC (Subscribe
    /// and Publish); surrounding whitespace is trimmed. Needs `caFile`; excludes a client
    /// certificate. Takes precedence over `tokenFile` when both are set (as sdk-go).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// File holding the bearer token (e.g. a projected service-account token), sent like
    /// `token`. Read when the agent is created (an unreadable or empty file is an error), then
    /// again on every new connection and at most every
    /// [`crate::GrpcAgent::TOKEN_FILE_RECHECK`] (5 s) before an RPC, so a rotated token is picked
    /// up without a restart; a failed re-read keeps the previous token (logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// HTTP/2 keepalive.
    #[serde(default)]
    pub keep_alive_config: KeepAliveConfig,
    /// Heartbeat watchdog (docs/protocol.md §7.1.3): reconnect when no message (heartbeat or
    /// event) arrived for this long. `None` (default) or zero disables it.
    #[serde(default, with = "maestro_transport::duration::go_opt", skip_serializing_if = "Option::is_none")]
    pub server_healthiness_timeout: Option<Duration>,
    /// First reconnect delay; doubled per failed attempt, with jitter (docs/protocol.md §7.6).
    /// Default 500 ms.
    #[serde(default = "default_initial_backoff", with = "maestro_transport::duration::go")]
    pub reconnect_initial_backoff: Duration,
    /// Reconnect delay cap. Default 30 s.
    #[serde(default = "default_max_backoff", with = "maestro_transport::duration::go")]
    pub reconnect_max_backoff: Duration,
    /// Largest event published or received, bytes of structured JSON. Default 4 MiB.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Deadline of one Publish RPC. Default 10 s.
    #[serde(default = "default_publish_timeout", with = "maestro_transport::duration::go")]
    pub publish_timeout: Duration,
    /// Deadline of connecting and receiving the Subscribe response headers. Default 10 s.
    #[serde(default = "default_connect_timeout", with = "maestro_transport::duration::go")]
    pub connect_timeout: Duration,
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
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

impl std::fmt::Debug for GrpcAgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("GrpcAgentConfig")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("ca_data", &self.ca_data.as_ref().map(|_| "<set>"))
            .field("client_cert_file", &self.client_cert_file)
            .field("client_cert_data", &self.client_cert_data.as_ref().map(|_| "<set>"))
            .field("client_key_file", &self.client_key_file)
            .field("client_key_data", &redacted(&self.client_key_data))
            .field("token", &redacted(&self.token))
            .field("token_file", &self.token_file)
            .field("keep_alive_config", &self.keep_alive_config)
            .field("server_healthiness_timeout", &self.server_healthiness_timeout)
            .field("reconnect_initial_backoff", &self.reconnect_initial_backoff)
            .field("reconnect_max_backoff", &self.reconnect_max_backoff)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("publish_timeout", &self.publish_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// True when `v` is set to a non-empty string.
fn is_set(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

impl GrpcAgentConfig {
    /// A configuration for `url` (`host:port`) with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        GrpcAgentConfig {
            url: url.into(),
            ca_file: None,
            ca_data: None,
            client_cert_file: None,
            client_cert_data: None,
            client_key_file: None,
            client_key_data: None,
            token: None,
            token_file: None,
            keep_alive_config: KeepAliveConfig::default(),
            server_healthiness_timeout: None,
            reconnect_initial_backoff: default_initial_backoff(),
            reconnect_max_backoff: default_max_backoff(),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            publish_timeout: default_publish_timeout(),
            connect_timeout: default_connect_timeout(),
        }
    }

    /// The effective health timeout (`None` when disabled).
    pub fn healthiness_timeout(&self) -> Option<Duration> {
        self.server_healthiness_timeout.filter(|d| !d.is_zero())
    }

    /// The endpoint URI: `https://host:port` with `caFile`, else `http://host:port`.
    pub fn endpoint_uri(&self) -> String {
        let host = self.url.split_once("://").map_or(self.url.as_str(), |(_, rest)| rest);
        let scheme = if self.tls_enabled() { "https" } else { "http" };
        format!("{scheme}://{host}")
    }

    /// True when `caFile` is set: the agent connects over TLS.
    pub fn tls_enabled(&self) -> bool {
        is_set(&self.ca_file)
    }

    /// True when a bearer token is configured (`token` or `tokenFile`).
    pub fn token_enabled(&self) -> bool {
        is_set(&self.token) || is_set(&self.token_file)
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`maestro_transport::Error::InvalidConfig`] when `url` is empty, an unsupported field
    /// is set (`caData`, `clientCertData`, `clientKeyData`), a client certificate lacks its key
    /// or `caFile`, a token is set without `caFile` or together with a client certificate, or
    /// a size/timeout is zero.
    pub fn validate(&self) -> maestro_transport::Result<()> {
        if self.url.trim().is_empty() {
            return Err(invalid("url is required (host:port)"));
        }
        let unsupported = [
            ("caData", &self.ca_data),
            ("clientCertData", &self.client_cert_data),
            ("clientKeyData", &self.client_key_data),
        ];
        if let Some((name, _)) = unsupported.iter().find(|(_, v)| is_set(v)) {
            return Err(invalid(format!(
                "{name} is set but is not supported yet (use caFile, clientCertFile, clientKeyFile)"
            )));
        }
        if is_set(&self.client_cert_file) != is_set(&self.client_key_file) {
            return Err(invalid("clientCertFile and clientKeyFile go together"));
        }
        if is_set(&self.client_cert_file) && !self.tls_enabled() {
            return Err(invalid("clientCertFile needs caFile (TLS)"));
        }
        self.validate_token()?;
        if self.max_event_bytes == 0 {
            return Err(invalid("maxEventBytes must be positive"));
        }
        if self.reconnect_initial_backoff.is_zero() || self.publish_timeout.is_zero() {
            return Err(invalid("reconnectInitialBackoff and publishTimeout must be positive"));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connectTimeout must be positive"));
        }
        Ok(())
    }

    /// The bearer-token rules: never with a client certificate (one way of authenticating),
    /// never without `caFile` (a token is not sent in clear text; sdk-go refuses it too:
    /// "setting token requires authority certificates").
    fn validate_token(&self) -> maestro_transport::Result<()> {
        if !self.token_enabled() {
            return Ok(());
        }
        if is_set(&self.client_cert_file) || is_set(&self.client_key_file) {
            return Err(invalid(
                "token/tokenFile and clientCertFile/clientKeyFile are mutually exclusive: \
                 authenticate with either a bearer token or a client certificate",
            ));
        }
        if !self.tls_enabled() {
            return Err(invalid(
                "token/tokenFile needs caFile: a bearer token is only sent over TLS, never in clear text",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2us").unwrap(), Duration::from_micros(2));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        for bad in ["", "s", "10x", "-1s", "1..2s", "5m3"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must not parse");
        }
        for d in [Duration::from_secs(3), Duration::from_millis(250), Duration::from_nanos(7)] {
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }

    #[test]
    fn agent_config_uses_sdk_go_keys() {
        let cfg: GrpcAgentConfig = serde_json::from_value(serde_json::json!({
            "url": "maestro-grpc-broker:8091",
            "keepAliveConfig": {"enable": true, "time": "20s", "timeout": "5s", "permitWithoutStream": true},
            "serverHealthinessTimeout": "1m",
            "reconnectInitialBackoff": 0.1,
        }))
        .unwrap();
        assert_eq!(cfg.endpoint_uri(), "http://maestro-grpc-broker:8091");
        assert!(cfg.keep_alive_config.enable && cfg.keep_alive_config.permit_without_stream);
        assert_eq!(cfg.keep_alive_config.time, Duration::from_secs(20));
        assert_eq!(cfg.server_healthiness_timeout, Some(Duration::from_secs(60)));
        assert_eq!(cfg.reconnect_initial_backoff, Duration::from_millis(100));
        assert_eq!(cfg.reconnect_max_backoff, Duration::from_secs(30));
        assert_eq!(cfg.max_event_bytes, DEFAULT_MAX_EVENT_BYTES);
        cfg.validate().unwrap();
        let back: GrpcAgentConfig = serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn tls_files_are_taken_and_the_rest_refused() {
        let mut cfg = GrpcAgentConfig::new("localhost:8091");
        cfg.validate().unwrap();
        assert_eq!(cfg.endpoint_uri(), "http://localhost:8091");
        cfg.client_key_data = Some("a2V5".into());
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("clientKeyData") && err.contains("not supported yet"), "{err}");
        assert!(GrpcAgentConfig::new("").validate().is_err());
        let mut tls = GrpcAgentConfig::new("http://maestro:8091");
        tls.client_cert_file = Some("me.crt".into());
        assert!(tls.validate().unwrap_err().to_string().contains("go together"));
        tls.client_key_file = Some("me.key".into());
        assert!(tls.validate().unwrap_err().to_string().contains("needs caFile"));
        tls.ca_file = Some("ca.crt".into());
        tls.validate().unwrap();
        assert_eq!(tls.endpoint_uri(), "https://maestro:8091");
    }

    #[test]
    fn token_rules() {
        let mut cfg: GrpcAgentConfig = serde_json::from_value(serde_json::json!({
            "url": "maestro:8091", "tokenFile": "/var/run/secrets/token",
        }))
        .unwrap();
        assert!(cfg.token_enabled());
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("needs caFile") && err.contains("clear text"), "{err}");
        cfg.ca_file = Some("ca.crt".into());
        cfg.validate().unwrap();
        cfg.client_cert_file = Some("me.crt".into());
        cfg.client_key_file = Some("me.key".into());
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("mutually exclusive"), "{err}");
        cfg.token_file = None;
        cfg.token = Some("s3cr3t-value".into());
        assert!(cfg.validate().unwrap_err().to_string().contains("mutually exclusive"));
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cr3t-value") && shown.contains("<redacted>"), "{shown}");
        cfg.client_cert_file = None;
        cfg.client_key_file = None;
        cfg.validate().unwrap();
        cfg.token = Some(String::new());
        assert!(!cfg.token_enabled(), "an empty token is no token");
    }
}
