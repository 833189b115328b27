//! Command implementations. Each writes its result to `out` (stdout in the binary) and
//! progress to stderr.

use std::io::Write;

use anyhow::Context as _;
use maestro_client::{
    BearerToken, GrpcTls, ResourceBundle, RestClient, RestOptions, SourceClient, error_chain,
};

use crate::cli::{Cli, Command, OutputFormat};
use crate::exit::{ExitStatus, exit_status};
use crate::results::{ResultStatus, StatusResult, write_atomic};

mod apply;
mod build;
mod consumer;
mod dead_letters;
mod delete;
mod describe;
mod diff;
mod get;
mod list;
mod validate;
mod wait;
mod watch;

/// Global settings shared by the commands.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// Source gRPC endpoint.
    pub(crate) grpc_endpoint: String,
    /// REST endpoint.
    pub(crate) http_endpoint: String,
    /// CA file trusted for an `https://` REST endpoint.
    pub(crate) http_ca_file: Option<std::path::PathBuf>,
    /// File of the bearer token sent on REST requests.
    pub(crate) http_token_file: Option<std::path::PathBuf>,
    /// TLS settings of the gRPC connection.
    pub(crate) grpc_tls: GrpcTls,
    /// File of the bearer token sent on gRPC calls.
    pub(crate) grpc_token_file: Option<std::path::PathBuf>,
    /// The bearer token sent on gRPC calls, given inline.
    pub(crate) grpc_client_token: Option<String>,
    /// Source id.
    pub(crate) source_id: String,
    /// Output format.
    pub(crate) output: OutputFormat,
}

impl Context {
    /// The REST client.
    pub(crate) fn rest(&self) -> anyhow::Result<RestClient> {
        let token = read_token(self.http_token_file.as_deref(), "--http-token-file")?;
        let options = RestOptions { ca_file: self.http_ca_file.clone(), token, ..Default::default() };
        Ok(RestClient::with_options(&self.http_endpoint, &options)?)
    }

    /// The gRPC source client (connects now).
    pub(crate) async fn source(&self) -> anyhow::Result<SourceClient> {
        let (endpoint, tls) = (&self.grpc_endpoint, &self.grpc_tls);
        let token = match &self.grpc_client_token {
            Some(inline) => Some(BearerToken::new(inline).context("reading --grpc-client-token")?),
            None => read_token(self.grpc_token_file.as_deref(), "--grpc-token-file")?,
        };
        SourceClient::connect_with_token(endpoint, &self.source_id, self.rest()?, tls, token.as_ref())
            .await
            .with_context(|| {
                format!("connecting to the Maestro gRPC endpoint as source {:?}", self.source_id)
            })
    }
}

/// What a command that writes a results file achieved: the status and a one-line message.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The status recorded.
    pub(crate) status: ResultStatus,
    /// The message recorded.
    pub(crate) message: String,
}

impl Outcome {
    /// An outcome with `status` and `message`.
    pub(crate) fn new(status: ResultStatus, message: impl Into<String>) -> Self {
        Outcome { status, message: message.into() }
    }
}

/// Writes the `--results-path` file (when `path` is set) for work `name` on `consumer` from
/// the command's `outcome` (a timeout is `InProgress`, any other error `Failed`), with the
/// work's current state read over REST (best effort), then returns the outcome. Errors
/// writing the file fail a successful command.
pub(crate) async fn report(
    ctx: &Context,
    path: Option<&std::path::Path>,
    name: &str,
    consumer: &str,
    outcome: anyhow::Result<Outcome>,
) -> anyhow::Result<()> {
    let Some(path) = path else { return outcome.map(|_| ()) };
    let (status, message, code) = match &outcome {
        Ok(o) => (o.status, o.message.clone(), ExitStatus::Success),
        Err(e) => match exit_status(e) {
            ExitStatus::Timeout => (ResultStatus::InProgress, error_chain(e.as_ref()), ExitStatus::Timeout),
            code => (ResultStatus::Failed, error_chain(e.as_ref()), code),
        },
    };
    let bundle = if matches!(code, ExitStatus::Unreachable | ExitStatus::Usage) || name.is_empty() {
        None
    } else {
        current_bundle(ctx, consumer, name).await
    };
    let written = write_atomic(path, &StatusResult::new(name, consumer, status, message, bundle.as_ref()));
    match (outcome, written) {
        (Err(e), Err(w)) => {
            eprintln!("warning: {w:#}");
            Err(e)
        }
        (outcome, written) => outcome.and(written),
    }
}

/// The work `name` on `consumer` of this source, `None` when missing or unreadable.
async fn current_bundle(ctx: &Context, consumer: &str, name: &str) -> Option<ResourceBundle> {
    let id = maestro_client::resource_id(&ctx.source_id, consumer, name);
    ctx.rest().ok()?.find_bundle(&id).await.ok().flatten()
}

/// The token in `path`, if given; errors name the flag and the file (never the token).
fn read_token(path: Option<&std::path::Path>, flag: &str) -> anyhow::Result<Option<BearerToken>> {
    path.map(|p| BearerToken::from_file(p).with_context(|| format!("reading {flag}"))).transpose()
}

/// Runs the parsed command, writing results to `out`.
///
/// # Errors
/// Any failure, as a message naming what failed.
pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    if cli.grpc_insecure && cli.grpc_endpoint.trim_start().to_ascii_lowercase().starts_with("https://") {
        return Err(
            crate::exit::CliError::usage("--grpc-insecure contradicts an https:// --grpc-endpoint").into()
        );
    }
    if cli.grpc_broker_ca_file.is_some() {
        eprintln!(
            "warning: --grpc-broker-ca-file is ignored: maestro-cli talks to the server's source API only"
        );
    }
    let ctx = Context {
        grpc_endpoint: cli.grpc_endpoint,
        http_endpoint: cli.http_endpoint,
        http_ca_file: cli.http_ca_file,
        http_token_file: cli.http_token_file,
        grpc_tls: GrpcTls {
            ca_file: cli.grpc_ca_file,
            client_cert: cli.grpc_client_cert_file.zip(cli.grpc_client_key_file),
        },
        grpc_token_file: cli.grpc_token_file,
        grpc_client_token: cli.grpc_client_token,
        source_id: cli.source_id,
        output: cli.output,
    };
    match &cli.command {
        Command::Apply(a) => apply::run(&ctx, a, out).await,
        Command::Get(a) => get::run(&ctx, a, out).await,
        Command::List(a) => list::run(&ctx, a, out).await,
        Command::Delete(a) => delete::run(&ctx, a, out).await,
        Command::Wait(a) => wait::run(&ctx, a, out).await,
        Command::Describe(a) => describe::run(&ctx, a, out).await,
        Command::Validate(a) => validate::run(&ctx, a, out).await,
        Command::Diff(a) => diff::run(&ctx, a, out).await,
        Command::Build(a) => build::run(&ctx, a, out).await,
        Command::Watch(a) => watch::run(&ctx, a, out).await,
        Command::Consumer(c) => consumer::run(&ctx, c, out).await,
        Command::DeadLetters(c) => dead_letters::run(&ctx, c, out).await,
        Command::Version => version(&ctx, out),
    }
}

/// Runs `version`.
fn version(ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let v = env!("CARGO_PKG_VERSION");
    if !crate::output::structured(out, ctx.output, &serde_json::json!({"version": v}))? {
        writeln!(out, "maestro-cli {v}")?;
    }
    Ok(())
}
