//! The agent role ([`MqttAgent`]): receives spec events (and status resync requests) from
//! `sourceEvents` with its cluster substituted (+ `sourceBroadcast`), publishes status events
//! and spec resync requests (docs/protocol.md §7.2).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use maestro_api::{Event, mqtt};
use maestro_transport::{AgentTransport, DynHandler, Error, Result, Subscribed};

use crate::config::{MqttConfig, invalid, invalid_because};
use crate::conn::{Conn, Identity};
use crate::source::check_size;
use crate::{BACKEND, topics};

/// The agent side of the MQTT broker.
pub struct MqttAgent {
    conn: Conn,
    config: MqttConfig,
    consumer: String,
    agent_id: String,
    client_id: String,
}

impl fmt::Debug for MqttAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttAgent")
            .field("broker", &self.config.broker_host)
            .field("consumer", &self.consumer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl MqttAgent {
    /// Validates `config` and starts connecting in the background for `consumer` (the cluster
    /// name). The MQTT client id is `config.clientId`, else `<agent_id>-client` (Go agent,
    /// docs/protocol.md §7.2). Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an invalid configuration, an empty agent id, a consumer
    /// that cannot be a topic segment, or unreadable TLS material.
    pub async fn connect(config: MqttConfig, consumer: &str, agent_id: &str) -> Result<Arc<MqttAgent>> {
        config.validate()?;
        if agent_id.is_empty() {
            return Err(invalid("the agent id is required"));
        }
        let filters = topics::agent_subscriptions(&config.topics, consumer).map_err(invalid_because)?;
        let client_id = config
            .client_id
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| format!("{agent_id}-client"));
        let id = Identity {
            role: "agent",
            name: consumer.to_owned(),
            client_id: client_id.clone(),
            verify_agent_origin: false,
        };
        let conn = Conn::open(&config, id, filters)?;
        Ok(Arc::new(MqttAgent {
            conn,
            config,
            consumer: consumer.to_owned(),
            agent_id: agent_id.to_owned(),
            client_id,
        }))
    }

    /// The agent id.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The MQTT client id in use.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// True while connected to the broker.
    pub fn is_connected(&self) -> bool {
        self.conn.is_connected()
    }

    /// The topic `event` would be published on (docs/protocol.md §7.2).
    ///
    /// # Errors
    /// [`Error::Encode`] when no topic can be derived (see [`topics::agent_publish_topic`]).
    pub fn publish_topic(&self, event: &Event) -> Result<String> {
        topics::agent_publish_topic(&self.config.topics, &self.consumer, event)
            .map_err(|e| Error::encode_from(BACKEND, e))
    }
}

#[async_trait]
impl AgentTransport for MqttAgent {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Publishes on the derived topic and waits for the PUBACK.
    ///
    /// # Errors
    /// As [`crate::MqttSource`]'s publish: [`Error::Closed`], [`Error::TooLarge`],
    /// [`Error::Encode`], [`Error::Disconnected`], [`Error::Rejected`].
    async fn publish(&self, event: &Event) -> Result<()> {
        if self.conn.is_closed() {
            return Err(Error::Closed { backend: BACKEND });
        }
        check_size(&self.config, event)?;
        let topic = self.publish_topic(event)?;
        self.conn.publish(topic, mqtt::encode(event)).await
    }

    async fn start(&self, handler: DynHandler) -> Result<()> {
        self.conn.start(handler)
    }

    fn subscribed(&self) -> Subscribed {
        self.conn.subscribed()
    }

    async fn close(&self) {
        self.conn.close().await;
    }
}
