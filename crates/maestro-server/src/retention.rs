//! Outbox retention (docs/security.md, "Bad input"): spec outbox rows marked done are deleted in
//! batches once they are older than the retention window, so the table stays bounded however
//! long the server runs; dead letters are kept for [`RetentionConfig::dead_letters_max_age`]
//! and at most [`RetentionConfig::dead_letters_keep`] of them (docs/security.md, "Dead
//! letters"). (Status event rows are pruned by [`crate::hub`] after fan-out.)

use std::time::Duration;

use maestro_store::DynStore;
use maestro_transport::retry::CancellationToken;

use crate::ownership::{HOUSEKEEPING, Membership};

/// Retention settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// How often done rows are pruned (default 60 s).
    pub interval: Duration,
    /// How long a done row is kept, for inspection (default 1 h).
    pub keep_done_for: Duration,
    /// Rows deleted per statement (default 10,000), so one prune never holds a long lock.
    pub batch: i64,
    /// How long a dead letter is kept (default 7 days).
    pub dead_letters_max_age: Duration,
    /// Most dead letters kept; older ones beyond it are deleted (default 10,000).
    pub dead_letters_keep: i64,
    /// How often the status event rows already fanned out to sources are deleted (default
    /// 30 s; [`crate::hub::Fanout::run`]).
    pub status_events_prune_every: Duration,
    /// How long a deleted bundle is remembered (default 1 h, docs/protocol.md §5.6): longer
    /// than a broker redelivers a message a dead subscriber took.
    pub deleted_resources_keep: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            interval: Duration::from_secs(60),
            keep_done_for: Duration::from_secs(3600),
            batch: 10_000,
            dead_letters_max_age: Duration::from_secs(7 * 24 * 3600),
            dead_letters_keep: 10_000,
            status_events_prune_every: Duration::from_secs(30),
            deleted_resources_keep: Duration::from_secs(3600),
        }
    }
}

/// Prunes every `config.interval` until shutdown, while this instance owns the housekeeping
/// ([`crate::ownership::HOUSEKEEPING`]; with one instance, always).
pub async fn run(
    store: DynStore,
    config: RetentionConfig,
    membership: Membership,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = cancel.cancelled() => return,
        }
        if !membership.owns(HOUSEKEEPING) {
            continue;
        }
        match prune_once(&store, &config).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "pruned done spec outbox rows and old dead letters"),
            Err(e) => tracing::warn!(error = %e, "pruning the spec outbox failed; will retry"),
        }
    }
}

/// The time `age` ago (the epoch's start when out of range).
fn ago(age: Duration) -> chrono::DateTime<chrono::Utc> {
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    chrono::Utc::now().checked_sub_signed(age).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// Deletes the done rows older than the window, batch by batch, the dead letters beyond
/// their limits and the deleted bundles remembered longer than their window; returns how many
/// rows of all three.
///
/// # Errors
/// The store's error; rows deleted before it stay deleted.
pub async fn prune_once(store: &DynStore, config: &RetentionConfig) -> maestro_store::Result<u64> {
    let letters =
        store.prune_dead_letters(ago(config.dead_letters_max_age), config.dead_letters_keep).await?;
    let forgotten = store.prune_deleted_resources(config.deleted_resources_keep).await?;
    let cutoff = ago(config.keep_done_for);
    let mut total = letters + forgotten;
    loop {
        let n = store.prune_spec_events(cutoff, config.batch).await?;
        total += n;
        if n < config.batch.max(1) as u64 {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maestro_store::{NewConsumer, NewResource};
    use serde_json::json;

    #[tokio::test]
    async fn done_rows_are_pruned_in_batches_and_pending_ones_kept() {
        let store = maestro_store::open("sqlite::memory:").await.expect("store");
        store
            .create_consumer(NewConsumer { name: Some("c1".into()), labels: Default::default() })
            .await
            .expect("c1");
        for i in 0..7 {
            let r = NewResource {
                id: format!("r{i}"),
                name: format!("r{i}"),
                consumer_name: "c1".into(),
                source: "s".into(),
                payload: json!({"i": i}).into(),
            };
            store.create_resource(r).await.expect("create");
        }
        let pending = store.pending_spec_events(100).await.expect("pending");
        let done: Vec<i64> = pending.iter().take(5).map(|r| r.seq).collect();
        store.complete_spec_events(&done).await.expect("complete");

        let keep_all =
            RetentionConfig { keep_done_for: Duration::from_secs(3600), batch: 2, ..Default::default() };
        assert_eq!(
            prune_once(&store, &keep_all).await.expect("prune"),
            0,
            "rows younger than the window stay"
        );
        let keep_none = RetentionConfig { keep_done_for: Duration::ZERO, batch: 2, ..Default::default() };
        tokio::time::sleep(Duration::from_millis(5)).await; // done_at strictly before the cutoff
        assert_eq!(prune_once(&store, &keep_none).await.expect("prune"), 5, "three batches: 2 + 2 + 1");
        assert_eq!(prune_once(&store, &keep_none).await.expect("prune"), 0);
        assert_eq!(store.pending_spec_events(100).await.expect("pending").len(), 2, "pending rows are kept");
    }
}
