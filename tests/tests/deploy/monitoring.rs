//! PromQL, alert rules and the dashboard: every expression names only the server's and
//! agent's series, every alert links a heading of docs/operations.md.

use super::*;

/// The metric names an expression selects: identifiers outside label matchers, ranges and
/// strings that are neither functions, aggregations, keywords nor label lists of
/// `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"];
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skips from an opening bracket to its closing one, over strings.
    let skip = |mut i: usize, open: char, close: char| -> Result<usize, String> {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => {
                    let q = chars[i];
                    i += 1;
                    while i < chars.len() && chars[i] != q {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(i + 1);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        Err(format!("unbalanced {open}{close} in {expr:?}"))
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip(i, '{', '}')?;
        } else if c == '[' {
            i = skip(i, '[', ']')?;
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            if i >= chars.len() {
                return Err(format!("open string in {expr:?}"));
            }
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let lower = word.to_ascii_lowercase();
            if LABEL_LISTS.contains(&lower.as_str()) {
                if chars.get(next) == Some(&'(') {
                    i = skip(next, '(', ')')?;
                }
            } else if chars.get(next) == Some(&'(')
                || KEYWORDS.contains(&lower.as_str())
                || AGGREGATIONS.contains(&lower.as_str())
            {
                // a function, a keyword or an aggregation
            } else {
                names.insert(word);
            }
        } else if c == '$' {
            return Err(format!("a Grafana variable outside a selector or range in {expr:?}"));
        } else {
            i += 1;
        }
    }
    Ok(names)
}

#[test]
fn promql_names_are_parsed_as_expected() {
    let names = metric_names(
        r#"sum by (namespace, le) (rate(a_bucket{le=~"1|1.0", x="}"}[5m])) / on (job) group_left (b) max(b) or absent(up{job="x"}) > 14.4 * 0.01 and time() - c offset 1h"#,
    )
    .unwrap();
    assert_eq!(names, BTreeSet::from(["a_bucket".into(), "b".into(), "up".into(), "c".into()]));
}

/// The anchors GitHub gives the headings of a Markdown file.
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| h.trim_start_matches('#').trim())
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn alert_rules_use_known_series_and_link_the_runbook() {
    let path = root().join("deploy/monitoring/maestro-alerts.yaml");
    let [doc] = documents(&path).try_into().expect("one document");
    let rules: PrometheusRule = serde_json::from_value(doc).unwrap();
    assert_eq!(
        (rules.api_version.as_str(), rules.kind.as_str()),
        ("monitoring.coreos.com/v1", "PrometheusRule")
    );
    let anchors = heading_anchors(&std::fs::read_to_string(root().join("docs/operations.md")).unwrap());
    let mut known: BTreeSet<String> = KNOWN_SERIES.iter().map(|s| (*s).to_owned()).collect();
    let mut errors = Vec::new();
    let mut alerts = 0;
    for group in &rules.spec.groups {
        for rule in &group.rules {
            let name = rule.alert.clone().or_else(|| rule.record.clone()).unwrap_or_default();
            match metric_names(&rule.expr) {
                Ok(names) => {
                    for n in names.difference(&known) {
                        errors.push(format!("{}/{name}: unknown series {n}", group.name));
                    }
                }
                Err(e) => errors.push(format!("{}/{name}: {e}", group.name)),
            }
            match (&rule.record, &rule.alert) {
                (Some(record), None) => {
                    known.insert(record.clone());
                }
                (None, Some(alert)) => {
                    alerts += 1;
                    let labels = rule.labels.clone().unwrap_or_default();
                    if !["critical", "warning", "info"]
                        .contains(&labels.get("severity").map_or("", String::as_str))
                    {
                        errors.push(format!("{alert}: severity label missing or unknown"));
                    }
                    let annotations = rule.annotations.clone().unwrap_or_default();
                    if !annotations.contains_key("summary") {
                        errors.push(format!("{alert}: no summary"));
                    }
                    match annotations.get("runbook_url").and_then(|u| u.strip_prefix(RUNBOOK_URL)) {
                        Some(anchor) if anchors.contains(anchor) => {}
                        Some(anchor) => errors.push(format!(
                            "{alert}: runbook anchor #{anchor} is no heading of docs/operations.md"
                        )),
                        None => errors.push(format!("{alert}: runbook_url missing or not {RUNBOOK_URL}…")),
                    }
                }
                _ => errors.push(format!("{}: a rule must be a record or an alert", group.name)),
            }
        }
    }
    assert!(alerts >= 10, "{alerts} alerts");
    assert!(errors.is_empty(), "alert rule problems:\n  {}", errors.join("\n  "));
}

#[test]
fn grafana_dashboard_parses_and_uses_known_series() {
    let path = root().join("deploy/monitoring/maestro-server.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(dashboard.get("title").and_then(Value::as_str).is_some_and(|t| !t.is_empty()), "no title");
    assert!(dashboard.get("uid").and_then(Value::as_str).is_some_and(|t| !t.is_empty()), "no uid");
    let known: BTreeSet<String> = KNOWN_SERIES.iter().map(|s| (*s).to_owned()).collect();
    let mut errors = Vec::new();
    let mut exprs = 0;
    let mut ids = BTreeSet::new();
    for panel in dashboard.get("panels").and_then(Value::as_array).expect("panels") {
        let title = panel.get("title").and_then(Value::as_str).unwrap_or_default();
        if let Some(id) = panel.get("id").and_then(Value::as_u64)
            && !ids.insert(id)
        {
            errors.push(format!("panel {title}: id {id} used twice"));
        }
        for target in panel.get("targets").and_then(Value::as_array).into_iter().flatten() {
            let expr = target.get("expr").and_then(Value::as_str).unwrap_or_default();
            exprs += 1;
            match metric_names(expr) {
                Ok(names) if names.is_empty() => errors.push(format!("panel {title}: no series in {expr:?}")),
                Ok(names) => {
                    for n in names.difference(&known) {
                        errors.push(format!("panel {title}: unknown series {n}"));
                    }
                }
                Err(e) => errors.push(format!("panel {title}: {e}")),
            }
        }
    }
    let anchors = heading_anchors(&std::fs::read_to_string(root().join("docs/operations.md")).unwrap());
    for link in dashboard.get("links").and_then(Value::as_array).into_iter().flatten() {
        let url = link.get("url").and_then(Value::as_str).unwrap_or_default();
        if let Some(anchor) = url.strip_prefix(RUNBOOK_URL)
            && !anchors.contains(anchor)
        {
            errors.push(format!("link {url}: no such heading in docs/operations.md"));
        }
    }
    assert!(exprs >= 20, "{exprs} queries");
    assert!(errors.is_empty(), "dashboard problems:\n  {}", errors.join("\n  "));
}
