//! # maestro-client: a Maestro source client
//!
//! Talks to a Maestro server the way the Go `grpcsource` work client does
//! (docs/protocol.md §12.5):
//! - **writes** (create, update, delete of works) are CloudEvents `Publish`ed to the
//!   source-facing gRPC service ([`SourceClient`]);
//! - **reads** go to the REST API ([`RestClient`]);
//! - **status** arrives on the gRPC `Subscribe` stream ([`SourceClient::watch`]) or by polling
//!   REST.
//!
//! A work is identified by its resource id, a UUIDv5 of source id, consumer and work name
//! ([`ids::resource_id`], docs/protocol.md §9). Input files are parsed by [`manifestwork`].
//!
//! Endpoints may be written `host:port` or as URLs ([`endpoint`]).
//!
//! Both connections can carry a [`BearerToken`] ([`RestOptions::token`],
//! [`SourceClient::connect_with_token`]).

pub mod auth;
pub mod endpoint;
pub mod error;
pub mod ids;
pub mod manifestwork;
pub mod rest;
pub mod search;
pub mod source;
pub mod types;

pub use auth::BearerToken;
pub use endpoint::{GrpcEndpoint, grpc_endpoint, http_url};
pub use error::{ClientError, Result, error_chain};
pub use ids::resource_id;
pub use manifestwork::ManifestWorkInput;
pub use rest::{RestClient, RestOptions};
pub use search::BundleFilter;
pub use source::{
    ApplyOptions, ApplyOutcome, DeleteOutcome, GrpcTls, SourceClient, StatusStream, StatusUpdate,
};
pub use types::{BundleStatus, Consumer, DeadLetter, ErrorBody, FeedbackRow, List, ResourceBundle};
