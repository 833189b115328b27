//! Mutual TLS against Mosquitto with certificates made by the `openssl` CLI: the source uses
//! file paths, the agent inline PEM data; a status travels agent → source over TLS 1.3.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use maestro_api::codec::StatusEventBuilder;
use maestro_api::payload::ManifestBundleStatus;
use maestro_api::types::Action;
use maestro_broker_mqtt::testing::{Mosquitto, config_for};
use maestro_broker_mqtt::{MqttAgent, MqttSource};
use maestro_transport::conformance::Recorder;
use maestro_transport::{AgentTransport, SourceTransport};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("the openssl CLI");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// CA, server cert (SAN 127.0.0.1/localhost) and client cert, all EC P-256.
fn make_certs(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca =
        vec!["req", "-x509", "-days", "2", "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.pem"];
    ca.extend(ec);
    openssl(dir, &ca);
    for (name, cn) in [("server", "localhost"), ("client", "cluster1-work-agent")] {
        let (subj, key, csr) = (format!("/CN={cn}"), format!("{name}.key"), format!("{name}.csr"));
        let mut req = vec!["req", "-new", "-subj", &subj, "-keyout", &key, "-out", &csr];
        req.extend(ec);
        openssl(dir, &req);
        let ext = if name == "server" {
            "subjectAltName=IP:127.0.0.1,DNS:localhost"
        } else {
            "extendedKeyUsage=clientAuth"
        };
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
    // Mosquitto drops root privileges: make the files readable by its user.
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        let _ = Command::new("chmod").arg("0644").arg(&p).status();
    }
    let _ = Command::new("chmod").arg("0755").arg(dir).status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certs(d);
    let p = |f: &str| d.join(f).display().to_string();
    let broker = Mosquitto::start_with(&format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\ntls_version tlsv1.3\n",
        p("ca.pem"),
        p("server.pem"),
        p("server.key")
    ));
    let mut src_cfg = config_for(&broker.address());
    src_cfg.ca_file = Some(p("ca.pem"));
    src_cfg.client_cert_file = Some(p("client.pem"));
    src_cfg.client_key_file = Some(p("client.key"));
    let source = MqttSource::connect(src_cfg.clone(), "maestro", "maestro-tls").await.unwrap();
    let rec = Recorder::new();
    source.start(rec.clone()).await.unwrap();
    let mut agent_cfg = config_for(&broker.address());
    agent_cfg.topics = maestro_broker_mqtt::MqttTopics::maestro("maestro");
    agent_cfg.ca_data = Some(std::fs::read_to_string(d.join("ca.pem")).unwrap());
    agent_cfg.client_cert_data = Some(std::fs::read_to_string(d.join("client.pem")).unwrap());
    agent_cfg.client_key_data = Some(std::fs::read_to_string(d.join("client.key")).unwrap());
    let agent = MqttAgent::connect(agent_cfg, "cluster1", "cluster1-work-agent").await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), source.subscribed().wait_for(|v| *v > 0))
        .await
        .expect("the source subscribed over TLS")
        .unwrap();
    let ev = StatusEventBuilder {
        source: "cluster1-work-agent",
        resource_id: "r1",
        resource_version: 1,
        cluster_name: "cluster1",
        original_source: "maestro",
        sequence_id: "1834773391719010304",
        status_hash: "h",
        metadata: None,
        action: Action::Update,
    }
    .build(&ManifestBundleStatus::default());
    let start = Instant::now();
    while let Err(e) = agent.publish(&ev).await {
        assert!(e.is_retryable() && start.elapsed() < Duration::from_secs(20), "agent publish over TLS: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rec.wait_for("status over TLS", |evs| !evs.is_empty()).await;
    // Without a client certificate the broker refuses the handshake: never connected.
    let mut no_cert = src_cfg;
    no_cert.client_cert_file = None;
    no_cert.client_key_file = None;
    no_cert.client_id = Some("no-cert".into());
    let refused = MqttSource::connect(no_cert, "maestro", "x").await.unwrap();
    let mut sig = refused.subscribed();
    refused.start(Recorder::new()).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(2), sig.wait_for(|v| *v > 0)).await.is_err());
    assert!(!refused.is_connected());
    for s in [&source, &refused] {
        s.close().await;
    }
    agent.close().await;
}
