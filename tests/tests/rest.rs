//! The REST API over a real socket: consumers (create, get, list with search and paging,
//! patch labels, delete, delete refused while bundles exist), resource bundles (get, list,
//! delete), JSON error bodies, and the health endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use maestro::stack::{LocalStack, StackConfig};
use maestro_tests::{Db, db_url, logging};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_behaves_like_maestro() {
    logging();
    let (_guard, url) = db_url(Db::Sqlite).await;
    let stack = LocalStack::start(StackConfig::new(&url)).await.unwrap();
    let base = format!("http://{}/api/maestro/v1", stack.http_addr());
    let http = reqwest::Client::new();
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    };

    let (st, c1) =
        send(http.post(format!("{base}/consumers")).json(&json!({"name":"c1","labels":{"env":"dev"}}))).await;
    assert_eq!(st, 201, "{c1}");
    assert_eq!((c1["kind"].as_str(), c1["name"].as_str()), (Some("Consumer"), Some("c1")));
    let id = c1["id"].as_str().unwrap().to_owned();
    for i in 2..=5 {
        assert_eq!(
            send(http.post(format!("{base}/consumers")).json(&json!({"name":format!("c{i}")}))).await.0,
            201
        );
    }
    let (st, err) = send(http.post(format!("{base}/consumers")).json(&json!({"name":"c1"}))).await;
    assert_eq!(st, 409);
    assert_eq!((err["kind"].as_str(), err["code"].as_str()), (Some("Error"), Some("maestro-6")));
    let (st, err) = send(http.post(format!("{base}/consumers")).json(&json!({"name":"Bad_Name"}))).await;
    assert_eq!((st, err["code"].as_str()), (400, Some("maestro-8")));

    let (st, got) = send(http.get(format!("{base}/consumers/{id}"))).await;
    assert_eq!((st, got["labels"]["env"].as_str()), (200, Some("dev")));
    let (st, page) = send(http.get(format!("{base}/consumers?page=2&size=2"))).await;
    assert_eq!(
        (st, page["kind"].as_str(), page["total"].as_i64(), page["size"].as_i64()),
        (200, Some("ConsumerList"), Some(5), Some(2))
    );
    let (_, found) = send(http.get(format!("{base}/consumers")).query(&[("search", "name = 'c3'")])).await;
    assert_eq!(found["items"][0]["name"].as_str(), Some("c3"));
    let (st, err) = send(http.get(format!("{base}/consumers")).query(&[("search", "labels = 'x'")])).await;
    assert_eq!((st, err["code"].as_str()), (400, Some("maestro-23")));

    let (st, patched) =
        send(http.patch(format!("{base}/consumers/{id}")).json(&json!({"labels":{"tier":"gold"}}))).await;
    assert_eq!(st, 200);
    assert_eq!(patched["labels"], json!({"tier":"gold"}), "labels are replaced");

    // A bundle on c1: the consumer cannot be deleted while it exists.
    let work = maestro_client::manifestwork::parse(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: default\n",
        Some("cm-work"),
    )
    .unwrap();
    let out = stack.source.apply("c1", &work).await.unwrap();
    let (st, b) = send(http.get(format!("{base}/resource-bundles/{}", out.resource_id))).await;
    assert_eq!(
        (st, b["kind"].as_str(), b["consumer_name"].as_str(), b["version"].as_i64()),
        (200, Some("ResourceBundle"), Some("c1"), Some(1))
    );
    assert_eq!(b["manifests"][0]["kind"].as_str(), Some("ConfigMap"));
    let (_, list) =
        send(http.get(format!("{base}/resource-bundles")).query(&[("search", "consumer_name = 'c1'")])).await;
    assert_eq!(list["total"].as_i64(), Some(1));
    let (st, err) = send(http.delete(format!("{base}/consumers/{id}"))).await;
    assert_eq!((st, err["code"].as_str()), (403, Some("maestro-4")));
    let (st, _) = send(http.delete(format!("{base}/resource-bundles/{}", out.resource_id))).await;
    assert_eq!(st, 204);
    let (_, b) = send(http.get(format!("{base}/resource-bundles/{}", out.resource_id))).await;
    assert!(b["deleted_at"].is_string(), "soft-deleted until an agent confirms: {b}");

    let (st, err) = send(http.get(format!("{base}/resource-bundles/nope"))).await;
    assert_eq!((st, err["code"].as_str()), (404, Some("maestro-7")));
    let (st, _) =
        send(http.delete(format!("{base}/consumers/{}", page["items"][0]["id"].as_str().unwrap()))).await;
    assert_eq!(st, 204);
    let health = format!("http://{}", stack.http_addr());
    assert_eq!(send(http.get(format!("{health}/healthz"))).await.0, 200);
    assert_eq!(send(http.get(format!("{health}/readyz"))).await.0, 200);
    stack.shutdown().await;
}
