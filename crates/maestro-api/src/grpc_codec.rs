//! The protobuf codec of the generated gRPC client and server code: tonic's prost codec with
//! smaller initial buffers. tonic allocates its encode buffer eagerly per RPC (8 KiB by
//! default) and keeps it for the life of a streaming response, so with 10,000 agents
//! subscribed the server held ~80 MiB in buffers that an idle stream never fills
//! (docs/benchmarks.md). Buffers still grow as needed for larger messages.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial encode/decode buffer per RPC: 1 KiB (bytes).
pub const BUFFER_SIZE: usize = 1024;
/// Encoded bytes after which a stream yields to the transport: tonic's default, 32 KiB.
pub const YIELD_THRESHOLD: usize = 32 * 1024;

/// A prost codec with [`BUFFER_SIZE`] initial buffers (named by the generated code through
/// `tonic_prost_build::Builder::codec_path`).
#[derive(Debug)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        SmallBufferCodec(PhantomData)
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
