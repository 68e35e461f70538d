//! `fm sample`: new samples from a checkpoint.

use crate::config::{checkpoint_or_run, given, override_given, RunConfig};
use crate::train::print_written;
use anyhow::Result;
use clap::ArgMatches;
use fm_dist::Target;
use fm_model::parse_device;
use fm_ode::Method;
use fm_run::{exact::Resolved, ModelBundle, RunDir};
use fm_train::SampleConfig;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    #[command(flatten)]
    pub threads: crate::config::ThreadsFlag,
    /// A run file (e.g. a run's config.toml): its `[sample]` section, source and device are the defaults here,
    /// and the model.safetensors beside it is the checkpoint unless --checkpoint is given.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Checkpoint: written by fm (.safetensors), or a PyTorch state dict (.pth or .safetensors) [default: the run's, with --config].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Sample the exact flow of a Gaussian-mixture target instead of a model (no checkpoint): the field that
    /// flow matching learns, in closed form; with --target, --source and --path [default: the run file's].
    #[arg(long, conflicts_with = "checkpoint")]
    oracle: bool,
    /// With --oracle: the Gaussian-mixture target (gmm3, 8gaussians, 25gaussians, spec:FILE) [default: the run file's, else gmm3].
    #[arg(long, requires = "oracle", conflicts_with = "checkpoint")]
    target: Option<String>,
    /// With --oracle: the probability path (linear, icfm:σ, lipman:σ_min, vp) [default: the run file's, else linear].
    #[arg(long, requires = "oracle", conflicts_with = "checkpoint")]
    path: Option<fm_train::ProbabilityPath>,
    /// Output file, .npy or .csv [default: samples-METHOD-STEPS.npy beside the checkpoint; with --oracle, in the
    /// run file's folder, else here].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Source to draw starting points from [default: the checkpoint's, else normal:D].
    #[arg(long)]
    source: Option<String>,
    /// Where to compute: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Samples to generate.
    #[arg(long, default_value_t = SampleConfig::default().n_samples)]
    samples: usize,
    /// Integration steps from t = 0 to 1 (fixed-step methods); for a MeanFlow checkpoint, its jumps (1: one network
    /// evaluation per point); a distilled checkpoint takes 1, its default.
    #[arg(long, default_value_t = SampleConfig::default().steps)]
    steps: usize,
    /// Integration method: euler, midpoint, heun, rk4 or dopri5 (adaptive); distilled and MeanFlow checkpoints
    /// sample with euler only (their one step, their jumps).
    #[arg(long, default_value_t = SampleConfig::default().method)]
    method: Method,
    #[command(flatten)]
    sde: crate::config::SdeFlag,
    /// Relative tolerance of dopri5.
    #[arg(long, default_value_t = SampleConfig::default().rtol)]
    rtol: f64,
    /// Absolute tolerance of dopri5.
    #[arg(long, default_value_t = SampleConfig::default().atol)]
    atol: f64,
    /// Most attempted steps of dopri5 (accepted and rejected) before it gives up.
    #[arg(long, default_value_t = SampleConfig::default().max_steps)]
    max_steps: usize,
    #[command(flatten)]
    foreign: crate::config::ForeignModelArgs,
    /// Seed of the source draws.
    #[arg(long, default_value_t = SampleConfig::default().seed)]
    seed: u64,
    /// Write pairs: each row the source point beside its image, [x0 | x1] (2·D columns), the training pairs of
    /// reflow and distillation (fm train --pairs FILE). Needs a flow trained in the data's units (not a
    /// standardised, distilled or MeanFlow model). Solve accurately for them, e.g. --method rk4 --steps 50.
    #[arg(long, conflicts_with = "oracle")]
    pairs: bool,
    /// A conditional checkpoint's class: K, several (0,2) or all; --samples of each (class K's source drawn with seed
    /// SEED + K), rows in a seeded random order, each row's class written beside the samples (OUT with .labels.npy).
    /// Without it a conditional model samples unconditionally.
    #[arg(long, value_name = "K|K,K|all", conflicts_with_all = ["oracle", "pairs"])]
    class: Option<String>,
    /// Classifier-free guidance scale w: v = v_∅ + w (v_c − v_∅); 1 the plain conditional field, 0 the unconditional.
    #[arg(long, value_name = "W", default_value_t = 1.0, conflicts_with_all = ["oracle", "pairs"], allow_hyphen_values = true)]
    cfg_scale: f64,
    /// A conditional checkpoint's condition vector (a model trained with --condition values): comma-separated numbers.
    #[arg(long, value_name = "V,V,…", conflicts_with_all = ["oracle", "pairs", "class"])]
    cond: Option<String>,
}

/// The classes `--class` names: `all`, or distinct comma-separated class numbers below `classes`.
pub fn parse_classes(spec: &str, classes: usize) -> Result<Vec<usize>> {
    anyhow::ensure!(classes > 0, "--class {spec}: the checkpoint is not conditioned on classes (train one with --condition labels)");
    if spec.trim().eq_ignore_ascii_case("all") {
        return Ok((0..classes).collect());
    }
    let mut out = Vec::new();
    for k in spec.split(',').map(str::trim) {
        let c: usize = k.parse().map_err(|_| anyhow::anyhow!("--class {spec}: '{k}' is not a class number (give K, K,K or all)"))?;
        anyhow::ensure!(c < classes, "--class {c} is out of range: the checkpoint has {classes} classes, 0 to {}", classes - 1);
        anyhow::ensure!(!out.contains(&c), "--class {spec}: class {c} is named twice");
        out.push(c);
    }
    Ok(out)
}

/// Writes each row's class as an int64 `N × 1` `.npy` (what `fm sample --class` and `fm run`
/// write beside their samples); with no labels, removes the file an earlier run left there, whose
/// labels would not be these samples'.
pub fn write_labels(path: &std::path::Path, labels: Option<&[usize]>) -> Result<()> {
    match labels {
        Some(labels) => {
            let column = ndarray::Array2::from_shape_vec((labels.len(), 1), labels.iter().map(|&c| c as i64).collect())?;
            Ok(fm_dist::io::write_npy(path, column.view())?)
        }
        None => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        },
    }
}

/// "100 euler steps" or "dopri5 (rtol 1e-5, atol 1e-5)".
pub fn describe(cfg: &SampleConfig) -> String {
    if let Some(sde) = cfg.sde {
        format!("{} Euler–Maruyama steps of the SDE with diffusion {sde}", cfg.steps)
    } else if cfg.method.is_adaptive() {
        format!("{} (rtol {:e}, atol {:e})", cfg.method, cfg.rtol, cfg.atol)
    } else {
        format!("{} {} step{}", cfg.steps, cfg.method, if cfg.steps == 1 { "" } else { "s" })
    }
}

pub fn sample(args: SampleArgs, m: &ArgMatches) -> Result<()> {
    let run = args.config.as_deref().map(RunConfig::read).transpose()?;
    let checkpoint = if args.oracle { None } else { Some(checkpoint_or_run(args.checkpoint.as_deref(), args.config.as_deref(), "--checkpoint C")?) };
    let mut cfg = run.as_ref().map_or_else(SampleConfig::default, |r| r.sample.clone());
    override_given!(m, args, samples => cfg.n_samples, steps => cfg.steps, method => cfg.method,
        rtol => cfg.rtol, atol => cfg.atol, max_steps => cfg.max_steps, seed => cfg.seed);
    args.sde.apply(&mut cfg);
    let device = if given(m, "device") { args.device.clone() } else { run.as_ref().map_or(args.device.clone(), |r| r.device.clone()) };
    let source = args.source.clone().or_else(|| run.as_ref().map(|r| r.source.clone()));
    // The settings first (cheap, and what a user typed), then the files.
    cfg.validate()?;
    fm_train::conditional::check_guidance_scale(args.cfg_scale).map_err(|e| anyhow::anyhow!("--cfg-scale: {e}"))?;
    let cond: Option<Vec<f64>> = args
        .cond
        .as_deref()
        .map(|v| v.split(',').map(|x| x.trim().parse::<f64>().map_err(|_| anyhow::anyhow!("--cond {v}: '{}' is not a number", x.trim()))).collect())
        .transpose()?;
    let bundle = match &checkpoint {
        Some(c) => Some(ModelBundle::load(c, &device, source.as_deref(), &args.foreign.options(run.as_ref()))?),
        None => None,
    };
    if let Some(b) = &bundle {
        b.default_steps(&mut cfg, given(m, "steps"), given(m, "method"));
        b.generator().check(&cfg)?;
        if let Some(sde) = &cfg.sde {
            b.check_sde(sde)?;
        }
    }
    let shape = bundle.as_ref().map(|b| fm_model::VelocityModel::condition_shape(&b.mlp)).unwrap_or_default();
    anyhow::ensure!(
        args.class.is_none() || shape.classes > 0 || shape.dim == 0,
        "--class: the checkpoint is conditioned on {}-D vectors, not classes: give --cond V,…",
        shape.dim
    );
    let classes = args.class.as_deref().map(|spec| parse_classes(spec, shape.classes)).transpose()?;
    if let Some(v) = &cond {
        anyhow::ensure!(
            shape.dim > 0,
            "--cond: the checkpoint is not conditioned on vectors{}",
            if shape.classes > 0 { " (it takes classes: --class K)" } else { "" }
        );
        anyhow::ensure!(v.len() == shape.dim, "--cond: a {}-D condition vector: the checkpoint takes {}-D ones", v.len(), shape.dim);
        anyhow::ensure!(v.iter().all(|x| x.is_finite()), "--cond: every value must be a finite number, got {v:?}");
        if let Some(note) = bundle.as_ref().and_then(|b| b.condition_outside_training(v)) {
            eprintln!("warning: --cond: {note}");
        }
    }
    if let Some(b) = &bundle {
        let unconditional = classes.is_none() && cond.is_none();
        if shape.is_conditional() && (args.cfg_scale != 1.0 || unconditional) {
            b.require_null_entry()?;
        }
    }
    anyhow::ensure!(
        args.cfg_scale == 1.0 || classes.is_some() || cond.is_some(),
        "--cfg-scale guides a condition: give --class K (or --cond V,… for a model of condition vectors)"
    );
    cfg.validate()?;
    let what = match cfg.sde {
        Some(sde) => format!("sde-{}-{}-{}", sde.form.name(), sde.norm, cfg.steps),
        None if cfg.method.is_adaptive() => format!("{}", cfg.method),
        None => format!("{}-{}", cfg.method, cfg.steps),
    };
    let t0 = Instant::now();
    let mut labels_written: Option<Vec<usize>> = None;
    // The samples, their source, the file, and what the report line says they are of.
    let (x, source, out, of) = match (&checkpoint, bundle) {
        (Some(checkpoint), Some(bundle)) if args.pairs => {
            let out = args.out.clone().unwrap_or_else(|| checkpoint.with_file_name(format!("pairs-{what}.npy")));
            anyhow::ensure!(bundle.generator().is_flow(), "--pairs needs a flow (a reflow teacher); this checkpoint is a {} model", bundle.generator().name());
            anyhow::ensure!(bundle.data_map.is_none(), "--pairs needs a flow trained in the data's units; this one was trained on standardised file data");
            let pairs = fm_train::draw_pairs(&bundle.mlp, bundle.source.as_ref(), &cfg)?;
            (pairs.to_array(), bundle.source, out, "and their sources, as pairs, ".to_string())
        }
        (Some(checkpoint), Some(bundle)) if classes.is_some() || cond.is_some() => {
            let guidance = if args.cfg_scale == 1.0 { String::new() } else { format!("-w{}", args.cfg_scale) };
            let which = match (&classes, args.class.as_deref().map(str::trim)) {
                (None, _) => "cond".to_string(),
                (Some(_), Some(all)) if all.eq_ignore_ascii_case("all") => "classall".to_string(),
                (Some(c), _) => format!("class{}", c.iter().map(usize::to_string).collect::<Vec<_>>().join("_")),
            };
            let out = args.out.clone().unwrap_or_else(|| checkpoint.with_file_name(format!("samples-{what}-{which}{guidance}.npy")));
            let counts: Vec<(usize, usize)> = classes.iter().flatten().map(|&c| (c, cfg.n_samples)).collect();
            let condition = match &cond {
                Some(v) => fm_train::Condition::Values(v),
                None => fm_train::Condition::Classes(&counts),
            };
            let generated = bundle.units().generate(&fm_train::Request::new(bundle.generator(), &cfg).given(condition).guided(args.cfg_scale))?;
            labels_written = generated.labels;
            let x = generated.points;
            let of = match &classes {
                Some(c) => format!(
                    "of class{} {} (guidance w = {}) ",
                    if c.len() == 1 { "" } else { "es" },
                    c.iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
                    args.cfg_scale
                ),
                None => format!("given the condition {} (guidance w = {}) ", args.cond.as_deref().unwrap_or(""), args.cfg_scale),
            };
            (x, bundle.source, out, of)
        }
        (Some(checkpoint), Some(bundle)) => {
            let out = args.out.clone().unwrap_or_else(|| checkpoint.with_file_name(format!("samples-{what}.npy")));
            let of = match (shape.classes, shape.dim) {
                (0, 0) => String::new(),
                (0, _) => "unconditionally (the \"no condition\" entry; --cond V,… for a condition) ".to_string(),
                _ => "unconditionally (the \"no condition\" entry; --class K for a class) ".to_string(),
            };
            (bundle.units().generate(&fm_train::Request::new(bundle.generator(), &cfg))?.points, bundle.source, out, of)
        }
        _ => {
            let Resolved { flow, source, .. } = crate::resolve_exact(args.target.as_deref(), source.as_deref(), args.path, run.as_ref(), None)?;
            let dir = args.config.as_deref().map_or_else(|| RunDir::new("."), RunDir::of_run_file);
            let out = args.out.clone().unwrap_or_else(|| dir.file(&format!("samples-exact-{what}.npy")));
            let of = format!("of the exact flow to {} ({} path) ", flow.target().name(), flow.path());
            let path = flow.path();
            (fm_train::sample_on_path(&flow.on(parse_device(&device)?), path, source.as_ref(), &cfg)?, source, out, of)
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    fm_dist::io::write_points(&out, x.view())?;
    // The labels after the samples.
    let labels_out = labels_path(&out);
    write_labels(&labels_out, labels_written.as_deref())?;
    println!("sampled {} points {of}from {} with {} in {secs:.3} s", x.nrows(), source.name(), describe(&cfg));
    let mut written = vec![(if args.pairs { "pairs" } else { "samples" }, out.as_path())];
    if labels_written.is_some() {
        written.push(("labels", labels_out.as_path()));
    }
    print_written(&written);
    Ok(())
}

/// Where the labels of samples written to `out` go: `samples.npy` → `samples.labels.npy`.
pub fn labels_path(out: &std::path::Path) -> PathBuf {
    out.with_extension("labels.npy")
}
