//! Graceful shutdown (docs/architecture.md, "Tasks, shutdown and retries"): a REST request in
//! flight when shutdown starts is answered before the server stops; new connections are
//! refused; a source's open Subscribe stream ends; and work that never finishes cannot hold
//! the shutdown past its timeout. Real server on loopback, SQLite in memory, the in-memory
//! broker.

use std::time::Duration;

use maestro_api::pb::SubscriptionRequest;
use maestro_api::pb::cloud_event_service_client::CloudEventServiceClient;
use maestro_server::{RunningServer, ServerConfig};
use maestro_store::DynStore;
use maestro_transport::memory::MemoryBroker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Generous bound for anything that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(10);

async fn start(shutdown_timeout: Duration) -> RunningServer {
    let store: DynStore = maestro_store::open("sqlite::memory:").await.expect("store");
    let config = ServerConfig {
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        shutdown_timeout,
        ..Default::default()
    };
    maestro_server::start(config, store, MemoryBroker::new().source()).await.expect("server")
}

/// A consumer creation in flight: its head sent with `expect: 100-continue`, the server's
/// `100 Continue` read (so the request is being served, its body awaited), and half the body
/// sent. Returns the connection and the other half.
async fn half_sent_post(server: &RunningServer) -> (TcpStream, &'static [u8]) {
    const BODY: &[u8] = br#"{"name":"late-consumer"}"#;
    let mut tcp = TcpStream::connect(server.http_addr).await.expect("connect");
    let head = format!(
        "POST /api/maestro/v1/consumers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        BODY.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        timeout(PROMPTLY, tcp.read_exact(&mut byte)).await.expect("100 Continue in time").expect("read");
        interim.push(byte[0]);
    }
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&interim));
    tcp.write_all(&BODY[..5]).await.expect("first half");
    (tcp, &BODY[5..])
}

/// Waits until the listener at `addr` refuses connections (it closes when shutdown starts).
async fn wait_refused(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + PROMPTLY;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "{addr} still accepts connections");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The request in flight is answered (201) after shutdown began, and shutdown returns once it
/// is; the REST listener stops accepting meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_is_answered_before_the_server_stops() {
    let server = start(PROMPTLY).await;
    let http_addr = server.http_addr;
    let (mut tcp, rest) = half_sent_post(&server).await;
    let shutdown = tokio::spawn(server.shutdown());
    wait_refused(http_addr).await;
    assert!(!shutdown.is_finished(), "shutdown did not wait for the request in flight");
    tcp.write_all(rest).await.expect("second half");
    let mut response = Vec::new();
    timeout(PROMPTLY, tcp.read_to_end(&mut response)).await.expect("answered").expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    timeout(PROMPTLY, shutdown).await.expect("shutdown ends after the request").expect("task");
}

/// A request that never completes holds the shutdown only until its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_never_ends_holds_shutdown_only_until_its_timeout() {
    let limit = Duration::from_millis(300);
    let server = start(limit).await;
    let (_tcp, _never_sent) = half_sent_post(&server).await;
    let started = Instant::now();
    timeout(PROMPTLY, server.shutdown()).await.expect("shutdown gave up on the stuck request");
    assert!(started.elapsed() >= limit, "shutdown returned before its timeout: {:?}", started.elapsed());
}

/// A source's Subscribe stream ends when the server shuts down, instead of keeping it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_streams_end_on_shutdown() {
    let server = start(PROMPTLY).await;
    let mut client =
        CloudEventServiceClient::connect(format!("http://{}", server.grpc_addr)).await.expect("connect");
    let request = SubscriptionRequest { source: "shutdown-test".into(), ..Default::default() };
    let mut stream = client.subscribe(request).await.expect("subscribe").into_inner();
    timeout(PROMPTLY, server.shutdown()).await.expect("shutdown with a subscribed source");
    let end = timeout(PROMPTLY, async {
        loop {
            match stream.message().await {
                Ok(Some(_heartbeat)) => continue,
                other => return other,
            }
        }
    });
    let end = end.await.expect("the stream ended");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}
