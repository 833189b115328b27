//! Command-line definition (clap derive).

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Parses a duration such as `30s`, `5m`, `1h30m` or `250ms`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 30s, 5m, 250ms"))
}

/// Parses a `key=value` label.
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("invalid label {s:?}: expected key=value")),
    }
}

/// maestro-cli: apply, inspect, wait for and delete ManifestWorks through a Maestro server.
///
/// Writes (apply, delete) are CloudEvents published to the source gRPC endpoint; reads (get,
/// list, wait) use the REST API. A work is identified by its name and consumer: its resource
/// id is the UUIDv5 of the source id, consumer and name.
#[derive(Debug, Parser)]
#[command(name = "maestro-cli", version, propagate_version = true)]
pub struct Cli {
    /// Maestro source gRPC endpoint (`host:port`), used for apply and delete.
    #[arg(long, env = "MAESTRO_GRPC_ENDPOINT", default_value = "localhost:8090", global = true)]
    pub grpc_endpoint: String,
    /// Maestro REST endpoint (URL), used for reads and waiting.
    #[arg(long, env = "MAESTRO_HTTP_ENDPOINT", default_value = "http://localhost:8000", global = true)]
    pub http_endpoint: String,
    /// PEM file of the CA that signs the REST endpoint's certificate (an `https://` endpoint
    /// of a server run with `--enable-https`); only it is trusted then. Default: the system's
    /// roots.
    #[arg(long, env = "MAESTRO_HTTP_CA_FILE", value_name = "PATH", global = true)]
    pub http_ca_file: Option<std::path::PathBuf>,
    /// PEM file of the CA that signs the gRPC endpoint's certificate (a server run with
    /// `--grpc-tls-cert-file`); setting it connects over TLS.
    #[arg(long, env = "MAESTRO_GRPC_CA_FILE", value_name = "PATH", global = true)]
    pub grpc_ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate for a gRPC server that requires mutual TLS
    /// (`--grpc-client-ca-file`); with `--grpc-client-key-file` and `--grpc-ca-file`.
    #[arg(
        long,
        env = "MAESTRO_GRPC_CLIENT_CERT_FILE",
        value_name = "PATH",
        global = true,
        requires_all = ["grpc_client_key_file", "grpc_ca_file"]
    )]
    pub grpc_client_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `--grpc-client-cert-file`.
    #[arg(
        long,
        env = "MAESTRO_GRPC_CLIENT_KEY_FILE",
        value_name = "PATH",
        global = true,
        requires = "grpc_client_cert_file"
    )]
    pub grpc_client_key_file: Option<std::path::PathBuf>,
    /// File holding a bearer token sent as `Authorization: Bearer <token>` on every REST
    /// request (read once; surrounding whitespace is trimmed). Prefer an `https://` endpoint:
    /// over plain HTTP to another host the token is sent in clear text (with a warning).
    #[arg(long, env = "MAESTRO_HTTP_TOKEN_FILE", value_name = "PATH", global = true)]
    pub http_token_file: Option<std::path::PathBuf>,
    /// File holding a bearer token sent as `authorization: Bearer <token>` metadata on every
    /// gRPC call (read once; whitespace trimmed). Needs `--grpc-ca-file` (a token is never
    /// sent in clear text); a token and a client certificate are mutually exclusive.
    #[arg(
        long,
        env = "MAESTRO_GRPC_TOKEN_FILE",
        value_name = "PATH",
        global = true,
        requires = "grpc_ca_file",
        conflicts_with_all = ["grpc_client_cert_file", "grpc_client_key_file"]
    )]
    pub grpc_token_file: Option<std::path::PathBuf>,
    /// Source id the works are published under; it is part of every resource id, so use the
    /// same value to find works again.
    #[arg(long, env = "MAESTRO_SOURCE_ID", default_value = "maestro-cli", global = true)]
    pub source_id: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
    /// Log requests and debug details to stderr.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable tables and descriptions.
    Table,
    /// JSON (the REST objects as the server returns them).
    Json,
    /// YAML (the REST objects as the server returns them).
    Yaml,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update a work from a ManifestWork or a list of manifests.
    Apply(ApplyArgs),
    /// Show a work: conditions, per-manifest status and feedback values.
    Get(GetArgs),
    /// List works (all consumers and sources unless filtered).
    List(ListArgs),
    /// Request deletion of a work.
    Delete(DeleteArgs),
    /// Wait until a work reaches a condition at its current version, or is deleted.
    Wait(WaitArgs),
    /// Manage consumers (registered clusters).
    #[command(subcommand)]
    Consumer(ConsumerCommand),
    /// Inspect and clear dead letters: events the server set aside for good, with why (needs
    /// the REST role admin).
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLetterCommand),
}

/// `apply` arguments.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// ManifestWork YAML/JSON, or a list of manifests (multi-document YAML, a YAML/JSON list
    /// or `kind: List`); `-` reads stdin.
    #[arg(long, short = 'f')]
    pub manifest_file: String,
    /// Consumer (cluster) name to apply the work to.
    #[arg(long, short = 'c')]
    pub consumer: String,
    /// Work name; overrides the ManifestWork's `metadata.name` and is required for a plain
    /// list of manifests.
    #[arg(long, short = 'n')]
    pub name: Option<String>,
    /// Wait until Applied and Available are True at the new version (or a failure is
    /// reported), printing progress to stderr.
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// How long `--watch` waits (e.g. `30s`, `5m`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How often `--watch` polls the REST API.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
}

/// `get` arguments: `--name` and `--consumer`, or `--id`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Work name (with `--consumer`).
    #[arg(long, short = 'n', required_unless_present_any = ["id", "search"], requires = "consumer")]
    pub name: Option<String>,
    /// Consumer (cluster) name (with `--name`).
    #[arg(long, short = 'c', required_unless_present_any = ["id", "search"], requires = "name")]
    pub consumer: Option<String>,
    /// Resource id (instead of `--name`/`--consumer`).
    #[arg(long, conflicts_with_all = ["name", "consumer", "search"])]
    pub id: Option<String>,
    /// Show every work matching this search instead (Maestro's search language, sent as
    /// written, e.g. `--search "name = 'web' and source = 'maestro-cli'"`; docs/rest.md,
    /// "Search language"); it fails when nothing matches.
    #[arg(long, conflicts_with_all = ["name", "consumer"])]
    pub search: Option<String>,
}

/// `list` arguments.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only works of this consumer.
    #[arg(long, short = 'c')]
    pub consumer: Option<String>,
    /// Only works written by this source id (e.g. `maestro-cli`).
    #[arg(long)]
    pub source: Option<String>,
    /// Only works matching this search, in Maestro's search language, sent to the server as
    /// written and joined with `--consumer`/`--source` by `and`; e.g.
    /// `--search "payload->'metadata'->'labels'->>'app' in ('web','api')"` or
    /// `--search "version > 1 and created_at >= '2026-01-01'"` (docs/rest.md, "Search
    /// language").
    #[arg(long)]
    pub search: Option<String>,
}

/// `delete` arguments.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Work name.
    #[arg(long, short = 'n')]
    pub name: String,
    /// Consumer (cluster) name.
    #[arg(long, short = 'c')]
    pub consumer: String,
    /// Wait until the work is gone (the agent confirmed deletion).
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// How long `--watch` waits (e.g. `30s`, `5m`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How often `--watch` polls the REST API.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
}

/// The conditions `wait` can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WaitCondition {
    /// `Applied`=True at the current version.
    #[value(name = "Applied")]
    Applied,
    /// `Available`=True at the current version.
    #[value(name = "Available")]
    Available,
    /// The work is gone (REST 404).
    #[value(name = "Deleted")]
    Deleted,
}

/// `wait` arguments.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Work name.
    #[arg(long, short = 'n')]
    pub name: String,
    /// Consumer (cluster) name.
    #[arg(long, short = 'c')]
    pub consumer: String,
    /// Condition to wait for (case-insensitive).
    #[arg(long, value_enum, ignore_case = true)]
    pub condition: WaitCondition,
    /// How long to wait before failing (e.g. `30s`, `5m`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How often to poll the REST API.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
}

/// `consumer` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConsumerCommand {
    /// List consumers.
    List,
    /// Register a consumer.
    Create {
        /// Consumer name (the cluster name its agent uses).
        name: String,
        /// Label `key=value`; repeatable.
        #[arg(long, short = 'l', value_parser = parse_label)]
        label: Vec<(String, String)>,
    },
    /// Show a consumer by id or name.
    Get {
        /// Consumer id or name.
        consumer: String,
    },
    /// Delete a consumer by id or name (refused while works reference it).
    Delete {
        /// Consumer id or name.
        consumer: String,
    },
}

/// `dead-letters` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List dead letters, newest first.
    List {
        /// Only this consumer's.
        #[arg(long, short = 'c')]
        consumer: Option<String>,
        /// Most dead letters to show (the server sends at most 500 per page).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one dead letter with its event.
    Get {
        /// Dead letter id.
        id: String,
    },
    /// Delete a dead letter once dealt with.
    Delete {
        /// Dead letter id.
        id: String,
    },
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
