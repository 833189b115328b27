//! The REST client (docs/protocol.md §12.2): reads of resource bundles, bundle deletion and
//! consumer management.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;
use url::Url;

use crate::auth::BearerToken;
use crate::error::{ClientError, Result};
use crate::ids::resource_id;
use crate::search::{BundleFilter, term};
use crate::types::{Consumer, ErrorBody, List, ResourceBundle};

/// The API prefix: `/api/maestro/v1`.
pub const API_PREFIX: &str = "/api/maestro/v1";
/// Page size used by the `all_*` helpers (the grpcsource client's `MaxListPageSize`).
pub const PAGE_SIZE: u32 = 400;
/// Pages [`RestClient::all_bundles`] fetches at the same time.
pub const LIST_CONCURRENCY: usize = 4;
/// Default per-request timeout: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of [`RestClient::with_options`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestOptions {
    /// Per-request timeout (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// PEM file of the CA(s) that sign the server's certificate; when set, only these are
    /// trusted. `None` trusts the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Bearer token sent as `Authorization: Bearer <token>` on every request (read a file
    /// with [`BearerToken::from_file`]). Over plain `http://` to a host other than loopback it
    /// is still sent, with a warning logged. `None` (default) sends no `Authorization`.
    pub token: Option<BearerToken>,
}

impl Default for RestOptions {
    fn default() -> Self {
        RestOptions { timeout: DEFAULT_TIMEOUT, ca_file: None, token: None }
    }
}

/// The default headers carrying `token` (marked sensitive: never logged by the HTTP stack,
/// never HPACK-indexed); warns when it would cross the network in clear text.
fn token_headers(base: &Url, token: &BearerToken) -> Result<reqwest::header::HeaderMap> {
    let loopback = match base.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if base.scheme() == "http" && !loopback {
        tracing::warn!(endpoint = %base, "sending a bearer token over plain HTTP; use an https:// endpoint");
    }
    let mut value = reqwest::header::HeaderValue::from_str(&token.header_value())
        .map_err(|_| ClientError::InvalidInput("the bearer token cannot go in an HTTP header".into()))?;
    value.set_sensitive(true);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Ok(headers)
}

/// The certificates of a PEM CA file.
fn ca_certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    let bad = |what: String| ClientError::InvalidInput(format!("CA file {}: {what}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// A REST client for one Maestro server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: Url,
}

impl RestClient {
    /// A client for `endpoint` (e.g. `http://localhost:8000`; a path prefix is kept; `host:port`
    /// means `http://host:port`, see [`crate::endpoint::http_url`]) with the
    /// [`DEFAULT_TIMEOUT`] per request.
    ///
    /// # Errors
    /// [`ClientError::InvalidInput`] when the endpoint is not an http(s) URL.
    pub fn new(endpoint: &str) -> Result<Self> {
        Self::with_timeout(endpoint, DEFAULT_TIMEOUT)
    }

    /// Like [`RestClient::new`] with a per-request `timeout`.
    ///
    /// # Errors
    /// [`ClientError::InvalidInput`] when the endpoint is not an http(s) URL or the HTTP
    /// client cannot be built.
    pub fn with_timeout(endpoint: &str, timeout: Duration) -> Result<Self> {
        Self::with_options(endpoint, &RestOptions { timeout, ..Default::default() })
    }

    /// A client for `endpoint` with `options` (timeout; for `https://` endpoints a CA file to
    /// trust instead of the system's roots, e.g. the CA of a server run with
    /// `--enable-https`; a bearer token sent on every request). A `host:port` endpoint is
    /// reached over `https://` when a CA file is given, else `http://`.
    ///
    /// # Errors
    /// [`ClientError::InvalidInput`] when the endpoint is not an http(s) URL, the CA file
    /// cannot be read or holds no PEM certificate (the message names the file), or the HTTP
    /// client cannot be built.
    pub fn with_options(endpoint: &str, options: &RestOptions) -> Result<Self> {
        let url = crate::endpoint::http_url(endpoint, options.ca_file.is_some())?;
        let mut base = Url::parse(&url)
            .map_err(|e| ClientError::InvalidInput(format!("invalid HTTP endpoint {endpoint:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::InvalidInput(format!(
                "invalid HTTP endpoint {endpoint:?}: scheme must be http or https"
            )));
        }
        let path = base.path().trim_end_matches('/').to_owned();
        base.set_path(&path);
        maestro_tls::install_process_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)));
        if let Some(ca) = &options.ca_file {
            builder = builder.tls_certs_only(ca_certificates(ca)?);
        }
        if let Some(token) = &options.token {
            builder = builder.default_headers(token_headers(&base, token)?);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::InvalidInput(format!("cannot build HTTP client: {e}")))?;
        Ok(RestClient { http, base })
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{API_PREFIX}{path}", self.base.as_str().trim_end_matches('/'))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        what: &str,
        f: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let url = self.url(path);
        tracing::debug!(%method, %url, "REST request");
        let resp =
            f(self.http.request(method.clone(), &url)).send().await.map_err(|e| transport_error(&url, &e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(http_error(method, url, what, resp).await)
    }

    async fn json<T: DeserializeOwned>(&self, resp: Response) -> Result<T> {
        let url = resp.url().to_string();
        let bytes = resp.bytes().await.map_err(|e| transport_error(&url, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::InvalidResponse {
            endpoint: url,
            message: format!("cannot decode body: {e}"),
        })
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        let resp = self.send(Method::GET, path, what, |r| r.query(query)).await?;
        self.json(resp).await
    }

    /// One page of resource bundles matching `filter` (`page` is 1-based; `size` 0 returns
    /// only the total).
    ///
    /// # Errors
    /// [`ClientError::InvalidInput`] for an unquotable filter value; transport and HTTP errors.
    pub async fn list_bundles(
        &self,
        filter: &BundleFilter,
        page: u32,
        size: u32,
    ) -> Result<List<ResourceBundle>> {
        let mut query = vec![("page", page.to_string()), ("size", size.to_string())];
        if let Some(s) = filter.to_search()? {
            query.push(("search", s));
        }
        self.get_json("/resource-bundles", "resource bundles", &query).await
    }

    /// Every resource bundle matching `filter`, paging through with [`PAGE_SIZE`]: the first
    /// page gives the total, then the other pages are fetched [`LIST_CONCURRENCY`] at a time
    /// (the server builds one page while the client parses another), in order. Pages keep
    /// being read one by one while they come back full, so bundles added meanwhile at the end
    /// are listed too.
    ///
    /// # Errors
    /// As [`RestClient::list_bundles`].
    pub async fn all_bundles(&self, filter: &BundleFilter) -> Result<Vec<ResourceBundle>> {
        let first = self.list_bundles(filter, 1, PAGE_SIZE).await?;
        // The last page read and whether it was full, and the newest total.
        let (mut page, mut full, mut total) = (1, true, first.total);
        let mut all = first.items;
        if all.len() < PAGE_SIZE as usize || all.len() as u64 >= total {
            return Ok(all);
        }
        let pages = u32::try_from(total.div_ceil(u64::from(PAGE_SIZE))).unwrap_or(u32::MAX);
        let mut rest = futures::stream::iter(2..=pages)
            .map(|page| self.list_bundles(filter, page, PAGE_SIZE))
            .buffered(LIST_CONCURRENCY);
        loop {
            let list = match rest.next().await {
                Some(list) => list?,
                None if full && (all.len() as u64) < total => {
                    self.list_bundles(filter, page + 1, PAGE_SIZE).await?
                }
                None => break,
            };
            (page, full, total) = (page + 1, list.items.len() == PAGE_SIZE as usize, list.total);
            all.extend(list.items);
        }
        Ok(all)
    }

    /// The resource bundle with id `id` (deleting bundles are returned with `deleted_at`).
    ///
    /// # Errors
    /// [`ClientError::NotFound`] on 404; transport and HTTP errors.
    pub async fn get_bundle(&self, id: &str) -> Result<ResourceBundle> {
        let what = format!("resource bundle {id}");
        self.get_json(&format!("/resource-bundles/{}", path_segment(id)?), &what, &[]).await
    }

    /// Like [`RestClient::get_bundle`] but `Ok(None)` on 404.
    ///
    /// # Errors
    /// Transport and HTTP errors other than 404.
    pub async fn find_bundle(&self, id: &str) -> Result<Option<ResourceBundle>> {
        match self.get_bundle(id).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The bundle of work `name` on `consumer` written by `source_id`: first by its UUIDv5
    /// resource id, then by searching `consumer_name` and `name`.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when neither finds it; transport and HTTP errors.
    pub async fn get_bundle_by_name(
        &self,
        source_id: &str,
        consumer: &str,
        name: &str,
    ) -> Result<ResourceBundle> {
        if let Some(b) = self.find_bundle(&resource_id(source_id, consumer, name)).await? {
            return Ok(b);
        }
        let filter =
            BundleFilter { consumer: Some(consumer.into()), name: Some(name.into()), ..Default::default() };
        let list = self.list_bundles(&filter, 1, 2).await?;
        list.items.into_iter().next().ok_or_else(|| ClientError::NotFound {
            what: format!("resource bundle {name:?} on consumer {consumer:?}"),
            detail: String::new(),
        })
    }

    /// Requests deletion of bundle `id` (`DELETE`, 204). The bundle stays, with `deleted_at`,
    /// until the agent confirms. As in Go Maestro the call is idempotent: the server also
    /// answers 204 for an unknown id or a bundle already being deleted (docs/rest.md), so use
    /// [`RestClient::get_bundle`] to tell whether it exists.
    ///
    /// # Errors
    /// Transport and HTTP errors ([`ClientError::NotFound`] only from servers that answer 404).
    pub async fn delete_bundle(&self, id: &str) -> Result<()> {
        let what = format!("resource bundle {id}");
        self.send(Method::DELETE, &format!("/resource-bundles/{}", path_segment(id)?), &what, |r| r).await?;
        Ok(())
    }

    /// One page of consumers; `search` is a raw Maestro search string.
    ///
    /// # Errors
    /// Transport and HTTP errors.
    pub async fn list_consumers(&self, search: Option<&str>, page: u32, size: u32) -> Result<List<Consumer>> {
        let mut query = vec![("page", page.to_string()), ("size", size.to_string())];
        if let Some(s) = search {
            query.push(("search", s.to_owned()));
        }
        self.get_json("/consumers", "consumers", &query).await
    }

    /// Every consumer, paging through with [`PAGE_SIZE`].
    ///
    /// # Errors
    /// Transport and HTTP errors.
    pub async fn all_consumers(&self) -> Result<Vec<Consumer>> {
        let mut all = Vec::new();
        for page in 1.. {
            let list = self.list_consumers(None, page, PAGE_SIZE).await?;
            let n = list.items.len();
            all.extend(list.items);
            if n == 0 || n < PAGE_SIZE as usize || all.len() as u64 >= list.total {
                break;
            }
        }
        Ok(all)
    }

    /// The consumer with id `id_or_name`, or else the one named `id_or_name`.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] when neither exists; transport and HTTP errors.
    pub async fn get_consumer(&self, id_or_name: &str) -> Result<Consumer> {
        let what = format!("consumer {id_or_name:?}");
        match self.get_json(&format!("/consumers/{}", path_segment(id_or_name)?), &what, &[]).await {
            Err(e) if e.is_not_found() => {}
            other => return other,
        }
        let list = self.list_consumers(Some(&term("name", id_or_name)?), 1, 2).await?;
        list.items.into_iter().next().ok_or(ClientError::NotFound { what, detail: String::new() })
    }

    /// One page of dead letters, newest first, optionally of one consumer (needs the REST
    /// role `admin`; pages hold at most 500).
    ///
    /// # Errors
    /// [`ClientError::Http`] (403) without the role; transport errors.
    pub async fn list_dead_letters(
        &self,
        consumer: Option<&str>,
        page: u32,
        size: u32,
    ) -> Result<List<crate::DeadLetter>> {
        let mut query = vec![("page", page.to_string()), ("size", size.to_string())];
        if let Some(c) = consumer {
            query.push(("consumer", c.to_owned()));
        }
        self.get_json("/dead-letters", "dead letters", &query).await
    }

    /// One dead letter.
    ///
    /// # Errors
    /// [`ClientError::NotFound`]; transport and HTTP errors.
    pub async fn get_dead_letter(&self, id: &str) -> Result<crate::DeadLetter> {
        let what = format!("dead letter {id}");
        self.get_json(&format!("/dead-letters/{}", path_segment(id)?), &what, &[]).await
    }

    /// Deletes a dead letter (204).
    ///
    /// # Errors
    /// [`ClientError::NotFound`]; transport and HTTP errors.
    pub async fn delete_dead_letter(&self, id: &str) -> Result<()> {
        let what = format!("dead letter {id}");
        self.send(Method::DELETE, &format!("/dead-letters/{}", path_segment(id)?), &what, |r| r).await?;
        Ok(())
    }

    /// Confirms, for `ttl`, that the works the agent of consumer `id` orphaned under the
    /// fleet-wipe guard may be deleted (`POST /consumers/{id}/wipe-confirmation`, this
    /// project's addition; needs the REST role `admin`). Returns the server's answer:
    /// `{kind: "WipeConfirmation", consumer_id, consumer_name, confirmed_until, store_identity}`.
    ///
    /// # Errors
    /// [`ClientError::NotFound`] for an unknown consumer; [`ClientError::Http`] (400) for a
    /// `ttl` over 30 days, (403) without the role; transport errors.
    pub async fn confirm_wipe(&self, id: &str, ttl: std::time::Duration) -> Result<serde_json::Value> {
        let body = json!({"ttl_seconds": ttl.as_secs()});
        let what = format!("consumer {id}");
        let path = format!("/consumers/{}/wipe-confirmation", path_segment(id)?);
        let resp = self.send(Method::POST, &path, &what, |r| r.json(&body)).await?;
        self.json(resp).await
    }

    /// Creates a consumer (`POST`, 201).
    ///
    /// # Errors
    /// [`ClientError::Conflict`] when the name is taken; transport and HTTP errors.
    pub async fn create_consumer(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<Consumer> {
        let body = json!({"name": name, "labels": labels});
        let what = format!("consumer {name:?}");
        let resp = self.send(Method::POST, "/consumers", &what, |r| r.json(&body)).await?;
        self.json(resp).await
    }

    /// Replaces the labels of consumer `id` (`PATCH`).
    ///
    /// # Errors
    /// [`ClientError::NotFound`]; transport and HTTP errors.
    pub async fn patch_consumer(&self, id: &str, labels: &BTreeMap<String, String>) -> Result<Consumer> {
        let body = json!({"labels": labels});
        let what = format!("consumer {id}");
        let resp = self
            .send(Method::PATCH, &format!("/consumers/{}", path_segment(id)?), &what, |r| r.json(&body))
            .await?;
        self.json(resp).await
    }

    /// Deletes consumer `id` (hard delete; the server answers 403 while bundles reference it).
    ///
    /// # Errors
    /// [`ClientError::NotFound`]; [`ClientError::Http`] 403; transport and HTTP errors.
    pub async fn delete_consumer(&self, id: &str) -> Result<()> {
        let what = format!("consumer {id}");
        self.send(Method::DELETE, &format!("/consumers/{}", path_segment(id)?), &what, |r| r).await?;
        Ok(())
    }
}

/// Checks an id used as a URL path segment.
fn path_segment(id: &str) -> Result<&str> {
    if id.is_empty()
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        || id.starts_with('.')
    {
        return Err(ClientError::InvalidInput(format!(
            "invalid id {id:?}: only letters, digits, '-', '_' and '.' are allowed"
        )));
    }
    Ok(id)
}

fn transport_error(url: &str, e: &reqwest::Error) -> ClientError {
    if e.is_timeout() {
        return ClientError::Timeout { after: DEFAULT_TIMEOUT, what: format!("a response from {url}") };
    }
    // Skip reqwest's "error sending request for url (…)" wrapper: the URL is already named.
    let mut parts = Vec::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    let message = if parts.is_empty() { e.to_string() } else { parts.join(": ") };
    ClientError::Connect { endpoint: url.to_owned(), message }
}

async fn http_error(method: Method, url: String, what: &str, resp: Response) -> ClientError {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body: Option<ErrorBody> =
        serde_json::from_str(&text).ok().filter(|b: &ErrorBody| !b.reason.is_empty());
    let (code, reason) = match body {
        Some(b) => (b.code, b.reason),
        None => (String::new(), snippet(&text, status)),
    };
    match status {
        StatusCode::NOT_FOUND => ClientError::NotFound { what: what.to_owned(), detail: reason },
        StatusCode::CONFLICT => ClientError::Conflict { what: what.to_owned(), message: reason },
        _ => ClientError::Http { method: method.to_string(), url, status: status.as_u16(), code, reason },
    }
}

fn snippet(text: &str, status: StatusCode) -> String {
    let t: String = text.trim().chars().take(200).collect::<String>().replace('\n', " ");
    if t.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { t }
}
