//! Contract checks: REST responses against this server's OpenAPI document
//! (`crates/maestro-server/openapi/openapi.yaml`, the file the server serves at
//! `/api/maestro/v1/openapi`; docs/rest.md, "OpenAPI document").
//!
//! Go Maestro's generated client checks the required keys of a list and then decodes it with
//! unknown keys disallowed, for every item too. So the checks here are as strict: each
//! response is validated (JSON Schema, with `format`s such as `date-time` checked) against
//! the schema the document names for its method, path template and status, with every object
//! schema that declares `properties` closed (`additionalProperties: false`) after its `allOf`
//! parts are merged, so the document can keep Go's `allOf` layout.
//!
//! ```no_run
//! maestro_tests::contract::check("GET", "/api/maestro/v1/consumers", 200, &serde_json::json!({}));
//! ```

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

/// Where the document lives.
pub const OPENAPI_PATH: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/maestro-server/openapi/openapi.yaml");

static CONTRACT: LazyLock<Contract> = LazyLock::new(|| {
    let text =
        std::fs::read_to_string(OPENAPI_PATH).unwrap_or_else(|e| panic!("reading {OPENAPI_PATH}: {e}"));
    Contract::from_yaml(&text).unwrap_or_else(|e| panic!("{OPENAPI_PATH}: {e}"))
});

/// The contract of [`OPENAPI_PATH`], loaded once.
pub fn contract() -> &'static Contract {
    &CONTRACT
}

/// Panics unless `body` is what the document declares for `method` `path` answering
/// `status` (`Value::Null` stands for an empty body). The message names the request, the
/// failing JSON pointers and the body.
pub fn check(method: &str, path: &str, status: u16, body: &Value) {
    report(method, path, status, body, contract().validate(method, path, status, body));
}

/// [`check`] for a list answered to a `fields` projection: the list envelope as declared, and
/// items that hold `id` and only keys of the item schema, each valid as declared.
pub fn check_projection(method: &str, path: &str, status: u16, body: &Value) {
    report(method, path, status, body, contract().validate_projection(method, path, status, body));
}

/// Panics unless `body` is valid as the component schema `name` (e.g. `Error`), for replies
/// outside the document's paths (unknown routes, unserved methods).
pub fn check_schema(name: &str, body: &Value) {
    if let Err(e) = contract().validate_schema(name, body) {
        panic!("body does not match schema {name}:\n{e}\nbody: {}", pretty(body));
    }
}

fn report(method: &str, path: &str, status: u16, body: &Value, result: Result<(), String>) {
    if let Err(e) = result {
        panic!(
            "{method} {path} -> {status}: the response does not match the OpenAPI document:\n{e}\nbody: {}",
            pretty(body)
        );
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A parsed OpenAPI document.
#[derive(Debug, Clone)]
pub struct Contract {
    doc: Value,
}

impl Contract {
    /// Parses an OpenAPI document written in YAML (or JSON).
    ///
    /// # Errors
    /// The parser's message; or a note when there is no `paths` object.
    pub fn from_yaml(text: &str) -> Result<Contract, String> {
        let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if !doc.get("paths").is_some_and(Value::is_object) {
            return Err("the document has no paths".into());
        }
        Ok(Contract { doc })
    }

    /// Validates a response.
    ///
    /// # Errors
    /// One line per failure: an unknown path, method or status, a body where none is
    /// declared, or `<JSON pointer>: <what is wrong>`.
    pub fn validate(&self, method: &str, path: &str, status: u16, body: &Value) -> Result<(), String> {
        match self.response_schema(method, path, status)? {
            Some(schema) => validate(&schema, body),
            None if body.is_null() => Ok(()),
            None => Err(format!("no body is declared for {status}, got one")),
        }
    }

    /// Validates a list answered to a `fields` projection (see [`check_projection`]).
    ///
    /// # Errors
    /// As [`Contract::validate`]; also when the declared schema is not a list.
    pub fn validate_projection(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let mut schema = self
            .response_schema(method, path, status)?
            .ok_or_else(|| format!("no body is declared for {status}"))?;
        let item = schema
            .pointer_mut("/properties/items/items")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("the schema of {status} is not a list"))?;
        item.insert("required".into(), json!(["id"]));
        validate(&schema, body)
    }

    /// Validates `body` against the component schema `name`.
    ///
    /// # Errors
    /// As [`Contract::validate`]; also for an unknown schema.
    pub fn validate_schema(&self, name: &str, body: &Value) -> Result<(), String> {
        let schema = self.resolve(&json!({"$ref": format!("#/components/schemas/{name}")}), 0)?;
        validate(&schema, body)
    }

    /// The closed schema of the response `status` to `method` `path` (query ignored);
    /// `None` when that response declares no body.
    ///
    /// # Errors
    /// When the path, method or status is not in the document.
    pub fn response_schema(&self, method: &str, path: &str, status: u16) -> Result<Option<Value>, String> {
        let (template, item) = self.path_item(path)?;
        let op = item
            .get(method.to_ascii_lowercase())
            .ok_or_else(|| format!("{method} is not an operation of {template}"))?;
        let responses = &op["responses"];
        let response = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .ok_or_else(|| format!("status {status} is not declared for {method} {template}"))?;
        let response = self.deref(response, 0)?;
        match response.pointer("/content/application~1json/schema") {
            Some(schema) => self.resolve(schema, 0).map(Some),
            None => Ok(None),
        }
    }

    /// The path template matching `path` and its item; literal segments win over `{params}`.
    fn path_item(&self, path: &str) -> Result<(&str, &Value), String> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let paths = self.doc["paths"].as_object().into_iter().flatten();
        paths
            .filter_map(|(template, item)| {
                let parts: Vec<&str> = template.split('/').collect();
                let matches = parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(t, s)| (is_param(t) && !s.is_empty()) || t == s);
                matches.then(|| (parts.iter().filter(|t| is_param(t)).count(), template.as_str(), item))
            })
            .min_by_key(|(params, _, _)| *params)
            .map(|(_, template, item)| (template, item))
            .ok_or_else(|| format!("no path of the document matches {path}"))
    }

    /// Follows `$ref`s to a non-reference value.
    fn deref<'a>(&'a self, v: &'a Value, depth: usize) -> Result<&'a Value, String> {
        match v.get("$ref").and_then(Value::as_str) {
            None => Ok(v),
            Some(_) if depth > 32 => Err("$ref nesting too deep".into()),
            Some(r) => {
                let pointer =
                    r.strip_prefix('#').ok_or_else(|| format!("only local $refs are supported: {r}"))?;
                let target = self.doc.pointer(pointer).ok_or_else(|| format!("dangling $ref {r}"))?;
                self.deref(target, depth + 1)
            }
        }
    }

    /// `schema` with `$ref`s inlined, `allOf` parts merged, and objects with `properties`
    /// closed.
    fn resolve(&self, schema: &Value, depth: usize) -> Result<Value, String> {
        if depth > 32 {
            return Err("schema nesting too deep".into());
        }
        let Value::Object(map) = self.deref(schema, depth)? else { return Ok(schema.clone()) };
        let mut out = Map::new();
        for part in map.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            merge(&mut out, self.resolve(part, depth + 1)?);
        }
        let mut own = Map::new();
        for (key, value) in map {
            let value = match key.as_str() {
                "allOf" => continue,
                "properties" => Value::Object(
                    value
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| Ok((k.clone(), self.resolve(v, depth + 1)?)))
                        .collect::<Result<_, String>>()?,
                ),
                "items" | "additionalProperties" if value.is_object() => self.resolve(value, depth + 1)?,
                _ => value.clone(),
            };
            own.insert(key.clone(), value);
        }
        merge(&mut out, Value::Object(own));
        if out.contains_key("properties") && !out.contains_key("additionalProperties") {
            out.insert("additionalProperties".into(), Value::Bool(false));
        }
        Ok(Value::Object(out))
    }
}

fn is_param(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

/// Merges the resolved schema `part` into `into`: `properties` and `required` are united, the
/// other keywords are kept from the first part that has them.
fn merge(into: &mut Map<String, Value>, part: Value) {
    let Value::Object(part) = part else { return };
    for (key, value) in part {
        match (key.as_str(), into.get_mut(&key), value) {
            ("properties", Some(Value::Object(have)), Value::Object(more)) => have.extend(more),
            ("required", Some(Value::Array(have)), Value::Array(more)) => {
                for name in more {
                    if !have.contains(&name) {
                        have.push(name);
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Validates `body` against the resolved `schema`, `format`s included.
fn validate(schema: &Value, body: &Value) -> Result<(), String> {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| format!("the document's schema does not compile: {e}"))?;
    let failures: Vec<String> = validator
        .iter_errors(body)
        .map(|e| {
            let at = e.instance_path().to_string();
            format!("  at {:?}: {e}", if at.is_empty() { "/" } else { at.as_str() })
        })
        .collect();
    if failures.is_empty() { Ok(()) } else { Err(failures.join("\n")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLES: &str = "/api/maestro/v1/resource-bundles";
    const CONSUMERS: &str = "/api/maestro/v1/consumers";
    const TIME: &str = "2024-01-02T03:04:05.123456Z";

    fn bundle() -> Value {
        json!({"id": "b1", "kind": "ResourceBundle", "href": format!("{BUNDLES}/b1"), "name": "web",
               "consumer_name": "c1", "version": 1, "created_at": TIME, "updated_at": TIME,
               "metadata": {"name": "web"}, "manifests": [{"kind": "ConfigMap"}]})
    }

    fn list(kind: &str, items: Vec<Value>) -> Value {
        json!({"kind": kind, "page": 1, "size": items.len(), "total": items.len(), "items": items})
    }

    fn error(code: u16) -> Value {
        json!({"kind": "Error", "id": code.to_string(), "href": format!("/api/maestro/v1/errors/{code}"),
               "code": format!("maestro-{code}"), "reason": "no", "operation_id": "op"})
    }

    fn rejects(method: &str, path: &str, status: u16, body: Value, pointer: &str) {
        match contract().validate(method, path, status, &body) {
            Ok(()) => panic!("{method} {path} {status} accepted {body}"),
            Err(e) => assert!(e.contains(pointer), "{method} {path} {status}: {pointer} not in {e}"),
        }
    }

    #[test]
    fn valid_responses_pass() {
        let c = contract();
        c.validate("GET", BUNDLES, 200, &list("ResourceBundleList", vec![bundle()])).unwrap();
        c.validate("GET", &format!("{BUNDLES}/b1?x=1"), 200, &bundle()).unwrap();
        c.validate("GET", &format!("{BUNDLES}/nope"), 404, &error(7)).unwrap();
        c.validate("DELETE", &format!("{BUNDLES}/b1"), 204, &Value::Null).unwrap();
        let consumer = json!({"id": "u", "kind": "Consumer", "href": "h", "name": "c1", "labels": {"a": "b"},
                              "created_at": TIME, "updated_at": TIME});
        c.validate("GET", CONSUMERS, 200, &list("ConsumerList", vec![consumer])).unwrap();
        c.validate("GET", "/api/maestro/v1/errors/23", 200, &error(23)).unwrap();
        c.validate_schema("Error", &error(10)).unwrap();
    }

    #[test]
    fn unknown_keys_are_refused_in_items_and_objects() {
        let mut with_source = bundle();
        with_source["source"] = json!("maestro");
        rejects(
            "GET",
            BUNDLES,
            200,
            list("ResourceBundleList", vec![bundle(), with_source.clone()]),
            "/items/1",
        );
        rejects("GET", &format!("{BUNDLES}/b1"), 200, with_source, "source");
        let mut err = error(7);
        err["details"] = json!([]);
        rejects("GET", &format!("{CONSUMERS}/x"), 404, err, "details");
    }

    #[test]
    fn required_keys_types_and_formats_are_enforced() {
        let mut no_total = list("ConsumerList", vec![]);
        no_total.as_object_mut().unwrap().remove("total");
        rejects("GET", CONSUMERS, 200, no_total, "total");
        let mut no_items = list("ResourceBundleList", vec![]);
        no_items.as_object_mut().unwrap().remove("items");
        rejects("GET", BUNDLES, 200, no_items, "items");
        let bad_label = json!({"id": "u", "kind": "Consumer", "name": "c1", "labels": {"n": 1}});
        rejects("GET", CONSUMERS, 200, list("ConsumerList", vec![bad_label]), "/items/0/labels/n");
        let mut bad_time = bundle();
        bad_time["created_at"] = json!("yesterday");
        rejects("GET", &format!("{BUNDLES}/b1"), 200, bad_time, "/created_at");
        let mut bad_version = bundle();
        bad_version["version"] = json!("1");
        rejects("GET", &format!("{BUNDLES}/b1"), 200, bad_version, "/version");
    }

    #[test]
    fn undeclared_paths_statuses_and_bodies_are_refused() {
        rejects("GET", "/api/maestro/v1/nothing", 200, json!({}), "no path");
        rejects("PUT", CONSUMERS, 200, json!({}), "PUT is not an operation");
        rejects("GET", &format!("{BUNDLES}/b1"), 418, error(9), "418");
        rejects("DELETE", &format!("{BUNDLES}/b1"), 204, json!({}), "no body");
    }

    #[test]
    fn projections_need_id_and_declared_keys_only() {
        let c = contract();
        let items = vec![json!({"id": "b1", "name": "web"})];
        c.validate_projection("GET", BUNDLES, 200, &list("ResourceBundleList", items)).unwrap();
        let no_id = list("ResourceBundleList", vec![json!({"name": "web"})]);
        assert!(c.validate_projection("GET", BUNDLES, 200, &no_id).is_err());
        let extra = list("ResourceBundleList", vec![json!({"id": "b1", "source": "s"})]);
        assert!(c.validate_projection("GET", BUNDLES, 200, &extra).is_err());
    }
}
