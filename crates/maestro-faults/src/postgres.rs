//! A PostgreSQL cluster of the harness's own (`initdb` into a temporary directory, `pg_ctl`),
//! so a fault can kill its postmaster with SIGKILL and start it again on the same data, which
//! then runs crash recovery, as after a power cut. Runs as the `postgres` user when the harness
//! runs as root (PostgreSQL refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// A running (or killed) PostgreSQL cluster.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PgCluster {
    /// `initdb` and start a cluster on a free port (durable settings: fsync on).
    ///
    /// # Errors
    /// When the server binaries are missing or a command fails.
    pub fn start() -> anyhow::Result<PgCluster> {
        let bin = server_bin()?;
        let dir = tempfile::Builder::new().prefix("maestro-faults-pg").tempdir().context("temp dir")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let cluster = PgCluster { bin, dir, port };
        cluster.chown()?;
        let data = cluster.data();
        cluster.run(&format!(
            "{}/initdb -D {data} -U postgres -A trust -E UTF8 --no-locale --no-sync",
            cluster.bin()
        ))?;
        cluster.up()?;
        Ok(cluster)
    }

    fn bin(&self) -> String {
        self.bin.display().to_string()
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// The admin URL (`postgres` database).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the postmaster on the cluster's data and waits until it accepts connections.
    ///
    /// # Errors
    /// When `pg_ctl start` fails (its log is in the error).
    pub fn up(&self) -> anyhow::Result<()> {
        let dir = self.dir.path().display();
        let opts = format!("-p {} -k {dir} -c listen_addresses=127.0.0.1 -c max_connections=200", self.port);
        let cmd = format!("{}/pg_ctl -D {} -l {dir}/log -w -o '{opts}' start", self.bin(), self.data());
        self.run(&cmd)
            .with_context(|| std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default())
    }

    /// Kills the postmaster with SIGKILL (its backends exit when they notice), and waits until
    /// nothing listens on the port any more.
    ///
    /// # Errors
    /// When the postmaster's pid cannot be read.
    pub fn kill(&self) -> anyhow::Result<()> {
        let pid_file = Path::new(&self.data()).join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).context("reading postmaster.pid")?;
        let pid: i32 = text.lines().next().unwrap_or_default().trim().parse().context("postmaster pid")?;
        // The backends of a SIGKILLed postmaster exit on their own; kill them too so the
        // port and shared memory are free for the restart.
        let _ = Command::new("pkill").args(["-9", "-P", &pid.to_string()]).status();
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            if std::time::Instant::now() > deadline {
                bail!("PostgreSQL still listens 10 s after SIGKILL");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(pid_file);
        Ok(())
    }

    fn chown(&self) -> anyhow::Result<()> {
        if is_root() {
            let dir = self.dir.path().display().to_string();
            let ok = Command::new("chown").args(["postgres:postgres", &dir]).status()?.success();
            anyhow::ensure!(ok, "chown {dir} failed");
        }
        Ok(())
    }

    fn run(&self, cmd: &str) -> anyhow::Result<()> {
        let out = if is_root() {
            Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", cmd]).output()
        } else {
            Command::new("sh").args(["-c", cmd]).output()
        }
        .with_context(|| format!("running {cmd}"))?;
        if !out.status.success() {
            bail!("{cmd}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.run(&format!("{}/pg_ctl -D {} -m immediate stop", self.bin(), self.data()));
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`.
fn server_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server binaries not found (apt-get install -y postgresql)")?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .context("no initdb under /usr/lib/postgresql/*/bin (apt-get install -y postgresql)")
}
