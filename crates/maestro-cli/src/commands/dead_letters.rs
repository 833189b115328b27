//! `dead-letters list|get|delete` (docs/security.md, "Dead letters").

use std::io::Write;

use maestro_client::DeadLetter;
use serde_json::json;

use crate::cli::DeadLetterCommand;
use crate::commands::Context;
use crate::output::{age, print_table, structured, table};

/// Largest page the server sends.
const SERVER_PAGE: u32 = 500;

/// Runs a `dead-letters` subcommand.
///
/// # Errors
/// Not found, forbidden (the REST role admin is needed), connection errors.
pub(crate) async fn run(ctx: &Context, cmd: &DeadLetterCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let rest = ctx.rest()?;
    match cmd {
        DeadLetterCommand::List { consumer, limit } => {
            let (mut items, mut total, mut page) = (Vec::new(), 0, 1);
            while (items.len() as u32) < *limit {
                let size = (*limit - items.len() as u32).min(SERVER_PAGE);
                let list = rest.list_dead_letters(consumer.as_deref(), page, size).await?;
                total = list.total;
                let n = list.items.len();
                items.extend(list.items);
                if n < size as usize {
                    break;
                }
                page += 1;
            }
            let list = json!({"kind": "DeadLetterList", "size": items.len(), "total": total, "items": items});
            if !structured(out, ctx.output, &list)? {
                print_list(out, &items, total)?;
            }
        }
        DeadLetterCommand::Get { id } => {
            let d = rest.get_dead_letter(id).await?;
            if !structured(out, ctx.output, &d)? {
                print_one(out, &d)?;
            }
        }
        DeadLetterCommand::Delete { id } => {
            rest.delete_dead_letter(id).await?;
            if !structured(out, ctx.output, &json!({"id": id, "deleted": true}))? {
                writeln!(out, "dead letter {id} deleted")?;
            }
        }
    }
    Ok(())
}

fn print_list(out: &mut dyn Write, items: &[DeadLetter], total: u64) -> std::io::Result<()> {
    if items.is_empty() {
        return writeln!(out, "No dead letters found.");
    }
    let now = chrono::Utc::now();
    let mut t = table(&["ID", "AGE", "ORIGIN", "BROKER", "CONSUMER", "RESOURCE", "REASON"]);
    for d in items {
        let cell = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let reason: String = d.reason.chars().take(80).collect();
        t.add_row(vec![
            d.id.clone(),
            age(d.received_at, now),
            d.origin.clone(),
            d.broker.clone(),
            cell(&d.consumer_name),
            cell(&d.resource_id),
            reason,
        ]);
    }
    print_table(out, &t)?;
    if total > items.len() as u64 {
        writeln!(out, "({} of {total} shown; use --limit for more)", items.len())?;
    }
    Ok(())
}

fn print_one(out: &mut dyn Write, d: &DeadLetter) -> anyhow::Result<()> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let when = d.received_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "<unknown>".into());
    writeln!(out, "ID:          {}", d.id)?;
    writeln!(out, "Received:    {when}")?;
    writeln!(out, "Origin:      {}", d.origin)?;
    writeln!(out, "Broker:      {}", d.broker)?;
    writeln!(out, "Consumer:    {}", opt(&d.consumer_name))?;
    writeln!(out, "Resource:    {}", opt(&d.resource_id))?;
    writeln!(out, "Event id:    {}", opt(&d.event_id))?;
    writeln!(out, "Event type:  {}", opt(&d.event_type))?;
    writeln!(out, "Reason:      {}", d.reason)?;
    match &d.event {
        Some(event) => {
            writeln!(out, "Event ({} bytes):\n{}", d.event_bytes, serde_json::to_string_pretty(event)?)?
        }
        None => writeln!(out, "Event:       not kept ({} bytes, over 64 KiB)", d.event_bytes)?,
    }
    Ok(())
}
