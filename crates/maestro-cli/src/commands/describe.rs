//! `describe` (not implemented yet).

use std::io::Write;

use crate::cli::DescribeArgs;
use crate::commands::Context;

/// Runs `describe`.
///
/// # Errors
/// Always, for now.
pub(crate) async fn run(_ctx: &Context, _args: &DescribeArgs, _out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::bail!("describe is not implemented yet")
}
