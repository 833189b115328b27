//! `apply`.

use std::io::Write;

use maestro_client::{ApplyOptions, ManifestWorkInput, manifestwork, resource_id};
use serde_json::json;

use crate::cli::ApplyArgs;
use crate::commands::wait::{Target, Watched, poll};
use crate::commands::{Context, Outcome, report};
use crate::output::structured;
use crate::results::ResultStatus;

/// Runs `apply`, then writes the `--results-path` file (not with `--dry-run`).
///
/// # Errors
/// Manifest file errors, connection and server errors, and `--watch` failures/timeouts.
pub(crate) async fn run(ctx: &Context, args: &ApplyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let work = manifestwork::read(&args.manifest_file, args.name.as_deref());
    if args.dry_run {
        return dry_run(ctx, args, &work?, out);
    }
    let name = match &work {
        Ok(w) => w.name.clone(),
        Err(_) => args.name.clone().unwrap_or_default(),
    };
    let outcome = match work {
        Ok(work) => apply(ctx, args, &work, out).await,
        Err(e) => Err(e.into()),
    };
    report(ctx, args.results.results_path.as_deref(), &name, &args.consumer, outcome).await
}

/// `apply --dry-run`: prints the work that would be published.
fn dry_run(
    ctx: &Context,
    args: &ApplyArgs,
    work: &ManifestWorkInput,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let id = resource_id(&ctx.source_id, &args.consumer, &work.name);
    let would = json!({
        "dryRun": true, "id": id, "name": work.name, "consumer": args.consumer, "source": ctx.source_id,
        "metadata": work.metadata(&args.consumer, &id), "bundle": work.bundle,
    });
    if !structured(out, ctx.output, &would)? {
        writeln!(
            out,
            "resource bundle {} ({id}) would be applied on consumer {} with {} manifest(s) (dry run: nothing sent)",
            work.name,
            args.consumer,
            work.bundle.manifests.len()
        )?;
    }
    Ok(())
}

/// Publishes the work and, with `--watch`, waits for Applied and Available.
async fn apply(
    ctx: &Context,
    args: &ApplyArgs,
    work: &ManifestWorkInput,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let client = ctx.source().await?;
    let options = ApplyOptions {
        manager: args.manager.clone(),
        merge: args.merge,
        force: args.force,
        ..Default::default()
    };
    let outcome = client.apply_with(&args.consumer, work, &options).await?;
    let verb = match (options.merge, outcome.created) {
        (true, true) => "created (merge apply)",
        (true, false) => "merged",
        (false, true) => "created",
        (false, false) => "updated",
    };
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
    let message =
        format!("resource bundle {} {verb} on consumer {} at version {version}", work.name, args.consumer);
    let result = match &bundle {
        Some(b) => Outcome::new(
            ResultStatus::Applied,
            format!("{message}; applied and available at version {}", b.version),
        ),
        None => Outcome::new(ResultStatus::InProgress, format!("{message}; not waited for (no --watch)")),
    };
    if structured(out, ctx.output, &summary)? {
        return Ok(result);
    }
    writeln!(
        out,
        "resource bundle {} ({}) {verb} on consumer {} at version {version}",
        work.name, outcome.resource_id, args.consumer
    )?;
    if let Some(b) = bundle {
        writeln!(out, "resource bundle {} is applied and available at version {}", work.name, b.version)?;
    }
    Ok(result)
}
