//! `list`.

use std::io::Write;

use maestro_client::BundleFilter;
use serde_json::json;

use crate::cli::ListArgs;
use crate::commands::Context;
use crate::output::{age, condition_cell, print_table, structured, table};

/// Runs `list`: a table of NAME, CONSUMER, VERSION, APPLIED, AVAILABLE, DELETING, AGE.
///
/// # Errors
/// Invalid filter values, connection and server errors.
pub(crate) async fn run(ctx: &Context, args: &ListArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let filter = BundleFilter {
        consumer: args.consumer.clone(),
        source: args.source.clone(),
        name: None,
        search: args.search.clone(),
    };
    let bundles = ctx.rest()?.all_bundles(&filter).await?;
    let list = json!({"kind": "ResourceBundleList", "page": 1, "size": bundles.len(), "total": bundles.len(), "items": bundles});
    if structured(out, ctx.output, &list)? {
        return Ok(());
    }
    if bundles.is_empty() {
        writeln!(out, "No resource bundles found.")?;
        return Ok(());
    }
    let now = chrono::Utc::now();
    let mut t = table(&["NAME", "CONSUMER", "VERSION", "APPLIED", "AVAILABLE", "DELETING", "AGE"]);
    for b in &bundles {
        t.add_row(vec![
            b.name.clone(),
            b.consumer_name.clone(),
            b.version.to_string(),
            condition_cell(b, "Applied"),
            condition_cell(b, "Available"),
            if b.is_deleting() { "yes".into() } else { "no".into() },
            age(b.created_at, now),
        ]);
    }
    print_table(out, &t)?;
    Ok(())
}
