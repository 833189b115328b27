//! What the operations endpoints report (docs/operations.md §4.3, §4.5): the server's
//! readiness, and the gauges read from the store and the broker every [`GAUGES_EVERY`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use maestro_store::DynStore;
use maestro_transport::retry::{CancellationToken, pause};
use maestro_transport::{DynSourceTransport, Subscribed};

use crate::metrics;
use crate::ownership::Membership;

/// How often the store and broker gauges are refreshed: 15 s (a Prometheus scrape interval).
pub const GAUGES_EVERY: Duration = Duration::from_secs(15);

/// When this instance last renewed its lease in the instance registry; the heartbeat updates
/// it ([`crate::instances::run`]).
#[derive(Debug, Clone)]
pub struct LeaseClock {
    renewed: Arc<Mutex<Instant>>,
    lease: Duration,
}

impl LeaseClock {
    /// A lease of `lease` renewed now (at registration).
    pub fn new(lease: Duration) -> Self {
        LeaseClock { renewed: Arc::new(Mutex::new(Instant::now())), lease }
    }

    /// Records a renewal now.
    pub fn renewed(&self) {
        *self.renewed.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// Whether the lease still holds, as this process's clock sees it.
    pub fn holds(&self) -> bool {
        self.renewed.lock().unwrap_or_else(PoisonError::into_inner).elapsed() < self.lease
    }
}

/// Why the server is not ready; its text is what `/readyz` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The database did not answer a `SELECT 1`.
    #[error("the database does not answer")]
    Database,
    /// The broker transport has not subscribed yet (MQTT SUBACK, Pub/Sub stream, gRPC broker
    /// listening).
    #[error("the broker is not subscribed yet")]
    Broker,
    /// This instance's lease in the instance registry passed without renewal: other instances
    /// may have taken its work over until it registers again.
    #[error("this instance's lease in the instance registry passed")]
    Lease,
}

/// The server's readiness: the database answers, the broker subscribed, the lease holds.
#[derive(Debug, Clone)]
pub struct Readiness {
    store: DynStore,
    subscribed: Subscribed,
    lease: LeaseClock,
}

impl Readiness {
    /// Readiness over `store`, the transport's `subscribed` signal and `lease`.
    pub fn new(store: DynStore, subscribed: Subscribed, lease: LeaseClock) -> Self {
        Readiness { store, subscribed, lease }
    }

    /// `Ok` when ready.
    ///
    /// # Errors
    /// The first [`NotReady`] reason found (database, broker, lease, in that order).
    pub async fn check(&self) -> Result<(), NotReady> {
        if let Err(e) = self.store.ping().await {
            tracing::error!(error = %e, "readiness check: the database does not answer");
            return Err(NotReady::Database);
        }
        if *self.subscribed.borrow() == 0 {
            return Err(NotReady::Broker);
        }
        if !self.lease.holds() {
            return Err(NotReady::Lease);
        }
        Ok(())
    }
}

/// Refreshes the store and broker gauges every [`GAUGES_EVERY`] until `cancel`: the outbox
/// backlog and dead letters (every instance reads the same database, so each exports the
/// same values and a gauge never goes stale when another instance takes the housekeeping
/// over; three indexed counts per interval), live instances, and this instance's agent
/// streams per consumer (gRPC broker).
pub async fn gauges(
    store: DynStore,
    transport: DynSourceTransport,
    membership: Membership,
    cancel: CancellationToken,
) {
    let mut connected: Vec<String> = Vec::new();
    loop {
        match store.backlog().await {
            Ok(b) => {
                ::metrics::gauge!(metrics::OUTBOX_PENDING).set(b.pending_spec_events as f64);
                let age = Duration::from_millis(b.oldest_pending_ms.max(0).unsigned_abs());
                ::metrics::gauge!(metrics::OUTBOX_OLDEST_AGE).set(age.as_secs_f64());
                ::metrics::gauge!(metrics::DEAD_LETTERS).set(b.dead_letters as f64);
            }
            Err(e) => tracing::debug!(error = %e, "reading the backlog for the metrics failed"),
        }
        ::metrics::gauge!(metrics::INSTANCES_LIVE).set(membership.live().len() as f64);
        if let Some(now) = transport.connected_consumers() {
            agents_gauge(&connected, &now);
            connected = now;
        }
        if !pause(GAUGES_EVERY, &cancel).await {
            return;
        }
    }
}

/// Sets [`metrics::CONNECTED_AGENTS`] per consumer of `now` (one entry per stream) and to 0
/// for the consumers of `before` no longer connected.
fn agents_gauge(before: &[String], now: &[String]) {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for consumer in now {
        *counts.entry(consumer).or_default() += 1;
    }
    for gone in before.iter().filter(|c| !counts.contains_key(c.as_str())) {
        ::metrics::gauge!(metrics::CONNECTED_AGENTS, "consumer" => gone.clone()).set(0.0);
    }
    for (consumer, n) in counts {
        ::metrics::gauge!(metrics::CONNECTED_AGENTS, "consumer" => consumer.to_owned()).set(n as f64);
    }
}

/// The body of a health answer: `{"status": "ok"}`, or `{"status": "not ready", "reason":
/// ...}` with 503.
fn health(result: Result<(), NotReady>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match result {
        Ok(()) => axum::Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(reason) => {
            let body = serde_json::json!({"status": "not ready", "reason": reason.to_string()});
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}

/// The health listener's routes (Go Maestro's port 8083): `/healthcheck` and `/readyz`
/// answer the readiness, `/livez` and `/healthz` 200 while the process serves.
pub fn health_router(readiness: Readiness) -> axum::Router {
    use axum::routing::get;
    let ready = move || {
        let readiness = readiness.clone();
        async move { health(readiness.check().await) }
    };
    axum::Router::new()
        .route("/healthcheck", get(ready.clone()))
        .route("/readyz", get(ready))
        .route("/livez", get(|| async { health(Ok(())) }))
        .route("/healthz", get(|| async { health(Ok(())) }))
}

/// The metrics listener's route: `/metrics` in Prometheus' text format (version 0.0.4).
pub fn metrics_router(handle: metrics_exporter_prometheus::PrometheusHandle) -> axum::Router {
    let render = move || {
        let text = handle.render();
        async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text) }
    };
    axum::Router::new().route("/metrics", axum::routing::get(render))
}

/// Serves `router` on `listener` until `cancel` (plain HTTP; these listeners carry no data).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    cancel: CancellationToken,
) {
    let served = axum::serve(listener, router).with_graceful_shutdown(cancel.cancelled_owned()).await;
    if let Err(e) = served {
        tracing::error!(error = %e, "operations listener failed");
    }
}
