//! `fm run`: train, sample, draw and judge in one go.

use crate::config::SampleFlags;
use crate::quality::EvalFlags;
use crate::train::{print_written, train_into, TrainSetup};
use anyhow::Result;
use clap::ArgMatches;
use fm_run::{seeds, Report, RunConfig, RunDir};
use rand::{rngs::StdRng, SeedableRng};
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

pub fn run(args: RunArgs, m: &ArgMatches) -> Result<()> {
    let mut cfg = args.setup.resolve(m)?;
    args.sample.apply(m, &mut cfg.sample);
    args.eval.apply(m, &mut cfg.eval);
    // Every check that can fail before the work starts does: the trained model's sampling too.
    let generator = cfg.generator();
    generator.defaults(&mut cfg.sample, crate::config::given(m, "sample_steps"), crate::config::given(m, "method"));
    generator.check(&cfg.sample)?;
    cfg.sample.validate()?;
    cfg.eval.validate(cfg.sample.n_samples)?;
    let dir = RunDir::new(&args.out);
    let trained = train_into(&cfg, &dir, args.setup.quiet, false)?;

    let t0 = Instant::now();
    let samples = trained.units().generate(trained.generator, &cfg.sample)?;
    let sample_seconds = t0.elapsed().as_secs_f64();
    println!("sampled {} points with {} in {:.3} s", cfg.sample.n_samples, crate::sample::describe(&cfg.sample), sample_seconds);
    fm_dist::io::write_npy(&dir.file(RunDir::SAMPLES), samples.mapv(|v| v as f32).view())?;

    // The seed's own figure keeps the seed's axes; any other target gets axes fitted to it. A
    // figure that cannot be drawn for this dimension is skipped, said, and costs nothing else.
    let dim = trained.target.dim();
    let drew_compare = dim >= 2;
    if drew_compare {
        let fig = if cfg.target == RunConfig::default().target {
            fm_viz::CompareFigure::seed()
        } else {
            fm_viz::CompareFigure { target_title: format!("Target: {}", trained.target.name()), ..fm_viz::CompareFigure::fitted() }
        };
        fm_viz::compare(&dir.file(RunDir::COMPARE), trained.target.as_ref(), samples.view(), &fig)?;
        if dim > 2 {
            println!("note: {} shows coordinates 0 and 1 of {dim} (`fm plot compare --run DIR --coords I,J` draws others)", RunDir::COMPARE);
        }
    } else {
        println!("note: {} skipped: figures draw two coordinates and the data are {dim}-D; the samples and report are complete", RunDir::COMPARE);
    }

    let quality = cfg.eval.measure(trained.target.as_ref(), samples.view(), &mut StdRng::seed_from_u64(seeds::quality(cfg.train.seed)))?;
    println!("quality of the samples:\n{quality}");
    // A one-step or MeanFlow model's likelihood is not its sampler's: its samples judge it.
    let kl = if trained.target.has_density() && trained.data_map.is_none() && cfg.eval.kl_points > 0 && trained.generator == fm_train::Generator::Flow {
        let mut rng = StdRng::seed_from_u64(seeds::kl(cfg.train.seed));
        let kl = fm_train::kl_estimate(trained.target.as_ref(), &trained.mlp, trained.source.as_ref(), cfg.eval.kl_points, &cfg.eval.likelihood, &mut rng)?;
        println!("likelihood of the model:\n  {kl}");
        Some(kl)
    } else {
        None
    };
    dir.write_report(&Report {
        train: trained.report,
        loss_floor: trained.loss_floor,
        sample_seconds,
        max_share_error: quality.max_share_error(),
        log_prob_gap: quality.log_prob_gap(),
        w2_excess: quality.w2_excess(),
        quality,
        kl,
    })?;
    let files = [RunDir::MODEL, RunDir::SAMPLES, RunDir::COMPARE, RunDir::REPORT, RunDir::CONFIG, RunDir::METRICS].map(|f| dir.file(f));
    let names = ["checkpoint", "samples", "figure", "report", "config", "losses"];
    let written: Vec<(&str, &std::path::Path)> =
        names.iter().zip(&files).filter(|(n, _)| **n != "figure" || drew_compare).map(|(n, f)| (*n, f.as_path())).collect();
    print_written(&written);
    Ok(())
}
