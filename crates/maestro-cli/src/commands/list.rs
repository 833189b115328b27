//! `list`.

use std::io::Write;

use maestro_client::{BundleFilter, ResourceBundle};
use serde_json::json;

use crate::cli::{ListArgs, OutputFormat, WorkStatus};
use crate::commands::Context;
use crate::output::{age, condition_cell, print_table, structured, table};

/// The status of `b` for `list --status`: the first that holds of Deleting, Failed
/// (`Degraded`=True or `Applied`=False at the current version), Available, Applied, else
/// InProgress (no status yet, a stale one, or Applied not reported).
pub(crate) fn work_status(b: &ResourceBundle) -> WorkStatus {
    let at_current =
        |ty: &str, status: &str| b.status_is_current() && b.condition(ty).is_some_and(|c| c.status == status);
    if b.is_deleting() {
        WorkStatus::Deleting
    } else if at_current("Degraded", "True") || at_current("Applied", "False") {
        WorkStatus::Failed
    } else if at_current("Available", "True") {
        WorkStatus::Available
    } else if at_current("Applied", "True") {
        WorkStatus::Applied
    } else {
        WorkStatus::InProgress
    }
}

/// The name of `s` as the `--status` flag spells it.
fn status_name(s: WorkStatus) -> &'static str {
    match s {
        WorkStatus::Applied => "Applied",
        WorkStatus::Available => "Available",
        WorkStatus::Failed => "Failed",
        WorkStatus::InProgress => "InProgress",
        WorkStatus::Deleting => "Deleting",
    }
}

/// Runs `list`: a table of NAME, CONSUMER, VERSION, APPLIED, AVAILABLE, DELETING, AGE (`-o
/// wide` adds STATUS, SOURCE, ID, MANIFESTS; `-o name` prints `consumer/name` lines).
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
    let mut bundles = ctx.rest()?.all_bundles(&filter).await?;
    if let Some(want) = args.status {
        bundles.retain(|b| work_status(b) == want);
    }
    let list = json!({"kind": "ResourceBundleList", "page": 1, "size": bundles.len(), "total": bundles.len(), "items": bundles});
    if structured(out, ctx.output, &list)? {
        return Ok(());
    }
    if ctx.output == OutputFormat::Name {
        for b in &bundles {
            writeln!(out, "{}/{}", b.consumer_name, b.name)?;
        }
        return Ok(());
    }
    if bundles.is_empty() {
        writeln!(out, "No resource bundles found.")?;
        return Ok(());
    }
    print_table(out, &bundle_table(&bundles, ctx.output == OutputFormat::Wide))?;
    Ok(())
}

/// The `list` table; `wide` adds STATUS, SOURCE, ID and MANIFESTS.
fn bundle_table(bundles: &[ResourceBundle], wide: bool) -> comfy_table::Table {
    let mut header = vec!["NAME", "CONSUMER", "VERSION", "APPLIED", "AVAILABLE", "DELETING", "AGE"];
    if wide {
        header.extend(["STATUS", "SOURCE", "ID", "MANIFESTS"]);
    }
    let now = chrono::Utc::now();
    let mut t = table(&header);
    for b in bundles {
        let mut row = vec![
            b.name.clone(),
            b.consumer_name.clone(),
            b.version.to_string(),
            condition_cell(b, "Applied"),
            condition_cell(b, "Available"),
            if b.is_deleting() { "yes".into() } else { "no".into() },
            age(b.created_at, now),
        ];
        if wide {
            let source = b.extra.get("source").and_then(serde_json::Value::as_str).unwrap_or("-");
            row.extend([
                status_name(work_status(b)).to_owned(),
                source.to_owned(),
                b.id.clone(),
                b.manifests.len().to_string(),
            ]);
        }
        t.add_row(row);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(version: i64, deleting: bool, conditions: &[(&str, &str)]) -> ResourceBundle {
        let conds: Vec<_> = conditions.iter().map(|(t, s)| json!({"type": t, "status": s})).collect();
        let mut v =
            json!({"id": "i", "version": version, "status": {"ObservedVersion": 2, "conditions": conds}});
        if deleting {
            v["deleted_at"] = json!("2024-03-01T10:00:00Z");
        }
        serde_json::from_value(v).expect("bundle")
    }

    #[test]
    fn each_work_has_one_status() {
        let cases = [
            (bundle(2, false, &[]), WorkStatus::InProgress),
            (bundle(3, false, &[("Applied", "True"), ("Available", "True")]), WorkStatus::InProgress),
            (bundle(2, false, &[("Applied", "True")]), WorkStatus::Applied),
            (bundle(2, false, &[("Applied", "True"), ("Available", "True")]), WorkStatus::Available),
            (bundle(2, false, &[("Applied", "False")]), WorkStatus::Failed),
            (bundle(2, false, &[("Available", "True"), ("Degraded", "True")]), WorkStatus::Failed),
            (bundle(2, true, &[("Applied", "True")]), WorkStatus::Deleting),
        ];
        for (b, want) in cases {
            assert_eq!(work_status(&b), want, "{b:?}");
        }
        let mut none = bundle(1, false, &[]);
        none.status = None;
        assert_eq!(work_status(&none), WorkStatus::InProgress);
    }
}
