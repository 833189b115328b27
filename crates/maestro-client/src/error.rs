//! The client error type.

use std::time::Duration;

/// Every failure of the client. Each variant names what failed (endpoint, file, bundle) and
/// keeps the server's own reason, so `to_string()` is a complete one-line message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The endpoint could not be reached (connection refused, DNS, TLS, dropped connection).
    #[error("cannot reach {endpoint}: {message}")]
    Connect {
        /// The endpoint (URL or `host:port`).
        endpoint: String,
        /// The transport error.
        message: String,
    },
    /// The REST server answered with an HTTP error status.
    #[error("{method} {url}: HTTP {status}{code}: {reason}", code = fmt_code(code))]
    Http {
        /// HTTP method.
        method: String,
        /// Full request URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// Maestro error code (`maestro-8`), empty when the body was not a Maestro error.
        code: String,
        /// The server's reason (or the start of the body).
        reason: String,
    },
    /// The gRPC server answered with an error status (other than not-found and conflicts).
    #[error("gRPC {operation} to {endpoint} failed: {code:?}: {message}")]
    Grpc {
        /// The endpoint (`host:port`).
        endpoint: String,
        /// What was attempted, e.g. `publish create_request`.
        operation: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// The object does not exist (HTTP 404 or gRPC NotFound).
    #[error("{what} not found{detail}", detail = fmt_detail(detail))]
    NotFound {
        /// What was looked for, e.g. `resource bundle web (consumer c1)`.
        what: String,
        /// The server's reason, if any.
        detail: String,
    },
    /// A version conflict or an already-existing object (HTTP 409; gRPC AlreadyExists,
    /// Aborted or FailedPrecondition).
    #[error("conflict on {what}: {message}")]
    Conflict {
        /// What conflicted.
        what: String,
        /// The server's message.
        message: String,
    },
    /// Invalid input given to the client (bad name, filter value, endpoint…).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A manifest file could not be read, parsed or validated.
    #[error("{file}: {message}")]
    ManifestFile {
        /// The file name as given (or `<stdin>`).
        file: String,
        /// What is wrong, with document index and YAML location when known.
        message: String,
    },
    /// A wait did not complete in time.
    #[error("timed out after {after} waiting for {what}", after = humanize(*after))]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
        /// What was awaited, including the last observed state.
        what: String,
    },
    /// The server answered with something that is not the documented shape.
    #[error("invalid response from {endpoint}: {message}")]
    InvalidResponse {
        /// The endpoint or URL.
        endpoint: String,
        /// What was wrong.
        message: String,
    },
}

fn fmt_code(code: &str) -> String {
    if code.is_empty() { String::new() } else { format!(" ({code})") }
}

fn fmt_detail(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(": {detail}") }
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{secs:.3}s") }
}

impl ClientError {
    /// True for [`ClientError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::NotFound { .. })
    }

    /// True for errors worth retrying while polling: connection failures and HTTP 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connect { .. } => true,
            ClientError::Http { status, .. } => *status >= 500,
            ClientError::Grpc { code, .. } => {
                matches!(code, tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
            }
            _ => false,
        }
    }

    /// Maps a gRPC status from `endpoint` for `operation` on `what` to an error, keeping the
    /// server's message.
    pub fn from_status(endpoint: &str, operation: &str, what: &str, status: &tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::NotFound => ClientError::NotFound { what: what.to_owned(), detail: message },
            tonic::Code::AlreadyExists | tonic::Code::Aborted | tonic::Code::FailedPrecondition => {
                ClientError::Conflict { what: what.to_owned(), message }
            }
            tonic::Code::InvalidArgument => {
                ClientError::InvalidInput(format!("server rejected {what}: {message}"))
            }
            tonic::Code::Unavailable => ClientError::Connect { endpoint: endpoint.to_owned(), message },
            code => ClientError::Grpc {
                endpoint: endpoint.to_owned(),
                operation: operation.to_owned(),
                code,
                message,
            },
        }
    }
}

/// `Result` with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// `error`'s message followed by those of its causes (`source()` chain) that add something,
/// joined by `": "`, for the one line a command prints when it fails. A cause whose text the
/// line already holds is left out: many errors (ours, std's, sqlx's, rustls') put their
/// cause's message in their own and also return it as `source()`, which `{:#}` would print
/// two or three times.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_name_the_target() {
        let e = ClientError::Http {
            method: "GET".into(),
            url: "http://h/x".into(),
            status: 400,
            code: "maestro-23".into(),
            reason: "bad search".into(),
        };
        assert_eq!(e.to_string(), "GET http://h/x: HTTP 400 (maestro-23): bad search");
        let e = ClientError::from_status("h:1", "publish", "bundle web", &tonic::Status::aborted("v"));
        assert!(matches!(e, ClientError::Conflict { .. }));
        let e = ClientError::from_status("h:1", "publish", "bundle web", &tonic::Status::not_found(""));
        assert_eq!(e.to_string(), "bundle web not found");
        let e = ClientError::Timeout { after: Duration::from_secs(300), what: "x".into() };
        assert_eq!(e.to_string(), "timed out after 300s waiting for x");
        assert!(ClientError::Connect { endpoint: "e".into(), message: "m".into() }.is_transient());
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{context}: {source}")]
    struct Repeats {
        context: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("starting the server")]
    struct Outer(#[source] Repeats);

    /// A cause already spelled out by the error above it is printed once; one that adds
    /// something is kept.
    #[test]
    fn error_chain_prints_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let err = Outer(Repeats { context: "cannot read /x.pem", source: io });
        assert_eq!(error_chain(&err), "starting the server: cannot read /x.pem: No such file or directory");
        let plain = std::io::Error::other(Outer(Repeats {
            context: "REST TLS",
            source: std::io::Error::other("bad key"),
        }));
        assert_eq!(error_chain(&plain), "starting the server: REST TLS: bad key");
    }
}
