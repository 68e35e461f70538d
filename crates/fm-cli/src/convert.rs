//! `fm export` / `fm import`: checkpoints across to PyTorch and back.

use crate::train::print_written;
use anyhow::Result;
use fm_model::checkpoint::{self, LoadOptions};
use fm_model::{Activation, MlpConfig};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The fm checkpoint to convert.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The .pth file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// A PyTorch state dict: torch.save(net.state_dict(), 'x.pth') or a .safetensors of it.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The fm checkpoint (.safetensors) to write.
    #[arg(long)]
    out: PathBuf,
    /// The network's activation (the weights do not say; the seed's is relu).
    #[arg(long, default_value_t = MlpConfig::default().activation)]
    activation: Activation,
}

pub fn export(args: ExportArgs) -> Result<()> {
    checkpoint::export_pth(&args.checkpoint, &args.out)?;
    print_written(&[("checkpoint", &args.out)]);
    Ok(())
}

pub fn import(args: ImportArgs) -> Result<()> {
    checkpoint::import_pth(&args.checkpoint, &args.out, &LoadOptions { activation: args.activation, ..LoadOptions::default() })?;
    print_written(&[("checkpoint", &args.out)]);
    Ok(())
}
