//! The generated types and gRPC client of `proto/google/pubsub/v1/pubsub.proto` (a subset of
//! Google's Subscriber service).

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

tonic::include_proto!("google.pubsub.v1");
