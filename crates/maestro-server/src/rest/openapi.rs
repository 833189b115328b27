//! `GET /api/maestro/v1/openapi`: this server's OpenAPI document (docs/rest.md, "OpenAPI
//! document"), written as YAML in `openapi/openapi.yaml` of this crate, embedded at build time
//! and served as JSON, converted once.

use std::sync::LazyLock;

use axum::Json;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::fail;
use crate::error::ServiceError;

/// The document as written (YAML).
pub const OPENAPI_YAML: &str = include_str!("../../openapi/openapi.yaml");

static DOCUMENT: LazyLock<Result<Value, String>> =
    LazyLock::new(|| serde_yaml_ng::from_str(OPENAPI_YAML).map_err(|e| e.to_string()));

/// The document as JSON.
///
/// # Errors
/// The YAML parser's message when the embedded document is not valid YAML (a unit test keeps
/// it valid).
pub fn document() -> Result<&'static Value, &'static str> {
    DOCUMENT.as_ref().map_err(String::as_str)
}

/// `GET /api/maestro/v1/openapi`.
pub(crate) async fn serve(headers: HeaderMap) -> Response {
    match document() {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => {
            fail(&headers)(ServiceError::Internal(format!("embedded openapi.yaml: {e}"))).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_document_parses_and_names_every_path() {
        let doc = document().unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.0."));
        let paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
        for p in [
            "resource-bundles",
            "resource-bundles/{id}",
            "consumers",
            "consumers/{id}",
            "errors",
            "errors/{id}",
            "openapi",
            "dead-letters",
            "dead-letters/{id}",
            "server-instances",
            "consumers/{id}/wipe-confirmation",
        ] {
            assert!(paths.contains(&format!("/api/maestro/v1/{p}").as_str()), "{p} in {paths:?}");
        }
        for s in [
            "ObjectReference",
            "List",
            "Error",
            "ErrorList",
            "ResourceBundle",
            "ResourceBundleList",
            "Consumer",
            "ConsumerList",
            "ConsumerPatchRequest",
            "DeadLetter",
            "DeadLetterList",
            "WipeConfirmation",
        ] {
            assert!(doc["components"]["schemas"].get(s).is_some(), "schema {s}");
        }
    }
}
