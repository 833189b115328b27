//! # maestro-cli
//!
//! The `maestro-cli` command: apply, get, list, delete and wait for ManifestWorks (resource
//! bundles) through a Maestro server, plus consumer management. The binary (`main.rs`) only
//! parses arguments and maps errors to the exit codes of [`exit`] (one-line `error: …` on
//! stderr): 0 success, 1 failed condition, 2 usage, 3 timeout, 4 conflict, 5 unreachable.

pub mod cli;
mod commands;
pub mod condition;
pub mod exit;
mod output;
pub mod results;

pub use cli::Cli;
pub use commands::run;
pub use exit::{CliError, ExitStatus, exit_status};
