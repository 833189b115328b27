//! The faults (docs/reliability.md, "Faults"): each is injected into a running [`System`],
//! held while the workload runs, then healed.

use std::time::Duration;

use crate::proxy::{FaultProxy, LinkMode};
use crate::system::{Broker, Store, System};

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL of the server, restarted when healed.
    KillServer,
    /// Every agent process killed (SIGKILL), restarted when healed.
    KillAgents,
    /// SIGKILL of the broker process (Mosquitto, the emulator), restarted when healed.
    KillBroker,
    /// SIGKILL of PostgreSQL, restarted (crash recovery) when healed.
    KillStore,
    /// The agents' link to the broker cut.
    CutAgents,
    /// The server's link to the broker cut.
    CutBroker,
    /// The server's link to PostgreSQL cut.
    CutStore,
    /// 100–500 ms (seeded) added to every chunk on the agents' link, both ways.
    DelayAgents,
    /// 100–500 ms (seeded) added to every chunk on the server's links (broker and store).
    DelayServer,
    /// The agents' link limited to 32 KiB/s each way.
    ThrottleAgents,
    /// SQLite's disk filled until writes fail with "no space left on device", freed when healed.
    DiskFull,
    /// Every agent restarted with its clock [`Fault::CLOCK_SKEW_MS`] behind, restarted with its
    /// clock right when healed.
    ClockSkew,
}

impl Fault {
    /// Every fault, in table order.
    pub const ALL: [Fault; 12] = [
        Fault::KillServer,
        Fault::KillAgents,
        Fault::KillBroker,
        Fault::KillStore,
        Fault::CutAgents,
        Fault::CutBroker,
        Fault::CutStore,
        Fault::DelayAgents,
        Fault::DelayServer,
        Fault::ThrottleAgents,
        Fault::DiskFull,
        Fault::ClockSkew,
    ];

    /// How far the clock-skew fault sets the agents' clocks back, ms (5 min): every status
    /// sequence id they make is older than the ones they made before the fault
    /// (docs/protocol.md §6.2).
    pub const CLOCK_SKEW_MS: i64 = -5 * 60 * 1000;

    /// The quick suite's faults (one of each kind of harm; those that exist on a set-up).
    pub const QUICK: [Fault; 6] = [
        Fault::KillServer,
        Fault::KillAgents,
        Fault::KillStore,
        Fault::CutAgents,
        Fault::DelayServer,
        Fault::DiskFull,
    ];

    /// The table's name of the fault.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillServer => "kill -9 server",
            Fault::KillAgents => "kill -9 agents",
            Fault::KillBroker => "kill -9 broker",
            Fault::KillStore => "kill -9 PostgreSQL",
            Fault::CutAgents => "cut agents ↔ broker",
            Fault::CutBroker => "cut server ↔ broker",
            Fault::CutStore => "cut server ↔ PostgreSQL",
            Fault::DelayAgents => "delay agents ↔ broker",
            Fault::DelayServer => "delay server ↔ broker, PostgreSQL",
            Fault::ThrottleAgents => "32 KiB/s agents ↔ broker",
            Fault::DiskFull => "disk full (SQLite)",
            Fault::ClockSkew => "agents' clock 5 min behind",
        }
    }

    /// Whether the fault exists on `broker` with `store`: the gRPC broker and the embedded
    /// MQTT broker are the server (no broker process, no server ↔ broker link); SQLite has no
    /// process or link but a disk; a broker in the server with SQLite leaves the server no
    /// link to delay.
    pub fn applies_to(self, broker: Broker, store: Store) -> bool {
        let grpc = broker.in_server();
        match self {
            Fault::KillBroker | Fault::CutBroker => !grpc,
            Fault::KillStore | Fault::CutStore => store == Store::Postgres,
            Fault::DelayServer => !(grpc && store == Store::Sqlite),
            Fault::DiskFull => store == Store::Sqlite,
            _ => true,
        }
    }

    /// Injects the fault; `delay` is the delay of the delay faults.
    ///
    /// # Errors
    /// When a process cannot be killed or the disk cannot be filled.
    pub async fn inject(self, system: &mut System, delay: Duration) -> anyhow::Result<()> {
        match self {
            Fault::KillServer => system.kill_server().await,
            Fault::KillAgents => {
                for c in system.consumers() {
                    system.kill_agent(&c).await;
                }
            }
            Fault::ClockSkew => restart_agents(system, Fault::CLOCK_SKEW_MS).await?,
            Fault::KillBroker => system.kill_broker(),
            Fault::KillStore => tokio::task::block_in_place(|| system.kill_store())?,
            Fault::CutAgents => system.agent_link.set(LinkMode::Cut),
            Fault::CutBroker => set(system.broker_link.as_ref(), LinkMode::Cut),
            Fault::CutStore => set(system.store_link.as_ref(), LinkMode::Cut),
            Fault::DelayAgents => system.agent_link.set(LinkMode::Delay(delay)),
            Fault::DelayServer => {
                set(system.broker_link.as_ref(), LinkMode::Delay(delay));
                set(system.store_link.as_ref(), LinkMode::Delay(delay));
            }
            Fault::ThrottleAgents => system.agent_link.set(LinkMode::Bandwidth(32 * 1024)),
            Fault::DiskFull => tokio::task::block_in_place(|| system.fill_disk())?,
        }
        Ok(())
    }

    /// Heals the fault: restarts what was killed, sets the links back to pass.
    ///
    /// # Errors
    /// When a process does not come back or the disk cannot be freed.
    pub async fn heal(self, system: &mut System) -> anyhow::Result<()> {
        match self {
            Fault::KillServer => system.start_server().await?,
            Fault::KillAgents => {
                for c in system.consumers() {
                    system.start_agent(&c).await?;
                }
            }
            Fault::KillBroker => system.restart_broker().await,
            Fault::KillStore => tokio::task::block_in_place(|| system.restart_store())?,
            Fault::DiskFull => tokio::task::block_in_place(|| system.free_disk())?,
            Fault::ClockSkew => restart_agents(system, 0).await?,
            _ => {
                system.agent_link.set(LinkMode::Pass);
                set(system.store_link.as_ref(), LinkMode::Pass);
                set(system.broker_link.as_ref(), LinkMode::Pass);
            }
        }
        Ok(())
    }
}

/// Kills every agent and starts it again with its clock `skew_ms` off.
async fn restart_agents(system: &mut System, skew_ms: i64) -> anyhow::Result<()> {
    system.agent_clock_skew_ms = skew_ms;
    for c in system.consumers() {
        system.kill_agent(&c).await;
        system.start_agent(&c).await?;
    }
    Ok(())
}

fn set(link: Option<&FaultProxy>, mode: LinkMode) {
    if let Some(link) = link {
        link.set(mode);
    }
}
