//! `maestro server`'s limits of the two gRPC listeners (docs/security.md, "Limits"): the
//! connection settings both share (Go Maestro's flag names and defaults, except the streams
//! per connection), the source gRPC API's Subscribe limits, and the agent broker's Subscribe
//! limits and registered-consumer check, answered by the server's snapshot of the consumer
//! names ([`SnapshotRegistry`]).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
#[cfg(feature = "grpc")]
use maestro_broker_grpc::{ConsumerRegistry, GrpcBrokerConfig, Registered, RegistryError};
use maestro_server::registered::RegisteredConsumers;
use maestro_server::source_grpc::SourceGrpcLimits;
use maestro_tls::grpc_listener as grpc;
use maestro_tls::grpc_listener::GrpcListenerLimits;

/// The gRPC limit flags of `maestro server`.
#[derive(Debug, Clone, Args)]
pub struct GrpcLimitsArgs {
    /// Both gRPC listeners: age after which a connection is asked to close (HTTP/2 GOAWAY: no
    /// new RPCs on it; its open streams go on unless --grpc-max-connection-age-grace is set),
    /// e.g. `30m`. Default: unlimited, as Go Maestro; `0s` is unlimited too.
    #[arg(long, env = "MAESTRO_GRPC_MAX_CONNECTION_AGE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub grpc_max_connection_age: Option<Duration>,
    /// Both gRPC listeners, with --grpc-max-connection-age: a connection is cut at its age plus
    /// this grace, ending its streams (agents and sources reconnect), e.g. `1m`. Default: never
    /// cut.
    #[arg(long, env = "MAESTRO_GRPC_MAX_CONNECTION_AGE_GRACE", value_name = "DURATION",
          value_parser = humantime::parse_duration, requires = "grpc_max_connection_age")]
    pub grpc_max_connection_age_grace: Option<Duration>,
    /// Both gRPC listeners: the server sends an HTTP/2 PING on a connection it has received
    /// nothing from for this long; `0s` disables.
    #[arg(long, env = "MAESTRO_GRPC_SERVER_PING_INTERVAL", value_name = "DURATION", default_value = "30s",
          value_parser = humantime::parse_duration)]
    pub grpc_server_ping_interval: Duration,
    /// Both gRPC listeners: a PING not acknowledged within this time closes the connection
    /// (more than 0s).
    #[arg(long, env = "MAESTRO_GRPC_SERVER_PING_TIMEOUT", value_name = "DURATION", default_value = "10s",
          value_parser = positive_duration)]
    pub grpc_server_ping_timeout: Duration,
    /// Go Maestro's minimum interval of client PINGs. Accepted for compatibility but NOT
    /// enforced: hyper/h2 (tonic 0.14) answer every PING and have no ping rate policy
    /// (docs/security.md, "Limits").
    #[arg(long, env = "MAESTRO_GRPC_CLIENT_MIN_PING_INTERVAL", value_name = "DURATION", default_value = "5s",
          value_parser = humantime::parse_duration)]
    pub grpc_client_min_ping_interval: Duration,
    /// Both gRPC listeners: concurrent streams (RPCs) per connection, the HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS; clients queue RPCs over it. Go Maestro's default is
    /// 4294967295 (no limit).
    #[arg(long, env = "MAESTRO_GRPC_MAX_CONCURRENT_STREAMS", value_name = "N",
          default_value_t = grpc::DEFAULT_MAX_CONCURRENT_STREAMS, value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_concurrent_streams: u32,
    /// Both gRPC listeners: largest message a client may send, in bytes; a larger one fails
    /// its RPC with OUT_OF_RANGE.
    #[arg(long, env = "MAESTRO_GRPC_MAX_RECEIVE_MESSAGE_SIZE", value_name = "BYTES",
          default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_receive_message_size: u32,
    /// Both gRPC listeners: time a new connection has to open HTTP/2 (connection preface and
    /// SETTINGS), counted after the TLS handshake; it is closed otherwise. `0s` waits forever.
    #[arg(long, env = "MAESTRO_GRPC_CONNECTION_TIMEOUT", value_name = "DURATION", default_value = "120s",
          value_parser = humantime::parse_duration)]
    pub grpc_connection_timeout: Duration,
    /// Source gRPC API: concurrent Subscribe streams of one source; one more is refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "MAESTRO_GRPC_MAX_SUBSCRIPTIONS_PER_SOURCE", value_name = "N",
          default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_subscriptions_per_source: u32,
    /// Source gRPC API: concurrent Subscribe streams in total; one more is refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "MAESTRO_GRPC_MAX_SUBSCRIPTIONS", value_name = "N",
          default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_subscriptions: u32,
    /// Agent broker (`--broker grpc`): concurrent Subscribe streams of one consumer; one more
    /// is refused with RESOURCE_EXHAUSTED (the agent retries with backoff).
    #[arg(long, env = "MAESTRO_GRPC_BROKER_MAX_STREAMS_PER_CONSUMER", value_name = "N",
          default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_broker_max_streams_per_consumer: u32,
    /// Agent broker: concurrent Subscribe streams in total (about 25 KiB of memory and one file
    /// descriptor each); one more is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "MAESTRO_GRPC_BROKER_MAX_STREAMS", value_name = "N",
          default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_broker_max_streams: u32,
    /// Agent broker: accept Subscribe streams for consumers that are not registered. By
    /// default such a Subscribe is refused with NOT_FOUND and the agent retries until the
    /// consumer is registered; this is for setups that register consumers only after deploying
    /// their agents and whose agents must not be refused meanwhile. Logged as a warning at
    /// start.
    #[arg(long, env = "MAESTRO_GRPC_BROKER_ALLOW_UNREGISTERED_CONSUMERS")]
    pub grpc_broker_allow_unregistered_consumers: bool,
}

impl Default for GrpcLimitsArgs {
    /// The flags' defaults.
    fn default() -> Self {
        GrpcLimitsArgs {
            grpc_max_connection_age: None,
            grpc_max_connection_age_grace: None,
            grpc_server_ping_interval: grpc::DEFAULT_PING_INTERVAL,
            grpc_server_ping_timeout: grpc::DEFAULT_PING_TIMEOUT,
            grpc_client_min_ping_interval: grpc::DEFAULT_CLIENT_MIN_PING_INTERVAL,
            grpc_max_concurrent_streams: grpc::DEFAULT_MAX_CONCURRENT_STREAMS,
            grpc_max_receive_message_size: 4 * 1024 * 1024,
            grpc_connection_timeout: grpc::DEFAULT_CONNECTION_TIMEOUT,
            grpc_max_subscriptions_per_source: 16,
            grpc_max_subscriptions: 1_000,
            grpc_broker_max_streams_per_consumer: 8,
            grpc_broker_max_streams: 50_000,
            grpc_broker_allow_unregistered_consumers: false,
        }
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than 0s".into());
    }
    Ok(d)
}

fn nonzero(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

fn count(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl GrpcLimitsArgs {
    /// The agent broker's connection settings.
    pub fn broker_listener(&self) -> GrpcListenerLimits {
        GrpcListenerLimits {
            max_connection_age: nonzero(self.grpc_max_connection_age),
            max_connection_age_grace: self.grpc_max_connection_age_grace,
            ping_interval: nonzero(Some(self.grpc_server_ping_interval)),
            ping_timeout: self.grpc_server_ping_timeout,
            client_min_ping_interval: self.grpc_client_min_ping_interval,
            max_concurrent_streams: self.grpc_max_concurrent_streams,
            max_receive_message_bytes: count(self.grpc_max_receive_message_size),
            connection_timeout: nonzero(Some(self.grpc_connection_timeout)),
        }
    }

    /// The source gRPC API's limits (`ServerConfig::grpc_limits`).
    pub fn source_grpc(&self) -> SourceGrpcLimits {
        SourceGrpcLimits {
            max_subscriptions_per_source: count(self.grpc_max_subscriptions_per_source),
            max_subscriptions: count(self.grpc_max_subscriptions),
            listener: self.broker_listener(),
        }
    }

    /// The agent broker's limits.
    pub fn broker(&self) -> BrokerLimits {
        BrokerLimits {
            listener: self.broker_listener(),
            max_streams_per_consumer: count(self.grpc_broker_max_streams_per_consumer),
            max_streams: count(self.grpc_broker_max_streams),
            allow_unregistered_consumers: self.grpc_broker_allow_unregistered_consumers,
        }
    }
}

/// The agent broker's limits (`--broker grpc`), from [`GrpcLimitsArgs::broker`].
#[derive(Debug, Clone)]
pub struct BrokerLimits {
    /// Connection settings.
    pub listener: GrpcListenerLimits,
    /// Concurrent Subscribe streams of one consumer (default 8).
    pub max_streams_per_consumer: usize,
    /// Concurrent Subscribe streams in total (default 50,000).
    pub max_streams: usize,
    /// Accept Subscribe streams for consumers the store does not know (default false).
    pub allow_unregistered_consumers: bool,
}

impl Default for BrokerLimits {
    /// The defaults of [`GrpcLimitsArgs`]: only registered consumers may subscribe.
    fn default() -> Self {
        GrpcLimitsArgs::default().broker()
    }
}

impl BrokerLimits {
    /// The base of the agent broker's configuration: these limits, and unless
    /// `allow_unregistered_consumers` `consumers` (the snapshot the server checks spec resync
    /// requests against) as its registry (warned about loudly otherwise). Address, heartbeat and
    /// TLS are set by `broker::source_transport_with`.
    #[cfg(feature = "grpc")]
    pub fn broker_config(&self, consumers: &Arc<RegisteredConsumers>) -> GrpcBrokerConfig {
        let consumers = if self.allow_unregistered_consumers {
            tracing::warn!(
                "--grpc-broker-allow-unregistered-consumers: the agent broker accepts Subscribe streams for consumers \
                 that are NOT registered; any client that passes authentication can hold streams for made-up cluster names"
            );
            None
        } else {
            Some(Arc::new(SnapshotRegistry(consumers.clone())) as Arc<dyn ConsumerRegistry>)
        };
        GrpcBrokerConfig {
            max_streams_per_consumer: self.max_streams_per_consumer,
            max_streams: self.max_streams,
            listener: self.listener.clone(),
            consumers,
            ..GrpcBrokerConfig::default()
        }
    }
}

/// Without the `grpc` feature there is no agent broker to configure.
#[cfg(not(feature = "grpc"))]
impl BrokerLimits {
    /// Nothing: this binary was built without the gRPC broker.
    pub fn broker_config(&self, _consumers: &Arc<RegisteredConsumers>) -> crate::broker::GrpcBase {
        crate::broker::GrpcBase::default()
    }
}

/// The server's snapshot of the consumer names as the agent broker's registry.
#[cfg(feature = "grpc")]
#[derive(Debug)]
pub struct SnapshotRegistry(pub Arc<RegisteredConsumers>);

#[cfg(feature = "grpc")]
impl ConsumerRegistry for SnapshotRegistry {
    /// [`RegisteredConsumers::is_registered`].
    ///
    /// # Errors
    /// The store's error (e.g. the database is down), as its text: logged by the broker, never
    /// sent to the agent.
    fn is_registered<'a>(&'a self, consumer: &'a str) -> Registered<'a> {
        Box::pin(
            async move { self.0.is_registered(consumer).await.map_err(|e| RegistryError(e.to_string())) },
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        limits: GrpcLimitsArgs,
    }

    fn parse(args: &[&str]) -> Result<GrpcLimitsArgs, clap::Error> {
        Cli::try_parse_from([&["maestro"], args].concat()).map(|c| c.limits)
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn defaults_match_the_library_defaults() {
        let a = parse(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.broker_listener(), GrpcListenerLimits::default());
        assert_eq!(a.source_grpc(), SourceGrpcLimits::default());
        let b = a.broker();
        let lib = GrpcBrokerConfig::default();
        assert_eq!(
            (b.max_streams_per_consumer, b.max_streams),
            (lib.max_streams_per_consumer, lib.max_streams)
        );
        assert!(!b.allow_unregistered_consumers);
        let d = GrpcLimitsArgs::default();
        assert_eq!((d.broker_listener(), d.source_grpc()), (a.broker_listener(), a.source_grpc()));
    }

    #[test]
    fn flags_are_parsed_and_checked() {
        let a = parse(&[
            "--grpc-max-connection-age",
            "30m",
            "--grpc-max-connection-age-grace",
            "1m",
            "--grpc-server-ping-interval",
            "0s",
            "--grpc-connection-timeout",
            "0s",
            "--grpc-max-receive-message-size",
            "1024",
            "--grpc-broker-allow-unregistered-consumers",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let l = a.source_grpc().listener;
        assert_eq!(l.max_connection_age, Some(Duration::from_secs(1800)));
        assert_eq!(l.max_connection_age_grace, Some(Duration::from_secs(60)));
        assert_eq!((l.ping_interval, l.connection_timeout), (None, None), "0s disables");
        assert_eq!(l.max_receive_message_bytes, 1024);
        assert!(a.broker().allow_unregistered_consumers);
        for bad in [
            &["--grpc-server-ping-timeout", "0s"][..],
            &["--grpc-max-concurrent-streams", "0"],
            &["--grpc-broker-max-streams", "0"],
            &["--grpc-max-connection-age-grace", "1m"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
