//! The agent-side client ([`GrpcAgent`], the agent role): subscribes to the broker for its
//! consumer, delivers spec events in order, publishes status events (docs/protocol.md §7.1.3,
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
use maestro_transport::deliver::{DELIVERY_BACKOFF, Outcome, deliver};
use maestro_transport::retry::{CancellationToken, delays, exponential, pause};
use maestro_transport::{AgentTransport, DynHandler, Error, Result, Subscribed};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Streaming};

use crate::server::MESSAGE_OVERHEAD;
use crate::{BACKEND, GrpcAgentConfig, SUBSCRIPTION_ID_HEADER};
use maestro_transport::tasks::Tasks;

type Client = CloudEventServiceClient<Channel>;

#[cfg(test)]
use crate::bearer::AUTHORIZATION;
use crate::bearer::Bearer;

struct Inner {
    config: GrpcAgentConfig,
    consumer: String,
    agent_id: String,
    endpoint: Endpoint,
    bearer: Bearer,
    /// `Some` while subscribed (connected); publish uses it.
    client: Mutex<Option<Client>>,
    /// Cancelled by `close` (or drop): ends the connection loop and every wait in it.
    cancel: CancellationToken,
    signal: watch::Sender<u64>,
}

impl Inner {
    fn client(&self) -> MutexGuard<'_, Option<Client>> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The waits between Subscribe attempts, from the first (`reconnectInitialBackoff`,
    /// doubling to `reconnectMaxBackoff`, jittered).
    fn reconnect_delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let (initial, max) = (self.config.reconnect_initial_backoff, self.config.reconnect_max_backoff);
        delays(exponential(initial, max), max)
    }
}

/// The agent's gRPC transport: one Subscribe stream for its consumer, reconnecting with
/// backoff; `publish` sends status events with the Publish RPC.
pub struct GrpcAgent {
    inner: Arc<Inner>,
    /// The connection loop, once started.
    tasks: Tasks,
    started: AtomicBool,
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

/// A TLS file of the agent's configuration that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
struct TlsFileError {
    /// The file.
    path: String,
    /// The cause.
    #[source]
    source: std::io::Error,
}

/// The tonic TLS settings of `config` (`caFile`, and `clientCertFile`/`clientKeyFile` for
/// mutual TLS); `None` for plaintext. Errors name a file that cannot be read.
fn client_tls(
    config: &GrpcAgentConfig,
) -> std::result::Result<Option<tonic::transport::ClientTlsConfig>, TlsFileError> {
    let Some(ca) = config.ca_file.as_deref().filter(|s| !s.is_empty()) else { return Ok(None) };
    let read =
        |path: &str| std::fs::read(path).map_err(|source| TlsFileError { path: path.to_owned(), source });
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
    if let (Some(cert), Some(key)) = (&config.client_cert_file, &config.client_key_file) {
        tls = tls.identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

impl GrpcAgent {
    /// How long a token read from `tokenFile` is sent before the file is read again: 5 s (the
    /// period at which the server re-checks its TLS files too). The file is also re-read for
    /// every new connection (each Subscribe attempt) and after the broker answered a Publish
    /// with `Unauthenticated`; so a rotated token (e.g. a projected service-account token) is
    /// sent at most 5 s after the file changed, with no restart.
    pub const TOKEN_FILE_RECHECK: Duration = Duration::from_secs(5);

    /// A client for `consumer` (the cluster name); `agent_id` names it in logs. Nothing is
    /// connected until [`AgentTransport::start`]. With `token` or `tokenFile`, every RPC
    /// carries `authorization: Bearer <token>` metadata.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad configuration ([`GrpcAgentConfig::validate`]; a TLS
    /// file or `tokenFile` that cannot be read, an empty token), an empty consumer, or an
    /// invalid `url`.
    pub fn new(config: GrpcAgentConfig, consumer: &str, agent_id: &str) -> Result<Arc<GrpcAgent>> {
        Self::with_token_recheck(config, consumer, agent_id, Self::TOKEN_FILE_RECHECK)
    }

    /// [`GrpcAgent::new`] with another `tokenFile` re-check period (tests).
    fn with_token_recheck(
        config: GrpcAgentConfig,
        consumer: &str,
        agent_id: &str,
        recheck: Duration,
    ) -> Result<Arc<GrpcAgent>> {
        config.validate()?;
        if consumer.is_empty() {
            return Err(Error::invalid_config(BACKEND, "the consumer name is required"));
        }
        let mut endpoint = Endpoint::from_shared(config.endpoint_uri())
            .map_err(|e| {
                Error::invalid_config_from(BACKEND, format_args!("invalid url {:?}", config.url), e)
            })?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = client_tls(&config).map_err(invalid_because)? {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| Error::invalid_config_from(BACKEND, "TLS settings", e))?;
        }
        let ka = &config.keep_alive_config;
        if ka.enable {
            endpoint = endpoint
                .http2_keep_alive_interval(ka.time)
                .keep_alive_timeout(ka.timeout)
                .keep_alive_while_idle(ka.permit_without_stream);
        }
        let bearer = Bearer::from_config(&config, recheck).map_err(invalid_because)?;
        let (signal, _) = watch::channel(0);
        let inner = Inner {
            config,
            consumer: consumer.to_owned(),
            agent_id: agent_id.to_owned(),
            endpoint,
            bearer,
            client: Mutex::new(None),
            cancel: CancellationToken::new(),
            signal,
        };
        Ok(Arc::new(GrpcAgent {
            inner: Arc::new(inner),
            tasks: Tasks::default(),
            started: AtomicBool::new(false),
        }))
    }

    /// The agent id given to [`GrpcAgent::new`].
    pub fn agent_id(&self) -> &str {
        &self.inner.agent_id
    }

    /// True while a Subscribe stream is established.
    pub fn is_connected(&self) -> bool {
        self.inner.client().is_some()
    }
}

/// [`Error::InvalidConfig`] caused by `source`, whose message is the reason.
fn invalid_because(source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::InvalidConfig { backend: BACKEND, reason: source.to_string(), source: Some(Box::new(source)) }
}

/// Whether a Publish RPC that failed with `code` can succeed when sent again:
///
/// | code | retryable | why |
/// |---|---|---|
/// | `InvalidArgument`, `OutOfRange`, `FailedPrecondition` | no | the broker refuses the event itself (undecodable, wrong type, dropped by its handler) |
/// | `ResourceExhausted` | no | on a unary call the event exceeds the broker's message limit |
/// | `PermissionDenied`, `Unauthenticated` | no | this identity may not publish for the consumer |
/// | `NotFound`, `AlreadyExists`, `Unimplemented`, `DataLoss` | no | nothing changes by sending again |
/// | `Unavailable`, `DeadlineExceeded`, `Aborted`, `Internal`, `Unknown`, `Cancelled` | yes | the broker or the connection failed on the way |
pub(crate) fn status_is_retryable(code: Code) -> bool {
    match code {
        Code::InvalidArgument
        | Code::OutOfRange
        | Code::FailedPrecondition
        | Code::ResourceExhausted
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::NotFound
        | Code::AlreadyExists
        | Code::Unimplemented
        | Code::DataLoss => false,
        Code::Ok
        | Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled => true,
    }
}

/// Maps a failed Publish RPC to a transport error classified by [`status_is_retryable`],
/// with the status as its source; `Unavailable` is [`Error::Disconnected`].
pub(crate) fn map_status(status: tonic::Status) -> Error {
    let code = status.code();
    if code == Code::Unavailable {
        return Error::Disconnected { backend: BACKEND };
    }
    let reason = format!("{code:?}: {}", status.message());
    Error::Rejected {
        backend: BACKEND,
        reason,
        retryable: status_is_retryable(code),
        source: Some(Box::new(status)),
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
    /// with the status as its source, retryable as the status code says
    /// (`status_is_retryable`: e.g. not for `InvalidArgument`, `FailedPrecondition`,
    /// `PermissionDenied`), and retryable for a timeout.
    async fn publish(&self, event: &Event) -> Result<()> {
        let inner = &self.inner;
        if inner.cancel.is_cancelled() {
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
        inner.bearer.authorize(&mut request, false).await;
        match tokio::time::timeout(timeout, client.publish(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => {
                tracing::debug!(backend = BACKEND, id = event.id(), %status, "publish failed");
                if status.code() == Code::Unauthenticated {
                    inner.bearer.mark_stale();
                }
                Err(map_status(status))
            }
            Err(_) => Err(Error::rejected(BACKEND, format!("publish timed out after {timeout:?}"), true)),
        }
    }

    async fn start(&self, handler: DynHandler) -> Result<()> {
        if self.inner.cancel.is_cancelled() {
            return Err(Error::Closed { backend: BACKEND });
        }
        if self.started.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyStarted { backend: BACKEND });
        }
        self.tasks.spawn("subscribe loop", run(self.inner.clone(), handler));
        Ok(())
    }

    fn subscribed(&self) -> Subscribed {
        self.inner.signal.subscribe()
    }

    /// Cancels the connection loop (also a wait between attempts or a delivery in progress)
    /// and waits for it to end. Idempotent.
    async fn close(&self) {
        let first = !self.inner.cancel.is_cancelled();
        self.inner.cancel.cancel();
        *self.inner.client() = None;
        self.tasks.drain(BACKEND, "gRPC agent").await;
        if first {
            tracing::info!(backend = BACKEND, consumer = %self.inner.consumer, "gRPC agent closed");
        }
    }
}

impl Drop for GrpcAgent {
    /// Cancels the connection loop, which then ends by itself.
    fn drop(&mut self) {
        self.inner.cancel.cancel();
    }
}

/// The connection loop ([`connect_loop`]) until the agent is closed.
async fn run(inner: Arc<Inner>, handler: DynHandler) {
    inner.cancel.run_until_cancelled(connect_loop(&inner, &handler)).await;
    *inner.client() = None;
}

/// Subscribes, reads until the stream fails, waits the next reconnect delay (the delays start
/// over after every successful Subscribe), repeats; returns when cancelled during a wait.
async fn connect_loop(inner: &Inner, handler: &DynHandler) {
    let mut delays = inner.reconnect_delays();
    loop {
        match subscribe(inner).await {
            Ok((client, stream, subscription_id)) => {
                delays = inner.reconnect_delays();
                *inner.client() = Some(client);
                inner.signal.send_modify(|n| *n += 1);
                tracing::info!(backend = BACKEND, consumer = %inner.consumer, %subscription_id, "subscribed");
                let reason = read_stream(inner, stream, handler).await;
                *inner.client() = None;
                tracing::warn!(backend = BACKEND, consumer = %inner.consumer, %reason, "disconnected");
            }
            Err(reason) => {
                tracing::warn!(backend = BACKEND, consumer = %inner.consumer, %reason, "subscribe failed");
            }
        }
        let delay = delays.next().unwrap_or(inner.config.reconnect_max_backoff);
        tracing::debug!(backend = BACKEND, consumer = %inner.consumer, ?delay, "waiting before the next Subscribe");
        if !pause(delay, &inner.cancel).await {
            return;
        }
    }
}

/// Why a Subscribe attempt failed (logged before the next attempt; every failure is retried
/// with backoff).
#[derive(Debug, thiserror::Error)]
enum SubscribeError {
    /// The connection could not be established.
    #[error("connect: {0}")]
    Connect(#[source] tonic::transport::Error),
    /// The broker refused the Subscribe; the hint says why it passes later.
    #[error("subscribe: {status}{hint}")]
    Refused {
        /// The broker's status.
        #[source]
        status: tonic::Status,
        /// What the code means here (may be empty).
        hint: &'static str,
    },
    /// The response lacks the `subscription-id` header.
    #[error("the response has no {SUBSCRIPTION_ID_HEADER} header")]
    NoSubscriptionId,
    /// No response within `connectTimeout`.
    #[error("no subscribe response within {0:?}")]
    Timeout(Duration),
}

/// Connects and subscribes; requires the `subscription-id` response header.
async fn subscribe(
    inner: &Inner,
) -> std::result::Result<(Client, Streaming<maestro_api::pb::CloudEvent>, String), SubscribeError> {
    let limit = inner.config.max_event_bytes.saturating_add(MESSAGE_OVERHEAD);
    let attempt = async {
        let channel = inner.endpoint.connect().await.map_err(SubscribeError::Connect)?;
        let mut client = CloudEventServiceClient::new(channel)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let mut request = tonic::Request::new(SubscriptionRequest {
            source: String::new(),
            cluster_name: inner.consumer.clone(),
            data_type: MANIFEST_BUNDLES.to_owned(),
        });
        inner.bearer.authorize(&mut request, true).await;
        let response = client.subscribe(request).await.map_err(subscribe_refused)?;
        let subscription_id = response
            .metadata()
            .get(SUBSCRIPTION_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or(SubscribeError::NoSubscriptionId)?;
        Ok((client, response.into_inner(), subscription_id))
    };
    match tokio::time::timeout(inner.config.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(SubscribeError::Timeout(inner.config.connect_timeout)),
    }
}

/// Why a Subscribe was refused, for the log line before the next attempt. Every refusal is
/// retried with backoff: a consumer registered after its agent started (`NOT_FOUND`) and a
/// broker at its stream limit (`RESOURCE_EXHAUSTED`) both pass later (docs/security.md,
/// "Limits").
fn subscribe_refused(status: tonic::Status) -> SubscribeError {
    let hint = match status.code() {
        Code::NotFound => " (the consumer is not registered with the server yet; retrying)",
        Code::ResourceExhausted => " (the broker is at a stream limit; retrying)",
        _ => "",
    };
    SubscribeError::Refused { status, hint }
}

/// Why a Subscribe stream stopped (logged before reconnecting).
#[derive(Debug, thiserror::Error)]
enum StreamStop {
    /// No message (not even a heartbeat) within the health timeout.
    #[error("no message from the server for {0:?} (unhealthy)")]
    Silent(Duration),
    /// The server ended the stream.
    #[error("the server ended the stream")]
    Ended,
    /// The stream failed with a status.
    #[error("stream error: {0}")]
    Failed(#[source] tonic::Status),
    /// The transport was closed.
    #[error("closed")]
    Closed,
}

/// Reads the stream until it ends, fails, or stays silent past the health timeout; returns
/// why it stopped.
async fn read_stream(
    inner: &Inner,
    mut stream: Streaming<maestro_api::pb::CloudEvent>,
    handler: &DynHandler,
) -> StreamStop {
    let health = inner.config.healthiness_timeout();
    loop {
        let next = match health {
            Some(t) => match tokio::time::timeout(t, stream.message()).await {
                Ok(next) => next,
                Err(_) => return StreamStop::Silent(t),
            },
            None => stream.message().await,
        };
        let msg = match next {
            Ok(Some(msg)) => msg,
            Ok(None) => return StreamStop::Ended,
            Err(status) => return StreamStop::Failed(status),
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
        if deliver(handler, event, DELIVERY_BACKOFF, &inner.cancel, BACKEND).await == Outcome::Closed {
            return StreamStop::Closed;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;
    use std::time::Instant;

    use maestro_api::codec::SpecEventBuilder;
    use maestro_api::pb::CloudEvent;
    use maestro_api::pb::cloud_event_service_server::{CloudEventService, CloudEventServiceServer};
    use maestro_tls::testing::{TestPki, write_file, write_pair};
    use maestro_transport::{EventHandler, HandlerError};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
    use tonic::{Request, Response, Status};

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    async fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What the fake broker saw: the `authorization` metadata of every RPC.
    #[derive(Default)]
    struct Seen {
        subscribes: Vec<Option<String>>,
        publishes: Vec<Option<String>>,
        /// Publishes carrying this header value are answered `Unauthenticated`.
        refuse: Option<String>,
        /// The open Subscribe stream; dropping it ends the stream.
        stream: Option<mpsc::Sender<std::result::Result<CloudEvent, Status>>>,
    }

    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<Seen>>);

    impl Fake {
        fn seen(&self) -> MutexGuard<'_, Seen> {
            self.0.lock().unwrap()
        }
    }

    fn auth<T>(request: &Request<T>) -> Option<String> {
        request.metadata().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    #[tonic::async_trait]
    impl CloudEventService for Fake {
        type SubscribeStream = ReceiverStream<std::result::Result<CloudEvent, Status>>;

        async fn subscribe(
            &self,
            request: Request<SubscriptionRequest>,
        ) -> std::result::Result<Response<Self::SubscribeStream>, Status> {
            let (tx, rx) = mpsc::channel(4);
            let mut seen = self.seen();
            seen.subscribes.push(auth(&request));
            seen.stream = Some(tx);
            let mut response = Response::new(ReceiverStream::new(rx));
            response.metadata_mut().insert(SUBSCRIPTION_ID_HEADER, "sub-1".parse().unwrap());
            Ok(response)
        }

        async fn publish(
            &self,
            request: Request<PublishRequest>,
        ) -> std::result::Result<Response<()>, Status> {
            let mut seen = self.seen();
            let header = auth(&request);
            seen.publishes.push(header.clone());
            if header.is_some() && header == seen.refuse {
                return Err(Status::unauthenticated("token expired"));
            }
            Ok(Response::new(()))
        }
    }

    struct Ignore;

    #[async_trait]
    impl EventHandler for Ignore {
        async fn handle(&self, _: &Event) -> std::result::Result<(), HandlerError> {
            Ok(())
        }
    }

    /// A TLS fake broker on 127.0.0.1:0 (certificate for `localhost`); returns the agent config
    /// for it (`caFile` set, fast reconnects).
    async fn serve(fake: Fake, dir: &Path) -> GrpcAgentConfig {
        let pki = TestPki::new();
        let (cert, key) = pki.server(&["localhost"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key));
        let mut server = tonic::transport::Server::builder().tls_config(tls).unwrap();
        tokio::spawn(
            server
                .add_service(CloudEventServiceServer::new(fake))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let mut config = GrpcAgentConfig::new(format!("localhost:{port}"));
        config.ca_file = Some(pki.write_ca(dir).display().to_string());
        config.reconnect_initial_backoff = Duration::from_millis(10);
        config.reconnect_max_backoff = Duration::from_millis(50);
        config
    }

    fn event() -> Event {
        SpecEventBuilder::new("c1-agent", "r1", 1, "c1").build()
    }

    /// Replaces `path` atomically (write + rename, like a Kubernetes projected volume).
    fn rotate(dir: &Path, path: &Path, token: &str) {
        let next = write_file(dir, "token.next", token);
        std::fs::rename(next, path).unwrap();
    }

    #[tokio::test]
    async fn token_goes_on_subscribe_and_publish() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::default();
        let mut config = serve(fake.clone(), dir.path()).await;
        config.token = Some("  tok-static\n".into());
        let agent = GrpcAgent::new(config, "c1", "c1-agent").unwrap();
        agent.start(Arc::new(Ignore)).await.unwrap();
        wait_until("subscribed", || agent.is_connected()).await;
        agent.publish(&event()).await.unwrap();
        let want = [Some("Bearer tok-static".to_owned())];
        assert_eq!(fake.seen().subscribes, want);
        assert_eq!(fake.seen().publishes, want);
        agent.close().await;
    }

    /// A rotated `tokenFile` is sent after a refused publish and on the next connection, even
    /// with a re-check period far longer than the test.
    #[tokio::test]
    async fn rotated_token_file_is_sent_after_unauthenticated_and_on_reconnect() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::default();
        let mut config = serve(fake.clone(), dir.path()).await;
        let path = write_file(dir.path(), "token", "tok-a\n");
        config.token_file = Some(path.display().to_string());
        let agent =
            GrpcAgent::with_token_recheck(config, "c1", "c1-agent", Duration::from_secs(3600)).unwrap();
        agent.start(Arc::new(Ignore)).await.unwrap();
        wait_until("subscribed", || agent.is_connected()).await;
        rotate(dir.path(), &path, "tok-b");
        agent.publish(&event()).await.unwrap();
        fake.seen().refuse = Some("Bearer tok-a".into());
        assert!(agent.publish(&event()).await.is_err(), "the old token is refused");
        agent.publish(&event()).await.unwrap();
        let bearer = |t: &str| Some(format!("Bearer {t}"));
        assert_eq!(fake.seen().publishes, [bearer("tok-a"), bearer("tok-a"), bearer("tok-b")]);
        rotate(dir.path(), &path, "tok-c");
        fake.seen().stream = None; // the broker ends the stream: the agent reconnects
        wait_until("resubscribed with the new token", || fake.seen().subscribes.contains(&bearer("tok-c")))
            .await;
        assert_eq!(fake.seen().subscribes[0], bearer("tok-a"));
        agent.close().await;
    }

    /// With a short re-check period a rotated file is picked up by publishes alone; a file that
    /// disappears keeps the last token.
    #[tokio::test]
    async fn token_file_is_rechecked_periodically() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Fake::default();
        let mut config = serve(fake.clone(), dir.path()).await;
        let path = write_file(dir.path(), "token", "tok-1");
        config.token_file = Some(path.display().to_string());
        let agent =
            GrpcAgent::with_token_recheck(config, "c1", "c1-agent", Duration::from_millis(20)).unwrap();
        agent.start(Arc::new(Ignore)).await.unwrap();
        wait_until("subscribed", || agent.is_connected()).await;
        rotate(dir.path(), &path, "tok-2");
        let start = Instant::now();
        loop {
            agent.publish(&event()).await.unwrap();
            if fake.seen().publishes.last() == Some(&Some("Bearer tok-2".into())) {
                break;
            }
            assert!(start.elapsed() < DEADLINE, "the rotated token was never sent");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        std::fs::remove_file(&path).unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await; // past the re-check period
        agent.publish(&event()).await.unwrap();
        assert_eq!(fake.seen().publishes.last(), Some(&Some("Bearer tok-2".into())));
        agent.close().await;
    }

    /// A port on 127.0.0.1 where nothing listens (bound, then released).
    fn dead_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    /// `close` interrupts the wait between Subscribe attempts: with a 1 h reconnect backoff and
    /// nothing listening, the agent is waiting out its first delay when `close` is called;
    /// `close` returns in time and the connection loop has ended (not merely the drain timing
    /// out, which would log that tasks did not finish).
    #[tokio::test]
    async fn close_interrupts_the_reconnect_backoff() {
        let (logs, _capture) = maestro_transport::test_logs::Logs::capture();
        let mut config = GrpcAgentConfig::new(format!("127.0.0.1:{}", dead_port()));
        config.reconnect_initial_backoff = Duration::from_secs(3600);
        config.reconnect_max_backoff = Duration::from_secs(3600);
        let agent = GrpcAgent::new(config, "c1", "c1-agent").unwrap();
        agent.start(Arc::new(Ignore)).await.unwrap();
        logs.wait_for("waiting before the next Subscribe").await;
        assert!(logs.contains("subscribe failed"), "the first attempt failed");
        tokio::time::timeout(DEADLINE, agent.close()).await.expect("close returns during the backoff");
        assert_eq!(agent.tasks.len(), 0, "the connection loop ended");
        assert!(!logs.contains("did not finish"), "close waited for nothing");
        assert!(matches!(agent.publish(&event()).await, Err(Error::Closed { .. })));
    }

    /// Publish refusals that cannot pass later are permanent, with the status as the source;
    /// failures on the way are retryable; `Unavailable` is `Disconnected`.
    #[test]
    fn publish_statuses_are_classified_by_code() {
        for code in [
            Code::InvalidArgument,
            Code::OutOfRange,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::NotFound,
            Code::AlreadyExists,
            Code::Unimplemented,
            Code::DataLoss,
        ] {
            let err = map_status(Status::new(code, "refused"));
            assert!(!err.is_retryable(), "{code:?} must be permanent: {err}");
            assert!(matches!(err, Error::Rejected { .. }), "{err}");
            let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<Status>());
            assert_eq!(source.map(Status::code), Some(code), "the status is kept as the source");
        }
        for code in [Code::DeadlineExceeded, Code::Aborted, Code::Internal, Code::Unknown, Code::Cancelled] {
            let err = map_status(Status::new(code, "on the way"));
            assert!(err.is_retryable() && matches!(err, Error::Rejected { .. }), "{code:?}: {err}");
        }
        let err = map_status(Status::unavailable("down"));
        assert!(matches!(err, Error::Disconnected { .. }) && err.is_retryable(), "{err}");
    }

    #[test]
    fn token_configuration_errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new();
        let ca = pki.write_ca(dir.path()).display().to_string();
        let (cert, key) = write_pair(dir.path(), "me", &pki.client("c1", &[]));
        let err = |config: GrpcAgentConfig| GrpcAgent::new(config, "c1", "a").unwrap_err().to_string();

        let mut both = GrpcAgentConfig::new("localhost:1");
        both.ca_file = Some(ca.clone());
        both.token = Some("t".into());
        both.client_cert_file = Some(cert.display().to_string());
        both.client_key_file = Some(key.display().to_string());
        assert!(err(both).contains("mutually exclusive"));

        let mut plain = GrpcAgentConfig::new("localhost:1");
        plain.token = Some("t".into());
        assert!(err(plain).contains("needs caFile"));

        let mut missing = GrpcAgentConfig::new("localhost:1");
        missing.ca_file = Some(ca.clone());
        missing.token_file = Some(dir.path().join("nope").display().to_string());
        let e = err(missing);
        assert!(e.contains("cannot read tokenFile") && e.contains("nope"), "{e}");

        let mut empty = GrpcAgentConfig::new("localhost:1");
        empty.ca_file = Some(ca.clone());
        empty.token_file = Some(write_file(dir.path(), "empty", " \n").display().to_string());
        assert!(err(empty).contains("empty"));

        let mut bad = GrpcAgentConfig::new("localhost:1");
        bad.ca_file = Some(ca);
        bad.token = Some("s3cr\nt".into());
        let e = err(bad);
        assert!(e.contains("not allowed") && !e.contains("s3cr"), "{e}");
    }
}
