//! Google Cloud Pub/Sub and its emulator (Cargo feature `pubsub`).

use std::time::Duration;

use maestro_broker_pubsub::{PubSubAgent, PubSubConfig, PubSubSource};
use maestro_transport::{DynAgentTransport, DynSourceTransport};

use super::{AgentBrokerSettings, BrokerError, PubSubRole, SourceBrokerSettings, config_error};

/// The Pub/Sub configuration: the sdk-go file when given (subscriptions left empty in it are
/// filled with Maestro's names for `role`), else Maestro's layout on `project` at `endpoint`
/// (docs/protocol.md §7.3).
///
/// # Errors
/// [`BrokerError::Config`] for a bad file; [`BrokerError::PubsubWithoutProject`] when neither a
/// file nor a project is given.
pub fn pubsub_config(
    file: Option<&str>,
    endpoint: Option<&str>,
    project: Option<&str>,
    role: PubSubRole<'_>,
) -> Result<PubSubConfig, BrokerError> {
    let base = match (file, project) {
        (Some(path), _) => PubSubConfig::from_file(path).map_err(|e| config_error(path, e))?,
        (None, Some(project)) => PubSubConfig::maestro_defaults(project, endpoint),
        (None, None) => return Err(BrokerError::PubsubWithoutProject),
    };
    let subs = &base.subscriptions;
    Ok(match role {
        PubSubRole::Source(id) if subs.agent_events.is_empty() && subs.agent_broadcast.is_empty() => {
            base.for_source(id)
        }
        PubSubRole::Agent(c) if subs.source_events.is_empty() && subs.source_broadcast.is_empty() => {
            base.for_agent(c)
        }
        _ => base,
    })
}

/// The server's Pub/Sub transport.
pub(super) async fn source(s: &SourceBrokerSettings) -> Result<DynSourceTransport, BrokerError> {
    let config = pubsub_config(
        s.config_file.as_deref(),
        s.broker_url.as_deref(),
        s.pubsub_project.as_deref(),
        PubSubRole::Source(&s.source_id),
    )?;
    Ok(PubSubSource::connect(config, &s.source_id).await? as DynSourceTransport)
}

/// An agent's Pub/Sub transport.
pub(super) async fn agent(
    s: &AgentBrokerSettings,
    consumer: &str,
    agent_id: &str,
) -> Result<DynAgentTransport, BrokerError> {
    let config = pubsub_config(
        s.config_file.as_deref(),
        s.url.as_deref(),
        s.pubsub_project.as_deref(),
        PubSubRole::Agent(consumer),
    )?;
    Ok(PubSubAgent::connect(config, consumer, agent_id).await? as DynAgentTransport)
}

/// See [`super::write_pubsub_config`].
pub(super) fn write_config(
    dir: &std::path::Path,
    endpoint: &str,
    project: &str,
    health_check: Duration,
    role: PubSubRole<'_>,
) -> Result<String, BrokerError> {
    let mut cfg = pubsub_config(None, Some(endpoint), Some(project), role)?;
    cfg.health_check_interval = health_check;
    let name = match role {
        PubSubRole::Source(id) => format!("source-{id}.yaml"),
        PubSubRole::Agent(c) => format!("agent-{c}.yaml"),
    };
    let path = dir.join(name);
    let text = serde_yaml_ng::to_string(&cfg).map_err(|e| config_error(&path.display().to_string(), e))?;
    std::fs::write(&path, text).map_err(|e| config_error(&path.display().to_string(), e))?;
    Ok(path.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pubsub_layout_and_missing_project() {
        let cfg = pubsub_config(None, Some("127.0.0.1:8085"), Some("maestro-test"), PubSubRole::Agent("c1"));
        let cfg = cfg.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.subscriptions.source_events, "projects/maestro-test/subscriptions/sourceevents-c1");
        assert!(cfg.disable_tls && cfg.auto_create_enabled());
        let src = pubsub_config(None, None, Some("maestro-test"), PubSubRole::Source("maestro"));
        let src = src.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(src.subscriptions.agent_events, "projects/maestro-test/subscriptions/agentevents-maestro");
        let err = pubsub_config(None, None, None, PubSubRole::Source("maestro")).unwrap_err();
        assert!(err.to_string().contains("--pubsub-project"), "{err}");
        let err = pubsub_config(Some("/nonexistent/pubsub.yaml"), None, None, PubSubRole::Agent("c1"));
        assert!(err.unwrap_err().to_string().contains("/nonexistent/pubsub.yaml"));
    }
}
