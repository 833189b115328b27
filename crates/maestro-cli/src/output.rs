//! Rendering: JSON/YAML serialization, tables and ages.

use std::io::Write;

use chrono::{DateTime, Utc};
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::cli::OutputFormat;

/// Writes `value` as JSON or YAML. Returns false for [`OutputFormat::Table`] (the caller
/// renders a table instead).
///
/// # Errors
/// Serialization and I/O errors.
pub(crate) fn structured<T: Serialize>(
    out: &mut dyn Write,
    format: OutputFormat,
    value: &T,
) -> anyhow::Result<bool> {
    match format {
        OutputFormat::Table | OutputFormat::Name | OutputFormat::Wide => return Ok(false),
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
        OutputFormat::Yaml => write!(out, "{}", serde_yaml_ng::to_string(value)?)?,
    }
    Ok(true)
}

/// A borderless, kubectl-like table with the given header.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    t
}

/// Writes a table, trimming the padding comfy-table adds at line ends.
pub(crate) fn print_table(out: &mut dyn Write, t: &Table) -> std::io::Result<()> {
    for line in t.to_string().lines() {
        writeln!(out, "{}", line.trim_end().strip_prefix(' ').unwrap_or(line.trim_end()))?;
    }
    Ok(())
}

/// A short age: `45s`, `12m`, `5h`, `3d`; `<unknown>` without a time.
pub(crate) fn age(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(t) = t else { return "<unknown>".into() };
    let s = (now - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// `True`/`False`/`Unknown` for a condition, `-` when absent.
pub(crate) fn condition_cell(b: &maestro_client::ResourceBundle, ty: &str) -> String {
    match b.condition(ty) {
        Some(c) if b.status_is_current() => c.status.clone(),
        Some(c) => format!("{} (v{})", c.status, b.status.as_ref().map_or(0, |s| s.observed_version)),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ages() {
        let now = Utc.with_ymd_and_hms(2024, 3, 2, 0, 0, 0).single().expect("time");
        let at = |s: i64| Some(now - chrono::Duration::seconds(s));
        assert_eq!(age(at(5), now), "5s");
        assert_eq!(age(at(125), now), "2m");
        assert_eq!(age(at(7200), now), "2h");
        assert_eq!(age(at(86400 * 3), now), "3d");
        assert_eq!(age(None, now), "<unknown>");
    }

    #[test]
    fn tables_have_no_borders() {
        let mut t = table(&["NAME", "AGE"]);
        t.add_row(vec!["web", "5s"]);
        let mut out = Vec::new();
        print_table(&mut out, &t).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("NAME"), "{text:?}");
        assert!(text.contains("web"));
        assert!(!text.contains('|') && !text.contains('+'));
    }
}
