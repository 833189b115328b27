//! [`PubSubSource`]: the source role (docs/protocol.md §7.3). Publishes spec events to
//! `topics.sourceEvents` and status resync requests to `topics.sourceBroadcast`; receives
//! status events on `subscriptions.agentEvents` and spec resync requests on
//! `subscriptions.agentBroadcast`.

use std::sync::Arc;

use async_trait::async_trait;
use maestro_api::Event;
use maestro_transport::{DynHandler, Error, Result, SourceTransport, Subscribed};

use crate::config::source_filter;
use crate::endpoint::{Endpoint, Layout, Role, SubSpec};
use crate::{BACKEND, PubSubConfig};

/// The source side of the Pub/Sub broker.
///
/// Client-side check: status events whose `ce-originalsource` is not this source id are acked
/// and dropped (spec resync requests with an empty `originalsource` are kept), since the
/// emulator ignores subscription filters and production should not rely on one check alone.
#[derive(Debug)]
pub struct PubSubSource {
    source_id: String,
    endpoint: Endpoint,
    create_consumer_subscriptions: bool,
}

impl PubSubSource {
    /// Connects the source `source_id` (Maestro's `--source-id`, default `maestro`). Runs one
    /// health check (creating missing topics/subscriptions when `autoCreate` is on) and starts
    /// the health loop; an unreachable service is not an error (publish fails with
    /// [`Error::Disconnected`] until it is reachable).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when [`PubSubConfig::validate_source`] fails, `source_id` is
    /// empty, or the credentials file is bad; [`Error::Other`] when a client cannot be built.
    pub async fn connect(config: PubSubConfig, source_id: &str) -> Result<Arc<PubSubSource>> {
        config.validate_source()?;
        if source_id.is_empty() {
            return Err(Error::invalid_config(BACKEND, "the source id is required"));
        }
        let t = &config.topics;
        let s = &config.subscriptions;
        let layout = Layout {
            role: Role::Source(source_id.to_owned()),
            events_topic: t.source_events.clone(),
            broadcast_topic: t.source_broadcast.clone(),
            subs: [
                SubSpec {
                    name: s.agent_events.clone(),
                    topic: t.agent_events.clone(),
                    filter: source_filter(source_id),
                },
                SubSpec {
                    name: s.agent_broadcast.clone(),
                    topic: t.agent_broadcast.clone(),
                    filter: String::new(),
                },
            ],
        };
        let create_consumer_subscriptions = config.create_consumer_subscriptions_enabled();
        let endpoint = Endpoint::connect(config, layout).await?;
        Ok(Arc::new(PubSubSource {
            source_id: source_id.to_owned(),
            endpoint,
            create_consumer_subscriptions,
        }))
    }

    /// The source id.
    pub fn source_id(&self) -> &str {
        &self.source_id
    }

    /// True while the last health check passed (service reachable, topics and subscriptions
    /// present).
    pub fn is_connected(&self) -> bool {
        self.endpoint.is_connected()
    }
}

#[async_trait]
impl SourceTransport for PubSubSource {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn max_event_bytes(&self) -> usize {
        self.endpoint.max_event_bytes()
    }

    /// [`crate::PUBLISH_CONCURRENCY`]: Pub/Sub keeps no order between them anyway.
    fn publish_concurrency(&self) -> usize {
        crate::PUBLISH_CONCURRENCY
    }

    /// Publishes to `sourcebroadcast` for `resync_request` events, else to `sourceevents`;
    /// returns when Pub/Sub acknowledged the publish.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::TooLarge`] over `maxEventBytes` (or Pub/Sub's 10 MB);
    /// [`Error::Disconnected`] at once while the health check fails (or when it starts
    /// failing during the publish); [`Error::Rejected`] when the publish fails, with the
    /// library's error as its source and retryable as its status says
    /// ([`crate::error::publish_is_retryable`]: e.g. not for `PERMISSION_DENIED`; yes for a
    /// missing topic), or (retryable) when it exceeds `publishTimeout`.
    async fn publish(&self, event: &Event) -> Result<()> {
        self.endpoint.publish(event).await
    }

    async fn start(&self, handler: DynHandler) -> Result<()> {
        self.endpoint.start(handler)
    }

    fn subscribed(&self) -> Subscribed {
        self.endpoint.subscribed()
    }

    /// Creates the consumer's subscriptions (`sourceevents-<consumer>` with its clustername
    /// filter, `sourcebroadcast-<consumer>`) when `createConsumerSubscriptions` is on
    /// ([`PubSubConfig::create_consumer_subscriptions_enabled`]); idempotent.
    ///
    /// # Errors
    /// [`Error::Other`] when the service refuses or is unreachable.
    async fn register_consumer(&self, consumer: &str) -> Result<()> {
        if !self.create_consumer_subscriptions {
            return Ok(());
        }
        self.endpoint.admin().create_consumer_subscriptions(consumer).await
    }

    async fn close(&self) {
        self.endpoint.close().await;
    }
}
