//! [`RawClient`]: a bare MQTT 5 client (rumqttc, no reconnect) that shows what a broker
//! answered: CONNACK refusals, SUBACK and PUBACK reason codes, and every message received.
//! Attack tests use it to act as a misbehaving peer.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    Filter, LastWill, Packet, PubAckReason, Publish, PublishProperties, SubscribeReasonCode,
};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};
use tokio::sync::mpsc;

/// How long [`RawClient`] waits for any one answer of the broker.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected test client; see the module documentation.
pub struct RawClient {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Packet, String>>,
    inbox: Vec<Publish>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawClient").field("inbox", &self.inbox.len()).finish_non_exhaustive()
    }
}

impl RawClient {
    /// Connects to `addr` (`host:port`) as `client_id` with `login` (user, password).
    ///
    /// # Errors
    /// What the connection attempt ended with (e.g. `ConnectionRefused(BadUserNamePassword)`,
    /// or an I/O error when the broker closes without a CONNACK).
    ///
    /// # Panics
    /// When `addr` is not `host:port`.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Result<RawClient, String> {
        Self::connect_with(addr, client_id, login, None).await
    }

    /// Like [`RawClient::connect`] with a will message on `will_topic`.
    ///
    /// # Errors
    /// As [`RawClient::connect`].
    ///
    /// # Panics
    /// As [`RawClient::connect`].
    pub async fn connect_with(
        addr: &str,
        client_id: &str,
        login: Option<(&str, &str)>,
        will_topic: Option<&str>,
    ) -> Result<RawClient, String> {
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        let mut opts = MqttOptions::new(client_id, host, port.parse::<u16>().expect("port"));
        opts.set_keep_alive(Duration::from_secs(30)).set_clean_start(true);
        if let Some((user, password)) = login {
            opts.set_credentials(user, password);
        }
        if let Some(topic) = will_topic {
            opts.set_last_will(LastWill::new(topic, "gone", QoS::AtLeastOnce, false, None));
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, mut events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(packet)) => {
                        if tx.send(Ok(packet)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = tx.send(Err(describe(&e)));
                        return;
                    }
                }
            }
        });
        match tokio::time::timeout(ANSWER_TIMEOUT, events.recv()).await {
            Ok(Some(Ok(Packet::ConnAck(_)))) => Ok(RawClient { client, events, inbox: Vec::new(), task }),
            Ok(Some(Ok(other))) => Err(format!("expected CONNACK, got {other:?}")),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err("event loop ended".into()),
            Err(_) => Err("no CONNACK in time".into()),
        }
    }

    /// Takes one event: a PUBLISH goes to the inbox (`None`), any other packet is returned.
    async fn pump_one(&mut self) -> Result<Option<Packet>, String> {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.events.recv()).await {
            Ok(Some(Ok(Packet::Publish(p)))) => {
                self.inbox.push(p);
                Ok(None)
            }
            Ok(Some(Ok(packet))) => Ok(Some(packet)),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err("connection ended".into()),
            Err(_) => Err("no answer in time".into()),
        }
    }

    /// The next packet from the broker other than a PUBLISH (those go to the inbox).
    async fn next_answer(&mut self) -> Result<Packet, String> {
        loop {
            if let Some(packet) = self.pump_one().await? {
                return Ok(packet);
            }
        }
    }

    /// Subscribes to `filter` (QoS 1) and returns the SUBACK reason codes.
    ///
    /// # Errors
    /// When the connection ends (e.g. the broker disconnects) or no SUBACK arrives.
    pub async fn subscribe(&mut self, filter: &str) -> Result<Vec<SubscribeReasonCode>, String> {
        self.subscribe_many(&[filter]).await
    }

    /// Subscribes to all `filters` in one SUBSCRIBE (QoS 1) and returns the SUBACK reason codes.
    ///
    /// # Errors
    /// As [`RawClient::subscribe`].
    pub async fn subscribe_many(&mut self, filters: &[&str]) -> Result<Vec<SubscribeReasonCode>, String> {
        let filters = filters.iter().map(|f| Filter::new(*f, QoS::AtLeastOnce));
        self.client.subscribe_many(filters).await.map_err(|e| e.to_string())?;
        loop {
            if let Packet::SubAck(ack) = self.next_answer().await? {
                return Ok(ack.return_codes);
            }
        }
    }

    /// Publishes `payload` on `topic` at QoS 1 and returns the PUBACK reason.
    ///
    /// # Errors
    /// When the connection ends or no PUBACK arrives.
    pub async fn publish(&mut self, topic: &str, payload: &str) -> Result<PubAckReason, String> {
        let payload = Bytes::copy_from_slice(payload.as_bytes());
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.map_err(|e| e.to_string())?;
        self.wait_puback().await
    }

    /// Publishes a CloudEvent in binary mode ([`maestro_api::mqtt::encode`]) on `topic` at QoS 1
    /// and returns the PUBACK reason: what a Go peer, or a rogue one, would send.
    ///
    /// # Errors
    /// When the connection ends or no PUBACK arrives.
    pub async fn publish_event(
        &mut self,
        topic: &str,
        event: &maestro_api::Event,
    ) -> Result<PubAckReason, String> {
        let msg = maestro_api::mqtt::encode(event);
        let props = PublishProperties {
            content_type: msg.content_type,
            user_properties: msg.user_properties,
            ..PublishProperties::default()
        };
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, msg.payload, props)
            .await
            .map_err(|e| e.to_string())?;
        self.wait_puback().await
    }

    async fn wait_puback(&mut self) -> Result<PubAckReason, String> {
        loop {
            if let Packet::PubAck(ack) = self.next_answer().await? {
                return Ok(ack.reason);
            }
        }
    }

    /// Waits until a message on `topic` arrived (up to 10 s) and returns its payload; every
    /// message received before it stays in [`RawClient::received`].
    ///
    /// # Errors
    /// When the connection ends or no such message arrives in time.
    pub async fn wait_message(&mut self, topic: &str) -> Result<Bytes, String> {
        loop {
            if let Some(p) = self.inbox.iter().find(|p| p.topic == topic.as_bytes()) {
                return Ok(p.payload.clone());
            }
            if let Some(packet) = self.pump_one().await? {
                tracing::debug!(?packet, "RawClient: other packet while waiting for a message");
            }
        }
    }

    /// Every message received so far: (topic, payload).
    pub fn received(&self) -> Vec<(String, String)> {
        self.inbox
            .iter()
            .map(|p| {
                (
                    String::from_utf8_lossy(&p.topic).into_owned(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                )
            })
            .collect()
    }

    /// Disconnects.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => format!("refused: {code:?}"),
        other => other.to_string(),
    }
}

/// True when a SUBACK code grants the subscription.
pub fn granted(code: &SubscribeReasonCode) -> bool {
    matches!(code, SubscribeReasonCode::Success(_))
}
