//! # maestro-cli
//!
//! The `maestro-cli` command: apply, get, list, delete and wait for ManifestWorks (resource
//! bundles) through a Maestro server, plus consumer management. The binary (`main.rs`) only
//! parses arguments and maps errors to exit codes: 0 success, 1 failure (one-line
//! `error: …` on stderr), 2 usage errors.

pub mod cli;
mod commands;
mod output;

pub use cli::Cli;
pub use commands::run;
