//! The server's Prometheus metrics (docs/operations.md §4.5): Go Maestro's series under Go's
//! names and labels where the concept exists here, and the ones Go lacks under `maestro_`.
//!
//! Series are recorded through the `metrics` facade, so nothing is kept unless the process
//! installed a recorder ([`install`], done by `maestro server`). Label values are bounded:
//! no label carries a resource id (Go's `resource_*` series have one; here they do not), a
//! `consumer` label appears only once the consumer's event was accepted, and a `source` label
//! only once the caller was authorized to act as that source.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// REST requests by `method`, `path` (the route, ids as `-`) and `code` (Go's name).
pub const REST_REQUESTS: &str = "rest_api_inbound_request_count";
/// REST request durations in seconds, by `method`, `path` and `code` (Go's name).
pub const REST_DURATION: &str = "rest_api_inbound_request_duration";
/// Source gRPC calls started, by `type` (`Publish`, `Subscribe`) and `source`.
pub const GRPC_CALLED: &str = "grpc_server_called_total";
/// Source gRPC calls ended, by `type`, `source` and `code` (the gRPC status code name).
pub const GRPC_PROCESSED: &str = "grpc_server_processed_total";
/// Source gRPC call durations in seconds (a Subscribe: until its response head), by `type`,
/// `source` and `code`.
pub const GRPC_DURATION: &str = "grpc_server_processed_duration_seconds";
/// Source gRPC messages received (a Publish's event), by `type` and `source`.
pub const GRPC_RECEIVED: &str = "grpc_server_message_received_total";
/// Source gRPC messages sent (statuses and heartbeats on Subscribe streams), by `type` and
/// `source`.
pub const GRPC_SENT: &str = "grpc_server_message_sent_total";
/// Open Subscribe streams by `source`.
pub const GRPC_SOURCE_CLIENTS: &str = "grpc_server_registered_source_clients";
/// Resource bundle changes accepted from sources, by `action` (`create`, `update`, `delete`).
pub const RESOURCES_PROCESSED: &str = "resource_processed_total";
/// Time to handle one agent status event (decode, checks, store), in seconds, by `source`
/// and `server_instance_id`.
pub const STATUS_PROCESSING: &str = "resource_status_event_processing_latency_seconds";
/// Spec outbox rows handled by the dispatcher, by `event_type` (`create`, `update`, `delete`)
/// and `status` (`success`: sent; `skipped`: superseded, nothing to send or the agent is not
/// here; `error`: the publish failed and the row waits).
pub const SPEC_RECONCILES: &str = "spec_controller_event_reconcile_total";
/// Time to handle one spec outbox row, in seconds, by `event_type`.
pub const SPEC_RECONCILE_DURATION: &str = "spec_controller_event_reconcile_duration_seconds";
/// Status events fanned out to source subscribers, by `status` (`success`, `error`: an
/// unreadable row).
pub const STATUS_RECONCILES: &str = "status_controller_event_reconcile_total";
/// CloudEvents received from agents, by `source`, `consumer`, `type` (data type),
/// `subresource` and `action` (sdk-go's source-side name).
pub const CLOUDEVENTS_RECEIVED: &str = "cloudevents_received_total";
/// CloudEvents sent to agents, by the same labels.
pub const CLOUDEVENTS_SENT: &str = "cloudevents_sent_total";
/// Time to answer an agent's spec resync request, in seconds, by `source`.
pub const SPEC_RESYNC_DURATION: &str = "resources_spec_resync_duration_seconds";
/// Spec outbox rows not sent yet.
pub const OUTBOX_PENDING: &str = "maestro_outbox_pending_events";
/// Age of the oldest spec outbox row not sent yet, in seconds (0 when none).
pub const OUTBOX_OLDEST_AGE: &str = "maestro_outbox_oldest_pending_age_seconds";
/// Dead letters stored (docs/security.md, "Dead letters").
pub const DEAD_LETTERS: &str = "maestro_dead_letters";
/// Agent streams connected to this instance, by `consumer` (gRPC broker only).
pub const CONNECTED_AGENTS: &str = "maestro_connected_agents";
/// When this instance last stored a status of the consumer, in seconds since the Unix epoch,
/// by `consumer`; `time() - maestro_consumer_last_status_timestamp_seconds` is its age.
pub const LAST_STATUS: &str = "maestro_consumer_last_status_timestamp_seconds";
/// Broker publish durations in seconds, by `broker`.
pub const PUBLISH_DURATION: &str = "maestro_broker_publish_duration_seconds";
/// Failed broker publishes, by `broker` and `kind` (`retryable`, `permanent`,
/// `no_subscriber`).
pub const PUBLISH_ERRORS: &str = "maestro_broker_publish_errors_total";
/// Live server instances sharing the database, as this instance sees them.
pub const INSTANCES_LIVE: &str = "maestro_server_instances_live";

/// Histogram buckets in seconds, by series: Go's where Go has the series.
pub const BUCKETS: &[(&str, &[f64])] = &[
    (REST_DURATION, &[0.1, 1.0, 10.0, 30.0]),
    (GRPC_DURATION, &[0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
    (STATUS_PROCESSING, &[0.05, 0.1, 0.5, 1.0, 5.0]),
    (SPEC_RECONCILE_DURATION, &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
    (SPEC_RESYNC_DURATION, &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0]),
    (PUBLISH_DURATION, &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
];

/// Installs the process-wide Prometheus recorder once, with the histogram buckets of
/// `buckets` (each a list of `(series, bounds in seconds)`, e.g. [`BUCKETS`]), describes the
/// server's series, and returns the handle that renders the text format. Later calls return
/// the first handle (their buckets are ignored).
///
/// # Errors
/// [`BuildError`] when another recorder is already installed or a bucket list is empty.
pub fn install(buckets: &[&[(&str, &[f64])]]) -> Result<PrometheusHandle, BuildError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let mut builder = PrometheusBuilder::new();
    for (name, bounds) in buckets.iter().flat_map(|b| b.iter()) {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), bounds)?;
    }
    let handle = builder.install_recorder()?;
    describe();
    let _ = HANDLE.set(handle.clone());
    Ok(HANDLE.get().cloned().unwrap_or(handle))
}

/// Registers the help text and units of the server's series.
fn describe() {
    describe_counter!(REST_REQUESTS, "REST requests by method, route and status code");
    describe_histogram!(REST_DURATION, Unit::Seconds, "REST request durations");
    describe_counter!(GRPC_CALLED, "source gRPC calls started");
    describe_counter!(GRPC_PROCESSED, "source gRPC calls ended, by status code");
    describe_histogram!(GRPC_DURATION, Unit::Seconds, "source gRPC call durations");
    describe_counter!(GRPC_RECEIVED, "source gRPC messages received");
    describe_counter!(GRPC_SENT, "source gRPC messages sent on Subscribe streams");
    describe_gauge!(GRPC_SOURCE_CLIENTS, "open source Subscribe streams");
    describe_counter!(RESOURCES_PROCESSED, "resource bundle changes accepted from sources");
    describe_histogram!(STATUS_PROCESSING, Unit::Seconds, "time to handle one agent status event");
    describe_counter!(SPEC_RECONCILES, "spec outbox rows handled by the dispatcher");
    describe_histogram!(SPEC_RECONCILE_DURATION, Unit::Seconds, "time to handle one spec outbox row");
    describe_counter!(STATUS_RECONCILES, "status events fanned out to source subscribers");
    describe_counter!(CLOUDEVENTS_RECEIVED, "CloudEvents received from agents");
    describe_counter!(CLOUDEVENTS_SENT, "CloudEvents sent to agents");
    describe_histogram!(SPEC_RESYNC_DURATION, Unit::Seconds, "time to answer a spec resync request");
    describe_gauge!(OUTBOX_PENDING, "spec outbox rows not sent yet");
    describe_gauge!(OUTBOX_OLDEST_AGE, Unit::Seconds, "age of the oldest spec outbox row not sent yet");
    describe_gauge!(DEAD_LETTERS, "dead letters stored");
    describe_gauge!(CONNECTED_AGENTS, "agent streams connected to this instance (gRPC broker)");
    describe_gauge!(LAST_STATUS, Unit::Seconds, "when the consumer's last status was stored");
    describe_histogram!(PUBLISH_DURATION, Unit::Seconds, "broker publish durations");
    describe_counter!(PUBLISH_ERRORS, "failed broker publishes");
    describe_gauge!(INSTANCES_LIVE, "live server instances sharing the database");
}

/// The labels of a CloudEvent counted in [`CLOUDEVENTS_RECEIVED`] or [`CLOUDEVENTS_SENT`].
pub(crate) struct EventLabels<'a> {
    pub(crate) source: &'a str,
    pub(crate) consumer: &'a str,
    pub(crate) data_type: &'a str,
    pub(crate) subresource: &'a str,
    pub(crate) action: &'a str,
}

impl EventLabels<'_> {
    /// Counts the event in `series`.
    pub(crate) fn count(&self, series: &'static str) {
        counter!(
            series,
            "source" => self.source.to_owned(),
            "consumer" => self.consumer.to_owned(),
            "type" => self.data_type.to_owned(),
            "subresource" => self.subresource.to_owned(),
            "action" => self.action.to_owned()
        )
        .increment(1);
    }
}

/// Counts `event` in `series`, for `source` and `consumer`; nothing when its type does not
/// parse.
pub(crate) fn count_event(series: &'static str, source: &str, consumer: &str, event: &maestro_api::Event) {
    use maestro_api::AttributesReader;
    if let Ok(t) = maestro_api::types::EventType::parse(event.ty()) {
        let (subresource, action) = (t.sub_resource.as_str(), t.action.as_str());
        EventLabels { source, consumer, data_type: &t.data_type, subresource, action }.count(series);
    }
}

/// Records one spec outbox row handled in `elapsed`.
pub(crate) fn spec_reconciled(event_type: &'static str, status: &'static str, elapsed: Duration) {
    counter!(SPEC_RECONCILES, "event_type" => event_type, "status" => status).increment(1);
    histogram!(SPEC_RECONCILE_DURATION, "event_type" => event_type).record(elapsed);
}

/// Records one broker publish that started at `started`: its duration, and its failure kind.
pub(crate) fn published(broker: &'static str, started: Instant, error: Option<&'static str>) {
    histogram!(PUBLISH_DURATION, "broker" => broker).record(started.elapsed());
    if let Some(kind) = error {
        counter!(PUBLISH_ERRORS, "broker" => broker, "kind" => kind).increment(1);
    }
}

/// Records that a status of `consumer` was stored now.
pub(crate) fn status_stored(consumer: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    gauge!(LAST_STATUS, "consumer" => consumer.to_owned()).set(now.as_secs_f64());
}

/// Records one source gRPC call of `ty` by `source` that ended with `code` after `elapsed`.
pub(crate) fn grpc_call(ty: &'static str, source: &str, code: tonic::Code, elapsed: Duration) {
    let source = source.to_owned();
    counter!(GRPC_CALLED, "type" => ty, "source" => source.clone()).increment(1);
    let code = format!("{code:?}");
    counter!(GRPC_PROCESSED, "type" => ty, "source" => source.clone(), "code" => code.clone()).increment(1);
    histogram!(GRPC_DURATION, "type" => ty, "source" => source, "code" => code).record(elapsed);
}
