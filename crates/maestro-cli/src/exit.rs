//! Exit codes (README.md, "maestro-cli"): every command ends with one of them.

use maestro_client::ClientError;

/// The exit codes, as listed in `--help` ([`EXIT_CODES_HELP`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success.
    Success = 0,
    /// 1: a failed condition (the work reported a failure, was deleted while waited for, was
    /// not found) or any other error.
    Failed = 1,
    /// 2: usage or validation error (bad flags, bad manifest file, bad endpoint).
    Usage = 2,
    /// 3: a wait timed out.
    Timeout = 3,
    /// 4: conflict reported by the server (version conflict, already exists, being deleted).
    Conflict = 4,
    /// 5: the server could not be reached.
    Unreachable = 5,
}

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The exit code list shown after `--help`.
pub const EXIT_CODES_HELP: &str = "Exit codes:
  0  success
  1  failed condition (e.g. Degraded, deleted while waited for, not found) or other error
  2  usage or validation error (bad flags, manifest file or endpoint)
  3  timeout (--watch / wait did not reach the condition in --timeout)
  4  conflict reported by the server (e.g. version conflict)
  5  server unreachable (connection refused, DNS, TLS)";

/// A CLI failure with its exit status (commands return it inside `anyhow::Error`).
#[derive(Debug)]
pub struct CliError {
    /// The exit status.
    pub status: ExitStatus,
    /// The one-line message.
    pub message: String,
}

impl CliError {
    /// A usage/validation error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError { status: ExitStatus::Usage, message: message.into() }
    }

    /// A failed condition (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        CliError { status: ExitStatus::Failed, message: message.into() }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The status of a client error, `None` when it has no specific code.
fn client_status(e: &ClientError) -> Option<ExitStatus> {
    match e {
        ClientError::Timeout { .. } => Some(ExitStatus::Timeout),
        ClientError::Conflict { .. } | ClientError::Http { status: 409, .. } => Some(ExitStatus::Conflict),
        ClientError::Connect { .. } => Some(ExitStatus::Unreachable),
        ClientError::ManifestFile { .. } | ClientError::InvalidInput(_) => Some(ExitStatus::Usage),
        _ => None,
    }
}

/// The exit status of `err`: the first [`CliError`] or [`ClientError`] in its chain decides,
/// anything else is [`ExitStatus::Failed`].
pub fn exit_status(err: &anyhow::Error) -> ExitStatus {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return e.status;
        }
        if let Some(status) = cause.downcast_ref::<ClientError>().and_then(client_status) {
            return status;
        }
    }
    ExitStatus::Failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn errors_map_to_documented_codes() {
        let timeout = ClientError::Timeout { after: std::time::Duration::from_secs(1), what: "x".into() };
        let cases = [
            (anyhow::Error::new(timeout), 3),
            (anyhow::Error::new(ClientError::Conflict { what: "w".into(), message: "m".into() }), 4),
            (anyhow::Error::new(ClientError::Connect { endpoint: "e".into(), message: "m".into() }), 5),
            (anyhow::Error::new(ClientError::ManifestFile { file: "f".into(), message: "m".into() }), 2),
            (anyhow::Error::new(ClientError::NotFound { what: "w".into(), detail: String::new() }), 1),
            (anyhow::Error::new(CliError::usage("bad")), 2),
            (anyhow::anyhow!("degraded"), 1),
        ];
        for (err, want) in cases {
            assert_eq!(exit_status(&err).code(), want, "{err:#}");
        }
        let wrapped = Err::<(), _>(ClientError::Connect { endpoint: "e".into(), message: "m".into() })
            .context("connecting")
            .expect_err("error");
        assert_eq!(exit_status(&wrapped), ExitStatus::Unreachable);
        assert!(EXIT_CODES_HELP.contains("5  server unreachable"));
    }
}
