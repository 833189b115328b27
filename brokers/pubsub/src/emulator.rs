//! The official Pub/Sub emulator (Debian package `google-cloud-cli-pubsub-emulator`, see
//! README.md "Set-up on a fresh machine") on a free local port, for `maestro demo --broker
//! pubsub` and the tests. The demo uses [`Emulator::try_start`]; [`Emulator::start`] panics on
//! failure and is meant for tests.
//!
//! [`Emulator::start`] launches `cloud-pubsub-emulator --host=127.0.0.1 --port=PORT` and waits
//! for its `Server started, listening on PORT` log line (≈ 4 s). The process is killed on
//! drop. The emulator keeps everything in memory: after [`Emulator::restart`] it is EMPTY
//! (no topics, subscriptions or messages), and it stores subscription filters without
//! applying them.
//!
//! Set `MAESTRO_PUBSUB_EMULATOR` to use another launcher; set `MAESTRO_PUBSUB_EMULATOR_LOG=1`
//! to copy the emulator's output to stderr.

#![allow(clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use maestro_transport::retry::{delays, exponential};

/// The launcher's usual location.
pub const DEFAULT_LAUNCHER: &str =
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";
/// The Debian package providing the launcher.
pub const PACKAGE: &str = "google-cloud-cli-pubsub-emulator";
/// How long to wait for the emulator to start.
pub const START_DEADLINE: Duration = Duration::from_secs(90);
/// The first wait before [`Emulator::restart`] tries the port again (the old socket may not be
/// released yet); doubled per attempt up to [`RESTART_RETRY_MAX`].
const RESTART_RETRY_INITIAL: Duration = Duration::from_millis(200);
/// The longest wait between two attempts of [`Emulator::restart`].
const RESTART_RETRY_MAX: Duration = Duration::from_secs(2);

/// Why the emulator cannot be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// No launcher was found.
    #[error(
        "the Pub/Sub emulator launcher cloud-pubsub-emulator was not found: install the Debian package \
         {PACKAGE} (it provides {DEFAULT_LAUNCHER}) or set MAESTRO_PUBSUB_EMULATOR"
    )]
    NoLauncher,
    /// The launcher cannot be run.
    #[error("cannot run {}: {source} (package {PACKAGE})", launcher.display())]
    Spawn {
        /// The launcher.
        launcher: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The emulator did not report that it listens within [`START_DEADLINE`].
    #[error(
        "the Pub/Sub emulator did not report \"Server started, listening on {port}\" within {START_DEADLINE:?} ({source})"
    )]
    NotReady {
        /// The port it was started on.
        port: u16,
        /// Why the wait ended.
        #[source]
        source: mpsc::RecvTimeoutError,
    },
    /// The blocking task that starts the emulator failed.
    #[error("the task starting the Pub/Sub emulator failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl EmulatorError {
    /// True when trying again cannot help: the launcher is missing or cannot be run.
    pub fn is_installation(&self) -> bool {
        matches!(self, EmulatorError::NoLauncher | EmulatorError::Spawn { .. })
    }
}

/// A running emulator process (killed on drop).
#[derive(Debug)]
pub struct Emulator {
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
    child: Option<Child>,
}

/// Finds the emulator launcher: `$MAESTRO_PUBSUB_EMULATOR`, [`DEFAULT_LAUNCHER`], the file
/// `dpkg -L google-cloud-cli-pubsub-emulator` lists, or `cloud-pubsub-emulator` on `PATH`.
///
/// # Errors
/// [`EmulatorError::NoLauncher`] (naming the package) when none is found.
pub fn find_launcher() -> Result<PathBuf, EmulatorError> {
    if let Some(p) = std::env::var_os("MAESTRO_PUBSUB_EMULATOR") {
        return Ok(PathBuf::from(p));
    }
    if std::path::Path::new(DEFAULT_LAUNCHER).is_file() {
        return Ok(DEFAULT_LAUNCHER.into());
    }
    if let Ok(out) = Command::new("dpkg").args(["-L", PACKAGE]).output() {
        let listed = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = listed.lines().find(|l| l.ends_with("bin/cloud-pubsub-emulator")) {
            return Ok(line.into());
        }
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("cloud-pubsub-emulator")).find(|f| f.is_file()));
    on_path.flatten().ok_or(EmulatorError::NoLauncher)
}

/// A free local TCP port (bound to 0 and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

fn spawn(port: u16) -> Result<Child, EmulatorError> {
    let launcher = find_launcher()?;
    let mut child = Command::new(&launcher)
        .args(["--host=127.0.0.1", &format!("--port={port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| EmulatorError::Spawn { launcher: launcher.clone(), source })?;
    let (tx, rx) = mpsc::channel::<()>();
    let ready = format!("Server started, listening on {port}");
    let echo = std::env::var_os("MAESTRO_PUBSUB_EMULATOR_LOG").is_some();
    let readers: Vec<Box<dyn std::io::Read + Send>> = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    for r in readers {
        let (tx, ready) = (tx.clone(), ready.clone());
        // Keep draining the output so the emulator never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[pubsub-emulator:{port}] {line}");
                }
                if line.contains(&ready) {
                    let _ = tx.send(());
                }
            }
        });
    }
    drop(tx);
    match rx.recv_timeout(START_DEADLINE) {
        Ok(()) => Ok(child),
        Err(source) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(EmulatorError::NotReady { port, source })
        }
    }
}

impl Emulator {
    /// Starts an emulator on a free port and waits until it is ready.
    ///
    /// # Panics
    /// When the launcher is missing (the message names the package) or the emulator does not
    /// start in time.
    pub async fn start() -> Emulator {
        match Emulator::try_start().await {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        }
    }

    /// As [`Emulator::start`], returning the failure instead of panicking.
    ///
    /// # Errors
    /// [`EmulatorError`]: the launcher is missing or cannot be run, or (after three ports) the
    /// emulator does not start in time.
    pub async fn try_start() -> Result<Emulator, EmulatorError> {
        // A port found free can be taken before the emulator binds it: try a few.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let error = match tokio::task::spawn_blocking(move || spawn(port)).await {
                Ok(Ok(child)) => return Ok(Emulator { port, child: Some(child) }),
                Ok(Err(e)) => e,
                Err(e) => EmulatorError::Task(e),
            };
            if error.is_installation() || attempt >= 3 {
                return Err(error);
            }
        }
    }

    /// `127.0.0.1:PORT` (for `endpoint` / `PUBSUB_EMULATOR_HOST`).
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.endpoint())
    }

    /// True while the process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the process (SIGKILL) and waits for it to exit. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process (if running) and starts a new, EMPTY emulator on the same port.
    ///
    /// # Panics
    /// When it does not start in time (retried while the old socket is released).
    pub async fn restart(&mut self) {
        self.kill();
        let port = self.port;
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        let mut waits = delays(exponential(RESTART_RETRY_INITIAL, RESTART_RETRY_MAX), RESTART_RETRY_MAX);
        loop {
            match tokio::task::spawn_blocking(move || spawn(port)).await {
                Ok(Ok(child)) => {
                    self.child = Some(child);
                    return;
                }
                Ok(Err(e)) if tokio::time::Instant::now() >= deadline || e.is_installation() => {
                    panic!("restarting the Pub/Sub emulator on port {port}: {e}")
                }
                // Nothing cancels a restart but its deadline.
                Ok(Err(_)) => tokio::time::sleep(waits.next().unwrap_or(RESTART_RETRY_MAX)).await,
                Err(e) => panic!("restarting the Pub/Sub emulator on port {port}: {e}"),
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill();
    }
}
