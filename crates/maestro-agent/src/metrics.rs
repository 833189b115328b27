//! The agent's Prometheus metrics (docs/operations.md §4.5), recorded through the `metrics`
//! facade: nothing is kept unless the process installed a recorder (`maestro agent
//! --metrics-addr`). Series named as the OCM work agent's (sdk-go's agent side) where the
//! concept exists, under `maestro_agent_` otherwise; no label carries a resource id.

use std::time::Duration;

use maestro_api::types::EventType;
use maestro_api::{AttributesReader, Event};

/// Spec events taken, by `action` (`create`, `update`, `delete`) and `code` (`Success`, or
/// `Failure` for a spec refused as malformed).
pub const WORKS_PROCESSED: &str = "manifestworks_processed_total";
/// CloudEvents received from the server, by `source`, `consumer`, `type`, `subresource` and
/// `action`.
pub const CLOUDEVENTS_RECEIVED: &str = "cloudevents_received_total";
/// CloudEvents sent to the server (statuses, resync requests and answers), by the same labels.
pub const CLOUDEVENTS_SENT: &str = "cloudevents_sent_total";
/// Time to answer the server's status resync request, in seconds.
pub const STATUS_RESYNC_DURATION: &str = "resources_status_resync_duration_seconds";
/// Time to apply one work's manifests on the cluster, in seconds.
pub const APPLY_DURATION: &str = "maestro_agent_apply_duration_seconds";

/// Works the agent holds orphaned by the fleet-wipe guard (docs/operations.md §3.5), by
/// `consumer`: their objects are kept on the cluster until the sources publish them again or
/// an operator confirms their deletion.
pub const ORPHANED_WORKS: &str = "maestro_agent_orphaned_works";

/// Works of `consumer` that vanished from the source and wait for their eviction grace period
/// (docs/protocol.md §8.3) before their objects are deleted.
pub const EVICTING_WORKS: &str = "maestro_agent_evicting_works";

/// Histogram buckets in seconds, by series.
pub const BUCKETS: &[(&str, &[f64])] = &[
    (STATUS_RESYNC_DURATION, &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0]),
    (APPLY_DURATION, &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0]),
];

/// Registers the help text and units of the agent's series (after the recorder is
/// installed).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(WORKS_PROCESSED, "spec events taken by the agent");
    describe_counter!(CLOUDEVENTS_RECEIVED, "CloudEvents received from the server");
    describe_counter!(CLOUDEVENTS_SENT, "CloudEvents sent to the server");
    describe_histogram!(STATUS_RESYNC_DURATION, Unit::Seconds, "time to answer a status resync request");
    describe_histogram!(APPLY_DURATION, Unit::Seconds, "time to apply one work's manifests");
    describe_gauge!(ORPHANED_WORKS, "works kept orphaned by the fleet-wipe guard");
    describe_gauge!(EVICTING_WORKS, "works gone from the source waiting for their eviction grace period");
}

/// Records how many works of `consumer` are orphaned.
pub(crate) fn orphaned(consumer: &str, count: usize) {
    metrics::gauge!(ORPHANED_WORKS, "consumer" => consumer.to_owned()).set(count as f64);
}

/// Records how many works of `consumer` wait for their eviction.
pub(crate) fn evicting(consumer: &str, count: usize) {
    metrics::gauge!(EVICTING_WORKS, "consumer" => consumer.to_owned()).set(count as f64);
}

/// Counts `event` in `series` for `consumer`; nothing when its type does not parse.
pub(crate) fn count_event(series: &'static str, consumer: &str, event: &Event) {
    let Ok(t) = EventType::parse(event.ty()) else { return };
    metrics::counter!(
        series,
        "source" => event.source().to_string(),
        "consumer" => consumer.to_owned(),
        "type" => t.data_type,
        "subresource" => t.sub_resource.as_str(),
        "action" => t.action.as_str()
    )
    .increment(1);
}

/// Counts a spec event of `event`'s action taken (`ok`) or refused.
pub(crate) fn work_processed(event: &Event, ok: bool) {
    let action = match EventType::parse(event.ty()).map(|t| t.action) {
        Ok(maestro_api::types::Action::Create) => "create",
        Ok(maestro_api::types::Action::Delete) => "delete",
        _ => "update",
    };
    let code = if ok { "Success" } else { "Failure" };
    metrics::counter!(WORKS_PROCESSED, "action" => action, "code" => code).increment(1);
}

/// Records one work applied in `elapsed`.
pub(crate) fn applied(elapsed: Duration) {
    metrics::histogram!(APPLY_DURATION).record(elapsed);
}

/// Records a status resync answered in `elapsed`.
pub(crate) fn status_resynced(elapsed: Duration) {
    metrics::histogram!(STATUS_RESYNC_DURATION).record(elapsed);
}
