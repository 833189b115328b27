//! The REST lists' `search`, `orderBy` and `fields` on both stores, over a real socket: every
//! search Go's grpcsource client sends returns exactly the expected bundles, the rest of the
//! language (comparisons, LIKE/ILIKE, IN, BETWEEN, IS NULL, NOT, parentheses, times, integers)
//! filters as PostgreSQL would, values that look like SQL are only ever data, and bad input is
//! a 400 that says where and what. Every response is checked against the OpenAPI contract.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use maestro::stack::{LocalStack, StackConfig};
use maestro_client::{ManifestWorkInput, RestClient, SourceClient};
use maestro_tests::{Db, db_url, logging};
use serde_json::{Value, json};

/// A REST client that checks every response against the OpenAPI document.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// GET `path` (under /api/maestro/v1) with `query`; the status and the JSON body.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.base)).query(query).send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        if query.iter().any(|(k, _)| *k == "fields") && status == 200 {
            maestro_tests::contract::check_projection(
                "GET",
                &format!("/api/maestro/v1{path}"),
                status,
                &body,
            );
        } else {
            maestro_tests::contract::check("GET", &format!("/api/maestro/v1{path}"), status, &body);
        }
        (status, body)
    }

    /// The names of the bundles `search` finds, in name order.
    async fn bundles(&self, search: &str) -> Vec<String> {
        let (status, body) =
            self.get("/resource-bundles", &[("search", search), ("orderBy", "name asc")]).await;
        assert_eq!(status, 200, "search {search:?}: {body}");
        names(&body)
    }

    /// The error of a list call that must fail with `status`: its code and reason.
    async fn error(&self, path: &str, query: &[(&str, &str)], status: u16) -> (String, String) {
        let (got, body) = self.get(path, query).await;
        assert_eq!(got, status, "{query:?}: {body}");
        (body["code"].as_str().unwrap().to_owned(), body["reason"].as_str().unwrap().to_owned())
    }
}

fn names(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap().to_owned()).collect()
}

fn work(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ManifestWorkInput {
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\ndata:\n  k: v\n"
    );
    let mut w = maestro_client::manifestwork::parse("cm.yaml", &manifest, Some(name)).unwrap();
    w.labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>();
    w.annotations = annotations.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    w
}

/// A value with every character class the injection checks care about.
const TRICKY: &str = "it's -- ; 'x' or '1'='1' ü 🚀 \\";

/// Consumers c1 (env=dev), c2, c3; bundles of source `maestro-demo`: w1 (app=web, tier=gold,
/// annotation note=TRICKY) w2 (app=api) w3 (no labels) on c1, w4 (app=web) on c2; of source
/// `other`: w5 (app=web) on c1.
async fn fixture(stack: &LocalStack, api: &Api) {
    for (name, labels) in [("c1", json!({"env": "dev"})), ("c2", json!({})), ("c3", json!({"env": "prod"}))] {
        let resp = api
            .http
            .post(format!("{}/consumers", api.base))
            .json(&json!({"name": name, "labels": labels}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
    }
    let s = &stack.source;
    s.apply("c1", &work("w1", &[("app", "web"), ("tier", "gold")], &[("note", TRICKY)])).await.unwrap();
    s.apply("c1", &work("w2", &[("app", "api")], &[])).await.unwrap();
    s.apply("c1", &work("w3", &[], &[])).await.unwrap();
    s.apply("c2", &work("w4", &[("app", "web")], &[])).await.unwrap();
    let rest = RestClient::new(&format!("http://{}", stack.http_addr())).unwrap();
    let other = SourceClient::connect(&stack.grpc_addr().to_string(), "other", rest).await.unwrap();
    other.apply("c1", &work("w5", &[("app", "web")], &[])).await.unwrap();
}

async fn run(db: Db) {
    logging();
    let (_guard, url) = db_url(db).await;
    let stack = LocalStack::start(StackConfig::new(&url)).await.unwrap();
    let api =
        Api { http: maestro_tests::http(), base: format!("http://{}/api/maestro/v1", stack.http_addr()) };
    fixture(&stack, &api).await;
    grpcsource_searches(&api).await;
    language(&api).await;
    injection(&api).await;
    ordering_and_projection(&api).await;
    consumers(&api).await;
    bad_input(&api).await;
    stack.shutdown().await;
}

/// The searches Go's grpcsource client sends (list/watch, reconnect sync, label selectors).
async fn grpcsource_searches(api: &Api) {
    let labels = "payload->'metadata'->'labels'";
    let cases: Vec<(String, &[&str])> = vec![
        ("source='maestro-demo' and consumer_name='c1'".into(), &["w1", "w2", "w3"]),
        (
            "source='maestro-demo' and (consumer_name='c1' or consumer_name='c2')".into(),
            &["w1", "w2", "w3", "w4"],
        ),
        (format!(r#"{labels}@>'{{"app":"web"}}'"#), &["w1", "w4", "w5"]),
        (format!(r#"source='maestro-demo' and {labels}@>'{{"app":"web","tier":"gold"}}'"#), &["w1"]),
        (format!("{labels}->>'app'in('web','api')"), &["w1", "w2", "w4", "w5"]),
        (format!("{labels}->>'app' not in ('web')"), &["w2"]),
        (format!("{labels}->>'app'<>'web'"), &["w2"]),
        (format!("{labels}->>'app'<>null"), &["w1", "w2", "w4", "w5"]),
        (format!("{labels}->>'app' is null"), &["w3"]),
        (format!("{labels}->>'app' = null"), &["w3"]),
        (
            format!(
                r#"source='maestro-demo' and consumer_name='c1' and {labels}@>'{{"app":"web"}}' and {labels}->>'tier'<>null"#
            ),
            &["w1"],
        ),
    ];
    for (search, want) in cases {
        assert_eq!(api.bundles(&search).await, want, "search {search:?}");
    }
}

/// The rest of the language.
async fn language(api: &Api) {
    let cases: &[(&str, &[&str])] = &[
        ("name = 'w1' or name = 'w5'", &["w1", "w5"]),
        ("NAME != 'w1' AND Source <> 'other'", &["w2", "w3", "w4"]),
        ("name like 'w%'", &["w1", "w2", "w3", "w4", "w5"]),
        ("name like 'W%'", &[]),
        ("name ilike 'W_'", &["w1", "w2", "w3", "w4", "w5"]),
        ("name not like '%1'", &["w2", "w3", "w4", "w5"]),
        ("name in ('w2', 'w4', 'zz')", &["w2", "w4"]),
        ("name not in ('w2', 'w4')", &["w1", "w3", "w5"]),
        ("name between 'w2' and 'w4'", &["w2", "w3", "w4"]),
        ("not (name = 'w1' or name = 'w2') and consumer_name = 'c1'", &["w3", "w5"]),
        ("not name = 'w1' and not name = 'w2'", &["w3", "w4", "w5"]),
        ("version = 1 and version >= 1 and version < 2", &["w1", "w2", "w3", "w4", "w5"]),
        ("version > 1", &[]),
        (
            "created_at > '2000-01-01' and created_at <= '2999-12-31T00:00:00Z'",
            &["w1", "w2", "w3", "w4", "w5"],
        ),
        ("updated_at < '2000-01-01T00:00:00+02:00'", &[]),
        ("deleted_at is null and deleted_at = null", &["w1", "w2", "w3", "w4", "w5"]),
        ("deleted_at is not null", &[]),
        ("resources.name = 'w3'", &["w3"]),
        ("payload->'metadata'->>'name' = 'w4'", &["w4"]),
    ];
    for (search, want) in cases {
        assert_eq!(api.bundles(search).await, *want, "search {search:?}");
    }
}

/// Values holding quotes, comment markers, semicolons and unicode are data: they match only
/// the value they spell, and the tables are intact afterwards. NUL is refused with a 400 (no
/// PostgreSQL text can hold it), on both stores alike.
async fn injection(api: &Api) {
    let quoted = TRICKY.replace('\'', "''");
    let note = format!("payload->'metadata'->'annotations'->>'note' = '{quoted}'");
    assert_eq!(api.bundles(&note).await, ["w1"]);
    for search in [
        "name = 'x'' or ''1''=''1'",
        "name = '; drop table resources; --'",
        "name = 'w1'' --'",
        "name like '%'' or name like ''%'",
        "name = 'ü🚀'",
        r#"payload->'metadata'->'labels'@>'{"app":"web'' or 1=1 --"}'"#,
        "payload->'metadata'->'labels'->>'x'' or ''1''=''1' = 'web'",
    ] {
        assert!(api.bundles(search).await.is_empty(), "{search:?} matched something");
    }
    let (code, reason) = api.error("/resource-bundles", &[("search", "name = 'a\0b'")], 400).await;
    assert_eq!(code, "maestro-23", "{reason}");
    assert!(reason.contains("NUL"), "{reason}");
    assert_eq!(api.bundles("name like '%'").await.len(), 5, "every bundle is still there");
}

async fn ordering_and_projection(api: &Api) {
    let (_, desc) = api.get("/resource-bundles", &[("orderBy", "name desc")]).await;
    assert_eq!(names(&desc), ["w5", "w4", "w3", "w2", "w1"]);
    let (_, mixed) = api.get("/resource-bundles", &[("orderBy", " consumer_name DESC , name asc ")]).await;
    assert_eq!(names(&mixed), ["w4", "w1", "w2", "w3", "w5"]);
    // Pages in a sorted order never overlap and cover every row.
    let mut seen = Vec::new();
    for page in ["1", "2", "3"] {
        let (_, p) =
            api.get("/resource-bundles", &[("orderBy", "name desc"), ("size", "2"), ("page", page)]).await;
        assert_eq!(p["total"], 5);
        seen.extend(names(&p));
    }
    assert_eq!(seen, ["w5", "w4", "w3", "w2", "w1"]);
    let (_, by_version) = api.get("/resource-bundles", &[("orderBy", "version desc, created_at desc")]).await;
    assert_eq!(by_version["size"], 5);

    let query = [("fields", "name, version"), ("orderBy", "name"), ("search", "consumer_name = 'c2'")];
    let (status, projected) = api.get("/resource-bundles", &query).await;
    assert_eq!(status, 200, "{projected}");
    let item = projected["items"][0].as_object().unwrap();
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "name", "version"], "{projected}");
    assert_eq!((item["name"].as_str(), projected["total"].as_i64()), (Some("w4"), Some(1)));
    let (_, consumers) = api.get("/consumers", &[("fields", "name"), ("orderBy", "name")]).await;
    let first = consumers["items"][0].as_object().unwrap();
    assert_eq!((first.len(), first["name"].as_str()), (2, Some("c1")));
}

async fn consumers(api: &Api) {
    let names_of = |body: &Value| -> Vec<String> { names(body) };
    let cases: &[(&str, &[&str])] = &[
        ("labels->>'env' = 'dev'", &["c1"]),
        (r#"labels@>'{"env":"prod"}'"#, &["c3"]),
        ("labels->>'env' is null", &["c2"]),
        ("labels->>'env' in ('dev','prod') and name like 'c%'", &["c1", "c3"]),
        ("name = 'c2' or id = 'nope'", &["c2"]),
        ("created_at > '2000-01-01'", &["c1", "c2", "c3"]),
    ];
    for (search, want) in cases {
        let (status, body) = api.get("/consumers", &[("search", search), ("orderBy", "name")]).await;
        assert_eq!(status, 200, "{search:?}: {body}");
        assert_eq!(names_of(&body), *want, "search {search:?}");
    }
    let (_, desc) = api.get("/consumers", &[("orderBy", "name desc")]).await;
    assert_eq!(names_of(&desc), ["c3", "c2", "c1"]);
}

/// Unparseable searches, unknown fields, bad orderBy and fields: 400 with what and where.
async fn bad_input(api: &Api) {
    let cases = [
        ("name = ", "position 7"),
        ("name = 'w1", "position 7"),
        ("(name = 'w1'", "position 12"),
        ("name = 'w1' and", "position 15"),
        ("payload = 'x'", "unknown field"),
        ("status->>'x' = 'y'", "unknown field"),
        ("name = 3", "string"),
        ("version = 'one'", "integer"),
        ("created_at > 'yesterday'", "RFC 3339"),
        ("version like '1%'", "LIKE"),
        (r#"payload->'metadata'->'labels'@>'[1]'"#, "object"),
        ("name is maybe", "NULL"),
    ];
    for (search, hint) in cases {
        let (code, reason) = api.error("/resource-bundles", &[("search", search)], 400).await;
        assert_eq!(code, "maestro-23", "{search:?}: {reason}");
        assert!(reason.contains(hint), "{search:?}: reason {reason:?} does not mention {hint:?}");
    }
    let (code, reason) = api.error("/consumers", &[("search", "consumer_name = 'c1'")], 400).await;
    assert_eq!(code, "maestro-23", "{reason}");
    for order in ["name sideways", "payload asc", "source; drop table resources"] {
        let (_, reason) = api.error("/resource-bundles", &[("orderBy", order)], 400).await;
        assert!(reason.contains("orderBy"), "{order:?}: {reason}");
    }
    let (_, reason) = api.error("/resource-bundles", &[("fields", "name,source")], 400).await;
    assert!(reason.contains("source"), "{reason}");
    for page in ["0", "-1", "2147483648", "x"] {
        let (code, reason) = api.error("/resource-bundles", &[("page", page)], 400).await;
        assert_eq!(code, "maestro-8", "page {page}: {reason}");
    }
    let (_, last) = api.get("/resource-bundles", &[("page", "2147483647")]).await;
    assert_eq!((last["page"].as_i64(), last["size"].as_i64()), (Some(2_147_483_647), Some(0)));
    // A query string that cannot be read (a repeated parameter) is still answered with an
    // Error body, not plain text.
    let resp = api.http.get(format!("{}/consumers?page=1&page=2", api.base)).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    maestro_tests::contract::check("GET", "/api/maestro/v1/consumers", status, &body);
    assert_eq!((status, body["code"].as_str()), (400, Some("maestro-21")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_order_and_fields_on_sqlite() {
    run(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_order_and_fields_on_postgres() {
    run(Db::Postgres).await;
}
