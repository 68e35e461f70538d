//! `fm eval`: how good a set of samples is, judged against a target.

use anyhow::{Context, Result};
use crate::quality::W2Args;
use fm_dist::parse_target;
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Samples to judge: a .npy file of shape N×D (float32 or float64), from fm or from numpy.
    #[arg(long)]
    samples: PathBuf,
    /// The distribution they should follow (see `fm targets`).
    #[arg(long, default_value = "gmm3")]
    target: String,
    #[command(flatten)]
    w2: W2Args,
    /// Seed of the fresh true samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let x = fm_dist::io::read_npy(&args.samples)?;
    anyhow::ensure!(x.iter().all(|v| v.is_finite()), "{}: samples hold NaN or infinite values", args.samples.display());
    let target = parse_target(&args.target)?;
    let q = args.w2.measure(target.as_ref(), x.view(), &mut StdRng::seed_from_u64(args.seed))
        .with_context(|| format!("cannot judge {}", args.samples.display()))?;
    println!("quality of {} ({} samples) against {}:\n{q}", args.samples.display(), x.nrows(), target.name());
    Ok(())
}
