//! `watch` (not implemented yet).

use std::io::Write;

use crate::cli::WatchArgs;
use crate::commands::Context;

/// Runs `watch`.
///
/// # Errors
/// Always, for now.
pub(crate) async fn run(_ctx: &Context, _args: &WatchArgs, _out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::bail!("watch is not implemented yet")
}
