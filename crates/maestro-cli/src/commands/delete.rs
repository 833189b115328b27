//! `delete`.

use std::io::Write;

use serde_json::json;

use crate::cli::DeleteArgs;
use crate::commands::Context;
use crate::commands::wait::{Target, Watched, poll};
use crate::output::structured;

/// Runs `delete`.
///
/// # Errors
/// Not found, connection and server errors, and `--watch` timeouts.
pub(crate) async fn run(ctx: &Context, args: &DeleteArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = ctx.source().await?;
    let outcome = client.delete(&args.consumer, &args.name).await?;
    if args.watch {
        let w = Watched {
            rest: client.rest(),
            id: outcome.resource_id.clone(),
            name: &args.name,
            consumer: &args.consumer,
        };
        eprintln!("deletion of resource bundle {} ({}) requested", args.name, outcome.resource_id);
        poll(&w, &Target::Deleted, args.timeout, args.poll_interval, &mut std::io::stderr()).await?;
    }
    let state = if args.watch { "deleted" } else { "deleting" };
    let summary =
        json!({"id": outcome.resource_id, "name": args.name, "consumer": args.consumer, "state": state});
    if structured(out, ctx.output, &summary)? {
        return Ok(());
    }
    if args.watch {
        writeln!(
            out,
            "resource bundle {} ({}) deleted from consumer {}",
            args.name, outcome.resource_id, args.consumer
        )?;
    } else {
        writeln!(
            out,
            "resource bundle {} ({}) marked for deletion on consumer {}",
            args.name, outcome.resource_id, args.consumer
        )?;
    }
    Ok(())
}
