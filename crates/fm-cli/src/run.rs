//! `fm run`: train, sample, draw and judge in one go.

use crate::config::SampleFlags;
use crate::quality::EvalFlags;
use crate::train::{print_written, train_into, TrainSetup};
use anyhow::Result;
use clap::ArgMatches;
use fm_dist::metrics::SampleQuality;
use fm_train::sample;
use rand::{rngs::StdRng, SeedableRng};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    setup: TrainSetup,
    #[command(flatten)]
    sample: SampleFlags,
    #[command(flatten)]
    eval: EvalFlags,
    /// Run folder (created if missing).
    #[arg(long, default_value = "runs/seed")]
    out: PathBuf,
}

/// Everything the run measured, as `report.json`.
#[derive(Serialize)]
struct Report<'a> {
    train: &'a fm_train::TrainReport,
    /// The part of the training loss no model can remove (Gaussian-mixture targets with an
    /// affine path and independent pairs; null otherwise): `fm_train::exact::training_floor`.
    loss_floor: Option<&'a fm_dist::metrics::Estimate>,
    sample_seconds: f64,
    quality: &'a SampleQuality,
    /// KL(target ‖ model) from the model's exact likelihood (targets with a density).
    kl: Option<&'a fm_train::KlEstimate>,
    /// The figures `cargo xtask e2e` holds against the quality bar, derived from `quality`
    /// (null where the target has no density or is not a mixture).
    max_share_error: Option<f64>,
    log_prob_gap: Option<f64>,
    w2_excess: f64,
}

pub fn run(args: RunArgs, m: &ArgMatches) -> Result<()> {
    let mut cfg = args.setup.resolve(m)?;
    args.sample.apply(m, &mut cfg.sample);
    args.eval.apply(m, &mut cfg.eval);
    // Every check that can fail before the work starts does.
    cfg.sample.validate()?;
    cfg.eval.validate(cfg.sample.n_samples)?;
    let trained = train_into(&cfg, &args.out, args.setup.quiet)?;

    let t0 = Instant::now();
    let samples = sample(&trained.mlp, trained.source.as_ref(), &cfg.sample)?;
    let sample_seconds = t0.elapsed().as_secs_f64();
    println!("sampled {} points with {} in {:.3} s", cfg.sample.n_samples, crate::sample::describe(&cfg.sample), sample_seconds);
    let samples_path = args.out.join("samples.npy");
    fm_dist::io::write_npy(&samples_path, samples.mapv(|v| v as f32).view())?;

    let figure = args.out.join("compare.png");
    // The seed's own figure keeps the seed's axes; any other target gets axes fitted to it.
    let fig = if cfg.target == crate::config::RunConfig::default().target { fm_viz::CompareFigure::seed() } else { fm_viz::CompareFigure::fitted() };
    fm_viz::compare(&figure, trained.target.as_ref(), samples.view(), &fig)?;

    let quality = cfg.eval.measure(trained.target.as_ref(), samples.view(), &mut StdRng::seed_from_u64(cfg.train.seed.wrapping_add(2)))?;
    println!("quality of the samples:\n{quality}");
    let kl = if trained.target.has_density() && cfg.eval.kl_points > 0 {
        let mut rng = StdRng::seed_from_u64(cfg.train.seed.wrapping_add(3));
        let kl = fm_train::kl_estimate(trained.target.as_ref(), &trained.mlp, trained.source.as_ref(), cfg.eval.kl_points, &cfg.eval.likelihood, &mut rng)?;
        println!("likelihood of the model:\n  {kl}");
        Some(kl)
    } else {
        None
    };
    let report_path = args.out.join("report.json");
    let report_json = serde_json::to_string_pretty(&Report {
        train: &trained.report,
        loss_floor: trained.loss_floor.as_ref(),
        sample_seconds,
        quality: &quality,
        kl: kl.as_ref(),
        max_share_error: quality.max_share_error(),
        log_prob_gap: quality.log_prob_gap(),
        w2_excess: quality.w2_excess(),
    })?;
    fm_dist::io::write_atomic(&report_path, report_json.as_bytes())?;
    print_written(&[
        ("checkpoint", &trained.checkpoint),
        ("samples", &samples_path),
        ("figure", &figure),
        ("report", &report_path),
        ("config", &args.out.join("config.toml")),
        ("losses", &args.out.join("metrics.csv")),
    ]);
    Ok(())
}
