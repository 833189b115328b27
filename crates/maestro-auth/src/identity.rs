//! [`Identity`] and [`AuthnType`].

use std::fmt;
use std::str::FromStr;

use crate::AuthError;

/// An authenticated caller: a user name and the groups it belongs to (docs/security.md,
/// "Identities").
///
/// From a client certificate the user is the subject CN and the groups the subject O values
/// (Go Maestro's reading); from a JWT the user is the configured claim (default `sub`) and the
/// groups the `groups` claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The user name (never empty).
    pub user: String,
    /// The groups, in the order the credential lists them.
    pub groups: Vec<String>,
}

impl Identity {
    /// The identity an unauthenticated listener (`--grpc-authn-type none`) gives every caller:
    /// user `anonymous`, no group. The policy grants it nothing unless a rule names it.
    pub fn anonymous() -> Identity {
        Identity { user: ANONYMOUS.to_owned(), groups: Vec::new() }
    }

    /// Whether this is [`Identity::anonymous`].
    pub fn is_anonymous(&self) -> bool {
        self.user == ANONYMOUS && self.groups.is_empty()
    }
}

/// The user name of [`Identity::anonymous`].
pub(crate) const ANONYMOUS: &str = "system:anonymous";

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.groups.is_empty() {
            write!(f, "{}", self.user)
        } else {
            write!(f, "{} (groups {})", self.user, self.groups.join(","))
        }
    }
}

impl From<maestro_tls::PeerIdentity> for Identity {
    fn from(p: maestro_tls::PeerIdentity) -> Identity {
        Identity { user: p.user, groups: p.groups }
    }
}

/// How a listener authenticates its callers (`--grpc-authn-type`, docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthnType {
    /// No authentication: every caller is [`Identity::anonymous`] and every check passes. For
    /// the embedded demo and tests; the server warns loudly when a non-loopback listener uses it.
    #[default]
    None,
    /// Mutual TLS: the identity of the verified client certificate.
    Mtls,
    /// A bearer token (`authorization: Bearer …`) checked as a JWT ([`crate::jwt`]).
    Token,
}

impl AuthnType {
    /// The flag value (`none`, `mtls`, `token`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthnType::None => "none",
            AuthnType::Mtls => "mtls",
            AuthnType::Token => "token",
        }
    }
}

impl fmt::Display for AuthnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthnType {
    type Err = AuthError;

    /// Parses `none`, `mtls` or `token`; Go Maestro's `mock` is read as `none`.
    fn from_str(s: &str) -> Result<AuthnType, AuthError> {
        match s {
            "none" | "mock" => Ok(AuthnType::None),
            "mtls" => Ok(AuthnType::Mtls),
            "token" => Ok(AuthnType::Token),
            other => Err(AuthError::Config(format!(
                "unknown authentication type {other:?} (expected none, mtls or token)"
            ))),
        }
    }
}
