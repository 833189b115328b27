//! Command-line interface of the `maestro` binary.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::agent::{AgentSettings, ClusterKind};
use crate::broker::{AgentBrokerSettings, BrokerKind, SourceBrokerSettings};
use crate::server::ServerSettings;

/// Maestro in Rust: carries Kubernetes resources (ManifestWorks / resource bundles) from a
/// central server to agents on many clusters as CloudEvents, and their status back.
#[derive(Debug, Parser)]
#[command(name = "maestro", version, about, long_about = None)]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text (same as `--log-format json`).
    #[arg(long, global = true, env = "MAESTRO_LOG_JSON")]
    pub log_json: bool,
    /// Log format: `text` (human-readable, the default) or `json` (one object per line, with
    /// the fields of the enclosing spans, among them `trace_id` when tracing is on).
    #[arg(long, global = true, env = "MAESTRO_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// klog's flags (Go Maestro compatibility).
    #[command(flatten)]
    pub klog: crate::go_flags::KlogFlags,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether logs are JSON lines (`--log-json` or `--log-format json`).
    pub fn json_logs(&self) -> bool {
        self.log_json || self.log_format == Some(LogFormat::Json)
    }

    /// The OpenTelemetry service name of this command (`OTEL_SERVICE_NAME` wins).
    pub fn service_name(&self) -> &'static str {
        match self.command {
            Command::Agent(_) => "maestro-agent",
            _ => "maestro-server",
        }
    }

    /// The log filter used when `RUST_LOG` is not set.
    pub fn default_log_filter(&self) -> &'static str {
        if let Some(filter) = self.klog.filter() {
            return filter;
        }
        match self.command {
            Command::Demo(_) => "warn,rumqttd=off,rmqtt=off",
            _ => "info",
        }
    }
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, control characters escaped.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: REST API, source gRPC service, broker, spec dispatch, status ingestion.
    Server(ServerArgs),
    /// Run a work agent for one consumer (cluster).
    Agent(AgentArgs),
    /// Apply database migrations and exit (also `migration`, Go Maestro's name).
    #[command(alias = "migration")]
    Migrate(DbArgs),
    /// Run the main job end to end on embedded defaults: a server on SQLite with the gRPC
    /// broker (or `--broker mqtt|pubsub`) and 3 agents on simulated clusters; apply the
    /// examples, wait until Available, print their status, delete one.
    Demo(crate::demo::DemoArgs),
    /// Write a throw-away PKI for trying mutual TLS locally: a CA, a server certificate, agent
    /// certificates (CN = consumer), source certificates (CN = source id), a policy file and
    /// agent configs (docs/security.md, "Trying it"). Not for production.
    DevCerts(crate::dev_certs::DevCertsArgs),
    /// Pub/Sub administration.
    #[command(subcommand)]
    Pubsub(PubSubCommand),
}

pub use crate::db_args::DbArgs;

/// `maestro server` flags.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Message broker between server and agents (also `--message-broker-type`, Go Maestro's
    /// name).
    #[arg(long, alias = "message-broker-type", value_enum, env = "MAESTRO_BROKER", default_value = "grpc")]
    broker: BrokerKind,
    /// REST API listen address (`HOST:PORT`). Default: `--server-hostname` and
    /// `--http-server-bindport`.
    #[arg(long, env = "MAESTRO_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Source-facing gRPC listen address (sources publish specs and subscribe to statuses).
    /// Default: `--server-hostname` and `--grpc-server-bindport`.
    #[arg(long, env = "MAESTRO_GRPC_ADDR")]
    grpc_addr: Option<SocketAddr>,
    /// Host (name or IP) every listener binds to, as Go Maestro's flag. Default: 127.0.0.1 for
    /// a listener without TLS, so nothing is exposed in clear text by accident, and 0.0.0.0
    /// (all interfaces) for a listener with TLS.
    #[arg(long, env = "MAESTRO_SERVER_HOSTNAME", value_name = "HOST")]
    server_hostname: Option<String>,
    /// REST API port (Go Maestro's flag).
    #[arg(long, env = "MAESTRO_HTTP_SERVER_BINDPORT", value_name = "PORT", default_value_t = 8000)]
    http_server_bindport: u16,
    /// Source gRPC port (Go Maestro's flag).
    #[arg(long, env = "MAESTRO_GRPC_SERVER_BINDPORT", value_name = "PORT", default_value_t = 8090)]
    grpc_server_bindport: u16,
    /// Prometheus metrics port (Go Maestro's flag): `/metrics` in the text format.
    #[arg(long, env = "MAESTRO_METRICS_SERVER_BINDPORT", value_name = "PORT", default_value_t = 8080)]
    metrics_server_bindport: u16,
    /// Metrics listen address (`HOST:PORT`; port 0 picks a free one). Default:
    /// `--server-hostname` and `--metrics-server-bindport`.
    #[arg(long, env = "MAESTRO_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Health port (Go Maestro's flag): `/healthcheck` and `/readyz` (ready: the database
    /// answers, the broker subscribed, the instance lease holds), `/livez` and `/healthz`
    /// (alive).
    #[arg(long, env = "MAESTRO_HEALTH_CHECK_SERVER_BINDPORT", value_name = "PORT", default_value_t = 8083)]
    health_check_server_bindport: u16,
    /// Health listen address (`HOST:PORT`; port 0 picks a free one). Default:
    /// `--server-hostname` and `--health-check-server-bindport`.
    #[arg(long, env = "MAESTRO_HEALTH_ADDR")]
    health_addr: Option<SocketAddr>,
    /// Agent broker port with `--broker grpc` (Go Maestro's flag).
    #[arg(long, env = "MAESTRO_GRPC_BROKER_BINDPORT", value_name = "PORT", default_value_t = 8091)]
    grpc_broker_bindport: u16,
    /// Broker config file with the sdk-go keys (`--broker mqtt`: brokerHost, username,
    /// password, topics, caFile, …; `--broker pubsub`: projectID, endpoint, credentialsFile,
    /// disableTLS, topics, subscriptions, …). An existing Go Maestro config file works.
    #[arg(long = "broker-config", alias = "message-broker-config-file", env = "MAESTRO_BROKER_CONFIG")]
    broker_config: Option<String>,
    /// Without `--broker-config`: the MQTT broker `host:port` (Maestro's topic layout), or the
    /// Pub/Sub endpoint (emulator `host:port`; default `PUBSUB_EMULATOR_HOST`, else Google's).
    #[arg(long, env = "MAESTRO_BROKER_URL")]
    broker_url: Option<String>,
    #[command(flatten)]
    pubsub: PubSubArgs,
    /// With `--broker mqtt`: run an embedded MQTT 5 broker (`--embedded-mqtt-engine`) on this address, for
    /// single-node setups; without `--broker-config` the server then uses it with Maestro's
    /// topic layout (`sources/<source-id>/consumers/+/sourceevents|agentevents`).
    #[arg(long, env = "MAESTRO_EMBEDDED_MQTT")]
    embedded_mqtt: Option<SocketAddr>,
    /// With `--embedded-mqtt`: a Mosquitto password file (`mosquitto_passwd`). Every MQTT
    /// client must then log in; the user named like `--source-id` is the server (it logs in by
    /// itself), every other user is an agent named like its consumer and confined to that
    /// consumer's topics (the rules of deploy/mqtt/acl). Without it anyone may connect.
    #[arg(
        long,
        env = "MAESTRO_EMBEDDED_MQTT_PASSWORD_FILE",
        value_name = "FILE",
        requires = "embedded_mqtt"
    )]
    embedded_mqtt_password_file: Option<std::path::PathBuf>,
    /// With `--embedded-mqtt`: the embedded broker's engine. `rmqtt` (0.24, Cargo feature
    /// `embedded-rmqtt`, the default when built in) listens on the address itself and holds
    /// ~19 KiB per idle connection; `rumqttd` (0.20, the default without that feature) runs
    /// behind a gate, with ~51 KiB of fixed buffers per connection (10,000 agents: ~650 MiB)
    /// (docs/operations.md, "Embedded MQTT broker").
    #[arg(
        long,
        env = "MAESTRO_EMBEDDED_MQTT_ENGINE",
        value_enum,
        default_value_t = crate::broker::EmbeddedEngine::default(),
        requires = "embedded_mqtt"
    )]
    embedded_mqtt_engine: crate::broker::EmbeddedEngine,
    /// Broker client id of this server instance (the MQTT client id; as Go Maestro, also the
    /// instance id when `--instance-id` is not given). Default: the instance id. Several
    /// instances need different ids (an MQTT broker disconnects the older of two clients with
    /// one id).
    #[arg(long, env = "MAESTRO_CLIENT_ID")]
    client_id: Option<String>,
    /// This server's id in the instance registry, unique among the instances sharing one
    /// database (docs/architecture.md §9). Default: `--client-id`, else
    /// `maestro-<hostname>-<pid>-<4 random hex digits>`.
    #[arg(long, env = "MAESTRO_INSTANCE_ID")]
    instance_id: Option<String>,
    /// How often this instance renews its lease in the instance registry and looks for
    /// instances whose lease passed (e.g. `5s`; also `--heartbeat-interval`, Go Maestro's name,
    /// where a bare number is seconds).
    #[arg(long, alias = "heartbeat-interval", env = "MAESTRO_INSTANCE_HEARTBEAT", value_name = "DURATION", default_value = "5s", value_parser = crate::go_flags::seconds_or_duration)]
    instance_heartbeat: Duration,
    /// How long this instance's lease holds without renewal (e.g. `15s`): after it, another
    /// instance declares it dead and takes over its spec deliveries and its gRPC agents'
    /// consumers. At least twice `--instance-heartbeat`. Default: three heartbeats (15 s).
    #[arg(long, env = "MAESTRO_INSTANCE_LEASE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    instance_lease: Option<Duration>,
    /// How several instances share the agents' events (Go Maestro's flag): `shared`, each
    /// handles what the broker hands it (MQTT `$share/…` topics, Pub/Sub; without `$share/`
    /// every instance stores each status once); `broadcast`, every instance receives
    /// everything and only the consumer's owner handles it (brokers without shared
    /// subscriptions).
    #[arg(long, env = "MAESTRO_SUBSCRIPTION_TYPE", value_enum, default_value = "shared")]
    subscription_type: SubscriptionTypeArg,
    /// Agent-facing gRPC broker listen address (with `--broker grpc`). Default:
    /// `--server-hostname` and `--grpc-broker-bindport`.
    #[arg(long, env = "MAESTRO_GRPC_BROKER_ADDR")]
    grpc_broker_addr: Option<SocketAddr>,
    /// Source id stamped on spec events sent to agents; agents must report it back as
    /// `originalsource`.
    #[arg(long, env = "MAESTRO_SOURCE_ID", default_value = "maestro")]
    source_id: String,
    /// Heartbeat period on gRPC Subscribe streams, sources' and agents' (Go Maestro's flag;
    /// e.g. `10s`); `0s` disables.
    #[arg(long, env = "MAESTRO_HEARTBEAT_CHECK_INTERVAL", value_name = "DURATION", default_value = "10s", value_parser = crate::go_flags::seconds_or_duration)]
    heartbeat_check_interval: Duration,
    /// No heartbeats on gRPC Subscribe streams (Go Maestro's flag).
    #[arg(long, env = "MAESTRO_HEARTBEAT_DISABLE")]
    heartbeat_disable: bool,
    /// Largest accepted resource bundle, in bytes of manifests.
    #[arg(long, env = "MAESTRO_MAX_BUNDLE_BYTES", default_value_t = maestro_api::validate::MAX_BUNDLE_BYTES)]
    max_bundle_bytes: usize,
    /// On SIGTERM or Ctrl-C: how long the requests, spec deliveries and status writes in
    /// flight may take to finish before the server stops anyway (e.g. `20s`).
    #[arg(long, env = "MAESTRO_SHUTDOWN_TIMEOUT", value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,
    /// Serve the REST API over HTTPS (TLS 1.2 and 1.3) with `--https-cert-file` and
    /// `--https-key-file`, as Go Maestro's flag; the files are re-read when they change, so a
    /// rotated certificate needs no restart. Takes an optional value (`--enable-https=false`)
    /// as Go's boolean flags do.
    #[arg(long, env = "MAESTRO_ENABLE_HTTPS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    enable_https: bool,
    /// PEM certificate (then intermediates) of the REST API, with `--enable-https`.
    #[arg(long, env = "MAESTRO_HTTPS_CERT_FILE", value_name = "PATH")]
    https_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of the REST API (PKCS#8, PKCS#1 or SEC1), with `--enable-https`.
    #[arg(long, env = "MAESTRO_HTTPS_KEY_FILE", value_name = "PATH")]
    https_key_file: Option<std::path::PathBuf>,
    /// PEM certificate of the source gRPC API; with `--grpc-tls-key-file` it turns TLS on for
    /// that port (as Go Maestro: TLS exactly when both files are set), re-read on change.
    #[arg(long, env = "MAESTRO_GRPC_TLS_CERT_FILE", value_name = "PATH", requires = "grpc_tls_key_file")]
    grpc_tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of the source gRPC API.
    #[arg(long, env = "MAESTRO_GRPC_TLS_KEY_FILE", value_name = "PATH", requires = "grpc_tls_cert_file")]
    grpc_tls_key_file: Option<std::path::PathBuf>,
    /// PEM CA file that signs source client certificates: with it every source must present
    /// one (mutual TLS on the source gRPC API).
    #[arg(long, env = "MAESTRO_GRPC_CLIENT_CA_FILE", value_name = "PATH", requires = "grpc_tls_cert_file")]
    grpc_client_ca_file: Option<std::path::PathBuf>,
    /// PEM certificate of the agent broker (`--broker grpc`); with `--grpc-broker-tls-key-file`
    /// it turns TLS on for that port, re-read on change.
    #[arg(
        long,
        env = "MAESTRO_GRPC_BROKER_TLS_CERT_FILE",
        value_name = "PATH",
        requires = "grpc_broker_tls_key_file"
    )]
    grpc_broker_tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of the agent broker.
    #[arg(
        long,
        env = "MAESTRO_GRPC_BROKER_TLS_KEY_FILE",
        value_name = "PATH",
        requires = "grpc_broker_tls_cert_file"
    )]
    grpc_broker_tls_key_file: Option<std::path::PathBuf>,
    /// PEM CA file that signs agent client certificates: with it every agent must present one
    /// (mutual TLS on the agent broker).
    #[arg(
        long,
        env = "MAESTRO_GRPC_BROKER_CLIENT_CA_FILE",
        value_name = "PATH",
        requires = "grpc_broker_tls_cert_file"
    )]
    grpc_broker_client_ca_file: Option<std::path::PathBuf>,
    /// REST: largest request body in bytes; a larger one is answered 413 (docs/rest.md,
    /// "Limits").
    #[arg(long, env = "MAESTRO_HTTP_MAX_BODY_BYTES", value_name = "BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    http_max_body_bytes: u32,
    /// REST: time an HTTP/1.1 client has to send a request's headers, also the longest an idle
    /// keep-alive connection is kept (e.g. `10s`); `0s` disables.
    /// Also `--http-read-timeout` (Go Maestro's flag, which bounds reading the whole request).
    #[arg(long, alias = "http-read-timeout", env = "MAESTRO_HTTP_READ_HEADER_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    http_read_header_timeout: Duration,
    /// REST: a connection with no request in progress on which nothing is read or written for
    /// this long is closed (a client that stopped reading a response, an idle HTTP/2
    /// connection); `0s` disables.
    #[arg(long, env = "MAESTRO_HTTP_IDLE_TIMEOUT", value_name = "DURATION", default_value = "90s", value_parser = humantime::parse_duration)]
    http_idle_timeout: Duration,
    /// REST: time a request has to produce its response head (then 503); `0s` disables. Also
    /// `--http-write-timeout` (Go Maestro's flag, which bounds the whole response).
    #[arg(long, alias = "http-write-timeout", env = "MAESTRO_HTTP_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    http_request_timeout: Duration,
    /// REST: lists served at once; more wait for a slot within the request timeout.
    #[arg(long, env = "MAESTRO_HTTP_MAX_CONCURRENT_LISTS", value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..))]
    http_max_concurrent_lists: u16,
    #[command(flatten)]
    security: crate::security::SecurityArgs,
    #[command(flatten)]
    grpc_limits: crate::grpc_limits::GrpcLimitsArgs,
    #[command(flatten)]
    ingest: crate::ingest_args::IngestArgs,
    #[command(flatten)]
    go: crate::go_flags::GoServerFlags,
}

/// `maestro agent` flags.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// The consumer (cluster) name this agent serves.
    #[arg(long, env = "MAESTRO_CONSUMER_NAME")]
    consumer_name: String,
    /// Agent id, the CloudEvent `source` of its events. Default `<consumer>-work-agent`.
    #[arg(long = "cloudevents-client-id", env = "MAESTRO_AGENT_ID")]
    agent_id: Option<String>,
    /// Message broker between server and agents.
    #[arg(
        long = "workload-source-driver",
        alias = "broker",
        value_enum,
        env = "MAESTRO_BROKER",
        default_value = "grpc"
    )]
    broker: BrokerKind,
    /// Broker config file (sdk-go YAML keys: `url: host:8091` for gRPC; brokerHost, topics, …
    /// for MQTT; projectID, endpoint, subscriptions, … for Pub/Sub). Overrides `--broker-url`.
    #[arg(long = "workload-source-config", env = "MAESTRO_BROKER_CONFIG")]
    broker_config: Option<String>,
    /// Broker address when no config file is given: the gRPC broker `host:port` (default
    /// `localhost:8091`), the MQTT broker `host:port` (Maestro's topic layout for source
    /// `maestro`), or the Pub/Sub endpoint (emulator `host:port`; default
    /// `PUBSUB_EMULATOR_HOST`, else Google's).
    #[arg(long, env = "MAESTRO_BROKER_URL")]
    broker_url: Option<String>,
    #[command(flatten)]
    pubsub: PubSubArgs,
    /// The cluster to apply to: `kube` (kubeconfig / in-cluster) or `simulated` (in-process).
    #[arg(long, value_enum, env = "MAESTRO_CLUSTER", default_value = "kube")]
    cluster: ClusterKind,
    /// With `--cluster simulated`: keep the simulated cluster in this file (one JSON line per
    /// change, replayed at start), so that it outlives the agent process as a real cluster
    /// outlives a restarted agent pod. Default: in memory, gone with the process.
    #[arg(long, env = "MAESTRO_SIMULATED_JOURNAL", value_name = "FILE")]
    simulated_journal: Option<std::path::PathBuf>,
    /// Testing only (the fault-injection harness, docs/reliability.md): milliseconds added to
    /// the agent's clock where it orders its statuses and dates its start; negative: behind.
    #[arg(
        long,
        hide = true,
        env = "MAESTRO_AGENT_CLOCK_SKEW_MS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    clock_skew_ms: i64,
    /// How often applied resources are re-read for Available and feedback (e.g. `10s`).
    #[arg(long, env = "MAESTRO_STATUS_SYNC_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    status_sync_interval: Duration,
    /// On SIGTERM or Ctrl-C: how long the applies and status publishes in flight may take to
    /// finish before the agent stops anyway (e.g. `10s`).
    #[arg(long, env = "MAESTRO_SHUTDOWN_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,
    #[command(flatten)]
    sources: crate::agent::AgentSourceArgs,
    #[command(flatten)]
    wipe_guard: crate::agent::WipeGuardArgs,
    #[command(flatten)]
    go: crate::go_flags::GoAgentFlags,
    /// Serve Prometheus metrics (`/metrics`) and health (`/livez`, `/healthz`; `/readyz`: the
    /// broker subscribed) on this address (`HOST:PORT`, e.g. `0.0.0.0:8080` in a pod). Default:
    /// not served.
    #[arg(long, env = "MAESTRO_AGENT_METRICS_ADDR", value_name = "HOST:PORT")]
    metrics_addr: Option<SocketAddr>,
}

/// Pub/Sub without a config file.
#[derive(Debug, Clone, Args)]
pub struct PubSubArgs {
    /// With `--broker pubsub` and no `--broker-config`: the GCP project holding Maestro's
    /// topics (`sourceevents`, `sourcebroadcast`, `agentevents`, `agentbroadcast`).
    #[arg(long, env = "MAESTRO_PUBSUB_PROJECT")]
    pub pubsub_project: Option<String>,
}

/// `maestro pubsub` subcommands.
#[derive(Debug, Subcommand)]
pub enum PubSubCommand {
    /// Create Maestro's topics and the subscriptions of a source and of consumers
    /// (docs/protocol.md §7.3), idempotently: what exists is kept.
    Init(PubSubInitArgs),
}

/// `maestro pubsub init` flags.
#[derive(Debug, Clone, Args)]
pub struct PubSubInitArgs {
    /// sdk-go Pub/Sub config file (projectID, endpoint, credentialsFile, disableTLS, topics).
    #[arg(long = "broker-config", env = "MAESTRO_BROKER_CONFIG")]
    pub broker_config: Option<String>,
    /// Without `--broker-config`: the endpoint (emulator `host:port`; default
    /// `PUBSUB_EMULATOR_HOST`, else Google's).
    #[arg(long, env = "MAESTRO_BROKER_URL")]
    pub broker_url: Option<String>,
    /// The project.
    #[command(flatten)]
    pub pubsub: PubSubArgs,
    /// The source whose subscriptions to create (`agentevents-<id>`, `agentbroadcast-<id>`).
    #[arg(long, env = "MAESTRO_SOURCE_ID", default_value = "maestro")]
    pub source_id: String,
    /// A consumer whose subscriptions to create (`sourceevents-<name>` with its clustername
    /// filter, `sourcebroadcast-<name>`); repeat or separate with commas.
    #[arg(long = "consumer", value_delimiter = ',')]
    pub consumers: Vec<String>,
}

/// Runs the parsed command.
///
/// # Errors
/// Whatever the command reports.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(a) => crate::server::run(server_settings(a)?).await,
        Command::Agent(a) => crate::agent::run(agent_settings(a)).await,
        Command::Migrate(a) => crate::server::migrate(&a.url()?).await,
        Command::Demo(a) => crate::demo::run(a).await,
        Command::Pubsub(PubSubCommand::Init(a)) => crate::pubsub::init(a).await,
        Command::DevCerts(a) => crate::dev_certs::run(&a),
    }
}

/// Refuses `--embedded-mqtt` with a broker other than MQTT, and warns about the broker
/// connection flags given with `--broker grpc`, which connects to no broker (the server hosts
/// the agents' endpoint itself).
fn check_broker_flags(a: &ServerArgs) -> anyhow::Result<()> {
    if a.embedded_mqtt.is_some() && a.broker != BrokerKind::Mqtt {
        anyhow::bail!("--embedded-mqtt needs --broker mqtt (the broker is {})", a.broker.as_str());
    }
    if a.broker == BrokerKind::Grpc {
        for (flag, set) in
            [("--broker-config", a.broker_config.is_some()), ("--broker-url", a.broker_url.is_some())]
        {
            if set {
                tracing::warn!(flag, "ignored with --broker grpc: the server hosts the agent broker itself");
            }
        }
    }
    Ok(())
}

fn server_settings(a: ServerArgs) -> anyhow::Result<ServerSettings> {
    check_broker_flags(&a)?;
    let instance = instance_config(&a)?;
    a.go.check()?;
    let heartbeat = Some(a.heartbeat_check_interval).filter(|d| !d.is_zero() && !a.heartbeat_disable);
    let host = a.server_hostname.as_deref();
    let http_addr = listen_addr(a.http_addr, host, a.enable_https, a.http_server_bindport)?;
    let grpc_addr = listen_addr(a.grpc_addr, host, a.grpc_tls_cert_file.is_some(), a.grpc_server_bindport)?;
    let broker_tls = a.grpc_broker_tls_cert_file.is_some();
    let grpc_broker_addr = listen_addr(a.grpc_broker_addr, host, broker_tls, a.grpc_broker_bindport)?;
    let metrics_addr = listen_addr(a.metrics_addr, host, false, a.metrics_server_bindport)?;
    let health_addr = listen_addr(a.health_addr, host, false, a.health_check_server_bindport)?;
    Ok(ServerSettings {
        db_url: a.db.url()?,
        metrics_addr: Some(metrics_addr),
        broker: SourceBrokerSettings {
            kind: a.broker,
            grpc_bind: grpc_broker_addr,
            heartbeat,
            config_file: a.broker_config,
            embedded_mqtt: a.embedded_mqtt,
            embedded_mqtt_password_file: a.embedded_mqtt_password_file,
            embedded_mqtt_engine: a.embedded_mqtt_engine,
            broker_url: a.broker_url,
            pubsub_project: a.pubsub.pubsub_project,
            source_id: a.source_id.clone(),
            client_id: a.client_id.clone().unwrap_or_else(|| instance.id.clone()),
            grpc_tls: tls_files(
                a.grpc_broker_tls_cert_file,
                a.grpc_broker_tls_key_file,
                a.grpc_broker_client_ca_file,
            ),
            grpc_gate: maestro_auth::Gate::open(),
        },
        server: maestro_server::ServerConfig {
            source_id: a.source_id,
            http_addr,
            grpc_addr,
            max_bundle_bytes: a.max_bundle_bytes,
            heartbeat,
            http_tls: https_files(
                a.enable_https,
                a.https_cert_file,
                a.https_key_file,
                a.security.https_client_ca_file.clone(),
            )?,
            grpc_tls: tls_files(a.grpc_tls_cert_file, a.grpc_tls_key_file, a.grpc_client_ca_file),
            rest_limits: maestro_server::rest::RestLimits {
                max_body_bytes: a.http_max_body_bytes as usize,
                header_read_timeout: Some(a.http_read_header_timeout).filter(|d| !d.is_zero()),
                idle_timeout: Some(a.http_idle_timeout).filter(|d| !d.is_zero()),
                request_timeout: Some(a.http_request_timeout).filter(|d| !d.is_zero()),
                max_concurrent_lists: usize::from(a.http_max_concurrent_lists),
            },
            grpc_limits: a.grpc_limits.source_grpc(),
            shutdown_timeout: a.shutdown_timeout,
            ingest: a.ingest.limits(),
            retention: a.ingest.retention(),
            instance,
            health_addr: Some(health_addr),
            subscription_type: match a.subscription_type {
                SubscriptionTypeArg::Shared => maestro_server::ownership::SubscriptionType::Shared,
                SubscriptionTypeArg::Broadcast => maestro_server::ownership::SubscriptionType::Broadcast,
            },
            ..Default::default()
        },
        security: a.security,
        grpc_broker: a.grpc_limits.broker(),
    })
}

/// `--subscription-type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SubscriptionTypeArg {
    /// Each instance handles what the broker hands it.
    Shared,
    /// Only a consumer's owner handles its events.
    Broadcast,
}

/// The instance registry settings: the id from `--instance-id`, `--client-id` or generated.
///
/// # Errors
/// An empty id, or a lease shorter than two heartbeats (one late renewal would lose it).
fn instance_config(a: &ServerArgs) -> anyhow::Result<maestro_server::instances::InstanceConfig> {
    let id = a.instance_id.clone().or_else(|| a.client_id.clone());
    let id = id.unwrap_or_else(maestro_server::instances::default_instance_id);
    anyhow::ensure!(!id.trim().is_empty(), "--instance-id must not be empty");
    let lease = a.instance_lease.unwrap_or(a.instance_heartbeat * 3);
    anyhow::ensure!(
        !a.instance_heartbeat.is_zero() && lease >= a.instance_heartbeat * 2,
        "--instance-lease ({lease:?}) must be at least twice --instance-heartbeat ({:?}), which must not be 0",
        a.instance_heartbeat
    );
    Ok(maestro_server::instances::InstanceConfig { id, heartbeat: a.instance_heartbeat, lease })
}

/// A listener's address: `explicit` when given, else `host` (or 127.0.0.1 without TLS,
/// 0.0.0.0 with TLS) and `port`.
///
/// # Errors
/// A `host` that does not resolve.
fn listen_addr(
    explicit: Option<SocketAddr>,
    host: Option<&str>,
    tls: bool,
    port: u16,
) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    if let Some(addr) = explicit {
        return Ok(addr);
    }
    // Go Maestro's chart passes `--server-hostname=` for every interface.
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        if host.is_some() {
            return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
        }
        let ip = if tls { [0, 0, 0, 0] } else { [127, 0, 0, 1] };
        return Ok(SocketAddr::from((ip, port)));
    };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("--server-hostname {host:?} does not resolve: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--server-hostname {host:?} resolves to no address"))
}

/// The REST TLS files when `--enable-https` is set (without it they are ignored, as in Go
/// Maestro).
///
/// # Errors
/// `--enable-https` without both files.
fn https_files(
    enabled: bool,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
    client_ca: Option<std::path::PathBuf>,
) -> anyhow::Result<Option<maestro_tls::ServerTlsFiles>> {
    match (enabled, cert, key) {
        (true, Some(cert), Some(key)) => Ok(Some(maestro_tls::ServerTlsFiles { cert, key, client_ca })),
        (true, ..) => anyhow::bail!("--enable-https needs --https-cert-file and --https-key-file"),
        (false, ..) => Ok(None),
    }
}

/// A gRPC listener's TLS files: TLS exactly when both the certificate and the key are given
/// (as Go Maestro; clap requires them together), client certificates when a CA is given.
fn tls_files(
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
    client_ca: Option<std::path::PathBuf>,
) -> Option<maestro_tls::ServerTlsFiles> {
    let (cert, key) = cert.zip(key)?;
    Some(maestro_tls::ServerTlsFiles { cert, key, client_ca })
}

fn agent_settings(a: AgentArgs) -> AgentSettings {
    a.go.check();
    AgentSettings {
        agent_id: a.agent_id.unwrap_or_else(|| format!("{}-work-agent", a.consumer_name)),
        consumer: a.consumer_name,
        broker: AgentBrokerSettings {
            kind: a.broker,
            config_file: a.broker_config,
            url: a.broker_url,
            pubsub_project: a.pubsub.pubsub_project,
        },
        cluster: a.cluster,
        simulated_journal: a.simulated_journal,
        clock_skew_ms: a.clock_skew_ms,
        status_sync_interval: a.status_sync_interval,
        shutdown_timeout: a.shutdown_timeout,
        accepted_sources: a.sources.source_ids,
        metrics_addr: a.metrics_addr,
        wipe_guard: a.wipe_guard,
    }
}

#[cfg(test)]
mod tests;
