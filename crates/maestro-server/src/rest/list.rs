//! The list endpoints, `GET /consumers` and `GET /resource-bundles`, with Go Maestro's query
//! parameters (docs/rest.md): `page` and `size`, `search` ("Search language"), `orderBy`
//! ("Ordering") and `fields` ("Projection"). Each list takes a slot of the concurrent list
//! limit ([`super::limits`]); the resource bundle list is streamed ([`super::stream`]).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use maestro_search::{Filter, OrderTerm, Table};
use maestro_store::{ConsumerQuery, Paging, ResourceQuery};
use serde::Deserialize;
use serde_json::Value;

use super::errors::op_id;
use super::{ApiResult, RestState, fail, presenters, stream};
use crate::error::ServiceError;

/// List query parameters, as Go Maestro names them.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    pub(crate) page: Option<String>,
    pub(crate) size: Option<String>,
    pub(crate) search: Option<String>,
    #[serde(rename = "orderBy")]
    pub(crate) order_by: Option<String>,
    pub(crate) fields: Option<String>,
}

/// The checked list parameters.
struct ListArgs {
    paging: Paging,
    search: Option<Filter>,
    order: Vec<OrderTerm>,
    /// The projected keys (`id` included), or `None` for whole objects.
    fields: Option<Vec<String>>,
}

impl ListParams {
    /// Checks every parameter against `table` and the object's keys `known` (`kind` names the
    /// object in errors).
    fn check(&self, table: Table, known: &[&str], kind: &str) -> Result<ListArgs, ServiceError> {
        let search = maestro_search::compile(self.search.as_deref().unwrap_or(""), table)
            .map_err(|e| ServiceError::Search(e.to_string()))?;
        let order = maestro_search::parse_order_by(self.order_by.as_deref().unwrap_or(""), table)
            .map_err(|e| ServiceError::BadRequest(format!("bad orderBy: {e}")))?;
        Ok(ListArgs {
            paging: paging(self)?,
            search,
            order,
            fields: fields(self.fields.as_deref(), known, kind)?,
        })
    }
}

/// The checked parameters of a list request; a query string that cannot be read (bad
/// percent-encoding, a repeated parameter) is Go's "Bad request", as an Error body.
fn list_args(
    query: Result<Query<ListParams>, QueryRejection>,
    table: Table,
    known: &[&str],
    kind: &str,
) -> Result<ListArgs, ServiceError> {
    let Query(params) =
        query.map_err(|e| ServiceError::BadRequest(format!("invalid query string: {}", e.body_text())))?;
    params.check(table, known, kind)
}

pub(crate) fn paging(p: &ListParams) -> Result<Paging, ServiceError> {
    let num = |v: &Option<String>, name: &str, default: i64| -> Result<i64, ServiceError> {
        match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(s) => s
                .parse()
                .map_err(|_| ServiceError::Validation(format!("{name} must be an integer, got {s:?}"))),
        }
    };
    let page = num(&p.page, "page", 1)?;
    let mut size = num(&p.size, "size", 100)?;
    // The list's `page` is an int32 in Go's client, so a larger one could not be read back.
    if !(1..=i64::from(i32::MAX)).contains(&page) {
        return Err(ServiceError::Validation(format!("page must be between 1 and {}, got {page}", i32::MAX)));
    }
    if !(0..=65500).contains(&size) {
        size = 65500;
    }
    Ok(Paging { page, size })
}

/// Go's `fields`: comma-separated top-level keys, blanks skipped, `id` always added; `None`
/// when no key is named. Errors: [`ServiceError::Validation`] naming unknown keys.
fn fields(param: Option<&str>, known: &[&str], kind: &str) -> Result<Option<Vec<String>>, ServiceError> {
    let mut keys: Vec<String> =
        param.unwrap_or("").split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect();
    if keys.is_empty() {
        return Ok(None);
    }
    let unknown: BTreeSet<&str> = keys.iter().map(String::as_str).filter(|k| !known.contains(k)).collect();
    if !unknown.is_empty() {
        let unknown: Vec<&str> = unknown.into_iter().collect();
        return Err(ServiceError::Validation(format!(
            "The following field(s) doesn't exist in `{kind}`: {} (known: {})",
            unknown.join(", "),
            known.join(", ")
        )));
    }
    if !keys.iter().any(|k| k == "id") {
        keys.push("id".to_owned());
    }
    Ok(Some(keys))
}

/// Keeps only `keys` of an item (an item that is not an object is kept whole).
pub(crate) fn project_one(item: Value, keys: &[String]) -> Value {
    match item {
        Value::Object(mut m) => {
            m.retain(|k, _| keys.iter().any(|f| f == k));
            Value::Object(m)
        }
        other => other,
    }
}

pub(crate) async fn list_consumers(
    State(st): State<RestState>,
    headers: HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult {
    let args =
        list_args(query, Table::Consumers, &presenters::CONSUMER_KEYS, "Consumer").map_err(fail(&headers))?;
    let q =
        ConsumerQuery { paging: args.paging, search: args.search, order: args.order, ..Default::default() };
    let _slot = st.lists.take().await;
    let page = st.store.list_consumers(&q).await.map_err(|e| fail(&headers)(e.into()))?;
    let mut items: Vec<Value> = page.items.iter().map(presenters::consumer).collect();
    if let Some(keys) = &args.fields {
        items = items.into_iter().map(|item| project_one(item, keys)).collect();
    }
    Ok(Json(presenters::list("ConsumerList", page.page, page.total, items)).into_response())
}

/// `GET /resource-bundles`, streamed ([`stream`]).
pub(crate) async fn list_bundles(
    State(st): State<RestState>,
    headers: HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult {
    let args = list_args(query, Table::Resources, &presenters::RESOURCE_BUNDLE_KEYS, "ResourceBundle")
        .map_err(fail(&headers))?;
    let q =
        ResourceQuery { paging: args.paging, search: args.search, order: args.order, ..Default::default() };
    let slot = st.lists.take().await;
    stream::bundles(st.store.clone(), &q, args.fields, slot, op_id(&headers)).await.map_err(fail(&headers))
}
