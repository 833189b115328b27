//! `apply`.

use std::io::Write;

use maestro_client::manifestwork;
use serde_json::json;

use crate::cli::ApplyArgs;
use crate::commands::Context;
use crate::commands::wait::{Target, Watched, poll};
use crate::output::structured;

/// Runs `apply`.
///
/// # Errors
/// Manifest file errors, connection and server errors, and `--watch` failures/timeouts.
pub(crate) async fn run(ctx: &Context, args: &ApplyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let work = manifestwork::read(&args.manifest_file, args.name.as_deref())?;
    let client = ctx.source().await?;
    let outcome = client.apply(&args.consumer, &work).await?;
    let verb = if outcome.created { "created" } else { "updated" };
    let version = outcome.version.map_or_else(|| "unknown".to_owned(), |v| v.to_string());
    let mut bundle = None;
    if args.watch {
        let w = Watched {
            rest: client.rest(),
            id: outcome.resource_id.clone(),
            name: &work.name,
            consumer: &args.consumer,
        };
        let target = Target::Conditions(vec!["Applied", "Available"]);
        eprintln!("resource bundle {} ({}) {verb} at version {version}", work.name, outcome.resource_id);
        bundle = poll(&w, &target, args.timeout, args.poll_interval, &mut std::io::stderr()).await?;
    }
    let summary = json!({
        "id": outcome.resource_id, "name": work.name, "consumer": args.consumer,
        "created": outcome.created, "version": bundle.as_ref().map(|b| b.version).or(outcome.version),
        "applied": bundle.as_ref().map(|b| b.is_true("Applied")),
        "available": bundle.as_ref().map(|b| b.is_true("Available")),
    });
    if structured(out, ctx.output, &summary)? {
        return Ok(());
    }
    writeln!(
        out,
        "resource bundle {} ({}) {verb} on consumer {} at version {version}",
        work.name, outcome.resource_id, args.consumer
    )?;
    if let Some(b) = bundle {
        writeln!(out, "resource bundle {} is applied and available at version {}", work.name, b.version)?;
    }
    Ok(())
}
