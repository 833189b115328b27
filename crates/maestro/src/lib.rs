//! # maestro: the binary's library
//!
//! Wires the crates together: [`broker`] builds the transport for the chosen backend (the
//! only place that names a backend type — `maestro-transport` cannot depend on the brokers,
//! which depend on it), [`server`] and [`agent`] run the two roles, [`demo`] runs the main
//! job end to end on embedded defaults, [`pubsub`] creates Pub/Sub topics and subscriptions. The `maestro` binary is a thin clap front-end
//! ([`cli`]).

pub mod agent;
pub mod broker;
pub mod cli;
pub mod db_args;
pub mod demo;
pub mod dev_certs;
#[cfg(feature = "mqtt")]
pub mod embedded_mqtt;
pub mod go_flags;
pub mod grpc_limits;
pub mod ingest_args;
pub mod instance_lock;
pub mod logging;
pub mod pubsub;
pub mod scratch;
pub mod security;
pub mod server;
pub mod stack;

pub use logging::init_logging;

/// Installs the process's Prometheus recorder (once; later calls return the same handle) with
/// the server's and the agent's histogram buckets and series descriptions.
///
/// # Errors
/// Another recorder is installed already.
pub fn metrics_recorder() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    let buckets = [maestro_server::metrics::BUCKETS, maestro_agent::metrics::BUCKETS];
    let handle = maestro_server::metrics::install(&buckets)?;
    maestro_agent::metrics::describe();
    Ok(handle)
}

/// Resolves when the process gets Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}
