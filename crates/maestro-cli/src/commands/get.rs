//! `get`.

use std::io::Write;

use anyhow::Context as _;
use maestro_client::types::{condition_text, describe_manifest};
use maestro_client::{BundleFilter, ResourceBundle};

use crate::cli::GetArgs;
use crate::commands::Context;
use crate::output::{age, print_table, structured, table};

/// Runs `get`.
///
/// # Errors
/// Not found, connection and server errors.
pub(crate) async fn run(ctx: &Context, args: &GetArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rest = ctx.rest()?;
    if let Some(search) = &args.search {
        return matching(ctx, search, out).await;
    }
    let bundle = match (&args.id, &args.name, &args.consumer) {
        (Some(id), _, _) => rest.get_bundle(id).await?,
        (None, Some(name), Some(consumer)) => rest.get_bundle_by_name(&ctx.source_id, consumer, name).await?,
        _ => anyhow::bail!("pass --id, or --name with --consumer"),
    };
    if structured(out, ctx.output, &bundle)? {
        return Ok(());
    }
    describe(&bundle, out).context("writing output")
}

/// `get --search`: every matching bundle (one object, or a list when several match).
async fn matching(ctx: &Context, search: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let filter = BundleFilter { search: Some(search.to_owned()), ..Default::default() };
    let bundles = ctx.rest()?.all_bundles(&filter).await?;
    anyhow::ensure!(!bundles.is_empty(), "no resource bundle matches --search {search:?}");
    let shown = match bundles.as_slice() {
        [one] => serde_json::to_value(one)?,
        all => {
            serde_json::json!({"kind": "ResourceBundleList", "page": 1, "size": all.len(), "total": all.len(), "items": all})
        }
    };
    if structured(out, ctx.output, &shown)? {
        return Ok(());
    }
    for (i, b) in bundles.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        describe(b, out).context("writing output")?;
    }
    Ok(())
}

fn describe(b: &ResourceBundle, out: &mut dyn Write) -> std::io::Result<()> {
    let now = chrono::Utc::now();
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(|| "-".to_owned(), |t| format!("{} ({} ago)", t.to_rfc3339(), age(Some(t), now)))
    };
    writeln!(out, "Name:       {}", b.name)?;
    writeln!(out, "ID:         {}", b.id)?;
    writeln!(out, "Consumer:   {}", b.consumer_name)?;
    writeln!(out, "Version:    {}", b.version)?;
    writeln!(out, "Created:    {}", when(b.created_at))?;
    writeln!(out, "Deleting:   {}", if b.is_deleting() { when(b.deleted_at) } else { "no".into() })?;
    let labels: Vec<String> = b.labels().iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(out, "Labels:     {}", if labels.is_empty() { "<none>".into() } else { labels.join(",") })?;
    writeln!(out, "Manifests:  {}", b.manifests.len())?;
    let Some(status) = &b.status else {
        return writeln!(out, "Status:     not reported yet");
    };
    let current = if b.status_is_current() { "current" } else { "stale" };
    writeln!(out, "Status:     observed version {} ({current})", status.observed_version)?;
    writeln!(out, "\nConditions:")?;
    let mut t = table(&["TYPE", "STATUS", "REASON", "MESSAGE", "SINCE"]);
    for c in &status.conditions {
        t.add_row(vec![
            c.kind.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.last_transition_time.clone(),
        ]);
    }
    print_table(out, &t)?;
    if !status.resource_status.is_empty() {
        writeln!(out, "\nResources:")?;
        let mut t = table(&["#", "RESOURCE", "CONDITIONS"]);
        for mc in &status.resource_status {
            let conds: Vec<String> = mc.conditions.iter().map(condition_text).collect();
            t.add_row(vec![mc.resource_meta.ordinal.to_string(), describe_manifest(mc), conds.join(", ")]);
        }
        print_table(out, &t)?;
    }
    let feedback = b.feedback();
    if !feedback.is_empty() {
        writeln!(out, "\nFeedback:")?;
        let mut t = table(&["RESOURCE", "NAME", "VALUE"]);
        for f in feedback {
            t.add_row(vec![f.resource, f.name, f.value]);
        }
        print_table(out, &t)?;
    }
    Ok(())
}
