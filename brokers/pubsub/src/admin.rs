//! Creating Maestro's topics and subscriptions (docs/protocol.md §7.3; Go Maestro does this with
//! `hack/init-pubsub-emulator.sh` or its cloud chart). Every call is idempotent:
//! `AlreadyExists` counts as success, and existing resources are left unchanged (a filter
//! cannot be changed after creation in Pub/Sub).

use maestro_transport::{Error, Result};

use crate::config::{cluster_filter, source_filter};
use crate::conn::{Clients, is_already_exists, is_not_found};
use crate::error::call_error as other;
use crate::{BACKEND, PubSubConfig};

fn required<'a>(key: &str, v: &'a str) -> Result<&'a str> {
    if v.is_empty() { Err(Error::invalid_config(BACKEND, format!("{key} is required"))) } else { Ok(v) }
}

/// Admin operations on one project (REST `TopicAdmin` / `SubscriptionAdmin`).
#[derive(Debug, Clone)]
pub struct Admin {
    config: PubSubConfig,
    clients: Clients,
}

impl Admin {
    /// Admin clients for `config` (endpoint and credentials as for the transports).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad configuration or credentials file; [`Error::Other`]
    /// when a client cannot be built.
    pub async fn new(config: &PubSubConfig) -> Result<Admin> {
        config.validate()?;
        Ok(Admin { config: config.clone(), clients: Clients::new(config).await? })
    }

    pub(crate) fn from_clients(config: &PubSubConfig, clients: Clients) -> Admin {
        Admin { config: config.clone(), clients }
    }

    /// Creates the four topics of `topics.*` (all required). Existing ones are kept.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a topic name is missing; [`Error::Other`] when the
    /// service refuses or is unreachable.
    pub async fn create_topics(&self) -> Result<()> {
        let t = &self.config.topics;
        for (key, name) in [
            ("topics.sourceEvents", &t.source_events),
            ("topics.sourceBroadcast", &t.source_broadcast),
            ("topics.agentEvents", &t.agent_events),
            ("topics.agentBroadcast", &t.agent_broadcast),
        ] {
            self.create_topic(required(key, name)?).await?;
        }
        Ok(())
    }

    /// Creates topic `name` (`projects/<p>/topics/<t>`) unless it exists.
    ///
    /// # Errors
    /// [`Error::Other`] (holding a [`crate::error::PubSubError::Call`], retryable as its
    /// status says) when the service refuses or is unreachable.
    pub async fn create_topic(&self, name: &str) -> Result<()> {
        match self.clients.topics.create_topic().set_name(name).send().await {
            Ok(_) => {
                tracing::info!(backend = BACKEND, topic = name, "topic created");
                Ok(())
            }
            Err(e) if is_already_exists(&e) => Ok(()),
            Err(e) => Err(other(format!("create topic {name}"), e)),
        }
    }

    /// Creates subscription `name` on `topic` with `filter` (empty = none) unless it exists.
    ///
    /// # Errors
    /// [`Error::Other`] when the service refuses (e.g. the topic is missing) or is
    /// unreachable.
    pub async fn create_subscription(&self, name: &str, topic: &str, filter: &str) -> Result<()> {
        let req = self
            .clients
            .subscriptions
            .create_subscription()
            .set_name(name)
            .set_topic(topic)
            .set_filter(filter)
            .set_ack_deadline_seconds(60);
        match req.send().await {
            Ok(_) => {
                tracing::info!(backend = BACKEND, subscription = name, topic, filter, "subscription created");
                Ok(())
            }
            Err(e) if is_already_exists(&e) => Ok(()),
            Err(e) => Err(other(format!("create subscription {name}"), e)),
        }
    }

    /// Creates a consumer's (agent's) subscriptions: `sourceevents-<cluster>` on
    /// `topics.sourceEvents` with filter `attributes."ce-clustername"="<cluster>"`, and
    /// `sourcebroadcast-<cluster>` on `topics.sourceBroadcast` without filter. Use it when a
    /// consumer is registered.
    ///
    /// # Errors
    /// As [`Admin::create_subscription`]; [`Error::InvalidConfig`] when a topic is missing.
    pub async fn create_consumer_subscriptions(&self, cluster: &str) -> Result<()> {
        let t = &self.config.topics;
        let events = required("topics.sourceEvents", &t.source_events)?;
        let broadcast = required("topics.sourceBroadcast", &t.source_broadcast)?;
        let c = &self.config;
        self.create_subscription(
            &c.subscription_name(&format!("sourceevents-{cluster}")),
            events,
            &cluster_filter(cluster),
        )
        .await?;
        self.create_subscription(&c.subscription_name(&format!("sourcebroadcast-{cluster}")), broadcast, "")
            .await
    }

    /// Creates a source's subscriptions: `agentevents-<source_id>` on `topics.agentEvents`
    /// with filter `attributes."ce-originalsource"="<source_id>"`, and
    /// `agentbroadcast-<source_id>` on `topics.agentBroadcast` without filter.
    ///
    /// # Errors
    /// As [`Admin::create_subscription`]; [`Error::InvalidConfig`] when a topic is missing.
    pub async fn create_source_subscriptions(&self, source_id: &str) -> Result<()> {
        let t = &self.config.topics;
        let events = required("topics.agentEvents", &t.agent_events)?;
        let broadcast = required("topics.agentBroadcast", &t.agent_broadcast)?;
        let c = &self.config;
        self.create_subscription(
            &c.subscription_name(&format!("agentevents-{source_id}")),
            events,
            &source_filter(source_id),
        )
        .await?;
        self.create_subscription(&c.subscription_name(&format!("agentbroadcast-{source_id}")), broadcast, "")
            .await
    }

    /// The filter of subscription `name`; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// [`Error::Other`] (holding a [`crate::error::PubSubError::Call`], retryable as its
    /// status says) when the service refuses or is unreachable.
    pub async fn subscription_filter(&self, name: &str) -> Result<Option<String>> {
        match self.clients.subscriptions.get_subscription().set_subscription(name).send().await {
            Ok(s) => Ok(Some(s.filter)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(other(format!("get subscription {name}"), e)),
        }
    }

    /// Whether topic `name` exists.
    ///
    /// # Errors
    /// [`Error::Other`] (holding a [`crate::error::PubSubError::Call`], retryable as its
    /// status says) when the service refuses or is unreachable.
    pub async fn topic_exists(&self, name: &str) -> Result<bool> {
        match self.clients.topics.get_topic().set_topic(name).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(other(format!("get topic {name}"), e)),
        }
    }
}

/// Creates Maestro's layout (docs/protocol.md §7.3): the four topics of `config.topics`, the
/// source's subscriptions for `source_id` and every consumer's subscriptions. Idempotent. Used
/// by `maestro pubsub init` and the tests.
///
/// # Errors
/// [`Error::InvalidConfig`] for a bad configuration or a missing topic name; [`Error::Other`]
/// when the service refuses or is unreachable.
pub async fn init(config: &PubSubConfig, source_id: &str, consumers: &[String]) -> Result<()> {
    let admin = Admin::new(config).await?;
    admin.create_topics().await?;
    admin.create_source_subscriptions(source_id).await?;
    for consumer in consumers {
        admin.create_consumer_subscriptions(consumer).await?;
    }
    Ok(())
}

/// Creates one consumer's subscriptions (see [`Admin::create_consumer_subscriptions`]); the
/// topics must exist. Call it when a consumer is registered.
///
/// # Errors
/// As [`init`].
pub async fn init_consumer(config: &PubSubConfig, consumer: &str) -> Result<()> {
    Admin::new(config).await?.create_consumer_subscriptions(consumer).await
}
