//! `fm export` / `fm import`: checkpoints across to PyTorch and back.

use crate::config::{checkpoint_or_run, ForeignModelArgs, RunConfig};
use crate::train::print_written;
use anyhow::Result;
use fm_model::checkpoint;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A run folder's config.toml: export that run's model.safetensors.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The fm checkpoint to convert [default: the run's, with --config].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The .pth file to write.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    foreign: ForeignModelArgs,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// A run file (e.g. a run's config.toml): its `[model]` activation is the default here.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A PyTorch state dict: torch.save(net.state_dict(), 'x.pth') or a .safetensors of it.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The fm checkpoint (.safetensors) to write.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    foreign: ForeignModelArgs,
}

pub fn export(args: ExportArgs) -> Result<()> {
    let src = checkpoint_or_run(args.checkpoint.as_deref(), args.config.as_deref(), "--checkpoint C")?;
    let run = args.config.as_deref().map(RunConfig::read).transpose()?;
    checkpoint::export_pth(&src, &args.out, &args.foreign.options(run.as_ref()))?;
    print_written(&[("checkpoint", &args.out)]);
    Ok(())
}

pub fn import(args: ImportArgs) -> Result<()> {
    let run = args.config.as_deref().map(RunConfig::read).transpose()?;
    checkpoint::import_pth(&args.checkpoint, &args.out, &args.foreign.options(run.as_ref()))?;
    print_written(&[("checkpoint", &args.out)]);
    Ok(())
}
