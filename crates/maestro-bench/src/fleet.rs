//! The server as its own process and the fleet simulator.
//!
//! [`ServerProcess`] runs `maestro server` as a child process on free loopback ports, so its
//! resident memory and CPU time are measured alone (from `/proc/<pid>`). [`Fleet`] runs the
//! simulated agents (one [`Agent`] per consumer on its own [`SimulatedCluster`], one reconcile
//! worker each, every one with its own broker connection) and the load generator's clients in
//! this process.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use indicatif::ProgressBar;
use maestro::broker::{AgentBrokerSettings, BrokerKind, agent_transport};
use maestro::stack::SimulatedAgents;
use maestro_agent::{AgentConfig, SimulatedCluster};
use maestro_client::{RestClient, SourceClient};

use crate::env::{Broker, BrokerProcess};
use crate::load::SCENARIO_DEADLINE;

/// The source id the load generator publishes as.
pub const SOURCE_ID: &str = "maestro-bench";
/// Agents started together by [`Fleet::start_agents`].
pub const WAVE: usize = 500;
/// The GCP project used on the Pub/Sub emulator.
const PUBSUB_PROJECT: &str = "maestro-bench";

/// The `maestro` binary: `$MAESTRO_BIN`, else next to this executable (or one directory up,
/// for test executables in `target/*/deps`).
///
/// # Errors
/// When none exists, naming where it looked and how to build it.
pub fn maestro_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MAESTRO_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let dirs = exe.ancestors().skip(1).take(2);
    let candidates: Vec<PathBuf> = dirs.map(|d| d.join("maestro")).collect();
    candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
        format!(
            "the maestro binary was not found at {candidates:?}: build it with `cargo build --release -p maestro` \
             (same profile as maestro-bench) or set MAESTRO_BIN"
        )
    })
}

/// A number per server process this harness starts: their client ids (the instance ids) must
/// differ when several share a database and an MQTT broker.
fn next_instance() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A fresh `--client-id` for a server process of this harness.
fn client_id() -> String {
    format!("maestro-bench-{}-{}", std::process::id(), next_instance())
}

/// Spawns `command` (binary, arguments) with the harness's server log level, stderr to `log`;
/// the child and its pid.
fn spawn(
    (bin, args): &(PathBuf, Vec<std::ffi::OsString>),
    log: std::fs::File,
) -> anyhow::Result<(tokio::process::Child, u32)> {
    let child = tokio::process::Command::new(bin)
        .args(args)
        .env("RUST_LOG", std::env::var(SERVER_LOG_ENV).unwrap_or_else(|_| "warn".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id().context("the server exited at once")?;
    Ok((child, pid))
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("picking a free port")?;
    Ok(l.local_addr()?)
}

/// Resident memory (MiB) and CPU time (user + system, s) of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Resident set size, MiB.
    pub rss_mib: f64,
    /// CPU seconds used so far.
    pub cpu_s: f64,
}

impl Usage {
    /// Reads `/proc/<pid>/status` and `/proc/<pid>/stat` (`"self"` for this process); zeros
    /// when `/proc` is unavailable. CPU ticks are taken at the usual 100 per second.
    pub fn of(pid: &str) -> Usage {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_mib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (in parentheses): utime is the 14th, stime the 15th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        Usage { rss_mib, cpu_s: (ticks(11) + ticks(12)) / 100.0 }
    }
}

/// Environment variable: the server's `RUST_LOG` (default `warn`), e.g. `info,rumqttd=debug`.
pub const SERVER_LOG_ENV: &str = "MAESTRO_BENCH_SERVER_LOG";
/// Environment variable: when set, each server's log is kept (its path is printed) instead of
/// being deleted with the run.
pub const KEEP_LOG_ENV: &str = "MAESTRO_BENCH_KEEP_LOG";

/// `maestro server` running as a child process (killed when dropped).
#[derive(Debug)]
pub struct ServerProcess {
    child: tokio::process::Child,
    pid: u32,
    /// REST address.
    pub http: SocketAddr,
    /// Source gRPC address.
    pub grpc: SocketAddr,
    agents: AgentBrokerSettings,
    /// With logins on the embedded MQTT broker: every agent's password (user = its consumer).
    mqtt_password: Option<String>,
    /// The agents' `hub_host` for these broker settings (computed once).
    hub_host: String,
    log: PathBuf,
    /// The binary and its arguments, to start it again on the same ports.
    command: (PathBuf, Vec<std::ffi::OsString>),
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `bin server` for `broker` on `db_url` and waits until its REST API answers.
    ///
    /// # Errors
    /// Spawn failures; the process exiting or not answering within 60 s (with its log's tail).
    pub async fn start(bin: &Path, broker: &BrokerProcess, db_url: &str) -> anyhow::Result<Self> {
        Self::start_inner(bin, broker, db_url, &[]).await
    }

    /// [`ServerProcess::start`] with the embedded MQTT broker requiring logins: a password
    /// file (in the server's directory) with one user per name of `users`, all with one random
    /// password, which the agents then log in with as their consumer.
    ///
    /// # Errors
    /// As [`ServerProcess::start`]; the broker not an embedded one; the file not written.
    pub async fn start_with_logins(
        bin: &Path,
        broker: &BrokerProcess,
        db_url: &str,
        users: &[String],
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(broker.broker.embedded_engine().is_some(), "logins need the embedded MQTT broker");
        Self::start_inner(bin, broker, db_url, users).await
    }

    async fn start_inner(
        bin: &Path,
        broker: &BrokerProcess,
        db_url: &str,
        users: &[String],
    ) -> anyhow::Result<Self> {
        let mut dir = tempfile::tempdir().context("creating a directory for the server log")?;
        if std::env::var_os(KEEP_LOG_ENV).is_some() {
            dir.disable_cleanup(true);
            eprintln!("server log: {}", dir.path().join("server.log").display());
        }
        let log = dir.path().join("server.log");
        let (http, grpc) = (free_port()?, free_port()?);
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("server")
            .args(["--db", db_url, "--http-addr", &http.to_string(), "--grpc-addr", &grpc.to_string()])
            .args(["--client-id", &client_id()])
            .args(["--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0"])
            .arg(format!("--resync-min-interval={}s", crate::RESYNC_MIN_INTERVAL.as_secs()));
        let agents = agent_settings(&mut cmd, broker)?;
        let mqtt_password = match users {
            [] => None,
            users => Some(write_password_file(&mut cmd, dir.path(), users)?),
        };
        let hub_host = agents.hub_host()?;
        let command = (bin.to_owned(), cmd.as_std().get_args().map(ToOwned::to_owned).collect());
        let log_file = std::fs::File::create(&log).context("creating the server log")?;
        let (child, pid) = spawn(&command, log_file)?;
        let mut server = ServerProcess {
            child,
            pid,
            http,
            grpc,
            agents,
            mqtt_password,
            hub_host,
            log,
            command,
            _dir: dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let rest = RestClient::new(&format!("http://{}", self.http))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("the server exited ({status}) during start-up:\n{}", self.log_tail());
            }
            if rest.list_consumers(None, 1, 1).await.is_ok() {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the server did not answer within 60 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The server process's memory and CPU now.
    pub fn usage(&self) -> Usage {
        Usage::of(&self.pid.to_string())
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Kills the server (SIGKILL) and reaps it; the value stays (a dead instance).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Kills the server (SIGKILL) and starts it again with the same arguments (ports,
    /// database, broker) but a new `--client-id`, as a rescheduled pod would be (under the same
    /// id it would wait for the killed instance's lease, 15 s), appending to its log; waits
    /// until its REST API answers.
    ///
    /// # Errors
    /// As [`ServerProcess::start`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await;
        let log =
            std::fs::OpenOptions::new().append(true).open(&self.log).context("opening the server log")?;
        let args = &mut self.command.1;
        if let Some(i) = args.iter().position(|a| a == "--client-id")
            && let Some(id) = args.get_mut(i + 1)
        {
            *id = client_id().into();
        }
        (self.child, self.pid) = spawn(&self.command, log)?;
        self.wait_ready().await
    }

    /// Where agents reach the broker: with the gRPC broker, this server's own agent port.
    pub fn agent_url(&self) -> Option<&str> {
        self.agents.url.as_deref()
    }

    /// Makes agents reach the broker at `url` instead (a load balancer in front of several
    /// instances' gRPC broker ports).
    pub fn set_agent_url(&mut self, url: String) {
        self.agents.url = Some(url);
    }
}

/// Writes a Mosquitto password file with `users` (one random password for all) into `dir`
/// and adds `--embedded-mqtt-password-file` to `cmd`; returns the password.
fn write_password_file(
    cmd: &mut tokio::process::Command,
    dir: &Path,
    users: &[String],
) -> anyhow::Result<String> {
    use maestro_broker_mqtt::gate::passwd;
    let password = passwd::random_password()?;
    let mut text = String::new();
    for user in users {
        text.push_str(&format!("{user}:{}\n", passwd::hash_password(&password)?));
    }
    let path = dir.join("mqtt.passwd");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    cmd.arg("--embedded-mqtt-password-file").arg(&path);
    Ok(password)
}

/// Adds the broker flags of `broker` to `cmd`; returns how agents reach the broker.
fn agent_settings(
    cmd: &mut tokio::process::Command,
    broker: &BrokerProcess,
) -> anyhow::Result<AgentBrokerSettings> {
    let (kind, url, project) = match broker.broker {
        Broker::Grpc => {
            let addr = free_port()?.to_string();
            cmd.args(["--broker", "grpc", "--grpc-broker-addr", &addr]);
            (BrokerKind::Grpc, addr, None)
        }
        Broker::Mosquitto => {
            let host = broker.mqtt_host().context("Mosquitto is not running")?;
            cmd.args(["--broker", "mqtt", "--broker-url", &host]);
            (BrokerKind::Mqtt, host, None)
        }
        Broker::Rumqttd | Broker::Rmqtt => {
            let addr = free_port()?.to_string();
            let engine = broker.broker.embedded_engine().map_or("rumqttd", |e| e.as_str());
            cmd.args(["--broker", "mqtt", "--embedded-mqtt", &addr, "--embedded-mqtt-engine", engine]);
            (BrokerKind::Mqtt, addr, None)
        }
        Broker::Pubsub => {
            let endpoint = broker.pubsub_endpoint().context("the Pub/Sub emulator is not running")?;
            cmd.args(["--broker", "pubsub", "--broker-url", &endpoint, "--pubsub-project", PUBSUB_PROJECT]);
            (BrokerKind::Pubsub, endpoint, Some(PUBSUB_PROJECT.to_owned()))
        }
    };
    Ok(AgentBrokerSettings { kind, config_file: None, url: Some(url), pubsub_project: project })
}

/// The server process, the load generator's clients and the simulated agents.
pub struct Fleet {
    /// The server.
    pub server: ServerProcess,
    /// REST client.
    pub rest: RestClient,
    /// Source client (the load generator).
    pub source: SourceClient,
    agents: SimulatedAgents,
    /// Each running agent's subscribed signal (subscriptions so far) and when it was started
    /// (it asks for a spec resync as it connects).
    running: std::collections::HashMap<String, (maestro_transport::Subscribed, tokio::time::Instant)>,
    /// The agents' periodic status sync interval, when not the agent's default.
    status_sync: Option<Duration>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("server", &self.server).field("agents", &self.agents).finish()
    }
}

impl Fleet {
    /// Connects the clients to `server`.
    ///
    /// # Errors
    /// Client connection failures.
    pub async fn start(server: ServerProcess) -> anyhow::Result<Self> {
        let rest = RestClient::new(&format!("http://{}", server.http))?;
        let source = SourceClient::connect(&server.grpc.to_string(), SOURCE_ID, rest.clone())
            .await
            .context("connecting the source client")?;
        Ok(Fleet {
            server,
            rest,
            source,
            agents: SimulatedAgents::default(),
            running: Default::default(),
            status_sync: None,
        })
    }

    /// Agents started from now on poll their works' status every `interval` instead of the
    /// agent's default (10 s). Watched feedback still reports changes at once.
    pub fn set_status_sync_interval(&mut self, interval: Duration) {
        self.status_sync = Some(interval);
    }

    /// Registers `names` as consumers over REST (32 at a time), ticking `bar`.
    ///
    /// # Errors
    /// REST failures.
    pub async fn add_consumers(&self, names: &[String], bar: &ProgressBar) -> anyhow::Result<()> {
        bar.set_length(names.len() as u64);
        bar.set_position(0);
        let rest = &self.rest;
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(names)
            .map(|n| async move {
                rest.create_consumer(n, &Default::default())
                    .await
                    .with_context(|| format!("creating consumer {n}"))?;
                bar.inc(1);
                Ok(())
            })
            .buffer_unordered(32)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// The simulated cluster of `consumer` (kept across agent restarts).
    pub fn cluster(&mut self, consumer: &str) -> Arc<SimulatedCluster> {
        self.agents.cluster(consumer)
    }

    /// Replaces the simulated cluster of `consumer` with an empty one (at the next start).
    pub fn reset_cluster(&mut self, consumer: &str) {
        self.agents.reset_cluster(consumer);
    }

    /// When the running agent of `consumer` was started, if it runs.
    pub fn agent_started(&self, consumer: &str) -> Option<tokio::time::Instant> {
        self.running.get(consumer).map(|(_, started)| *started)
    }

    /// Starts (or restarts) the agent of `consumer`; returns its transport's subscribed signal.
    ///
    /// # Errors
    /// Broker configuration failures.
    pub async fn start_agent(&mut self, consumer: &str) -> anyhow::Result<maestro_transport::Subscribed> {
        self.stop_agent(consumer).await;
        let transport = self.transport(consumer).await?;
        Ok(self.spawn_agent(consumer, transport))
    }

    async fn transport(&self, consumer: &str) -> anyhow::Result<maestro_transport::DynAgentTransport> {
        let agent_id = format!("{consumer}-work-agent");
        if let (Some(password), Some(url)) = (&self.server.mqtt_password, &self.server.agents.url) {
            let mut config = maestro_broker_mqtt::MqttConfig::new(
                url,
                maestro_broker_mqtt::MqttTopics::maestro("maestro"),
            );
            config.username = Some(consumer.to_owned());
            config.password = Some(password.clone());
            let agent = maestro_broker_mqtt::MqttAgent::connect(config, consumer, &agent_id).await?;
            return Ok(agent as maestro_transport::DynAgentTransport);
        }
        Ok(agent_transport(&self.server.agents, consumer, &agent_id).await?)
    }

    fn spawn_agent(
        &mut self,
        consumer: &str,
        transport: maestro_transport::DynAgentTransport,
    ) -> maestro_transport::Subscribed {
        let subscribed = transport.subscribed();
        self.running.insert(consumer.to_owned(), (subscribed.clone(), tokio::time::Instant::now()));
        let mut cfg = AgentConfig::new(consumer);
        cfg.workers = 1;
        cfg.hub_host = self.server.hub_host.clone();
        if let Some(interval) = self.status_sync {
            cfg.status_sync_interval = interval;
        }
        self.agents.spawn(cfg, transport);
        subscribed
    }

    /// Starts the agents of `consumers` in waves of [`WAVE`] (each wave subscribed before the
    /// next starts, as a fleet comes up over time rather than in one instant) and waits until
    /// every one is subscribed, ticking `bar`.
    ///
    /// # Errors
    /// Start failures; a wave not subscribed within [`SCENARIO_DEADLINE`].
    pub async fn start_agents(&mut self, consumers: &[String], bar: &ProgressBar) -> anyhow::Result<()> {
        bar.set_length(consumers.len() as u64);
        bar.set_position(0);
        for wave in consumers.chunks(WAVE) {
            self.start_wave(wave, bar).await?;
        }
        Ok(())
    }

    async fn start_wave(&mut self, consumers: &[String], bar: &ProgressBar) -> anyhow::Result<()> {
        for c in consumers {
            self.stop_agent(c).await;
        }
        let this = &*self;
        let transports: Vec<anyhow::Result<(String, maestro_transport::DynAgentTransport)>> =
            futures::stream::iter(consumers)
                .map(|c| async move { Ok((c.clone(), this.transport(c).await?)) })
                .buffer_unordered(64)
                .collect()
                .await;
        let mut waits = Vec::with_capacity(consumers.len());
        for t in transports {
            let (c, transport) = t?;
            waits.push(self.spawn_agent(&c, transport));
        }
        let waiting = futures::future::join_all(waits.into_iter().map(|mut s| async move {
            let r = s.wait_for(|n| *n > 0).await.map(|_| ());
            bar.inc(1);
            r
        }));
        let results = tokio::time::timeout(SCENARIO_DEADLINE, waiting).await.with_context(|| {
            format!("not all of a wave of {} agents subscribed within {SCENARIO_DEADLINE:?}", consumers.len())
        })?;
        results.into_iter().collect::<Result<Vec<()>, _>>().context("an agent's transport closed")?;
        Ok(())
    }

    /// Stops the agent of `consumer` (its simulated cluster keeps its objects).
    pub async fn stop_agent(&mut self, consumer: &str) {
        self.running.remove(consumer);
        self.agents.stop(consumer).await;
    }

    /// How many times each running agent's transport has subscribed (a reconnect adds one).
    pub fn subscriptions(&self) -> std::collections::HashMap<String, u64> {
        self.running.iter().map(|(c, (s, _))| (c.clone(), *s.borrow())).collect()
    }

    /// Stops every agent (waiting up to 30 s), then the server.
    pub async fn shutdown(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(30), self.agents.stop_all()).await;
        self.server.stop().await;
    }
}
