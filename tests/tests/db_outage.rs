//! A PostgreSQL outage (docs/security.md, "Bad input"): with the database behind a TCP proxy
//! that cuts every connection and refuses new ones, `/readyz` answers 503 within 5 s, REST
//! requests fail within a few seconds instead of hanging, and once the database is back the
//! server serves again without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use maestro::stack::{LocalStack, StackConfig};
use maestro_broker_mqtt::testing::TcpProxy;
use maestro_tests::{logging, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_fast_and_recovers_without_a_restart() {
    logging();
    let url = maestro_store::testing::postgres_url().await;
    let parsed = url::Url::parse(&url).expect("url");
    let upstream = format!("{}:{}", parsed.host_str().expect("host"), parsed.port().unwrap_or(5432));
    let proxy = TcpProxy::start(upstream.parse().expect("addr")).await;
    let mut through = parsed.clone();
    through.set_host(Some("127.0.0.1")).expect("host");
    through
        .set_port(Some(proxy.address().rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")))
        .expect("port");
    let stack = LocalStack::start(StackConfig::new(through.as_str())).await.unwrap();
    stack.rest.create_consumer("c1", &Default::default()).await.expect("consumer before the outage");
    let http = maestro_tests::http();
    let readyz = format!("http://{}/readyz", stack.http_addr());
    assert_eq!(http.get(&readyz).send().await.unwrap().status(), 200);

    proxy.interrupt();
    let started = Instant::now();
    let status = http.get(&readyz).send().await.unwrap().status();
    assert_eq!(status, 503, "readyz during the outage");
    assert!(started.elapsed() < Duration::from_secs(6), "readyz took {:?}", started.elapsed());
    let started = Instant::now();
    let consumers = format!("http://{}/api/maestro/v1/consumers", stack.http_addr());
    let resp = http.get(&consumers).send().await.unwrap();
    assert_eq!(resp.status(), 503, "a list during the outage");
    let body: serde_json::Value = resp.json().await.unwrap();
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(!reason.contains("database") && !reason.contains("connect"), "internal text leaked: {reason}");
    assert!(started.elapsed() < Duration::from_secs(12), "the list took {:?}", started.elapsed());

    proxy.resume().await;
    wait_for("readyz after the outage", || async {
        (http.get(&readyz).send().await.ok()?.status() == 200).then_some(())
    })
    .await;
    let consumers = stack.rest.all_consumers().await.expect("served again without a restart");
    assert_eq!(consumers.len(), 1);
    stack.shutdown().await;
}
