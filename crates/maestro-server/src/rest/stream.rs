//! The resource bundle list, written while it is read (docs/rest.md, "Limits"): the page's
//! ids first ([`maestro_store::Store::list_resource_ids`], with the total), then the rows in
//! batches ([`maestro_store::Store::get_resources_raw`]: the first of [`FIRST_BATCH`] rows,
//! later ones of about [`BATCH_BYTES`] of stored text by the rows read so far), each batch
//! written out as one chunk of the body before the next is read. A whole page of rows is never
//! held: a list holds its ids (under 5 MB at 65,500) and one batch. No database connection is
//! held between batches, so a slow client never keeps one (SQLite in memory has only one).
//!
//! The body is `{"items":[…],"kind":"ResourceBundleList","page":P,"size":N,"total":T}`: the
//! keys the buffered list had, in the same order; `size`, the items written, is known only
//! at the end. A bundle deleted between the id query and its batch is left out (and not
//! counted). Failures before the first chunk (the queries of the ids, the total and the
//! first batch) answer an error body; a later one is logged with the operation id and cuts
//! the body short, so the client sees a truncated response, never a wrong one.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use maestro_store::{DynStore, RawResource, ResourceQuery, StoreError};
use tokio::sync::OwnedSemaphorePermit;

use super::{list, raw};
use crate::error::ServiceError;

/// Rows of the first batch, whose size is not known yet: 100 bundles of a few KiB are a few
/// hundred KiB, and even of the largest bundles (500 KiB of manifests) under 50 MiB.
const FIRST_BATCH: usize = 100;
/// Stored text a later batch aims at: its rows are this over the average row read so far
/// (about 400 rows of 2.5 KiB), within [`MIN_BATCH`] and [`MAX_BATCH`].
const BATCH_BYTES: usize = 1024 * 1024;
/// The fewest rows a later batch reads.
const MIN_BATCH: usize = 10;
/// The most rows a batch reads.
const MAX_BATCH: usize = 1000;

/// One resource bundle page being written.
struct BundlePage {
    store: DynStore,
    ids: Vec<String>,
    /// Ids read so far.
    next: usize,
    /// The projected keys, if any (`fields`).
    fields: Option<Vec<String>>,
    /// Items written so far.
    written: usize,
    /// Rows read so far and their stored bytes (the next batch's size follows their average).
    rows_read: usize,
    bytes_read: usize,
    page: i64,
    total: i64,
    operation_id: String,
    /// The list's slot, freed when the body is written or dropped.
    _slot: OwnedSemaphorePermit,
    done: bool,
}

/// The response of `GET /resource-bundles` for `query`: streamed, or for a page of at most
/// [`FIRST_BATCH`] rows read in one query ([`maestro_store::Store::list_resources_raw`], as
/// before streaming) and written whole.
///
/// # Errors
/// Store failures before the first chunk.
pub(crate) async fn bundles(
    store: DynStore,
    query: &ResourceQuery,
    fields: Option<Vec<String>>,
    slot: OwnedSemaphorePermit,
    operation_id: String,
) -> Result<Response, ServiceError> {
    if query.paging.size <= FIRST_BATCH as i64 {
        return small_page(store.as_ref(), query, fields.as_deref()).await;
    }
    let ids = store.list_resource_ids(query).await?;
    let mut page = BundlePage {
        store,
        ids: ids.items,
        next: 0,
        fields,
        written: 0,
        rows_read: 0,
        bytes_read: 0,
        page: ids.page,
        total: ids.total,
        operation_id,
        _slot: slot,
        done: false,
    };
    let mut first = b"{\"items\":[".to_vec();
    page.write_batch(&mut first).await?;
    page.write_end_if_done(&mut first);
    let body = if page.done {
        // A page within its first batch is written whole, with its length.
        Body::from(first)
    } else {
        let rest = futures::stream::unfold(page, |mut page| async move {
            let chunk = page.next_chunk().await?;
            Some((chunk, page))
        });
        Body::from_stream(futures::stream::once(async { Ok(Bytes::from(first)) }).chain(rest))
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A page of at most [`FIRST_BATCH`] rows, read in one query and written whole.
async fn small_page(
    store: &dyn maestro_store::Store,
    query: &ResourceQuery,
    fields: Option<&[String]>,
) -> Result<Response, ServiceError> {
    let page = store.list_resources_raw(query).await?;
    let mut out = b"{\"items\":[".to_vec();
    for (i, row) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_item(&mut out, row, fields).map_err(|e| ServiceError::from(StoreError::Json(e)))?;
    }
    let (number, size, total) = (page.page, page.items.len(), page.total);
    write_end(&mut out, number, size, total);
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// `],"kind":…,"page":…,"size":…,"total":…}`: the end of a list body.
fn write_end(out: &mut Vec<u8>, page: i64, size: usize, total: i64) {
    out.extend_from_slice(
        format!("],\"kind\":\"ResourceBundleList\",\"page\":{page},\"size\":{size},\"total\":{total}}}")
            .as_bytes(),
    );
}

impl BundlePage {
    /// The next chunk of the body; `None` once it is complete or cut short.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        let mut out = Vec::new();
        if let Err(e) = self.write_batch(&mut out).await {
            self.done = true;
            tracing::error!(operation_id = %self.operation_id, error = %e, written = self.written,
                "a resource bundle list failed while being written; its body is cut short");
            return Some(Err(std::io::Error::other("the list could not be read")));
        }
        self.write_end_if_done(&mut out);
        Some(Ok(Bytes::from(out)))
    }

    /// Reads the next batch of rows and writes them to `out`, in the page's order.
    async fn write_batch(&mut self, out: &mut Vec<u8>) -> Result<(), ServiceError> {
        let end = (self.next + self.batch_len()).min(self.ids.len());
        let ids = &self.ids[self.next..end];
        let rows = self.store.get_resources_raw(ids).await?;
        let stored: usize =
            rows.iter().map(|r| r.payload.get().len() + r.status.as_ref().map_or(0, |s| s.get().len())).sum();
        (self.rows_read, self.bytes_read) = (self.rows_read + rows.len(), self.bytes_read + stored);
        out.reserve(stored + 512 * rows.len());
        let mut rows: HashMap<String, RawResource> = rows.into_iter().map(|r| (r.id.clone(), r)).collect();
        for id in ids {
            // Gone since the ids were read: left out.
            let Some(row) = rows.remove(id) else { continue };
            if self.written > 0 {
                out.push(b',');
            }
            write_item(out, &row, self.fields.as_deref())
                .map_err(|e| ServiceError::from(StoreError::Json(e)))?;
            self.written += 1;
        }
        self.next = end;
        Ok(())
    }

    /// Rows of the next batch: [`FIRST_BATCH`], then about [`BATCH_BYTES`] of stored text.
    fn batch_len(&self) -> usize {
        if self.rows_read == 0 {
            return FIRST_BATCH;
        }
        let average = (self.bytes_read / self.rows_read).max(1);
        (BATCH_BYTES / average).clamp(MIN_BATCH, MAX_BATCH)
    }

    /// Closes the body once every id is read.
    fn write_end_if_done(&mut self, out: &mut Vec<u8>) {
        if self.next < self.ids.len() {
            return;
        }
        write_end(out, self.page, self.written, self.total);
        self.done = true;
    }
}

/// One bundle as list JSON, projected to `fields` when given.
fn write_item(
    out: &mut Vec<u8>,
    row: &RawResource,
    fields: Option<&[String]>,
) -> Result<(), serde_json::Error> {
    let item = raw::bundle_item(row)?;
    match fields {
        None => serde_json::to_writer(out, &item),
        Some(keys) => serde_json::to_writer(out, &list::project_one(serde_json::to_value(&item)?, keys)),
    }
}
