//! The store's part of the fleet-wipe guard (docs/operations.md §3.5): the store identity and
//! operators' wipe confirmations, on every backend.

use std::time::Duration;

use maestro_store::{DynStore, StoreError};

mod common;

suite!(the_identity_is_stable_and_unlike_another_database, wipe_confirmations_hold_for_their_ttl);

/// The identity made by the migration reads the same every time, is UUID-shaped, and a
/// database created afterwards has another.
async fn the_identity_is_stable_and_unlike_another_database(store: DynStore) {
    let id = store.store_identity().await.expect("identity");
    assert_eq!(store.store_identity().await.expect("identity again"), id);
    let parts: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(parts, [8, 4, 4, 4, 12], "{id} is UUID-shaped");
    assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{id}");
    store.migrate().await.expect("migrating again");
    assert_eq!(store.store_identity().await.expect("identity after migrate"), id, "migrations keep it");
    let other = maestro_store::open("sqlite::memory:").await.expect("another database");
    assert_ne!(other.store_identity().await.expect("other identity"), id);
}

/// A confirmation holds for its consumer until its ttl passes; a new one replaces it; a ttl
/// over the maximum is refused.
async fn wipe_confirmations_hold_for_their_ttl(store: DynStore) {
    assert!(!store.wipe_confirmed("c1").await.expect("read"), "none yet");
    let before = chrono::Utc::now();
    let until = store.confirm_wipe("c1", Duration::from_secs(3600)).await.expect("confirm");
    let ends_in = until - before;
    assert!((3590..=3610).contains(&ends_in.num_seconds()), "ends in {ends_in}");
    assert!(store.wipe_confirmed("c1").await.expect("read"));
    assert!(!store.wipe_confirmed("c2").await.expect("read"), "only c1's");
    store.confirm_wipe("c1", Duration::ZERO).await.expect("replace with an ended one");
    assert!(!store.wipe_confirmed("c1").await.expect("read"), "a ttl of 0 has ended");
    let too_long = maestro_store::MAX_WIPE_CONFIRMATION + Duration::from_secs(1);
    let refused = store.confirm_wipe("c1", too_long).await;
    assert!(matches!(refused, Err(StoreError::Invalid(_))), "{refused:?}");
}
