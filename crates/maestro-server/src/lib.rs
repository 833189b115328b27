//! # maestro-server: the Maestro control-plane server
//!
//! Stores resource bundles, delivers them to agents through a broker, and streams their
//! status back to sources (docs/architecture.md §5, §7).
//!
//! Module map:
//! - [`rest`]: the REST API (axum) on `/api/maestro/v1`, plus `/healthz` and `/readyz`;
//! - [`source_grpc`]: the source-facing `CloudEventService` (Publish specs, Subscribe to
//!   statuses);
//! - [`spec`]: source spec writes and the spec events sent to agents;
//! - [`dispatch`]: the outbox dispatcher (spec events to agents);
//! - [`ingest`]: agent events (status updates, spec resync requests);
//! - [`hub`]: status fan-out to gRPC source subscribers;
//! - [`resync`]: status resync requests after every broker (re)subscription;
//! - [`error`]: [`error::ServiceError`] and its REST / gRPC mappings;
//! - [`tls_listener`]: the REST listener with TLS (`--enable-https`).
//!
//! The server never names a broker backend: it holds the `SourceTransport` trait object the
//! binary built.

pub mod dispatch;
pub mod error;
pub mod hub;
pub mod ingest;
pub mod instances;
pub mod metrics;
pub mod ops;
pub mod ownership;
pub mod registered;
pub mod rest;
pub mod resync;
mod resync_reads;
pub mod retention;
pub mod source_grpc;
pub mod spec;
mod spec_merge;
pub mod spec_resync;
pub mod tls_listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use maestro_api::pb::cloud_event_service_server::CloudEventServiceServer;
use maestro_store::DynStore;
use maestro_transport::DynSourceTransport;
use maestro_transport::retry::{CancellationToken, DropGuard, TaskTracker};
use tokio::net::TcpListener;

/// Server settings. Defaults follow Go Maestro (docs/protocol.md §12.1).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Source id stamped on spec events sent to agents (default `maestro`).
    pub source_id: String,
    /// REST listen address (default `0.0.0.0:8000`).
    pub http_addr: SocketAddr,
    /// Source gRPC listen address (default `0.0.0.0:8090`).
    pub grpc_addr: SocketAddr,
    /// Largest accepted bundle: total manifest bytes (default 500 KiB, the agent's limit).
    pub max_bundle_bytes: usize,
    /// Heartbeat period on source Subscribe streams (default 10 s; `None` disables).
    pub heartbeat: Option<Duration>,
    /// Dispatcher settings.
    pub dispatch: dispatch::DispatchConfig,
    /// Retention of done spec outbox rows, fanned-out status events and dead letters.
    pub retention: retention::RetentionConfig,
    /// Limits on what agents may ask through the broker (spec resync requests, status retries).
    pub ingest: ingest::IngestLimits,
    /// Serve REST over TLS with this certificate and key (Go's `--enable-https`,
    /// `--https-cert-file`, `--https-key-file`), reloaded when the files change; `None` serves
    /// plain HTTP.
    pub http_tls: Option<maestro_tls::ServerTlsFiles>,
    /// Serve the source gRPC API over TLS with this certificate and key (Go's
    /// `--grpc-tls-cert-file`, `--grpc-tls-key-file`), reloaded when the files change; with a
    /// client CA (`--grpc-client-ca-file`) every source must present a certificate it signed
    /// (mutual TLS). `None` serves plain gRPC.
    pub grpc_tls: Option<maestro_tls::ServerTlsFiles>,
    /// Authenticates and authorizes REST callers (docs/security.md, "REST"); open by default.
    pub http_gate: maestro_auth::Gate,
    /// Authenticates and authorizes source gRPC callers (docs/security.md, "Source gRPC");
    /// open by default.
    pub grpc_gate: maestro_auth::Gate,
    /// Limits of the REST API: body size, header read, idle and request timeouts, concurrent
    /// lists (docs/rest.md, "Limits").
    pub rest_limits: rest::RestLimits,
    /// Limits of the source gRPC API: Subscribe streams per source and in total, and the
    /// listener's connection settings (docs/security.md, "Limits").
    pub grpc_limits: source_grpc::SourceGrpcLimits,
    /// How long [`RunningServer::shutdown`] waits for in-flight work to drain (REST requests,
    /// spec deliveries, status writes) before it gives up on it (default 20 s, under
    /// Kubernetes' default 30 s termination grace period).
    pub shutdown_timeout: Duration,
    /// This server's id, heartbeat and lease in the instance registry (docs/architecture.md
    /// §9).
    pub instance: instances::InstanceConfig,
    /// How the instances share the agents' events (`--subscription-type`).
    pub subscription_type: ownership::SubscriptionType,
    /// The Prometheus metrics listener (Go's `--metrics-server-bindport`, 8080): its address
    /// and the handle of the installed recorder ([`metrics::install`]); `None`: no listener.
    pub metrics: Option<(SocketAddr, metrics_exporter_prometheus::PrometheusHandle)>,
    /// The health listener (Go's `--health-check-server-bindport`, 8083: `/healthcheck`,
    /// `/livez`, `/healthz`, `/readyz`); `None`: none (REST still answers `/healthz` and
    /// `/readyz`).
    pub health_addr: Option<SocketAddr>,
    /// The registered-consumer snapshot the server checks spec resync requests against
    /// ([`registered::RegisteredConsumers`]), to share with the gRPC agent broker's Subscribe
    /// check; `None`: the server makes its own over its store.
    pub consumers: Option<Arc<registered::RegisteredConsumers>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            source_id: "maestro".into(),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8000)),
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 8090)),
            max_bundle_bytes: maestro_api::validate::MAX_BUNDLE_BYTES,
            heartbeat: Some(Duration::from_secs(10)),
            dispatch: dispatch::DispatchConfig::default(),
            retention: retention::RetentionConfig::default(),
            ingest: ingest::IngestLimits::default(),
            http_tls: None,
            grpc_tls: None,
            http_gate: maestro_auth::Gate::open(),
            grpc_gate: maestro_auth::Gate::open(),
            rest_limits: rest::RestLimits::default(),
            grpc_limits: source_grpc::SourceGrpcLimits::default(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            instance: instances::InstanceConfig::default(),
            subscription_type: ownership::SubscriptionType::Shared,
            metrics: None,
            health_addr: None,
            consumers: None,
        }
    }
}

/// [`ServerConfig::shutdown_timeout`]'s default: 20 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// A server start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The broker transport could not start.
    #[error("broker: {0}")]
    Transport(#[from] maestro_transport::Error),
    /// The REST listener's certificate or key could not be loaded.
    #[error("REST TLS: {0}")]
    Tls(#[from] maestro_tls::TlsError),
    /// The source gRPC listener's certificate, key or client CA could not be loaded.
    #[error("source gRPC TLS: {0}")]
    GrpcTls(#[source] maestro_tls::TlsError),
    /// Joining the server instance registry failed (docs/architecture.md §9).
    #[error("server instance registry: {0}")]
    Registry(#[source] maestro_store::StoreError),
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound REST address.
    pub http_addr: SocketAddr,
    /// The bound source gRPC address.
    pub grpc_addr: SocketAddr,
    /// The bound metrics address, when [`ServerConfig::metrics`] asked for one.
    pub metrics_addr: Option<SocketAddr>,
    /// The bound health address, when [`ServerConfig::health_addr`] asked for one.
    pub health_addr: Option<SocketAddr>,
    /// Cancels every task of the server when dropped (also without [`RunningServer::shutdown`]).
    cancel: DropGuard,
    tasks: TaskTracker,
    shutdown_timeout: Duration,
    transport: DynSourceTransport,
    store: DynStore,
    /// Kept alive until the server has stopped ([`RunningServer::hold`]).
    held: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl RunningServer {
    /// Keeps `guard` alive as long as the server: it is dropped at the end of
    /// [`RunningServer::shutdown`] (after the transport closed), or with the server. For what
    /// the server's process holds on its behalf, e.g. the lock that keeps a second server off
    /// a SQLite file.
    pub fn hold(&mut self, guard: impl std::any::Any + Send + Sync) {
        self.held.push(Box::new(guard));
    }

    /// Graceful shutdown: stops accepting REST and gRPC connections and ends source Subscribe
    /// streams, lets the requests, spec deliveries and status writes in flight finish, waiting
    /// at most [`ServerConfig::shutdown_timeout`] for them (then logs what was left and
    /// returns), leaves the instance registry (releasing its outbox claims, so other
    /// instances take over at once) and closes the broker transport.
    pub async fn shutdown(self) {
        let RunningServer { cancel, tasks, shutdown_timeout, transport, store, held, .. } = self;
        drop(cancel);
        tasks.close();
        if tokio::time::timeout(shutdown_timeout, tasks.wait()).await.is_err() {
            tracing::warn!(
                tasks = tasks.len(),
                timeout = ?shutdown_timeout,
                "shutdown: tasks still running after the shutdown timeout; abandoning them"
            );
        }
        instances::leave(&store).await;
        transport.close().await;
        drop(held);
        tracing::info!("maestro server stopped");
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
}

/// Starts the server: binds REST and source gRPC, starts the transport with the status
/// ingestion handler, the spec dispatcher and the status fan-out.
///
/// # Errors
/// [`ServerError::Bind`] when a port is taken; [`ServerError::Tls`] when the REST certificate
/// or key cannot be read or do not match; [`ServerError::Transport`] when the broker transport
/// cannot start.
pub async fn start(
    config: ServerConfig,
    store: DynStore,
    transport: DynSourceTransport,
) -> Result<RunningServer, ServerError> {
    let http_tls = reloading(config.http_tls.as_ref()).await?;
    let grpc_tls = reloading(config.grpc_tls.as_ref()).await.map_err(ServerError::GrpcTls)?;
    let Listeners { http, grpc, metrics: metrics_listener, health } = Listeners::bind(&config).await?;
    let (http_addr, grpc_addr) = (local(&http, config.http_addr), local(&grpc, config.grpc_addr));
    let (cancel, tasks) = (CancellationToken::new(), TaskTracker::new());
    let fanout = hub::Fanout::prepare(&store).await;
    let cursor = fanout.cursor();
    instances::join(&store, &config.instance, cursor.load(std::sync::atomic::Ordering::Acquire))
        .await
        .map_err(ServerError::Registry)?;
    let lease = ops::LeaseClock::new(config.instance.lease);
    let holders = (store.is_shared() && transport.capabilities().server_hosts_agents)
        .then(instances::AgentHolders::default);
    let (membership, live) = ownership::Membership::new(&config.instance.id);
    let owner_only =
        (config.subscription_type == ownership::SubscriptionType::Broadcast).then(|| membership.clone());
    // Taken before the transport starts: a receiver taken later does not see a subscription
    // made meanwhile as a change, and the status resync at start would never go out.
    let subscribed = transport.subscribed();
    transport
        .start(ingest::Ingest::for_instance(
            store.clone(),
            transport.clone(),
            &config.source_id,
            config.ingest,
            holders.clone(),
            owner_only,
            config
                .consumers
                .clone()
                .unwrap_or_else(|| Arc::new(registered::RegisteredConsumers::new(store.clone()))),
        ))
        .await?;
    let hub = hub::StatusHub::new(4096);
    let svc = source_grpc::SourceService::new(
        store.clone(),
        hub.clone(),
        spec::SpecLimits {
            max_bundle_bytes: config.max_bundle_bytes,
            max_event_bytes: transport.max_event_bytes(),
        },
        config.heartbeat,
        config.grpc_gate.clone(),
    );
    let c = &cancel;
    let background =
        Background { store: &store, transport: &transport, config: &config, tasks: &tasks, cancel: c };
    background.spawn(fanout.run(
        store.clone(),
        hub,
        (config.retention.status_events_prune_every, membership.clone()),
        c.clone(),
    ));
    let holders = holders.unwrap_or_default();
    background.spawn_loops(&membership, subscribed, (cursor, holders, live, lease.clone()));
    let readiness = ops::Readiness::new(store.clone(), transport.subscribed(), lease);
    let (metrics_addr, health_addr) = serve_ops(&tasks, metrics_listener, health, &readiness, c);
    tasks.spawn(ops::gauges(store.clone(), transport.clone(), membership, c.clone()));
    let app = rest::router(
        rest::RestState::new(store.clone(), transport.clone(), &config.rest_limits, readiness),
        config.http_gate.clone(),
    );
    tasks.spawn(serve_rest(http, http_tls, app, config.rest_limits.clone(), c.clone()));
    let svc = svc.with_shutdown(c.clone(), tasks.clone());
    tasks.spawn(serve_grpc(grpc, grpc_tls, svc, config.grpc_limits.clone(), c.clone()));
    let https = config.http_tls.is_some();
    warn_if_exposed("REST", http_addr, https, &config.http_gate);
    warn_if_exposed("source gRPC", grpc_addr, config.grpc_tls.is_some(), &config.grpc_gate);
    tracing::info!(%http_addr, https, %grpc_addr, backend = transport.backend(), source_id = %config.source_id, "maestro server started");
    let (cancel, shutdown_timeout) = (cancel.drop_guard(), config.shutdown_timeout);
    Ok(RunningServer {
        http_addr,
        grpc_addr,
        metrics_addr,
        health_addr,
        cancel,
        tasks,
        shutdown_timeout,
        transport,
        store,
        held: Vec::new(),
    })
}

/// The listeners of a server, bound before anything starts so a taken port fails the start.
struct Listeners {
    http: TcpListener,
    grpc: TcpListener,
    metrics: Option<(TcpListener, metrics_exporter_prometheus::PrometheusHandle)>,
    health: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `config`.
    async fn bind(config: &ServerConfig) -> Result<Self, ServerError> {
        let (http, grpc) = (bind(config.http_addr).await?, bind(config.grpc_addr).await?);
        let metrics = match &config.metrics {
            Some((addr, handle)) => Some((bind(*addr).await?, handle.clone())),
            None => None,
        };
        let health = match config.health_addr {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Listeners { http, grpc, metrics, health })
    }
}

/// What the server's background loops share.
struct Background<'a> {
    store: &'a DynStore,
    transport: &'a DynSourceTransport,
    config: &'a ServerConfig,
    tasks: &'a TaskTracker,
    cancel: &'a CancellationToken,
}

impl Background<'_> {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Spawns the dispatcher, the instance heartbeat, retention and resync.
    fn spawn_loops(
        &self,
        membership: &ownership::Membership,
        subscribed: maestro_transport::Subscribed,
        (cursor, holders, live, lease): (
            std::sync::Arc<std::sync::atomic::AtomicI64>,
            instances::AgentHolders,
            tokio::sync::watch::Sender<std::sync::Arc<Vec<String>>>,
            ops::LeaseClock,
        ),
    ) {
        let (store, transport, config, c) = (self.store, self.transport, self.config, self.cancel);
        let source_id = config.source_id.clone();
        self.spawn(dispatch::run(
            store.clone(),
            transport.clone(),
            source_id.clone(),
            config.dispatch.clone(),
            c.clone(),
        ));
        let instance = config.instance.clone();
        self.spawn(instances::run(
            store.clone(),
            transport.clone(),
            instance,
            cursor,
            holders,
            (live, lease),
            c.clone(),
        ));
        self.spawn(retention::run(store.clone(), config.retention, membership.clone(), c.clone()));
        let (store, transport) = (store.clone(), transport.clone());
        self.spawn(resync::run(store, transport, subscribed, source_id, membership.clone(), c.clone()));
    }
}

/// Starts the metrics and health listeners that were bound; returns their addresses.
fn serve_ops(
    tasks: &TaskTracker,
    metrics: Option<(TcpListener, metrics_exporter_prometheus::PrometheusHandle)>,
    health: Option<TcpListener>,
    readiness: &ops::Readiness,
    cancel: &CancellationToken,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let metrics_addr = metrics.map(|(listener, handle)| {
        let addr = listener.local_addr().ok();
        tasks.spawn(ops::serve(listener, ops::metrics_router(handle), cancel.clone()));
        addr
    });
    let health_addr = health.map(|listener| {
        let addr = listener.local_addr().ok();
        tasks.spawn(ops::serve(listener, ops::health_router(readiness.clone()), cancel.clone()));
        addr
    });
    (metrics_addr.flatten(), health_addr.flatten())
}

/// Logs a loud warning when a listener reachable from other hosts runs without TLS or without
/// authentication (docs/security.md, "Insecure modes").
pub fn warn_if_exposed(listener: &str, addr: SocketAddr, tls: bool, gate: &maestro_auth::Gate) {
    if addr.ip().is_loopback() {
        return;
    }
    if !tls {
        tracing::warn!(listener, %addr, "INSECURE: {listener} is served WITHOUT TLS on a non-loopback address: anyone on the network reads its traffic in clear text; configure its certificate and key (docs/security.md)");
    }
    if gate.is_open() {
        tracing::warn!(listener, %addr, "INSECURE: {listener} authenticates NOBODY on a non-loopback address: anyone who reaches it may read and change every resource bundle; set its authentication type to mtls or token (docs/security.md)");
    }
}

/// A reloading TLS identity for `files`: client certificates required when a client CA is
/// given (mutual TLS), else none asked for.
async fn reloading(
    files: Option<&maestro_tls::ServerTlsFiles>,
) -> Result<Option<maestro_tls::ReloadingServerTls>, maestro_tls::TlsError> {
    let Some(files) = files else { return Ok(None) };
    let auth = maestro_tls::ClientAuth::Required;
    Ok(Some(maestro_tls::ReloadingServerTls::start(files.clone(), auth, maestro_tls::RELOAD_INTERVAL).await?))
}

fn local(l: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    l.local_addr().unwrap_or(fallback)
}

/// Serves the REST API on `listener` (with TLS when `tls` is given) under `limits`' connection
/// timeouts ([`rest::serve`]) until shutdown.
async fn serve_rest(
    listener: TcpListener,
    tls: Option<maestro_tls::ReloadingServerTls>,
    app: axum::Router,
    limits: rest::RestLimits,
    cancel: CancellationToken,
) {
    // `tls` lives until serving ends: dropping it would stop its certificate file checks.
    match &tls {
        // The TLS listener sets TCP_NODELAY on every connection too.
        Some(tls) => {
            let config = tls.server_config_with_alpn(&[b"h2", b"http/1.1"]);
            let listener = tls_listener::TlsListener::new(listener, config);
            rest::serve::serve(listener, app, &limits, rest::serve::tls_peer, cancel).await;
        }
        None => {
            // Without TCP_NODELAY the last segment of a response can wait for the client's
            // delayed ACK (40 ms on Linux).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "setting TCP_NODELAY on a REST connection failed");
                }
            });
            rest::serve::serve(listener, app, &limits, |_, _| None, cancel).await;
        }
    }
}

/// Serves the source gRPC API on `listener` (with TLS when `tls` is given) under `limits`
/// (docs/security.md, "Limits") until shutdown.
async fn serve_grpc(
    listener: TcpListener,
    tls: Option<maestro_tls::ReloadingServerTls>,
    svc: source_grpc::SourceService,
    limits: source_grpc::SourceGrpcLimits,
    cancel: CancellationToken,
) {
    use futures::StreamExt;
    use maestro_tls::grpc_listener::HandshakeDeadline;
    let svc = svc.with_subscription_limits(&limits);
    let service = CloudEventServiceServer::new(svc)
        .max_decoding_message_size(limits.listener.max_receive_message_bytes);
    let server = limits.listener.server_builder().add_service(service);
    let deadline = limits.listener.handshake_timeout();
    let res = match &tls {
        // The TLS listener sets TCP_NODELAY on every connection too.
        Some(tls) => {
            let listener = tls_listener::TlsListener::new(listener, tls.server_config_with_alpn(&[b"h2"]));
            let incoming = listener
                .into_incoming()
                .map(move |c| c.map(|io| HandshakeDeadline::new("source-grpc", io, deadline)));
            server.serve_with_incoming_shutdown(incoming, cancel.cancelled_owned()).await
        }
        None => {
            // TCP_NODELAY: with Nagle's algorithm a status pushed to a subscribed source waits
            // for the source's delayed ACK (40 ms on Linux) whenever an earlier one is
            // unacknowledged, so the last statuses of a burst arrived ~40 ms late.
            let incoming = tonic::transport::server::TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .map(move |c| c.map(|io| HandshakeDeadline::new("source-grpc", io, deadline)));
            server.serve_with_incoming_shutdown(incoming, cancel.cancelled_owned()).await
        }
    };
    if let Err(e) = res {
        tracing::error!(error = %e, "source gRPC server failed");
    }
}
