//! `fm sample`'s work: new points from a checkpoint (or the exact flow of a mixture target), under
//! a condition and a guidance scale, or as a teacher's pairs; every refusal before any work.

use crate::{exact, Error, ModelBundle, Result, RunConfig, RunDir};
use fm_train::{Condition, Request, SampleConfig};
use ndarray::Array2;
use std::path::{Path, PathBuf};

/// What to sample: the settings a command line gives, resolved over a run file's.
#[derive(Debug, Clone, Default)]
pub struct SampleJob {
    /// A run file: its `[sample]` section, source, device (and, for the exact flow, target and
    /// path) are the defaults where the job leaves them out.
    pub run: Option<RunConfig>,
    /// Where the run file is: its folder holds the exact flow's default output.
    pub run_file: Option<PathBuf>,
    /// The checkpoint; `None` samples the exact flow of [`SampleJob::target`] (no model).
    pub checkpoint: Option<PathBuf>,
    /// The exact flow's target and path [default: the run file's, else gmm3 and linear].
    pub target: Option<String>,
    /// The exact flow's probability path.
    pub path: Option<fm_train::ProbabilityPath>,
    /// The source [default: the checkpoint's record, else the run file's, else `normal:D`].
    pub source: Option<String>,
    /// `auto`, `cpu`, `cuda`, `cuda:N` [default: the run file's, else `auto`].
    pub device: Option<String>,
    /// The sampler, with the run file's section and the user's flags applied.
    pub sample: SampleConfig,
    /// Whether the user gave the steps and the method (otherwise the model's kind chooses).
    pub steps_given: bool,
    /// See [`SampleJob::steps_given`].
    pub method_given: bool,
    /// What a checkpoint without fm's record cannot say.
    pub foreign: fm_model::checkpoint::LoadOptions,
    /// Write `[x0 | x1]` pairs (a reflow teacher's).
    pub pairs: bool,
    /// A class-conditional model's classes: `K`, `K,K` or `all` (`--samples` of each).
    pub class: Option<String>,
    /// A model of condition vectors: its condition, comma-separated.
    pub cond: Option<String>,
    /// The classifier-free guidance scale (1: the plain conditional field).
    pub cfg_scale: f64,
    /// The output file [default: beside the checkpoint, named for the sampler and condition].
    pub out: Option<PathBuf>,
    /// Also each sample's exact `log q` under the model (a flow), from the same forward solve.
    pub log_q: bool,
}

/// What [`sample`] generated.
pub struct Sampled {
    /// The points (a teacher's pairs: `[x0 | x1]`), in the data's units.
    pub points: Array2<f64>,
    /// Each row's class, when classes were asked for.
    pub labels: Option<Vec<usize>>,
    /// Each row's `log q` (nats, in the samples' units), when asked for.
    pub log_q: Option<ndarray::Array1<f64>>,
    /// The file to write them to.
    pub out: PathBuf,
    /// The source's name.
    pub source: String,
    /// What they are of, for the report line ("of class 0 (guidance w = 2) ", or empty).
    pub of: String,
    /// The sampler as it ran.
    pub sample: SampleConfig,
    /// Lines for the user: settings outside what the model was trained on, the exact flow's notes.
    pub warnings: Vec<String>,
    /// Seconds the sampling took (the model loaded and checked before).
    pub seconds: f64,
}

/// The classes `spec` names (`all`, or distinct comma-separated class numbers below `classes`).
///
/// # Errors
/// A model without classes, a class out of range or named twice, or a word that is not a number.
pub fn parse_classes(spec: &str, classes: usize) -> Result<Vec<usize>> {
    let bad = |m: String| Err(Error::Invalid(format!("--class {spec}: {m}")));
    if classes == 0 {
        return bad("the checkpoint is not conditioned on classes (train one with --condition labels)".into());
    }
    if spec.trim().eq_ignore_ascii_case("all") {
        return Ok((0..classes).collect());
    }
    let mut out = Vec::new();
    for k in spec.split(',').map(str::trim) {
        let Ok(c) = k.parse::<usize>() else { return bad(format!("'{k}' is not a class number (give K, K,K or all)")) };
        if c >= classes {
            return bad(format!("class {c} is out of range: the checkpoint has {classes} classes, 0 to {}", classes - 1));
        }
        if out.contains(&c) {
            return bad(format!("class {c} is named twice"));
        }
        out.push(c);
    }
    Ok(out)
}

/// "100 euler steps", "dopri5 (rtol 1e-5, atol 1e-5)" or the SDE's steps and diffusion.
pub fn describe(cfg: &SampleConfig) -> String {
    if let Some(sde) = cfg.sde {
        format!("{} Euler–Maruyama steps of the SDE with diffusion {sde}", cfg.steps)
    } else if cfg.method.is_adaptive() {
        format!("{} (rtol {:e}, atol {:e})", cfg.method, cfg.rtol, cfg.atol)
    } else {
        format!("{} {} step{}", cfg.steps, cfg.method, if cfg.steps == 1 { "" } else { "s" })
    }
}

/// The sampler's part of a file name: `euler-100`, `dopri5`, `sde-sigma-1-100`.
fn sampler_name(cfg: &SampleConfig) -> String {
    match cfg.sde {
        Some(sde) => format!("sde-{}-{}-{}", sde.form.name(), sde.norm, cfg.steps),
        None if cfg.method.is_adaptive() => format!("{}", cfg.method),
        None => format!("{}-{}", cfg.method, cfg.steps),
    }
}

/// Samples as `job` says: checks every setting against the model before any work, then
/// generates through one [`Request`].
///
/// # Errors
/// A setting out of range, a condition the model does not take, guidance without a condition,
/// an untrained "no condition" entry asked for, pairs of a model that is not a flow in the data's
/// units, an unreadable checkpoint, or the sampling itself.
pub fn sample(job: &SampleJob) -> Result<Sampled> {
    let run = job.run.as_ref();
    let mut cfg = job.sample.clone();
    cfg.validate()?;
    fm_train::conditional::check_guidance_scale(job.cfg_scale).map_err(|e| Error::Invalid(format!("--cfg-scale: {e}")))?;
    let device = job.device.clone().or_else(|| run.map(|r| r.device.clone())).unwrap_or_else(|| "auto".into());
    let source = job.source.clone().or_else(|| run.map(|r| r.source.clone()));
    let cond = job.cond.as_deref().map(parse_values).transpose()?;
    let Some(checkpoint) = &job.checkpoint else { return sample_exact(job, &cfg, &device, source.as_deref()) };
    let bundle = ModelBundle::load(checkpoint, &device, source.as_deref(), &job.foreign)?;
    bundle.default_steps(&mut cfg, job.steps_given, job.method_given);
    bundle.generator().check(&cfg)?;
    if let Some(sde) = &cfg.sde {
        bundle.check_sde(sde)?;
    }
    let classes = job.class.as_deref().map(|spec| bundle.classes(spec)).transpose()?;
    let warnings = bundle.check_condition(classes.as_deref(), cond.as_deref(), job.cfg_scale)?;
    cfg.validate()?;
    let what = sampler_name(&cfg);
    let name = |kind: &str, suffix: &str| job.out.clone().unwrap_or_else(|| checkpoint.with_file_name(format!("{kind}-{what}{suffix}.npy")));
    let t0 = std::time::Instant::now();
    if job.pairs {
        bundle.require_pairs()?;
        let pairs = fm_train::draw_pairs(&*bundle.model, bundle.source.as_ref(), &cfg)?;
        let (out, of, seconds) = (name("pairs", ""), "and their sources, as pairs, ".to_string(), t0.elapsed().as_secs_f64());
        return Ok(Sampled { points: pairs.to_array(), labels: None, log_q: None, out, source: bundle.source.name(), of, sample: cfg, warnings, seconds });
    }
    let counts: Vec<(usize, usize)> = classes.iter().flatten().map(|&c| (c, cfg.n_samples)).collect();
    let w = job.cfg_scale;
    let guidance = if w == 1.0 { String::new() } else { format!("-w{w}") };
    let list = |sep: &str| counts.iter().map(|(c, _)| c.to_string()).collect::<Vec<_>>().join(sep);
    let shape = bundle.model.condition_shape();
    let (condition, suffix, of) = match (&cond, &classes) {
        (Some(v), _) => {
            (Condition::Values(v), format!("-cond{guidance}"), format!("given the condition {} (guidance w = {w}) ", job.cond.as_deref().unwrap_or("")))
        }
        (None, Some(c)) => {
            let all = job.class.as_deref().is_some_and(|s| s.trim().eq_ignore_ascii_case("all"));
            let suffix = if all { format!("-classall{guidance}") } else { format!("-class{}{guidance}", list("_")) };
            (Condition::Classes(&counts), suffix, format!("of class{} {} (guidance w = {w}) ", if c.len() == 1 { "" } else { "es" }, list(", ")))
        }
        (None, None) => {
            let of = match (shape.classes, shape.dim) {
                (0, 0) => String::new(),
                (0, _) => "unconditionally (the \"no condition\" entry; --cond V,… for a condition) ".to_string(),
                _ => "unconditionally (the \"no condition\" entry; --class K for a class) ".to_string(),
            };
            (Condition::None, String::new(), of)
        }
    };
    let request = Request::new(bundle.generator(), &cfg).given(condition).guided(w);
    let generated = bundle.units().generate(&if job.log_q { request.with_log_q() } else { request })?;
    let (points, labels, log_q, seconds) = (generated.points, generated.labels, generated.log_q, t0.elapsed().as_secs_f64());
    Ok(Sampled { points, labels, log_q, out: name("samples", &suffix), source: bundle.source.name(), of, sample: cfg, warnings, seconds })
}

/// The exact flow's samples (no model).
fn sample_exact(job: &SampleJob, cfg: &SampleConfig, device: &str, source: Option<&str>) -> Result<Sampled> {
    if job.pairs || job.class.is_some() || job.cond.is_some() || job.cfg_scale != 1.0 || job.log_q {
        return Err(Error::Invalid("the exact flow takes no --pairs, --class, --cond, --cfg-scale or --log-q".into()));
    }
    let exact::Resolved { flow, source, notes } = exact::resolve(job.target.as_deref(), source, job.path, job.run.as_ref(), None)?;
    let dir = job.run_file.as_deref().map_or_else(|| RunDir::new("."), RunDir::of_run_file);
    let out = job.out.clone().unwrap_or_else(|| dir.file(&format!("samples-exact-{}.npy", sampler_name(cfg))));
    let of = format!("of the exact flow to {} ({} path) ", fm_dist::Target::name(flow.target()), flow.path());
    let (path, t0) = (flow.path(), std::time::Instant::now());
    let points = fm_train::sample_on_path(&flow.on(fm_model::parse_device(device)?), path, source.as_ref(), cfg)?;
    let seconds = t0.elapsed().as_secs_f64();
    Ok(Sampled { points, labels: None, log_q: None, out, source: source.name(), of, sample: cfg.clone(), warnings: notes, seconds })
}

/// `V,V,…` as numbers.
fn parse_values(spec: &str) -> Result<Vec<f64>> {
    spec.split(',').map(|x| x.trim().parse::<f64>().map_err(|_| Error::Invalid(format!("--cond {spec}: '{}' is not a number", x.trim())))).collect()
}

/// Where the labels of samples written to `out` go: `samples.npy` → `samples.labels.npy`.
pub fn labels_path(out: &Path) -> PathBuf {
    out.with_extension("labels.npy")
}

/// Where the `log q` of samples written to `out` goes: `S.npy` → `S.logq.npy`.
pub fn log_q_path(out: &Path) -> PathBuf {
    out.with_extension("logq.npy")
}

/// Writes `sampled`'s points to its file, then its labels and `log q` beside them (removing
/// files of an earlier run's that are not these samples'); returns what was written.
///
/// # Errors
/// A file that cannot be written or removed.
pub fn write_sampled(sampled: &Sampled) -> Result<Vec<(&'static str, PathBuf)>> {
    fm_dist::io::write_points(&sampled.out, sampled.points.view())?;
    let (labels, log_q) = (labels_path(&sampled.out), log_q_path(&sampled.out));
    crate::write_labels(&labels, sampled.labels.as_deref())?;
    match &sampled.log_q {
        Some(values) => fm_dist::io::write_npy(&log_q, values.view().insert_axis(ndarray::Axis(1)))?,
        None => crate::finish::remove_stale(&log_q)?,
    }
    let mut written = vec![("samples", sampled.out.clone())];
    written.extend(sampled.labels.is_some().then_some(("labels", labels)));
    written.extend(sampled.log_q.is_some().then_some(("log q", log_q)));
    Ok(written)
}
