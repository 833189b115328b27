//! Authentication and authorization for Maestro's listeners (docs/security.md).
//!
//! - [`Identity`]: who is calling — a user name and groups, from a verified client certificate
//!   (subject CN and O, as Go Maestro reads them) or from a bearer token's claims;
//! - [`jwt`]: bearer tokens checked as JWTs (RS256/ES256) against keys from a JWKS file or URL;
//! - [`policy`]: the authorization policy file — which identities may act as which sources, which
//!   consumer an agent identity is, and which identities may read or change what over REST.
//!
//! Every listener has a [`Gate`]: it authenticates with one [`AuthnType`] (`--grpc-authn-type`
//! and friends) and checks identities against the policy.

pub mod jwt;
pub mod kube;
pub mod policy;

mod error;
mod gate;
mod identity;

pub use error::AuthError;
pub use gate::Gate;
pub use identity::{AuthnType, Identity};
