//! Reproduction of the emulator's reconnect stall (issue 24; docs/benchmarks.md, "Known
//! problems"): how the way one StreamingPull stream ends affects what a NEW stream on the same
//! subscription receives of the messages published afterwards — as when an agent restarts and
//! the server answers its resync request.
//!
//! Each case: a first stream (the old client) receives and acks one warm-up message, then ends
//! in the case's way; a second stream (the stock crate's subscriber, acking everything) opens;
//! [`N`] messages are published; the time until the second stream has seen all of them is
//! printed with the number of duplicates.
//!
//! [`dead_streams_repro`] and [`dead_streams_age_repro`]: streams whose TCP connection closed
//! without a half-close (a SIGKILLed client) stay routing targets of the subscription — with
//! the same `client_id` as the new stream, and minutes later — which is why the fault harness
//! gives each fault on the emulator a system of its own (docs/reliability.md, "What runs").
//!
//! Run against the emulator with
//! `cargo test -p maestro-broker-pubsub --lib pull::repro -- --ignored --nocapture --test-threads 1`.

#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::ShutdownBehavior;
use tokio_stream::wrappers::ReceiverStream;

use super::proto::StreamingPullRequest;
use super::proto::subscriber_client::SubscriberClient;
use crate::emulator::Emulator;
use crate::{Admin, PubSubConfig};

const N: usize = 1_000;
const PROJECT: &str = "maestro-repro";

/// How the first stream ends.
#[derive(Debug, Clone, Copy)]
enum End {
    /// The stock crate, as `Pumps::shutdown` did: shutdown token (nack what it holds), then the
    /// reader task (and with it the `MessageStream`) is dropped.
    StockShutdown,
    /// The stock crate: the `MessageStream` dropped without a shutdown.
    StockDrop,
    /// Own client: the response stream dropped (h2 RST_STREAM CANCEL), connection kept.
    OwnReset,
    /// Own client: the whole channel dropped (TCP connection closed), no half-close.
    OwnConnClose,
    /// Own client: the request stream ended (half-close), the response read to its end.
    OwnHalfClose,
    /// This crate's client ([`super::Puller`]) closed with its shutdown token.
    Puller,
}

/// google-cloud-pubsub's subscriber client for the case's endpoint.
async fn stock_subscriber(c: &Case) -> google_cloud_pubsub::client::Subscriber {
    let creds = crate::conn::credentials(&c.config).unwrap();
    let url = c.config.resolve_endpoint().url.unwrap();
    google_cloud_pubsub::client::Subscriber::builder()
        .with_credentials(creds)
        .with_endpoint(url)
        .build()
        .await
        .unwrap()
}

struct Case {
    topic: String,
    sub: String,
    config: PubSubConfig,
}

async fn case(emu: &Emulator, name: &str) -> Case {
    let config = PubSubConfig::maestro_defaults(PROJECT, Some(&emu.endpoint()));
    let admin = Admin::new(&config).await.unwrap();
    let topic = config.topic_name(&format!("t-{name}"));
    let sub = config.subscription_name(&format!("s-{name}"));
    admin.create_topic(&topic).await.unwrap();
    admin.create_subscription(&sub, &topic, "").await.unwrap();
    Case { topic, sub, config }
}

async fn publish(c: &Case, range: std::ops::Range<usize>) {
    let clients = crate::conn::Clients::new(&c.config).await.unwrap();
    let publisher = clients.publisher(&c.topic).await.unwrap();
    let futs: Vec<_> =
        range.map(|i| publisher.publish(Message::new().set_data(i.to_string().into_bytes()))).collect();
    for f in futs {
        f.await.unwrap();
    }
}

/// The `StreamingPull` call in flight, answered by a task of its own: the emulator sends the
/// call's headers with its first message.
type Opening = tokio::task::JoinHandle<
    Result<tonic::Response<tonic::Streaming<super::proto::StreamingPullResponse>>, tonic::Status>,
>;

/// Opens StreamingPull with the own client on the case's subscription under `client_id`.
async fn open_own(
    c: &Case,
    url: &str,
    client_id: &str,
    buffer: usize,
) -> (tonic::transport::Channel, tokio::sync::mpsc::Sender<StreamingPullRequest>, Opening) {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned()).unwrap().connect().await.unwrap();
    let mut client = SubscriberClient::new(channel.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(buffer);
    tx.send(StreamingPullRequest {
        subscription: c.sub.clone(),
        stream_ack_deadline_seconds: 10,
        client_id: client_id.to_owned(),
        ..Default::default()
    })
    .await
    .unwrap();
    let opening = tokio::spawn(async move { client.streaming_pull(ReceiverStream::new(rx)).await });
    (channel, tx, opening)
}

/// Opens a stream with the own client under `client_id`, receives and acks the warm-up message
/// (published here).
async fn own_first(
    c: &Case,
    url: &str,
    client_id: &str,
) -> (
    tonic::transport::Channel,
    tokio::sync::mpsc::Sender<StreamingPullRequest>,
    tonic::Streaming<super::proto::StreamingPullResponse>,
) {
    let (channel, tx, opening) = open_own(c, url, client_id, 8).await;
    publish(c, 0..1).await;
    let mut stream = opening.await.unwrap().unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let ack_ids = first.received_messages.into_iter().map(|m| m.ack_id).collect();
    tx.send(StreamingPullRequest { ack_ids, ..Default::default() }).await.unwrap();
    (channel, tx, stream)
}

/// Runs one case: returns (messages seen on the second stream, seconds until all [`N`] were
/// or it gave up after 90 s, duplicates).
async fn run(emu: &Emulator, end: End, name: &str) -> (usize, f64, usize) {
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("  {:>6.2} s {what}", t0.elapsed().as_secs_f64());
    let c = case(emu, name).await;
    step("created");
    let url = emu.url();
    // The first stream, ended as `end` says; what is kept alive is held until the end.
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    match end {
        End::StockShutdown | End::StockDrop => {
            let subscriber = stock_subscriber(&c).await;
            let mut stream = subscriber
                .subscribe(c.sub.clone())
                .set_shutdown_behavior(ShutdownBehavior::NackImmediately)
                .build();
            let token = stream.shutdown_token();
            let reader = tokio::spawn(async move {
                let (_, h) = stream.next().await.unwrap().unwrap();
                h.ack();
                // Park like the endpoint's reader: waiting for the next message.
                let _ = stream.next().await;
            });
            publish(&c, 0..1).await;
            tokio::time::sleep(Duration::from_millis(500)).await; // the ack flushes
            if matches!(end, End::StockShutdown) {
                token.shutdown().await;
            }
            reader.abort();
            let _ = reader.await;
            keep.push(Box::new(subscriber));
        }
        End::Puller => {
            let clients = crate::conn::Clients::new(&c.config).await.unwrap();
            let settings = super::PullSettings {
                ack_deadline: Duration::from_secs(10),
                max_lease: Duration::from_secs(3600),
                max_outstanding_messages: 1_000,
                max_outstanding_bytes: 100 << 20,
                reconnect_initial_backoff: Duration::from_millis(100),
                reconnect_max_backoff: Duration::from_secs(1),
                close_grace: Duration::from_secs(1),
                reopened: None,
            };
            let mut stream = clients.puller.subscribe(c.sub.clone(), settings);
            publish(&c, 0..1).await;
            let first = stream.next().await.unwrap().unwrap();
            first.handle.ack();
            stream.shutdown_token().shutdown().await;
            keep.push(Box::new(clients));
        }
        End::OwnReset => {
            let (channel, tx, stream) = own_first(&c, &url, "").await;
            drop(stream);
            keep.push(Box::new(channel));
            keep.push(Box::new(tx));
        }
        End::OwnConnClose => {
            let (channel, tx, stream) = own_first(&c, &url, "").await;
            drop((stream, tx, channel));
        }
        End::OwnHalfClose => {
            let (channel, tx, mut stream) = own_first(&c, &url, "").await;
            drop(tx);
            let t = Instant::now();
            let end = tokio::time::timeout(Duration::from_secs(5), async {
                while let Ok(Some(_)) = stream.message().await {}
            })
            .await;
            eprintln!("  half-close: response ended by the emulator after {:?} ({end:?})", t.elapsed());
            keep.push(Box::new(channel));
        }
    }
    step("first stream ended");
    // The second stream: the stock crate, acking everything.
    let subscriber = stock_subscriber(&c).await;
    let mut stream = subscriber.subscribe(c.sub.clone()).build();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok((m, h))) = stream.next().await {
            h.ack();
            let _ = seen_tx.send(String::from_utf8_lossy(&m.data).into_owned());
        }
    });
    // Let the second stream register (the stock crate opens it on the first `next`).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    publish(&c, 1..N + 1).await;
    step("published");
    let (mut seen, mut dups) = (HashSet::new(), 0);
    while seen.len() < N {
        match tokio::time::timeout(
            Duration::from_secs(90) - start.elapsed().min(Duration::from_secs(89)),
            seen_rx.recv(),
        )
        .await
        {
            Ok(Some(d)) => {
                if !seen.insert(d) {
                    dups += 1;
                }
            }
            _ => {
                eprintln!("  gave up: {} of {N} after {:?}", seen.len(), start.elapsed());
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    reader.abort();
    drop(keep);
    (seen.len(), secs, dups)
}

/// Every case, three times each, on one emulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement against the emulator (minutes); run by hand"]
async fn stream_end_repro() {
    let emu = Emulator::start().await;
    for round in 0..3 {
        for end in [
            End::StockShutdown,
            End::StockDrop,
            End::OwnReset,
            End::OwnConnClose,
            End::OwnHalfClose,
            End::Puller,
        ] {
            let name = format!("{end:?}-{round}").to_lowercase();
            let (seen, secs, dups) = run(&emu, end, &name).await;
            eprintln!(
                "{end:?} round {round}: {seen} of {N} on the new stream after {secs:.2} s, {dups} duplicates"
            );
        }
    }
}

/// Opens a stream with the own client under `client_id`, takes and acks one warm-up message,
/// then closes its TCP connection without a half-close (as a SIGKILLed process does).
async fn dead_stream(c: &Case, url: &str, client_id: &str) {
    let (channel, tx, stream) = own_first(c, url, client_id).await;
    // Let the ack reach the emulator before the connection goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop((stream, tx, channel));
}

/// A live stream under `client_id` acking everything; returns (distinct seen, seconds) once
/// `n` messages published after it opened were all seen, or after 60 s.
async fn live_stream(c: &Case, url: &str, client_id: &str, n: usize) -> (usize, f64) {
    let (_channel, tx, opening) = open_own(c, url, client_id, 1024).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    publish(c, 1_000_000..1_000_000 + n).await;
    let mut stream = opening.await.unwrap().unwrap().into_inner();
    let mut seen = HashSet::new();
    while seen.len() < n {
        let left = Duration::from_secs(60).saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.message()).await {
            Ok(Ok(Some(r))) => {
                let mut ack_ids = Vec::new();
                for m in r.received_messages {
                    ack_ids.push(m.ack_id);
                    let d = String::from_utf8_lossy(&m.message.unwrap_or_default().data).into_owned();
                    if d.parse::<usize>().is_ok_and(|i| i >= 1_000_000) {
                        seen.insert(d);
                    }
                }
                tx.send(StreamingPullRequest { ack_ids, ..Default::default() }).await.unwrap();
            }
            _ => break,
        }
    }
    (seen.len(), start.elapsed().as_secs_f64())
}

/// Whether dead streams (TCP closed, no half-close) pile up on a subscription, and whether a
/// new stream under the dead ones' `client_id` retires them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement against the emulator (minutes); run by hand"]
async fn dead_streams_repro() {
    let emu = Emulator::start().await;
    let url = emu.url();
    for round in 0..2 {
        for (dead, same_id) in [(0, false), (1, false), (4, false), (1, true), (4, true)] {
            let name = format!("dead{dead}-{same_id}-{round}");
            let c = case(&emu, &name).await;
            for i in 0..dead {
                let id = if same_id { "agent-x".to_owned() } else { format!("old-{i}") };
                dead_stream(&c, &url, &id).await;
            }
            let live_id = if same_id { "agent-x" } else { "new" };
            let (seen, secs) = live_stream(&c, &url, live_id, 200).await;
            eprintln!(
                "{dead} dead streams, same client id {same_id}, round {round}: {seen} of 200 after {secs:.2} s"
            );
        }
    }
}

/// Whether the emulator retires a dead stream with time: two dead streams, then a live one
/// opened after a wait of 0 s, 3 min and 6 min.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement against the emulator (minutes); run by hand"]
async fn dead_streams_age_repro() {
    let emu = Emulator::start().await;
    let url = emu.url();
    let mut cases = Vec::new();
    for wait in [0u64, 180, 360] {
        let c = case(&emu, &format!("age{wait}")).await;
        for i in 0..2 {
            dead_stream(&c, &url, &format!("old-{i}")).await;
        }
        cases.push((wait, c, Instant::now()));
    }
    for (wait, c, dead_at) in cases {
        tokio::time::sleep(Duration::from_secs(wait).saturating_sub(dead_at.elapsed())).await;
        let (seen, secs) = live_stream(&c, &url, "new", 200).await;
        eprintln!(
            "2 dead streams, live stream {:?} after them: {seen} of 200 after {secs:.2} s",
            dead_at.elapsed()
        );
    }
}
