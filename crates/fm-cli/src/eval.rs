//! `fm eval`: how good samples, or a model, are, judged against a target.

use crate::config::EvalConfig;
use crate::quality::EvalFlags;
use anyhow::{Context, Result};
use fm_dist::parse_target;
use fm_train::LikelihoodConfig;
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(true).args(["samples", "checkpoint"]))]
pub struct EvalArgs {
    /// Samples to judge: a .npy (float32/float64, N×D) or .csv file, from fm, numpy or anywhere.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// A model to judge by its exact likelihood: KL(target ‖ model) on fresh target samples.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The distribution they should follow [default: the checkpoint's target, else gmm3].
    #[arg(long)]
    target: Option<String>,
    #[command(flatten)]
    eval: EvalFlags,
    /// Integration steps of the likelihood ODE (RK4, from t = 1 to 0).
    #[arg(long, default_value_t = LikelihoodConfig::default().steps)]
    kl_steps: usize,
    /// Seed of the fresh true samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let model = args.checkpoint.as_deref().map(|c| crate::sample::load_model(c, "auto", None)).transpose()?;
    let meta_target = args.checkpoint.as_deref().map(|c| fm_model::checkpoint::load_any(c, tch::Device::Cpu)).transpose()?.and_then(|(_, m)| m.get("target").cloned());
    let spec = args.target.clone().or(meta_target).unwrap_or_else(|| "gmm3".into());
    let target = parse_target(&spec).context("target")?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    if let Some(path) = &args.samples {
        let x = fm_dist::io::read_points(path)?;
        anyhow::ensure!(x.iter().all(|v| v.is_finite()), "{}: samples hold NaN or infinite values", path.display());
        let cfg = EvalConfig { w2_points: args.eval.w2_points, w2_draws: args.eval.w2_draws, ..EvalConfig::default() };
        let q = cfg.measure(target.as_ref(), x.view(), &mut rng).with_context(|| format!("cannot judge {}", path.display()))?;
        println!("quality of {} ({} samples) against {}:\n{q}", path.display(), x.nrows(), target.name());
    }
    if let (Some((mlp, source)), Some(path)) = (&model, &args.checkpoint) {
        let lik = LikelihoodConfig { steps: args.kl_steps, ..LikelihoodConfig::default() };
        let kl = fm_train::kl_estimate(target.as_ref(), mlp, source.as_ref(), args.eval.kl_points, &lik, &mut rng).with_context(|| format!("cannot judge {}", path.display()))?;
        println!("likelihood of {} against {}:\n  {kl}", path.display(), target.name());
    }
    Ok(())
}
