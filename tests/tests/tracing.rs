//! One bundle's journey is one trace (docs/operations.md §4.6): with a `tracing-opentelemetry`
//! layer installed (here over the OpenTelemetry SDK's in-memory exporter, where a deployment
//! exports over OTLP), a spec published by a source, dispatched by the server, applied by the
//! agent and reported back as a status gives the spans `spec publish` → `spec dispatch` →
//! `work apply` → `status ingest`, all of one trace id, each the child of the one before:
//! the trace context crosses the broker in the CloudEvent `traceparent` extension. A REST call
//! with a `traceparent` header gets a `rest request` span in the caller's trace. Server and
//! agent run in this process over the real gRPC broker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use maestro::stack::{LocalStack, StackConfig};
use maestro_tests::broker_restart::config_map_work;
use maestro_tests::wait_for;
use opentelemetry::trace::{SpanId, TracerProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_is_one_trace_from_publish_to_status() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("maestro-test")))
        .init();

    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}", dir.path().join("trace.db").display());
    let mut stack = LocalStack::start(StackConfig::new(&db)).await.expect("stack");
    stack.rest.create_consumer("traced", &Default::default()).await.expect("consumer");
    stack.start_agent("traced").await.expect("agent");
    // A first bundle, Applied, shows the agent connected and its connect-time spec resync
    // answered: the traced bundle then reaches it through the dispatcher (a bundle the resync
    // answer carries continues the trace from its "spec publish" instead).
    for i in 0..2 {
        stack.source.apply("traced", &config_map_work(i, 1)).await.expect("apply");
        wait_for("the bundle Applied", || async {
            let bundles = stack.rest.all_bundles(&Default::default()).await.ok()?;
            let applied = bundles.iter().filter(|b| b.is_true_at_current_version("Applied")).count();
            (applied > i).then_some(())
        })
        .await;
    }

    let wanted = ["spec publish", "spec dispatch", "work apply", "status ingest"];
    let spans = wait_for("the second bundle's status ingest span exported", || async {
        let spans = exporter.get_finished_spans().ok()?;
        let trace = spans.iter().rev().find(|s| s.name == "spec publish")?.span_context.trace_id();
        spans.iter().any(|s| s.name == "status ingest" && s.span_context.trace_id() == trace).then_some(spans)
    })
    .await;
    let last = |name: &str| -> &SpanData {
        spans.iter().rev().find(|s| s.name == name).unwrap_or_else(|| panic!("no {name:?} span"))
    };
    let publish = last("spec publish");
    let trace = publish.span_context.trace_id();
    let by_id: HashMap<SpanId, &SpanData> = spans.iter().map(|s| (s.span_context.span_id(), s)).collect();
    for pair in wanted.windows(2) {
        let (parent, child) = (pair[0], pair[1]);
        let child_span = spans
            .iter()
            .find(|s| s.name == child && s.span_context.trace_id() == trace)
            .unwrap_or_else(|| panic!("no {child:?} span in the trace of {parent:?}: {:?}", names(&spans)));
        let up = by_id.get(&child_span.parent_span_id).map(|s| s.name.as_ref());
        assert_eq!(up, Some(parent), "{child:?} is the child of {parent:?}");
    }

    // A REST call continues the caller's trace (its W3C `traceparent` header).
    let url = format!("http://{}/api/maestro/v1/consumers", stack.http_addr());
    let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let resp = maestro_tests::http().get(url).header("traceparent", caller).send().await.expect("REST");
    assert_eq!(resp.status(), 200);
    let rest = wait_for("the REST span exported", || async {
        let spans = exporter.get_finished_spans().ok()?;
        spans.into_iter().find(|s| {
            s.name == "rest request"
                && s.span_context.trace_id().to_string() == "0af7651916cd43dd8448eb211c80319c"
        })
    })
    .await;
    assert_eq!(rest.parent_span_id.to_string(), "b7ad6b7169203331");
    stack.shutdown().await;
    provider.shutdown().expect("flush");
}

fn names(spans: &[SpanData]) -> Vec<(String, String)> {
    spans.iter().map(|s| (s.name.to_string(), s.span_context.trace_id().to_string())).collect()
}
