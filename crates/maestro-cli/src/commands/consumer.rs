//! `consumer list|create|get|delete|confirm-wipe`.

use std::collections::BTreeMap;
use std::io::Write;

use maestro_client::Consumer;
use serde_json::json;

use crate::cli::ConsumerCommand;
use crate::commands::Context;
use crate::output::{age, print_table, structured, table};

/// Runs a `consumer` subcommand.
///
/// # Errors
/// Not found, conflict (name taken), forbidden (delete while referenced), connection errors.
pub(crate) async fn run(ctx: &Context, cmd: &ConsumerCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let rest = ctx.rest()?;
    match cmd {
        ConsumerCommand::List => {
            let items = rest.all_consumers().await?;
            let list = json!({"kind": "ConsumerList", "page": 1, "size": items.len(), "total": items.len(), "items": items});
            if !structured(out, ctx.output, &list)? {
                print_consumers(out, &items)?;
            }
        }
        ConsumerCommand::Create { name, label } => {
            let labels: BTreeMap<String, String> = label.iter().cloned().collect();
            let c = rest.create_consumer(name, &labels).await?;
            if !structured(out, ctx.output, &c)? {
                writeln!(out, "consumer {} created (id {})", c.name, c.id)?;
            }
        }
        ConsumerCommand::Get { consumer } => {
            let c = rest.get_consumer(consumer).await?;
            if !structured(out, ctx.output, &c)? {
                print_consumers(out, std::slice::from_ref(&c))?;
            }
        }
        ConsumerCommand::Delete { consumer } => {
            let c = rest.get_consumer(consumer).await?;
            rest.delete_consumer(&c.id).await?;
            if !structured(out, ctx.output, &json!({"id": c.id, "name": c.name, "deleted": true}))? {
                writeln!(out, "consumer {} deleted (id {})", c.name, c.id)?;
            }
        }
        ConsumerCommand::ConfirmWipe { consumer, ttl } => {
            let c = rest.get_consumer(consumer).await?;
            let answer = rest.confirm_wipe(&c.id, *ttl).await?;
            if !structured(out, ctx.output, &answer)? {
                let until = answer["confirmed_until"].as_str().unwrap_or("?");
                writeln!(
                    out,
                    "wipe confirmed for consumer {} until {until}: its agent deletes the works it orphaned at its next spec resync",
                    c.name
                )?;
            }
        }
    }
    Ok(())
}

fn print_consumers(out: &mut dyn Write, items: &[Consumer]) -> std::io::Result<()> {
    if items.is_empty() {
        return writeln!(out, "No consumers found.");
    }
    let now = chrono::Utc::now();
    let mut t = table(&["NAME", "ID", "LABELS", "AGE"]);
    for c in items {
        let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        t.add_row(vec![c.name.clone(), c.id.clone(), labels.join(","), age(c.created_at, now)]);
    }
    print_table(out, &t)
}
