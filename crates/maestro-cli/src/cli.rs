//! Command-line definition (clap derive).

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES_HELP;

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
#[command(name = "maestro-cli", version, propagate_version = true, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Maestro source gRPC endpoint, used for apply and delete: `host:port` or
    /// `http://host:port` (plaintext unless `--grpc-ca-file` is set), or `https://host:port`
    /// (TLS, trusting the system's roots unless `--grpc-ca-file` is set).
    #[arg(long, env = "MAESTRO_GRPC_ENDPOINT", default_value = "localhost:8090", global = true)]
    pub grpc_endpoint: String,
    /// Maestro REST endpoint, used for reads and waiting: a URL (`http://…`, `https://…`), or
    /// `host:port`, which means `http://host:port`, or `https://host:port` when
    /// `--http-ca-file` is set.
    #[arg(long, env = "MAESTRO_HTTP_ENDPOINT", default_value = "http://localhost:8000", global = true)]
    pub http_endpoint: String,
    /// PEM file of the CA that signs the REST endpoint's certificate (an `https://` endpoint
    /// of a server run with `--enable-https`); only it is trusted then. Default: the system's
    /// roots.
    #[arg(long, env = "MAESTRO_HTTP_CA_FILE", value_name = "PATH", global = true)]
    pub http_ca_file: Option<std::path::PathBuf>,
    /// PEM file of the CA that signs the gRPC endpoint's certificate (a server run with
    /// `--grpc-tls-cert-file`); setting it connects over TLS. `--grpc-server-ca-file` is the
    /// HyperFleet CLI's name for it.
    #[arg(
        long,
        visible_alias = "grpc-server-ca-file",
        env = "MAESTRO_GRPC_CA_FILE",
        value_name = "PATH",
        global = true
    )]
    pub grpc_ca_file: Option<std::path::PathBuf>,
    /// Connect to the gRPC endpoint in plaintext, as the HyperFleet CLI's flag: refused with any
    /// TLS or token flag and with an `https://` endpoint (a `host:port` endpoint without
    /// `--grpc-ca-file` is plaintext anyway).
    #[arg(
        long,
        env = "MAESTRO_GRPC_INSECURE",
        global = true,
        conflicts_with_all = ["grpc_ca_file", "grpc_client_cert_file", "grpc_token_file", "grpc_client_token"]
    )]
    pub grpc_insecure: bool,
    /// Accepted for the HyperFleet CLI's command lines and ignored (with a warning):
    /// maestro-cli talks to the server's source API only, never to the agent broker.
    #[arg(long, env = "MAESTRO_GRPC_BROKER_CA_FILE", value_name = "PATH", global = true)]
    pub grpc_broker_ca_file: Option<std::path::PathBuf>,
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
    /// `--grpc-client-token-file` is the HyperFleet CLI's name for it.
    #[arg(
        long,
        visible_alias = "grpc-client-token-file",
        env = "MAESTRO_GRPC_TOKEN_FILE",
        value_name = "PATH",
        global = true,
        requires = "grpc_ca_file",
        conflicts_with_all = ["grpc_client_cert_file", "grpc_client_key_file"]
    )]
    pub grpc_token_file: Option<std::path::PathBuf>,
    /// A bearer token given inline, as the HyperFleet CLI's flag (prefer
    /// `--grpc-token-file`: a command line is visible to other processes). Same rules as
    /// `--grpc-token-file`, and not both.
    #[arg(
        long,
        env = "MAESTRO_GRPC_CLIENT_TOKEN",
        value_name = "TOKEN",
        global = true,
        hide_env_values = true,
        requires = "grpc_ca_file",
        conflicts_with_all = ["grpc_client_cert_file", "grpc_client_key_file", "grpc_token_file"]
    )]
    pub grpc_client_token: Option<String>,
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
    /// `list`: one `consumer/name` per line (other commands: as `table`).
    Name,
    /// `list`: the table plus source, id, manifest count and status (other commands: as
    /// `table`).
    Wide,
}

/// The status of a work in `list --status`: each work has exactly one, the first that holds
/// of Deleting, Failed, Available, Applied, InProgress (README.md, "maestro-cli").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkStatus {
    /// `Applied`=True at the current version, `Available` not True yet.
    #[value(name = "Applied")]
    Applied,
    /// `Available`=True at the current version.
    #[value(name = "Available")]
    Available,
    /// `Degraded`=True or `Applied`=False at the current version.
    #[value(name = "Failed")]
    Failed,
    /// None of the others yet: no status, a stale status, or Applied not reported.
    #[value(name = "InProgress")]
    InProgress,
    /// Deletion was requested and the agent has not confirmed it yet.
    #[value(name = "Deleting")]
    Deleting,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update a work from a ManifestWork or a list of manifests.
    #[command(after_help = EXIT_CODES_HELP)]
    Apply(ApplyArgs),
    /// Show a work: conditions, per-manifest status and feedback values.
    #[command(after_help = EXIT_CODES_HELP)]
    Get(GetArgs),
    /// List works (all consumers and sources unless filtered).
    #[command(after_help = EXIT_CODES_HELP)]
    List(ListArgs),
    /// Request deletion of a work (a missing work is a warning, not an error), or of every work
    /// of a consumer with `--all`.
    #[command(after_help = EXIT_CODES_HELP)]
    Delete(DeleteArgs),
    /// Wait until a work reaches a condition at its current version, or is deleted.
    #[command(after_help = EXIT_CODES_HELP)]
    Wait(WaitArgs),
    /// Show a work like `kubectl describe`: metadata, version, conditions, per-manifest
    /// conditions and feedback, and an events timeline from the condition transitions.
    #[command(after_help = EXIT_CODES_HELP)]
    Describe(DescribeArgs),
    /// Check a ManifestWork or manifest list offline (schema, names, manifestConfigs); with
    /// `--consumer` also check that the consumer exists.
    #[command(after_help = EXIT_CODES_HELP)]
    Validate(ValidateArgs),
    /// Compare a desired file with the stored work: a unified diff per manifest; exit 1 when
    /// they differ (as `kubectl diff`), 0 when equal.
    #[command(after_help = EXIT_CODES_HELP)]
    Diff(DiffArgs),
    /// Fetch the stored work and merge the given manifests into it by identity (group,
    /// version, kind, namespace, name); print the result, or publish it with `--apply` at the
    /// version read (a concurrent change is a conflict, exit 4).
    #[command(after_help = EXIT_CODES_HELP)]
    Build(BuildArgs),
    /// Stream status changes of one work, of a consumer's works, or of all works of this
    /// source, over the source gRPC subscription (with a REST resync on every reconnect).
    #[command(after_help = EXIT_CODES_HELP)]
    Watch(WatchArgs),
    /// Manage consumers (registered clusters).
    #[command(subcommand)]
    Consumer(ConsumerCommand),
    /// Inspect and clear dead letters: events the server set aside for good, with why (needs
    /// the REST role admin).
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLetterCommand),
    /// Print the maestro-cli version.
    Version,
}

/// The `--results-path` flag shared by apply, delete and wait.
#[derive(Debug, Clone, Args)]
pub struct ResultsArgs {
    /// Write a status result JSON file here when the command ends (success, failure or
    /// timeout), replacing it atomically: `manifestWorkName`, `consumer`, `status`
    /// (`Applied`, `Failed`, `InProgress`), `message`, `timestamp`, `resources`.
    #[arg(long, env = "RESULTS_PATH", value_name = "PATH")]
    pub results_path: Option<std::path::PathBuf>,
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
    /// Print the work that would be published and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Merge apply: add or replace only this writer's manifests (by identity) in the stored
    /// work, and remove only those this `--manager` applied before and no longer lists; the
    /// server does the read-modify-write under the work's version and retries on conflict, so
    /// several writers can share one work safely. Needs `--manager`.
    #[arg(long, requires = "manager")]
    pub merge: bool,
    /// The writer's name (like a Kubernetes field manager, e.g. the adapter's name),
    /// recorded for each manifest it applies. Without `--merge` the apply still replaces the
    /// whole work, but is refused (exit 4) when that would remove manifests recorded for
    /// another manager.
    #[arg(long, value_name = "NAME")]
    pub manager: Option<String>,
    /// Without `--merge`: replace the work even when that removes manifests recorded for
    /// another manager (refused otherwise, exit 4).
    #[arg(long, conflicts_with = "merge")]
    pub force: bool,
    /// The results file.
    #[command(flatten)]
    pub results: ResultsArgs,
}

/// `describe` arguments: `--name` and `--consumer`, or `--id`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Work name (with `--consumer`).
    #[arg(long, short = 'n', required_unless_present = "id", requires = "consumer")]
    pub name: Option<String>,
    /// Consumer (cluster) name (with `--name`).
    #[arg(long, short = 'c', required_unless_present = "id", requires = "name")]
    pub consumer: Option<String>,
    /// Resource id (instead of `--name`/`--consumer`).
    #[arg(long, conflicts_with_all = ["name", "consumer"])]
    pub id: Option<String>,
}

/// `validate` arguments.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// ManifestWork YAML/JSON or manifest list to check; `-` reads stdin.
    #[arg(long, short = 'f')]
    pub manifest_file: String,
    /// Work name, required for a plain manifest list (as for `apply`).
    #[arg(long, short = 'n')]
    pub name: Option<String>,
    /// Also check over REST that this consumer exists.
    #[arg(long, short = 'c')]
    pub consumer: Option<String>,
}

/// `diff` arguments.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The desired ManifestWork or manifest list; `-` reads stdin.
    #[arg(long, short = 'f')]
    pub manifest_file: String,
    /// Consumer (cluster) name.
    #[arg(long, short = 'c')]
    pub consumer: String,
    /// Work name; overrides the ManifestWork's `metadata.name`.
    #[arg(long, short = 'n')]
    pub name: Option<String>,
}

/// `build` arguments.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Manifests to merge into the stored work (a ManifestWork or a manifest list); `-`
    /// reads stdin.
    #[arg(long, short = 'f')]
    pub manifest_file: String,
    /// Consumer (cluster) name.
    #[arg(long, short = 'c')]
    pub consumer: String,
    /// Work name; overrides the ManifestWork's `metadata.name`.
    #[arg(long, short = 'n')]
    pub name: Option<String>,
    /// Publish the merged work at the version read instead of printing it.
    #[arg(long)]
    pub apply: bool,
    /// The results file (with `--apply`).
    #[command(flatten)]
    pub results: ResultsArgs,
}

/// `watch` arguments: one work (`--name` and `--consumer`), a consumer's works
/// (`--consumer`), or every work of this source (neither).
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only this work (needs `--consumer`).
    #[arg(long, short = 'n', requires = "consumer")]
    pub name: Option<String>,
    /// Only this consumer's works.
    #[arg(long, short = 'c')]
    pub consumer: Option<String>,
    /// Stop after this long (default: until interrupted), exit 0.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
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
    /// Only works in this status (computed from the conditions on the client; each work has
    /// one: Deleting, else Failed, else Available, else Applied, else InProgress).
    #[arg(long, value_enum, ignore_case = true)]
    pub status: Option<WorkStatus>,
}

/// `delete` arguments.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Work name (or `--all`).
    #[arg(long, short = 'n', required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Consumer (cluster) name.
    #[arg(long, short = 'c')]
    pub consumer: String,
    /// Delete every work of the consumer published by this `--source-id`.
    #[arg(long)]
    pub all: bool,
    /// With `--all`: every work of the consumer, whatever source published it.
    #[arg(long, requires = "all", conflicts_with = "name")]
    pub any_source: bool,
    /// Print what would be deleted and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait until the work is gone (the agent confirmed deletion).
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// How long `--watch` waits (e.g. `30s`, `5m`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How often `--watch` polls the REST API.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// The results file.
    #[command(flatten)]
    pub results: ResultsArgs,
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
    /// Condition expression to wait for: `Applied`, `Available`, `Deleted` (work conditions
    /// at the current version), or a manifest condition `<Kind>:<Condition>` (every manifest
    /// of that kind, e.g. `Job:Complete`) or `<Kind>/<name>:<Condition>` (one manifest; also
    /// `<Kind>/<namespace>/<name>:<Condition>`), combined with `AND` / `OR` (AND binds
    /// tighter), e.g. `"Applied AND Job:Complete"`. Condition names are case-insensitive.
    #[arg(long, visible_alias = "for")]
    pub condition: String,
    /// Print every status change to stdout while waiting (not only the result).
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// How long to wait before failing (e.g. `30s`, `5m`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How often to poll the REST API.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// The results file.
    #[command(flatten)]
    pub results: ResultsArgs,
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
    /// Confirm that the works this consumer's agent orphaned under the fleet-wipe guard may be
    /// deleted (the database they came from is gone for good). The agent keeps orphaned works'
    /// objects on its cluster until this is run or a source publishes the works again (which
    /// adopts them); after it, the agent deletes them at its next spec resync (within its
    /// --orphan-recheck-interval, 30 s by default). See docs/operations.md §3.5. Needs the
    /// REST role admin.
    ConfirmWipe {
        /// Consumer id or name.
        consumer: String,
        /// How long the confirmation holds (e.g. 10m, 1h; at most 30 days).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
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
