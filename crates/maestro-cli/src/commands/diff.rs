//! `diff` (not implemented yet).

use std::io::Write;

use crate::cli::DiffArgs;
use crate::commands::Context;

/// Runs `diff`.
///
/// # Errors
/// Always, for now.
pub(crate) async fn run(_ctx: &Context, _args: &DiffArgs, _out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::bail!("diff is not implemented yet")
}
