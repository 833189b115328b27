//! The results table of docs/reliability.md.

use std::fmt::Write;

use crate::Outcome;

/// The Markdown table of `outcomes`: one row per fault and broker.
pub fn markdown(outcomes: &[Outcome]) -> String {
    let mut s = String::from(
        "| fault | broker | store | ops | lost | stale | rewrites | dup. statuses | dead letters | convergence (s) |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for o in outcomes {
        let dup = o.duplicate_statuses.map_or("n/a".to_owned(), |d| d.to_string());
        let dead = o.dead_letters.map_or("n/a".to_owned(), |d| d.to_string());
        let conv = o.convergence_s.map_or("✗ not converged".to_owned(), |c| format!("{c:.1}"));
        let ops = if o.unaccepted > 0 {
            format!("{} ({} not taken)", o.operations, o.unaccepted)
        } else {
            o.operations.to_string()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {ops} | {} | {} | {} | {dup} | {dead} | {conv} |",
            o.fault.name(),
            o.broker,
            o.store,
            o.lost,
            o.stale,
            o.rewrites
        );
    }
    s
}
