use clap::CommandFactory;
use clap::error::ErrorKind;

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("maestro-cli").chain(args.iter().copied()))
}

#[test]
fn definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn globals_have_defaults_and_can_follow_the_command() {
    let cli = parse(&["list", "--output", "json", "--http-endpoint", "http://h:1"]).expect("parse");
    assert_eq!(cli.output, OutputFormat::Json);
    assert_eq!(cli.http_endpoint, "http://h:1");
    if std::env::var_os("MAESTRO_GRPC_ENDPOINT").is_none() {
        assert_eq!(cli.grpc_endpoint, "localhost:8090");
    }
    if std::env::var_os("MAESTRO_SOURCE_ID").is_none() {
        assert_eq!(cli.source_id, "maestro-cli");
    }
    assert!(!cli.verbose);
}

#[test]
fn apply() {
    let cli =
        parse(&["apply", "-f", "w.yaml", "--consumer", "c1", "--watch", "--timeout", "30s"]).expect("parse");
    let Command::Apply(a) = cli.command else { panic!("not apply") };
    assert_eq!((a.manifest_file.as_str(), a.consumer.as_str(), a.name), ("w.yaml", "c1", None));
    assert!(a.watch);
    assert_eq!(a.timeout, Duration::from_secs(30));
    let a = parse(&["apply", "-f", "w.yaml", "-c", "c1"]).expect("parse");
    let Command::Apply(a) = a.command else { panic!("not apply") };
    assert_eq!(a.timeout, Duration::from_secs(300));
    assert_eq!(a.poll_interval, Duration::from_millis(250));
    assert_eq!(
        parse(&["apply", "-f", "w.yaml"]).expect_err("consumer").kind(),
        ErrorKind::MissingRequiredArgument
    );
    let err = parse(&["apply", "-f", "w", "-c", "c", "--timeout", "soon"]).expect_err("duration");
    assert_eq!(err.kind(), ErrorKind::ValueValidation);
}

#[test]
fn get_by_name_or_id() {
    let g = parse(&["get", "--name", "web", "--consumer", "c1"]).expect("parse");
    assert!(matches!(g.command, Command::Get(GetArgs { id: None, .. })));
    let g = parse(&["get", "--id", "abc"]).expect("parse");
    assert!(matches!(g.command, Command::Get(GetArgs { id: Some(_), name: None, .. })));
    assert!(parse(&["get"]).is_err());
    assert!(parse(&["get", "--name", "web"]).is_err());
    assert!(parse(&["get", "--id", "x", "--name", "web", "--consumer", "c"]).is_err());
    assert!(parse(&["get", "--search", "name = 'web'"]).is_ok());
    assert!(parse(&["get", "--search", "name = 'web'", "--id", "x"]).is_err());
    assert!(parse(&["get", "--search", "name = 'web'", "--name", "web", "--consumer", "c"]).is_err());
}

#[test]
fn list_delete_wait() {
    let l = parse(&["list", "--consumer", "c1", "--source", "s"]).expect("parse");
    assert!(matches!(
        l.command,
        Command::List(ListArgs { consumer: Some(_), source: Some(_), search: None, status: None })
    ));
    let l = parse(&["list", "--search", "name = 'a b'"]).expect("parse");
    assert!(matches!(l.command, Command::List(ListArgs { search: Some(s), .. }) if s == "name = 'a b'"));
    let d = parse(&["delete", "-n", "web", "-c", "c1", "--watch"]).expect("parse");
    assert!(matches!(d.command, Command::Delete(DeleteArgs { watch: true, .. })));
    assert!(parse(&["delete", "-n", "web"]).is_err());
    for arg in ["Applied", "available", "Applied AND Job:Complete"] {
        let w =
            parse(&["wait", "-n", "web", "-c", "c1", "--condition", arg, "--timeout", "2m"]).expect("parse");
        let Command::Wait(w) = w.command else { panic!("not wait") };
        assert_eq!((w.condition.as_str(), w.timeout), (arg, Duration::from_secs(120)));
    }
    let w = parse(&["wait", "-n", "w", "-c", "c", "--for", "Deleted", "--watch"]).expect("parse");
    assert!(matches!(w.command, Command::Wait(WaitArgs { watch: true, .. })));
}

#[test]
fn consumer_commands() {
    let c = parse(&["consumer", "create", "c1", "--label", "env=dev", "-l", "team=a=b"]).expect("parse");
    let Command::Consumer(ConsumerCommand::Create { name, label }) = c.command else { panic!("not create") };
    assert_eq!(name, "c1");
    assert_eq!(label, vec![("env".into(), "dev".into()), ("team".into(), "a=b".into())]);
    assert!(parse(&["consumer", "create", "c1", "--label", "novalue"]).is_err());
    assert!(matches!(
        parse(&["consumer", "list"]).expect("list").command,
        Command::Consumer(ConsumerCommand::List)
    ));
    assert!(parse(&["consumer", "get"]).is_err());
    assert!(parse(&["consumer", "delete", "c1"]).is_ok());
}

/// `--grpc-token-file` needs `--grpc-ca-file` and excludes a client certificate;
/// `--http-token-file` stands alone.
#[test]
fn token_files() {
    let ok =
        parse(&["list", "--http-token-file", "h.tok", "--grpc-token-file", "g.tok", "--grpc-ca-file", "ca"])
            .expect("parse");
    assert_eq!(ok.http_token_file.as_deref(), Some(std::path::Path::new("h.tok")));
    assert_eq!(ok.grpc_token_file.as_deref(), Some(std::path::Path::new("g.tok")));
    let both = [
        "list",
        "--grpc-token-file",
        "g.tok",
        "--grpc-ca-file",
        "ca",
        "--grpc-client-cert-file",
        "me.crt",
        "--grpc-client-key-file",
        "me.key",
    ];
    let err = parse(&both).expect_err("token and certificate");
    assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    assert!(err.to_string().contains("--grpc-client-cert-file"), "{err}");
    if std::env::var_os("MAESTRO_GRPC_CA_FILE").is_none() {
        let err = parse(&["list", "--grpc-token-file", "g.tok"]).expect_err("needs a CA");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert!(err.to_string().contains("--grpc-ca-file"), "{err}");
    }
}

#[test]
fn help_mentions_env_and_defaults() {
    let help = Cli::command().render_long_help().to_string();
    for needle in [
        "MAESTRO_GRPC_ENDPOINT",
        "MAESTRO_HTTP_ENDPOINT",
        "MAESTRO_SOURCE_ID",
        "localhost:8090",
        "MAESTRO_HTTP_TOKEN_FILE",
        "MAESTRO_GRPC_TOKEN_FILE",
        "--grpc-token-file",
        "Exit codes:",
        "3  timeout",
        "5  server unreachable",
    ] {
        assert!(help.contains(needle), "help lacks {needle}: {help}");
    }
    assert_eq!(parse(&["--help"]).expect_err("help").kind(), ErrorKind::DisplayHelp);
}

/// The HyperFleet Job command line parses: `host:port` endpoints, `--results-path`.
/// The HyperFleet CLI's spellings of the TLS and token flags are accepted; `--grpc-insecure`
/// refuses TLS and token flags, and an inline token and a token file exclude each other.
#[test]
fn hyperfleet_flag_spellings() {
    let cli = parse(&[
        "list",
        "--grpc-server-ca-file=ca.crt",
        "--grpc-client-token-file=token",
        "--grpc-broker-ca-file=broker-ca.crt",
    ])
    .expect("parse");
    assert_eq!(cli.grpc_ca_file.as_deref(), Some(std::path::Path::new("ca.crt")));
    assert_eq!(cli.grpc_token_file.as_deref(), Some(std::path::Path::new("token")));
    assert_eq!(cli.grpc_broker_ca_file.as_deref(), Some(std::path::Path::new("broker-ca.crt")));
    let cli = parse(&["list", "--grpc-server-ca-file=ca.crt", "--grpc-client-token=t0k3n"]).expect("parse");
    assert_eq!(cli.grpc_client_token.as_deref(), Some("t0k3n"));
    assert!(parse(&["list", "--grpc-insecure"]).expect("parse").grpc_insecure);
    for bad in [
        &["list", "--grpc-insecure", "--grpc-ca-file=ca.crt"][..],
        &["list", "--grpc-client-token=t"],
        &["list", "--grpc-ca-file=ca.crt", "--grpc-client-token=t", "--grpc-token-file=f"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn hyperfleet_command_line() {
    let cli = parse(&[
        "apply",
        "--manifest-file",
        "work.yaml",
        "--consumer",
        "cluster-1",
        "--watch",
        "--timeout=5m",
        "--grpc-endpoint=maestro-grpc:8090",
        "--http-endpoint=maestro-http:8000",
        "--results-path=/results/status.json",
    ])
    .expect("parse");
    assert_eq!(
        (cli.grpc_endpoint.as_str(), cli.http_endpoint.as_str()),
        ("maestro-grpc:8090", "maestro-http:8000")
    );
    let Command::Apply(a) = cli.command else { panic!("not apply") };
    assert_eq!(a.results.results_path.as_deref(), Some(std::path::Path::new("/results/status.json")));
    assert!(a.watch && !a.dry_run);
    let help = Cli::command().find_subcommand_mut("apply").expect("apply").render_long_help().to_string();
    assert!(help.contains("RESULTS_PATH") && help.contains("Exit codes:"), "{help}");
}

#[test]
fn delete_all_and_dry_run() {
    let d = parse(&["delete", "--all", "-c", "c1", "--any-source", "--dry-run"]).expect("parse");
    let Command::Delete(d) = d.command else { panic!("not delete") };
    assert!(d.all && d.any_source && d.dry_run && d.name.is_none());
    assert_eq!(
        parse(&["delete", "-c", "c1"]).expect_err("name or all").kind(),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        parse(&["delete", "-n", "w", "-c", "c1", "--all"]).expect_err("both").kind(),
        ErrorKind::ArgumentConflict
    );
    assert!(parse(&["delete", "-n", "w", "-c", "c1", "--any-source"]).is_err());
    assert!(parse(&["delete", "--all"]).is_err());
}

#[test]
fn list_status_and_formats_and_version() {
    for (arg, want) in [
        ("Applied", WorkStatus::Applied),
        ("inprogress", WorkStatus::InProgress),
        ("Deleting", WorkStatus::Deleting),
    ] {
        let l = parse(&["list", "--status", arg]).expect("parse");
        assert!(matches!(l.command, Command::List(ListArgs { status: Some(s), .. }) if s == want));
    }
    assert_eq!(parse(&["list", "--status", "Ready"]).expect_err("bad").kind(), ErrorKind::InvalidValue);
    assert_eq!(parse(&["list", "-o", "name"]).expect("name").output, OutputFormat::Name);
    assert_eq!(parse(&["list", "-o", "wide"]).expect("wide").output, OutputFormat::Wide);
    assert!(matches!(parse(&["version"]).expect("version").command, Command::Version));
}
