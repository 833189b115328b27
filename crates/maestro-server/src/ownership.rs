//! Which live server instance owns which consumer (docs/architecture.md §9), by rendezvous
//! (highest random weight) hashing: a consumer belongs to the live instance whose
//! `SHA-256(instance id, consumer)` weight is highest. Every instance computes the same owner
//! from the same live set without talking to the others, and when an instance joins or leaves
//! only the consumers it gains or loses move (about 1/N of them), which is what a ring with
//! virtual nodes (Go Maestro's `buraksezer/consistent`) also gives, in a dozen lines.
//!
//! Owners send the server's status resyncs to their consumers (MQTT, Pub/Sub: after a
//! (re)subscription, and to the consumers they gain when the live set changes), and with
//! `--subscription-type broadcast` only the owner stores a consumer's statuses.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// The key whose owner does the store-wide housekeeping (outbox and dead-letter retention,
/// status event pruning): one live instance at a time, the others skip it. A hand-over in the
/// middle is harmless, since every prune is idempotent.
pub const HOUSEKEEPING: &str = "maestro:housekeeping";

/// How the instances share the agents' events a broker delivers (Go Maestro's
/// `--subscription-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionType {
    /// Each instance handles what it receives: the broker hands each event to one instance (an
    /// MQTT `$share/<group>/` subscription, Pub/Sub's shared subscriptions), or every instance
    /// receives it and the store's acceptance rules keep one copy.
    #[default]
    Shared,
    /// Every instance receives every event (brokers without shared subscriptions, e.g. Azure
    /// Event Grid MQTT) and only the consumer's owner handles it.
    Broadcast,
}

/// The weight of `consumer` on `instance`.
fn weight(instance: &str, consumer: &str) -> u64 {
    let digest = Sha256::new().chain_update(instance).chain_update([0]).chain_update(consumer).finalize();
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The owner of `consumer` among `live` (ties, which need a SHA-256 collision, go to the
/// smaller id); `None` when `live` is empty.
pub fn owner<'a>(consumer: &str, live: &'a [String]) -> Option<&'a str> {
    heaviest(consumer, live.iter().map(String::as_str))
}

/// The id of `ids` with the highest weight for `consumer` (ties to the smaller id).
fn heaviest<'a>(consumer: &str, ids: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    ids.map(|id| (weight(id, consumer), std::cmp::Reverse(id))).max().map(|(_, std::cmp::Reverse(id))| id)
}

/// This instance's view of the live instances, kept up to date by the instance registry's
/// heartbeat ([`crate::instances::run`]).
#[derive(Debug, Clone)]
pub struct Membership {
    me: Arc<str>,
    live: watch::Receiver<Arc<Vec<String>>>,
}

impl Membership {
    /// A membership of `me` alone, and the sender the heartbeat updates it with (sorted ids of
    /// the live instances; `me` is always counted as live).
    pub fn new(me: &str) -> (Membership, watch::Sender<Arc<Vec<String>>>) {
        let (tx, live) = watch::channel(Arc::new(vec![me.to_owned()]));
        (Membership { me: me.into(), live }, tx)
    }

    /// Whether this instance owns `consumer` in the current view.
    pub fn owns(&self, consumer: &str) -> bool {
        owns(&self.me, &self.live.borrow(), consumer)
    }

    /// The current view (sorted live ids, `me` among them).
    pub fn live(&self) -> Arc<Vec<String>> {
        self.live.borrow().clone()
    }

    /// Waits for the view to change; returns the new one, `None` once the heartbeat ended.
    pub async fn changed(&mut self) -> Option<Arc<Vec<String>>> {
        self.live.changed().await.ok()?;
        Some(self.live.borrow_and_update().clone())
    }

    /// This instance's id.
    pub fn me(&self) -> &str {
        &self.me
    }
}

/// Whether `me` owns `consumer` among `live` (`me` counted as live).
pub fn owns(me: &str, live: &[String], consumer: &str) -> bool {
    heaviest(consumer, live.iter().map(String::as_str).chain(std::iter::once(me))) == Some(me)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("maestro-{i}")).collect()
    }

    /// Every consumer has exactly one owner; load is spread; a joining instance takes only
    /// consumers from the others (nothing moves between the old ones), about 1/N of them.
    #[test]
    fn one_instance_does_the_housekeeping() {
        for n in 1..6 {
            let live = ids(n);
            let keepers = live.iter().filter(|me| owns(me, &live, HOUSEKEEPING)).count();
            assert_eq!(keepers, 1, "{n} instances");
        }
    }

    #[test]
    fn owners_are_unique_spread_and_stable() {
        let consumers: Vec<String> = (0..3000).map(|i| format!("cluster-{i}")).collect();
        let three = ids(3);
        let mut count = [0_usize; 3];
        for c in &consumers {
            let owners: Vec<&String> = three.iter().filter(|me| owns(me, &three, c)).collect();
            assert_eq!(owners.len(), 1, "{c} has one owner");
            count[three.iter().position(|id| id == owners[0]).expect("an instance")] += 1;
        }
        assert!(count.iter().all(|n| (800..1200).contains(n)), "spread: {count:?}");
        let four = ids(4);
        let moved = consumers.iter().filter(|c| owner(c, &three) != owner(c, &four)).count();
        assert!(
            consumers
                .iter()
                .all(|c| owner(c, &four) == owner(c, &three) || owner(c, &four) == Some("maestro-3"))
        );
        assert!((500..1000).contains(&moved), "about a quarter moves: {moved}");
        assert_eq!(owner("c", &[]), None);
        assert!(owns("me", &[], "anything"), "alone, an instance owns everything");
    }
}
