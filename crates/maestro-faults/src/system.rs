//! The system under test: the store (PostgreSQL, its own cluster; or SQLite on a small tmpfs),
//! the broker process (Mosquitto or the Pub/Sub emulator; the gRPC broker is the server
//! itself), the `maestro server` process and one work agent per consumer, each network link
//! between them through a [`FaultProxy`]:
//!
//! ```text
//!   agents ──agent link──▶ broker (or the server's gRPC broker port)
//!   server ──broker link─▶ broker (MQTT, Pub/Sub)
//!   server ──store link──▶ PostgreSQL (SQLite: a file on the server's small disk, no link)
//! ```
//!
//! Each agent is a `maestro agent` process on a simulated cluster kept in a journal file
//! ([`ClusterJournal`]), which outlives it: killing an agent is a SIGKILL (its broker
//! connections close, nothing is flushed), and the restarted agent replays the journal and
//! finds its objects and AppliedManifestWork records as it left them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use maestro::broker::EmbeddedEngine;
use maestro_broker_mqtt::testing::Mosquitto;
use maestro_broker_pubsub::emulator::Emulator;
use maestro_client::{RestClient, SourceClient};

use crate::cluster::{ClusterJournal, ClusterView};
use crate::disk::SmallDisk;
use crate::postgres::PgCluster;
use crate::proxy::FaultProxy;

/// The source id of the workload.
pub const SOURCE_ID: &str = "maestro-faults";
const PUBSUB_PROJECT: &str = "maestro-faults";
/// When this environment variable is set, the server's log (`server.log`, every run of the
/// server appended), the agents' logs (`agent-<consumer>.log`) and the clusters' journals
/// (`cluster-<consumer>.jsonl`) are kept after the run and their directory printed, to
/// analyse a failed fault.
pub const KEEP_LOGS_ENV: &str = "MAESTRO_FAULTS_KEEP_LOGS";

/// A broker set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Broker {
    /// The server-hosted gRPC broker.
    Grpc,
    /// MQTT 5 on Mosquitto.
    Mosquitto,
    /// The Pub/Sub emulator.
    Pubsub,
    /// MQTT 5 on the server's embedded broker, engine rumqttd (the server is the broker).
    Rumqttd,
    /// MQTT 5 on the server's embedded broker, engine rmqtt (the server is the broker).
    Rmqtt,
}

impl Broker {
    /// The engine of the server's embedded MQTT broker this set-up runs, if any.
    pub fn embedded_engine(self) -> Option<EmbeddedEngine> {
        match self {
            Broker::Rumqttd => Some(EmbeddedEngine::Rumqttd),
            Broker::Rmqtt => Some(EmbeddedEngine::Rmqtt),
            Broker::Grpc | Broker::Mosquitto | Broker::Pubsub => None,
        }
    }

    /// Whether each fault of a run gets a system of its own instead of sharing one.
    ///
    /// The Pub/Sub emulator never retires a StreamingPull stream whose client died without
    /// closing it (a SIGKILLed agent or server): it keeps routing to it, and what it routes
    /// there comes back only after the 10 s ack deadline, round after round (measured by
    /// `pull::repro::dead_streams_repro` in maestro-broker-pubsub: 200 messages on a new stream
    /// in 0.2–0.3 s with no dead stream beside it, 30 s with one, 104 of 200 after 60 s with
    /// four; still so 6 min later, `dead_streams_age_repro`). On one long-lived emulator every
    /// kill of an earlier fault would slow every later one, so a run measures the faults'
    /// history, not each fault; the real service ends a stream whose connection is gone. A
    /// soak keeps one system on every broker.
    pub fn fresh_system_per_fault(self) -> bool {
        matches!(self, Broker::Pubsub)
    }

    /// Whether the broker lives in the server process (gRPC, the embedded MQTT broker): no
    /// broker process, no server ↔ broker link.
    pub fn in_server(self) -> bool {
        self == Broker::Grpc || self.embedded_engine().is_some()
    }
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Broker::Grpc => "grpc",
            Broker::Mosquitto => "mqtt/mosquitto",
            Broker::Pubsub => "pubsub/emulator",
            Broker::Rumqttd => "mqtt/embedded rumqttd",
            Broker::Rmqtt => "mqtt/embedded rmqtt",
        })
    }
}

/// The store of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// PostgreSQL, the harness's own cluster, through the store link.
    Postgres,
    /// SQLite, a file on a tmpfs of its own ([`SmallDisk`]), which the disk-full fault fills.
    Sqlite,
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Store::Postgres => "postgres",
            Store::Sqlite => "sqlite",
        })
    }
}

/// The store's process or disk.
enum StoreParts {
    Postgres(PgCluster),
    Sqlite(SmallDisk),
}

/// The broker process, when the set-up has one.
enum BrokerProcess {
    None,
    Mosquitto(Mosquitto),
    Emulator(Emulator),
}

/// One consumer's agent: its cluster's journal, which outlives it, its process and its log
/// (every run appended).
struct AgentRun {
    cluster: ClusterJournal,
    log: PathBuf,
    process: Option<tokio::process::Child>,
}

/// Everything of one set-up, started.
pub struct System {
    /// The broker set-up.
    pub broker: Broker,
    /// The store.
    pub store: Store,
    store_parts: StoreParts,
    /// The server's link to PostgreSQL (`None` with SQLite: a local file).
    pub store_link: Option<FaultProxy>,
    /// The agents' link to the broker.
    pub agent_link: FaultProxy,
    /// The server's link to the broker (`None` with gRPC: the server is the broker).
    pub broker_link: Option<FaultProxy>,
    broker_process: BrokerProcess,
    server: Option<tokio::process::Child>,
    http: SocketAddr,
    grpc: SocketAddr,
    server_broker: SocketAddr,
    db_url: String,
    bin: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// REST client of the server.
    pub rest: RestClient,
    source: Option<SourceClient>,
    agents: BTreeMap<String, AgentRun>,
    /// Added to the clock of the agents started from now on, ms (the clock-skew fault).
    pub agent_clock_skew_ms: i64,
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl System {
    /// Starts the store, the broker, the server and the proxies between them.
    ///
    /// # Errors
    /// When a part cannot start (SQLite's small disk needs root to mount).
    pub async fn start(broker: Broker, store: Store, bin: &Path) -> anyhow::Result<System> {
        let (store_parts, store_link, db_url) = start_store(store).await?;
        let (broker_process, broker_addr) = start_broker(broker).await?;
        let broker_link = match broker_addr {
            Some(addr) => Some(FaultProxy::start(addr).await?),
            None => None,
        };
        let server_broker = free_addr()?;
        let agent_link = FaultProxy::start(broker_addr.unwrap_or(server_broker)).await?;
        let mut dir = tempfile::Builder::new().prefix("maestro-faults").tempdir()?;
        if std::env::var_os(KEEP_LOGS_ENV).is_some() {
            dir.disable_cleanup(true);
            eprintln!(
                "{KEEP_LOGS_ENV}: the server's and agents' logs and the clusters' journals stay in {}",
                dir.path().display()
            );
        }
        let (http, grpc) = (free_addr()?, free_addr()?);
        let rest = RestClient::new(&format!("http://{http}"))?;
        let mut system = System {
            broker,
            store,
            store_parts,
            store_link,
            agent_link,
            broker_link,
            broker_process,
            server: None,
            http,
            grpc,
            server_broker,
            db_url,
            bin: bin.to_owned(),
            log: dir.path().join("server.log"),
            _dir: dir,
            source: None,
            rest,
            agents: BTreeMap::new(),
            agent_clock_skew_ms: 0,
        };
        system.start_server().await?;
        let source = SourceClient::connect(&grpc.to_string(), SOURCE_ID, system.rest.clone()).await?;
        system.source = Some(source);
        Ok(system)
    }

    /// The workload's source client.
    ///
    /// # Panics
    /// Never after [`System::start`] returned.
    pub fn source(&self) -> &SourceClient {
        self.source.as_ref().expect("connected in System::start")
    }

    fn server_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["server".into(), "--db".into(), self.db_url.clone()];
        let mut add = |a: &[&str]| args.extend(a.iter().map(|s| (*s).to_owned()));
        add(&["--http-addr", &self.http.to_string(), "--grpc-addr", &self.grpc.to_string()]);
        add(&[
            "--metrics-addr",
            "127.0.0.1:0",
            "--health-addr",
            "127.0.0.1:0",
            "--heartbeat-check-interval",
            "1s",
        ]);
        let broker_url = self.broker_link.as_ref().map(|l| l.addr().to_string()).unwrap_or_default();
        match self.broker {
            Broker::Grpc => add(&["--broker", "grpc", "--grpc-broker-addr", &self.server_broker.to_string()]),
            Broker::Mosquitto => add(&["--broker", "mqtt", "--broker-url", &broker_url]),
            Broker::Pubsub => {
                add(&["--broker", "pubsub", "--broker-url", &broker_url, "--pubsub-project", PUBSUB_PROJECT])
            }
            Broker::Rumqttd | Broker::Rmqtt => {
                let engine = self.broker.embedded_engine().unwrap_or_default();
                let embedded = self.server_broker.to_string();
                add(&[
                    "--broker",
                    "mqtt",
                    "--embedded-mqtt",
                    &embedded,
                    "--embedded-mqtt-engine",
                    engine.as_str(),
                ]);
            }
        }
        args
    }

    /// Starts the server process (again, on the same ports) and waits until `/readyz` is 200.
    ///
    /// # Errors
    /// When it exits or is not ready within 60 s (with its log's tail).
    pub async fn start_server(&mut self) -> anyhow::Result<()> {
        self.server = Some(spawn_maestro(&self.bin, &self.server_args(), &self.log)?);
        let ready = wait_ready(&format!("http://{}/readyz", self.http), self.server.as_mut()).await;
        ready.with_context(|| format!("the server:\n{}", self.log_tail()))
    }

    /// Kills the server with SIGKILL.
    pub async fn kill_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill().await;
        }
    }

    /// Kills PostgreSQL with SIGKILL; nothing with SQLite (it has no process).
    ///
    /// # Errors
    /// As [`PgCluster::kill`].
    pub fn kill_store(&self) -> anyhow::Result<()> {
        match &self.store_parts {
            StoreParts::Postgres(pg) => pg.kill(),
            StoreParts::Sqlite(_) => Ok(()),
        }
    }

    /// Starts PostgreSQL again (crash recovery); nothing with SQLite.
    ///
    /// # Errors
    /// As [`PgCluster::up`].
    pub fn restart_store(&self) -> anyhow::Result<()> {
        match &self.store_parts {
            StoreParts::Postgres(pg) => pg.up(),
            StoreParts::Sqlite(_) => Ok(()),
        }
    }

    /// SQLite's disk, filled until it refuses writes (`ENOSPC`); nothing with PostgreSQL.
    ///
    /// # Errors
    /// As [`SmallDisk::fill`].
    pub fn fill_disk(&self) -> anyhow::Result<()> {
        if let StoreParts::Sqlite(disk) = &self.store_parts {
            disk.fill()?;
        }
        Ok(())
    }

    /// Frees what [`System::fill_disk`] took.
    ///
    /// # Errors
    /// As [`SmallDisk::free`].
    pub fn free_disk(&self) -> anyhow::Result<()> {
        match &self.store_parts {
            StoreParts::Sqlite(disk) => disk.free(),
            StoreParts::Postgres(_) => Ok(()),
        }
    }

    /// Kills the broker process (SIGKILL); nothing when the set-up has none (gRPC).
    pub fn kill_broker(&mut self) {
        match &mut self.broker_process {
            BrokerProcess::None => {}
            BrokerProcess::Mosquitto(m) => m.kill(),
            BrokerProcess::Emulator(e) => e.kill(),
        }
    }

    /// Starts the broker process again on its port (the emulator comes back empty).
    pub async fn restart_broker(&mut self) {
        match &mut self.broker_process {
            BrokerProcess::None => {}
            BrokerProcess::Mosquitto(m) => m.restart(),
            BrokerProcess::Emulator(e) => e.restart().await,
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// The server's database URL (PostgreSQL: through the store link).
    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// The broker flags of `maestro agent`: its driver and the agents' link.
    fn agent_broker_args(&self) -> Vec<String> {
        let url = self.agent_link.addr().to_string();
        let driver = match self.broker {
            Broker::Grpc => "grpc",
            Broker::Mosquitto | Broker::Rumqttd | Broker::Rmqtt => "mqtt",
            Broker::Pubsub => "pubsub",
        };
        let mut args: Vec<String> = ["--workload-source-driver", driver, "--broker-url", &url]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        if self.broker == Broker::Pubsub {
            args.extend(["--pubsub-project".to_owned(), PUBSUB_PROJECT.to_owned()]);
        }
        args
    }

    /// Registers `consumer` and starts its agent on a new cluster.
    ///
    /// # Errors
    /// REST failures; the agent does not start ([`System::start_agent`]).
    pub async fn add_consumer(&mut self, consumer: &str) -> anyhow::Result<()> {
        self.rest.create_consumer(consumer, &Default::default()).await?;
        let dir = self._dir.path();
        let run = AgentRun {
            cluster: ClusterJournal::new(&dir.join(format!("cluster-{consumer}.jsonl"))),
            log: dir.join(format!("agent-{consumer}.log")),
            process: None,
        };
        self.agents.insert(consumer.to_owned(), run);
        self.start_agent(consumer).await
    }

    /// Starts (again) the `maestro agent` process of `consumer` on its cluster, its clock
    /// [`System::agent_clock_skew_ms`] off, and waits until its transport subscribed
    /// (`/readyz`).
    ///
    /// # Errors
    /// When it cannot start, exits, or is not ready within 60 s (with its log's tail).
    pub async fn start_agent(&mut self, consumer: &str) -> anyhow::Result<()> {
        let mut args: Vec<String> = vec!["agent".into(), "--consumer-name".into(), consumer.into()];
        args.extend(self.agent_broker_args());
        let ops = free_addr()?;
        let skew = self.agent_clock_skew_ms.to_string();
        let run = self.agents.get_mut(consumer).context("unknown consumer")?;
        let journal = run.cluster.path().display().to_string();
        for flags in [
            ["--cluster", "simulated"],
            ["--simulated-journal", &journal],
            ["--status-sync-interval", "2s"],
            ["--metrics-addr", &ops.to_string()],
            ["--clock-skew-ms", &skew],
        ] {
            args.extend(flags.iter().map(|s| (*s).to_owned()));
        }
        kill_agent_process(run).await;
        run.process = Some(spawn_maestro(&self.bin, &args, &run.log)?);
        let ready = wait_ready(&format!("http://{ops}/readyz"), run.process.as_mut()).await;
        ready.with_context(|| format!("agent of {consumer}:\n{}", tail(&run.log)))
    }

    /// Kills the agent of `consumer` with SIGKILL; its cluster (journal) is kept.
    pub async fn kill_agent(&mut self, consumer: &str) {
        if let Some(run) = self.agents.get_mut(consumer) {
            kill_agent_process(run).await;
        }
    }

    /// The consumers, in order.
    pub fn consumers(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    /// The cluster of `consumer`, as its journal.
    pub fn cluster(&self, consumer: &str) -> Option<&ClusterJournal> {
        self.agents.get(consumer).map(|r| &r.cluster)
    }

    /// Every consumer's cluster read now, by consumer.
    ///
    /// # Errors
    /// When a journal cannot be read.
    pub fn cluster_views(&self) -> anyhow::Result<BTreeMap<String, ClusterView>> {
        self.agents.iter().map(|(c, run)| Ok((c.clone(), run.cluster.read()?))).collect()
    }

    /// Stops everything.
    pub async fn stop(mut self) {
        for consumer in self.consumers() {
            self.kill_agent(&consumer).await;
        }
        self.kill_server().await;
    }
}

/// The environment variable whose value, when set, is the `RUST_LOG` of the server and agent
/// processes (default `info`): e.g. `info,maestro_server::ingest=debug` to trace statuses.
pub const LOG_ENV: &str = "MAESTRO_FAULTS_LOG";

/// Starts `bin` with `args` (`RUST_LOG` from [`LOG_ENV`], default `info`), its standard error
/// appended to `log`; killed when its handle is dropped.
fn spawn_maestro(bin: &Path, args: &[String], log: &Path) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    tokio::process::Command::new(bin)
        .args(args)
        .env("RUST_LOG", std::env::var(LOG_ENV).unwrap_or_else(|_| "info".to_owned()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} {}", bin.display(), args.first().map_or("", String::as_str)))
}

async fn kill_agent_process(run: &mut AgentRun) {
    if let Some(mut child) = run.process.take() {
        let _ = child.kill().await;
    }
}

/// Waits until `url` answers 200, at most 60 s; fails when `process` exits first.
async fn wait_ready(url: &str, mut process: Option<&mut tokio::process::Child>) -> anyhow::Result<()> {
    maestro_tls::install_process_provider();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(exit) = process.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            anyhow::bail!("exited ({exit})");
        }
        if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "not ready in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last 30 lines of the log at `path`.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The store, its link (PostgreSQL) and the server's database URL.
async fn start_store(store: Store) -> anyhow::Result<(StoreParts, Option<FaultProxy>, String)> {
    Ok(match store {
        Store::Postgres => {
            let pg = tokio::task::spawn_blocking(PgCluster::start).await??;
            let db = maestro_store::testing::fresh_postgres_database(&pg.admin_url(), "maestro_faults")
                .await
                .map_err(anyhow::Error::msg)?;
            let link = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], pg.port()))).await?;
            let db_url = db.replace(&format!("127.0.0.1:{}", pg.port()), &link.addr().to_string());
            (StoreParts::Postgres(pg), Some(link), db_url)
        }
        Store::Sqlite => {
            let disk = tokio::task::spawn_blocking(SmallDisk::mount).await??;
            let db_url = format!("sqlite://{}", disk.path().join("maestro.db").display());
            (StoreParts::Sqlite(disk), None, db_url)
        }
    })
}

async fn start_broker(broker: Broker) -> anyhow::Result<(BrokerProcess, Option<SocketAddr>)> {
    Ok(match broker {
        Broker::Grpc | Broker::Rumqttd | Broker::Rmqtt => (BrokerProcess::None, None),
        Broker::Mosquitto => {
            let m = tokio::task::spawn_blocking(Mosquitto::start).await?;
            let addr = m.address().parse()?;
            (BrokerProcess::Mosquitto(m), Some(addr))
        }
        Broker::Pubsub => {
            let e = Emulator::try_start().await.map_err(anyhow::Error::msg)?;
            let addr = e.endpoint().parse()?;
            (BrokerProcess::Emulator(e), Some(addr))
        }
    })
}
