//! `fm inspect`: what a checkpoint holds.

use crate::config::checkpoint_or_run;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The checkpoint (.safetensors from fm or PyTorch, or a PyTorch .pth) [default: the run's, with --config].
    checkpoint: Option<PathBuf>,
    /// The checkpoint, as the other commands take it (the same as giving it plainly).
    #[arg(long = "checkpoint", value_name = "CHECKPOINT", conflicts_with = "checkpoint")]
    checkpoint_flag: Option<PathBuf>,
    /// A run folder's config.toml: inspect that run's model.safetensors.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    foreign: crate::config::ForeignModelArgs,
}

pub fn inspect(args: InspectArgs) -> Result<()> {
    let path = checkpoint_or_run(args.checkpoint.as_deref().or(args.checkpoint_flag.as_deref()), args.config.as_deref(), "a CHECKPOINT")?;
    let run = args.config.as_deref().map(crate::config::RunConfig::read).transpose()?;
    fm_run::inspect(&path, &args.foreign.options(run.as_ref()))?.iter().for_each(|line| println!("{line}"));
    Ok(())
}
