//! `wait`, and the polling loop behind `apply --watch` and `delete --watch`.

use std::borrow::Cow;
use std::io::Write;
use std::time::Duration;

use maestro_client::{ClientError, ResourceBundle, RestClient};
use tokio::time::Instant;

use crate::cli::WaitArgs;
use crate::commands::{Context, Outcome, report};
use crate::condition::{Expr, Term, Verdict};
use crate::exit::CliError;
use crate::results::ResultStatus;

/// What to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// All these work conditions True at the current version.
    Conditions(Vec<&'static str>),
    /// The bundle is gone (REST 404).
    Deleted,
    /// A `wait --condition` expression (crate::condition).
    Expression(Expr),
}

impl Target {
    /// The target for a parsed `--condition`: `Deleted` alone is [`Target::Deleted`].
    pub(crate) fn from_expr(expr: Expr) -> Self {
        if expr.is_deleted() { Target::Deleted } else { Target::Expression(expr) }
    }

    /// The target as an expression.
    fn expr(&self) -> Cow<'_, Expr> {
        match self {
            Target::Conditions(c) => {
                Cow::Owned(Expr::And(c.iter().map(|c| Expr::Term(Term::Work((*c).to_owned()))).collect()))
            }
            Target::Deleted => Cow::Owned(Expr::Term(Term::Deleted)),
            Target::Expression(e) => Cow::Borrowed(e),
        }
    }

    /// What is waited for, for messages.
    fn describe(&self) -> String {
        match self {
            Target::Conditions(c) => format!("{} at the current version", c.join(" and ")),
            Target::Deleted => "deletion".into(),
            Target::Expression(e) => format!("{e}"),
        }
    }
}

/// The work being waited on.
pub(crate) struct Watched<'a> {
    /// REST client.
    pub(crate) rest: &'a RestClient,
    /// Resource id.
    pub(crate) id: String,
    /// Work name (for messages).
    pub(crate) name: &'a str,
    /// Consumer (for messages).
    pub(crate) consumer: &'a str,
}

/// The observed state of a work that does not meet the target yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Version, deletion and work conditions, plus the per-manifest conditions the target
    /// refers to, e.g. `version 2: Applied=True (observed version 2); Job default/migrate
    /// Complete=False`.
    pub(crate) state: String,
    /// The per-manifest items still awaited (crate::condition::Verdict::Pending).
    pub(crate) awaiting: Vec<String>,
}

/// One evaluation of the target.
enum Step {
    /// Reached: the bundle (`None` when deleted).
    Done(Option<Box<ResourceBundle>>),
    /// Not yet.
    Pending(Pending),
}

/// The state text of `b` for `expr` ([`Pending::state`]).
fn state_text(b: &ResourceBundle, expr: &Expr) -> String {
    let mut state = format!(
        "version {}{}: {}",
        b.version,
        if b.is_deleting() { ", deleting" } else { "" },
        b.condition_summary()
    );
    for m in expr.manifest_states(b) {
        state.push_str("; ");
        state.push_str(&m);
    }
    state
}

/// Evaluates `expr` against the bundle `found` (`None`: gone).
fn evaluate(w: &Watched<'_>, expr: &Expr, found: Option<ResourceBundle>) -> anyhow::Result<Step> {
    let state = found.as_ref().map_or_else(|| "not found".to_owned(), |b| state_text(b, expr));
    match expr.evaluate(found.as_ref()) {
        Verdict::Met => Ok(Step::Done(found.map(Box::new))),
        Verdict::Pending(awaiting) => Ok(Step::Pending(Pending { state, awaiting })),
        Verdict::Failed(why) => {
            Err(CliError::failed(format!("resource bundle {:?} on consumer {:?} {why}", w.name, w.consumer))
                .into())
        }
    }
}

/// Polls every `interval` until `target` is reached, printing each new state to `progress`
/// (`waiting for <name>: <state>`, then `waiting for <item>` per awaited manifest condition).
///
/// # Errors
/// A timeout naming the last state; non-transient REST errors; a failure (bundle deleted
/// while waiting for conditions, `Degraded`=True, a referenced manifest failed).
pub(crate) async fn poll(
    w: &Watched<'_>,
    target: &Target,
    timeout: Duration,
    interval: Duration,
    progress: &mut dyn Write,
) -> anyhow::Result<Option<ResourceBundle>> {
    let mut print = |p: &Pending| -> anyhow::Result<()> {
        writeln!(progress, "waiting for {}: {}", w.name, p.state)?;
        for item in &p.awaiting {
            writeln!(progress, "waiting for {item}")?;
        }
        Ok(())
    };
    poll_with(w, target, timeout, interval, &mut print).await
}

/// Like [`poll`], handing each new pending state to `on_change`.
///
/// # Errors
/// As [`poll`]; errors of `on_change`.
pub(crate) async fn poll_with(
    w: &Watched<'_>,
    target: &Target,
    timeout: Duration,
    interval: Duration,
    on_change: &mut dyn FnMut(&Pending) -> anyhow::Result<()>,
) -> anyhow::Result<Option<ResourceBundle>> {
    let deadline = Instant::now() + timeout;
    let expr = target.expr();
    let mut last: Option<Pending> = None;
    loop {
        let error = match w.rest.find_bundle(&w.id).await {
            Ok(found) => match evaluate(w, &expr, found)? {
                Step::Done(b) => return Ok(b.map(|b| *b)),
                Step::Pending(p) => {
                    if last.as_ref() != Some(&p) {
                        on_change(&p)?;
                        last = Some(p);
                    }
                    None
                }
            },
            Err(e) if e.is_transient() => Some(e),
            Err(e) => return Err(e.into()),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out(w, target, timeout, error.as_ref(), last.as_ref()).into());
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
    }
}

/// The timeout error of waiting `timeout` for `target`, naming the last state seen (or the
/// transient `error` of the last poll).
fn timed_out(
    w: &Watched<'_>,
    target: &Target,
    timeout: Duration,
    error: Option<&ClientError>,
    last: Option<&Pending>,
) -> ClientError {
    let state = match (error, last) {
        (Some(e), _) => format!("last error: {e}"),
        (None, Some(p)) => std::iter::once(p.state.clone())
            .chain(p.awaiting.iter().map(|a| format!("waiting for {a}")))
            .collect::<Vec<_>>()
            .join("; "),
        (None, None) => "not yet observed".into(),
    };
    ClientError::Timeout {
        after: timeout,
        what: format!(
            "resource bundle {:?} on consumer {:?} to reach {} (last state: {state})",
            w.name,
            w.consumer,
            target.describe()
        ),
    }
}

/// Runs `wait`, then writes the `--results-path` file.
///
/// # Errors
/// A usage error for a bad `--condition`; as [`poll`]; not found when waiting for a condition
/// of a missing work.
pub(crate) async fn run(ctx: &Context, args: &WaitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let outcome = wait(ctx, args, out).await;
    report(ctx, args.results.results_path.as_deref(), &args.name, &args.consumer, outcome).await
}

/// The success message: `is applied` / `is available` / `is deleted` for a single work term,
/// else `meets <expression>`.
fn success_message(args: &WaitArgs, target: &Target) -> String {
    let what = match target {
        Target::Deleted => "is deleted".to_owned(),
        Target::Expression(Expr::Term(Term::Work(c))) => format!("is {}", c.to_ascii_lowercase()),
        other => format!("meets {}", other.describe()),
    };
    format!("resource bundle {} on consumer {} {what}", args.name, args.consumer)
}

/// `wait` without the results file.
async fn wait(ctx: &Context, args: &WaitArgs, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let target = Target::from_expr(crate::condition::parse(&args.condition)?);
    let rest = ctx.rest()?;
    let message = success_message(args, &target);
    let id = match rest.get_bundle_by_name(&ctx.source_id, &args.consumer, &args.name).await {
        Ok(b) => b.id,
        Err(e) if e.is_not_found() && target == Target::Deleted => {
            writeln!(out, "{message}")?;
            return Ok(Outcome::new(ResultStatus::Applied, message));
        }
        Err(e) => return Err(e.into()),
    };
    let w = Watched { rest: &rest, id, name: &args.name, consumer: &args.consumer };
    if args.watch {
        watch(&w, args, &target, out).await?;
    } else {
        poll(&w, &target, args.timeout, args.poll_interval, &mut std::io::stderr()).await?;
    }
    writeln!(out, "{message}")?;
    Ok(Outcome::new(ResultStatus::Applied, message))
}

/// `wait --watch`: polls as [`poll`], printing every state change to `out` as
/// `<time> <consumer>/<name> <state>` (then `<time> waiting for <item>` per awaited manifest
/// condition), and the final state once reached.
async fn watch(w: &Watched<'_>, args: &WaitArgs, target: &Target, out: &mut dyn Write) -> anyhow::Result<()> {
    let stamp = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let work = format!("{}/{}", args.consumer, args.name);
    let mut print = |p: &Pending| -> anyhow::Result<()> {
        let now = stamp();
        writeln!(out, "{now} {work} {}", p.state)?;
        for item in &p.awaiting {
            writeln!(out, "{now} waiting for {item}")?;
        }
        Ok(out.flush()?)
    };
    let done = poll_with(w, target, args.timeout, args.poll_interval, &mut print).await?;
    let state = done.map_or_else(|| "deleted".to_owned(), |b| state_text(&b, &target.expr()));
    writeln!(out, "{} {work} {state}", stamp())?;
    Ok(())
}
