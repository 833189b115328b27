//! MQTT 5 brokers and the embedded rumqttd (Cargo feature `mqtt`).

use std::net::SocketAddr;

use maestro_broker_mqtt::{MqttAgent, MqttConfig, MqttSource, MqttTopics};
use maestro_transport::{DynAgentTransport, DynSourceTransport};

use super::{AgentBrokerSettings, BrokerError, SourceBrokerSettings, config_error};

/// Reads an sdk-go style MQTT config file.
///
/// # Errors
/// [`BrokerError::Config`] naming the file.
pub fn mqtt_config_file(path: &str) -> Result<MqttConfig, BrokerError> {
    MqttConfig::from_file(path).map_err(|e| config_error(path, e))
}

/// The hub host an MQTT agent hashes into AppliedManifestWork names: the config file's
/// `brokerHost`, else the broker URL.
pub(super) fn hub_host(s: &AgentBrokerSettings) -> Result<String, BrokerError> {
    match &s.config_file {
        Some(path) => Ok(mqtt_config_file(path)?.broker_host),
        None => Ok(s.url.clone().unwrap_or_default()),
    }
}

/// The server's MQTT transport (starting the embedded broker when asked), with the embedded
/// broker's address.
pub(super) async fn source(
    s: &SourceBrokerSettings,
) -> Result<(DynSourceTransport, Option<SocketAddr>), BrokerError> {
    let embedded = match s.embedded_mqtt {
        Some(addr) => Some(crate::embedded_mqtt::start(&crate::embedded_mqtt::EmbeddedOptions {
            addr,
            engine: s.embedded_mqtt_engine,
            max_payload_bytes: 2 * maestro_transport::DEFAULT_MAX_EVENT_BYTES,
            password_file: s.embedded_mqtt_password_file.clone(),
            source_id: s.source_id.clone(),
        })?),
        None => None,
    };
    let host = embedded.as_ref().map(|e| e.addr.to_string()).or_else(|| s.broker_url.clone());
    let mut config = match (&s.config_file, host) {
        (Some(path), _) => mqtt_config_file(path)?,
        (None, Some(host)) => MqttConfig::new(host, MqttTopics::maestro(&s.source_id)),
        (None, None) => return Err(BrokerError::MqttWithoutBroker),
    };
    if let Some(e) = &embedded {
        e.apply_server_login(&mut config);
    }
    let source = MqttSource::connect(config, &s.source_id, &s.client_id).await?;
    Ok((source as DynSourceTransport, embedded.map(|e| e.addr)))
}

/// An agent's MQTT transport.
pub(super) async fn agent(
    s: &AgentBrokerSettings,
    consumer: &str,
    agent_id: &str,
) -> Result<DynAgentTransport, BrokerError> {
    let config = match (&s.config_file, &s.url) {
        (Some(path), _) => mqtt_config_file(path)?,
        (None, Some(url)) => MqttConfig::new(url, MqttTopics::maestro("maestro")),
        (None, None) => return Err(BrokerError::MqttWithoutBroker),
    };
    Ok(MqttAgent::connect(config, consumer, agent_id).await? as DynAgentTransport)
}
