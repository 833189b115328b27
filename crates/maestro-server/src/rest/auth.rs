//! REST authentication and authorization (docs/security.md, "REST"): a bearer JWT
//! (`Authorization: Bearer …`) or a client certificate, checked by the listener's [`Gate`];
//! then the identity's REST role: `read` for GET and HEAD, `admin` for everything else and
//! for the dead letters.
//!
//! Without credentials, or with refused ones, the answer is 401 with Go's error body (code 15)
//! and a `WWW-Authenticate: Bearer` header; without the role, 403 (code 11). The API's
//! discovery documents, the error catalogue and the health checks stay public, as Go's were
//! when its JWT middleware was on (`/api/maestro`, `/api/maestro/v1`, `/api/maestro/v1/openapi`,
//! `/api/maestro/v1/errors`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maestro_auth::policy::RestRole;
use maestro_auth::{Gate, Identity};

use super::errors::fail;
use crate::error::{ErrorCode, ServiceError};

/// What the REST middleware knows of a TLS connection: the peer address and the client
/// certificate (DER) the handshake verified, if any (built by [`super::serve::tls_peer`]).
#[derive(Debug, Clone)]
pub struct TlsPeer {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The verified client certificate (DER), when the client presented one.
    pub cert: Option<Arc<Vec<u8>>>,
}

/// Paths answered without credentials.
fn is_public(path: &str) -> bool {
    matches!(path, "/api/maestro" | "/api/maestro/v1" | "/api/maestro/v1/openapi" | "/healthz" | "/readyz")
        || path == "/api/maestro/v1/errors"
        || path.starts_with("/api/maestro/v1/errors/")
}

/// Paths every method of which needs `admin`: the dead letters hold other tenants' raw events
/// and the server's own reasons ([`super::dead_letters`]); the instance registry names the
/// fleet's servers ([`super::server_instances`]).
fn admin_only(path: &str) -> bool {
    path == "/api/maestro/v1/dead-letters"
        || path.starts_with("/api/maestro/v1/dead-letters/")
        || path == "/api/maestro/v1/server-instances"
}

/// The middleware: authenticates the caller, checks its role, and hands the [`Identity`] to
/// the handlers as a request extension.
pub(crate) async fn check(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    if gate.is_open() || is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let cert = req.extensions().get::<ConnectInfo<TlsPeer>>().and_then(|c| c.0.cert.clone());
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let identity = match gate.authenticate(cert.as_deref().map(Vec::as_slice), authorization).await {
        Ok(identity) => identity,
        Err(e) => {
            let peer = req.extensions().get::<ConnectInfo<TlsPeer>>().map(|c| c.0.addr);
            tracing::warn!(?peer, method = %req.method(), path = req.uri().path(), reason = %e, "REST caller not authenticated");
            let err = ServiceError::Unauthenticated(ErrorCode::UNAUTHENTICATED.reason.to_owned());
            let mut resp = fail(req.headers())(err).into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    };
    let needed = if matches!(*req.method(), Method::GET | Method::HEAD) && !admin_only(req.uri().path()) {
        RestRole::Read
    } else {
        RestRole::Admin
    };
    if gate.rest_role(&identity).is_none_or(|role| role < needed) {
        tracing::warn!(%identity, method = %req.method(), path = req.uri().path(), "REST call refused by the authorization policy");
        let err = ServiceError::Unauthorized(format!(
            "{} is unauthorized to perform this action: it needs the REST role {}",
            identity.user,
            if needed == RestRole::Admin { "admin" } else { "read" }
        ));
        return fail(req.headers())(err).into_response();
    }
    req.extensions_mut().insert::<Identity>(identity);
    next.run(req).await
}
