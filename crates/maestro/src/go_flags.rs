//! Go Maestro's flags that have no counterpart here, accepted so a Go deployment's arguments
//! start this server and agent unchanged (docs/operations.md §2.8). Each is either honoured
//! (klog's `-v`), refused when it asks for something this product does not do (HTTPS on the
//! metrics or health port, Azure Entra database tokens), or documented as having no effect
//! here, with the reason, and logged once at start-up when given.

use std::time::Duration;

use clap::Args;

/// A duration as Go Maestro's flags write it: `15` (seconds, Go's integer flags) or a
/// humantime duration (`15s`, `500ms`, `1h`).
///
/// # Errors
/// Text that is neither.
pub fn seconds_or_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (write seconds, or e.g. 15s, 500ms)"))
}

/// klog's flags, which every Go Maestro command takes (`-v=2 --alsologtostderr`).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Go Maestro compatibility (klog)")]
pub struct KlogFlags {
    /// klog verbosity, used when `RUST_LOG` is not set: 0–1 logs info, 2–4 debug, 5 and more
    /// trace.
    #[arg(short = 'v', long = "v", global = true, value_name = "LEVEL")]
    pub verbosity: Option<u8>,
    /// klog's switch; logs always go to standard error here.
    #[arg(long, global = true)]
    pub alsologtostderr: bool,
    /// klog's switch; logs always go to standard error here.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub logtostderr: Option<bool>,
}

impl KlogFlags {
    /// The log filter `-v` asks for, if given.
    pub fn filter(&self) -> Option<&'static str> {
        self.verbosity.map(|v| match v {
            0..=1 => "info",
            2..=4 => "debug",
            _ => "trace",
        })
    }
}

/// `maestro server` flags of Go Maestro with no counterpart here.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Go Maestro compatibility")]
pub struct GoServerFlags {
    /// Go's switch for the source gRPC API, which always runs here; `false` is refused.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub enable_grpc_server: Option<bool>,
    /// Go's flag; the metrics port serves plain HTTP here, so `true` is refused.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub enable_metrics_https: Option<bool>,
    /// Go's flag; the health port serves plain HTTP here, so `true` is refused.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub enable_health_check_https: Option<bool>,
    /// Go's database authentication: `password` only (`az-entra` is refused).
    #[arg(long, value_name = "METHOD")]
    pub db_auth_method: Option<String>,
    /// No effect: Go's scope of Azure Entra tokens.
    #[arg(long, value_name = "SCOPE")]
    pub db_token_request_scope: Option<String>,
    /// No effect: Go logs SQL with it; here `RUST_LOG=sqlx=debug` does.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub enable_db_debug: Option<bool>,
    /// No effect: Go keeps resource id labels on metrics this long; the series here have no
    /// resource id label.
    #[arg(long, value_name = "DURATION")]
    pub label_metrics_inclusion_duration: Option<String>,
    /// No effect: Go's consistent hash ring; consumers are spread by rendezvous hashing here,
    /// which has no partitions (docs/architecture.md §9).
    #[arg(long, value_name = "N")]
    pub consistent_hash_partition_count: Option<u32>,
    /// No effect: see `--consistent-hash-partition-count`.
    #[arg(long, value_name = "N")]
    pub consistent_hash_replication_factor: Option<u32>,
    /// No effect: see `--consistent-hash-partition-count`.
    #[arg(long, value_name = "LOAD")]
    pub consistent_hash_load: Option<f64>,
    /// No effect: Go republishes specs not acknowledged after this many seconds; the outbox
    /// here keeps a spec pending until the broker accepted it.
    #[arg(long, value_name = "SECONDS")]
    pub undelivered_resource_threshold: Option<String>,
    /// No effect: Go re-sends delete events left this many seconds; deletes here stay in the
    /// outbox until sent.
    #[arg(long, value_name = "SECONDS")]
    pub stale_delete_event_threshold: Option<String>,
    /// No effect: Go's deprecated switch; TLS is on exactly when the certificate and key are
    /// given.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub disable_grpc_tls: Option<bool>,
}

impl GoServerFlags {
    /// Refuses what cannot be honoured and logs the flags that have no effect.
    ///
    /// # Errors
    /// `--enable-grpc-server=false`, `--enable-metrics-https`, `--enable-health-check-https`,
    /// a `--db-auth-method` other than `password`.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.enable_grpc_server != Some(false),
            "--enable-grpc-server=false is not supported: the source gRPC API always runs (bind it to 127.0.0.1 with --grpc-addr to keep it private)"
        );
        anyhow::ensure!(
            self.enable_metrics_https != Some(true),
            "--enable-metrics-https is not supported: the metrics port serves plain HTTP (expose it only inside the cluster)"
        );
        anyhow::ensure!(
            self.enable_health_check_https != Some(true),
            "--enable-health-check-https is not supported: the health port serves plain HTTP"
        );
        if let Some(method) = self.db_auth_method.as_deref() {
            anyhow::ensure!(
                method == "password",
                "--db-auth-method {method:?} is not supported: only password authentication (in the URL or --db-password-file)"
            );
        }
        let ignored = [
            ("--db-token-request-scope", self.db_token_request_scope.is_some()),
            ("--enable-db-debug", self.enable_db_debug.is_some()),
            ("--label-metrics-inclusion-duration", self.label_metrics_inclusion_duration.is_some()),
            ("--consistent-hash-partition-count", self.consistent_hash_partition_count.is_some()),
            ("--consistent-hash-replication-factor", self.consistent_hash_replication_factor.is_some()),
            ("--consistent-hash-load", self.consistent_hash_load.is_some()),
            ("--undelivered-resource-threshold", self.undelivered_resource_threshold.is_some()),
            ("--stale-delete-event-threshold", self.stale_delete_event_threshold.is_some()),
            ("--disable-grpc-tls", self.disable_grpc_tls.is_some()),
        ];
        for (flag, _) in ignored.iter().filter(|(_, given)| *given) {
            tracing::info!(flag, "Go Maestro flag accepted without effect (see maestro server --help)");
        }
        Ok(())
    }
}

/// `maestro agent` flags of the Go Maestro agent (OCM work agent) with no counterpart here.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Go Maestro compatibility")]
pub struct GoAgentFlags {
    /// No effect: one agent runs per consumer here, without leader election.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub disable_leader_election: Option<bool>,
    /// No effect: the Kubernetes client's request rate is not limited here.
    #[arg(long, value_name = "QPS")]
    pub kube_api_qps: Option<f32>,
    /// No effect: see `--kube-api-qps`.
    #[arg(long, value_name = "N")]
    pub kube_api_burst: Option<u32>,
}

impl GoAgentFlags {
    /// Logs the flags that have no effect.
    pub fn check(&self) {
        let ignored = [
            ("--disable-leader-election", self.disable_leader_election.is_some()),
            ("--kube-api-qps", self.kube_api_qps.is_some()),
            ("--kube-api-burst", self.kube_api_burst.is_some()),
        ];
        for (flag, _) in ignored.iter().filter(|(_, given)| *given) {
            tracing::info!(flag, "Go Maestro agent flag accepted without effect (see maestro agent --help)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_are_seconds_or_humantime() {
        assert_eq!(seconds_or_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(seconds_or_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(seconds_or_duration("soon").is_err());
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        let refused = |f: GoServerFlags| f.check().expect_err("refused").to_string();
        assert!(
            refused(GoServerFlags { enable_grpc_server: Some(false), ..Default::default() })
                .contains("--enable-grpc-server")
        );
        assert!(
            refused(GoServerFlags { enable_metrics_https: Some(true), ..Default::default() })
                .contains("metrics")
        );
        assert!(
            refused(GoServerFlags { db_auth_method: Some("az-entra".into()), ..Default::default() })
                .contains("az-entra")
        );
        let fine = GoServerFlags {
            enable_grpc_server: Some(true),
            db_auth_method: Some("password".into()),
            consistent_hash_load: Some(1.25),
            ..Default::default()
        };
        assert!(fine.check().is_ok());
    }
}
