//! The server-hosted gRPC broker (Cargo feature `grpc`).

use std::sync::Arc;

use maestro_broker_grpc::{GrpcAgent, GrpcAgentConfig, GrpcBroker, GrpcBrokerConfig};
use maestro_transport::{DynAgentTransport, DynSourceTransport};

use super::{AgentBrokerSettings, BrokerError, DEFAULT_GRPC_BROKER_URL, SourceBrokerSettings, config_error};

/// The agent-facing gRPC broker on `s.grpc_bind`, from `base` (limits and consumer registry)
/// with the address, heartbeat and TLS of `s`; returns it with its bound address.
pub(super) async fn source(
    s: &SourceBrokerSettings,
    base: GrpcBrokerConfig,
) -> Result<(DynSourceTransport, Option<std::net::SocketAddr>), BrokerError> {
    let cfg = GrpcBrokerConfig {
        bind_address: s.grpc_bind,
        heartbeat_interval: s.heartbeat,
        tls: s.grpc_tls.clone(),
        ..base
    };
    let broker = GrpcBroker::bind_with_gate(cfg, s.grpc_gate.clone()).await?;
    let addr = broker.local_addr();
    Ok((broker as DynSourceTransport, Some(addr)))
}

/// The agent's gRPC config: the sdk-go file when given, else the broker URL.
pub(super) fn agent_config(s: &AgentBrokerSettings) -> Result<GrpcAgentConfig, BrokerError> {
    match &s.config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| config_error(path, e))?;
            serde_yaml_ng::from_str::<GrpcAgentConfig>(&text).map_err(|e| config_error(path, e))
        }
        None => Ok(GrpcAgentConfig::new(s.url.as_deref().unwrap_or(DEFAULT_GRPC_BROKER_URL))),
    }
}

/// The agent transport.
pub(super) fn agent(
    s: &AgentBrokerSettings,
    consumer: &str,
    agent_id: &str,
) -> Result<DynAgentTransport, BrokerError> {
    let agent: Arc<GrpcAgent> = GrpcAgent::new(agent_config(s)?, consumer, agent_id)?;
    Ok(agent as DynAgentTransport)
}
