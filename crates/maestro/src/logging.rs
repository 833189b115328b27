//! Structured logging (`tracing`): an `RUST_LOG` filter, JSON lines or human-readable text.
//!
//! Logged values often come from outside (consumer and bundle names, event ids, reasons): in
//! the text format every control character of a field or message is escaped (`\n`, `\u{1b}`),
//! so a name holding a newline cannot forge a log line nor a terminal escape sequence
//! (docs/security.md, "Bad input"). The JSON format escapes them as JSON does.

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::Writer;

/// Initialises logging: `RUST_LOG` filter (default `default_filter`), JSON lines when `json`
/// is true, otherwise human-readable text with escaped control characters. A second call
/// does nothing.
pub fn init_logging(json: bool, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.fmt_fields(escaping_fields()).try_init() };
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
