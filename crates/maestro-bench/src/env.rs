//! The systems under test: which broker (and its process: Mosquitto, the embedded rumqttd, the
//! Pub/Sub emulator, or the server-hosted gRPC broker) and which store (PostgreSQL on the
//! server named by `--postgres`, or a SQLite file).

use std::fmt;

use anyhow::Context;
use maestro_broker_mqtt::testing::Mosquitto;
use maestro_broker_pubsub::emulator::Emulator;

/// A broker set-up measured by the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Broker {
    /// The server-hosted gRPC broker.
    Grpc,
    /// MQTT 5 on Debian Mosquitto, started by the harness on a free port.
    Mosquitto,
    /// MQTT 5 on the embedded broker, engine rumqttd.
    Rumqttd,
    /// MQTT 5 on the embedded broker, engine rmqtt (`--embedded-mqtt-engine rmqtt`).
    Rmqtt,
    /// The official Pub/Sub emulator, started by the harness on a free port.
    Pubsub,
}

impl Broker {
    /// Every broker, in table order.
    pub const ALL: [Broker; 5] =
        [Broker::Grpc, Broker::Mosquitto, Broker::Rumqttd, Broker::Rmqtt, Broker::Pubsub];

    /// The engine of the embedded broker this set-up runs in the server, if any.
    pub fn embedded_engine(self) -> Option<maestro::broker::EmbeddedEngine> {
        match self {
            Broker::Rumqttd => Some(maestro::broker::EmbeddedEngine::Rumqttd),
            Broker::Rmqtt => Some(maestro::broker::EmbeddedEngine::Rmqtt),
            _ => None,
        }
    }
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Broker::Grpc => "grpc",
            Broker::Mosquitto => "mqtt/mosquitto",
            Broker::Rumqttd => "mqtt/rumqttd",
            Broker::Rmqtt => "mqtt/rmqtt",
            Broker::Pubsub => "pubsub/emulator",
        })
    }
}

/// A store measured by the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// PostgreSQL (a fresh database on the `--postgres` server).
    Postgres,
    /// A SQLite file in a temporary directory.
    Sqlite,
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::Postgres => "postgres",
            StoreKind::Sqlite => "sqlite",
        })
    }
}

/// A started broker process (kept alive while the value lives) and how the stack reaches it.
#[derive(Debug)]
pub struct BrokerProcess {
    /// The set-up.
    pub broker: Broker,
    mosquitto: Option<Mosquitto>,
    emulator: Option<Emulator>,
}

impl BrokerProcess {
    /// Starts what `broker` needs (nothing for gRPC and rumqttd, which run in the server).
    ///
    /// # Errors
    /// When the emulator cannot start (launcher missing).
    pub async fn start(broker: Broker) -> anyhow::Result<Self> {
        let mosquitto = (broker == Broker::Mosquitto).then(Mosquitto::start);
        let emulator = match broker {
            Broker::Pubsub => Some(Emulator::try_start().await.map_err(anyhow::Error::msg)?),
            _ => None,
        };
        Ok(BrokerProcess { broker, mosquitto, emulator })
    }
}

/// A database for one run; the SQLite directory lives as long as the value, a PostgreSQL
/// database until [`Database::remove`].
#[derive(Debug)]
pub struct Database {
    /// The store URL.
    pub url: String,
    /// Durability settings read from the server (PostgreSQL: `fsync`, `synchronous_commit`).
    pub durability: String,
    /// The PostgreSQL admin URL that created the database.
    admin: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Database {
    /// A fresh database of `kind`; PostgreSQL needs `postgres_admin`.
    ///
    /// # Errors
    /// When PostgreSQL is asked for without a server, or the database cannot be created.
    pub async fn fresh(kind: StoreKind, postgres_admin: Option<&str>) -> anyhow::Result<Self> {
        match kind {
            StoreKind::Sqlite => {
                let dir = tempfile::tempdir().context("creating a temporary directory")?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                Ok(Database {
                    url,
                    durability: "SQLite WAL, synchronous=FULL".into(),
                    admin: None,
                    _dir: Some(dir),
                })
            }
            StoreKind::Postgres => {
                let admin = postgres_admin.context(
                    "PostgreSQL needs --postgres URL (or MAESTRO_BENCH_DATABASE_URL): an admin URL allowed to CREATE DATABASE",
                )?;
                let url = maestro_store::testing::fresh_postgres_database(admin, "maestro_bench")
                    .await
                    .map_err(anyhow::Error::msg)?;
                Ok(Database {
                    durability: durability(admin).await,
                    url,
                    admin: Some(admin.to_owned()),
                    _dir: None,
                })
            }
        }
    }

    /// Deletes the database (PostgreSQL: `DROP DATABASE … WITH (FORCE)`, so runs do not leave
    /// databases whose autovacuum would load later runs). A failure is only printed: the
    /// figures stand either way.
    pub async fn remove(&self) {
        if let Some(admin) = &self.admin
            && let Err(e) = maestro_store::testing::drop_postgres_database(admin, &self.url).await
        {
            eprintln!("warning: {e}");
        }
    }
}

async fn durability(admin: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([
            admin,
            "-Atc",
            "select current_setting('fsync') || ',' || current_setting('synchronous_commit')",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            let (fsync, sync) = text.split_once(',').unwrap_or((&text, "?"));
            format!("fsync={fsync}, synchronous_commit={sync}")
        }
        _ => "unknown (psql unavailable)".into(),
    }
}

impl BrokerProcess {
    /// The Mosquitto `host:port`, when this set-up runs one.
    pub fn mqtt_host(&self) -> Option<String> {
        self.mosquitto.as_ref().map(Mosquitto::address)
    }

    /// Kills Mosquitto (SIGKILL) and starts it again on the same port; false for the other
    /// set-ups (their broker lives in the server, or is the emulator).
    pub fn restart_mosquitto(&mut self) -> bool {
        match self.mosquitto.as_mut() {
            Some(m) => {
                m.restart();
                true
            }
            None => false,
        }
    }

    /// The emulator `host:port`, when this set-up runs one.
    pub fn pubsub_endpoint(&self) -> Option<String> {
        self.emulator.as_ref().map(Emulator::endpoint)
    }
}
