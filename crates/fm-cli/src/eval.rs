//! `fm eval`: how good a set of samples is, judged against the seed's mixture.

use anyhow::{Context, Result};
use crate::quality::W2Args;
use fm_dist::GaussianMixture;
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Samples to judge: a .npy file of shape N×2 (float32 or float64), from fm or from numpy.
    #[arg(long)]
    samples: PathBuf,
    #[command(flatten)]
    w2: W2Args,
    /// Seed of the fresh true samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let x = fm_dist::io::read_npy(&args.samples)?;
    anyhow::ensure!(x.iter().all(|v| v.is_finite()), "{}: samples hold NaN or infinite values", args.samples.display());
    let gmm = GaussianMixture::seed();
    let q = args.w2.measure(&gmm, x.view(), &mut StdRng::seed_from_u64(args.seed))
        .with_context(|| format!("cannot judge {}", args.samples.display()))?;
    println!("quality of {} ({} samples) against the seed's mixture:\n{q}", args.samples.display(), x.nrows());
    Ok(())
}
