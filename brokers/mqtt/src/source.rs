//! The source role ([`MqttSource`], the Maestro server side): publishes spec events and status
//! resync requests on the topics of docs/protocol.md §7.2, receives status events and spec resync
//! requests from `agentEvents` (+ `agentBroadcast`).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use maestro_api::{Event, mqtt};
use maestro_transport::{DynHandler, Error, Result, SourceTransport, Subscribed};

use crate::config::{DEFAULT_SOURCE_CLIENT_ID, MqttConfig, invalid, invalid_because};
use crate::conn::{Conn, Identity};
use crate::{BACKEND, topics};

/// The source side of the MQTT broker.
pub struct MqttSource {
    conn: Conn,
    config: MqttConfig,
    source_id: String,
    client_id: String,
}

impl fmt::Debug for MqttSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttSource")
            .field("broker", &self.config.broker_host)
            .field("source_id", &self.source_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl MqttSource {
    /// Validates `config` and starts connecting in the background (reconnecting with backoff
    /// for ever; `publish` fails with [`Error::Disconnected`] until connected). `source_id` is
    /// the CloudEvents source (Maestro: `maestro`) and must be the source segment of
    /// `topics.agentEvents`. The MQTT client id is `config.clientId`, else `client_id`, else
    /// `maestro` (docs/protocol.md §7.2). Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an invalid configuration, an empty source id, an
    /// `agentEvents` topic naming another source, or unreadable TLS material.
    pub async fn connect(config: MqttConfig, source_id: &str, client_id: &str) -> Result<Arc<MqttSource>> {
        config.validate()?;
        if source_id.is_empty() {
            return Err(invalid("the source id is required"));
        }
        let filters = topics::source_subscriptions(&config.topics, source_id).map_err(invalid_because)?;
        let client_id = config
            .client_id
            .clone()
            .filter(|c| !c.is_empty())
            .or_else(|| Some(client_id.to_owned()).filter(|c| !c.is_empty()))
            .unwrap_or_else(|| DEFAULT_SOURCE_CLIENT_ID.to_owned());
        let id = Identity {
            role: "source",
            name: source_id.to_owned(),
            client_id: client_id.clone(),
            verify_agent_origin: true,
        };
        let conn = Conn::open(&config, id, filters)?;
        Ok(Arc::new(MqttSource { conn, config, source_id: source_id.to_owned(), client_id }))
    }

    /// The source id.
    pub fn source_id(&self) -> &str {
        &self.source_id
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
    /// [`Error::Encode`] when no topic can be derived (see [`topics::source_publish_topic`]).
    pub fn publish_topic(&self, event: &Event) -> Result<String> {
        topics::source_publish_topic(&self.config.topics, &self.source_id, event)
            .map_err(|e| Error::encode_from(BACKEND, e))
    }
}

/// Checks the size limit (bytes of structured JSON, like every backend).
pub(crate) fn check_size(config: &MqttConfig, event: &Event) -> Result<()> {
    let size = maestro_transport::event_size(event);
    let limit = config.max_event_bytes;
    if size > limit {
        return Err(Error::TooLarge { backend: BACKEND, size, limit });
    }
    Ok(())
}

#[async_trait]
impl SourceTransport for MqttSource {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn max_event_bytes(&self) -> usize {
        self.config.max_event_bytes
    }

    /// Publishes on the derived topic and waits for the PUBACK.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::TooLarge`]; [`Error::Encode`] when no topic can be derived
    /// (e.g. a resync to all clusters without `sourceBroadcast`); [`Error::Disconnected`] at
    /// once while disconnected (or when the connection drops before the PUBACK);
    /// [`Error::Rejected`] when the broker refuses it or no PUBACK arrives in `publishTimeout`.
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
