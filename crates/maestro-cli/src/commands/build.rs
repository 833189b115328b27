//! `build` (not implemented yet).

use std::io::Write;

use crate::cli::BuildArgs;
use crate::commands::Context;

/// Runs `build`.
///
/// # Errors
/// Always, for now.
pub(crate) async fn run(_ctx: &Context, _args: &BuildArgs, _out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::bail!("build is not implemented yet")
}
