//! How `maestro` reports a failure to start: one line on stderr, each cause once.

use std::process::Command;

/// A missing certificate file is named once, with the OS's reason once (the error chain
/// repeated both three times before `maestro_client::error_chain`), and the exit status is 1.
#[test]
fn a_missing_certificate_is_reported_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().expect("UTF-8 path");
    let out = Command::new(env!("CARGO_BIN_EXE_maestro"))
        .args(["server", "--db", "sqlite::memory:", "--http-addr", "127.0.0.1:0"])
        .args(["--grpc-addr", "127.0.0.1:0", "--grpc-broker-addr", "127.0.0.1:0", "--enable-https"])
        .args(["--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0"])
        .args(["--https-cert-file", missing, "--https-key-file", missing])
        .env("RUST_LOG", "off")
        .output()
        .expect("run maestro");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("error: ")).expect("an error line");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(line.matches(missing).count(), 1, "{line}");
    assert_eq!(line.matches("No such file or directory").count(), 1, "{line}");
    assert!(line.starts_with("error: starting the server: REST TLS: cannot read"), "{line}");
}
