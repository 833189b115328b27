//! Error types of the agent.

/// A failure of the agent as a whole ([`crate::Agent::run`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The transport could not be started.
    #[error("transport: {0}")]
    Transport(#[from] maestro_transport::Error),
    /// The configuration is invalid (the cause is in the message, not a source, so a cause
    /// chain prints it once).
    #[error("invalid agent configuration: {0}")]
    Config(ConfigError),
}

/// What is wrong with an [`crate::AgentConfig`] ([`crate::AgentConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `consumer` is empty.
    #[error("consumer must not be empty")]
    EmptyConsumer,
    /// `accepted_sources` is empty.
    #[error("accepted_sources must name at least one source id (the server's --source-id)")]
    NoAcceptedSource,
    /// `accepted_sources` holds an empty (or blank) source id.
    #[error("accepted_sources must not contain an empty source id")]
    EmptyAcceptedSource,
    /// `wipe_guard_percent` is over 100.
    #[error("wipe_guard_percent must be 0 to 100 (100 turns the share rule off), not {0}")]
    WipeGuardPercent(u8),
}

/// A failure talking to the target cluster ([`crate::Cluster`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The cluster does not serve this apiVersion/kind (no REST mapping).
    #[error("no resource mapping for {api_version} {kind}")]
    UnknownKind {
        /// The manifest's `apiVersion`.
        api_version: String,
        /// The manifest's `kind`.
        kind: String,
    },
    /// The manifest is not a usable Kubernetes object (missing kind, name, …).
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// A delete precondition (UID) did not hold: the object was replaced meanwhile.
    #[error("precondition failed for {object}: {reason}")]
    PreconditionFailed {
        /// `<resource>/<namespace>/<name>`.
        object: String,
        /// What did not match.
        reason: String,
    },
    /// A write conflicted (e.g. server-side apply field conflict without `force`).
    #[error("conflict on {object}: {reason}")]
    Conflict {
        /// `<resource>/<namespace>/<name>`.
        object: String,
        /// The server's explanation.
        reason: String,
    },
    /// Any other API failure (HTTP status and message when known).
    #[error("cluster API error{}: {message}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    Api {
        /// HTTP status code, when the failure came from an API server.
        status: Option<u16>,
        /// The message.
        message: String,
    },
}
