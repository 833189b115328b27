//! The list endpoints: `GET /consumers` and `GET /resource-bundles` with `page`, `size` and
//! `search`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use maestro_store::{ConsumerQuery, Paging, ResourceQuery, StoreError};
use serde::Deserialize;

use super::{ApiResult, RestState, fail, presenters, raw, search};
use crate::error::ServiceError;

/// List query parameters.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    page: Option<String>,
    size: Option<String>,
    search: Option<String>,
}

fn paging(p: &ListParams) -> Result<Paging, ServiceError> {
    let num = |v: &Option<String>, name: &str, default: i64| -> Result<i64, ServiceError> {
        match v.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(s) => s
                .parse()
                .map_err(|_| ServiceError::Validation(format!("{name} must be an integer, got {s:?}"))),
        }
    };
    let page = num(&p.page, "page", 1)?;
    let mut size = num(&p.size, "size", 100)?;
    if page < 1 {
        return Err(ServiceError::Validation(format!("page must be >= 1, got {page}")));
    }
    if !(0..=65500).contains(&size) {
        size = 65500;
    }
    Ok(Paging { page, size })
}

pub(crate) async fn list_consumers(
    State(st): State<RestState>,
    headers: HeaderMap,
    Query(p): Query<ListParams>,
) -> ApiResult {
    let mut q = ConsumerQuery { paging: paging(&p).map_err(fail(&headers))?, ..Default::default() };
    for t in search::parse(p.search.as_deref().unwrap_or(""), &["name", "id"]).map_err(fail(&headers))? {
        match t.field.as_str() {
            "name" => q.name = Some(t.value),
            _ => q.id = Some(t.value),
        }
    }
    let page = st.store.list_consumers(&q).await.map_err(|e| fail(&headers)(e.into()))?;
    let items = page.items.iter().map(presenters::consumer).collect();
    Ok(Json(presenters::list("ConsumerList", page.page, page.total, items)).into_response())
}

pub(crate) async fn list_bundles(
    State(st): State<RestState>,
    headers: HeaderMap,
    Query(p): Query<ListParams>,
) -> ApiResult {
    let mut q = ResourceQuery { paging: paging(&p).map_err(fail(&headers))?, ..Default::default() };
    let fields = ["consumer_name", "source", "name", "id"];
    for t in search::parse(p.search.as_deref().unwrap_or(""), &fields).map_err(fail(&headers))? {
        let slot = match t.field.as_str() {
            "consumer_name" => &mut q.consumer_name,
            "source" => &mut q.source,
            "name" => &mut q.name,
            _ => &mut q.id,
        };
        *slot = Some(t.value);
    }
    let page = st.store.list_resources_raw(&q).await.map_err(|e| fail(&headers)(e.into()))?;
    let corrupt = |e| fail(&headers)(StoreError::Json(e).into());
    let items = page.items.iter().map(raw::bundle_item).collect::<Result<Vec<_>, _>>().map_err(corrupt)?;
    let body = presenters::ListJson {
        size: items.len(),
        items,
        kind: "ResourceBundleList",
        page: page.page,
        total: page.total,
    };
    // Written into a buffer sized from the stored text up front: growing a multi-MiB body by
    // doubling copied it several times and touched twice the memory.
    let stored: usize = page
        .items
        .iter()
        .map(|r| r.payload.get().len() + r.status.as_ref().map_or(0, |s| s.get().len()))
        .sum();
    let mut out = Vec::with_capacity(stored + 512 * page.items.len() + 128);
    serde_json::to_writer(&mut out, &body).map_err(corrupt)?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], out).into_response())
}
