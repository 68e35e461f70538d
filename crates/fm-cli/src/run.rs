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
    // A class-conditional model samples each class in its share of the target: together they
    // follow the whole target, so they are judged as any run's samples, then class by class.
    let conditional = fm_model::VelocityModel::condition_shape(&trained.mlp).classes > 0;
    let (samples, labels) = if conditional {
        let counts = fm_train::counts_by_weight(cfg.sample.n_samples, &trained.target.class_weights());
        let g = trained.units().generate(&fm_train::Request::new(trained.generator, &cfg.sample).given(fm_train::Condition::Classes(&counts)))?;
        (g.points, g.labels)
    } else {
        (trained.units().generate(&fm_train::Request::new(trained.generator, &cfg.sample))?.points, None)
    };
    let sample_seconds = t0.elapsed().as_secs_f64();
    let by_class = if conditional { ", each class in its share of the target" } else { "" };
    println!("sampled {} points with {}{by_class} in {:.3} s", cfg.sample.n_samples, crate::sample::describe(&cfg.sample), sample_seconds);
    fm_dist::io::write_npy(&dir.file(RunDir::SAMPLES), samples.mapv(|v| v as f32).view())?;
    crate::sample::write_labels(&dir.file(RunDir::LABELS), labels.as_deref())?;

    // The figure and the sample figures (pure Rust, on helper threads) are computed while the
    // model's likelihood (libtorch, on this thread) is: their threads are measured, not fixed.
    let dim = trained.target.dim();
    let drew_compare = dim >= 2;
    let (figure, quality, kl) = std::thread::scope(|scope| {
        let figure = scope.spawn(|| -> Result<()> {
            if !drew_compare {
                return Ok(());
            }
            // The seed's own figure keeps the seed's axes; any other target gets axes fitted to it.
            let fig = if cfg.target == RunConfig::default().target {
                fm_viz::CompareFigure::seed()
            } else {
                fm_viz::CompareFigure { target_title: format!("Target: {}", trained.target.name()), ..fm_viz::CompareFigure::fitted() }
            };
            let fig = fm_viz::CompareFigure { labels: labels.clone(), ..fig };
            Ok(fm_viz::compare(&dir.file(RunDir::COMPARE), trained.target.as_ref(), samples.view(), &fig)?)
        });
        let quality = scope.spawn(|| cfg.eval.measure(trained.target.as_ref(), samples.view(), &mut StdRng::seed_from_u64(seeds::quality(cfg.train.seed))));
        // A one-step or MeanFlow model's likelihood is not its sampler's: its samples judge it.
        // A conditional model trained with cond_drop 0 has no trained "no condition" entry to judge.
        let null_untrained = fm_train::conditional::null_entry_untrained(&cfg.train);
        let kl = if trained.target.has_density() && trained.data_map.is_none() && cfg.eval.kl_points > 0 && trained.generator.is_flow() && !null_untrained {
            let mut rng = StdRng::seed_from_u64(seeds::kl(cfg.train.seed));
            fm_train::kl_estimate(trained.target.as_ref(), &trained.mlp, trained.source.as_ref(), cfg.eval.kl_points, &cfg.eval.likelihood, &mut rng).map(Some)
        } else {
            Ok(None)
        };
        // A panic on a helper is re-raised here, as it would have been without threads.
        let (figure, quality) =
            (figure.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), quality.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        (figure, quality, kl)
    });
    // A figure that cannot be drawn for this dimension is skipped, said, and costs nothing else.
    figure?;
    if drew_compare && dim > 2 {
        println!(
            "note: {} shows x1 and x2 of x1…x{dim} (`fm plot compare --run DIR --coords I,J` draws others, counted from 0: --coords 0,1 is x1 and x2)",
            RunDir::COMPARE
        );
    } else if !drew_compare {
        println!("note: {} skipped: figures draw two coordinates and the data are {dim}-D; the samples and report are complete", RunDir::COMPARE);
    }
    let quality = quality?;
    if fm_train::conditional::null_entry_untrained(&cfg.train) {
        println!("note: no pooled likelihood: cond_drop 0 left the \"no condition\" entry untrained; the per-class table judges each class");
    }
    println!("quality of the samples:\n{quality}");
    let kl = kl?;
    if let Some(kl) = &kl {
        let entry = if conditional { " (its \"no condition\" entry)" } else { "" };
        println!("likelihood of the model{entry}:\n  {kl}");
    }
    let mut per_class = Vec::new();
    if conditional {
        println!("per class (w = 1):");
        let mut rng = StdRng::seed_from_u64(seeds::quality(cfg.train.seed).wrapping_add(1));
        for class in 0..trained.target.classes() {
            let w2_points = cfg.eval.w2_points.min(cfg.sample.n_samples);
            let q = fm_train::class_quality(
                &trained.units(),
                trained.target.as_ref(),
                class,
                &fm_train::Request::new(trained.generator, &cfg.sample),
                w2_points,
                cfg.eval.kl_points,
                &cfg.eval.likelihood,
                &mut rng,
            )?;
            println!("  {q}");
            per_class.push(q);
        }
    }
    dir.write_report(&Report {
        train: trained.report,
        loss_floor: trained.loss_floor,
        sample_seconds,
        max_share_error: quality.max_share_error(),
        log_prob_gap: quality.log_prob_gap(),
        w2_excess: quality.w2_excess(),
        quality,
        kl,
        per_class,
    })?;
    let files = [RunDir::MODEL, RunDir::SAMPLES, RunDir::LABELS, RunDir::COMPARE, RunDir::REPORT, RunDir::CONFIG, RunDir::METRICS].map(|f| dir.file(f));
    let names = ["checkpoint", "samples", "labels", "figure", "report", "config", "losses"];
    let shown = |n: &str| (n != "figure" || drew_compare) && (n != "labels" || labels.is_some());
    let written: Vec<(&str, &std::path::Path)> = names.iter().zip(&files).filter(|(n, _)| shown(n)).map(|(n, f)| (*n, f.as_path())).collect();
    print_written(&written);
    Ok(())
}
