//! `maestro-cli` entry point: parse, run, map errors to exit codes (clap's usage errors exit
//! 2 itself; the others are listed in `maestro_cli::exit`).

use std::process::ExitCode;

use clap::Parser;
use maestro_cli::{Cli, exit_status, run};

fn init_tracing(verbose: bool) {
    let filter = if verbose { "maestro_client=debug,maestro_cli=debug,info" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let mut stdout = std::io::stdout();
    match run(cli, &mut stdout).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", maestro_client::error_chain(e.as_ref()));
            ExitCode::from(exit_status(&e).code())
        }
    }
}
