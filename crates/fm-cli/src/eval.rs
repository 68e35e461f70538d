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
    /// A run file (e.g. a run's config.toml): its target and `[eval]` section are the defaults here.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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

pub fn eval(args: EvalArgs, m: &clap::ArgMatches) -> Result<()> {
    let run = args.config.as_deref().map(crate::config::RunConfig::read).transpose()?;
    let mut cfg = run.as_ref().map_or_else(EvalConfig::default, |r| r.eval.clone());
    args.eval.apply(m, &mut cfg);
    if crate::config::given(m, "kl_steps") {
        cfg.likelihood.steps = args.kl_steps;
    }
    let model = args.checkpoint.as_deref().map(|c| crate::sample::load_model(c, "auto", None)).transpose()?;
    let meta_target = args.checkpoint.as_deref().map(|c| fm_model::checkpoint::load_any(c, tch::Device::Cpu)).transpose()?.and_then(|(_, m)| m.get("target").cloned());
    let spec = args.target.clone().or_else(|| run.as_ref().map(|r| r.target.clone())).or(meta_target).unwrap_or_else(|| "gmm3".into());
    let target = parse_target(&spec).context("target")?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    if let Some(path) = &args.samples {
        let x = fm_dist::io::read_points(path)?;
        anyhow::ensure!(x.iter().all(|v| v.is_finite()), "{}: samples hold NaN or infinite values", path.display());
        let q = cfg.measure(target.as_ref(), x.view(), &mut rng).with_context(|| format!("cannot judge {}", path.display()))?;
        println!("quality of {} ({} samples) against {}:\n{q}", path.display(), x.nrows(), target.name());
    }
    if let (Some((mlp, source)), Some(path)) = (&model, &args.checkpoint) {
        let kl = fm_train::kl_estimate(target.as_ref(), mlp, source.as_ref(), cfg.kl_points, &cfg.likelihood, &mut rng).with_context(|| format!("cannot judge {}", path.display()))?;
        println!("likelihood of {} against {}:\n  {kl}", path.display(), target.name());
    }
    Ok(())
}
