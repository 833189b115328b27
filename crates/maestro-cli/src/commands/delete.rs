//! `delete`: one work, or every work of a consumer (`--all`).

use std::io::Write;

use maestro_client::{BundleFilter, ResourceBundle, SourceClient, resource_id};
use serde_json::json;

use crate::cli::DeleteArgs;
use crate::commands::wait::{Target, Watched, poll};
use crate::commands::{Context, Outcome, report};
use crate::output::structured;
use crate::results::ResultStatus;

/// Runs `delete`, then writes the `--results-path` file (not with `--dry-run`). A work that
/// does not exist is a warning on stderr, not an error, so retried Jobs succeed.
///
/// # Errors
/// Connection and server errors, and `--watch` timeouts.
pub(crate) async fn run(ctx: &Context, args: &DeleteArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = args.results.results_path.as_deref();
    match (&args.name, args.dry_run) {
        (Some(name), true) => dry_run_one(ctx, args, name, out),
        (Some(name), false) => {
            let outcome = delete_one(ctx, args, name, out).await;
            report(ctx, path, name, &args.consumer, outcome).await
        }
        (None, true) => {
            let bundles = ctx.rest()?.all_bundles(&all_filter(ctx, args)).await?;
            print_targets(ctx, args, &bundles, out)
        }
        (None, false) => {
            let outcome = delete_all(ctx, args, out).await;
            report(ctx, path, "", &args.consumer, outcome).await
        }
    }
}

/// `delete --dry-run --name`: prints the work that would be deleted.
fn dry_run_one(ctx: &Context, args: &DeleteArgs, name: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let id = resource_id(&ctx.source_id, &args.consumer, name);
    let would =
        json!({"dryRun": true, "id": id, "name": name, "consumer": args.consumer, "source": ctx.source_id});
    if !structured(out, ctx.output, &would)? {
        writeln!(
            out,
            "resource bundle {name} ({id}) on consumer {} would be deleted (dry run: nothing sent)",
            args.consumer
        )?;
    }
    Ok(())
}

/// Deletes one work (waiting for it to be gone with `--watch`).
async fn delete_one(
    ctx: &Context,
    args: &DeleteArgs,
    name: &str,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let client = ctx.source().await?;
    let id = match client.delete(&args.consumer, name).await {
        Ok(outcome) => outcome.resource_id,
        Err(e) if e.is_not_found() => {
            let message =
                format!("resource bundle {name} on consumer {} not found; nothing to delete", args.consumer);
            eprintln!("warning: {message}");
            let id = client.resource_id(&args.consumer, name);
            structured(
                out,
                ctx.output,
                &json!({"id": id, "name": name, "consumer": args.consumer, "state": "absent"}),
            )?;
            return Ok(Outcome::new(ResultStatus::Applied, message));
        }
        Err(e) => return Err(e.into()),
    };
    if args.watch {
        eprintln!("deletion of resource bundle {name} ({id}) requested");
        wait_gone(&client, args, &id, name).await?;
    }
    let state = if args.watch { "deleted" } else { "deleting" };
    let message = if args.watch {
        format!("resource bundle {name} ({id}) deleted from consumer {}", args.consumer)
    } else {
        format!("resource bundle {name} ({id}) marked for deletion on consumer {}", args.consumer)
    };
    if !structured(
        out,
        ctx.output,
        &json!({"id": id, "name": name, "consumer": args.consumer, "state": state}),
    )? {
        writeln!(out, "{message}")?;
    }
    Ok(Outcome::new(ResultStatus::Applied, message))
}

/// Polls until bundle `id` is gone.
async fn wait_gone(client: &SourceClient, args: &DeleteArgs, id: &str, name: &str) -> anyhow::Result<()> {
    let w = Watched { rest: client.rest(), id: id.to_owned(), name, consumer: &args.consumer };
    poll(&w, &Target::Deleted, args.timeout, args.poll_interval, &mut std::io::stderr()).await?;
    Ok(())
}

/// The works `--all` deletes: the consumer's, of this source unless `--any-source`.
fn all_filter(ctx: &Context, args: &DeleteArgs) -> BundleFilter {
    BundleFilter {
        consumer: Some(args.consumer.clone()),
        source: (!args.any_source).then(|| ctx.source_id.clone()),
        ..Default::default()
    }
}

/// `delete --all --dry-run`: prints the works that would be deleted.
fn print_targets(
    ctx: &Context,
    args: &DeleteArgs,
    bundles: &[ResourceBundle],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let items: Vec<_> =
        bundles.iter().map(|b| json!({"id": b.id, "name": b.name, "consumer": b.consumer_name})).collect();
    if !structured(out, ctx.output, &json!({"dryRun": true, "items": items}))? {
        for b in bundles {
            writeln!(
                out,
                "resource bundle {} ({}) on consumer {} would be deleted",
                b.name, b.id, args.consumer
            )?;
        }
        writeln!(out, "{} resource bundle(s) would be deleted (dry run: nothing sent)", bundles.len())?;
    }
    Ok(())
}

/// `delete --all`: this source's works through gRPC, other sources' (`--any-source`) through
/// REST; with `--watch`, waits until each is gone.
async fn delete_all(ctx: &Context, args: &DeleteArgs, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let client = ctx.source().await?;
    let bundles = client.rest().all_bundles(&all_filter(ctx, args)).await?;
    let mut deleted = Vec::new();
    for b in &bundles {
        if b.id == client.resource_id(&args.consumer, &b.name) {
            match client.delete(&args.consumer, &b.name).await {
                Err(e) if e.is_not_found() => continue,
                other => other?,
            };
        } else {
            match client.rest().delete_bundle(&b.id).await {
                Err(e) if e.is_not_found() => continue,
                other => other?,
            }
        }
        deleted.push(b);
    }
    if args.watch {
        for b in &deleted {
            wait_gone(&client, args, &b.id, &b.name).await?;
        }
    }
    let verb = if args.watch { "deleted" } else { "marked for deletion" };
    let message = format!("{} resource bundle(s) {verb} on consumer {}", deleted.len(), args.consumer);
    let items: Vec<_> = deleted.iter().map(|b| json!({"id": b.id, "name": b.name})).collect();
    if !structured(out, ctx.output, &json!({"consumer": args.consumer, "state": verb, "items": items}))? {
        writeln!(out, "{message}")?;
    }
    Ok(Outcome::new(ResultStatus::Applied, message))
}
