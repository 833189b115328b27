//! Condition rules (`manifestConfigs[].conditionRules`, docs/protocol.md §8.4): named conditions
//! computed from the live object of a manifest, by a built-in rule for its kind
//! (`WellKnownConditions`) or by CEL expressions (`CEL`), and rolled up to the work.
//!
//! The rules arrive verbatim (`ManifestConfigOption::condition_rules`) and are read here; a rule
//! that cannot be read, an unknown rule type and every CEL error become a condition, never an
//! error of the reconcile. CEL runs on the `cel` crate with the variables `object` (the live
//! object) and, in `messageExpression`, `result` (the rule's outcome), the standard library,
//! the strings extension and `hasConditions(map)`.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock};

use cel::objects::Key;
use cel::{Context, Env, ExecutionError, Value as Cel};
use maestro_api::payload::{Condition, ManifestCondition};
use serde_json::Value;

use crate::conditions::{self as cond, carry_over, is_rule_generated, prune_rule_conditions, set_condition};

/// Rule type evaluating the built-in rule of the object's kind.
pub(crate) const WELL_KNOWN_CONDITIONS: &str = "WellKnownConditions";
/// Rule type evaluating the rule's own CEL expressions.
pub(crate) const CEL_TYPE: &str = "CEL";

/// Why a rule gave no clean result; the `Display` text is the condition message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum RuleError {
    /// The rule is not a readable `ConditionRule`.
    #[error("invalid condition rule: {0}")]
    Invalid(String),
    /// The rule's `type` is neither `WellKnownConditions` nor `CEL`.
    #[error("unrecognized condition rule type {0}")]
    UnrecognizedType(String),
    /// A CEL expression does not compile.
    #[error("{0}")]
    Compile(String),
    /// A CEL expression fails while evaluated.
    #[error("{0}")]
    Evaluation(String),
    /// A rule expression evaluated to something else than a bool.
    #[error("expected bool result, got {0}")]
    NotBool(&'static str),
    /// The message expression evaluated to something else than a string.
    #[error("expected message expression to have a string result, got {0}")]
    NotString(&'static str),
    /// The CEL interpreter failed on its own (a panic caught here).
    #[error("CEL evaluation failed internally")]
    Internal,
}

/// One condition rule, read from its wire form.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ConditionRule {
    /// The condition type the rule sets (`condition`).
    pub(crate) condition: String,
    /// `WellKnownConditions` or `CEL` (`type`).
    pub(crate) kind: String,
    /// Expressions ANDed together (`celExpressions`).
    pub(crate) cel_expressions: Vec<String>,
    /// Fixed message (`message`).
    pub(crate) message: String,
    /// CEL expression for the message (`messageExpression`).
    pub(crate) message_expression: String,
}

impl ConditionRule {
    /// Reads a rule from its JSON form. Missing and `null` fields are empty, as Go decodes them.
    ///
    /// # Errors
    /// [`RuleError::Invalid`] when it is not an object, a field has the wrong JSON type, or a
    /// `CEL` rule names no condition.
    pub(crate) fn parse(raw: &Value) -> Result<Self, RuleError> {
        let invalid = |what: &str| RuleError::Invalid(what.to_owned());
        let obj = raw.as_object().ok_or_else(|| invalid("a condition rule must be an object"))?;
        let text = |key: &str| match obj.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(RuleError::Invalid(format!("{key} must be a string"))),
        };
        let cel_expressions = match obj.get("celExpressions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid("celExpressions must be a list of strings"))?,
            Some(_) => return Err(invalid("celExpressions must be a list of strings")),
        };
        let rule = ConditionRule {
            condition: text("condition")?,
            kind: text("type")?,
            cel_expressions,
            message: text("message")?,
            message_expression: text("messageExpression")?,
        };
        if rule.kind == CEL_TYPE && rule.condition.is_empty() {
            return Err(invalid("condition is required for CEL rules"));
        }
        Ok(rule)
    }
}

/// A built-in rule: the condition it sets on objects of one group/version/kind.
struct WellKnown {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    condition: &'static str,
    expression: &'static str,
    message_expression: &'static str,
}

/// The built-in rules (OCM's): a Job is `Complete` once it has a `Complete` or `Failed`
/// condition that is True, a Pod once its phase is `Succeeded` or `Failed`.
const WELL_KNOWN: [WellKnown; 2] = [
    WellKnown {
        group: "batch",
        version: "v1",
        kind: "Job",
        condition: cond::COMPLETE,
        expression: "hasConditions(object.status) ? object.status.conditions.filter(c, \
                     c.type == 'Complete' || c.type == 'Failed').exists(c, c.status == 'True') : false",
        message_expression: "result ? \"Job is finished\" : \"Job is not finished\"",
    },
    WellKnown {
        group: "",
        version: "v1",
        kind: "Pod",
        condition: cond::COMPLETE,
        expression: "object.status.phase in ['Succeeded', 'Failed']",
        message_expression: "\"Pod is in phase \" + object.status.phase",
    },
];

/// The CEL rule that stands for a `WellKnownConditions` rule on `object`, with the rule's
/// `message`/`messageExpression` overrides; `None` when no built-in rule covers its kind and
/// condition (the rule then sets nothing).
fn well_known_rule(rule: &ConditionRule, object: &Value) -> Option<ConditionRule> {
    let s = |k: &str| object.get(k).and_then(Value::as_str).unwrap_or_default();
    let (group, version) = crate::cluster::split_api_version(s("apiVersion"));
    let wk = WELL_KNOWN.iter().find(|w| {
        (w.group, w.version, w.kind, w.condition) == (group, version, s("kind"), rule.condition.as_str())
    })?;
    let message_expression = match rule.message_expression.as_str() {
        "" => wk.message_expression.to_owned(),
        own => own.to_owned(),
    };
    Some(ConditionRule {
        condition: wk.condition.to_owned(),
        kind: CEL_TYPE.to_owned(),
        cel_expressions: vec![wk.expression.to_owned()],
        message: rule.message.clone(),
        message_expression,
    })
}

/// The CEL environment: the standard library and the strings extension; duplicate map keys
/// keep the last entry, as cel-go does.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    if let Err(e) = env.add_extension(cel::extensions::strings) {
        tracing::warn!(error = %e, "CEL strings extension not available");
    }
    env.set_error_on_duplicate_map_keys(false);
    Arc::new(env)
});

/// `hasConditions(map)`: true when the map has a `conditions` key holding a non-empty list.
fn has_conditions(value: Cel) -> bool {
    match value {
        Cel::Map(map) => {
            matches!(map.map.get(&Key::from("conditions")), Some(Cel::List(items)) if !items.is_empty())
        }
        _ => false,
    }
}

/// A JSON value as a CEL value. Integers stay signed (`int`) when they fit, as Kubernetes'
/// unstructured objects hold them.
fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            Cel::from(map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect::<HashMap<String, Cel>>())
        }
    }
}

/// The Go type name cel-go's result would have (for the "expected … result, got T" messages).
fn go_type_name(v: &Cel) -> &'static str {
    match v {
        Cel::Int(_) => "int64",
        Cel::UInt(_) => "uint64",
        Cel::Float(_) => "float64",
        Cel::String(_) => "string",
        Cel::Bool(_) => "bool",
        Cel::Bytes(_) => "[]uint8",
        Cel::List(_) => "[]interface {}",
        Cel::Map(_) => "map[string]interface {}",
        Cel::Null => "structpb.NullValue",
        Cel::Duration(_) => "time.Duration",
        Cel::Timestamp(_) => "time.Time",
        _ => "interface {}",
    }
}

/// An evaluation error as cel-go words the common ones.
fn execution_message(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        ExecutionError::UndeclaredReference(name) => {
            format!("undeclared reference to '{name}' (in container '')")
        }
        other => other.to_string(),
    }
}

/// Compiles and runs `source` in `ctx`. A panic of the interpreter is caught and reported as
/// [`RuleError::Internal`].
fn run(ctx: &Context<'_, '_>, source: &str) -> Result<Cel, RuleError> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let program = ENV.compile(source).map_err(|e| RuleError::Compile(e.to_string()))?;
        program.execute(ctx).map_err(|e| RuleError::Evaluation(execution_message(&e)))
    }));
    outcome.unwrap_or(Err(RuleError::Internal))
}

/// The root context of one object's evaluations: `object` and `hasConditions`.
fn object_context(object: &Value) -> Result<Context<'static, 'static>, RuleError> {
    let mut ctx = Context::with_env(Arc::clone(&ENV));
    ctx.add_function("hasConditions", has_conditions).map_err(|_| RuleError::Internal)?;
    ctx.add_variable_from_value("object", to_cel(object));
    Ok(ctx)
}

/// The outcome of one rule: condition type, status, reason and message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// Condition type.
    pub(crate) kind: String,
    /// `True`, `False` or `Unknown`.
    pub(crate) status: &'static str,
    /// One of the `ConditionRule…` reasons.
    pub(crate) reason: &'static str,
    /// Message.
    pub(crate) message: String,
}

/// The AND of the rule's expressions: (status, reason, error). The first false one stops.
fn evaluate_expressions(
    ctx: &Context<'_, '_>,
    expressions: &[String],
) -> (&'static str, &'static str, Option<RuleError>) {
    for expression in expressions {
        match run(ctx, expression) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => return (cond::FALSE, cond::CONDITION_RULE_EVALUATED, None),
            Ok(other) => {
                let e = RuleError::NotBool(go_type_name(&other));
                return (cond::FALSE, cond::CONDITION_RULE_EXPRESSION_ERROR, Some(e));
            }
            Err(e @ RuleError::Internal) => {
                return (cond::UNKNOWN, cond::CONDITION_RULE_INTERNAL_ERROR, Some(e));
            }
            Err(e) => return (cond::FALSE, cond::CONDITION_RULE_EXPRESSION_ERROR, Some(e)),
        }
    }
    (cond::TRUE, cond::CONDITION_RULE_EVALUATED, None)
}

/// The message of a rule evaluated to `result`: `messageExpression` when it gives a non-empty
/// string, else `message`, else "Manifest is [not] <condition>". A failing message expression
/// gives its error as the message (only the first line of a compile error).
fn rule_message(ctx: &Context<'_, '_>, rule: &ConditionRule, result: bool) -> Result<String, RuleError> {
    if !rule.message_expression.is_empty() {
        let mut scope = ctx.new_inner_scope();
        scope.add_variable_from_value("result", result);
        match run(&scope, &rule.message_expression) {
            Ok(Cel::String(s)) if !s.is_empty() => return Ok(s.as_str().to_owned()),
            Ok(Cel::String(_)) => {}
            Ok(other) => return Err(RuleError::NotString(go_type_name(&other))),
            Err(RuleError::Compile(e)) => {
                return Err(RuleError::Compile(e.lines().next().unwrap_or_default().to_owned()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(match (rule.message.as_str(), result) {
        ("", true) => format!("Manifest is {}", rule.condition),
        ("", false) => format!("Manifest is not {}", rule.condition),
        (message, _) => message.to_owned(),
    })
}

/// Evaluates one CEL rule on the object of `ctx`.
fn evaluate_cel_rule(ctx: &Context<'_, '_>, rule: &ConditionRule) -> Outcome {
    let (status, reason, error) = evaluate_expressions(ctx, &rule.cel_expressions);
    let message = match error {
        Some(e) => e.to_string(),
        None => rule_message(ctx, rule, status == cond::TRUE).unwrap_or_else(|e| e.to_string()),
    };
    Outcome { kind: rule.condition.clone(), status, reason, message }
}

/// Evaluates one rule in its wire form on `object`. `None` when it sets no condition (a
/// `WellKnownConditions` rule for a kind without a built-in rule).
fn evaluate_rule(raw: &Value, index: usize, object: &Value, ctx: &Context<'_, '_>) -> Option<Outcome> {
    let rule = match ConditionRule::parse(raw) {
        Ok(rule) => rule,
        Err(e) => return Some(invalid_rule_outcome(raw, index, &e)),
    };
    match rule.kind.as_str() {
        WELL_KNOWN_CONDITIONS => well_known_rule(&rule, object).map(|r| evaluate_cel_rule(ctx, &r)),
        CEL_TYPE => Some(evaluate_cel_rule(ctx, &rule)),
        other => Some(Outcome {
            kind: rule.condition.clone(),
            status: cond::UNKNOWN,
            reason: cond::CONDITION_RULE_INVALID,
            message: RuleError::UnrecognizedType(other.to_owned()).to_string(),
        }),
    }
}

/// The condition for a rule that cannot be read: its `condition` when that is a non-empty
/// string, else `InvalidConditionRule`; Unknown `ConditionRuleInvalid`.
fn invalid_rule_outcome(raw: &Value, index: usize, error: &RuleError) -> Outcome {
    let named = raw.get("condition").and_then(Value::as_str).filter(|c| !c.is_empty());
    Outcome {
        kind: named.unwrap_or(cond::INVALID_CONDITION_RULE).to_owned(),
        status: cond::UNKNOWN,
        reason: cond::CONDITION_RULE_INVALID,
        message: format!("conditionRules[{index}]: {error}"),
    }
}

/// Evaluates `rules` (wire form) on `object`, in order. Never fails: every problem is an
/// [`Outcome`] with an error reason.
pub(crate) fn evaluate(rules: &[Value], object: &Value) -> Vec<Outcome> {
    if rules.is_empty() {
        return Vec::new();
    }
    let ctx = match object_context(object) {
        Ok(ctx) => ctx,
        Err(e) => return rules.iter().enumerate().map(|(i, r)| internal_outcome(r, i, &e)).collect(),
    };
    let out: Vec<Outcome> =
        rules.iter().enumerate().filter_map(|(i, raw)| evaluate_rule(raw, i, object, &ctx)).collect();
    for o in out.iter().filter(|o| o.reason != cond::CONDITION_RULE_EVALUATED) {
        tracing::debug!(condition = %o.kind, reason = o.reason, message = %o.message,
            "failed to evaluate condition rule");
    }
    out
}

/// The condition for every rule when the object cannot be bound: Unknown
/// `ConditionRuleInternalError`.
fn internal_outcome(raw: &Value, index: usize, error: &RuleError) -> Outcome {
    Outcome {
        status: cond::UNKNOWN,
        reason: cond::CONDITION_RULE_INTERNAL_ERROR,
        message: error.to_string(),
        ..invalid_rule_outcome(raw, index, error)
    }
}

/// A manifest's rule conditions, to merge into the conditions built for it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RuleConditions {
    /// Evaluated on the live object: they replace conditions of the same type.
    Evaluated(Vec<Condition>),
    /// The object could not be read: the previous rule conditions are kept as they were,
    /// without replacing a condition of the same type.
    Kept(Vec<Condition>),
}

/// The rule conditions of one manifest. With the live object, the rules are evaluated
/// (`observedGeneration` = `generation`, transition time kept while the status holds) over the
/// previous rule conditions, and those of an earlier generation are dropped. Without it (missing
/// or unreadable), the previous rule conditions stay as they were.
pub(crate) fn manifest_conditions(
    rules: &[Value],
    live: Option<&Value>,
    previous: &[Condition],
    generation: i64,
) -> RuleConditions {
    let mut conditions: Vec<Condition> = previous.iter().filter(|c| is_rule_generated(c)).cloned().collect();
    let Some(object) = live else { return RuleConditions::Kept(conditions) };
    for o in evaluate(rules, object) {
        let c = cond::condition(&o.kind, o.status, o.reason, o.message, generation);
        set_condition(&mut conditions, carry_over(previous, c));
    }
    prune_rule_conditions(&mut conditions, generation);
    RuleConditions::Evaluated(conditions)
}

impl RuleConditions {
    /// Merges into a manifest's `conditions` (after its `Applied`, `Available` and
    /// `StatusFeedbackSynced`).
    pub(crate) fn merge_into(self, conditions: &mut Vec<Condition>) {
        let (list, replace) = match self {
            RuleConditions::Evaluated(list) => (list, true),
            RuleConditions::Kept(list) => (list, false),
        };
        for c in list {
            match conditions.iter_mut().find(|old| old.kind == c.kind) {
                Some(old) if replace => *old = c,
                Some(_) => {}
                None => conditions.push(c),
            }
        }
    }
}

/// Counts of one condition type over the manifests.
#[derive(Debug, Default)]
struct Tally {
    true_: usize,
    false_: usize,
    unknown: usize,
    message: String,
}

/// The work-level condition rolled up from the manifests' rule conditions of one type:
/// `Progressing` is True when any is True; other types are False when any is False, else
/// Unknown when any is Unknown, else True. The message is the manifest's when only one has
/// the type, else "Aggregated from N manifest conditions".
fn rolled_up(kind: &str, t: &Tally, generation: i64) -> Condition {
    let status = if kind == cond::PROGRESSING {
        match (t.true_, t.unknown) {
            (1.., _) => cond::TRUE,
            (0, 1..) => cond::UNKNOWN,
            _ => cond::FALSE,
        }
    } else {
        match (t.false_, t.unknown, t.true_) {
            (1.., _, _) => cond::FALSE,
            (0, 1.., _) | (0, 0, 0) => cond::UNKNOWN,
            _ => cond::TRUE,
        }
    };
    let total = t.true_ + t.false_ + t.unknown;
    let message = if total == 1 && !t.message.is_empty() {
        t.message.clone()
    } else {
        format!("Aggregated from {total} manifest conditions")
    };
    cond::condition(kind, status, cond::CONDITION_RULES_AGGREGATED, message, generation)
}

/// Rolls the manifests' rule conditions up to the work's `conditions` (one per type, in type
/// order; `Available` is left to its own aggregation) and drops the rolled-up conditions of an
/// earlier generation.
pub(crate) fn roll_up(conditions: &mut Vec<Condition>, manifests: &[ManifestCondition], generation: i64) {
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let rule_made = manifests.iter().flat_map(|m| &m.conditions).filter(|c| is_rule_generated(c));
    for c in rule_made.filter(|c| c.kind != cond::AVAILABLE) {
        let t = tallies.entry(c.kind.as_str()).or_default();
        match c.status.as_str() {
            cond::TRUE => t.true_ += 1,
            cond::FALSE => t.false_ += 1,
            cond::UNKNOWN => t.unknown += 1,
            _ => {}
        }
        if !c.message.is_empty() {
            t.message.clone_from(&c.message);
        }
    }
    for (kind, t) in &tallies {
        set_condition(conditions, rolled_up(kind, t, generation));
    }
    prune_rule_conditions(conditions, generation);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment() -> Value {
        json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"test"},
               "status":{"readyReplicas":1,"replicas":2,"conditions":[{"type":"Available","status":"True"}]}})
    }

    fn job(conditions: Value) -> Value {
        json!({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"test"},
               "status":{"conditions":conditions,"succeeded":1}})
    }

    fn pod(phase: &str) -> Value {
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"test"},
               "status":{"conditions":[{"status":"False","type":"Ready"}],"phase":phase}})
    }

    fn one(rule: Value, object: &Value) -> Option<(String, &'static str, &'static str, String)> {
        let mut out = evaluate(&[rule], object);
        let o = out.pop()?;
        Some((o.kind, o.status, o.reason, o.message))
    }

    fn expect(
        kind: &str,
        status: &'static str,
        reason: &'static str,
        message: &str,
    ) -> Option<(String, &'static str, &'static str, String)> {
        Some((kind.to_owned(), status, reason, message.to_owned()))
    }

    /// The cases of OCM's `TestConditionReader` (pkg/work/spoke/conditions/reader_test.go).
    #[test]
    fn ocm_reader_cases() {
        let d = deployment();
        let rule = json!({"type":"CEL","condition":"Available",
            "celExpressions":["object.status.conditions.exists(c, c.type == \"Available\" && c.status == \"True\")"],
            "messageExpression":"result ? \"Deployment available\" : \"Deployment unavailable\""});
        assert_eq!(
            one(rule, &d),
            expect("Available", "True", "ConditionRuleEvaluated", "Deployment available")
        );
        let rule = json!({"type":"CEL","condition":"Available",
            "celExpressions":["object.status.conditions.filter(c, c.type == \"Available\")[0].status"]});
        assert_eq!(
            one(rule, &d),
            expect("Available", "False", "ConditionRuleExpressionError", "expected bool result, got string")
        );
        let rule = json!({"type":"CEL","condition":"Available","celExpressions":["object.missing"]});
        assert_eq!(
            one(rule, &d),
            expect("Available", "False", "ConditionRuleExpressionError", "no such key: missing")
        );
        let rule = json!({"type":"CEL","condition":"HasConditions","message":"should work","celExpressions":[
            "hasConditions(object.status) && !hasConditions({}) && !hasConditions(\"badtype\") \
             && !hasConditions({\"conditions\": []}) && !hasConditions({\"conditions\": null})"]});
        assert_eq!(one(rule, &d), expect("HasConditions", "True", "ConditionRuleEvaluated", "should work"));
        let wk = json!({"type":"WellKnownConditions","condition":"Complete"});
        let complete = job(json!([{"status":"True","type":"Complete"},{"status":"True","type":"Another"}]));
        assert_eq!(
            one(wk.clone(), &complete),
            expect("Complete", "True", "ConditionRuleEvaluated", "Job is finished")
        );
        let failed = job(json!([{"status":"True","type":"Failed"}]));
        assert_eq!(
            one(wk.clone(), &failed),
            expect("Complete", "True", "ConditionRuleEvaluated", "Job is finished")
        );
        let running = job(json!([{"status":"False","type":"Complete"},{"status":"True","type":"Another"}]));
        assert_eq!(
            one(wk.clone(), &running),
            expect("Complete", "False", "ConditionRuleEvaluated", "Job is not finished")
        );
        for (phase, status) in [("Succeeded", "True"), ("Failed", "True"), ("Running", "False")] {
            let msg = format!("Pod is in phase {phase}");
            assert_eq!(
                one(wk.clone(), &pod(phase)),
                expect("Complete", status, "ConditionRuleEvaluated", &msg)
            );
        }
        assert_eq!(one(wk, &d), None, "no built-in rule for Deployments: nothing is set");
    }

    #[test]
    fn message_expression_errors_keep_the_status() {
        let d = deployment();
        let rule = json!({"type":"CEL","condition":"Available","celExpressions":["true"],"messageExpression":"badcel"});
        let (kind, status, reason, message) = one(rule, &d).expect("outcome");
        assert_eq!((kind.as_str(), status, reason), ("Available", "True", "ConditionRuleEvaluated"));
        assert!(message.contains("badcel"), "{message}");
        let rule = json!({"type":"CEL","condition":"A","celExpressions":["true"],"messageExpression":"1 +"});
        let message = one(rule, &d).expect("outcome").3;
        assert!(message.starts_with("ERROR: <input>:1:") && !message.contains('\n'), "{message}");
        let rule = json!({"type":"CEL","condition":"A","celExpressions":["true"],"messageExpression":"42"});
        assert_eq!(
            one(rule, &d).expect("outcome").3,
            "expected message expression to have a string result, got int64"
        );
        let rule = json!({"type":"CEL","condition":"A","celExpressions":["false"],"messageExpression":"''"});
        assert_eq!(one(rule, &d).expect("outcome").3, "Manifest is not A");
    }

    #[test]
    fn unreadable_and_unknown_rules() {
        let d = deployment();
        assert_eq!(
            one(json!({"type":"Magic","condition":"X"}), &d),
            expect("X", "Unknown", "ConditionRuleInvalid", "unrecognized condition rule type Magic")
        );
        assert_eq!(
            one(json!({"type":"CEL","condition":"X","celExpressions":[{"expression":"true"}]}), &d),
            expect(
                "X",
                "Unknown",
                "ConditionRuleInvalid",
                "conditionRules[0]: invalid condition rule: celExpressions must be a list of strings"
            )
        );
        assert_eq!(
            one(json!("nonsense"), &d),
            expect(
                "InvalidConditionRule",
                "Unknown",
                "ConditionRuleInvalid",
                "conditionRules[0]: invalid condition rule: a condition rule must be an object"
            )
        );
        let syntax =
            one(json!({"type":"CEL","condition":"X","celExpressions":["object.("]}), &d).expect("outcome");
        assert_eq!((syntax.1, syntax.2), ("False", "ConditionRuleExpressionError"));
        assert!(syntax.3.starts_with("ERROR: <input>:1:"), "{}", syntax.3);
    }

    #[test]
    fn integers_are_signed_and_strings_extension_is_on() {
        let d = deployment();
        let rule = json!({"type":"CEL","condition":"X","celExpressions":[
            "object.status.replicas == 2", "object.status.readyReplicas < object.status.replicas",
            "object.metadata.name.upperAscii() == 'TEST'"]});
        assert_eq!(one(rule, &d).map(|o| o.1), Some("True"));
    }

    fn manifest(conds: Vec<Condition>) -> ManifestCondition {
        ManifestCondition { conditions: conds, ..Default::default() }
    }

    fn rule_cond(kind: &str, status: &'static str, message: &str) -> Condition {
        cond::condition(kind, status, cond::CONDITION_RULE_EVALUATED, message, 2)
    }

    /// The cases of OCM's `TestConditionRules` aggregation
    /// (pkg/work/spoke/controllers/statuscontroller/availablestatus_controller_test.go).
    #[test]
    fn roll_up_per_type() {
        let mut work = Vec::new();
        let ms = [manifest(vec![rule_cond("Complete", "True", "Job is finished")])];
        roll_up(&mut work, &ms, 2);
        assert_eq!((work[0].status.as_str(), work[0].message.as_str()), ("True", "Job is finished"));
        assert_eq!((work[0].reason.as_str(), work[0].observed_generation), ("ConditionRulesAggregated", 2));
        let ms = [
            manifest(vec![rule_cond("Complete", "True", "")]),
            manifest(vec![rule_cond("Complete", "False", "")]),
        ];
        roll_up(&mut work, &ms, 2);
        assert_eq!(
            (work[0].status.as_str(), work[0].message.as_str()),
            ("False", "Aggregated from 2 manifest conditions")
        );
        let ms = [
            manifest(vec![rule_cond("Progressing", "True", "")]),
            manifest(vec![rule_cond("Progressing", "False", "")]),
        ];
        roll_up(&mut work, &ms, 2);
        assert_eq!(work.iter().find(|c| c.kind == "Progressing").map(|c| c.status.as_str()), Some("True"));
        // a new generation without those rules: the rolled-up conditions go
        roll_up(&mut work, &[manifest(vec![rule_cond("Other", "True", "")])], 3);
        let kinds: Vec<&str> = work.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["Other"], "generation 3 keeps only what generation 3 rolled up");
    }

    #[test]
    fn manifest_conditions_prune_and_keep() {
        let job = job(json!([{"status":"True","type":"Complete"}]));
        let previous =
            vec![rule_cond("Gone", "True", ""), rule_cond("Complete", "False", "Job is not finished")];
        let rules = [json!({"type":"WellKnownConditions","condition":"Complete"})];
        let RuleConditions::Evaluated(now) = manifest_conditions(&rules, Some(&job), &previous, 3) else {
            panic!("evaluated")
        };
        let kinds: Vec<(&str, &str, i64)> =
            now.iter().map(|c| (c.kind.as_str(), c.status.as_str(), c.observed_generation)).collect();
        assert_eq!(kinds, [("Complete", "True", 3)], "the rule of an earlier generation is pruned");
        let kept = manifest_conditions(&rules, None, &previous, 3);
        assert_eq!(
            kept,
            RuleConditions::Kept(previous.clone()),
            "an unreadable object keeps them as they were"
        );
        let mut base = vec![cond::manifest_available(Ok(false), true, 3)];
        RuleConditions::Kept(vec![rule_cond("Available", "True", "")]).merge_into(&mut base);
        assert_eq!(base.len(), 1);
        assert_eq!(base[0].reason, "ResourceNotAvailable", "kept rule conditions do not replace fresh ones");
    }
}
