//! `maestro server` flags bounding what agents may ask through the broker, and how long the
//! server keeps done outbox rows and dead letters (docs/security.md, "Bad input" and "Dead
//! letters"). Flattened into the server's flags.

use std::time::Duration;

use clap::Args;
use maestro_server::ingest::IngestLimits;
use maestro_server::retention::RetentionConfig;

/// Agent limits and retention flags; the defaults are [`IngestLimits::default`] and
/// [`RetentionConfig::default`].
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Most bundles one spec resync request of an agent may list; a request listing more is
    /// refused and kept as a dead letter.
    #[arg(long, env = "MAESTRO_MAX_RESYNC_RESOURCES", value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_resync_resources: u32,
    /// Largest spec resync request of an agent, in bytes of CloudEvents JSON; a larger one is
    /// refused and kept as a dead letter (the broker's own message limit applies first).
    #[arg(long, env = "MAESTRO_MAX_RESYNC_REQUEST_BYTES", value_name = "BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(1024..))]
    max_resync_request_bytes: u32,
    /// Least time between the starts of two spec resync answers to one consumer; a request
    /// arriving sooner is answered when that time has passed (the newest request wins). `0s`
    /// answers at once.
    #[arg(long, env = "MAESTRO_RESYNC_MIN_INTERVAL", value_name = "DURATION", default_value = "5s",
          value_parser = humantime::parse_duration)]
    resync_min_interval: Duration,
    /// Attempts at storing an agent's status that fails with an error that may pass (a
    /// serialization failure, a statement timeout) while the database answers; after them the
    /// status is kept as a dead letter. During an outage (the database unreachable, shutting
    /// down, out of disk, SQLite busy) statuses wait for it however long it takes.
    #[arg(long, env = "MAESTRO_STATUS_WRITE_ATTEMPTS", value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    status_write_attempts: u32,
    /// How long a spec outbox row is kept after its event was sent (e.g. `1h`); older ones are
    /// deleted every minute.
    #[arg(long, env = "MAESTRO_SPEC_EVENT_RETENTION", value_name = "DURATION", default_value = "1h",
          value_parser = humantime::parse_duration)]
    spec_event_retention: Duration,
    /// How long a dead letter is kept (e.g. `7d`).
    #[arg(long, env = "MAESTRO_DEAD_LETTER_RETENTION", value_name = "DURATION", default_value = "7d",
          value_parser = humantime::parse_duration)]
    dead_letter_retention: Duration,
    /// Most dead letters kept (at least 1); the oldest beyond it are deleted every minute.
    #[arg(long, env = "MAESTRO_DEAD_LETTER_MAX_COUNT", value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    dead_letter_max_count: u32,
}

impl IngestArgs {
    /// The agent limits.
    pub fn limits(&self) -> IngestLimits {
        IngestLimits {
            max_resync_ids: self.max_resync_resources as usize,
            max_resync_request_bytes: self.max_resync_request_bytes as usize,
            resync_min_interval: self.resync_min_interval,
            status_attempts: self.status_write_attempts,
        }
    }

    /// The retention settings.
    pub fn retention(&self) -> RetentionConfig {
        RetentionConfig {
            keep_done_for: self.spec_event_retention,
            dead_letters_max_age: self.dead_letter_retention,
            dead_letters_keep: i64::from(self.dead_letter_max_count),
            ..RetentionConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: IngestArgs,
    }

    #[test]
    fn the_defaults_are_the_librarys() {
        let cli = Cli::try_parse_from(["maestro"]).expect("defaults parse");
        assert_eq!(cli.args.limits(), IngestLimits::default());
        assert_eq!(cli.args.retention(), RetentionConfig::default());
    }

    #[test]
    fn flags_set_the_limits() {
        let cli = Cli::try_parse_from([
            "maestro",
            "--max-resync-resources=20",
            "--resync-min-interval=0s",
            "--status-write-attempts=2",
            "--dead-letter-retention=1h",
            "--dead-letter-max-count=7",
        ])
        .expect("parse");
        let limits = cli.args.limits();
        assert_eq!(
            (limits.max_resync_ids, limits.resync_min_interval, limits.status_attempts),
            (20, Duration::ZERO, 2)
        );
        let r = cli.args.retention();
        assert_eq!((r.dead_letters_max_age, r.dead_letters_keep), (Duration::from_secs(3600), 7));
        assert!(Cli::try_parse_from(["maestro", "--status-write-attempts=0"]).is_err());
        // 0 would delete every dead letter each minute: refused, not taken silently.
        assert!(Cli::try_parse_from(["maestro", "--dead-letter-max-count=0"]).is_err());
    }
}
