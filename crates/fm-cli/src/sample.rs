//! `fm sample`: new samples from a checkpoint.

use anyhow::Result;
use fm_dist::StandardNormal;
use fm_model::{checkpoint, parse_device};
use fm_ode::Method;
use fm_train::SampleConfig;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// Checkpoint (.safetensors) written by `fm run` or exported from PyTorch.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Output .npy file [default: samples-METHOD-STEPS.npy beside the checkpoint].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to compute: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Samples to generate.
    #[arg(long, default_value_t = SampleConfig::default().n_samples)]
    samples: usize,
    /// Integration steps from t = 0 to 1.
    #[arg(long, default_value_t = SampleConfig::default().steps)]
    steps: usize,
    /// Integration method (euler, midpoint, heun, rk4).
    #[arg(long, default_value_t = SampleConfig::default().method)]
    method: Method,
    /// Seed of the source draws.
    #[arg(long, default_value_t = SampleConfig::default().seed)]
    seed: u64,
}

pub fn sample(args: SampleArgs) -> Result<()> {
    let cfg = SampleConfig { n_samples: args.samples, steps: args.steps, method: args.method, seed: args.seed, ..SampleConfig::default() };
    cfg.validate()?;
    let device = parse_device(&args.device)?;
    let (mlp, _) = checkpoint::load(&args.checkpoint, device)?;
    let out = args.out.unwrap_or_else(|| args.checkpoint.with_file_name(format!("samples-{}-{}.npy", cfg.method, cfg.steps)));
    let t0 = Instant::now();
    let x = fm_train::sample(&mlp, &StandardNormal::new(mlp.config().dim)?, &cfg)?;
    let secs = t0.elapsed().as_secs_f64();
    fm_dist::io::write_npy(&out, x.mapv(|v| v as f32).view())?;
    println!("sampled {} points with {} {} steps in {secs:.3} s", cfg.n_samples, cfg.steps, cfg.method);
    println!("wrote:\n  samples    {}", out.display());
    Ok(())
}
