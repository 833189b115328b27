//! Status resync from the server (docs/protocol.md §5.1, §5.4; docs/protocol.md §12.7): after
//! every (re)subscription of a broker that can lose messages while the server is away (MQTT,
//! Pub/Sub), the server sends each consumer a `status.resync_request` listing the status hash
//! it holds per resource, in batches of at most [`MAX_IDS_PER_EVENT`] ids and
//! [`MAX_EVENT_BYTES`] bytes (at least one event per consumer, possibly empty); agents resend
//! the statuses whose hash differs, and the deletion of every deleting bundle again. After a
//! re-subscription (an outage, not the first subscription) the server also republishes every
//! current spec (see [`resync_all`]). The
//! server-hosted gRPC broker never does either (Go's does not): its agents resync specs on
//! connect and retry status publishes themselves.
//!
//! With several server instances each sends these only to the consumers it owns
//! ([`crate::ownership`]), and sends status resyncs to the consumers it gains when the set of
//! live instances changes (the previous owner may have died with statuses unread).

use maestro_api::Event;
use maestro_api::codec::status_resync_request;
use maestro_api::payload::{StatusHash, StatusHashList};
use maestro_api::statushash::sha256_hex;
use maestro_api::types::Action;
use maestro_store::{DynStore, Resource, StoreError};
use maestro_transport::retry::CancellationToken;
use maestro_transport::{DynSourceTransport, Subscribed};

use crate::ownership::{Membership, owns};

/// Most resource ids per status resync request.
pub const MAX_IDS_PER_EVENT: usize = 1000;
/// Largest status resync request, bytes of structured JSON (the MQTT packet limit Maestro
/// assumes).
pub const MAX_EVENT_BYTES: usize = 512 * 1024;

/// The hash the server holds for a resource: the agent's `statushash`, else SHA-256 of the
/// empty string (no status yet), as Maestro does.
pub fn held_hash(r: &Resource) -> String {
    r.status_hash.clone().unwrap_or_else(|| sha256_hex(b""))
}

/// Builds the status resync requests for one consumer: batches of at most
/// [`MAX_IDS_PER_EVENT`] ids, each at most [`MAX_EVENT_BYTES`] (a batch over the byte limit is
/// split in halves); at least one (possibly empty) event.
pub fn batches(source_id: &str, consumer: &str, resources: &[Resource]) -> Vec<Event> {
    let hashes: Vec<StatusHash> = resources
        .iter()
        .map(|r| StatusHash { resource_id: r.id.clone(), status_hash: held_hash(r) })
        .collect();
    if hashes.is_empty() {
        return vec![status_resync_request(source_id, consumer, &StatusHashList::default())];
    }
    let mut out = Vec::new();
    for chunk in hashes.chunks(MAX_IDS_PER_EVENT) {
        split_by_size(source_id, consumer, chunk, &mut out);
    }
    out
}

fn split_by_size(source_id: &str, consumer: &str, chunk: &[StatusHash], out: &mut Vec<Event>) {
    let ev = status_resync_request(source_id, consumer, &StatusHashList { status_hashes: chunk.to_vec() });
    if chunk.len() <= 1 || maestro_transport::event_size(&ev) <= MAX_EVENT_BYTES {
        out.push(ev);
        return;
    }
    let (a, b) = chunk.split_at(chunk.len() / 2);
    split_by_size(source_id, consumer, a, out);
    split_by_size(source_id, consumer, b, out);
}

/// Sends the status resync requests of every consumer `owned` accepts, the deletion of each
/// of their deleting bundles, and, when `with_specs`, the current spec of every other bundle,
/// as `spec.resync_response`s (agents ignore versions they already hold); returns how many
/// events were sent.
///
/// Why the deletions always: an agent that finished a deletion while the server was away
/// (killed, or cut from the broker) published its `Deleted` status into the void, then forgot
/// the work, so no status resync brings it back and the bundle would stay deleting forever.
/// The deletion sent again makes the agent, which no longer holds the work, report it deleted
/// again (docs/protocol.md §5.1). Found by the fault-injection suite (`maestro-faults`, kill -9
/// of the server on Mosquitto).
///
/// Why the specs after a broker outage: an agent's `spec.resync_request` sent when it
/// resubscribed is lost if the broker did not yet hold the server's subscription again (a
/// restarted Pub/Sub emulator, an MQTT broker that lost its sessions), and nothing else would
/// deliver what the outage swallowed until the agent's periodic resync (5 min).
///
/// # Errors
/// Store failures. Publish failures are logged and skipped (the next resubscription retries).
pub async fn resync_all(
    store: &DynStore,
    transport: &DynSourceTransport,
    source_id: &str,
    with_specs: bool,
    owned: &(dyn Fn(&str) -> bool + Sync),
) -> Result<usize, StoreError> {
    let mut sent = 0;
    for c in crate::registered::consumer_names::<Vec<String>, _>(store).await? {
        if !owned(&c) {
            continue;
        }
        let resources = store.resources_for_consumers(std::slice::from_ref(&c)).await?;
        let specs = resources
            .iter()
            .filter(|r| with_specs || r.deleted_at.is_some())
            .map(|r| crate::spec::outgoing_spec(r, source_id, Action::ResyncResponse));
        for ev in batches(source_id, &c, &resources).into_iter().chain(specs) {
            match transport.publish(&ev).await {
                Ok(()) => sent += 1,
                Err(e) => tracing::warn!(consumer = %c, error = %e, "status resync request not sent"),
            }
        }
    }
    Ok(sent)
}

/// Runs a status resync of the consumers this instance owns after every (re)subscription of
/// `transport` (`subscribed`, its signal, taken **before** the transport started, else the
/// first subscription may pass unseen), and of the consumers it gains when `membership`
/// changes, until `cancel` is cancelled. Does nothing when the server hosts the agents'
/// endpoint (`Capabilities::server_hosts_agents`).
pub async fn run(
    store: DynStore,
    transport: DynSourceTransport,
    mut subscribed: Subscribed,
    source_id: String,
    mut membership: Membership,
    cancel: CancellationToken,
) {
    if transport.capabilities().server_hosts_agents {
        return;
    }
    let mut view = membership.live();
    loop {
        let gained_from = tokio::select! {
            r = subscribed.changed() => if r.is_err() { return } else { None },
            new = membership.changed() => match new {
                Some(new) => Some(std::mem::replace(&mut view, new)),
                None => return,
            },
            () = cancel.cancelled() => return,
        };
        let n = *subscribed.borrow();
        if n == 0 {
            continue;
        }
        let me = membership.me();
        let sent = match &gained_from {
            // The live set changed: the consumers this instance owns now and did not before.
            Some(old) => {
                let gained = |c: &str| owns(me, &view, c) && !owns(me, old, c);
                resync_all(&store, &transport, &source_id, false, &gained).await
            }
            None => {
                subscribed.borrow_and_update();
                resync_all(&store, &transport, &source_id, n > 1, &|c: &str| owns(me, &view, c)).await
            }
        };
        match sent {
            Ok(0) if gained_from.is_some() => {}
            Ok(n) => tracing::info!(events = n, backend = transport.backend(), "status resync sent"),
            Err(e) => tracing::warn!(error = %e, "status resync failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maestro_api::codec::data_as;
    use serde_json::json;

    fn resource(i: usize, hash_len: usize) -> Resource {
        let now = chrono::Utc::now();
        Resource {
            id: format!("{i:036}"),
            name: format!("r{i}"),
            consumer_name: "c1".into(),
            source: "s".into(),
            version: 1,
            payload: json!({}).into(),
            status: None,
            status_hash: Some("f".repeat(hash_len)),
            sequence_id: None,
            deleted_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn empty_consumer_gets_one_empty_request() {
        let evs = batches("maestro", "c1", &[]);
        assert_eq!(evs.len(), 1);
        let l: StatusHashList = data_as(&evs[0], "StatusHashList").expect("payload");
        assert!(l.status_hashes.is_empty());
    }

    #[test]
    fn batches_respect_count_and_size_limits() {
        let many: Vec<Resource> = (0..2500).map(|i| resource(i, 64)).collect();
        let evs = batches("maestro", "c1", &many);
        assert_eq!(evs.len(), 3, "1000 + 1000 + 500");
        let big: Vec<Resource> = (0..1000).map(|i| resource(i, 1024)).collect();
        let evs = batches("maestro", "c1", &big);
        assert!(evs.len() > 1, "1000 hashes of 1 KiB exceed 512 KiB");
        let mut total = 0;
        for ev in &evs {
            assert!(maestro_transport::event_size(ev) <= MAX_EVENT_BYTES);
            total += data_as::<StatusHashList>(ev, "StatusHashList").expect("payload").status_hashes.len();
        }
        assert_eq!(total, 1000, "no id lost by splitting");
    }
}
