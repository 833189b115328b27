//! The `maestro` binary: `server`, `agent`, `migrate`, `demo`.

use clap::Parser;

/// mimalloc instead of the system allocator: the server allocates many short-lived JSON values
/// and glibc malloc took ~30% of its CPU in profiles (docs/benchmarks.md). Built with the
/// `no_thp` feature: mimalloc otherwise asks for transparent huge pages on its arenas, which
/// made 14 of the idle server's 30 MiB RSS (2 MiB pages mostly unused).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = maestro::cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the trace exporter, when asked for, runs on it.
    let telemetry = {
        let _entered = rt.enter();
        maestro::init_logging(cli.json_logs(), cli.default_log_filter(), cli.service_name())
    };
    // One socket per connected agent (gRPC broker): lift the soft open-files limit to the hard
    // one, as Go programs do at start, so thousands of agents do not hit the usual 1,024.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(open_files = n, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    let result = rt.block_on(maestro::cli::run(cli));
    // The exporter's last batch goes out on the runtime, from a blocking thread.
    let _ = rt.block_on(rt.spawn_blocking(move || telemetry.shutdown()));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", maestro_client::error_chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
