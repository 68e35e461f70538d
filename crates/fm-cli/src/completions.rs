//! `fm completions SHELL`: a shell completion script, generated from the command definitions.

use anyhow::Result;
use clap_complete::Shell;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Writes the script for `cmd` (the whole `fm` command) to stdout. It is built in memory first:
/// clap_complete panics on a failed write, and a write error here is an `error:` line instead
/// (a reader that closes early ends the process quietly through SIGPIPE, see main).
pub fn completions(args: CompletionsArgs, cmd: &mut clap::Command) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, cmd, "fm", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(())
}
