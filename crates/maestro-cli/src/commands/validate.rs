//! `validate` (not implemented yet).

use std::io::Write;

use crate::cli::ValidateArgs;
use crate::commands::Context;

/// Runs `validate`.
///
/// # Errors
/// Always, for now.
pub(crate) async fn run(_ctx: &Context, _args: &ValidateArgs, _out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::bail!("validate is not implemented yet")
}
