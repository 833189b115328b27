//! [`PubSubAgent`]: the agent role (docs/protocol.md §7.3). Publishes status events to
//! `topics.agentEvents` and spec resync requests to `topics.agentBroadcast`; receives spec
//! events on `subscriptions.sourceEvents` and status resync requests on
//! `subscriptions.sourceBroadcast`.

use std::sync::Arc;

use async_trait::async_trait;
use maestro_api::Event;
use maestro_transport::{AgentTransport, DynHandler, Error, Result, Subscribed};

use crate::config::cluster_filter;
use crate::endpoint::{Endpoint, Layout, Role, SubSpec};
use crate::{BACKEND, PubSubConfig};

/// The agent side of the Pub/Sub broker.
///
/// Client-side check: events whose `ce-clustername` is not this consumer are acked and
/// dropped, except resync requests (broadcast to every agent, docs/protocol.md §7.3), since the
/// emulator ignores subscription filters and production should not rely on one check alone.
#[derive(Debug)]
pub struct PubSubAgent {
    consumer: String,
    agent_id: String,
    endpoint: Endpoint,
}

impl PubSubAgent {
    /// Connects the agent of `consumer` (cluster name); `agent_id` names it in logs. Runs one
    /// health check (creating missing topics/subscriptions when `autoCreate` is on) and
    /// starts the health loop; an unreachable service is not an error.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when [`PubSubConfig::validate_agent`] fails, `consumer` is
    /// empty, or the credentials file is bad; [`Error::Other`] when a client cannot be built.
    pub async fn connect(config: PubSubConfig, consumer: &str, agent_id: &str) -> Result<Arc<PubSubAgent>> {
        config.validate_agent()?;
        if consumer.is_empty() {
            return Err(Error::invalid_config(BACKEND, "the consumer name is required"));
        }
        let t = &config.topics;
        let s = &config.subscriptions;
        let layout = Layout {
            role: Role::Agent(consumer.to_owned()),
            events_topic: t.agent_events.clone(),
            broadcast_topic: t.agent_broadcast.clone(),
            subs: [
                SubSpec {
                    name: s.source_events.clone(),
                    topic: t.source_events.clone(),
                    filter: cluster_filter(consumer),
                },
                SubSpec {
                    name: s.source_broadcast.clone(),
                    topic: t.source_broadcast.clone(),
                    filter: String::new(),
                },
            ],
        };
        let endpoint = Endpoint::connect(config, layout).await?;
        Ok(Arc::new(PubSubAgent { consumer: consumer.to_owned(), agent_id: agent_id.to_owned(), endpoint }))
    }

    /// The agent id given to [`PubSubAgent::connect`].
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// True while the last health check passed.
    pub fn is_connected(&self) -> bool {
        self.endpoint.is_connected()
    }
}

#[async_trait]
impl AgentTransport for PubSubAgent {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn consumer(&self) -> &str {
        &self.consumer
    }

    /// [`crate::PUBLISH_CONCURRENCY`]: Pub/Sub keeps no order between them anyway.
    fn publish_concurrency(&self) -> usize {
        crate::PUBLISH_CONCURRENCY
    }

    /// Publishes to `agentbroadcast` for `resync_request` events, else to `agentevents`;
    /// returns when Pub/Sub acknowledged the publish.
    ///
    /// # Errors
    /// As [`crate::PubSubSource`]'s publish: [`Error::Closed`], [`Error::TooLarge`],
    /// [`Error::Disconnected`] (fast), [`Error::Rejected`] (retryable as its status says).
    async fn publish(&self, event: &Event) -> Result<()> {
        self.endpoint.publish(event).await
    }

    async fn start(&self, handler: DynHandler) -> Result<()> {
        self.endpoint.start(handler)
    }

    fn subscribed(&self) -> Subscribed {
        self.endpoint.subscribed()
    }

    async fn close(&self) {
        self.endpoint.close().await;
    }
}
