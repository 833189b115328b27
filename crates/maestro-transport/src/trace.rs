//! Distributed tracing across the broker (docs/operations.md §4.6): the W3C trace context
//! travels in the CloudEvent extensions `traceparent` and `tracestate` (the CloudEvents
//! distributed tracing extension, as sdk-go sets them), so a bundle's journey (source publish
//! → spec dispatch → agent apply → status ingest) is one trace across server and agent.
//!
//! Spans are `tracing` spans; their OpenTelemetry context exists only when the process
//! installed a `tracing-opentelemetry` layer (`OTEL_TRACES_EXPORTER` /
//! `OTEL_EXPORTER_OTLP_ENDPOINT`). Without it [`stamp`] writes nothing, so events are
//! unchanged when tracing is off.

use maestro_api::{Event, ext};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The extension holding the W3C `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The extension holding the W3C `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

/// Reads the trace context extensions of an event.
struct Reading<'a>(&'a Event);

impl Extractor for Reading<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.extension(key)? {
            maestro_api::ExtensionValue::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// Collects the trace context headers to write.
#[derive(Default)]
struct Writing(Vec<(String, String)>);

impl Injector for Writing {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// Makes `span` a child of the trace context `event` carries (`traceparent`); nothing when
/// it carries none or a malformed one.
pub fn link(span: &tracing::Span, event: &Event) {
    let parent = TraceContextPropagator::new().extract(&Reading(event));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Writes `span`'s trace context into `event` (`traceparent`, `tracestate`), replacing what
/// it carried; nothing when `span` has no OpenTelemetry context (tracing off).
pub fn stamp(event: &mut Event, span: &tracing::Span) {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    let mut headers = Writing::default();
    TraceContextPropagator::new().inject_context(&cx, &mut headers);
    for (key, value) in headers.0 {
        ext::set_str(event, &key, value);
    }
}

/// Records `span`'s trace id in its `trace_id` field (declared `tracing::field::Empty`), so
/// JSON log lines inside the span carry it; nothing when tracing is off.
pub fn record_trace_id(span: &tracing::Span) {
    if let Some(id) = trace_id(span) {
        span.record("trace_id", id);
    }
}

/// `span`'s trace id as 32 hex digits, when it has an OpenTelemetry context (for log fields).
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// A trace context as text (`traceparent`, optional `tracestate`), kept with what it
/// describes: a stored spec, an agent's work (for the statuses it publishes later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The W3C `traceparent` header.
    pub parent: String,
    /// The W3C `tracestate` header.
    pub state: Option<String>,
}

impl TraceContext {
    /// The context `event` carries.
    pub fn of_event(event: &Event) -> Option<Self> {
        Some(TraceContext {
            parent: ext::get_str(event, TRACEPARENT)?,
            state: ext::get_str(event, TRACESTATE),
        })
    }

    /// The context a stored CloudEvent (JSON, extensions at the top level) carries.
    pub fn of_json(event: &serde_json::Value) -> Option<Self> {
        let text = |key: &str| event.get(key).and_then(serde_json::Value::as_str).map(str::to_owned);
        Some(TraceContext { parent: text(TRACEPARENT)?, state: text(TRACESTATE) })
    }

    /// `span`'s context, when it has an OpenTelemetry one (tracing on).
    pub fn of_span(span: &tracing::Span) -> Option<Self> {
        let mut headers = Writing::default();
        let cx = span.context();
        if !cx.span().span_context().is_valid() {
            return None;
        }
        TraceContextPropagator::new().inject_context(&cx, &mut headers);
        let get = |key: &str| headers.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        Some(TraceContext { parent: get(TRACEPARENT)?, state: get(TRACESTATE).filter(|s| !s.is_empty()) })
    }

    /// Makes `span` a child of this context (nothing when it is malformed).
    pub fn link(&self, span: &tracing::Span) {
        let headers = Headers { parent: &self.parent, state: self.state.as_deref() };
        let parent = TraceContextPropagator::new().extract(&headers);
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }

    /// Writes this context into `event`'s extensions.
    pub fn stamp(&self, event: &mut Event) {
        ext::set_str(event, TRACEPARENT, self.parent.clone());
        if let Some(state) = &self.state {
            ext::set_str(event, TRACESTATE, state.clone());
        }
    }
}

/// Headers held as text.
struct Headers<'a> {
    parent: &'a str,
    state: Option<&'a str>,
}

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.parent),
            TRACESTATE => self.state,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_survives_an_event_and_its_json() {
        let mut event = Event::default();
        assert_eq!(TraceContext::of_event(&event), None);
        let cx = TraceContext {
            parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            state: Some("vendor=x".into()),
        };
        cx.stamp(&mut event);
        assert_eq!(TraceContext::of_event(&event), Some(cx.clone()));
        let json = serde_json::to_value(&event).expect("JSON");
        assert_eq!(TraceContext::of_json(&json), Some(cx));
    }

    #[test]
    fn without_a_tracing_layer_nothing_is_stamped() {
        let span = tracing::info_span!("no layer");
        let mut event = Event::default();
        stamp(&mut event, &span);
        assert_eq!(TraceContext::of_event(&event), None);
        assert_eq!(TraceContext::of_span(&span), None);
    }
}
