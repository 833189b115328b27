//! The REST API's limits over real sockets (docs/rest.md, "Limits"): a half-sent header and an
//! idle connection are closed after their timeouts; a body over the limit is refused (413,
//! code 17) whether its length is declared or chunked; resource bundle lists are streamed (the
//! first items reach the client while the store is still held before the second batch) and
//! come out as the buffered list did; lists beyond the concurrency limit wait for a slot and
//! answer 503 (code 9) past the request timeout; a client that stops reading a list loses its
//! slot after the idle timeout; a store failure never shows its text to the client.
//!
//! Stores: SQLite (a file) and, where the store matters, PostgreSQL; the broker is the
//! in-memory one. `four_maximum_pages_stay_under_100_mb` is a measurement, ignored by default.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use maestro_server::rest::RestLimits;
use maestro_server::{RunningServer, ServerConfig};
use maestro_store::{DynStore, NewConsumer, NewResource, Paging, ResourceQuery};
use maestro_tests::{Db, db_url, logging};
use maestro_transport::memory::MemoryBroker;
use serde_json::{Map, Value, json};
use store_wrapper::{Fault, Wrapped};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts a server on `store` with `limits`, on loopback ports.
async fn server(store: DynStore, limits: RestLimits) -> RunningServer {
    let config = ServerConfig {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        rest_limits: limits,
        ..Default::default()
    };
    maestro_server::start(config, store, MemoryBroker::new().source()).await.expect("server")
}

/// Limits with every timeout off and the default body and list limits.
fn no_timeouts() -> RestLimits {
    RestLimits { header_read_timeout: None, idle_timeout: None, request_timeout: None, ..Default::default() }
}

/// Reads from `tcp` until the server closes it (or resets it); the bytes read and how long it
/// took. Panics after 10 s.
async fn read_until_closed(tcp: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open for 10 s"),
            Ok(Ok(0) | Err(_)) => return (out, start.elapsed()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// One HTTP/1.1 request on `tcp` (kept alive), and the response's head and body as text.
async fn request(tcp: &mut TcpStream, head: &str) -> String {
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The JSON body of a raw HTTP/1.1 response with a `Content-Length`.
fn json_body(response: &[u8]) -> Value {
    let text = String::from_utf8_lossy(response);
    let (_, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no body: {text}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_cut_at_the_header_read_timeout() {
    logging();
    let store = maestro_store::open("sqlite::memory:").await.unwrap();
    let limits = RestLimits { header_read_timeout: Some(Duration::from_millis(500)), ..no_timeouts() };
    let server = server(store, limits).await;
    let mut slow = TcpStream::connect(server.http_addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let mut live = TcpStream::connect(server.http_addr).await.unwrap();
    let answer = request(&mut live, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "a complete request is served meanwhile: {answer}");
    let (got, took) = read_until_closed(&mut slow).await;
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"), "the half-sent request was not served");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "closed after {took:?}");
    // The header timer also runs while a keep-alive connection waits for its next request.
    let (_, took) = read_until_closed(&mut live).await;
    assert!(took < Duration::from_secs(3), "the idle keep-alive connection closed after {took:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_busy_ones_kept() {
    logging();
    let store = maestro_store::open("sqlite::memory:").await.unwrap();
    let limits = RestLimits { idle_timeout: Some(Duration::from_millis(600)), ..no_timeouts() };
    let server = server(store, limits).await;
    let mut idle = TcpStream::connect(server.http_addr).await.unwrap();
    let mut busy = TcpStream::connect(server.http_addr).await.unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let answer = request(&mut busy, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (got, took) = read_until_closed(&mut idle).await;
    assert!(got.is_empty(), "nothing was sent on the idle connection");
    assert!(took < Duration::from_millis(100), "it was closed long before ({took:?} left to wait)");
    let answer = request(&mut busy, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "the busy connection is still open: {answer}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_refused_declared_or_chunked() {
    logging();
    let store = maestro_store::open("sqlite::memory:").await.unwrap();
    let limits = RestLimits { max_body_bytes: 1024, ..no_timeouts() };
    let server = server(store.clone(), limits).await;
    let addr = server.http_addr;
    // A declared length over the limit is refused before the body is sent.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = "POST /api/maestro/v1/consumers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
    tcp.write_all(format!("{head}Content-Length: 100000000\r\nX-Operation-ID: op-big\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (got, _) = read_until_closed(&mut tcp).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 413"), "{}", String::from_utf8_lossy(&got));
    let err = json_body(&got);
    assert_eq!((err["code"].as_str(), err["operation_id"].as_str()), (Some("maestro-17"), Some("op-big")));
    assert_eq!(
        err["reason"].as_str(),
        Some("Unable to read request body: it exceeds the limit of 1024 bytes")
    );
    // A chunked body is cut at the limit.
    let name = "x".repeat(2000);
    let body = format!(r#"{{"name":"{name}"}}"#);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let chunked = format!("{head}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    tcp.write_all(chunked.as_bytes()).await.unwrap();
    let (got, _) = read_until_closed(&mut tcp).await;
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert_eq!(json_body(got.as_bytes())["code"].as_str(), Some("maestro-17"));
    // The body was not read to its end: the answer says the connection closes, and it does.
    assert!(got.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{got}");
    // Under the limit, the same request is served (on a new connection).
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let small = r#"{"name":"small"}"#;
    let got = request(&mut tcp, &format!("{head}Content-Length: {}\r\n\r\n{small}", small.len())).await;
    assert!(got.starts_with("HTTP/1.1 201"), "{got}");
    let page = store.list_consumers(&Default::default()).await.unwrap();
    assert_eq!(page.items.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["small"]);
    server.shutdown().await;
}

/// Creates consumer `consumer` and `n` bundles on it, each with a ConfigMap holding `bytes`
/// bytes of data.
async fn seed(store: &DynStore, consumer: &str, n: usize, bytes: usize) {
    store
        .create_consumer(NewConsumer { name: Some(consumer.into()), labels: Default::default() })
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for start in (0..n).step_by(500) {
        for _ in start..(start + 500).min(n) {
            let (store, consumer) = (store.clone(), consumer.to_owned());
            tasks.spawn(async move {
                let id = uuid::Uuid::new_v4().to_string();
                let payload = payload(&id, &consumer, bytes);
                let new = NewResource {
                    id: id.clone(),
                    name: id,
                    consumer_name: consumer,
                    source: "maestro".into(),
                    payload: payload.into(),
                };
                store.create_resource(new).await.unwrap();
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }
}

/// A stored spec event for bundle `id`.
fn payload(id: &str, consumer: &str, bytes: usize) -> Value {
    let manifest = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": id, "namespace": "default"}, "data": {"blob": "x".repeat(bytes)}});
    let mut meta = Map::new();
    meta.insert("name".into(), json!(id));
    meta.insert("labels".into(), json!({"app": "list"}));
    let spec = maestro_api::codec::SpecEventBuilder::new("maestro", id, 1, consumer)
        .metadata(meta)
        .bundle_json(json!({"manifests": [manifest]}))
        .build();
    maestro_api::json::to_value(&spec)
}

/// The list as the buffered handler wrote it: every bundle built as a tree.
async fn buffered_list(store: &DynStore, size: i64) -> Value {
    let q = ResourceQuery { paging: Paging { page: 1, size }, ..Default::default() };
    let page = store.list_resources(&q).await.unwrap();
    let items: Vec<Value> =
        page.items.iter().map(maestro_server::rest::presenters::resource_bundle).collect();
    maestro_server::rest::presenters::list("ResourceBundleList", 1, page.total, items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_lists_are_streamed_on_sqlite() {
    bundle_lists_are_streamed(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_lists_are_streamed_on_postgres() {
    bundle_lists_are_streamed(Db::Postgres).await;
}

/// 350 bundles are four batches: the head and the first 100 items reach the client while the
/// store holds the second batch; then the whole body is the buffered list, byte for byte.
async fn bundle_lists_are_streamed(db: Db) {
    logging();
    let (_guard, url) = db_url(db).await;
    let inner = maestro_store::open(&url).await.unwrap();
    seed(&inner, "c1", 350, 200).await;
    let store = Arc::new(Wrapped::new(inner.clone()));
    store.hold_batch(2);
    let server = server(store.clone(), no_timeouts()).await;
    let url = format!("http://{}/api/maestro/v1/resource-bundles?size=500", server.http_addr);
    let mut resp = maestro_tests::http_get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    store.held.notified().await;
    // Everything the server wrote before it reached the held batch.
    let mut first = Vec::new();
    while let Ok(chunk) = tokio::time::timeout(Duration::from_millis(300), resp.chunk()).await {
        let chunk = chunk.unwrap().expect("the body cannot end while the store is held");
        first.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&first).into_owned();
    assert!(text.starts_with(r#"{"items":[{"#), "{}", &text[..text.len().min(200)]);
    assert_eq!(text.matches(r#""kind":"ResourceBundle","#).count(), 100, "the first batch, and only it");
    assert!(!text.contains(r#""size":"#), "the list is not finished");
    store.release();
    let mut body = first;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (list["size"].as_i64(), list["total"].as_i64(), list["page"].as_i64()),
        (Some(350), Some(350), Some(1))
    );
    assert_eq!(list, buffered_list(&inner, 500).await, "the streamed list is the buffered one");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        serde_json::to_string(&buffered_list(&inner, 500).await).unwrap()
    );
    // Projection, size 0 and a later page stream the same way.
    let get = |q: &'static str| {
        let url = format!("http://{}/api/maestro/v1/resource-bundles?{q}", server.http_addr);
        async move { maestro_tests::http_get(url).await.unwrap().json::<Value>().await.unwrap() }
    };
    let projected = get("size=120&fields=name").await;
    assert_eq!(projected["size"].as_i64(), Some(120));
    assert!(
        projected["items"].as_array().unwrap().iter().all(|i| i.as_object().unwrap().len() == 2),
        "{projected}"
    );
    let count = get("size=0").await;
    assert_eq!(count, json!({"items": [], "kind": "ResourceBundleList", "page": 1, "size": 0, "total": 350}));
    let last = get("page=4&size=100").await;
    assert_eq!(
        (last["size"].as_i64(), last["items"][49]["id"].clone()),
        (Some(50), buffered_list(&inner, 500).await["items"][349]["id"].clone())
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_beyond_the_limit_wait_then_time_out() {
    logging();
    let inner = maestro_store::open("sqlite::memory:").await.unwrap();
    seed(&inner, "c1", 150, 100).await;
    let store = Arc::new(Wrapped::new(inner));
    store.hold_batch(2);
    let limits = RestLimits {
        max_concurrent_lists: 1,
        request_timeout: Some(Duration::from_millis(500)),
        ..no_timeouts()
    };
    let server = server(store.clone(), limits).await;
    let base = format!("http://{}/api/maestro/v1", server.http_addr);
    let http = maestro_tests::http();
    // The first list takes the only slot and keeps it while its body is held.
    let mut first = http.get(format!("{base}/resource-bundles?size=150")).send().await.unwrap();
    store.held.notified().await;
    let started = Instant::now();
    let second =
        http.get(format!("{base}/consumers")).header("X-Operation-ID", "op-wait").send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(second.status(), 503);
    let err: Value = second.json().await.unwrap();
    assert_eq!((err["code"].as_str(), err["operation_id"].as_str()), (Some("maestro-9"), Some("op-wait")));
    assert_eq!(err["reason"].as_str(), Some("The request did not complete within 0.5s"));
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "{took:?}");
    let one = http.get(format!("{base}/resource-bundles/nope")).send().await.unwrap();
    assert_eq!(one.status(), 404, "a get needs no list slot");
    store.release();
    while first.chunk().await.unwrap().is_some() {}
    let third = http.get(format!("{base}/consumers")).send().await.unwrap();
    assert_eq!(third.status(), 200, "the slot is free once the first list is written");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_list_slot() {
    logging();
    let (_dir, url) = maestro_store::testing::sqlite_file().await;
    let store = maestro_store::open(&url).await.unwrap();
    // About 16 MB of list: more than the socket buffers of both ends hold.
    seed(&store, "c1", 2000, 8000).await;
    let limits =
        RestLimits { max_concurrent_lists: 1, idle_timeout: Some(Duration::from_secs(1)), ..no_timeouts() };
    let server = server(store, limits).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.http_addr).await.unwrap();
    stalled
        .write_all(b"GET /api/maestro/v1/resource-bundles?size=2000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    stalled.read_exact(&mut head).await.unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    // The stalled client holds the only slot until the idle timeout closes its connection.
    let started = Instant::now();
    let url = format!("http://{}/api/maestro/v1/consumers", server.http_addr);
    let next = maestro_tests::http_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 200);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(5), "waited {took:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failures_stay_in_the_log_on_sqlite() {
    store_failures_stay_in_the_log(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failures_stay_in_the_log_on_postgres() {
    store_failures_stay_in_the_log(Db::Postgres).await;
}

/// Every REST path whose store call fails answers 500, code 9, the generic reason and the
/// request's operation id; `/readyz` answers 503 with the operation id; the store's text is in
/// no body. A list failing after its first chunk is cut short, never completed wrongly.
async fn store_failures_stay_in_the_log(db: Db) {
    logging();
    let (_guard, url) = db_url(db).await;
    let inner = maestro_store::open(&url).await.unwrap();
    seed(&inner, "c1", 250, 100).await;
    let consumer = inner.get_consumer_by_name("c1").await.unwrap().id;
    let store = Arc::new(Wrapped::new(inner));
    let server = server(store.clone(), no_timeouts()).await;
    let base = format!("http://{}/api/maestro/v1", server.http_addr);
    let http = maestro_tests::http();
    for (retryable, status, reason) in
        [(false, 500, "Unspecified error"), (true, 503, "The service is unavailable for now; retry later")]
    {
        store.fault(Fault::Always { retryable });
        for (i, call) in rest_calls(&http, &base, &consumer).into_iter().enumerate() {
            let op = format!("op-fail-{i}");
            let resp = call.header("X-Operation-ID", &op).send().await.unwrap();
            let got = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert!(!text.contains(store_wrapper::SECRET), "call {i} leaked the store's text: {text}");
            let err: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                (got, err["code"].as_str(), err["reason"].as_str(), err["operation_id"].as_str()),
                (status, Some("maestro-9"), Some(reason), Some(op.as_str())),
                "call {i}, retryable {retryable}"
            );
        }
        let ready =
            http.get(format!("http://{}/readyz", server.http_addr)).header("X-Operation-ID", "op-ready");
        let resp = ready.send().await.unwrap();
        assert_eq!(resp.status(), 503);
        let text = resp.text().await.unwrap();
        assert!(!text.contains(store_wrapper::SECRET), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["operation_id"].as_str(), Some("op-ready"));
    }
    // The rows of a list fail after its first batch: the response is cut short (before its
    // head was flushed, or in its body), never completed.
    store.fault(Fault::BatchesFrom(2));
    match http.get(format!("{base}/resource-bundles")).query(&[("size", "300")]).send().await {
        Err(e) => assert!(e.is_request(), "{e:?}"),
        Ok(resp) => {
            assert_eq!(resp.status(), 200, "the head went with the first batch");
            assert!(resp.bytes().await.is_err(), "the client sees a truncated body");
        }
    }
    store.fault(Fault::BatchesFrom(1));
    let resp = http.get(format!("{base}/resource-bundles?size=300")).send().await.unwrap();
    assert_eq!(resp.status(), 503, "a first batch that fails (the database unreachable) is an error answer");
    store.fault(Fault::None);
    let ok: Value =
        http.get(format!("{base}/resource-bundles?size=300")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ok["size"].as_i64(), Some(250));
    server.shutdown().await;
}

/// A call of every REST path that reaches the store.
fn rest_calls(http: &reqwest::Client, base: &str, consumer: &str) -> Vec<reqwest::RequestBuilder> {
    vec![
        http.get(format!("{base}/consumers")),
        http.post(format!("{base}/consumers")).json(&json!({"name": "c2"})),
        http.get(format!("{base}/consumers/{consumer}")),
        http.patch(format!("{base}/consumers/{consumer}")).json(&json!({"labels": {}})),
        http.patch(format!("{base}/consumers/{consumer}")).json(&json!({})),
        http.delete(format!("{base}/consumers/{consumer}")),
        http.get(format!("{base}/resource-bundles")),
        http.get(format!("{base}/resource-bundles/x")),
        http.delete(format!("{base}/resource-bundles/x")),
    ]
}

/// Peak RSS of this process (kB), and a reset of it to the current RSS.
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn reset_peak_rss() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS (Linux 4.0+)");
    peak_rss_kb()
}

/// Four concurrent 65,500-item pages of ~2.5 KiB bundles: the peak RSS growth of the streamed
/// lists (over HTTP, the clients counting and dropping the bytes), then of the same pages
/// built whole in memory as the handler did before streaming (without HTTP). Set
/// `MAESTRO_LIST_BUNDLES` and `MAESTRO_LIST_BUNDLE_BYTES` to change the sizes, and
/// `MAESTRO_LIST_DB=postgres` to run on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (seeds 65,500 bundles); run with --ignored --nocapture"]
async fn four_maximum_pages_stay_under_100_mb() {
    logging();
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (n, bytes) = (env("MAESTRO_LIST_BUNDLES", 65_500), env("MAESTRO_LIST_BUNDLE_BYTES", 2000));
    let db =
        if std::env::var("MAESTRO_LIST_DB").as_deref() == Ok("postgres") { Db::Postgres } else { Db::Sqlite };
    let (_guard, url) = db_url(db).await;
    let store = maestro_store::open(&url).await.unwrap();
    let seeding = Instant::now();
    seed(&store, "c1", n, bytes).await;
    println!("seeded {n} bundles of {bytes} data bytes on {db:?} in {:?}", seeding.elapsed());
    let server = server(store.clone(), RestLimits::default()).await;
    let url = format!("http://{}/api/maestro/v1/resource-bundles?size=65500", server.http_addr);
    let before = reset_peak_rss();
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = url.clone();
        clients.spawn(async move {
            let mut resp = maestro_tests::http_get(url).await.unwrap();
            let (mut len, mut tail) = (0usize, Vec::new());
            while let Some(chunk) = resp.chunk().await.unwrap() {
                len += chunk.len();
                tail = chunk[chunk.len().saturating_sub(200)..].to_vec();
            }
            (len, String::from_utf8_lossy(&tail).into_owned())
        });
    }
    while let Some(done) = clients.join_next().await {
        let (len, tail) = done.unwrap();
        assert!(tail.contains(&format!(r#""size":{}"#, n.min(65_500))), "{tail}");
        println!("streamed: {len} bytes");
    }
    let streamed = peak_rss_kb().saturating_sub(before);
    println!("streamed: 4 lists in {:?}, peak RSS growth {} MB", started.elapsed(), streamed / 1024);
    let before = reset_peak_rss();
    let started = Instant::now();
    let mut builders = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = store.clone();
        builders.spawn(async move {
            let q = ResourceQuery { paging: Paging { page: 1, size: 65_500 }, ..Default::default() };
            let page = store.list_resources_raw(&q).await.unwrap();
            let items: Vec<_> =
                page.items.iter().map(|r| maestro_server::rest::raw::bundle_item(r).unwrap()).collect();
            serde_json::to_vec(&items).unwrap().len()
        });
    }
    while let Some(done) = builders.join_next().await {
        println!("buffered: {} bytes", done.unwrap());
    }
    let buffered = peak_rss_kb().saturating_sub(before);
    println!(
        "buffered (the former handler): 4 lists in {:?}, peak RSS growth {} MB",
        started.elapsed(),
        buffered / 1024
    );
    assert!(streamed < 100 * 1024, "4 streamed maximum pages grew the RSS by {} MB", streamed / 1024);
    server.shutdown().await;
}

/// A store wrapper that can hold or fail the calls the REST API makes.
mod store_wrapper {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use maestro_store::*;
    use serde_json::Value;
    use sqlx::types::chrono::{DateTime, Utc};
    use tokio::sync::{Notify, watch};

    /// The text of the injected failures; no response may show it.
    pub(crate) const SECRET: &str = "password authentication failed for user \"secret-user\" at 10.1.2.3";

    /// Which calls fail.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Fault {
        /// None.
        None,
        /// Every call the REST API makes, with a failure that may go away (the database
        /// unreachable) or a permanent one.
        Always { retryable: bool },
        /// The raw row reads (`get_resources_raw`) from the n-th on (1-based, counted from
        /// when the fault is set).
        BatchesFrom(usize),
    }

    /// The wrapper.
    #[derive(Debug)]
    pub(crate) struct Wrapped {
        inner: DynStore,
        fault: Mutex<Fault>,
        /// Raw row reads since the fault or the hold was set.
        pub(crate) raw_batches: AtomicUsize,
        /// The raw row read that waits for [`Wrapped::release`] (0: none).
        hold: AtomicUsize,
        open: watch::Sender<bool>,
        /// Notified when the held read is reached.
        pub(crate) held: Notify,
    }

    impl Wrapped {
        pub(crate) fn new(inner: DynStore) -> Self {
            let (open, _) = watch::channel(false);
            Wrapped {
                inner,
                fault: Mutex::new(Fault::None),
                raw_batches: AtomicUsize::new(0),
                hold: AtomicUsize::new(0),
                open,
                held: Notify::new(),
            }
        }

        pub(crate) fn fault(&self, fault: Fault) {
            *self.fault.lock().unwrap() = fault;
            self.raw_batches.store(0, Ordering::SeqCst);
        }

        /// Holds the `n`-th raw row read (1-based) until [`Wrapped::release`].
        pub(crate) fn hold_batch(&self, n: usize) {
            self.raw_batches.store(0, Ordering::SeqCst);
            self.hold.store(n, Ordering::SeqCst);
        }

        pub(crate) fn release(&self) {
            self.open.send_replace(true);
        }

        fn check(&self) -> Result<()> {
            match *self.fault.lock().unwrap() {
                Fault::Always { retryable: true } => {
                    Err(StoreError::Database(sqlx::Error::Protocol(SECRET.into())))
                }
                Fault::Always { retryable: false } => {
                    Err(StoreError::Database(sqlx::Error::Decode(SECRET.into())))
                }
                _ => Ok(()),
            }
        }
    }

    #[async_trait]
    impl Store for Wrapped {
        fn kind(&self) -> &'static str {
            self.inner.kind()
        }
        async fn migrate(&self) -> Result<()> {
            self.inner.migrate().await
        }
        fn spec_changes(&self) -> maestro_store::Feed<maestro_store::PendingSpec> {
            self.inner.spec_changes()
        }
        fn status_changes(&self) -> maestro_store::Feed<maestro_store::StatusEventRow> {
            self.inner.status_changes()
        }
        async fn create_consumer(&self, new: NewConsumer) -> Result<Consumer> {
            self.check()?;
            self.inner.create_consumer(new).await
        }
        async fn get_consumer(&self, id: &str) -> Result<Consumer> {
            self.check()?;
            self.inner.get_consumer(id).await
        }
        async fn get_consumer_by_name(&self, name: &str) -> Result<Consumer> {
            self.inner.get_consumer_by_name(name).await
        }
        async fn list_consumers(&self, query: &ConsumerQuery) -> Result<Page<Consumer>> {
            self.check()?;
            self.inner.list_consumers(query).await
        }
        async fn set_consumer_labels(&self, id: &str, labels: Labels) -> Result<Consumer> {
            self.check()?;
            self.inner.set_consumer_labels(id, labels).await
        }
        async fn delete_consumer(&self, id: &str) -> Result<()> {
            self.check()?;
            self.inner.delete_consumer(id).await
        }
        async fn create_resource(&self, new: NewResource) -> Result<Resource> {
            self.inner.create_resource(new).await
        }
        async fn update_resource(&self, id: &str, expected_version: i64, payload: Value) -> Result<Resource> {
            self.inner.update_resource(id, expected_version, payload).await
        }
        async fn mark_deleting(&self, id: &str) -> Result<Option<Resource>> {
            self.check()?;
            self.inner.mark_deleting(id).await
        }
        async fn get_resource(&self, id: &str) -> Result<Resource> {
            self.check()?;
            self.inner.get_resource(id).await
        }
        async fn get_resources(&self, ids: &[String]) -> Result<Vec<Resource>> {
            self.inner.get_resources(ids).await
        }
        async fn list_resources(&self, query: &ResourceQuery) -> Result<Page<Resource>> {
            self.check()?;
            self.inner.list_resources(query).await
        }
        async fn list_resources_raw(&self, query: &ResourceQuery) -> Result<Page<RawResource>> {
            self.check()?;
            self.inner.list_resources_raw(query).await
        }
        async fn list_resource_ids(&self, query: &ResourceQuery) -> Result<Page<String>> {
            self.check()?;
            self.inner.list_resource_ids(query).await
        }
        async fn get_resources_raw(&self, ids: &[String]) -> Result<Vec<RawResource>> {
            self.check()?;
            let n = self.raw_batches.fetch_add(1, Ordering::SeqCst) + 1;
            if let Fault::BatchesFrom(from) = *self.fault.lock().unwrap()
                && n >= from
            {
                return Err(StoreError::Database(sqlx::Error::Protocol(SECRET.into())));
            }
            if n == self.hold.load(Ordering::SeqCst) {
                self.held.notify_one();
                let mut open = self.open.subscribe();
                let _ = open.wait_for(|open| *open).await;
            }
            self.inner.get_resources_raw(ids).await
        }
        async fn resources_for_consumers(&self, consumers: &[String]) -> Result<Vec<Resource>> {
            self.inner.resources_for_consumers(consumers).await
        }
        async fn resources_for_source(&self, source: &str) -> Result<Vec<Resource>> {
            self.inner.resources_for_source(source).await
        }
        async fn apply_status(&self, write: StatusWrite) -> Result<StatusOutcome> {
            self.inner.apply_status(write).await
        }
        async fn pending_spec_events(&self, limit: i64) -> Result<Vec<SpecEventRow>> {
            self.inner.pending_spec_events(limit).await
        }
        async fn pending_spec_deliveries(&self, limit: i64) -> Result<Vec<PendingSpec>> {
            self.inner.pending_spec_deliveries(limit).await
        }
        async fn complete_spec_events(&self, seqs: &[i64]) -> Result<()> {
            self.inner.complete_spec_events(seqs).await
        }
        async fn status_events_after(&self, after: i64, limit: i64) -> Result<Vec<StatusEventRow>> {
            self.inner.status_events_after(after, limit).await
        }
        async fn last_status_event_seq(&self) -> Result<i64> {
            self.inner.last_status_event_seq().await
        }
        async fn prune_status_events(&self, upto: i64) -> Result<u64> {
            self.inner.prune_status_events(upto).await
        }
        async fn prune_spec_events(&self, done_before: DateTime<Utc>, limit: i64) -> Result<u64> {
            self.inner.prune_spec_events(done_before, limit).await
        }
        async fn add_dead_letter(&self, letter: maestro_store::NewDeadLetter) -> Result<i64> {
            self.inner.add_dead_letter(letter).await
        }
        async fn list_dead_letters(
            &self,
            query: &maestro_store::DeadLetterQuery,
        ) -> Result<Page<maestro_store::DeadLetter>> {
            self.inner.list_dead_letters(query).await
        }
        async fn get_dead_letter(&self, id: i64) -> Result<maestro_store::DeadLetter> {
            self.inner.get_dead_letter(id).await
        }
        async fn delete_dead_letter(&self, id: i64) -> Result<()> {
            self.inner.delete_dead_letter(id).await
        }
        async fn prune_dead_letters(&self, before: DateTime<Utc>, keep: i64) -> Result<u64> {
            self.inner.prune_dead_letters(before, keep).await
        }
        async fn ping(&self) -> Result<()> {
            self.check()?;
            self.inner.ping().await
        }
        async fn backlog(&self) -> Result<maestro_store::Backlog> {
            self.inner.backlog().await
        }
        async fn store_identity(&self) -> Result<String> {
            self.inner.store_identity().await
        }
        async fn confirm_wipe(
            &self,
            consumer: &str,
            ttl: std::time::Duration,
        ) -> Result<chrono::DateTime<chrono::Utc>> {
            self.check()?;
            self.inner.confirm_wipe(consumer, ttl).await
        }
        async fn wipe_confirmed(&self, consumer: &str) -> Result<bool> {
            self.inner.wipe_confirmed(consumer).await
        }
        async fn deleted_resources(&self, consumers: &[String], limit: i64) -> Result<Vec<DeletedResource>> {
            self.inner.deleted_resources(consumers, limit).await
        }
        async fn deleted_resource(&self, id: &str) -> Result<Option<DeletedResource>> {
            self.inner.deleted_resource(id).await
        }
        async fn prune_deleted_resources(&self, keep: std::time::Duration) -> Result<u64> {
            self.inner.prune_deleted_resources(keep).await
        }
    }
}

/// The former buffered handler of `GET /resource-bundles` (whole page read, then written into
/// one body), served by axum on `listener`, for timing against the streamed one.
async fn serve_buffered(store: DynStore, listener: tokio::net::TcpListener) {
    use axum::extract::{Query, State};
    async fn list(
        State(store): State<DynStore>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> Vec<u8> {
        let size = q.get("size").and_then(|s| s.parse().ok()).unwrap_or(100);
        let query = ResourceQuery { paging: Paging { page: 1, size }, ..Default::default() };
        let page = store.list_resources_raw(&query).await.unwrap();
        let items: Vec<_> =
            page.items.iter().map(|r| maestro_server::rest::raw::bundle_item(r).unwrap()).collect();
        let body = json!({"kind": "ResourceBundleList", "page": 1, "size": items.len(), "total": page.total});
        let mut out = serde_json::to_vec(&items).unwrap();
        out.extend_from_slice(body.to_string().as_bytes());
        out
    }
    let app = axum::Router::new()
        .route("/api/maestro/v1/resource-bundles", axum::routing::get(list))
        .with_state(store);
    axum::serve(listener, app).await.unwrap();
}

/// p50 and p95 (ms) of 40 GETs of each of `urls`, taken in turns (after 3 untimed rounds),
/// request to last byte.
async fn time_gets(http: &reqwest::Client, urls: [&str; 2]) -> [(f64, f64); 2] {
    let mut samples = [Vec::new(), Vec::new()];
    for round in 0..43 {
        for (url, samples) in urls.iter().zip(samples.iter_mut()) {
            let started = Instant::now();
            let bytes = http.get(*url).send().await.unwrap().bytes().await.unwrap();
            assert!(bytes.len() > 2, "{url}");
            if round >= 3 {
                samples.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    samples.map(|mut s| {
        s.sort_by(f64::total_cmp);
        (s[s.len() / 2], s[s.len() * 95 / 100])
    })
}

/// Pages of 100, 400 and 6,010 bundles (2,000 data bytes each): the streamed list against the
/// former buffered handler, both over HTTP from the same store. Run it in release
/// (`cargo test --release … -- --ignored --nocapture`); `MAESTRO_LIST_DB=postgres` for
/// PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --release --ignored --nocapture"]
async fn streamed_pages_take_about_as_long_as_buffered_ones() {
    logging();
    let db =
        if std::env::var("MAESTRO_LIST_DB").as_deref() == Ok("postgres") { Db::Postgres } else { Db::Sqlite };
    let (_guard, url) = db_url(db).await;
    let store = maestro_store::open(&url).await.unwrap();
    seed(&store, "c1", 6010, 2000).await;
    let server = server(store.clone(), RestLimits::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let buffered = listener.local_addr().unwrap();
    tokio::spawn(serve_buffered(store, listener));
    let http = maestro_tests::http();
    for size in [100, 400, 6010] {
        let path = format!("/api/maestro/v1/resource-bundles?size={size}");
        let urls = [format!("http://{}{path}", server.http_addr), format!("http://{buffered}{path}")];
        let [(streamed_p50, streamed_p95), (buffered_p50, buffered_p95)] =
            time_gets(&http, [&urls[0], &urls[1]]).await;
        println!(
            "{db:?} page of {size}: streamed p50 {streamed_p50:.1} / p95 {streamed_p95:.1} ms, \
             buffered p50 {buffered_p50:.1} / p95 {buffered_p95:.1} ms"
        );
    }
    server.shutdown().await;
}
