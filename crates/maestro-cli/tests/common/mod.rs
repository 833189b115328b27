//! Shared by the CLI's in-process tests (`e2e.rs`, `golden.rs`).

use clap::Parser;
use maestro_cli::{Cli, run};

/// Runs maestro-cli in process as source `maestro-cli` against the REST endpoint `http` and
/// the gRPC endpoint `grpc` with `args`; returns what it wrote to stdout and its result (a
/// clap error for bad arguments).
pub(crate) async fn run_cli(http: &str, grpc: &str, args: &[&str]) -> (String, anyhow::Result<()>) {
    let mut argv =
        vec!["maestro-cli", "--http-endpoint", http, "--grpc-endpoint", grpc, "--source-id", "maestro-cli"];
    argv.extend_from_slice(args);
    let parsed = match Cli::try_parse_from(argv) {
        Ok(p) => p,
        Err(e) => return (String::new(), Err(e.into())),
    };
    let mut out = Vec::new();
    let result = run(parsed, &mut out).await;
    (String::from_utf8_lossy(&out).into_owned(), result)
}
