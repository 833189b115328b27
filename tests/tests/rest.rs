//! The REST API over a real socket, on both stores: consumers (create, get, list with search
//! and paging, patch labels, delete, delete refused while bundles exist), resource bundles
//! (get, list, idempotent delete), the error catalogue, the OpenAPI document, Go's error
//! bodies (unknown routes and methods included), and the health endpoints.
//!
//! Every response of a documented path is checked against the OpenAPI document
//! (`maestro_tests::contract`), closed objects and required keys included, as Go Maestro's
//! generated client reads them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use maestro::stack::{LocalStack, StackConfig};
use maestro_tests::{Db, contract, db_url, logging};
use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_behaves_like_maestro_on_sqlite() {
    rest_api_behaves_like_maestro(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_behaves_like_maestro_on_postgres() {
    rest_api_behaves_like_maestro(Db::Postgres).await;
}

/// Sends `req` and returns the status and the JSON body (`Null` when empty), unchecked.
async fn send_unchecked(http: &Client, req: RequestBuilder) -> (u16, Value, String, String) {
    let req = req.build().unwrap();
    let (method, url) = (req.method().to_string(), req.url().clone());
    let resp = http.execute(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!("{method} {url} -> {status}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes))
        })
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    (status, body, method, path)
}

/// Sends `req` and checks the response against the OpenAPI document; lists answered to
/// `fields` are checked as projections.
async fn send(http: &Client, req: RequestBuilder) -> (u16, Value) {
    let (status, body, method, path) = send_unchecked(http, req).await;
    let projected =
        path.split_once('?').is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("fields=")));
    if projected && status == 200 {
        contract::check_projection(&method, &path, status, &body);
    } else {
        contract::check(&method, &path, status, &body);
    }
    (status, body)
}

/// Sends `req` to a path outside the document and checks the reply is a Go error body.
async fn send_error(http: &Client, req: RequestBuilder) -> (u16, Value) {
    let (status, body, ..) = send_unchecked(http, req).await;
    contract::check_schema("Error", &body);
    (status, body)
}

fn code(body: &Value) -> Option<&str> {
    body["code"].as_str()
}

async fn rest_api_behaves_like_maestro(db: Db) {
    logging();
    let (_guard, url) = db_url(db).await;
    let stack = LocalStack::start(StackConfig::new(&url)).await.unwrap();
    let root = format!("http://{}", stack.http_addr());
    let base = format!("{root}/api/maestro/v1");
    let http = maestro_tests::http();
    let consumer_id = consumers(&http, &base).await;
    consumer_patches_are_objects(&http, &base, &consumer_id).await;
    consumer_names_are_dns1123_labels(&http, &base).await;
    bodies_over_the_limit(&http, &base, &consumer_id).await;
    bundles(&http, &base, &stack, &consumer_id).await;
    catalogue_and_document(&http, &base).await;
    errors_outside_the_document(&http, &root, &base).await;
    stack.shutdown().await;
}

/// Consumers: create, conflicts, validation, get, paging, search, patch. Returns c1's id.
async fn consumers(http: &Client, base: &str) -> String {
    let (st, c1) =
        send(http, http.post(format!("{base}/consumers")).json(&json!({"name":"c1","labels":{"env":"dev"}})))
            .await;
    assert_eq!(st, 201, "{c1}");
    assert_eq!((c1["kind"].as_str(), c1["name"].as_str()), (Some("Consumer"), Some("c1")));
    let id = c1["id"].as_str().unwrap().to_owned();
    for i in 2..=5 {
        let (st, c) =
            send(http, http.post(format!("{base}/consumers")).json(&json!({"name":format!("c{i}")}))).await;
        assert_eq!(st, 201);
        assert!(c.get("labels").is_none(), "no labels, no key (as Go): {c}");
    }
    let (st, err) = send(http, http.post(format!("{base}/consumers")).json(&json!({"name":"c1"}))).await;
    assert_eq!((st, err["kind"].as_str(), code(&err)), (409, Some("Error"), Some("maestro-6")));
    let (st, err) =
        send(http, http.post(format!("{base}/consumers")).json(&json!({"name":"Bad_Name"}))).await;
    assert_eq!((st, code(&err)), (400, Some("maestro-8")));
    let (st, err) = send(http, http.post(format!("{base}/consumers")).body("{not json")).await;
    assert_eq!((st, code(&err)), (400, Some("maestro-17")));

    let (st, got) = send(http, http.get(format!("{base}/consumers/{id}"))).await;
    assert_eq!((st, got["labels"]["env"].as_str()), (200, Some("dev")));
    let (st, page) = send(http, http.get(format!("{base}/consumers?page=2&size=2"))).await;
    assert_eq!(
        (st, page["kind"].as_str(), page["total"].as_i64(), page["size"].as_i64()),
        (200, Some("ConsumerList"), Some(5), Some(2))
    );
    let (_, found) =
        send(http, http.get(format!("{base}/consumers")).query(&[("search", "name = 'c3'")])).await;
    assert_eq!(found["items"][0]["name"].as_str(), Some("c3"));

    let (st, patched) =
        send(http, http.patch(format!("{base}/consumers/{id}")).json(&json!({"labels":{"tier":"gold"}})))
            .await;
    assert_eq!(st, 200);
    assert_eq!(patched["labels"], json!({"tier":"gold"}), "labels are replaced");
    let (st, _) =
        send(http, http.delete(format!("{base}/consumers/{}", page["items"][0]["id"].as_str().unwrap())))
            .await;
    assert_eq!(st, 204);
    let (st, err) = send(http, http.get(format!("{base}/consumers/nope"))).await;
    assert_eq!((st, code(&err)), (404, Some("maestro-7")));
    id
}

/// Asserts `b` shows no key Go would not: no `source`, and no empty optional keys.
fn assert_go_shape(b: &Value) {
    assert!(b.get("source").is_none(), "no source key: {b}");
    for key in ["delete_option", "manifest_configs"] {
        if let Some(v) = b.get(key) {
            assert!(v != &json!({}) && v != &json!([]) && !v.is_null(), "an empty {key} is left out: {b}");
        }
    }
}

/// Bundles on c1: get, list, the consumer cannot be deleted while one exists, idempotent
/// deletes.
async fn bundles(http: &Client, base: &str, stack: &LocalStack, consumer_id: &str) {
    let work = maestro_client::manifestwork::parse(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: default\n",
        Some("cm-work"),
    )
    .unwrap();
    let out = stack.source.apply("c1", &work).await.unwrap();
    let bundle_url = format!("{base}/resource-bundles/{}", out.resource_id);
    let (st, b) = send(http, http.get(&bundle_url)).await;
    assert_eq!(
        (st, b["kind"].as_str(), b["consumer_name"].as_str(), b["version"].as_i64()),
        (200, Some("ResourceBundle"), Some("c1"), Some(1))
    );
    assert_eq!(b["manifests"][0]["kind"].as_str(), Some("ConfigMap"));
    assert_go_shape(&b);
    assert!(b.get("deleted_at").is_none() && b.get("status").is_none(), "not deleting, no status yet: {b}");
    let (_, list) =
        send(http, http.get(format!("{base}/resource-bundles")).query(&[("search", "consumer_name = 'c1'")]))
            .await;
    assert_eq!(list["total"].as_i64(), Some(1));
    assert_go_shape(&list["items"][0]);
    let (st, projected) =
        send(http, http.get(format!("{base}/resource-bundles")).query(&[("fields", "name")])).await;
    assert_eq!((st, projected["items"][0]["id"].as_str()), (200, Some(out.resource_id.as_str())));

    let (st, err) = send(http, http.delete(format!("{base}/consumers/{consumer_id}"))).await;
    assert_eq!((st, code(&err)), (403, Some("maestro-4")));
    for round in ["first", "second (already deleting)"] {
        let (st, _) = send(http, http.delete(&bundle_url)).await;
        assert_eq!(st, 204, "{round} delete");
    }
    let (st, _) = send(http, http.delete(format!("{base}/resource-bundles/nope"))).await;
    assert_eq!(st, 204, "deleting an unknown bundle is a no-op, as in Go");
    let (_, b) = send(http, http.get(&bundle_url)).await;
    assert!(b["deleted_at"].is_string(), "soft-deleted until an agent confirms: {b}");
    assert_go_shape(&b);
    let (_, list) = send(http, http.get(format!("{base}/resource-bundles"))).await;
    assert!(list["items"][0]["deleted_at"].is_string(), "{list}");
    let (st, err) = send(http, http.get(format!("{base}/resource-bundles/nope"))).await;
    assert_eq!((st, code(&err)), (404, Some("maestro-7")));
}

/// `/errors`, `/errors/{id}` and `/openapi`.
async fn catalogue_and_document(http: &Client, base: &str) {
    let (st, all) = send(http, http.get(format!("{base}/errors"))).await;
    assert_eq!((st, all["kind"].as_str(), all["total"].as_i64()), (200, Some("ErrorList"), Some(13)));
    let codes: Vec<&str> = all["items"].as_array().unwrap().iter().filter_map(code).collect();
    for c in [1, 4, 6, 7, 8, 9, 10, 11, 15, 17, 21, 23, 26] {
        assert!(codes.contains(&format!("maestro-{c}").as_str()), "maestro-{c} in {codes:?}");
    }
    let (st, e) = send(http, http.get(format!("{base}/errors/23"))).await;
    assert_eq!(
        (st, e["id"].as_str(), e["href"].as_str(), e["reason"].as_str()),
        (200, Some("23"), Some("/api/maestro/v1/errors/23"), Some("Failed to parse search query"))
    );
    let (st, err) = send(http, http.get(format!("{base}/errors/999"))).await;
    assert_eq!((st, code(&err)), (404, Some("maestro-7")));
    let (st, doc) = send(http, http.get(format!("{base}/openapi"))).await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].is_string() && doc["paths"]["/api/maestro/v1/consumers"].is_object(), "{doc}");
}

/// Unknown routes and methods, the operation id, and the health endpoints.
async fn errors_outside_the_document(http: &Client, root: &str, base: &str) {
    for path in [format!("{base}/nothing"), format!("{root}/nowhere")] {
        let (st, err) = send_error(http, http.get(&path).header("X-Operation-ID", "op-42")).await;
        assert_eq!((st, code(&err), err["id"].as_str()), (404, Some("maestro-7"), Some("7")), "{path}");
        assert_eq!(err["operation_id"].as_str(), Some("op-42"), "the operation id is echoed");
    }
    let (st, err) = send_error(http, http.put(format!("{base}/consumers"))).await;
    assert_eq!((st, code(&err)), (405, Some("maestro-10")));
    let (st, err) = send_error(http, http.post(format!("{base}/resource-bundles/x"))).await;
    assert_eq!((st, code(&err)), (405, Some("maestro-10")));
    assert_eq!(send_unchecked(http, http.get(format!("{root}/healthz"))).await.0, 200);
    assert_eq!(send_unchecked(http, http.get(format!("{root}/readyz"))).await.0, 200);
}

/// PATCH bodies that are not objects, or whose labels are not a string map, are refused with
/// 400 and code 17 (Go's "Invalid request format") and leave the row as it was; an object
/// without `labels` (or with `labels: null`) changes nothing, as in Go.
async fn consumer_patches_are_objects(http: &Client, base: &str, id: &str) {
    let url = format!("{base}/consumers/{id}");
    let (_, before) = send(http, http.get(&url)).await;
    assert_eq!(before["labels"], json!({"tier":"gold"}), "{before}");
    for bad in [
        "[]",
        "\"x\"",
        "null",
        "42",
        "true",
        r#"{"labels": "x"}"#,
        r#"{"labels": ["a"]}"#,
        r#"{"labels": {"k": 1}}"#,
    ] {
        let (st, err) =
            send(http, http.patch(&url).header("content-type", "application/json").body(bad)).await;
        assert_eq!((st, code(&err)), (400, Some("maestro-17")), "{bad}: {err}");
        let (_, after) = send(http, http.get(&url)).await;
        assert_eq!(after, before, "{bad} left the row unchanged");
    }
    for unchanged in ["{}", r#"{"labels": null}"#, r#"{"other": 1}"#] {
        let (st, body) =
            send(http, http.patch(&url).header("content-type", "application/json").body(unchanged)).await;
        assert_eq!((st, &body), (200, &before), "{unchanged}");
        let (_, after) = send(http, http.get(&url)).await;
        assert_eq!(after, before, "{unchanged} left the row unchanged");
    }
    let (st, err) = send(http, http.patch(&url).json(&json!({"name": "other"}))).await;
    assert_eq!((st, code(&err)), (400, Some("maestro-8")));
    let (st, err) = send(http, http.patch(format!("{base}/consumers/nope")).json(&json!({}))).await;
    assert_eq!((st, code(&err)), (404, Some("maestro-7")), "an unchanged patch still needs the consumer");
}

/// Consumer names are DNS-1123 labels, as Go's (Kubernetes' namespace name rule); invalid
/// ones are refused with 400 and code 8 and nothing is stored; an empty name is no name (the
/// consumer is named by its id), as in Go.
async fn consumer_names_are_dns1123_labels(http: &Client, base: &str) {
    let before = consumer_total(http, base).await;
    let long = "a".repeat(64);
    for bad in ["Upper", "under_score", "-lead", "trail-", "dot.ted", "sp ace", "ünï", long.as_str()] {
        let (st, err) = send(http, http.post(format!("{base}/consumers")).json(&json!({"name": bad}))).await;
        assert_eq!((st, code(&err)), (400, Some("maestro-8")), "{bad:?}: {err}");
        let reason = err["reason"].as_str().unwrap();
        assert!(reason.contains("RFC 1123 label") && reason.contains(&format!("{bad:?}")), "{reason}");
    }
    assert_eq!(consumer_total(http, base).await, before, "no invalid name was stored");
    let ok = "a".repeat(63);
    let (st, c) = send(http, http.post(format!("{base}/consumers")).json(&json!({"name": ok}))).await;
    assert_eq!((st, c["name"].as_str()), (201, Some(ok.as_str())));
    let (st, c) = send(http, http.post(format!("{base}/consumers")).json(&json!({"name": ""}))).await;
    assert_eq!((st, c["name"].as_str()), (201, c["id"].as_str()), "an empty name is the id: {c}");
    assert_eq!(consumer_total(http, base).await, before + 2);
    for c in [ok.as_str(), c["name"].as_str().unwrap()] {
        let (_, found) =
            send(http, http.get(format!("{base}/consumers")).query(&[("search", format!("name = '{c}'"))]))
                .await;
        let (st, _) = send(
            http,
            http.delete(format!("{base}/consumers/{}", found["items"][0]["id"].as_str().unwrap())),
        )
        .await;
        assert_eq!(st, 204);
    }
}

/// The number of consumers.
async fn consumer_total(http: &Client, base: &str) -> i64 {
    send(http, http.get(format!("{base}/consumers?size=0"))).await.1["total"].as_i64().unwrap()
}

/// A body over the limit (1 MiB by default) is answered 413 with code 17 and changes nothing.
async fn bodies_over_the_limit(http: &Client, base: &str, id: &str) {
    let url = format!("{base}/consumers/{id}");
    let (_, before) = send(http, http.get(&url)).await;
    let big = json!({"labels": {"k": "v".repeat(1024 * 1024)}});
    let (st, err) = send_error(http, http.patch(&url).json(&big)).await;
    assert_eq!((st, code(&err)), (413, Some("maestro-17")), "{err}");
    // The unread body ends the connection, and the answer says so: a client that reused the
    // connection would see its next request cut off (a flaky failure of this test once).
    let resp = http.patch(&url).json(&big).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers().get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]));
    assert!(err["reason"].as_str().unwrap().contains("1048576 bytes"), "{err}");
    let (st, err) = send_error(
        http,
        http.post(format!("{base}/consumers")).json(&json!({"name": "big", "labels": big["labels"]})),
    )
    .await;
    assert_eq!((st, code(&err)), (413, Some("maestro-17")), "{err}");
    let (_, after) = send(http, http.get(&url)).await;
    assert_eq!(after, before);
    let (_, found) =
        send(http, http.get(format!("{base}/consumers")).query(&[("search", "name = 'big'")])).await;
    assert_eq!(found["total"].as_i64(), Some(0), "nothing was created");
}
