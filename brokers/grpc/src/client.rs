//! The agent-side client ([`GrpcAgent`], the agent role): subscribes to the broker for its
//! consumer, delivers spec events in order, publishes status events (protocol.md §7.1.3,
//! reconnect rules §7.6).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use maestro_api::pb::cloud_event_service_client::CloudEventServiceClient;
use maestro_api::pb::{PublishRequest, SubscriptionRequest};
use maestro_api::types::{HEARTBEAT, MANIFEST_BUNDLES};
use maestro_api::{AttributesReader, Event, grpc};
use maestro_transport::deliver::{Backoff, Outcome, deliver};
use maestro_transport::{AgentTransport, DynHandler, Error, Result, Subscribed};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Streaming};

use crate::server::MESSAGE_OVERHEAD;
use crate::{BACKEND, GrpcAgentConfig, SUBSCRIPTION_ID_HEADER};

type Client = CloudEventServiceClient<Channel>;

struct Inner {
    config: GrpcAgentConfig,
    consumer: String,
    agent_id: String,
    endpoint: Endpoint,
    /// `Some` while subscribed (connected); publish uses it.
    client: Mutex<Option<Client>>,
    closed: AtomicBool,
    signal: watch::Sender<u64>,
}

impl Inner {
    fn client(&self) -> MutexGuard<'_, Option<Client>> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn backoff(&self, attempt: u32) -> Duration {
        Backoff { initial: self.config.reconnect_initial_backoff, max: self.config.reconnect_max_backoff }
            .jittered(attempt)
    }
}

/// The agent's gRPC transport: one Subscribe stream for its consumer, reconnecting with
/// backoff; `publish` sends status events with the Publish RPC.
pub struct GrpcAgent {
    inner: Arc<Inner>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for GrpcAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcAgent")
            .field("url", &self.inner.config.url)
            .field("consumer", &self.inner.consumer)
            .field("agent_id", &self.inner.agent_id)
            .finish_non_exhaustive()
    }
}

/// The tonic TLS settings of `config` (`caFile`, and `clientCertFile`/`clientKeyFile` for
/// mutual TLS); `None` for plaintext. Errors name a file that cannot be read.
fn client_tls(
    config: &GrpcAgentConfig,
) -> std::result::Result<Option<tonic::transport::ClientTlsConfig>, String> {
    let Some(ca) = config.ca_file.as_deref().filter(|s| !s.is_empty()) else { return Ok(None) };
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"));
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
    if let (Some(cert), Some(key)) = (&config.client_cert_file, &config.client_key_file) {
        tls = tls.identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

impl GrpcAgent {
    /// A client for `consumer` (the cluster name); `agent_id` names it in logs. Nothing is
    /// connected until [`AgentTransport::start`].
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad configuration (an unsupported field, a TLS file that
    /// cannot be read), an empty consumer, or an invalid `url`.
    pub fn new(config: GrpcAgentConfig, consumer: &str, agent_id: &str) -> Result<Arc<GrpcAgent>> {
        config.validate()?;
        let invalid = |reason: String| Error::InvalidConfig { backend: BACKEND, reason };
        if consumer.is_empty() {
            return Err(invalid("the consumer name is required".into()));
        }
        let mut endpoint = Endpoint::from_shared(config.endpoint_uri())
            .map_err(|e| invalid(format!("invalid url {:?}: {e}", config.url)))?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = client_tls(&config).map_err(invalid)? {
            endpoint = endpoint.tls_config(tls).map_err(|e| invalid(format!("TLS settings: {e}")))?;
        }
        let ka = &config.keep_alive_config;
        if ka.enable {
            endpoint = endpoint
                .http2_keep_alive_interval(ka.time)
                .keep_alive_timeout(ka.timeout)
                .keep_alive_while_idle(ka.permit_without_stream);
        }
        let (signal, _) = watch::channel(0);
        let inner = Inner {
            config,
            consumer: consumer.to_owned(),
            agent_id: agent_id.to_owned(),
            endpoint,
            client: Mutex::new(None),
            closed: AtomicBool::new(false),
            signal,
        };
        Ok(Arc::new(GrpcAgent { inner: Arc::new(inner), task: Mutex::new(None) }))
    }

    /// The agent id given to [`GrpcAgent::new`].
    pub fn agent_id(&self) -> &str {
        &self.inner.agent_id
    }

    /// True while a Subscribe stream is established.
    pub fn is_connected(&self) -> bool {
        self.inner.client().is_some()
    }

    fn task(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.task.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Maps a failed Publish RPC to a transport error: refusals of the event itself are final,
/// everything else (the broker or the connection failing) is retryable.
fn map_status(status: &tonic::Status) -> Error {
    let reason = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::ResourceExhausted
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::PermissionDenied
        | Code::Unauthenticated => Error::Rejected { backend: BACKEND, reason, retryable: false },
        Code::Unavailable => Error::Disconnected { backend: BACKEND },
        _ => Error::Rejected { backend: BACKEND, reason, retryable: true },
    }
}

/// Status publishes an agent keeps in flight on gRPC ([`AgentTransport::publish_concurrency`]).
pub(crate) const PUBLISH_CONCURRENCY: usize = 64;

#[async_trait]
impl AgentTransport for GrpcAgent {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    /// 64: each Publish RPC is handled on its own by the broker, so an agent's statuses reach
    /// the server's group commit together instead of one round trip (and commit) apart
    /// (docs/benchmarks.md: gRPC end to end ~750 → ~1,400 bundles/s with 16; 16 → 64 gave
    /// ~3,900 → ~4,200 with 10 agents). At most 64 status events (a few KB each) wait per agent.
    fn publish_concurrency(&self) -> usize {
        PUBLISH_CONCURRENCY
    }

    fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    /// Publishes with the Publish RPC, bounded by `publish_timeout`.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::TooLarge`] over `max_event_bytes`; [`Error::Disconnected`]
    /// at once while not subscribed or when the broker is unavailable; [`Error::Rejected`]
    /// (`retryable: false` for `InvalidArgument`/`FailedPrecondition`, `true` for timeouts
    /// and other failures).
    async fn publish(&self, event: &Event) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed { backend: BACKEND });
        }
        let size = maestro_transport::event_size(event);
        let limit = inner.config.max_event_bytes;
        if size > limit {
            return Err(Error::TooLarge { backend: BACKEND, size, limit });
        }
        let Some(mut client) = inner.client().clone() else {
            return Err(Error::Disconnected { backend: BACKEND });
        };
        let timeout = inner.config.publish_timeout;
        let mut request = tonic::Request::new(PublishRequest { event: Some(grpc::to_proto(event)) });
        request.set_timeout(timeout);
        match tokio::time::timeout(timeout, client.publish(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => {
                tracing::debug!(backend = BACKEND, id = event.id(), %status, "publish failed");
                Err(map_status(&status))
            }
            Err(_) => Err(Error::Rejected {
                backend: BACKEND,
                reason: format!("publish timed out after {timeout:?}"),
                retryable: true,
            }),
        }
    }

    async fn start(&self, handler: DynHandler) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed { backend: BACKEND });
        }
        let mut task = self.task();
        if task.is_some() {
            return Err(Error::AlreadyStarted { backend: BACKEND });
        }
        *task = Some(tokio::spawn(run(self.inner.clone(), handler)));
        Ok(())
    }

    fn subscribed(&self) -> Subscribed {
        self.inner.signal.subscribe()
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(task) = self.task().take() {
            task.abort();
        }
        *self.inner.client() = None;
        tracing::info!(backend = BACKEND, consumer = %self.inner.consumer, "gRPC agent closed");
    }
}

impl Drop for GrpcAgent {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Some(task) = self.task().take() {
            task.abort();
        }
    }
}

/// The connection loop: subscribe, read until the stream fails, back off, repeat.
async fn run(inner: Arc<Inner>, handler: DynHandler) {
    let mut attempt = 0u32;
    while !inner.closed.load(Ordering::Acquire) {
        match subscribe(&inner).await {
            Ok((client, stream, subscription_id)) => {
                attempt = 0;
                *inner.client() = Some(client);
                inner.signal.send_modify(|n| *n += 1);
                tracing::info!(backend = BACKEND, consumer = %inner.consumer, %subscription_id, "subscribed");
                let reason = read_stream(&inner, stream, &handler).await;
                *inner.client() = None;
                tracing::warn!(backend = BACKEND, consumer = %inner.consumer, %reason, "disconnected");
            }
            Err(reason) => {
                tracing::warn!(backend = BACKEND, consumer = %inner.consumer, %reason, attempt, "subscribe failed");
            }
        }
        if inner.closed.load(Ordering::Acquire) {
            break;
        }
        tokio::time::sleep(inner.backoff(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

/// Connects and subscribes; requires the `subscription-id` response header.
async fn subscribe(
    inner: &Inner,
) -> std::result::Result<(Client, Streaming<maestro_api::pb::CloudEvent>, String), String> {
    let limit = inner.config.max_event_bytes.saturating_add(MESSAGE_OVERHEAD);
    let attempt = async {
        let channel = inner.endpoint.connect().await.map_err(|e| format!("connect: {e}"))?;
        let mut client = CloudEventServiceClient::new(channel)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let request = SubscriptionRequest {
            source: String::new(),
            cluster_name: inner.consumer.clone(),
            data_type: MANIFEST_BUNDLES.to_owned(),
        };
        let response = client.subscribe(request).await.map_err(|s| format!("subscribe: {s}"))?;
        let subscription_id = response
            .metadata()
            .get(SUBSCRIPTION_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("the response has no {SUBSCRIPTION_ID_HEADER} header"))?;
        Ok((client, response.into_inner(), subscription_id))
    };
    match tokio::time::timeout(inner.config.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no subscribe response within {:?}", inner.config.connect_timeout)),
    }
}

/// Reads the stream until it ends, fails, or stays silent past the health timeout; returns
/// why it stopped.
async fn read_stream(
    inner: &Inner,
    mut stream: Streaming<maestro_api::pb::CloudEvent>,
    handler: &DynHandler,
) -> String {
    let health = inner.config.healthiness_timeout();
    loop {
        let next = match health {
            Some(t) => match tokio::time::timeout(t, stream.message()).await {
                Ok(next) => next,
                Err(_) => return format!("no message from the server for {t:?} (unhealthy)"),
            },
            None => stream.message().await,
        };
        let msg = match next {
            Ok(Some(msg)) => msg,
            Ok(None) => return "the server ended the stream".into(),
            Err(status) => return format!("stream error: {status}"),
        };
        if msg.r#type == HEARTBEAT {
            continue;
        }
        let event = match grpc::from_proto(msg) {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(backend = BACKEND, consumer = %inner.consumer, %error, "undecodable event skipped");
                continue;
            }
        };
        if deliver(handler, event, Backoff::default(), &inner.closed, BACKEND).await == Outcome::Closed {
            return "closed".into();
        }
    }
}
