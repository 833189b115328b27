//! Structured logging (`tracing`): an `RUST_LOG` filter, JSON lines or human-readable text.
//!
//! Logged values often come from outside (consumer and bundle names, event ids, reasons): in
//! the text format every control character of a field or message is escaped (`\n`, `\u{1b}`),
//! so a name holding a newline cannot forge a log line nor a terminal escape sequence
//! (docs/security.md, "Bad input"). The JSON format escapes them as JSON does.

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::Writer;

/// Whether OpenTelemetry trace export is asked for, as Go Maestro decides it:
/// `OTEL_TRACES_EXPORTER` set (to anything but `none`), or an OTLP endpoint set
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
pub fn tracing_requested() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    match std::env::var("OTEL_TRACES_EXPORTER") {
        Ok(v) if v.trim() == "none" => false,
        Ok(v) if !v.trim().is_empty() => true,
        _ => set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    }
}

/// The OpenTelemetry trace pipeline of the process, flushed by [`Telemetry::shutdown`].
#[derive(Debug, Default)]
pub struct Telemetry(Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter (at most the exporter's
    /// timeout, 10 s by default). Call it from a blocking context (not an async task).
    pub fn shutdown(self) {
        if let Some(provider) = self.0
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: flushing the trace exporter failed: {e}");
        }
    }
}

/// Builds the OTLP (gRPC) trace pipeline of `service` (`OTEL_SERVICE_NAME` wins; the endpoint
/// from `OTEL_EXPORTER_OTLP_ENDPOINT`, default `http://localhost:4317`). Must run inside a
/// Tokio runtime: the batch processor runs on it.
///
/// # Errors
/// The exporter cannot be built (a malformed endpoint).
fn otlp_provider(service: &str) -> anyhow::Result<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
    let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource.build())
        .build())
}

/// Initialises logging: `RUST_LOG` filter (default `default_filter`), JSON lines when `json`
/// is true, otherwise human-readable text with escaped control characters; and, when
/// [`tracing_requested`], span export over OTLP as `service` (docs/operations.md §4.6). Must
/// run inside a Tokio runtime when tracing is requested. A second call does nothing.
pub fn init_logging(json: bool, default_filter: &str, service: &str) -> Telemetry {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let provider = if tracing_requested() {
        match otlp_provider(service) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("warning: OpenTelemetry trace export is off: {e:#}");
                None
            }
        }
    } else {
        None
    };
    let otel = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider;
        tracing_opentelemetry::layer().with_tracer(p.tracer("maestro"))
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = if json {
        registry.with(fmt.json()).try_init()
    } else {
        registry.with(fmt.fmt_fields(escaping_fields())).try_init()
    };
    Telemetry(provider)
}

/// The text format's field formatter: `name=value` pairs separated by spaces, the message
/// bare, each with its control characters escaped.
pub fn escaping_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static {
    tracing_subscriber::fmt::format::debug_fn(
        |w: &mut Writer<'_>, field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
            let text = escape_controls(&format!("{value:?}"));
            if field.name() == "message" { w.write_str(&text) } else { write!(w, "{}={text}", field.name()) }
        },
    )
    .delimited(" ")
}

/// `s` with every control character escaped as Rust escapes it.
fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars().fold(String::with_capacity(s.len() + 8), |mut out, c| {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_newline_in_a_field_or_message_cannot_forge_a_line() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .fmt_fields(escaping_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let name = "c1\n2026-12-03T00:00:00Z  INFO forged";
            tracing::info!(consumer = %name, other = ?name, "got {}", "a\u{1b}[2Jb");
        });
        let out =
            String::from_utf8(buffer.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).unwrap_or_default();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("got a\\u{1b}[2Jb"), "{out}");
        assert!(out.contains("consumer=c1\\n2026-12-03T00:00:00Z  INFO forged"), "{out}");
        assert!(out.contains(r#"other="c1\n2026"#), "{out}");
    }
}
