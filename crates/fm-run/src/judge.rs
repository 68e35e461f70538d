//! `fm eval`'s work: how good samples, a model, or the exact flow are, judged against a target.

use crate::parse_target;
use crate::{exact, Error, EvalConfig, ModelBundle, Result, RunConfig};
use fm_dist::Target;
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;

/// What to judge, resolved over a run file: samples, a checkpoint (its likelihood, its field
/// error against the exact flow, its classes), the exact flow; any of them together.
#[derive(Debug, Clone, Default)]
pub struct EvalJob {
    /// A run file: its target, source, path, `[sample]` and `[eval]` sections are the defaults.
    pub run: Option<RunConfig>,
    /// Samples to judge (`.npy` or `.csv`).
    pub samples: Option<PathBuf>,
    /// A model to judge.
    pub checkpoint: Option<PathBuf>,
    /// Judge the exact flow of the (mixture) target by the likelihood code.
    pub oracle: bool,
    /// The target [default: the run file's, else the checkpoint's, else gmm3].
    pub target: Option<String>,
    /// The exact flow's source and path [default: the run file's].
    pub source: Option<String>,
    /// See [`EvalJob::source`].
    pub path: Option<fm_train::ProbabilityPath>,
    /// The judging settings, with the run file's section and the user's flags applied.
    pub eval: EvalConfig,
    /// What a checkpoint without fm's record cannot say.
    pub foreign: fm_model::checkpoint::LoadOptions,
    /// Seed of the fresh target samples.
    pub seed: u64,
    /// A conditional model's classes to judge one by one (`K`, `K,K`, `all`).
    pub class: Option<String>,
    /// The guidance scale of the classes judged.
    pub cfg_scale: f64,
    /// Each sample's `log q` under its proposal (`N × 1`, as `fm sample --log-q` writes) [default:
    /// `S.logq.npy` beside the samples, where it exists]: the samples are then also weighed
    /// against the target's density (effective sample size, log Z).
    pub log_q: Option<PathBuf>,
}

/// One finding of [`evaluate`], printed as it displays.
pub enum Finding {
    /// A heading and a judgement under it (sample quality, a likelihood, a field report, one class per line).
    Section(String, Vec<String>),
    /// A line saying what was not judged and why.
    Note(String),
    /// A note on how it was judged (what a record lacked, the exact flow's settings): stderr's.
    Aside(String),
    /// One more line of the section before it (a class judged).
    Line(String),
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Section(heading, lines) if lines.is_empty() => write!(f, "{heading}:"),
            Finding::Section(heading, lines) => write!(f, "{heading}:\n{}", lines.join("\n")),
            Finding::Note(line) | Finding::Aside(line) | Finding::Line(line) => f.write_str(line),
        }
    }
}

/// Judges what `job` names, in order: the samples (and their importance weights), the model (by
/// its samples for a one-step or MeanFlow model, else by its likelihood and field error), its
/// classes, the exact flow; each finding handed to `emit` as soon as it is made (what was
/// judged before an error is not lost).
///
/// # Errors
/// Unreadable files, a target of other classes than the model's, a guidance scale without
/// classes or of an untrained "no condition" entry, or the judging itself.
pub fn evaluate(job: &EvalJob, emit: &mut dyn FnMut(Finding)) -> Result<()> {
    let (run, cfg) = (job.run.as_ref(), &job.eval);
    fm_train::conditional::check_guidance_scale(job.cfg_scale).map_err(|e| Error::Invalid(format!("--cfg-scale: {e}")))?;
    let model = job.checkpoint.as_deref().map(|c| ModelBundle::load(c, "auto", None, &job.foreign)).transpose()?;
    let classes = match (&model, &job.class) {
        (Some(bundle), Some(spec)) => Some(bundle.classes(spec)?),
        _ => None,
    };
    if job.cfg_scale != 1.0 {
        match (&model, &classes) {
            (Some(bundle), Some(_)) => bundle.require_null_entry()?,
            _ => return Err(Error::Invalid("--cfg-scale guides the classes judged: give --class K (or all)".into())),
        }
    }
    let spec = crate::resolve_target(job.target.as_deref(), run, model.as_ref().and_then(|m| m.target.as_deref()));
    let target = parse_target(&spec).map_err(|source| Error::Spec { what: "target", source })?;
    if let (Some(bundle), Some(_)) = (&model, &classes) {
        // Judged class by class against a target of other classes, a model would be judged on
        // classes it never learnt (a checkpoint that records no target is judged against gmm3).
        let k = bundle.model.condition_shape().classes;
        if target.classes() != k {
            let unrecorded = job.target.is_none() && run.is_none() && bundle.target.is_none();
            return Err(Error::Invalid(format!(
                "the checkpoint's model has {k} classes and the target {} has {}: give --target (or --config with the run that trained it){}",
                target.name(),
                target.classes(),
                if unrecorded { "; the checkpoint records no target" } else { "" }
            )));
        }
    }
    let mut rng = StdRng::seed_from_u64(job.seed);
    if let Some(path) = &job.samples {
        // Read as a point cloud: non-empty, finite, and described (rows, header) in the report line.
        let samples = fm_dist::PointCloud::read(path)?;
        // log q asked for is checked before any work; one found beside the samples that does not
        // fit them is said, and the samples judged without it.
        let found = crate::log_q_path(path);
        let log_q = match &job.log_q {
            Some(file) => Some((read_log_q(file, samples.points().nrows())?, file.clone())),
            None if found.exists() => match read_log_q(&found, samples.points().nrows()) {
                Ok(values) => Some((values, found)),
                Err(e) => {
                    emit(Finding::Note(format!("no importance weights: {e}")));
                    None
                }
            },
            None => None,
        };
        if samples.points().ncols() != target.dim() {
            return Err(cannot_judge(path, format!("its points are {}-D and the target {} is {}-D", samples.points().ncols(), target.name(), target.dim())));
        }
        if target.has_sampler() {
            let q = cfg.measure(target.as_ref(), samples.points(), &mut rng).map_err(|e| cannot_judge(path, e))?;
            emit(Finding::Section(format!("quality of {} against {}", samples.describe(), target.name()), vec![q.to_string()]));
        } else {
            let hint = if log_q.is_none() { ": give their log q (fm sample --log-q writes it beside them) to weigh them" } else { "" };
            emit(Finding::Note(format!(
                "no sample quality (W2, shares) of {}: the target {} has no sampler to judge against{hint}",
                samples.describe(),
                target.name()
            )));
        }
        if let Some((values, file)) = log_q {
            let heading = format!("importance weights of the samples against {} (log q from {})", target.name(), file.display());
            emit(weighed(target.as_ref(), samples.points(), values.view(), heading, &mut rng).map_err(|e| cannot_judge(path, e))?);
        }
    }
    if let (Some(bundle), Some(path)) = (&model, &job.checkpoint) {
        judge_model(bundle, path, &spec, target.as_ref(), job, classes.is_some(), &mut rng)?.into_iter().for_each(&mut *emit);
    }
    if let (Some(bundle), Some(classes)) = (&model, &classes) {
        let sample = run.map_or_else(fm_train::SampleConfig::default, |r| r.sample.clone());
        let kl = if bundle.generator().is_flow() { format!(", KL on {} fresh class samples", cfg.kl_points) } else { String::new() };
        let heading = format!("per class of {} (guidance w = {}; {} samples by {}{kl})", target.name(), job.cfg_scale, cfg.w2_points, crate::describe(&sample));
        let request = fm_train::Request::new(bundle.generator(), &sample).guided(job.cfg_scale);
        emit(Finding::Section(heading, Vec::new()));
        for &class in classes {
            let q = fm_train::class_quality(&bundle.units(), target.as_ref(), class, &request, cfg.w2_points, cfg.kl_points, &cfg.likelihood, &mut rng)?;
            emit(Finding::Line(format!("  {q}")));
        }
    }
    if job.oracle && cfg.kl_points > 0 {
        let exact::Resolved { flow, source, notes } = exact::resolve(Some(&spec), job.source.as_deref(), job.path, run, None)?;
        notes.into_iter().for_each(|n| emit(Finding::Aside(format!("note: {n}"))));
        let kl = fm_train::kl_estimate(target.as_ref(), &flow, source.as_ref(), cfg.kl_points, &cfg.likelihood, &mut rng)?;
        // Near 0 by construction: printed in full, not rounded to 0.0000.
        emit(Finding::Section(
            format!("likelihood of the exact flow ({} path) against {}", flow.path(), target.name()),
            vec![format!(
                "  KL(target ‖ exact flow) {:.2e} nats (± {:.1e}; NLL {:.4}, entropy {:.4}; {} samples, {:.0} NFE, {:.2} s)",
                kl.kl, kl.kl_se, kl.nll, kl.entropy, kl.n, kl.nfe, kl.seconds
            )],
        ));
    }
    Ok(())
}

/// A `log q` file (`N × 1` floats, as `fm sample --log-q` writes) for `n` samples.
fn read_log_q(file: &std::path::Path, n: usize) -> Result<ndarray::Array1<f64>> {
    let bad = |m: String| Error::Invalid(format!("log q {}: {m}", file.display()));
    let bytes = std::fs::read(file).map_err(|source| Error::Io { what: "cannot read", path: file.into(), source })?;
    // An integer column (a labels file) would read as numbers: log q is floating point.
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]);
    if !["'<f", "'>f", "'|f", "'=f"].iter().any(|d| header.contains(d)) {
        return Err(bad("not a floating-point .npy (fm sample --log-q writes float64 N × 1)".into()));
    }
    let values = fm_dist::io::read_npy(file)?;
    if values.ncols() != 1 || values.nrows() != n {
        return Err(bad(format!("{} × {} values for {n} samples (one per sample, N × 1)", values.nrows(), values.ncols())));
    }
    Ok(values.column(0).to_owned())
}

/// Samples weighed against the target's density by their `log q`: ESS, `log Z` beside its exact
/// value, and, where the target has a sampler, the energy W2 to as many fresh target samples.
fn weighed(target: &dyn Target, x: ndarray::ArrayView2<f64>, log_q: ndarray::ArrayView1<f64>, heading: String, rng: &mut StdRng) -> Result<Finding> {
    let Some(density) = fm_dist::density_of(target) else {
        return Ok(Finding::Note(format!("no importance weights: the target {} has no density", target.name())));
    };
    let w = fm_dist::importance::ImportanceWeights::new(&*density, x, log_q)?;
    let s = w.summary();
    let mut lines = weight_lines(&s, density.log_normalizer());
    if target.has_sampler() {
        let reference = target.sample(x.nrows(), rng);
        lines.push(format!("  energy W2 {:.4} (to {} fresh target samples)", fm_dist::importance::energy_w2(&*density, x, reference.view())?, x.nrows()));
    }
    if let Some(mixture) = target.as_mixture() {
        // Each component's share under p, from the reweighted samples.
        let labels = mixture.most_probable_class(x)?;
        let weights = w.normalised();
        let worst = (0..mixture.n_components())
            .map(|k| (labels.iter().zip(&weights).filter(|(l, _)| **l == Some(k)).map(|(_, w)| w).sum::<f64>() - mixture.weights()[k]).abs())
            .fold(0.0, f64::max);
        lines.push(format!("  reweighted component shares: largest error {worst:.4}"));
    }
    Ok(Finding::Section(heading, lines))
}

/// The lines importance weights are reported by (`fm run`, `fm eval`): the ESS with `n`, and the
/// `log Z` estimate ± its standard error beside the exact value where known.
pub(crate) fn weight_lines(s: &fm_dist::importance::ImportanceSummary, exact: Option<f64>) -> Vec<String> {
    let exact = exact.map_or(String::new(), |z| format!(" (exact {z:.4})"));
    vec![format!("  ESS {:.4} of n = {} (normalised, Kish)", s.ess, s.n), format!("  log Z {:.4} ± {:.4}{exact}", s.log_z, s.log_z_se)]
}

/// A flow judged against a target known by its energy (its own density: a Boltzmann benchmark, a
/// user's energy): its samples, with their exact `log q` from the same solve, weighed by `p̃/q`.
fn model_weights(bundle: &ModelBundle, target: &dyn Target, job: &EvalJob, rng: &mut StdRng) -> Result<Option<Finding>> {
    if target.density().is_none() || job.eval.w2_points == 0 {
        return Ok(None);
    }
    let run_sample = job.run.as_ref().map_or_else(fm_train::SampleConfig::default, |r| r.sample.clone());
    let sample = fm_train::SampleConfig { n_samples: job.eval.w2_points, seed: job.seed, sde: None, ..run_sample };
    let (x, log_q) = bundle.units().sample_with_log_q(&sample)?;
    let heading =
        format!("importance weights of {} samples of the model against {} ({}, exact log q)", sample.n_samples, target.name(), crate::describe(&sample));
    weighed(target, x.view(), log_q.view(), heading, rng).map(Some)
}

fn cannot_judge(path: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("cannot judge {}: {e}", path.display()))
}

/// A model judged by its samples (one-step, MeanFlow), else by its likelihood and its field
/// error against the exact flow of its training setting.
fn judge_model(
    bundle: &ModelBundle,
    path: &std::path::Path,
    spec: &str,
    target: &dyn Target,
    job: &EvalJob,
    by_class: bool,
    rng: &mut StdRng,
) -> Result<Vec<Finding>> {
    let cfg = &job.eval;
    let generator = bundle.generator();
    if !generator.is_flow() && !target.has_sampler() {
        return Ok(vec![Finding::Note(format!(
            "no judgement of a {} model against {}: it has no sampler to compare with, and the model no exact log q to weigh by",
            generator.name(),
            target.name()
        ))]);
    }
    if !generator.is_flow() {
        // A one-step or MeanFlow model has no likelihood of its sampler here: its samples judge it,
        // in one step (a MeanFlow model: in its run file's number of jumps, with --config).
        let steps = generator.judged_steps(job.run.as_ref().map(|r| r.sample.steps));
        let sample = fm_train::SampleConfig { n_samples: cfg.w2_points.max(10_000), seed: job.seed, steps, ..fm_train::SampleConfig::one_step() };
        let x = bundle.units().generate(&fm_train::Request::new(generator, &sample))?.points;
        let q = cfg.measure(target, x.view(), rng).map_err(|e| cannot_judge(path, e))?;
        let s = if steps == 1 { "" } else { "s" };
        let heading = format!(
            "quality of {} samples of {} ({} model, {steps} step{s}: {steps} network evaluation{s} each) against {}",
            sample.n_samples,
            path.display(),
            generator.name(),
            target.name()
        );
        return Ok(vec![Finding::Section(heading, vec![q.to_string()])]);
    }
    if let Err(why) = bundle.require_null_entry() {
        // Its likelihood and field error would judge the "no condition" entry, never trained.
        return Ok(vec![Finding::Note(format!("no likelihood or field error of the \"no condition\" entry: {why}; --class judges each class"))]);
    }
    let mut out = Vec::new();
    let shape = bundle.model.condition_shape();
    // Weighed in the data's units, against the target's own density.
    out.extend(model_weights(bundle, target, job, rng)?);
    // A model trained on standardised file data is judged against a target with a density only
    // in the data's units; KL is the same in either units, so the target is carried to the model's.
    let standard_target;
    let target: &dyn Target = match &bundle.data_map {
        None => target,
        Some(map) => {
            standard_target = fm_dist::affine::Pushforward::new(parse_target(spec)?, map.inverse())?;
            &standard_target
        }
    };
    if cfg.kl_points > 0 && !target.has_sampler() {
        out.push(Finding::Note(format!(
            "no KL(target ‖ model): the target {} has no sampler to average over (its importance weights judge the model)",
            target.name()
        )));
    } else if cfg.kl_points > 0 {
        let mut kl =
            fm_train::kl_estimate(target, &*bundle.model, bundle.source.as_ref(), cfg.kl_points, &cfg.likelihood, rng).map_err(|e| cannot_judge(path, e))?;
        // NLL and entropy in the data's units: each log-density there is lower by log|det|.
        let log_det = bundle.data_map.as_ref().map_or(0.0, |m| m.log_det());
        (kl.nll, kl.entropy) = (kl.nll + log_det, kl.entropy + log_det);
        let entry = match (shape.classes > 0 && !by_class, shape.is_conditional()) {
            (true, _) => " (its \"no condition\" entry; --class all judges each class)",
            (false, true) => " (its \"no condition\" entry)",
            _ => "",
        };
        out.push(Finding::Section(format!("likelihood of {}{entry} against {}", path.display(), target.name()), vec![format!("  {kl}")]));
    }
    let objective = bundle.train.as_ref().ok().and_then(Option::as_ref).map(|t| &t.objective).filter(|o| !o.has_flow_matching_floor());
    if bundle.trained_on_pairs() {
        out.push(Finding::Note("no field error: the model learnt a teacher's pairs (reflow), whose flow is not the exact flow of independent pairs".into()));
    } else if let Some(objective) = objective {
        out.push(Finding::Note(format!(
            "no field error: objective {objective} does not regress on the path's velocity (any field that carries the source to the target minimises it)"
        )));
    } else if target.as_mixture().is_some() && bundle.data_map.is_none() {
        let report = match bundle.train_or_seed() {
            Ok((train, note)) => {
                out.extend(note.map(|n| Finding::Aside(format!("note: {n}"))));
                exact::field_report(&*bundle.model, target, bundle.source.as_ref(), &train, &exact::CURVE_TIMES, job.seed)?
            }
            Err(e) => Err(e.to_string()),
        };
        let heading = if shape.is_conditional() { "the \"no condition\" entry against the exact flow" } else { "against the exact flow" };
        match report {
            Ok(report) => out.push(Finding::Section(heading.into(), vec![report.to_string()])),
            Err(why) => out.push(Finding::Note(format!("no field error: {why}"))),
        }
    }
    Ok(out)
}
