//! `wait`, and the polling loop behind `apply --watch` and `delete --watch`.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use maestro_client::{ClientError, ResourceBundle, RestClient};
use tokio::time::Instant;

use crate::cli::WaitArgs;
use crate::commands::{Context, Outcome, report};
use crate::results::ResultStatus;

/// What to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// All these work conditions True at the current version.
    Conditions(Vec<&'static str>),
    /// The bundle is gone (REST 404).
    Deleted,
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Conditions(c) => format!("{} at the current version", c.join(" and ")),
            Target::Deleted => "deletion".into(),
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

enum Step {
    Done(Option<Box<ResourceBundle>>),
    Pending(String),
}

fn evaluate(w: &Watched<'_>, target: &Target, found: Option<ResourceBundle>) -> anyhow::Result<Step> {
    let Some(b) = found else {
        return match target {
            Target::Deleted => Ok(Step::Done(None)),
            Target::Conditions(_) => {
                bail!("resource bundle {:?} on consumer {:?} no longer exists", w.name, w.consumer)
            }
        };
    };
    let state = format!(
        "version {}{}: {}",
        b.version,
        if b.is_deleting() { ", deleting" } else { "" },
        b.condition_summary()
    );
    let Target::Conditions(conds) = target else { return Ok(Step::Pending(state)) };
    if b.is_deleting() {
        bail!("resource bundle {:?} on consumer {:?} is being deleted", w.name, w.consumer);
    }
    if b.is_true_at_current_version("Degraded") {
        bail!("resource bundle {:?} on consumer {:?} is degraded: {state}", w.name, w.consumer);
    }
    if conds.iter().all(|c| b.is_true_at_current_version(c)) {
        return Ok(Step::Done(Some(Box::new(b))));
    }
    Ok(Step::Pending(state))
}

/// Polls every `interval` until `target` is reached, printing each new state to `progress`.
///
/// # Errors
/// A timeout naming the last state; non-transient REST errors; a failure (bundle deleted
/// while waiting for conditions, `Degraded`=True).
pub(crate) async fn poll(
    w: &Watched<'_>,
    target: &Target,
    timeout: Duration,
    interval: Duration,
    progress: &mut dyn Write,
) -> anyhow::Result<Option<ResourceBundle>> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("not yet observed");
    loop {
        match w.rest.find_bundle(&w.id).await {
            Ok(found) => match evaluate(w, target, found)? {
                Step::Done(b) => return Ok(b.map(|b| *b)),
                Step::Pending(state) if state != last => {
                    writeln!(progress, "waiting for {}: {state}", w.name)?;
                    last = state;
                }
                Step::Pending(_) => {}
            },
            Err(e) if e.is_transient() => last = format!("last error: {e}"),
            Err(e) => return Err(e.into()),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ClientError::Timeout {
                after: timeout,
                what: format!(
                    "resource bundle {:?} on consumer {:?} to reach {} (last state: {last})",
                    w.name,
                    w.consumer,
                    target.describe()
                ),
            }
            .into());
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
    }
}

/// Runs `wait`, then writes the `--results-path` file.
///
/// # Errors
/// As [`poll`]; not found when waiting for a condition of a missing work.
pub(crate) async fn run(ctx: &Context, args: &WaitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let outcome = wait(ctx, args, out).await;
    report(ctx, args.results.results_path.as_deref(), &args.name, &args.consumer, outcome).await
}

async fn wait(ctx: &Context, args: &WaitArgs, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let rest = ctx.rest()?;
    let (target, what) = match args.condition.to_ascii_lowercase().as_str() {
        "applied" => (Target::Conditions(vec!["Applied"]), "applied"),
        "available" => (Target::Conditions(vec!["Available"]), "available"),
        "deleted" => (Target::Deleted, "deleted"),
        other => {
            return Err(crate::exit::CliError::usage(format!("unsupported condition {other:?}")).into());
        }
    };
    let message = format!("resource bundle {} on consumer {} is {what}", args.name, args.consumer);
    let id = match rest.get_bundle_by_name(&ctx.source_id, &args.consumer, &args.name).await {
        Ok(b) => b.id,
        Err(e) if e.is_not_found() && target == Target::Deleted => {
            writeln!(out, "{message}")?;
            return Ok(Outcome::new(ResultStatus::Applied, message));
        }
        Err(e) => return Err(e.into()),
    };
    let w = Watched { rest: &rest, id, name: &args.name, consumer: &args.consumer };
    poll(&w, &target, args.timeout, args.poll_interval, &mut std::io::stderr()).await?;
    writeln!(out, "{message}")?;
    Ok(Outcome::new(ResultStatus::Applied, message))
}
