//! Static checks of the deployment files under `deploy/kubernetes` and `deploy/monitoring`
//! (deploy/README.md). No Kubernetes API server, Prometheus or Grafana runs here: the files are
//! checked against the typed Kubernetes objects of `k8s-openapi`, hand-written schemas, the
//! `maestro` binary's `--help` and the brokers' own config loaders.
//!
//! - Every `*.yaml`/`*.yml` document is a Kubernetes object of a known kind and deserializes
//!   into its typed `k8s-openapi` struct; since those structs ignore unknown fields, the typed
//!   value is serialized again and every field of the file it dropped (a misspelt or misplaced
//!   key) is reported with its path. ServiceMonitor, PrometheusRule and `kustomization.yaml`
//!   are checked against small structs with `deny_unknown_fields` for the fields used here.
//! - Every kustomization's `resources`, generator files and patches exist, and every manifest
//!   under `base/` and `overlays/` is listed by a kustomization.
//! - Every container image is `quay.io/maestro-rs/maestro:…` or a third-party image pinned to
//!   a version or digest; every flag in the args of a `maestro` container, and every
//!   `MAESTRO_*` variable given to one (`env`, generated ConfigMaps, deploy/grpc/server.env), is
//!   in the `--help` of its subcommand (`server`, `agent`, `migrate`, `pubsub init`), run from
//!   the built binary.
//! - Services select the pods of a Deployment beside them and name its ports; probes name
//!   container ports; the ServiceMonitor selects the metrics Service, whose name is the `job`
//!   of the alert rules.
//! - The broker config files of the overlays (and of deploy/grpc, deploy/mqtt, deploy/pubsub)
//!   load with the brokers' own config types and pass their validation; the Mosquitto
//!   configuration and ACL of the MQTT overlay are the files of deploy/mqtt.
//! - Every `expr` of the alert and recording rules and of the Grafana dashboard names only
//!   the server's and agent's metric series (or `up`, or a series recorded in the same rules);
//!   every alert has a severity, a summary and a `runbook_url` whose anchor is a heading of
//!   docs/operations.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

// serde through k8s-openapi's re-export (`#[serde(crate = "k8s_openapi::serde")]` below): this
// crate has no serde dependency of its own.
use k8s_openapi::serde::Deserialize;
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use serde_json::Value;

/// The metric series the server and the agent export (docs/operations.md), by the names the
/// rules and the dashboard may use.
const KNOWN_SERIES: &[&str] = &[
    // server
    "rest_api_inbound_request_count",
    "rest_api_inbound_request_duration_bucket",
    "grpc_server_called_total",
    "grpc_server_processed_total",
    "grpc_server_processed_duration_seconds_bucket",
    "grpc_server_registered_source_clients",
    "resource_processed_total",
    "spec_controller_event_reconcile_total",
    "spec_controller_event_reconcile_duration_seconds_bucket",
    "status_controller_event_reconcile_total",
    "cloudevents_received_total",
    "cloudevents_sent_total",
    "resources_spec_resync_duration_seconds_bucket",
    "maestro_outbox_pending_events",
    "maestro_outbox_oldest_pending_age_seconds",
    "maestro_dead_letters",
    "maestro_connected_agents",
    "maestro_consumer_last_status_timestamp_seconds",
    "maestro_broker_publish_duration_seconds_bucket",
    "maestro_broker_publish_errors_total",
    "maestro_server_instances_live",
    // agent
    "manifestworks_processed_total",
    "resources_status_resync_duration_seconds_bucket",
    "maestro_agent_apply_duration_seconds_bucket",
    // Prometheus itself
    "up",
];

/// The image every Maestro container runs.
const MAESTRO_IMAGE: &str = "quay.io/maestro-rs/maestro:";

/// Where the alerts' runbook links point.
const RUNBOOK_URL: &str = "https://github.com/maestro-rs/maestro/blob/main/docs/operations.md#";

/// Environment variables a Maestro container may get besides the `MAESTRO_*` ones of `--help`.
const OTHER_ENV: &[&str] = &["RUST_LOG", "PUBSUB_EMULATOR_HOST"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

/// Every `*.yaml`/`*.yml` file under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The documents of a YAML file (`---`-separated), empty ones left out.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: not YAML: {e}", rel(path))))
        .filter(|v| !v.is_null())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Hand-written schemas (only the fields these files use; anything else is refused). Some
// fields are never read: they exist so that the files may hold them.

/// `kustomization.yaml`.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields, rename_all = "camelCase")]
struct Kustomization {
    api_version: String,
    kind: String,
    namespace: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    patches: Vec<KustomizePatch>,
    #[serde(default)]
    config_map_generator: Vec<Generator>,
    #[serde(default)]
    secret_generator: Vec<Generator>,
    #[serde(default)]
    images: Vec<KustomizeImage>,
}

/// An entry of `images` (an image name or tag replaced in every container).
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields, rename_all = "camelCase")]
struct KustomizeImage {
    name: String,
    new_name: Option<String>,
    new_tag: Option<String>,
    digest: Option<String>,
}

/// An entry of `patches`.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields)]
struct KustomizePatch {
    path: Option<String>,
    patch: Option<String>,
}

/// An entry of `configMapGenerator` / `secretGenerator`.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields)]
struct Generator {
    name: String,
    namespace: Option<String>,
    behavior: Option<String>,
    #[serde(default)]
    literals: Vec<String>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    envs: Vec<String>,
    options: Option<GeneratorOptions>,
}

/// A generator's `options`.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields, rename_all = "camelCase")]
struct GeneratorOptions {
    disable_name_suffix_hash: Option<bool>,
    labels: Option<BTreeMap<String, String>>,
}

/// The `metadata` of a custom resource.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields)]
struct Meta {
    name: String,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

/// monitoring.coreos.com/v1 ServiceMonitor.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: Meta,
    spec: ServiceMonitorSpec,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorSpec {
    selector: MatchLabels,
    endpoints: Vec<MonitorEndpoint>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields, rename_all = "camelCase")]
struct MatchLabels {
    match_labels: BTreeMap<String, String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields, rename_all = "camelCase")]
struct MonitorEndpoint {
    port: String,
    path: Option<String>,
    scheme: Option<String>,
    interval: Option<String>,
    scrape_timeout: Option<String>,
}

/// monitoring.coreos.com/v1 PrometheusRule.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields, rename_all = "camelCase")]
struct PrometheusRule {
    api_version: String,
    kind: String,
    metadata: Meta,
    spec: PrometheusRuleSpec,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields)]
struct PrometheusRuleSpec {
    groups: Vec<RuleGroup>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields)]
struct RuleGroup {
    name: String,
    interval: Option<String>,
    rules: Vec<Rule>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(crate = "k8s_openapi::serde", deny_unknown_fields)]
struct Rule {
    record: Option<String>,
    alert: Option<String>,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// One Kubernetes object of a file.
#[derive(Debug, Clone)]
struct Object {
    file: PathBuf,
    value: Value,
}

impl Object {
    fn str_at(&self, pointer: &str) -> &str {
        self.value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
    }
    fn kind(&self) -> &str {
        self.str_at("/kind")
    }
    fn name(&self) -> &str {
        self.str_at("/metadata/name")
    }
    fn describe(&self) -> String {
        format!("{} {} ({})", self.kind(), self.name(), rel(&self.file))
    }
    /// The pod spec of a Deployment or a Job.
    fn pod_spec(&self) -> Option<&Value> {
        self.value.pointer("/spec/template/spec")
    }
}

/// Everything under deploy/kubernetes and deploy/monitoring.
#[derive(Debug, Default)]
struct Deploy {
    /// `kustomization.yaml` files and their contents.
    kustomizations: Vec<(PathBuf, Kustomization)>,
    /// Files read by a generator (not Kubernetes objects).
    generator_inputs: BTreeSet<PathBuf>,
    /// The Kubernetes objects of every other YAML file.
    objects: Vec<Object>,
    /// Problems found while loading.
    errors: Vec<String>,
}

/// `path` from a kustomization entry `key=path` or `path`, relative to `dir`.
fn generator_file(dir: &Path, entry: &str) -> PathBuf {
    dir.join(entry.split_once('=').map_or(entry, |(_, p)| p))
}

fn load() -> Deploy {
    let mut d = Deploy::default();
    let files: Vec<PathBuf> = ["deploy/kubernetes", "deploy/monitoring"]
        .iter()
        .flat_map(|dir| yaml_files(&root().join(dir)))
        .collect();
    assert!(files.len() > 20, "deploy files not found: {files:?}");
    for file in files.iter().filter(|f| f.file_name().is_some_and(|n| n == "kustomization.yaml")) {
        let docs = documents(file);
        let [doc] = docs.as_slice() else {
            d.errors.push(format!("{}: one document expected", rel(file)));
            continue;
        };
        match serde_json::from_value::<Kustomization>(doc.clone()) {
            Ok(k) => {
                let dir = file.parent().unwrap();
                for g in k.config_map_generator.iter().chain(&k.secret_generator) {
                    for entry in g.files.iter().chain(&g.envs) {
                        d.generator_inputs.insert(generator_file(dir, entry));
                    }
                }
                d.kustomizations.push((file.clone(), k));
            }
            Err(e) => d.errors.push(format!("{}: {e}", rel(file))),
        }
    }
    for file in &files {
        if file.file_name().is_some_and(|n| n == "kustomization.yaml") || d.generator_inputs.contains(file) {
            continue;
        }
        for value in documents(file) {
            if value.get("apiVersion").is_none() || value.get("kind").is_none() {
                d.errors.push(format!(
                    "{}: a document without apiVersion and kind that no generator reads",
                    rel(file)
                ));
                continue;
            }
            d.objects.push(Object { file: file.clone(), value });
        }
    }
    d
}

// ---------------------------------------------------------------------------------------------
// Typed objects.

/// Deserializes `v` into `T` and serializes it again.
fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// `v` through the typed struct of its kind; `None` for a kind without one.
fn typed(v: &Value) -> Option<Result<Value, String>> {
    use k8s_openapi::api::{apps, batch, core, networking, policy, rbac};
    let api_version = v.get("apiVersion")?.as_str()?;
    let kind = v.get("kind")?.as_str()?;
    Some(match (api_version, kind) {
        ("v1", "Namespace") => roundtrip::<core::v1::Namespace>(v),
        ("v1", "ServiceAccount") => roundtrip::<core::v1::ServiceAccount>(v),
        ("v1", "Service") => roundtrip::<core::v1::Service>(v),
        ("v1", "ConfigMap") => roundtrip::<core::v1::ConfigMap>(v),
        ("v1", "Secret") => roundtrip::<core::v1::Secret>(v),
        ("v1", "PersistentVolumeClaim") => roundtrip::<core::v1::PersistentVolumeClaim>(v),
        ("apps/v1", "Deployment") => roundtrip::<apps::v1::Deployment>(v),
        ("apps/v1", "StatefulSet") => roundtrip::<apps::v1::StatefulSet>(v),
        ("apps/v1", "DaemonSet") => roundtrip::<apps::v1::DaemonSet>(v),
        ("batch/v1", "Job") => roundtrip::<batch::v1::Job>(v),
        ("batch/v1", "CronJob") => roundtrip::<batch::v1::CronJob>(v),
        ("policy/v1", "PodDisruptionBudget") => roundtrip::<policy::v1::PodDisruptionBudget>(v),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => roundtrip::<rbac::v1::ClusterRole>(v),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            roundtrip::<rbac::v1::ClusterRoleBinding>(v)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => roundtrip::<rbac::v1::Role>(v),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => roundtrip::<rbac::v1::RoleBinding>(v),
        ("networking.k8s.io/v1", "NetworkPolicy") => roundtrip::<networking::v1::NetworkPolicy>(v),
        ("networking.k8s.io/v1", "Ingress") => roundtrip::<networking::v1::Ingress>(v),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => roundtrip::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(v),
        _ => return None,
    })
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Reports every field of `original` that `typed` lost or changed, with its path. Fields the
/// typed value adds (defaults of required fields) and empty fields of the original are fine.
/// With `keys_only`, scalars that differ are not reported (loaders that normalise values).
fn dropped(original: &Value, typed: &Value, path: &str, keys_only: bool, out: &mut Vec<String>) {
    match (original, typed) {
        (Value::Object(o), Value::Object(t)) => {
            for (key, value) in o {
                if is_empty(value) {
                    continue;
                }
                let here = format!("{path}.{key}");
                match t.get(key) {
                    Some(tv) => dropped(value, tv, &here, keys_only, out),
                    None => out.push(format!("{here}: unknown field, dropped by the typed schema")),
                }
            }
        }
        (Value::Array(o), Value::Array(t)) => {
            if o.len() != t.len() {
                out.push(format!("{path}: {} items became {}", o.len(), t.len()));
                return;
            }
            for (i, (ov, tv)) in o.iter().zip(t).enumerate() {
                dropped(ov, tv, &format!("{path}[{i}]"), keys_only, out);
            }
        }
        (o, t) if keys_only || o == t => {}
        (o, t) => out.push(format!("{path}: {o} became {t}")),
    }
}

#[test]
fn every_manifest_matches_its_typed_schema() {
    let d = load();
    let mut errors = d.errors.clone();
    let mut checked = BTreeMap::<String, usize>::new();
    for o in &d.objects {
        let api_version = o.str_at("/apiVersion");
        let kind = o.kind();
        let result = match (api_version, kind) {
            ("monitoring.coreos.com/v1", "ServiceMonitor") => {
                serde_json::from_value::<ServiceMonitor>(o.value.clone())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            ("monitoring.coreos.com/v1", "PrometheusRule") => {
                serde_json::from_value::<PrometheusRule>(o.value.clone())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            _ => match typed(&o.value) {
                None => Err(format!("no typed schema for {api_version} {kind}: add it to typed()")),
                Some(Err(e)) => Err(e),
                Some(Ok(t)) => {
                    let mut lost = Vec::new();
                    dropped(&o.value, &t, "", false, &mut lost);
                    if lost.is_empty() { Ok(()) } else { Err(lost.join("; ")) }
                }
            },
        };
        match result {
            Ok(()) => *checked.entry(format!("{api_version} {kind}")).or_default() += 1,
            Err(e) => errors.push(format!("{}: {e}", o.describe())),
        }
    }
    for (file, k) in &d.kustomizations {
        if k.api_version != "kustomize.config.k8s.io/v1beta1" || k.kind != "Kustomization" {
            errors.push(format!("{}: apiVersion/kind {} {}", rel(file), k.api_version, k.kind));
        }
    }
    assert!(errors.is_empty(), "deployment files with problems:\n  {}", errors.join("\n  "));
    for kind in ["apps/v1 Deployment", "v1 Service", "policy/v1 PodDisruptionBudget", "batch/v1 Job"] {
        assert!(checked.contains_key(kind), "no {kind} checked: {checked:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Kustomizations.

#[test]
fn kustomizations_reference_existing_files_and_list_every_manifest() {
    let d = load();
    let mut errors = Vec::new();
    let mut listed = BTreeSet::new();
    for (file, k) in &d.kustomizations {
        let dir = file.parent().unwrap();
        for r in &k.resources {
            let target = dir.join(r);
            if target.is_dir() {
                if !target.join("kustomization.yaml").is_file() {
                    errors.push(format!(
                        "{}: resource {r} is a directory without kustomization.yaml",
                        rel(file)
                    ));
                }
            } else if target.is_file() {
                listed.insert(target.canonicalize().unwrap());
            } else {
                errors.push(format!("{}: resource {r} does not exist", rel(file)));
            }
        }
        for p in &k.patches {
            match (&p.path, &p.patch) {
                (Some(path), None) if dir.join(path).is_file() => {}
                (None, Some(inline)) => {
                    if let Err(e) = serde_yaml_ng::from_str::<Value>(inline) {
                        errors.push(format!("{}: inline patch is not YAML: {e}", rel(file)));
                    }
                }
                _ => errors.push(format!("{}: patch {p:?} has no existing path or inline patch", rel(file))),
            }
        }
        for g in k.config_map_generator.iter().chain(&k.secret_generator) {
            for entry in g.files.iter().chain(&g.envs) {
                if !generator_file(dir, entry).is_file() {
                    errors.push(format!(
                        "{}: generator {} reads {entry}, which does not exist",
                        rel(file),
                        g.name
                    ));
                }
            }
            for literal in &g.literals {
                if !literal.contains('=') {
                    errors.push(format!(
                        "{}: generator {} literal {literal:?} is not KEY=VALUE",
                        rel(file),
                        g.name
                    ));
                }
            }
            if let Some(b) = &g.behavior
                && !["create", "merge", "replace"].contains(&b.as_str())
            {
                errors.push(format!("{}: generator {} behavior {b}", rel(file), g.name));
            }
        }
    }
    // Every manifest of the kustomize tree is applied by some kustomization; only examples/
    // holds files applied by hand.
    let tree = root().join("deploy/kubernetes");
    let manifests: BTreeSet<&PathBuf> = d.objects.iter().map(|o| &o.file).collect();
    for file in manifests {
        let in_tree = file.starts_with(tree.join("base")) || file.starts_with(tree.join("overlays"));
        if in_tree && !listed.contains(&file.canonicalize().unwrap()) {
            errors.push(format!("{} is listed by no kustomization", rel(file)));
        }
    }
    // Each overlay builds the server and the agent of its broker, and both halves alone.
    for broker in ["grpc", "mqtt", "pubsub"] {
        for part in ["", "/server", "/agent"] {
            let k = tree.join(format!("overlays/{broker}{part}/kustomization.yaml"));
            if !k.is_file() {
                errors.push(format!("{} is missing", rel(&k)));
            }
        }
    }
    assert!(errors.is_empty(), "kustomization problems:\n  {}", errors.join("\n  "));
}

mod containers;

// ---------------------------------------------------------------------------------------------
// Broker configuration files.

/// Loads `path` as a broker config of `broker` for `role` with the broker crate's own types and
/// validation, and reports keys its type does not know.
fn check_broker_config(path: &Path, broker: &str, role: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let original: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    let typed = match (broker, role) {
        ("grpc", "agent") => {
            let c: maestro_broker_grpc::GrpcAgentConfig =
                serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
            c.validate().map_err(|e| e.to_string())?;
            serde_json::to_value(&c)
        }
        ("mqtt", _) => {
            let c = maestro_broker_mqtt::MqttConfig::from_yaml(&text).map_err(|e| e.to_string())?;
            c.validate().map_err(|e| e.to_string())?;
            serde_json::to_value(&c)
        }
        ("pubsub", _) => {
            let c = maestro_broker_pubsub::PubSubConfig::from_yaml(&text).map_err(|e| e.to_string())?;
            if role == "server" {
                c.validate_source().map_err(|e| e.to_string())?;
            } else {
                c.validate_agent().map_err(|e| e.to_string())?;
            }
            serde_json::to_value(&c)
        }
        _ => return Err(format!("no loader for a {broker} {role} config")),
    }
    .map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    dropped(&original, &typed, "", true, &mut lost);
    // Secrets a config type does not write back.
    lost.retain(|l| !l.starts_with(".password:") && !l.starts_with(".token:"));
    if lost.is_empty() { Ok(()) } else { Err(lost.join("; ")) }
}

#[test]
fn broker_configs_load_with_the_brokers_own_types() {
    let mut errors = Vec::new();
    let mut checked = 0;
    let overlays = root().join("deploy/kubernetes/overlays");
    for broker in ["grpc", "mqtt", "pubsub"] {
        for role in ["server", "agent"] {
            let in_overlay = overlays.join(format!("{broker}/{role}/{role}-broker.yaml"));
            let original = root().join(format!("deploy/{broker}/{role}-config.yaml"));
            for path in [in_overlay, original] {
                if broker == "grpc" && role == "server" {
                    // The server side of the gRPC broker is configured by flags only.
                    assert!(!path.exists(), "{} should not exist", rel(&path));
                    continue;
                }
                checked += 1;
                if let Err(e) = check_broker_config(&path, broker, role) {
                    errors.push(format!("{}: {e}", rel(&path)));
                }
            }
        }
    }
    assert_eq!(checked, 10);
    for file in ["mosquitto.conf", "acl"] {
        let copy = std::fs::read_to_string(overlays.join("mqtt/server").join(file)).unwrap();
        let original = std::fs::read_to_string(root().join("deploy/mqtt").join(file)).unwrap();
        if copy != original {
            errors.push(format!(
                "deploy/kubernetes/overlays/mqtt/server/{file} differs from deploy/mqtt/{file}"
            ));
        }
    }
    // Mosquitto takes the rest of an option's line as its value, comments included.
    let conf = std::fs::read_to_string(root().join("deploy/mqtt/mosquitto.conf")).unwrap();
    for line in conf.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if line.contains('#') {
            errors.push(format!("deploy/mqtt/mosquitto.conf: comment after a value: {line:?}"));
        }
    }
    assert!(errors.is_empty(), "broker config problems:\n  {}", errors.join("\n  "));
}

mod monitoring;

/// The AppliedManifestWork CRD keeps every field the agent records (docs/protocol.md §8.3): a
/// structural schema prunes fields it does not declare, which would silently drop a record.
#[test]
fn applied_manifest_work_crd_declares_the_recorded_fields() {
    let path = root().join("deploy/kubernetes/base/agent/appliedmanifestwork-crd.yaml");
    let text = std::fs::read_to_string(&path).expect("read the CRD");
    let crd: Value = serde_yaml_ng::from_str(&text).expect("parse the CRD");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert!(version["subresources"]["status"].is_object(), "status subresource (the agent patches /status)");
    let props = &version["schema"]["openAPIV3Schema"]["properties"];
    for field in ["hubHash", "agentID", "manifestWorkName"] {
        assert!(props["spec"]["properties"][field].is_object(), "spec.{field}");
    }
    let status = &props["status"]["properties"];
    assert_eq!(status["evictionStartTime"]["format"], "date-time");
    for field in ["group", "version", "resource", "namespace", "name", "uid"] {
        assert!(
            status["appliedResources"]["items"]["properties"][field].is_object(),
            "appliedResources[].{field}"
        );
    }
}
