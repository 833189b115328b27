//! Unit tests of the command line: flags parse into the settings the server and agent take.

use super::*;
use clap::CommandFactory;

#[test]
fn cli_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn plaintext_listeners_default_to_loopback() {
    let parse = |args: &[&str]| {
        let argv = [&["maestro", "server"], args].concat();
        let Command::Server(a) = Cli::try_parse_from(argv).expect("parse").command else { panic!("server") };
        server_settings(a).expect("settings")
    };
    let s = parse(&[]);
    assert_eq!(s.server.http_addr.to_string(), "127.0.0.1:8000");
    assert_eq!(s.server.grpc_addr.to_string(), "127.0.0.1:8090");
    assert_eq!(s.broker.grpc_bind.to_string(), "127.0.0.1:8091");
    let s =
        parse(&["--grpc-tls-cert-file", "c", "--grpc-tls-key-file", "k", "--grpc-server-bindport", "9090"]);
    assert_eq!(s.server.grpc_addr.to_string(), "0.0.0.0:9090", "a TLS listener binds every interface");
    assert_eq!(s.server.http_addr.to_string(), "127.0.0.1:8000");
    let s = parse(&["--server-hostname", "0.0.0.0", "--http-server-bindport", "8080"]);
    assert_eq!(s.server.http_addr.to_string(), "0.0.0.0:8080");
    let s = parse(&["--http-addr", "10.0.0.1:1234"]);
    assert_eq!(s.server.http_addr.to_string(), "10.0.0.1:1234");
}

/// The Go agent chart's arguments parse (`charts/maestro-agent/templates/deployment.yaml`
/// with its defaults, as the reference documents them).
#[test]
fn go_agent_chart_arguments_parse() {
    let argv = [
        "maestro",
        "agent",
        "--consumer-name=cluster1",
        "--workload-source-driver=mqtt",
        "--workload-source-config=/secrets/mqtt/config.yaml",
        "--cloudevents-client-id=cluster1-work-agent",
        "--disable-leader-election",
        "--kube-api-qps=50",
        "--kube-api-burst=100",
        "--appliedmanifestwork-eviction-grace-period=60m",
        "--status-sync-interval=10s",
        "--alsologtostderr",
        "-v=2",
    ];
    let cli = Cli::try_parse_from(argv).expect("Go's agent arguments");
    assert_eq!(cli.default_log_filter(), "debug");
    let Command::Agent(a) = cli.command else { panic!("agent") };
    let s = agent_settings(a);
    assert_eq!((s.consumer.as_str(), s.agent_id.as_str()), ("cluster1", "cluster1-work-agent"));
    assert_eq!(s.wipe_guard.appliedmanifestwork_eviction_grace_period, std::time::Duration::from_secs(3600));
    assert_eq!(s.broker.kind, BrokerKind::Mqtt);
    assert_eq!(s.broker.config_file.as_deref(), Some("/secrets/mqtt/config.yaml"));
}

/// The gRPC limit flags reach both listeners' settings (docs/security.md, "Limits").
#[test]
fn grpc_limit_flags_reach_both_listeners() {
    let argv = [
        "maestro",
        "server",
        "--grpc-max-subscriptions",
        "5",
        "--grpc-broker-max-streams",
        "7",
        "--grpc-max-receive-message-size",
        "1000",
        "--grpc-broker-allow-unregistered-consumers",
    ];
    let Command::Server(a) = Cli::try_parse_from(argv).expect("parse").command else { panic!("server") };
    let s = server_settings(a).expect("settings");
    assert_eq!(s.server.grpc_limits.max_subscriptions, 5);
    assert_eq!(s.server.grpc_limits.listener.max_receive_message_bytes, 1000);
    assert_eq!((s.grpc_broker.max_streams, s.grpc_broker.listener.max_receive_message_bytes), (7, 1000));
    assert!(s.grpc_broker.allow_unregistered_consumers);
}

/// `--embedded-mqtt` starts a broker only with `--broker mqtt`; with another broker it
/// was silently ignored.
#[test]
fn embedded_mqtt_needs_the_mqtt_broker() {
    let settings = |broker: &str| {
        let argv = ["maestro", "server", "--broker", broker, "--embedded-mqtt", "127.0.0.1:0"];
        let Command::Server(a) = Cli::try_parse_from(argv).expect("parse").command else { panic!("server") };
        server_settings(a)
    };
    for broker in ["grpc", "pubsub"] {
        let err = settings(broker).expect_err(broker).to_string();
        assert_eq!(err, format!("--embedded-mqtt needs --broker mqtt (the broker is {broker})"));
    }
    assert!(settings("mqtt").is_ok());
}

#[test]
fn bad_flags_are_rejected() {
    assert!(Cli::try_parse_from(["maestro", "server", "--broker", "kafka"]).is_err());
    assert!(Cli::try_parse_from(["maestro", "server", "--http-addr", "nowhere"]).is_err());
    let Command::Server(a) =
        Cli::try_parse_from(["maestro", "server", "--enable-https"]).expect("parse").command
    else {
        panic!("server")
    };
    let refused = server_settings(a).expect_err("HTTPS needs both files").to_string();
    assert!(refused.contains("--https-cert-file and --https-key-file"), "{refused}");
    let Command::Server(a) =
        Cli::try_parse_from(["maestro", "server", "--enable-https=false"]).expect("Go's form").command
    else {
        panic!("server")
    };
    assert!(server_settings(a).expect("settings").server.http_tls.is_none());
    let https =
        ["maestro", "server", "--enable-https", "--https-cert-file", "c.pem", "--https-key-file", "k.pem"];
    let Command::Server(a) = Cli::try_parse_from(https).expect("parse").command else { panic!("server") };
    let tls = server_settings(a).expect("settings").server.http_tls.expect("TLS files");
    assert_eq!((tls.cert.to_str(), tls.key.to_str()), (Some("c.pem"), Some("k.pem")));
    assert!(Cli::try_parse_from(["maestro", "server", "--grpc-tls-cert-file", "c.pem"]).is_err());
    let grpc = ["maestro", "server", "--grpc-tls-cert-file", "c", "--grpc-tls-key-file", "k"];
    let mtls = [&grpc[..], &["--grpc-client-ca-file", "ca"]].concat();
    let Command::Server(a) = Cli::try_parse_from(mtls).expect("parse").command else { panic!("server") };
    let tls = server_settings(a).expect("settings").server.grpc_tls.expect("gRPC TLS files");
    assert_eq!(tls.client_ca.as_deref().and_then(|p| p.to_str()), Some("ca"));
    let broker =
        ["maestro", "server", "--grpc-broker-tls-cert-file", "b.crt", "--grpc-broker-tls-key-file", "b.key"];
    let Command::Server(a) = Cli::try_parse_from(broker).expect("parse").command else { panic!("server") };
    let tls = server_settings(a).expect("settings").broker.grpc_tls.expect("broker TLS files");
    assert_eq!((tls.cert.to_str(), tls.client_ca), (Some("b.crt"), None));
    assert!(Cli::try_parse_from(["maestro", "server", "--grpc-broker-client-ca-file", "ca"]).is_err());
    assert!(Cli::try_parse_from(["maestro", "agent"]).is_err(), "consumer name is required");
    assert!(Cli::try_parse_from(["maestro", "server", "--grpc-authn-type", "kerberos"]).is_err());
    assert!(
        Cli::try_parse_from(["maestro", "server", "--jwks-file", "a", "--jwks-url", "http://b"]).is_err()
    );
    let ok = Cli::try_parse_from(["maestro", "agent", "--consumer-name", "c1", "--cluster", "simulated"]);
    assert!(ok.is_ok());
    let init = Cli::try_parse_from([
        "maestro",
        "pubsub",
        "init",
        "--pubsub-project",
        "maestro-test",
        "--consumer",
        "c1,c2",
        "--consumer",
        "c3",
    ]);
    match init.map(|c| c.command) {
        Ok(Command::Pubsub(PubSubCommand::Init(a))) => assert_eq!(a.consumers, ["c1", "c2", "c3"]),
        other => panic!("unexpected parse: {other:?}"),
    }
}
