//! `wait --condition` / `--for` expressions (the doc comment of `WaitArgs::condition` in
//! cli.rs): parsing, and evaluation against a work's current state.
//!
//! Grammar (keywords and condition names are case-insensitive, kinds are compared
//! case-insensitively; tokens are separated by whitespace, parentheses need none):
//!
//! ```text
//! expr     := and_expr ( "OR" and_expr )*
//! and_expr := primary ( "AND" primary )*
//! primary  := "(" expr ")" | term
//! term     := "Applied" | "Available" | "Deleted"
//!           | <Kind> ":" <Condition>
//!           | <Kind> "/" <name> ":" <Condition>
//!           | <Kind> "/" <namespace> "/" <name> ":" <Condition>
//! ```
//!
//! `Applied` and `Available` hold when that work condition is True at the bundle's current
//! version; `<Kind>:<Condition>` when the work has at least one manifest of that kind and each
//! reports the condition True in its per-manifest status (at the current version);
//! `<Kind>/<name>:<Condition>` for that one manifest (in any namespace unless given).
//! `Deleted` (the work is gone) must be the whole expression.

use std::fmt;

use maestro_api::payload::{Condition, ManifestCondition};
use maestro_client::ResourceBundle;
use maestro_client::types::condition_text;
use serde_json::Value;

use crate::exit::CliError;

/// A parsed condition expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// One term.
    Term(Term),
    /// Every operand holds.
    And(Vec<Expr>),
    /// At least one operand holds.
    Or(Vec<Expr>),
}

/// One term of an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// A work-level condition (e.g. `Applied`) True at the bundle's current version.
    Work(String),
    /// The work is gone (deletion confirmed by the agent).
    Deleted,
    /// A per-manifest condition.
    Manifest(ManifestTerm),
}

/// `<Kind>[/[<namespace>/]<name>]:<Condition>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestTerm {
    /// The manifest kind (compared case-insensitively).
    pub kind: String,
    /// The namespace, when given (`Kind/namespace/name`).
    pub namespace: Option<String>,
    /// The name, when given; `None` means every manifest of the kind.
    pub name: Option<String>,
    /// The per-manifest condition type (compared case-insensitively).
    pub condition: String,
}

/// What evaluating an expression against the work's current state found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The expression holds.
    Met,
    /// Not yet. Per-manifest items still awaited, each reading after "waiting for ", e.g.
    /// `Job default/migrate: Complete not yet True` (work-level conditions are not listed:
    /// the work's condition summary shows them).
    Pending(Vec<String>),
    /// The expression can no longer hold; why, as a predicate of the work (e.g. `is being
    /// deleted`).
    Failed(String),
}

/// Reasons of an awaited per-manifest condition reported False that end the wait: a Job past
/// its backoff limit or active deadline, or a plain `Failed`.
const TERMINAL_REASONS: &[&str] = &["BackoffLimitExceeded", "DeadlineExceeded", "Failed"];

/// A token of the input: its text and 1-based character position.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    /// The text.
    text: &'a str,
    /// 1-based character position in the input.
    pos: usize,
}

/// Splits `input` at whitespace; `(` and `)` are tokens of their own.
fn tokenize(input: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut start: Option<(usize, usize)> = None;
    for (column, (byte, ch)) in input.char_indices().enumerate() {
        let paren = ch == '(' || ch == ')';
        if ch.is_whitespace() || paren {
            if let Some((b, pos)) = start.take() {
                tokens.push(Token { text: &input[b..byte], pos });
            }
            if paren {
                tokens.push(Token { text: &input[byte..byte + 1], pos: column + 1 });
            }
        } else if start.is_none() {
            start = Some((byte, column + 1));
        }
    }
    if let Some((b, pos)) = start {
        tokens.push(Token { text: &input[b..], pos });
    }
    tokens
}

/// A recursive-descent parser over the tokens.
struct Parser<'a> {
    /// The whole input (for messages).
    input: &'a str,
    /// The tokens.
    tokens: Vec<Token<'a>>,
    /// The next token's index.
    next: usize,
}

impl<'a> Parser<'a> {
    /// A usage error about `input`.
    fn error(&self, message: impl fmt::Display) -> CliError {
        CliError::usage(format!("invalid --condition {:?}: {message}", self.input))
    }

    /// The next token, if any.
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.next).copied()
    }

    /// Consumes the next token when it is keyword `word` (case-insensitive).
    fn eat(&mut self, word: &str) -> bool {
        let hit = self.peek().is_some_and(|t| t.text.eq_ignore_ascii_case(word));
        self.next += usize::from(hit);
        hit
    }

    /// `expr := and_expr ( "OR" and_expr )*`.
    fn expr(&mut self) -> Result<Expr, CliError> {
        let mut operands = vec![self.and_expr()?];
        while self.eat("or") {
            operands.push(self.and_expr()?);
        }
        Ok(if operands.len() == 1 { operands.remove(0) } else { Expr::Or(operands) })
    }

    /// `and_expr := primary ( "AND" primary )*`.
    fn and_expr(&mut self) -> Result<Expr, CliError> {
        let mut operands = vec![self.primary()?];
        while self.eat("and") {
            operands.push(self.primary()?);
        }
        Ok(if operands.len() == 1 { operands.remove(0) } else { Expr::And(operands) })
    }

    /// `primary := "(" expr ")" | term`.
    fn primary(&mut self) -> Result<Expr, CliError> {
        let Some(token) = self.peek() else {
            return Err(self.error("expected a condition at the end, e.g. Applied or Job:Complete"));
        };
        self.next += 1;
        match token.text {
            "(" => {
                let inner = self.expr()?;
                if self.eat(")") {
                    return Ok(inner);
                }
                Err(match self.peek() {
                    Some(t) => self.error(format_args!(
                        "expected \")\" or a keyword at position {}, found {:?}",
                        t.pos, t.text
                    )),
                    None => self.error(format_args!("missing \")\" for the \"(\" at position {}", token.pos)),
                })
            }
            word if word == ")" || word.eq_ignore_ascii_case("and") || word.eq_ignore_ascii_case("or") => {
                Err(self.error(format_args!(
                    "unexpected {word:?} at position {}: expected a condition, e.g. Applied or Job:Complete",
                    token.pos
                )))
            }
            _ => parse_term(token).map(Expr::Term).map_err(|m| self.error(m)),
        }
    }
}

/// One term: a work condition, `Deleted`, or a manifest condition.
fn parse_term(token: Token<'_>) -> Result<Term, String> {
    let Token { text, pos } = token;
    for work in ["Applied", "Available"] {
        if text.eq_ignore_ascii_case(work) {
            return Ok(Term::Work(work.to_owned()));
        }
    }
    if text.eq_ignore_ascii_case("deleted") {
        return Ok(Term::Deleted);
    }
    let Some((selector, condition)) = text.split_once(':') else {
        return Err(format!(
            "unknown condition {text:?} at position {pos}: expected Applied, Available, Deleted, \
             <Kind>:<Condition> or <Kind>/[<namespace>/]<name>:<Condition>"
        ));
    };
    if condition.is_empty() || condition.contains(':') {
        return Err(format!("invalid condition name {condition:?} in {text:?} at position {pos}"));
    }
    let parts: Vec<&str> = selector.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("empty kind, namespace or name in {text:?} at position {pos}"));
    }
    let (kind, namespace, name) = match parts[..] {
        [kind] => (kind, None, None),
        [kind, name] => (kind, None, Some(name)),
        [kind, namespace, name] => (kind, Some(namespace), Some(name)),
        _ => {
            return Err(format!(
                "too many '/' in {text:?} at position {pos}: expected <Kind>/[<namespace>/]<name>"
            ));
        }
    };
    Ok(Term::Manifest(ManifestTerm {
        kind: kind.to_owned(),
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        condition: condition.to_owned(),
    }))
}

/// Parses a `--condition` expression.
///
/// # Errors
/// A usage error (exit 2) naming the offending token and its 1-based character position.
pub fn parse(input: &str) -> Result<Expr, CliError> {
    let mut p = Parser { input, tokens: tokenize(input), next: 0 };
    if p.tokens.is_empty() {
        return Err(p.error("empty; expected e.g. Applied, Available, Deleted or Job:Complete"));
    }
    let expr = p.expr()?;
    if let Some(t) = p.peek() {
        return Err(
            p.error(format_args!("unexpected {:?} at position {}: expected AND or OR", t.text, t.pos))
        );
    }
    if expr.mentions_deleted() && !expr.is_deleted() {
        let pos = p.tokens.iter().find(|t| t.text.eq_ignore_ascii_case("deleted")).map_or(0, |t| t.pos);
        return Err(p.error(format_args!(
            "\"Deleted\" at position {pos} must be the whole condition (it means the work is gone)"
        )));
    }
    Ok(expr)
}

impl fmt::Display for ManifestTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if let Some(ns) = &self.namespace {
            write!(f, "/{ns}")?;
        }
        if let Some(name) = &self.name {
            write!(f, "/{name}")?;
        }
        write!(f, ":{}", self.condition)
    }
}

impl fmt::Display for Expr {
    /// The canonical spelling: `AND`/`OR` in capitals, parentheses only where needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, items: &[Expr], sep: &str, paren_or: bool| {
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                match e {
                    Expr::Or(_) if paren_or => write!(f, "({e})")?,
                    _ => write!(f, "{e}")?,
                }
            }
            Ok(())
        };
        match self {
            Expr::Term(Term::Work(c)) => f.write_str(c),
            Expr::Term(Term::Deleted) => f.write_str("Deleted"),
            Expr::Term(Term::Manifest(m)) => write!(f, "{m}"),
            Expr::And(items) => join(f, items, " AND ", true),
            Expr::Or(items) => join(f, items, " OR ", false),
        }
    }
}

/// A manifest of the work with its per-manifest status, if reported.
struct ManifestRef<'a> {
    /// Kind as written in the manifest.
    kind: String,
    /// Namespace (empty when cluster-scoped).
    namespace: String,
    /// Name.
    name: String,
    /// The per-manifest status reported for it.
    status: Option<&'a ManifestCondition>,
}

impl ManifestRef<'_> {
    /// `Kind namespace/name`, or `Kind name` when cluster-scoped.
    fn label(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }

    /// The reported condition `ty` (case-insensitive).
    fn condition(&self, ty: &str) -> Option<&Condition> {
        self.status?.conditions.iter().find(|c| c.kind.eq_ignore_ascii_case(ty))
    }
}

/// The manifests of `b` (from the spec; from the per-manifest status when the spec is not
/// shown), each with its status matched by ordinal, else by kind, namespace and name.
fn manifests(b: &ResourceBundle) -> Vec<ManifestRef<'_>> {
    let statuses = b.status.as_ref().map(|s| s.resource_status.as_slice()).unwrap_or_default();
    if b.manifests.is_empty() {
        return statuses
            .iter()
            .map(|s| ManifestRef {
                kind: s.resource_meta.kind.clone(),
                namespace: s.resource_meta.namespace.clone(),
                name: s.resource_meta.name.clone(),
                status: Some(s),
            })
            .collect();
    }
    let text = |v: &Value, ptr: &str| v.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_owned();
    b.manifests
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (kind, namespace, name) =
                (text(m, "/kind"), text(m, "/metadata/namespace"), text(m, "/metadata/name"));
            let status = statuses
                .iter()
                .find(|s| usize::try_from(s.resource_meta.ordinal).ok() == Some(i))
                .or_else(|| {
                    statuses.iter().find(|s| {
                        let meta = &s.resource_meta;
                        meta.kind == kind && meta.namespace == namespace && meta.name == name
                    })
                });
            ManifestRef { kind, namespace, name, status }
        })
        .collect()
}

impl ManifestTerm {
    /// True when manifest `m` is one this term refers to.
    fn selects(&self, m: &ManifestRef<'_>) -> bool {
        m.kind.eq_ignore_ascii_case(&self.kind)
            && self.name.as_ref().is_none_or(|n| *n == m.name)
            && self.namespace.as_ref().is_none_or(|ns| *ns == m.namespace)
    }

    /// The reported condition that makes this term unreachable for `m`: `Failed`=True
    /// (unless `Failed` is what is awaited), or the awaited condition False with a
    /// [`TERMINAL_REASONS`] reason.
    fn terminal<'m>(&self, m: &'m ManifestRef<'_>) -> Option<&'m Condition> {
        let failed = m.condition("Failed").filter(|c| c.status == "True");
        if let Some(c) = failed.filter(|_| !self.condition.eq_ignore_ascii_case("Failed")) {
            return Some(c);
        }
        m.condition(&self.condition).filter(|c| {
            c.status == "False" && TERMINAL_REASONS.iter().any(|r| c.reason.eq_ignore_ascii_case(r))
        })
    }

    /// Evaluates the term against `b`.
    fn evaluate(&self, b: &ResourceBundle) -> Verdict {
        let all = manifests(b);
        let selected: Vec<&ManifestRef<'_>> = all.iter().filter(|m| self.selects(m)).collect();
        if selected.is_empty() {
            return Verdict::Pending(vec![format!("{self}: the work has no such manifest")]);
        }
        let current = b.status_is_current();
        let mut pending = Vec::new();
        for m in selected {
            let cond = &self.condition;
            if !current {
                pending.push(format!("{}: {cond} not yet reported for version {}", m.label(), b.version));
                continue;
            }
            if let Some(c) = self.terminal(m) {
                let detail = if c.reason.is_empty() && c.message.is_empty() {
                    String::new()
                } else {
                    format!(" [{}: {}]", c.reason, c.message)
                };
                return Verdict::Failed(format!(
                    "cannot reach {self}: {} reports {}={}{detail}",
                    m.label(),
                    c.kind,
                    c.status
                ));
            }
            match m.condition(cond) {
                Some(c) if c.status == "True" => {}
                Some(c) => {
                    pending.push(format!("{}: {cond} not yet True ({})", m.label(), condition_text(c)))
                }
                None => pending.push(format!("{}: {cond} not yet True", m.label())),
            }
        }
        if pending.is_empty() { Verdict::Met } else { Verdict::Pending(pending) }
    }
}

impl Expr {
    /// True when the expression is exactly `Deleted`.
    pub fn is_deleted(&self) -> bool {
        matches!(self, Expr::Term(Term::Deleted))
    }

    /// True when `Deleted` appears anywhere.
    fn mentions_deleted(&self) -> bool {
        match self {
            Expr::Term(t) => *t == Term::Deleted,
            Expr::And(items) | Expr::Or(items) => items.iter().any(Expr::mentions_deleted),
        }
    }

    /// The manifest terms, in order of appearance.
    pub fn manifest_terms(&self) -> Vec<&ManifestTerm> {
        match self {
            Expr::Term(Term::Manifest(m)) => vec![m],
            Expr::Term(_) => Vec::new(),
            Expr::And(items) | Expr::Or(items) => items.iter().flat_map(Expr::manifest_terms).collect(),
        }
    }

    /// The per-manifest conditions the expression refers to, as reported in `b`: one
    /// `Kind namespace/name Condition=Status` entry per manifest and condition (`-` when not
    /// reported), without repeats.
    pub fn manifest_states(&self, b: &ResourceBundle) -> Vec<String> {
        let all = manifests(b);
        let mut states: Vec<String> = Vec::new();
        for term in self.manifest_terms() {
            for m in all.iter().filter(|m| term.selects(m)) {
                let status = m.condition(&term.condition).map_or("-", |c| c.status.as_str());
                let state = format!("{} {}={status}", m.label(), term.condition);
                if !states.contains(&state) {
                    states.push(state);
                }
            }
        }
        states
    }

    /// Evaluates the expression against the work's current state (`None`: the work is gone).
    ///
    /// Waiting for anything but `Deleted` fails when the work is gone or being deleted, or
    /// `Degraded` is True at the current version.
    pub fn evaluate(&self, bundle: Option<&ResourceBundle>) -> Verdict {
        if self.is_deleted() {
            return if bundle.is_some() { Verdict::Pending(Vec::new()) } else { Verdict::Met };
        }
        let Some(b) = bundle else { return Verdict::Failed("no longer exists".into()) };
        if b.is_deleting() {
            return Verdict::Failed("is being deleted".into());
        }
        if b.is_true_at_current_version("Degraded") {
            return Verdict::Failed(format!("is degraded: version {}: {}", b.version, b.condition_summary()));
        }
        self.evaluate_tree(b)
    }

    /// Evaluates the terms and combines them: AND fails on any failure and holds when all
    /// hold; OR holds on any and fails when all fail.
    fn evaluate_tree(&self, b: &ResourceBundle) -> Verdict {
        let (items, all) = match self {
            Expr::Term(Term::Work(c)) if b.is_true_at_current_version(c) => return Verdict::Met,
            Expr::Term(Term::Work(_) | Term::Deleted) => return Verdict::Pending(Vec::new()),
            Expr::Term(Term::Manifest(m)) => return m.evaluate(b),
            Expr::And(items) => (items, true),
            Expr::Or(items) => (items, false),
        };
        let verdicts: Vec<Verdict> = items.iter().map(|e| e.evaluate_tree(b)).collect();
        let mut pending = Vec::new();
        let mut failures = Vec::new();
        for v in verdicts {
            match v {
                Verdict::Met if !all => return Verdict::Met,
                Verdict::Met => {}
                Verdict::Failed(why) if all => return Verdict::Failed(why),
                Verdict::Failed(why) => failures.push(why),
                Verdict::Pending(p) => pending.push(p),
            }
        }
        match (pending.is_empty(), all) {
            (true, true) => Verdict::Met,
            (true, false) => Verdict::Failed(failures.join("; ")),
            (false, _) => Verdict::Pending(pending.concat()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::ExitStatus;
    use serde_json::json;

    /// `Kind:Condition` as a term.
    fn m(kind: &str, ns: Option<&str>, name: Option<&str>, cond: &str) -> Expr {
        Expr::Term(Term::Manifest(ManifestTerm {
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
            condition: cond.into(),
        }))
    }

    /// A work-level term.
    fn w(cond: &str) -> Expr {
        Expr::Term(Term::Work(cond.into()))
    }

    /// The error message of parsing `input`, which must fail as a usage error.
    fn parse_err(input: &str) -> String {
        let e = parse(input).expect_err(input);
        assert_eq!(e.status, ExitStatus::Usage, "{input}");
        e.message
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let e = parse("Applied OR Available AND Job:Complete").expect("parse");
        assert_eq!(
            e,
            Expr::Or(vec![w("Applied"), Expr::And(vec![w("Available"), m("Job", None, None, "Complete")])])
        );
        let e = parse("Applied AND Available OR Job:Complete AND Deployment/web:Available").expect("parse");
        assert_eq!(
            e,
            Expr::Or(vec![
                Expr::And(vec![w("Applied"), w("Available")]),
                Expr::And(vec![
                    m("Job", None, None, "Complete"),
                    m("Deployment", None, Some("web"), "Available")
                ]),
            ])
        );
        assert_eq!(e.to_string(), "Applied AND Available OR Job:Complete AND Deployment/web:Available");
    }

    #[test]
    fn parentheses_group_and_print_back() {
        let e = parse("(Applied OR Available)AND(Job/ns/migrate:Complete)").expect("parse");
        assert_eq!(
            e,
            Expr::And(vec![
                Expr::Or(vec![w("Applied"), w("Available")]),
                m("Job", Some("ns"), Some("migrate"), "Complete")
            ])
        );
        assert_eq!(e.to_string(), "(Applied OR Available) AND Job/ns/migrate:Complete");
        assert_eq!(parse("((Applied))").expect("parse"), w("Applied"));
        assert_eq!(parse(&e.to_string()).expect("round trip"), e);
    }

    #[test]
    fn keywords_and_work_conditions_are_case_insensitive() {
        let e = parse("  applied and AVAILABLE Or job:complete ").expect("parse");
        assert_eq!(
            e,
            Expr::Or(vec![Expr::And(vec![w("Applied"), w("Available")]), m("job", None, None, "complete")])
        );
        assert!(parse("DELETED").expect("parse").is_deleted());
        assert!(parse("(deleted)").expect("parse").is_deleted());
    }

    #[test]
    fn errors_name_the_token_and_position() {
        let msg = parse_err("Applied AND Ready");
        assert!(msg.contains("\"Ready\" at position 13"), "{msg}");
        let msg = parse_err("Applied OR OR Available");
        assert!(msg.contains("unexpected \"OR\" at position 12"), "{msg}");
        let msg = parse_err("Applied Available");
        assert!(msg.contains("unexpected \"Available\" at position 9: expected AND or OR"), "{msg}");
        let msg = parse_err("(Applied AND Available");
        assert!(msg.contains("missing \")\" for the \"(\" at position 1"), "{msg}");
        let msg = parse_err("Applied)");
        assert!(msg.contains("unexpected \")\" at position 8"), "{msg}");
        let msg = parse_err("Applied AND");
        assert!(msg.contains("expected a condition at the end"), "{msg}");
        assert!(parse_err("   ").contains("empty"));
        assert!(parse_err("Job:").contains("invalid condition name \"\" in \"Job:\" at position 1"));
        assert!(parse_err("a/b/c/d:Ready").contains("too many '/'"));
        assert!(parse_err("Job//x:Complete").contains("empty kind, namespace or name"));
        let msg = parse_err("Applied AND Deleted");
        assert!(msg.contains("\"Deleted\" at position 13 must be the whole condition"), "{msg}");
        assert!(msg.starts_with("invalid --condition \"Applied AND Deleted\""), "{msg}");
    }

    /// A work at version 2 with a Job and a ConfigMap; `conditions` work-level, `job` the
    /// Job's per-manifest conditions, all reported at `observed`.
    fn bundle(observed: i64, conditions: &[(&str, &str)], job: &[(&str, &str, &str)]) -> ResourceBundle {
        let cond = |t: &str, s: &str, r: &str| json!({"type": t, "status": s, "reason": r, "message": "m"});
        serde_json::from_value(json!({
            "id": "rid", "name": "web", "consumer_name": "c1", "version": 2,
            "manifests": [
                {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": "default"}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"}}
            ],
            "status": {"ObservedVersion": observed, "conditions": conditions.iter().map(|(t, s)| cond(t, s, "R")).collect::<Vec<_>>(),
                "resourceStatus": [
                    {"resourceMeta": {"ordinal": 0, "kind": "Job", "name": "migrate", "namespace": "default"},
                     "conditions": job.iter().map(|(t, s, r)| cond(t, s, r)).collect::<Vec<_>>()},
                    {"resourceMeta": {"ordinal": 1, "kind": "ConfigMap", "name": "cfg", "namespace": "default"},
                     "conditions": [cond("Applied", "True", "R")]}
                ]}
        }))
        .expect("bundle")
    }

    fn eval(expr: &str, b: Option<&ResourceBundle>) -> Verdict {
        parse(expr).expect("parse").evaluate(b)
    }

    #[test]
    fn work_conditions_hold_at_the_current_version_only() {
        let b = bundle(2, &[("Applied", "True"), ("Available", "False")], &[]);
        assert_eq!(eval("Applied", Some(&b)), Verdict::Met);
        assert_eq!(eval("Available", Some(&b)), Verdict::Pending(Vec::new()));
        assert_eq!(eval("Available OR applied", Some(&b)), Verdict::Met);
        let stale = bundle(1, &[("Applied", "True")], &[]);
        assert_eq!(eval("Applied", Some(&stale)), Verdict::Pending(Vec::new()));
    }

    #[test]
    fn manifest_conditions_by_kind_and_name() {
        let b = bundle(2, &[("Applied", "True")], &[("Complete", "True", "R")]);
        assert_eq!(eval("job:COMPLETE", Some(&b)), Verdict::Met);
        assert_eq!(eval("Job/migrate:Complete AND Applied", Some(&b)), Verdict::Met);
        assert_eq!(eval("Job/default/migrate:Complete", Some(&b)), Verdict::Met);
        assert_eq!(eval("ConfigMap/cfg:applied", Some(&b)), Verdict::Met);
        assert_eq!(
            eval("Job/other/migrate:Complete", Some(&b)),
            Verdict::Pending(vec!["Job/other/migrate:Complete: the work has no such manifest".into()])
        );
        assert_eq!(
            eval("Secret:Applied", Some(&b)),
            Verdict::Pending(vec!["Secret:Applied: the work has no such manifest".into()])
        );
        let running = bundle(2, &[("Applied", "True")], &[("Complete", "False", "Running")]);
        assert_eq!(
            eval("Applied AND Job:Complete", Some(&running)),
            Verdict::Pending(vec![
                "Job default/migrate: Complete not yet True (Complete=False [Running: m])".into()
            ])
        );
        let none = bundle(2, &[("Applied", "True")], &[]);
        assert_eq!(
            eval("Job:Complete", Some(&none)),
            Verdict::Pending(vec!["Job default/migrate: Complete not yet True".into()])
        );
        let stale = bundle(1, &[("Applied", "True")], &[("Complete", "True", "R")]);
        assert_eq!(
            eval("Job:Complete", Some(&stale)),
            Verdict::Pending(vec!["Job default/migrate: Complete not yet reported for version 2".into()])
        );
        assert_eq!(
            parse("Job:Complete AND ConfigMap:Applied").expect("p").manifest_states(&running),
            ["Job default/migrate Complete=False", "ConfigMap default/cfg Applied=True"]
        );
    }

    #[test]
    fn every_manifest_of_the_kind_must_hold() {
        let mut b = bundle(2, &[], &[("Complete", "True", "R")]);
        b.manifests.push(json!({"kind": "Job", "metadata": {"name": "second", "namespace": "default"}}));
        assert_eq!(
            eval("Job:Complete", Some(&b)),
            Verdict::Pending(vec!["Job default/second: Complete not yet True".into()])
        );
        assert_eq!(eval("Job/migrate:Complete", Some(&b)), Verdict::Met);
    }

    #[test]
    fn failures_end_the_wait() {
        let failed = bundle(2, &[("Applied", "True")], &[("Failed", "True", "BackoffLimitExceeded")]);
        let Verdict::Failed(why) = eval("Applied AND Job:Complete", Some(&failed)) else {
            panic!("not failed")
        };
        assert!(
            why.contains(
                "cannot reach Job:Complete: Job default/migrate reports Failed=True [BackoffLimitExceeded: m]"
            ),
            "{why}"
        );
        assert_eq!(eval("Job:Complete OR Job:Failed", Some(&failed)), Verdict::Met);
        let deadline = bundle(2, &[], &[("Complete", "False", "DeadlineExceeded")]);
        assert!(matches!(eval("Job:Complete", Some(&deadline)), Verdict::Failed(_)));
        assert!(matches!(eval("Job:Complete OR Applied", Some(&deadline)), Verdict::Pending(_)));
        let degraded = bundle(2, &[("Applied", "True"), ("Degraded", "True")], &[]);
        let Verdict::Failed(why) = eval("Applied", Some(&degraded)) else { panic!("not failed") };
        assert!(why.starts_with("is degraded: version 2: "), "{why}");
        assert_eq!(eval("Applied", None), Verdict::Failed("no longer exists".into()));
        let mut deleting = bundle(2, &[("Applied", "True")], &[]);
        deleting.deleted_at = Some(chrono::Utc::now());
        assert_eq!(eval("Applied", Some(&deleting)), Verdict::Failed("is being deleted".into()));
        assert_eq!(eval("Deleted", Some(&deleting)), Verdict::Pending(Vec::new()));
        assert_eq!(eval("Deleted", None), Verdict::Met);
    }

    /// Manifests known only from the per-manifest status (a server that does not show the
    /// spec) are matched too.
    #[test]
    fn manifests_from_the_status_when_the_spec_is_not_shown() {
        let mut b = bundle(2, &[], &[("Complete", "True", "R")]);
        b.manifests.clear();
        assert_eq!(eval("Job/default/migrate:Complete AND ConfigMap:Applied", Some(&b)), Verdict::Met);
    }
}
