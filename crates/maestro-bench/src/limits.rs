//! The raw limits measured in the same run: the broker alone (the same spec events, source
//! publish → agent receive, no store, no agent logic) and the store alone (the writes the
//! server makes per bundle: resource + outbox row, outbox completion, status + status event
//! row), each with as much concurrency as helps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use futures::StreamExt;
use maestro::broker::{
    AgentBrokerSettings, BrokerKind, SourceBrokerSettings, agent_transport, source_transport,
};
use maestro_api::Event;
use maestro_api::codec::{SpecEventBuilder, StatusEventBuilder};
use maestro_api::payload::ManifestBundleStatus;
use maestro_api::types::Action;
use maestro_store::{NewConsumer, NewResource, StatusWrite};
use maestro_transport::{EventHandler, HandlerError};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;

use crate::env::{Broker, BrokerProcess};
use crate::load::{SCENARIO_DEADLINE, work};

/// A raw rate.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Rate {
    /// Operations (events or bundles).
    pub count: usize,
    /// Wall time, s.
    pub seconds: f64,
    /// Per second.
    pub per_second: f64,
}

impl Rate {
    fn new(count: usize, start: Instant) -> Rate {
        let seconds = start.elapsed().as_secs_f64();
        Rate { count, seconds, per_second: count as f64 / seconds }
    }
}

#[derive(Debug, Default)]
struct Counter {
    n: AtomicUsize,
    changed: Notify,
}

#[async_trait]
impl EventHandler for Counter {
    async fn handle(&self, _event: &Event) -> Result<(), HandlerError> {
        self.n.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
        Ok(())
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn source_settings(p: &BrokerProcess) -> SourceBrokerSettings {
    SourceBrokerSettings {
        kind: match p.broker {
            Broker::Grpc => BrokerKind::Grpc,
            Broker::Mosquitto | Broker::Rumqttd | Broker::Rmqtt => BrokerKind::Mqtt,
            Broker::Pubsub => BrokerKind::Pubsub,
        },
        grpc_bind: loopback(),
        heartbeat: None,
        config_file: None,
        embedded_mqtt: p.broker.embedded_engine().map(|_| loopback()),
        embedded_mqtt_password_file: None,
        embedded_mqtt_engine: p.broker.embedded_engine().unwrap_or_default(),
        broker_url: p.mqtt_host().or_else(|| p.pubsub_endpoint()),
        pubsub_project: Some("maestro-bench".into()),
        source_id: "maestro".into(),
        client_id: "maestro-bench-raw".into(),
        grpc_tls: None,
        grpc_gate: maestro_auth::Gate::open(),
    }
}

/// The broker alone: `count` spec events of the bundles' size from a source to one agent.
///
/// # Errors
/// Transport failures; not all received within [`SCENARIO_DEADLINE`].
pub async fn broker(p: &BrokerProcess, count: usize, concurrency: usize) -> anyhow::Result<Rate> {
    let settings = source_settings(p);
    let (source, addr) = source_transport(&settings).await.context("starting the source transport")?;
    source.start(Arc::new(Counter::default())).await?;
    let agent_settings = AgentBrokerSettings {
        kind: settings.kind,
        config_file: None,
        url: addr.map(|a| a.to_string()).or(settings.broker_url.clone()),
        pubsub_project: settings.pubsub_project.clone(),
    };
    let agent = agent_transport(&agent_settings, "bench-raw", "bench-raw-agent").await?;
    let counter = Arc::new(Counter::default());
    agent.start(counter.clone()).await?;
    let mut subscribed = agent.subscribed();
    tokio::time::timeout(Duration::from_secs(60), subscribed.wait_for(|n| *n > 0))
        .await
        .context("the agent never subscribed")??;
    let events: Vec<Event> = (0..count)
        .map(|i| {
            SpecEventBuilder::new("maestro", &format!("raw-{i}"), 1, "bench-raw")
                .bundle(&work(i).bundle)
                .build()
        })
        .collect();
    let start = Instant::now();
    let source_ref = &source;
    let published: Vec<maestro_transport::Result<()>> = futures::stream::iter(events.iter())
        .map(|ev| async move { publish_retrying(source_ref, ev).await })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    published.into_iter().collect::<maestro_transport::Result<Vec<()>>>()?;
    let deadline = tokio::time::Instant::now() + SCENARIO_DEADLINE;
    while counter.n.load(Ordering::Relaxed) < count {
        let got = counter.n.load(Ordering::Relaxed);
        tokio::select! {
            () = counter.changed.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
            () = tokio::time::sleep_until(deadline) => anyhow::bail!("broker alone: only {got}/{count} received"),
        }
    }
    let rate = Rate::new(count, start);
    agent.close().await;
    source.close().await;
    Ok(rate)
}

async fn publish_retrying(
    source: &maestro_transport::DynSourceTransport,
    ev: &Event,
) -> maestro_transport::Result<()> {
    let mut attempt = 0;
    loop {
        match source.publish(ev).await {
            Err(e) if e.is_retryable() && attempt < 100 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// The store alone: the writes the server makes per bundle, pipelined as the server does
/// them: `concurrency` resource creations (row + outbox row) in flight, one completer marking
/// outbox rows done in batches (as the spec dispatcher does), and a status write (row + status
/// event row) per completed bundle, all concurrent so the store's group commit batches them.
///
/// # Errors
/// Store failures; not done within [`SCENARIO_DEADLINE`].
pub async fn store(db_url: &str, count: usize, concurrency: usize) -> anyhow::Result<Rate> {
    let store = maestro_store::open(db_url).await?;
    store
        .create_consumer(NewConsumer { name: Some("bench-store".into()), labels: Default::default() })
        .await?;
    let start = Instant::now();
    let store_ref = &store;
    let creates = async {
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..count)
            .map(|i| async move { create(store_ref, i).await })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()
    };
    let (created, statuses) = tokio::time::timeout(
        SCENARIO_DEADLINE,
        futures::future::join(creates, complete_and_report(&store, count)),
    )
    .await
    .context("store alone: not done within the scenario deadline")?;
    created?;
    statuses?;
    Ok(Rate::new(count, start))
}

fn bundle_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

async fn create(store: &maestro_store::DynStore, i: usize) -> anyhow::Result<()> {
    let id = bundle_id(i);
    let spec = SpecEventBuilder::new("maestro-bench", &id, 0, "bench-store").bundle(&work(i).bundle).build();
    store
        .create_resource(NewResource {
            id,
            name: format!("b-{i}"),
            consumer_name: "bench-store".into(),
            source: "maestro-bench".into(),
            payload: maestro_api::json::to_value(&spec).into(),
        })
        .await?;
    Ok(())
}

/// Completes outbox rows in batches as they appear and writes one status per completed row,
/// until `count` statuses are stored.
async fn complete_and_report(store: &maestro_store::DynStore, count: usize) -> anyhow::Result<()> {
    let mut changes = store.spec_changes();
    let mut writes = Vec::with_capacity(count);
    let mut completed = 0;
    while completed < count {
        // As the spec dispatcher reads them: the rows with their resources, one batch.
        let rows = store.pending_spec_deliveries(500).await?;
        if rows.is_empty() {
            tokio::select! {
                _ = changes.next() => {}
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            continue;
        }
        let seqs: Vec<i64> = rows.iter().map(|r| r.event.seq).collect();
        store.complete_spec_events(&seqs).await?;
        completed += rows.len();
        for row in rows {
            let store = store.clone();
            writes
                .push(tokio::spawn(async move { store.apply_status(status(&row.event.resource_id)).await }));
        }
    }
    for write in writes {
        write.await.context("status task")??;
    }
    Ok(())
}

/// The status write of bundle `id`, as the server makes it from an agent's status: the status
/// event the fleet's agents send for the benchmark's one-ConfigMap bundle — work conditions
/// Applied and Available, the manifest's Applied, Available and StatusFeedbackSynced, its
/// resource meta — so the store alone writes the same ~1.7 KB of status JSON per bundle (in
/// the resource row and in the status event row) as the server does.
pub(crate) fn status(id: &str) -> StatusWrite {
    let n = id.rsplit('-').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    let now = "2026-12-01T00:00:00Z"; // the size of any transition time
    let condition = |ty: &str, reason: &str, message: &str| {
        json!({"type": ty, "status": "True", "reason": reason, "message": message,
               "observedGeneration": 1, "lastTransitionTime": now})
    };
    let data = json!({
        "conditions": [
            condition("Applied", "AppliedManifestWorkComplete", "Apply manifest work complete"),
            condition("Available", "ResourcesAvailable", "All resources are available"),
        ],
        "resourceStatus": [{
            "conditions": [
                condition("Applied", "AppliedManifestComplete", "Apply manifest complete"),
                condition("Available", "ResourceAvailable", "Resource is available"),
                condition("StatusFeedbackSynced", "NoStatusFeedbackSynced", ""),
            ],
            "resourceMeta": {"ordinal": 0, "group": "", "version": "v1", "kind": "ConfigMap",
                             "resource": "configmaps", "name": format!("b-{n}"), "namespace": "default"},
            "statusFeedback": {}
        }]
    });
    let bundle_status: ManifestBundleStatus = serde_json::from_value(data).unwrap_or_default();
    let (sequence_id, hash) = (format!("{}", 1_834_773_391_719_010_304u64 + n), format!("{n:064x}"));
    let metadata = json!({"name": id, "namespace": "bench-store", "uid": id, "generation": 1});
    let event = StatusEventBuilder {
        source: "bench-store-work-agent",
        resource_id: id,
        resource_version: 1,
        cluster_name: "bench-store",
        original_source: "maestro-bench",
        sequence_id: &sequence_id,
        status_hash: &hash,
        metadata: metadata.as_object(),
        action: Action::Update,
    }
    .build(&bundle_status);
    StatusWrite {
        resource_id: id.to_owned(),
        consumer_name: "bench-store".into(),
        version: 1,
        sequence_id,
        status_hash: Some(hash),
        event: maestro_api::json::to_string(&event),
        deleted: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store alone writes a status the size the server stores for the fleet's agents
    /// (1,734 bytes of JSON measured in a run), and one the server would accept: a status
    /// event that decodes, with the resource's id and version and `Applied` true.
    #[test]
    fn the_store_alone_writes_an_agent_sized_status() {
        let write = status(&bundle_id(7));
        let text = &write.event;
        assert!((1_500..2_000).contains(&text.len()), "{} bytes: {text}", text.len());
        let event = maestro_api::json::from_slice(text.as_bytes()).expect("a CloudEvent");
        let decoded = maestro_api::codec::decode_status(&event).expect("a status event");
        assert_eq!((decoded.resource_id.as_str(), decoded.resource_version), (bundle_id(7).as_str(), 1));
        assert!(decoded.status.is_true("Applied"));
    }
}
