//! [`Gate`]: one listener's authentication and authorization.

use crate::jwt::JwtVerifier;
use crate::kube::KubeReviewer;
use crate::policy::{PolicyHandle, RestRole, SourceVerb};
use crate::{AuthError, AuthnType, Identity};

/// A listener's gate: how callers authenticate ([`AuthnType`]) and the policy their
/// identity is checked against (docs/security.md). Cheap to clone.
///
/// An open gate ([`Gate::open`], `--…-authn-type none`) makes every caller
/// [`Identity::anonymous`] and allows everything: for the embedded demo and tests only.
#[derive(Debug, Clone)]
pub struct Gate {
    authn: AuthnType,
    jwt: Option<JwtVerifier>,
    policy: PolicyHandle,
    /// Kubernetes reviews: bearer tokens by TokenReview and sources by SubjectAccessReview, as
    /// Go Maestro (docs/security.md, "Kubernetes reviews").
    kube: Option<KubeReviewer>,
}

impl Gate {
    /// A gate that authenticates nobody and allows everything.
    pub fn open() -> Gate {
        Gate {
            authn: AuthnType::None,
            jwt: None,
            policy: PolicyHandle::fixed(Default::default()),
            kube: None,
        }
    }

    /// A gate authenticating with `authn` and authorizing with `policy`.
    ///
    /// # Errors
    /// [`AuthError::Config`] for `token` without a JWT verifier (no JWKS configured).
    pub fn new(authn: AuthnType, jwt: Option<JwtVerifier>, policy: PolicyHandle) -> Result<Gate, AuthError> {
        if authn == AuthnType::Token && jwt.is_none() {
            return Err(AuthError::Config(
                "token authentication needs a key set: --jwks-file or --jwks-url".to_owned(),
            ));
        }
        Ok(Gate { authn, jwt, policy, kube: None })
    }

    /// A gate that asks the Kubernetes API, as Go Maestro's source gRPC API does with
    /// `--grpc-authorizer-config`: `token` callers are authenticated by a TokenReview, and
    /// whether an identity may act as a source by a SubjectAccessReview (`pub`/`sub` on
    /// `/sources/<source>`). Consumers and REST roles still come from `policy`.
    pub fn kubernetes(authn: AuthnType, reviewer: KubeReviewer, policy: PolicyHandle) -> Gate {
        Gate { authn, jwt: None, policy, kube: Some(reviewer) }
    }

    /// How this gate authenticates.
    pub fn authn(&self) -> AuthnType {
        self.authn
    }

    /// Whether every caller is allowed everything (`none`).
    pub fn is_open(&self) -> bool {
        self.authn == AuthnType::None
    }

    /// Authenticates a caller from the DER certificate its TLS connection verified (if any) and
    /// its `Authorization` header or `authorization` metadata value (if any).
    ///
    /// # Errors
    /// [`AuthError::MissingCredentials`] when the credential this gate needs is absent;
    /// [`AuthError::InvalidCredentials`] when it is refused (the detail is for logs only).
    pub async fn authenticate(
        &self,
        peer_cert: Option<&[u8]>,
        authorization: Option<&str>,
    ) -> Result<Identity, AuthError> {
        match self.authn {
            AuthnType::None => Ok(Identity::anonymous()),
            AuthnType::Mtls => {
                let der = peer_cert.ok_or(AuthError::MissingCredentials)?;
                let peer = maestro_tls::peer_identity(der)
                    .map_err(|e| AuthError::InvalidCredentials(e.to_string()))?;
                Ok(peer.into())
            }
            AuthnType::Token => {
                let header = authorization.ok_or(AuthError::MissingCredentials)?;
                match (&self.jwt, &self.kube) {
                    (Some(jwt), _) => jwt.verify_bearer(header),
                    (None, Some(kube)) => kube.review_token(bearer_token(header)?, &[]).await,
                    (None, None) => Err(AuthError::MissingCredentials),
                }
            }
        }
    }

    /// Whether `id` may act as `source` for `verb` (always, on an open gate).
    pub async fn may_act_as_source(&self, id: &Identity, source: &str, verb: SourceVerb) -> bool {
        if self.is_open() {
            return true;
        }
        let Some(kube) = &self.kube else { return self.policy.current().may_act_as_source(id, source, verb) };
        kube.may_act_as_source(id, source, verb).await.unwrap_or_else(|e| {
            tracing::warn!(identity = %id, source, error = %e, "cannot review access; refusing");
            false
        })
    }

    /// Whether `id` may act as the agent of `consumer` (always, on an open gate).
    pub fn may_act_as_consumer(&self, id: &Identity, consumer: &str) -> bool {
        self.is_open() || self.policy.current().may_act_as_consumer(id, consumer)
    }

    /// The REST role of `id` ([`RestRole::Admin`] on an open gate).
    pub fn rest_role(&self, id: &Identity) -> Option<RestRole> {
        if self.is_open() { Some(RestRole::Admin) } else { self.policy.current().rest_role(id) }
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive).
fn bearer_token(header: &str) -> Result<&str, AuthError> {
    match header.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(token.trim())
        }
        _ => Err(AuthError::InvalidCredentials("the authorization value is not a bearer token".to_owned())),
    }
}

#[cfg(feature = "grpc")]
impl Gate {
    /// Authenticates a gRPC request: the client certificate its TLS connection verified and
    /// its `authorization` metadata. The reason for a refusal is logged here (at `warn`, with the
    /// listener's `name`); the caller gets a bare `UNAUTHENTICATED`.
    ///
    /// # Errors
    /// `Status::unauthenticated` when the credential is missing or refused.
    pub async fn authenticate_grpc<T>(
        &self,
        name: &str,
        request: &tonic::Request<T>,
    ) -> Result<Identity, tonic::Status> {
        if self.is_open() {
            return Ok(Identity::anonymous());
        }
        let certs = request.peer_certs();
        let cert = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        self.authenticate(cert, header).await.map_err(|e| {
            let peer = request.remote_addr();
            tracing::warn!(listener = name, ?peer, reason = %e, "gRPC caller not authenticated");
            tonic::Status::unauthenticated(
                "unauthenticated: present a valid client certificate or bearer token",
            )
        })
    }
}
