//! One `maestro server` per SQLite file (docs/operations.md §3.1): SQLite's feeds and
//! sweeps live in one process, so a second server on the same file would dispatch and prune
//! beside the first without either knowing. The server takes an advisory lock on
//! `<database file>.maestro-lock` before it opens the store and holds it while it runs; the
//! operating system releases it when the process ends, however it ends (even `kill -9`), so a
//! stale lock file never keeps a server from starting.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use anyhow::Context;

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// The lock file of the SQLite database at `db`.
fn lock_path(db: &std::path::Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".maestro-lock");
    PathBuf::from(name)
}

/// Takes this process's claim on the SQLite database `db_url`; `Ok(None)` for an in-memory
/// database or PostgreSQL (several instances share PostgreSQL).
///
/// # Errors
/// Another server holds the database (the message names the file and what to do instead), or
/// the lock file cannot be created next to the database.
pub fn claim(db_url: &str) -> anyhow::Result<Option<InstanceLock>> {
    let Some(db) = maestro_store::sqlite::database_file(db_url) else { return Ok(None) };
    let path = lock_path(&db);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(InstanceLock { _file: file })),
        Err(TryLockError::WouldBlock) => anyhow::bail!(
            "the SQLite database {} is in use by another maestro server (it holds {}): SQLite serves \
             one server instance; stop the other one, or use PostgreSQL for several instances",
            db.display(),
            path.display()
        ),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The second claim on one file is refused while the first is held, and taken once it is
    /// dropped; in-memory databases and PostgreSQL need none.
    #[test]
    fn one_claim_per_sqlite_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let first = claim(&url).expect("first claim").expect("a lock");
        let err = claim(&url).expect_err("second claim").to_string();
        assert!(err.contains("is in use by another maestro server"), "{err}");
        assert!(err.contains("m.db.maestro-lock"), "{err}");
        drop(first);
        assert!(claim(&url).expect("claim after release").is_some());
        assert!(claim("sqlite::memory:").expect("memory").is_none());
        assert!(claim("postgres://u@h/db").expect("postgres").is_none());
    }
}
