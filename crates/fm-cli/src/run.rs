//! `fm run`: the seed experiment.

use crate::quality::W2Args;
use anyhow::{Context, Result};
use fm_dist::{metrics::SampleQuality, parse_target};
use fm_model::{checkpoint, parse_device, Mlp, MlpConfig};
use fm_ode::Method;
use fm_train::{sample, train, ProgressBarReporter, SampleConfig, TrainConfig};
use rand::{rngs::StdRng, SeedableRng};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Distribution to learn: a built-in name, spec:FILE (mixture spec) or file:FILE (point cloud); see `fm targets`.
    #[arg(long, default_value = "gmm3")]
    target: String,
    /// Distribution to start from (any target works as a source).
    #[arg(long, default_value = "normal")]
    source: String,
    /// Output folder (created if missing).
    #[arg(long, default_value = "runs/seed")]
    out: PathBuf,
    /// Where to compute: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Seed of the initialisation and of the data stream.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Training steps.
    #[arg(long, default_value_t = TrainConfig::default().steps)]
    steps: usize,
    /// Batch size of each training step.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    lr: f64,
    /// Width of the hidden layers.
    #[arg(long, default_value_t = MlpConfig::default().hidden_dim)]
    hidden_dim: usize,
    /// Number of hidden layers.
    #[arg(long, default_value_t = MlpConfig::default().hidden_layers)]
    hidden_layers: usize,
    /// Samples to generate.
    #[arg(long, default_value_t = SampleConfig::default().n_samples)]
    samples: usize,
    /// Integration steps from t = 0 to 1.
    #[arg(long, default_value_t = SampleConfig::default().steps)]
    sample_steps: usize,
    /// Integration method (euler, midpoint, heun, rk4).
    #[arg(long, default_value_t = SampleConfig::default().method)]
    method: Method,
    #[command(flatten)]
    w2: W2Args,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// The resolved configuration, written beside the outputs.
#[derive(Serialize)]
struct ResolvedConfig<'a> {
    target: &'a str,
    source: &'a str,
    device: String,
    model: &'a MlpConfig,
    train: &'a TrainConfig,
    sample: &'a SampleConfig,
}

/// Everything the run measured, as `report.json`.
#[derive(Serialize)]
struct Report<'a> {
    train: &'a fm_train::TrainReport,
    sample_seconds: f64,
    quality: &'a SampleQuality,
    /// The figures `cargo xtask e2e` holds against the quality bar, derived from `quality`
    /// (null where the target has no density or is not a mixture).
    max_share_error: Option<f64>,
    log_prob_gap: Option<f64>,
    w2_excess: f64,
}

pub fn run(args: RunArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let model_cfg = MlpConfig { hidden_dim: args.hidden_dim, hidden_layers: args.hidden_layers, ..MlpConfig::default() };
    let train_cfg = TrainConfig { steps: args.steps, batch_size: args.batch_size, lr: args.lr, seed: args.seed, ..TrainConfig::default() };
    let sample_cfg = SampleConfig { n_samples: args.samples, steps: args.sample_steps, method: args.method, seed: args.seed.wrapping_add(1), ..SampleConfig::default() };
    // Every check that can fail before the work starts does.
    model_cfg.validate()?;
    train_cfg.validate()?;
    sample_cfg.validate()?;
    anyhow::ensure!(args.w2.w2_points > 0 && args.w2.w2_points <= args.samples && args.w2.w2_draws > 0, "--w2-points must be in 1..=--samples ({}) and --w2-draws at least 1", args.samples);
    prepare_out_dir(&args.out)?;

    let target = parse_target(&args.target)?;
    let source = parse_target(&args.source).map_err(|e| anyhow::anyhow!("source: {e}"))?;
    anyhow::ensure!(source.dim() == target.dim(), "the source {} is {}-D but the target {} is {}-D", source.name(), source.dim(), target.name(), target.dim());
    let model_cfg = MlpConfig { dim: target.dim(), ..model_cfg };
    let resolved = ResolvedConfig { target: &args.target, source: &args.source, device: format!("{device:?}"), model: &model_cfg, train: &train_cfg, sample: &sample_cfg };
    fm_dist::io::write_atomic(&args.out.join("config.json"), serde_json::to_string_pretty(&resolved)?.as_bytes())?;
    println!("fm run: {} → {}, on {device:?}", source.name(), target.name());

    tch::manual_seed(args.seed as i64);
    let mut mlp = Mlp::new(model_cfg.clone(), device)?;
    let bar = ProgressBarReporter::new(train_cfg.steps, args.quiet);
    let report = train(&mut mlp, target.as_ref(), source.as_ref(), &train_cfg, &mut |p| bar.update(p))?;
    bar.finish();
    println!("trained {} steps in {:.1} s ({:.0} steps/s), final loss {:.4}", report.steps, report.seconds, report.steps_per_s, report.final_loss);

    let ckpt = args.out.join("model.safetensors");
    let meta = [("target".to_string(), args.target.clone()), ("source".to_string(), args.source.clone()), ("train".to_string(), serde_json::to_string(&train_cfg)?)].into_iter().collect();
    checkpoint::save(&mlp, &ckpt, &meta)?;

    let t0 = Instant::now();
    let samples = sample(&mlp, source.as_ref(), &sample_cfg)?;
    let sample_seconds = t0.elapsed().as_secs_f64();
    println!("sampled {} points with {} {} steps in {:.3} s", sample_cfg.n_samples, sample_cfg.steps, sample_cfg.method, sample_seconds);
    let samples_path = args.out.join("samples.npy");
    fm_dist::io::write_npy(&samples_path, samples.mapv(|v| v as f32).view())?;

    let figure = args.out.join("compare.png");
    fm_viz::compare(&figure, target.as_ref(), samples.view(), &fm_viz::CompareFigure::default())?;

    let quality = args.w2.measure(target.as_ref(), samples.view(), &mut StdRng::seed_from_u64(args.seed.wrapping_add(2)))?;
    println!("quality of the samples:\n{quality}");
    let report_path = args.out.join("report.json");
    let report_json = serde_json::to_string_pretty(&Report {
        train: &report,
        sample_seconds,
        quality: &quality,
        max_share_error: quality.max_share_error(),
        log_prob_gap: quality.log_prob_gap(),
        w2_excess: quality.w2_excess(),
    })?;
    fm_dist::io::write_atomic(&report_path, report_json.as_bytes())?;

    println!("wrote:");
    for (what, path) in [("checkpoint", &ckpt), ("samples", &samples_path), ("figure", &figure), ("report", &report_path), ("config", &args.out.join("config.json"))] {
        println!("  {what:<10} {}", path.display());
    }
    Ok(())
}

/// Creates the output folder and proves it writable before any work starts.
fn prepare_out_dir(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create output folder {}", out.display()))?;
    let probe = out.join(format!(".fm-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| format!("output folder {} is not writable", out.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}
