//! Containers, services, probes and monitors: images pinned, every flag and `MAESTRO_*`
//! variable of a `maestro` container in its subcommand's `--help`, selectors and ports that
//! point at what exists.

use super::*;

/// Every container (and init container) of the objects, with the object it belongs to.
fn containers(d: &Deploy) -> Vec<(&Object, &Value)> {
    let mut out = Vec::new();
    for o in &d.objects {
        let Some(spec) = o.pod_spec() else { continue };
        for list in ["initContainers", "containers"] {
            for c in spec.get(list).and_then(Value::as_array).into_iter().flatten() {
                out.push((o, c));
            }
        }
    }
    out
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}

#[test]
fn container_images_are_maestro_or_pinned() {
    let d = load();
    let mut errors = Vec::new();
    let all = containers(&d);
    assert!(all.len() >= 5, "containers not found");
    for (o, c) in all {
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        if image.starts_with(MAESTRO_IMAGE) {
            continue;
        }
        let last = image.rsplit('/').next().unwrap_or_default();
        let pinned = image.contains("@sha256:")
            || last
                .split_once(':')
                .is_some_and(|(_, tag)| tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()));
        if !pinned {
            errors.push(format!(
                "{} container {name}: image {image:?} is neither {MAESTRO_IMAGE}… nor pinned",
                o.describe()
            ));
        }
    }
    assert!(errors.is_empty(), "image problems:\n  {}", errors.join("\n  "));
}

/// What `maestro <subcommand> --help` lists: long flags and `[env: …]` variables.
#[derive(Debug, Default)]
struct Help {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

fn help(subcommand: &[&str]) -> Help {
    let out = Command::new(maestro_tests::maestro_binary())
        .args(subcommand)
        .arg("--help")
        .env("COLUMNS", "200")
        .output()
        .expect("maestro runs");
    assert!(
        out.status.success(),
        "maestro {subcommand:?} --help failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut h = Help::default();
    for line in text.lines() {
        // `  -x, --flag <V>  …` or `      --flag <V>  …`
        let line = line.trim_start();
        let line = match line.as_bytes() {
            [b'-', short, b',', b' ', ..] if *short != b'-' => &line[4..],
            _ => line,
        };
        if let Some(rest) = line.strip_prefix("--") {
            let flag: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            h.flags.insert(format!("--{flag}"));
        }
    }
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for part in flat.split("[env: ").skip(1) {
        let name: String =
            part.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
        h.env.insert(name);
    }
    assert!(
        !h.flags.is_empty() && !h.env.is_empty(),
        "nothing parsed from maestro {subcommand:?} --help:\n{text}"
    );
    h
}

/// The subcommand words of a `maestro` container's args (those before the first flag).
fn subcommand(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).take_while(|a| !a.starts_with('-')).collect()
}

#[test]
fn maestro_container_flags_and_variables_exist() {
    let d = load();
    let subcommands: [&[&str]; 4] = [&["server"], &["agent"], &["migrate"], &["pubsub", "init"]];
    let helps: BTreeMap<String, Help> = subcommands.iter().map(|s| (s.join(" "), help(s))).collect();
    let mut errors = Vec::new();
    let mut missing_flags = BTreeSet::new();
    // ConfigMap name -> the subcommands of the containers reading it with envFrom.
    let mut env_maps = BTreeMap::<String, BTreeSet<String>>::new();
    let mut seen = BTreeSet::new();
    for (o, c) in containers(&d) {
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        if !image.starts_with(MAESTRO_IMAGE) {
            continue;
        }
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        let args = str_list(c.get("args"));
        let sub = subcommand(&args).join(" ");
        let Some(h) = helps.get(&sub) else {
            errors.push(format!(
                "{} container {name}: subcommand {sub:?} is not one of {:?}",
                o.describe(),
                helps.keys()
            ));
            continue;
        };
        seen.insert(sub.clone());
        for arg in args.iter().filter(|a| a.starts_with("--")) {
            let flag = arg.split_once('=').map_or(arg.as_str(), |(f, _)| f);
            if !h.flags.contains(flag) {
                missing_flags.insert(format!("maestro {sub} {flag}"));
                errors.push(format!("{} container {name}: `maestro {sub}` has no flag {flag}", o.describe()));
            }
        }
        for env in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            let var = env.get("name").and_then(Value::as_str).unwrap_or_default();
            if !h.env.contains(var) && !OTHER_ENV.contains(&var) {
                errors.push(format!(
                    "{} container {name}: `maestro {sub}` reads no variable {var}",
                    o.describe()
                ));
            }
        }
        for from in c.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
            if let Some(map) = from.pointer("/configMapRef/name").and_then(Value::as_str) {
                env_maps.entry(map.to_owned()).or_default().insert(sub.clone());
            }
        }
    }
    assert_eq!(seen.len(), helps.len(), "every subcommand is run by some container: {seen:?}");
    // deploy/grpc/server.env: `maestro server`'s settings as variables.
    let env_file = root().join("deploy/grpc/server.env");
    for line in std::fs::read_to_string(&env_file).unwrap().lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let var = line.split_once('=').map_or(line, |(v, _)| v);
        if !helps["server"].env.contains(var) && !OTHER_ENV.contains(&var) {
            errors.push(format!("{}: `maestro server` reads no variable {var}", rel(&env_file)));
        }
    }
    // The variables the kustomizations put in those ConfigMaps.
    for (file, k) in &d.kustomizations {
        for g in &k.config_map_generator {
            let Some(subs) = env_maps.get(&g.name) else { continue };
            for literal in &g.literals {
                let var = literal.split_once('=').map_or(literal.as_str(), |(v, _)| v);
                for sub in subs {
                    if !helps[sub].env.contains(var) && !OTHER_ENV.contains(&var) {
                        errors.push(format!(
                            "{}: ConfigMap {} sets {var}, which `maestro {sub}` does not read",
                            rel(file),
                            g.name
                        ));
                    }
                }
            }
        }
    }
    assert!(
        errors.is_empty(),
        "maestro flags or variables not in --help (flags missing: {missing_flags:?}):\n  {}",
        errors.join("\n  ")
    );
}

/// The container ports of the Deployment named `name` in `dir`, with its pod labels.
fn deployments_in(d: &Deploy, dir: &Path) -> Vec<(BTreeMap<String, String>, BTreeSet<String>)> {
    let mut out = Vec::new();
    for o in d.objects.iter().filter(|o| o.kind() == "Deployment" && o.file.parent() == Some(dir)) {
        let labels: BTreeMap<String, String> = serde_json::from_value(
            o.value.pointer("/spec/template/metadata/labels").cloned().unwrap_or_default(),
        )
        .unwrap_or_default();
        let mut ports = BTreeSet::new();
        for c in
            o.value.pointer("/spec/template/spec/containers").and_then(Value::as_array).into_iter().flatten()
        {
            for p in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
                if let Some(n) = p.get("name").and_then(Value::as_str) {
                    ports.insert(n.to_owned());
                }
            }
        }
        out.push((labels, ports));
    }
    out
}

fn subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    !small.is_empty() && small.iter().all(|(k, v)| big.get(k) == Some(v))
}

#[test]
fn services_probes_and_monitors_point_at_what_exists() {
    let d = load();
    let mut errors = Vec::new();
    for o in &d.objects {
        let dir = o.file.parent().unwrap();
        match o.kind() {
            "Service" | "PodDisruptionBudget" => {
                let pointer =
                    if o.kind() == "Service" { "/spec/selector" } else { "/spec/selector/matchLabels" };
                let selector: BTreeMap<String, String> =
                    serde_json::from_value(o.value.pointer(pointer).cloned().unwrap_or_default())
                        .unwrap_or_default();
                let targets: Vec<_> =
                    deployments_in(&d, dir).into_iter().filter(|(l, _)| subset(&selector, l)).collect();
                let Some((_, ports)) = targets.first() else {
                    errors.push(format!("{}: selects no Deployment in its directory", o.describe()));
                    continue;
                };
                for p in o.value.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(t) = p.get("targetPort").and_then(Value::as_str)
                        && !ports.contains(t)
                    {
                        errors.push(format!("{}: targetPort {t} is not a container port", o.describe()));
                    }
                }
            }
            "ServiceMonitor" => {
                let m: ServiceMonitor = serde_json::from_value(o.value.clone()).unwrap();
                let services: Vec<_> = d
                    .objects
                    .iter()
                    .filter(|s| s.kind() == "Service" && s.file.parent() == Some(dir))
                    .filter(|s| {
                        let labels: BTreeMap<String, String> = serde_json::from_value(
                            s.value.pointer("/metadata/labels").cloned().unwrap_or_default(),
                        )
                        .unwrap_or_default();
                        subset(&m.spec.selector.match_labels, &labels)
                    })
                    .collect();
                let [service] = services.as_slice() else {
                    errors.push(format!("{}: selects {} Services, not one", o.describe(), services.len()));
                    continue;
                };
                let ports: Vec<&str> = service
                    .value
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.get("name").and_then(Value::as_str))
                    .collect();
                for e in &m.spec.endpoints {
                    if !ports.contains(&e.port.as_str()) {
                        errors.push(format!(
                            "{}: port {} is not a port of {}",
                            o.describe(),
                            e.port,
                            service.name()
                        ));
                    }
                }
                // The alert rules select the scraped series by `job`, the Service's name.
                let rules =
                    std::fs::read_to_string(root().join("deploy/monitoring/maestro-alerts.yaml")).unwrap();
                let job = format!("job=\"{}\"", service.name());
                if !rules.contains(&job) || rules.matches("job=\"").count() != rules.matches(&job).count() {
                    errors.push(format!(
                        "deploy/monitoring/maestro-alerts.yaml: every job selector must be {job}"
                    ));
                }
            }
            _ => {}
        }
        let Some(spec) = o.pod_spec() else { continue };
        for c in ["initContainers", "containers"]
            .iter()
            .filter_map(|l| spec.get(l))
            .filter_map(Value::as_array)
            .flatten()
        {
            let ports: BTreeSet<&str> = c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("name").and_then(Value::as_str))
                .collect();
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                for kind in ["httpGet", "tcpSocket", "grpc"] {
                    if let Some(port) = c.pointer(&format!("/{probe}/{kind}/port")).and_then(Value::as_str)
                        && !ports.contains(port)
                    {
                        errors.push(format!("{}: {probe} port {port} is not a container port", o.describe()));
                    }
                }
            }
        }
    }
    assert!(errors.is_empty(), "dangling references:\n  {}", errors.join("\n  "));
}
