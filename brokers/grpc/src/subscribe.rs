//! The Subscribe method, served by the broker itself in front of tonic's generated service
//! (which serves Publish, and Subscribe only when built without this module's [`Routes`]).
//!
//! Why: tonic encodes a streamed response into one buffer kept for the stream's life, so a
//! Subscribe stream held an allocation the size of the largest burst it ever sent (a resync of
//! the agent's bundles): ~14.5 KiB per agent with 100 bundles each, 28.8 MB of the server's
//! heap with 2,000 agents (docs/benchmarks.md, "Scale"). Here each burst of ready events is
//! encoded into an allocation of exactly its size, freed once HTTP/2 has written it, and a
//! stream at rest holds no send buffer at all. Events shared by several subscribers of one
//! consumer are encoded from the shared copy, not cloned first.
//!
//! The wire is gRPC's as tonic writes it (docs/protocol.md §7.1.3): `content-type:
//! application/grpc`, the `subscription-id` response header, each message framed as a
//! 1-byte compression flag (0, uncompressed), a 4-byte big-endian length and the protobuf
//! `io.cloudevents.v1.CloudEvent`; the stream ends with `grpc-status` trailers. A refused
//! Subscribe is a trailers-only response carrying its status.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use futures::future::BoxFuture;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use http_body::Frame;
use maestro_api::grpc_codec::{SmallBufferCodec, YIELD_THRESHOLD};
use maestro_api::pb::cloud_event_service_server::CloudEventServiceServer;
use maestro_api::pb::{self, SubscriptionRequest};
use prost::Message;
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{Codec, Streaming};
use tonic::server::NamedService;
use tower_service::Service;

use crate::SUBSCRIPTION_ID_HEADER;
use crate::server::{BrokerService, Queued};
use crate::stream::SubscribeStream;

/// The HTTP/2 path of the Subscribe method (docs/protocol.md §7.1.3).
pub(crate) const SUBSCRIBE_PATH: &str = "/io.cloudevents.v1.CloudEventService/Subscribe";

/// gRPC's message prefix: compression flag (1 byte) and length (4 bytes, big-endian).
const PREFIX_BYTES: usize = 5;

/// The `CloudEventService` as the broker serves it: Subscribe here, every other path by tonic's
/// generated service.
#[derive(Clone)]
pub(crate) struct Routes {
    generated: CloudEventServiceServer<BrokerService>,
    broker: Arc<BrokerService>,
    /// Largest Subscribe request accepted (bytes).
    max_receive: usize,
    /// Largest message sent (bytes, protobuf encoding); a larger one ends the stream with
    /// `OUT_OF_RANGE`, as tonic's encoder does.
    send_limit: usize,
}

impl Routes {
    /// Serves `broker`'s Subscribe and hands every other call to `generated`.
    pub(crate) fn new(
        generated: CloudEventServiceServer<BrokerService>,
        broker: Arc<BrokerService>,
        max_receive: usize,
        send_limit: usize,
    ) -> Self {
        Routes { generated, broker, max_receive, send_limit }
    }
}

impl NamedService for Routes {
    const NAME: &'static str = <CloudEventServiceServer<BrokerService> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for Routes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != SUBSCRIBE_PATH {
            return self.generated.call(req);
        }
        let (broker, max_receive, send_limit) = (self.broker.clone(), self.max_receive, self.send_limit);
        Box::pin(async move {
            let opened = match decode_request(req, max_receive).await {
                Ok(request) => broker.open_subscription(request).await,
                Err(status) => Err(status),
            };
            Ok(match opened {
                Ok((stream, subscription_id)) => respond(stream, &subscription_id.to_string(), send_limit),
                Err(status) => status.into_http(),
            })
        })
    }
}

/// Reads the one `SubscriptionRequest` of a Subscribe call (uncompressed, at most
/// `max_receive` bytes), keeping the call's headers and extensions (the peer's address and
/// certificates) for authentication.
///
/// # Errors
/// `UNIMPLEMENTED` for a compressed request, `OUT_OF_RANGE` over the size, `INTERNAL` for an
/// undecodable or missing message (tonic's statuses for the same cases).
async fn decode_request(
    req: http::Request<Body>,
    max_receive: usize,
) -> Result<tonic::Request<SubscriptionRequest>, Status> {
    if let Some(encoding) = req.headers().get("grpc-encoding")
        && encoding != "identity"
    {
        return Err(Status::unimplemented(format!(
            "Content is compressed with `{}` which isn't supported",
            encoding.to_str().unwrap_or("?")
        )));
    }
    let (parts, body) = req.into_parts();
    let decoder = SmallBufferCodec::<pb::CloudEvent, SubscriptionRequest>::default().decoder();
    let mut messages = Streaming::new_request(decoder, body, None, Some(max_receive));
    let message = messages.message().await?.ok_or_else(|| Status::internal("Missing request message."))?;
    Ok(tonic::Request::from_http(http::Request::from_parts(parts, message)))
}

/// The response of an accepted Subscribe: its headers and the body sending `stream`.
fn respond(stream: SubscribeStream, subscription_id: &str, send_limit: usize) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(SubscribeBody::new(stream, send_limit)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    if let Ok(value) = HeaderValue::from_str(subscription_id) {
        headers.insert(SUBSCRIPTION_ID_HEADER, value);
    }
    response
}

/// Where a [`SubscribeBody`] stands.
enum State {
    /// Sending events.
    Open,
    /// The events are sent; the trailers with this status are next.
    Ending(Status),
    /// The trailers are sent.
    Done,
}

/// The body of an accepted Subscribe: the stream's events in gRPC framing, each burst of
/// ready events (up to [`YIELD_THRESHOLD`] bytes, or one larger event) in one data frame of
/// exactly its size, then the `grpc-status` trailers.
pub(crate) struct SubscribeBody {
    stream: SubscribeStream,
    send_limit: usize,
    state: State,
}

impl SubscribeBody {
    /// The body sending `stream`'s events, each at most `send_limit` bytes encoded.
    pub(crate) fn new(stream: SubscribeStream, send_limit: usize) -> Self {
        SubscribeBody { stream, send_limit, state: State::Open }
    }

    /// Takes the events ready now, up to [`YIELD_THRESHOLD`] encoded bytes: them and their
    /// encoded sizes, the total size with prefixes, and the status to end with when the
    /// stream ended or an event was too large.
    fn take_ready(&mut self, cx: &mut Context<'_>) -> (Vec<(Queued, usize)>, usize, Option<Status>) {
        let (mut ready, mut total) = (Vec::new(), 0);
        while total < YIELD_THRESHOLD {
            match self.stream.poll_event(cx) {
                Poll::Ready(Some(event)) => {
                    let len = event.encoded_len();
                    if len > self.send_limit || u32::try_from(len).is_err() {
                        let status = Status::out_of_range(format!(
                            "Error, encoded message length too large: found {len} bytes, the limit is: {} bytes",
                            self.send_limit
                        ));
                        return (ready, total, Some(status));
                    }
                    total += PREFIX_BYTES + len;
                    ready.push((event, len));
                }
                Poll::Ready(None) => return (ready, total, Some(Status::ok(""))),
                Poll::Pending => break,
            }
        }
        (ready, total, None)
    }
}

/// `events` in gRPC framing, in one allocation of `total` bytes.
fn encode(events: &[(Queued, usize)], total: usize) -> Bytes {
    let mut buf = Vec::with_capacity(total);
    for (event, len) in events {
        buf.put_u8(0);
        // `take_ready` let in only lengths that fit in 32 bits.
        buf.put_u32(u32::try_from(*len).unwrap_or(u32::MAX));
        event.encode_raw(&mut buf);
    }
    Bytes::from(buf)
}

/// `grpc-status` trailers carrying `status`.
fn trailers(status: &Status) -> HeaderMap {
    let mut map = HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        map.insert(http::HeaderName::from_static("grpc-status"), HeaderValue::from_static("13"));
    }
    map
}

impl http_body::Body for SubscribeBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let State::Open = this.state {
            let (ready, total, end) = this.take_ready(cx);
            if let Some(status) = end {
                this.state = State::Ending(status);
            }
            if !ready.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(encode(&ready, total)))));
            }
        }
        match &this.state {
            State::Open => Poll::Pending,
            State::Ending(status) => {
                let frame = Frame::trailers(trailers(status));
                this.state = State::Done;
                Poll::Ready(Some(Ok(frame)))
            }
            State::Done => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use maestro_api::codec::SpecEventBuilder;
    use maestro_api::grpc;

    use super::*;

    /// A burst is framed as gRPC messages (flag 0, big-endian length, protobuf) back to back,
    /// in one buffer of exactly the size `take_ready` computed, and decodes to the same events.
    #[test]
    fn a_burst_is_framed_in_one_buffer_of_its_exact_size() {
        let events: Vec<(Queued, usize)> = (1..=3)
            .map(|v| {
                let event =
                    Arc::new(grpc::to_proto(&SpecEventBuilder::new("maestro", "r1", v, "c1").build()));
                let len = event.encoded_len();
                (event, len)
            })
            .collect();
        let total = events.iter().map(|(_, len)| PREFIX_BYTES + len).sum();
        let frame = encode(&events, total);
        assert_eq!(frame.len(), total);

        let mut rest = &frame[..];
        for (event, len) in &events {
            assert_eq!(rest[0], 0, "uncompressed");
            let declared = u32::from_be_bytes(rest[1..PREFIX_BYTES].try_into().unwrap()) as usize;
            assert_eq!(declared, *len);
            let decoded = pb::CloudEvent::decode(&rest[PREFIX_BYTES..PREFIX_BYTES + len]).unwrap();
            assert_eq!(&decoded, event.as_ref());
            rest = &rest[PREFIX_BYTES + len..];
        }
        assert!(rest.is_empty());
    }

    /// The trailers carry the status code and, for an error, its message (percent-encoded).
    #[test]
    fn trailers_carry_the_status() {
        assert_eq!(trailers(&Status::ok(""))["grpc-status"], "0");
        let map = trailers(&Status::out_of_range("too large"));
        assert_eq!(map["grpc-status"], "11");
        assert_eq!(map["grpc-message"], "too%20large", "percent-encoded, as gRPC's HTTP/2 mapping says");
    }
}
