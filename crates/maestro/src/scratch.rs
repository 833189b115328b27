//! A private temporary directory removed on drop: the demo's database and the local stack's
//! broker config files. (The `tempfile` crate stays out of the production binary's dependency
//! tree; it is used by tests only.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes directories created by one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory under the system's temporary directory (`$TMPDIR`, else `/tmp`), readable
/// only by this user, removed with its contents when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<tmp>/<prefix>-<pid>-<n>-<nanos>` with mode 0700.
    ///
    /// # Errors
    /// The I/O error of creating it.
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path)?;
        Ok(ScratchDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_private_distinct_and_removed_on_drop() {
        let (a, b) =
            (ScratchDir::new("maestro-test").expect("a"), ScratchDir::new("maestro-test").expect("b"));
        assert_ne!(a.path(), b.path());
        std::fs::write(a.path().join("f"), "x").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(a.path()).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let path = a.path().to_owned();
        drop(a);
        assert!(!path.exists());
    }
}
