//! `fm eval`: how good samples, or a model, are, judged against a target.

use crate::quality::EvalFlags;
use anyhow::{Context, Result};
use fm_dist::parse_target;
use fm_run::{EvalConfig, ModelBundle};
use fm_train::LikelihoodConfig;
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(true).args(["samples", "checkpoint", "oracle"]))]
pub struct EvalArgs {
    #[command(flatten)]
    pub threads: crate::config::ThreadsFlag,
    /// A run file (e.g. a run's config.toml): its target, source, path and `[eval]` section are the defaults here.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Samples to judge: a .npy (float32/float64, N×D) or .csv file, from fm, numpy or anywhere.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// A model to judge by its exact likelihood (KL(target ‖ model) on fresh target samples; --kl-points 0 skips it)
    /// and, for a Gaussian-mixture target, by its distance to the exact field of its training setting (field error,
    /// loss floor, error over t). A distilled or MeanFlow model is judged by 10,000 of its one-step samples instead.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Judge the exact flow of a Gaussian-mixture target by the same likelihood code: KL(target ‖ exact flow),
    /// 0 up to the integrator's error (a check of the integrators and the likelihood against the truth).
    #[arg(long)]
    oracle: bool,
    /// The distribution they should follow [default: the run file's, else the checkpoint's target, else gmm3].
    #[arg(long)]
    target: Option<String>,
    /// With --oracle: the source [default: the run file's, else normal:D].
    #[arg(long, requires = "oracle")]
    source: Option<String>,
    /// With --oracle: the probability path (linear, icfm:σ, lipman:σ_min, vp) [default: the run file's, else linear].
    #[arg(long, requires = "oracle")]
    path: Option<fm_train::ProbabilityPath>,
    #[command(flatten)]
    eval: EvalFlags,
    #[command(flatten)]
    foreign: crate::config::ForeignModelArgs,
    /// Integration steps of the likelihood ODE (RK4, from t = 1 to 0).
    #[arg(long, default_value_t = LikelihoodConfig::default().steps)]
    kl_steps: usize,
    /// Seed of the fresh true samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A conditional checkpoint's classes to judge one by one (K, K,K or all): per class, KL(p(·|c) ‖ q(·|c)) from the
    /// exact likelihood (--kl-points of them, each class a likelihood solve), W2 to fresh class samples beside its
    /// floor, and purity. Without it a conditional checkpoint is judged by its "no condition" entry.
    #[arg(long, value_name = "K|K,K|all", requires = "checkpoint")]
    class: Option<String>,
    /// The classifier-free guidance scale w the classes are sampled and judged with.
    #[arg(long, value_name = "W", default_value_t = 1.0, requires = "checkpoint", allow_hyphen_values = true)]
    cfg_scale: f64,
}

pub fn eval(args: EvalArgs, m: &clap::ArgMatches) -> Result<()> {
    let run = args.config.as_deref().map(crate::config::RunConfig::read).transpose()?;
    let mut cfg = run.as_ref().map_or_else(EvalConfig::default, |r| r.eval.clone());
    args.eval.apply(m, &mut cfg);
    if crate::config::given(m, "kl_steps") {
        cfg.likelihood.steps = args.kl_steps;
    }
    fm_train::conditional::check_guidance_scale(args.cfg_scale).map_err(|e| anyhow::anyhow!("--cfg-scale: {e}"))?;
    let model = args.checkpoint.as_deref().map(|c| ModelBundle::load(c, "auto", None, &args.foreign.options(run.as_ref()))).transpose()?;
    let shape = model.as_ref().map(|b| fm_model::VelocityModel::condition_shape(&b.mlp)).unwrap_or_default();
    let classes = args.class.as_deref().map(|spec| crate::sample::parse_classes(spec, shape.classes)).transpose()?;
    anyhow::ensure!(args.cfg_scale == 1.0 || classes.is_some(), "--cfg-scale guides the classes judged: give --class K (or all)");
    if let (Some(bundle), Some(_)) = (&model, &classes) {
        if args.cfg_scale != 1.0 {
            bundle.require_null_entry()?;
        }
    }
    let spec = args
        .target
        .clone()
        .or_else(|| run.as_ref().map(|r| r.target.clone()))
        .or_else(|| model.as_ref().and_then(|m| m.target.clone()))
        .unwrap_or_else(|| "gmm3".into());
    let target = parse_target(&spec).context("target")?;
    // Judged class by class against a target of other classes, a model would be judged on
    // classes it never learnt (a checkpoint that records no target is judged against gmm3).
    if classes.is_some() {
        anyhow::ensure!(
            target.classes() == shape.classes,
            "the checkpoint's model has {} classes and the target {} has {}: give --target (or --config with the run that trained it){}",
            shape.classes,
            target.name(),
            target.classes(),
            if args.target.is_none() && run.is_none() && model.as_ref().is_some_and(|m| m.target.is_none()) {
                "; the checkpoint records no target"
            } else {
                ""
            }
        );
    }
    let mut rng = StdRng::seed_from_u64(args.seed);
    if let Some(path) = &args.samples {
        // Read as a point cloud: non-empty, finite, and described (rows, header) in the report line.
        let samples = fm_dist::PointCloud::read(path)?;
        let q = cfg.measure(target.as_ref(), samples.points(), &mut rng).with_context(|| format!("cannot judge {}", path.display()))?;
        println!("quality of {} against {}:\n{q}", samples.describe(), target.name());
    }
    let jumps = model.as_ref().is_some_and(|b| !b.generator().is_flow());
    if let (Some(bundle), Some(path), true) = (&model, &args.checkpoint, jumps) {
        // A one-step or MeanFlow model has no likelihood of its sampler here: its samples judge it,
        // in one step (a MeanFlow model: in its run file's number of jumps, with --config).
        let steps = bundle.generator().judged_steps(run.as_ref().map(|r| r.sample.steps));
        let sample = fm_train::SampleConfig { n_samples: cfg.w2_points.max(10_000), seed: args.seed, steps, ..fm_train::SampleConfig::one_step() };
        let x = bundle.units().generate(&fm_train::Request::new(bundle.generator(), &sample))?.points;
        let q = cfg.measure(target.as_ref(), x.view(), &mut rng).with_context(|| format!("cannot judge {}", path.display()))?;
        println!(
            "quality of {} samples of {} ({} model, {steps} step{}: {steps} network evaluation{} each) against {}:\n{q}",
            sample.n_samples,
            path.display(),
            bundle.generator().name(),
            if steps == 1 { "" } else { "s" },
            if steps == 1 { "" } else { "s" },
            target.name()
        );
    } else if let Some(Err(why)) = model.as_ref().map(|b| b.require_null_entry()) {
        // Its likelihood and field error would judge the "no condition" entry, never trained.
        println!("no likelihood or field error of the \"no condition\" entry: {why}; --class judges each class");
    } else if let (Some(bundle), Some(path)) = (&model, &args.checkpoint) {
        let (mlp, source) = (&bundle.mlp, &bundle.source);
        // A model trained on standardised file data is judged against a target with a density only
        // in the data's units; KL is the same in either units, so the target is carried to the model's.
        let standard_target;
        let target: &dyn fm_dist::Target = match &bundle.data_map {
            None => target.as_ref(),
            Some(map) => {
                standard_target = fm_dist::affine::Pushforward::new(parse_target(&spec)?, map.inverse())?;
                &standard_target
            }
        };
        if cfg.kl_points > 0 {
            let mut kl = fm_train::kl_estimate(target, mlp, source.as_ref(), cfg.kl_points, &cfg.likelihood, &mut rng)
                .with_context(|| format!("cannot judge {}", path.display()))?;
            // NLL and entropy in the data's units: each log-density there is lower by log|det|.
            let log_det = bundle.data_map.as_ref().map_or(0.0, |m| m.log_det());
            (kl.nll, kl.entropy) = (kl.nll + log_det, kl.entropy + log_det);
            let entry = if shape.classes > 0 && classes.is_none() {
                " (its \"no condition\" entry; --class all judges each class)"
            } else if shape.is_conditional() {
                " (its \"no condition\" entry)"
            } else {
                ""
            };
            println!("likelihood of {}{entry} against {}:\n  {kl}", path.display(), target.name());
        }
        let objective = bundle.train.as_ref().ok().and_then(Option::as_ref).map(|t| &t.objective).filter(|o| !o.has_flow_matching_floor());
        if bundle.trained_on_pairs() {
            println!("no field error: the model learnt a teacher's pairs (reflow), whose flow is not the exact flow of independent pairs");
        } else if let Some(objective) = objective {
            println!(
                "no field error: objective {objective} does not regress on the path's velocity (any field that carries the source to the target minimises it)"
            );
        } else if target.as_mixture().is_some() && bundle.data_map.is_none() {
            let report = match bundle.train_or_seed() {
                Ok((train, note)) => {
                    note.into_iter().for_each(|n| eprintln!("note: {n}"));
                    fm_run::exact::field_report(mlp, target, source.as_ref(), &train, &fm_run::exact::CURVE_TIMES, args.seed)?
                }
                Err(e) => Err(e.to_string()),
            };
            match report {
                Ok(report) if shape.is_conditional() => println!("the \"no condition\" entry against the exact flow:\n{report}"),
                Ok(report) => println!("against the exact flow:\n{report}"),
                Err(why) => println!("no field error: {why}"),
            }
        }
    }
    if let (Some(bundle), Some(classes)) = (&model, &classes) {
        let sample = run.as_ref().map_or_else(fm_train::SampleConfig::default, |r| r.sample.clone());
        println!(
            "per class of {} (guidance w = {}; {} samples by {}{}):",
            target.name(),
            args.cfg_scale,
            cfg.w2_points,
            crate::sample::describe(&sample),
            if bundle.generator().is_flow() { format!(", KL on {} fresh class samples", cfg.kl_points) } else { String::new() }
        );
        for &class in classes {
            let q = fm_train::class_quality(
                &bundle.units(),
                target.as_ref(),
                class,
                &fm_train::Request::new(bundle.generator(), &sample).guided(args.cfg_scale),
                cfg.w2_points,
                cfg.kl_points,
                &cfg.likelihood,
                &mut rng,
            )?;
            println!("  {q}");
        }
    }
    if args.oracle && cfg.kl_points > 0 {
        let fm_run::exact::Resolved { flow, source, .. } = crate::resolve_exact(Some(&spec), args.source.as_deref(), args.path, run.as_ref(), None)?;
        let kl = fm_train::kl_estimate(target.as_ref(), &flow, source.as_ref(), cfg.kl_points, &cfg.likelihood, &mut rng)?;
        // Near 0 by construction: printed in full, not rounded to 0.0000.
        println!(
            "likelihood of the exact flow ({} path) against {}:\n  KL(target ‖ exact flow) {:.2e} nats (± {:.1e}; NLL {:.4}, entropy {:.4}; {} samples, {:.0} NFE, {:.2} s)",
            flow.path(),
            target.name(),
            kl.kl,
            kl.kl_se,
            kl.nll,
            kl.entropy,
            kl.n,
            kl.nfe,
            kl.seconds
        );
    }
    Ok(())
}
