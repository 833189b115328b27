//! Agent configuration.

use std::time::Duration;

use maestro_transport::retry;

use crate::error::ConfigError;

/// The default field manager of server-side apply (docs/protocol.md §4.1).
pub const DEFAULT_FIELD_MANAGER: &str = "work-agent";

/// The default status sync interval: 10 s (docs/protocol.md §8.1 `--status-sync-interval`).
pub const DEFAULT_STATUS_SYNC_INTERVAL: Duration = Duration::from_secs(10);

/// The default re-apply interval: 5 min (the Go agent requeues every 4–6 min, docs/protocol.md §8.1).
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(300);

/// The default limit of a `JsonRaw` feedback value: 1 MiB (Maestro's `MaxJSONRawLength`).
pub const DEFAULT_MAX_JSON_RAW_BYTES: usize = 1024 * 1024;

/// The source id whose spec events an agent accepts by default: `maestro`, the default
/// `--source-id` of the server, which stamps it as CloudEvent `source` on every spec event and
/// status resync request it sends to agents, on every broker (docs/protocol.md §1).
pub const DEFAULT_SOURCE_ID: &str = "maestro";

/// [`AgentConfig::wipe_guard_percent`]'s default: 50 %.
pub const DEFAULT_WIPE_GUARD_PERCENT: u8 = 50;

/// [`AgentConfig::startup_hold`]'s default: 30 s.
pub const DEFAULT_STARTUP_HOLD: Duration = Duration::from_secs(30);
/// [`AgentConfig::orphan_recheck_interval`]'s default: 30 s.
pub const DEFAULT_ORPHAN_RECHECK_INTERVAL: Duration = Duration::from_secs(30);

/// [`AgentConfig::eviction_grace_period`]'s default: 60 min (the OCM work agent's
/// `--appliedmanifestwork-eviction-grace-period`).
pub const DEFAULT_EVICTION_GRACE_PERIOD: Duration = Duration::from_secs(60 * 60);

/// [`AgentConfig::shutdown_timeout`]'s default: 10 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of an [`crate::Agent`]. Build with [`AgentConfig::new`] and adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The consumer (cluster name) this agent serves; spec events for other clusters are
    /// dropped and status events carry it as `clustername`.
    pub consumer: String,
    /// The agent id: CloudEvent `source` of everything the agent publishes.
    /// Default `<consumer>-work-agent`.
    pub agent_id: String,
    /// How often every work's objects are re-read for Available conditions and feedback
    /// (status published only when it changed). Default [`DEFAULT_STATUS_SYNC_INTERVAL`].
    pub status_sync_interval: Duration,
    /// How often every work is re-applied (drift correction); `None` disables it.
    /// Default `Some(`[`DEFAULT_RESYNC_INTERVAL`]`)`.
    pub resync_interval: Option<Duration>,
    /// The hub host (MQTT broker host, gRPC URL; `""` for Pub/Sub), hashed into the
    /// AppliedManifestWork name (docs/protocol.md §8.3). Default `""`.
    pub hub_host: String,
    /// Number of concurrent reconcile workers (one work is reconciled by one worker at a
    /// time). Default 4; at least 1 is used.
    pub workers: usize,
    /// Limit of one `JsonRaw` feedback value in bytes. Default [`DEFAULT_MAX_JSON_RAW_BYTES`].
    pub max_json_raw_bytes: usize,
    /// First delay of the retry backoff for failed publishes and failed applies; doubled per
    /// attempt up to [`AgentConfig::max_retry_delay`]. Default 200 ms.
    pub retry_delay: Duration,
    /// Upper bound of the retry backoff before jitter (each delay is stretched by a random
    /// factor in `[1, 2)`, [`maestro_transport::retry::exponential`]). Default 30 s.
    pub max_retry_delay: Duration,
    /// How long [`crate::Agent::run`] lets the applies and status publishes in flight finish
    /// after its shutdown signal before it stops them. Default [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: Duration,
    /// The CloudEvent `source` values whose spec events and status resync requests are
    /// handled (the server's `--source-id`). Events from any other source are refused: not
    /// applied, logged at `warn`, and dropped (acknowledged, never redelivered). Compared
    /// exactly (case-sensitive). Must not be empty. Default: [`DEFAULT_SOURCE_ID`] alone.
    pub accepted_sources: Vec<String>,
    /// The fleet-wipe guard's share (docs/operations.md §3.5): when one spec resync answer
    /// would delete more than this percentage of the works the agent holds (works the store
    /// does not hold any more), the agent orphans them instead (keeps their objects). 100
    /// turns this rule off; the store-identity rule always applies. Default
    /// [`DEFAULT_WIPE_GUARD_PERCENT`]; values over 100 are refused by
    /// [`AgentConfig::validate`].
    pub wipe_guard_percent: u8,
    /// While the agent holds orphaned works, how often it asks the server for a spec resync
    /// again: the answer adopts works the sources published again, and deletes the others
    /// once an operator confirmed (`maestro-cli consumer confirm-wipe`). Default
    /// [`DEFAULT_ORPHAN_RECHECK_INTERVAL`]. Also how often pending evictions are checked
    /// and recorded.
    pub orphan_recheck_interval: Duration,
    /// How long a work that vanished from the source (the server's store does not hold it, no
    /// source deleted it; docs/protocol.md §8.3) keeps its objects before the agent deletes
    /// them, unless a source publishes it again meanwhile. Zero deletes at once. Default
    /// [`DEFAULT_EVICTION_GRACE_PERIOD`].
    pub eviction_grace_period: Duration,
    /// Added to this agent's clock where the clock orders its statuses (the time part of the
    /// status sequence ids, docs/protocol.md §6.2), ms; negative: behind. 0 (the default) in
    /// production; the fault-injection harness sets it to run an agent whose clock is skewed
    /// (docs/reliability.md) through the hidden `maestro agent --clock-skew-ms`.
    pub clock_skew_ms: i64,
    /// The longest a restarted agent keeps plain specs of works it does not hold aside while it
    /// waits for its first spec resync answer (the start-up hold, docs/protocol.md §6.1),
    /// counted from its first subscription; zero turns the hold off. Default
    /// [`DEFAULT_STARTUP_HOLD`]. No flag sets it: tests that play a server which sends no
    /// counted answer turn it off.
    pub startup_hold: Duration,
}

impl AgentConfig {
    /// The defaults for `consumer`.
    pub fn new(consumer: impl Into<String>) -> Self {
        let consumer = consumer.into();
        AgentConfig {
            agent_id: format!("{consumer}-work-agent"),
            consumer,
            status_sync_interval: DEFAULT_STATUS_SYNC_INTERVAL,
            resync_interval: Some(DEFAULT_RESYNC_INTERVAL),
            hub_host: String::new(),
            workers: 4,
            max_json_raw_bytes: DEFAULT_MAX_JSON_RAW_BYTES,
            retry_delay: Duration::from_millis(200),
            max_retry_delay: Duration::from_secs(30),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            accepted_sources: vec![DEFAULT_SOURCE_ID.to_owned()],
            wipe_guard_percent: DEFAULT_WIPE_GUARD_PERCENT,
            orphan_recheck_interval: DEFAULT_ORPHAN_RECHECK_INTERVAL,
            startup_hold: DEFAULT_STARTUP_HOLD,
            eviction_grace_period: DEFAULT_EVICTION_GRACE_PERIOD,
            clock_skew_ms: 0,
        }
    }

    /// True when `source` is one of [`AgentConfig::accepted_sources`].
    pub fn accepts_source(&self, source: &str) -> bool {
        self.accepted_sources.iter().any(|s| s == source)
    }

    /// Checks the values [`crate::Agent::run`] depends on.
    ///
    /// # Errors
    /// [`ConfigError::EmptyConsumer`], [`ConfigError::NoAcceptedSource`],
    /// [`ConfigError::EmptyAcceptedSource`], [`ConfigError::WipeGuardPercent`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.wipe_guard_percent > 100 {
            return Err(ConfigError::WipeGuardPercent(self.wipe_guard_percent));
        }
        if self.consumer.is_empty() {
            return Err(ConfigError::EmptyConsumer);
        }
        if self.accepted_sources.is_empty() {
            return Err(ConfigError::NoAcceptedSource);
        }
        if self.accepted_sources.iter().any(|s| s.trim().is_empty()) {
            return Err(ConfigError::EmptyAcceptedSource);
        }
        Ok(())
    }

    /// The retry backoff of failed publishes and applies: [`AgentConfig::retry_delay`]
    /// doubling to [`AgentConfig::max_retry_delay`], jittered, endless.
    pub fn retry_backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        retry::delays(retry::exponential(self.retry_delay, self.max_retry_delay), self.max_retry_delay)
    }

    /// The delay before retry `n` (0-based) of [`AgentConfig::retry_backoff`].
    pub fn retry_delay_at(&self, n: u32) -> Duration {
        retry::nth_delay(retry::exponential(self.retry_delay, self.max_retry_delay), n, self.max_retry_delay)
    }

    /// The hub hash: lower-case hex SHA-256 of [`AgentConfig::hub_host`].
    pub fn hub_hash(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.hub_host.as_bytes()))
    }
}
