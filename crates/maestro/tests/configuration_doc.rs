//! docs/configuration.md lists every flag of every `maestro` command with its environment
//! variable, default and aliases (Go Maestro's names among them), generated from the CLI
//! definition itself so it cannot drift: this test fails when the file differs from what the
//! CLI says, and `UPDATE_CONFIGURATION_DOC=1 cargo test -p maestro --test configuration_doc`
//! writes it.

use std::fmt::Write as _;

use clap::CommandFactory;

/// One table row per argument of `cmd`.
fn rows(out: &mut String, cmd: &clap::Command) {
    out.push_str("| flag | env | default | also | meaning |\n|---|---|---|---|---|\n");
    for arg in
        cmd.get_arguments().filter(|a| !a.is_hide_set() && a.get_id() != "help" && a.get_id() != "version")
    {
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(long), Some(short)) => format!("`-{short}`, `--{long}`"),
            (Some(long), None) => format!("`--{long}`"),
            (None, Some(short)) => format!("`-{short}`"),
            (None, None) => format!("`<{}>`", arg.get_id()),
        };
        let env = arg.get_env().map(|e| format!("`{}`", e.to_string_lossy())).unwrap_or_default();
        let default: Vec<String> =
            arg.get_default_values().iter().map(|v| format!("`{}`", v.to_string_lossy())).collect();
        let aliases: Vec<String> =
            arg.get_all_aliases().unwrap_or_default().iter().map(|a| format!("`--{a}`")).collect();
        let help = arg.get_long_help().or_else(|| arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
        let help = help.replace('\n', " ").replace('|', "\\|");
        let _ =
            writeln!(out, "| {flag} | {env} | {} | {} | {help} |", default.join(", "), aliases.join(", "));
    }
}

/// The whole document.
fn render() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Every flag of every `maestro` command, with its environment variable, default and other \
         names (Go Maestro's flag names are accepted as written). Generated from the CLI by \
         `crates/maestro/tests/configuration_doc.rs`; do not edit by hand \
         (`UPDATE_CONFIGURATION_DOC=1 cargo test -p maestro --test configuration_doc`). How the \
         settings fit together: docs/operations.md §2.\n",
    );
    let root = maestro::cli::Cli::command();
    let _ = writeln!(out, "\n## `maestro` (every command)\n");
    rows(&mut out, &root);
    let mut stack: Vec<(String, clap::Command)> =
        root.get_subcommands().map(|c| (format!("maestro {}", c.get_name()), c.clone())).collect();
    stack.reverse();
    while let Some((path, cmd)) = stack.pop() {
        let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
        let _ = writeln!(out, "\n## `{path}`\n\n{}\n", about.replace('\n', " "));
        let mut subs: Vec<(String, clap::Command)> =
            cmd.get_subcommands().map(|c| (format!("{path} {}", c.get_name()), c.clone())).collect();
        if subs.is_empty() || cmd.get_arguments().any(|a| a.get_id() != "help") {
            rows(&mut out, &cmd);
        }
        subs.reverse();
        stack.extend(subs);
    }
    out
}

#[test]
fn configuration_doc_lists_every_flag() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let want = render();
    if std::env::var_os("UPDATE_CONFIGURATION_DOC").is_some() {
        std::fs::write(&path, &want).expect("write docs/configuration.md");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/configuration.md is out of date: run UPDATE_CONFIGURATION_DOC=1 cargo test -p maestro --test configuration_doc"
    );
    for flag in [
        "--db-host-file",
        "--message-broker-type",
        "--metrics-server-bindport",
        "--health-check-server-bindport",
    ] {
        assert!(want.contains(flag), "{flag} is listed");
    }
}
