//! Which consumers exist ([`ConsumerRegistry`]): the broker refuses a Subscribe for a consumer
//! the server does not know (docs/security.md, "Limits"), so no client can hold streams, queues
//! and resync work for made-up cluster names. The broker does not depend on the store: the
//! server binary implements the trait over it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A registry that could not answer (e.g. the database is down). The text is logged by the
/// broker, never sent to the agent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RegistryError(pub String);

/// The answer of [`ConsumerRegistry::is_registered`] (a boxed future, so implementors need no
/// macro crate: `Box::pin(async move { … })`).
pub type Registered<'a> = Pin<Box<dyn Future<Output = Result<bool, RegistryError>> + Send + 'a>>;

/// Answers whether a consumer (cluster name) is registered with the server.
pub trait ConsumerRegistry: Send + Sync + fmt::Debug {
    /// Resolves to `Ok(true)` when `consumer` is registered, `Ok(false)` when it is not. It is
    /// asked at every Subscribe: an implementation over a database answers from memory where it
    /// can (the server's answers from a snapshot of the consumer names).
    ///
    /// # Errors
    /// [`RegistryError`] when the answer cannot be known now; the Subscribe is refused with
    /// `UNAVAILABLE` and the agent retries.
    fn is_registered<'a>(&'a self, consumer: &'a str) -> Registered<'a>;
}
