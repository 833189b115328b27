//! Building the clients from a [`PubSubConfig`] — google-cloud-pubsub's admin and publisher
//! clients, and this crate's own StreamingPull client ([`crate::pull::Puller`]): endpoint, TLS
//! and credentials (anonymous for the emulator, a key file, or application default
//! credentials), plus "not found" / "already exists" tests on the library's errors.

use google_cloud_auth::credentials::{self, Credentials};
use google_cloud_pubsub::client::{Publisher, SubscriptionAdmin, TopicAdmin};
use maestro_transport::{Error, Result};

use crate::error::PubSubError;
use crate::pull::{PullError, Puller};
use crate::{BACKEND, PubSubConfig};

fn client_error(client: &'static str) -> impl FnOnce(google_cloud_gax::client_builder::Error) -> Error {
    move |source| PubSubError::Client { client, source }.into()
}

/// Builds the credentials: anonymous when plain text (emulator), else the key file, else ADC.
pub(crate) fn credentials(config: &PubSubConfig) -> Result<Credentials> {
    if config.resolve_endpoint().plaintext {
        return Ok(credentials::anonymous::Builder::new().build());
    }
    let Some(path) = config.credentials_file.as_deref().filter(|p| !p.is_empty()) else {
        return credentials::Builder::default()
            .build()
            .map_err(|source| PubSubError::Credentials { source }.into());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid_config_from(BACKEND, format_args!("credentialsFile {path:?}"), e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::invalid_config_from(BACKEND, format_args!("credentialsFile {path:?} is not JSON"), e)
    })?;
    let built = match json.get("type").and_then(|t| t.as_str()) {
        Some("service_account") => credentials::service_account::Builder::new(json).build(),
        Some("authorized_user") => credentials::user_account::Builder::new(json).build(),
        Some("external_account") => credentials::external_account::Builder::new(json).build(),
        other_type => {
            return Err(Error::invalid_config(
                BACKEND,
                format!("credentialsFile {path:?}: unsupported credentials type {other_type:?}"),
            ));
        }
    };
    built.map_err(|e| Error::invalid_config_from(BACKEND, format_args!("credentialsFile {path:?}"), e))
}

/// The clients one endpoint uses.
#[derive(Clone, Debug)]
pub(crate) struct Clients {
    pub(crate) topics: TopicAdmin,
    pub(crate) subscriptions: SubscriptionAdmin,
    /// The StreamingPull client (not google-cloud-pubsub's subscriber, whose streams end with a
    /// reset; see [`crate::pull`]).
    pub(crate) puller: Puller,
    creds: Credentials,
    url: Option<String>,
}

impl Clients {
    /// Builds the admin (REST) and StreamingPull (gRPC) clients. Nothing is connected yet.
    pub(crate) async fn new(config: &PubSubConfig) -> Result<Clients> {
        // The google clients are built without a bundled crypto provider.
        maestro_tls::install_process_provider();
        let creds = credentials(config)?;
        let url = config.resolve_endpoint().url;
        let mut topics = TopicAdmin::builder().with_credentials(creds.clone());
        let mut subscriptions = SubscriptionAdmin::builder().with_credentials(creds.clone());
        if let Some(url) = &url {
            topics = topics.with_endpoint(url);
            subscriptions = subscriptions.with_endpoint(url);
        }
        let puller = Puller::new(config, creds.clone()).map_err(|e| match e {
            PullError::Endpoint { url, source } => {
                Error::invalid_config_from(BACKEND, format_args!("endpoint {url:?}"), source)
            }
            other => Error::other(BACKEND, other.is_retryable(), other),
        })?;
        Ok(Clients {
            topics: topics.build().await.map_err(client_error("topic admin client"))?,
            subscriptions: subscriptions.build().await.map_err(client_error("subscription admin client"))?,
            puller,
            creds,
            url,
        })
    }

    /// A publisher for `topic` that sends every message at once (no batching delay).
    pub(crate) async fn publisher(&self, topic: &str) -> Result<Publisher> {
        let mut b = Publisher::builder(topic)
            .with_credentials(self.creds.clone())
            .set_message_count_threshold(1)
            .set_delay_threshold(std::time::Duration::from_millis(1));
        if let Some(url) = &self.url {
            b = b.with_endpoint(url);
        }
        b.build().await.map_err(client_error("publisher client"))
    }
}

/// True when the error is "not found" (REST 404 or gRPC `NOT_FOUND`).
pub(crate) fn is_not_found(e: &google_cloud_pubsub::Error) -> bool {
    e.http_status_code() == Some(404) || e.status().is_some_and(|s| s.code.name() == "NOT_FOUND")
}

/// True when the error is "already exists" (REST 409 or gRPC `ALREADY_EXISTS`).
pub(crate) fn is_already_exists(e: &google_cloud_pubsub::Error) -> bool {
    e.http_status_code() == Some(409) || e.status().is_some_and(|s| s.code.name() == "ALREADY_EXISTS")
}
