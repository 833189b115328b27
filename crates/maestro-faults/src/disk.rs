//! A small disk for the SQLite store, so the "disk full" fault is a real `ENOSPC`: a tmpfs of
//! [`SmallDisk::SIZE_MIB`] MiB mounted on a temporary directory (root only: `mount -t tmpfs`).
//! Filling it writes a filler file until the file system refuses more; healing removes it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// A mounted tmpfs holding the server's SQLite files; unmounted on drop.
#[derive(Debug)]
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// The size of the file system, MiB: room for the harness's few hundred bundles, their
    /// events and the write-ahead log many times over.
    pub const SIZE_MIB: u64 = 64;

    /// Mounts a tmpfs of [`SmallDisk::SIZE_MIB`] MiB on a new temporary directory.
    ///
    /// # Errors
    /// When `mount` fails, e.g. not running as root (the error says so).
    pub fn mount() -> anyhow::Result<SmallDisk> {
        let dir = tempfile::Builder::new().prefix("maestro-faults-disk").tempdir().context("temp dir")?;
        let size = format!("size={}m", Self::SIZE_MIB);
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir.path())
            .output()
            .context("running mount")?;
        if !out.status.success() {
            bail!(
                "mounting a {} MiB tmpfs for the SQLite store failed (the disk-full fault needs root): {}",
                Self::SIZE_MIB,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(SmallDisk { dir })
    }

    /// The mounted directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }

    /// Fills the file system: appends 64 KiB blocks to a filler file until a write fails with
    /// "no space left on device". Returns the bytes written.
    ///
    /// # Errors
    /// When the filler cannot be created, or a write fails for another reason.
    pub fn fill(&self) -> anyhow::Result<u64> {
        let mut file = std::fs::File::create(self.filler()).context("creating the filler file")?;
        let block = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&block) {
                Ok(0) => return Ok(written),
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return Ok(written),
                Err(e) => return Err(e).context("writing the filler file"),
            }
        }
    }

    /// Frees the space [`SmallDisk::fill`] took.
    ///
    /// # Errors
    /// When the filler cannot be removed.
    pub fn free(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(self.filler()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).context("removing the filler file"),
            _ => Ok(()),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-l"]).arg(self.dir.path()).status();
    }
}
