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

    /// Creates topic `name` (`projects/<p>/topics/<t>`) unless it exists; `true` when this
    /// call created it.
    ///
    /// # Errors
    /// [`Error::Other`] (holding a [`crate::error::PubSubError::Call`], retryable as its
    /// status says) when the service refuses or is unreachable.
    pub async fn create_topic(&self, name: &str) -> Result<bool> {
        match self.clients.topics.create_topic().set_name(name).send().await {
            Ok(_) => {
                tracing::info!(backend = BACKEND, topic = name, "topic created");
                Ok(true)
            }
            Err(e) if is_already_exists(&e) => Ok(false),
            Err(e) => Err(other(format!("create topic {name}"), e)),
        }
    }

    /// Creates subscription `name` on `topic` with `filter` (empty = none) unless it exists;
    /// `true` when this call created it.
    ///
    /// # Errors
    /// [`Error::Other`] when the service refuses (e.g. the topic is missing) or is
    /// unreachable.
    pub async fn create_subscription(&self, name: &str, topic: &str, filter: &str) -> Result<bool> {
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
                Ok(true)
            }
            Err(e) if is_already_exists(&e) => Ok(false),
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
        for (name, topic, filter) in consumer_subscriptions(&self.config, cluster, events, broadcast) {
            self.create_subscription(&name, topic, &filter).await?;
        }
        Ok(())
    }

    /// Deletes topic `name`.
    ///
    /// # Errors
    /// [`Error::Other`] when the service refuses or is unreachable.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let done = self.clients.topics.delete_topic().set_topic(name).send().await;
        done.map(|_| ()).map_err(|e| other(format!("delete topic {name}"), e))
    }

    /// Deletes subscription `name`.
    ///
    /// # Errors
    /// [`Error::Other`] when the service refuses or is unreachable.
    pub async fn delete_subscription(&self, name: &str) -> Result<()> {
        let done = self.clients.subscriptions.delete_subscription().set_subscription(name).send().await;
        done.map(|_| ()).map_err(|e| other(format!("delete subscription {name}"), e))
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

/// The subscriptions of consumer `cluster`: `(name, topic, filter)`.
fn consumer_subscriptions<'a>(
    config: &PubSubConfig,
    cluster: &str,
    events: &'a str,
    broadcast: &'a str,
) -> [(String, &'a str, String); 2] {
    [
        (config.subscription_name(&format!("sourceevents-{cluster}")), events, cluster_filter(cluster)),
        (config.subscription_name(&format!("sourcebroadcast-{cluster}")), broadcast, String::new()),
    ]
}

/// Everything [`init`] creates, every name resolved and checked before anything is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitPlan {
    /// Topic names (`projects/<p>/topics/<t>`).
    pub topics: Vec<String>,
    /// Subscriptions: `(name, topic, filter)`.
    pub subscriptions: Vec<(String, String, String)>,
}

/// `configured` when set (checked to be `projects/<project>/<kind>/<id>`), else Maestro's
/// `default` in the project.
fn resolved(config: &PubSubConfig, key: &str, configured: &str, kind: &str, default: &str) -> Result<String> {
    if configured.is_empty() {
        return Ok(format!("projects/{}/{kind}/{default}", config.project_id));
    }
    let parts: Vec<&str> = configured.split('/').collect();
    match parts.as_slice() {
        ["projects", project, k, id] if !project.is_empty() && *k == kind && !id.is_empty() => {
            Ok(configured.into())
        }
        _ => Err(Error::invalid_config(
            BACKEND,
            format!("{key} {configured:?} is not a {kind} name (projects/<project>/{kind}/<name>)"),
        )),
    }
}

/// Plans Maestro's layout (docs/protocol.md §7.3) for `config`: the four topics (a name the
/// configuration leaves out is Maestro's: a Go server config names only `sourceEvents` and
/// `sourceBroadcast`, an agent config only `agentEvents` and `agentBroadcast`), the source's
/// subscriptions (the configured `subscriptions.agentEvents` / `agentBroadcast`, else
/// `agentevents-<source_id>` / `agentbroadcast-<source_id>`) and every consumer's.
///
/// # Errors
/// [`Error::InvalidConfig`] for a malformed topic or subscription name.
pub fn plan(config: &PubSubConfig, source_id: &str, consumers: &[String]) -> Result<InitPlan> {
    let (t, s) = (&config.topics, &config.subscriptions);
    let source_events = resolved(config, "topics.sourceEvents", &t.source_events, "topics", "sourceevents")?;
    let source_broadcast =
        resolved(config, "topics.sourceBroadcast", &t.source_broadcast, "topics", "sourcebroadcast")?;
    let agent_events = resolved(config, "topics.agentEvents", &t.agent_events, "topics", "agentevents")?;
    let agent_broadcast =
        resolved(config, "topics.agentBroadcast", &t.agent_broadcast, "topics", "agentbroadcast")?;
    let events_sub = format!("agentevents-{source_id}");
    let broadcast_sub = format!("agentbroadcast-{source_id}");
    let mut subscriptions = vec![
        (
            resolved(config, "subscriptions.agentEvents", &s.agent_events, "subscriptions", &events_sub)?,
            agent_events.clone(),
            source_filter(source_id),
        ),
        (
            resolved(
                config,
                "subscriptions.agentBroadcast",
                &s.agent_broadcast,
                "subscriptions",
                &broadcast_sub,
            )?,
            agent_broadcast.clone(),
            String::new(),
        ),
    ];
    for consumer in consumers {
        let subs = consumer_subscriptions(config, consumer, &source_events, &source_broadcast);
        subscriptions.extend(subs.map(|(name, topic, filter)| (name, topic.to_owned(), filter)));
    }
    Ok(InitPlan {
        topics: vec![source_events, source_broadcast, agent_events, agent_broadcast],
        subscriptions,
    })
}

/// Creates Maestro's layout as [`plan`] resolves it. Idempotent: what exists is kept. All or
/// nothing: when a creation fails, what this call created is deleted again (newest first) and
/// the error returned, so a failed run leaves the project as it found it.
///
/// # Errors
/// [`Error::InvalidConfig`] for a bad configuration (before anything is created);
/// [`Error::Other`] when the service refuses or is unreachable.
pub async fn init(config: &PubSubConfig, source_id: &str, consumers: &[String]) -> Result<()> {
    let plan = plan(config, source_id, consumers)?;
    let admin = Admin::new(config).await?;
    let mut created: Vec<(bool, String)> = Vec::new();
    let mut result = Ok(());
    for topic in &plan.topics {
        match admin.create_topic(topic).await {
            Ok(true) => created.push((true, topic.clone())),
            Ok(false) => {}
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    for (name, topic, filter) in plan.subscriptions.iter().filter(|_| result.is_ok()) {
        match admin.create_subscription(name, topic, filter).await {
            Ok(true) => created.push((false, name.clone())),
            Ok(false) => {}
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_err() {
        roll_back(&admin, created).await;
    }
    result
}

/// Deletes what a failed [`init`] created, newest first; a deletion that fails is logged.
async fn roll_back(admin: &Admin, created: Vec<(bool, String)>) {
    for (is_topic, name) in created.into_iter().rev() {
        let deleted =
            if is_topic { admin.delete_topic(&name).await } else { admin.delete_subscription(&name).await };
        match deleted {
            Ok(()) => tracing::info!(backend = BACKEND, name, "rolled back after a failed init"),
            Err(e) => {
                tracing::error!(backend = BACKEND, name, error = %e, "rolling back a failed init: delete it by hand")
            }
        }
    }
}

/// Creates one consumer's subscriptions (see [`Admin::create_consumer_subscriptions`]); the
/// topics must exist. Call it when a consumer is registered.
///
/// # Errors
/// As [`init`].
pub async fn init_consumer(config: &PubSubConfig, consumer: &str) -> Result<()> {
    Admin::new(config).await?.create_consumer_subscriptions(consumer).await
}
