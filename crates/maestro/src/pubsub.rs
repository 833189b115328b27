//! `maestro pubsub init`: creates Maestro's Pub/Sub topics and subscriptions (docs/protocol.md
//! §7.3), what Go Maestro does with `hack/init-pubsub-emulator.sh` or its cloud chart.

use crate::cli::PubSubInitArgs;

/// Runs `maestro pubsub init`: the four topics, the source's subscriptions and those of every
/// `--consumer`, idempotently and all or nothing; prints what it set up. A Go Maestro server
/// config (naming only the source side) works: the names it leaves out are Maestro's.
///
/// # Errors
/// A bad or missing configuration, an invalid consumer name, or the service refusing.
#[cfg(not(feature = "pubsub"))]
pub async fn init(_a: PubSubInitArgs) -> anyhow::Result<()> {
    Err(crate::broker::BrokerError::NotBuilt("pubsub").into())
}

/// Runs `maestro pubsub init` (see above).
///
/// # Errors
/// As above.
#[cfg(feature = "pubsub")]
pub async fn init(a: PubSubInitArgs) -> anyhow::Result<()> {
    use crate::broker::{PubSubRole, pubsub_config};
    use anyhow::Context;
    for c in &a.consumers {
        anyhow::ensure!(
            maestro_api::validate::is_dns1123_label(c),
            "consumer name {c:?} must be a DNS-1123 label (lower-case alphanumerics and '-', at most 63)"
        );
    }
    let config = pubsub_config(
        a.broker_config.as_deref(),
        a.broker_url.as_deref(),
        a.pubsub.pubsub_project.as_deref(),
        PubSubRole::Source(&a.source_id),
    )?;
    let endpoint = config.resolve_endpoint().url.unwrap_or_else(|| "https://pubsub.googleapis.com".into());
    let plan = maestro_broker_pubsub::plan(&config, &a.source_id, &a.consumers)?;
    maestro_broker_pubsub::init(&config, &a.source_id, &a.consumers).await.with_context(|| {
        format!("creating Maestro's topics and subscriptions at {endpoint} (nothing was left half made)")
    })?;
    println!("project {} at {endpoint}:", config.project_id);
    for topic in &plan.topics {
        println!("  topic {topic}");
    }
    for (name, topic, filter) in &plan.subscriptions {
        let filter = if filter.is_empty() { String::new() } else { format!(" filter {filter}") };
        println!("  subscription {name} on {topic}{filter}");
    }
    Ok(())
}
