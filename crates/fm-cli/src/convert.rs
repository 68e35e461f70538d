//! `fm export` / `fm import`: checkpoints across to PyTorch and back.

use crate::config::{checkpoint_or_run, override_given, RunConfig};
use crate::train::print_written;
use anyhow::Result;
use clap::ArgMatches;
use fm_model::checkpoint::{self, LoadOptions};
use fm_model::{Activation, MlpConfig};
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
    /// The network's activation where the file does not record it (a PyTorch state dict does not; the seed's is relu).
    #[arg(long, default_value_t = MlpConfig::default().activation)]
    activation: Activation,
}

pub fn export(args: ExportArgs) -> Result<()> {
    let src = checkpoint_or_run(args.checkpoint.as_deref(), args.config.as_deref(), "--checkpoint C")?;
    checkpoint::export_pth(&src, &args.out)?;
    print_written(&[("checkpoint", &args.out)]);
    Ok(())
}

pub fn import(args: ImportArgs, m: &ArgMatches) -> Result<()> {
    let run = args.config.as_deref().map(RunConfig::read).transpose()?;
    let mut opts = LoadOptions { activation: run.map_or(args.activation, |r| r.model.activation), ..LoadOptions::default() };
    override_given!(m, args, activation => opts.activation);
    checkpoint::import_pth(&args.checkpoint, &args.out, &opts)?;
    print_written(&[("checkpoint", &args.out)]);
    Ok(())
}
