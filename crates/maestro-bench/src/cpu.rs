//! Where the machine's CPU goes during a scenario: the server process, this harness process
//! (the fleet's agents, the load generator, the store-alone writer), the local PostgreSQL
//! server and an external broker, each as CPU seconds per 1,000 bundles.
//!
//! The end-to-end figures and the store-alone figure they are divided by share the machine's
//! cores with the harness and PostgreSQL, so a ratio such as e2e ÷ store alone is bounded by
//! how much CPU each bundle costs in each scenario, whoever spends it. The split shows that
//! bound (docs/benchmarks.md, "Where the CPU goes").

use serde::{Deserialize, Serialize};

use crate::fleet::{ServerProcess, Usage};

/// CPU seconds used so far by the processes a scenario runs on, read from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuReading {
    /// The server process (`maestro server`), if one runs in the scenario.
    pub server_s: f64,
    /// This process: the harness (fleet, load generator, store-alone writer).
    pub harness_s: f64,
    /// Every local process named `postgres` (the postmaster, its backends, and through the
    /// postmaster's reaped-children times the backends that exited); `None` when none is
    /// visible (SQLite, or a PostgreSQL on another host).
    pub postgres_s: Option<f64>,
    /// Every local process of an external broker the harness started: Mosquitto (`mosquitto`)
    /// or the Pub/Sub emulator (a `java` process); `None` when none runs (gRPC and the
    /// embedded brokers run in the server).
    pub broker_s: Option<f64>,
}

impl CpuReading {
    /// Reads the CPU time of `server` (if any), this process, local PostgreSQL and an external
    /// broker.
    pub fn now(server: Option<&ServerProcess>) -> CpuReading {
        CpuReading {
            server_s: server.map_or(0.0, |s| s.usage().cpu_s),
            harness_s: Usage::of("self").cpu_s,
            postgres_s: processes_cpu_s(&["postgres"]),
            broker_s: processes_cpu_s(&["mosquitto", "java"]),
        }
    }

    /// The CPU used between `self` (earlier) and `later`, per 1,000 of `bundles`.
    pub fn per_1000(&self, later: &CpuReading, bundles: usize) -> CpuSplit {
        let per = |s: f64| s / bundles.max(1) as f64 * 1000.0;
        let both = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| per(b - a));
        CpuSplit {
            server: per(later.server_s - self.server_s),
            harness: per(later.harness_s - self.harness_s),
            postgres: both(self.postgres_s, later.postgres_s),
            broker: both(self.broker_s, later.broker_s),
        }
    }
}

/// CPU seconds per 1,000 bundles of one scenario, by process.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuSplit {
    /// The server process (0 in the store-alone scenario, which runs without one).
    pub server: f64,
    /// The harness process.
    pub harness: f64,
    /// Local PostgreSQL; `None` when not measured (see [`CpuReading::postgres_s`]).
    pub postgres: Option<f64>,
    /// An external broker's processes (see [`CpuReading::broker_s`]); `None` when none ran.
    /// Absent in results written before it was measured.
    #[serde(default)]
    pub broker: Option<f64>,
}

impl CpuSplit {
    /// The sum of all four (those not measured counted as 0).
    pub fn total(&self) -> f64 {
        self.server + self.harness + self.postgres.unwrap_or(0.0) + self.broker.unwrap_or(0.0)
    }
}

/// Sums user + system time (with reaped children's) over every process whose name is one of
/// `names` visible in `/proc`, s; `None` when there is none.
fn processes_cpu_s(names: &[&str]) -> Option<f64> {
    let mut ticks = 0.0;
    let mut seen = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let Some((_, name)) = head.split_once('(') else { continue };
        if !names.contains(&name) {
            continue;
        }
        seen = true;
        // Fields after the command name: utime, stime, cutime, cstime are the 12th to 15th.
        ticks += rest.split_whitespace().skip(11).take(4).filter_map(|v| v.parse::<f64>().ok()).sum::<f64>();
    }
    seen.then_some(ticks / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_divides_each_process_time_by_thousands_of_bundles() {
        let before = CpuReading { server_s: 1.0, harness_s: 2.0, postgres_s: Some(3.0), broker_s: None };
        let after = CpuReading { server_s: 1.5, harness_s: 2.25, postgres_s: Some(4.0), broker_s: None };
        let split = before.per_1000(&after, 2000);
        assert_eq!(split, CpuSplit { server: 0.25, harness: 0.125, postgres: Some(0.5), broker: None });
        assert!((split.total() - 0.875).abs() < 1e-9);
        let no_pg = CpuReading { postgres_s: None, ..after };
        assert_eq!(before.per_1000(&no_pg, 2000).postgres, None);
        let with_broker = |s| CpuReading { broker_s: Some(s), ..after };
        let split = with_broker(1.0).per_1000(&with_broker(3.0), 2000);
        assert_eq!(split.broker, Some(1.0));
        assert!((split.total() - 1.0).abs() < 1e-9, "no time passed for the others");
    }

    #[test]
    fn this_process_uses_cpu_time() {
        let before = CpuReading::now(None);
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let after = CpuReading::now(None);
        assert!(after.harness_s > before.harness_s, "no CPU time counted for {x}");
    }
}
