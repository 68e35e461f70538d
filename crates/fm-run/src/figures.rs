//! `fm plot`'s work short of drawing: which run, checkpoint, target and sampler a figure uses,
//! every refusal before any work, and the points, paths and fields the figures show.

use crate::{exact, Error, ModelBundle, Result, RunConfig, RunDir};
use fm_dist::Target;
use fm_train::{Condition, Generated, GeneratedPaths, Request, SampleConfig};
use ndarray::Array2;
use std::path::PathBuf;

/// The figures `fm plot` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Target density beside generated samples (the seed's figure).
    Compare,
    /// Particles' paths from t = 0 to 1 over the target.
    Trajectories,
    /// The learned velocity field at five times (with `exact`: the exact field below).
    Field,
    /// The model's distance to the exact field over t (and where in space, for 2-D).
    FieldError,
    /// The model's log-density beside the target's.
    Density,
    /// Training loss over steps (energy evaluations for an energy-only run), from a run's metrics.csv.
    Loss,
    /// Samples flowing from the source to the target, as a GIF.
    Animation,
    /// One class's samples at several guidance scales.
    Guidance,
    /// Histograms of the energy of the model's samples, raw and reweighted, and of exact samples.
    Energy,
}

impl Figure {
    /// Every figure, in the order `fm plot --help` lists them.
    pub const ALL: [Figure; 9] = [
        Figure::Compare,
        Figure::Trajectories,
        Figure::Field,
        Figure::FieldError,
        Figure::Density,
        Figure::Loss,
        Figure::Animation,
        Figure::Guidance,
        Figure::Energy,
    ];

    /// What it shows, in one line (the command line's help).
    pub fn help(self) -> &'static str {
        match self {
            Figure::Compare => "Target density beside generated samples (the seed's figure).",
            Figure::Trajectories => "Particles' paths from t = 0 to 1 over the target, coloured by time (by class for a conditional checkpoint).",
            Figure::Field => {
                "The learned velocity field at t = 0, 0.25, 0.5, 0.75, 1 (--exact: with the exact field of a Gaussian-mixture target below)."
            }
            Figure::FieldError => {
                "The model's distance to the exact field of a Gaussian-mixture target over t (FILE), and for 2-D where in space it sits (v − v* as arrows at five times, FILE-map.png)."
            }
            Figure::Density => "The model's log-density (exact likelihood) beside the target's.",
            Figure::Loss => "Training loss over steps, from a run's metrics.csv (an energy-only run's, with its ESS and log Z, against its energy evaluations).",
            Figure::Animation => "Animated GIF of samples flowing from the source to the target.",
            Figure::Guidance => "One class's samples at several classifier-free guidance scales (a conditional checkpoint; --class K, --scales).",
            Figure::Energy => {
                "Histograms of the energy −log p̃ of the model's samples, of the same samples reweighted by p̃/q (their exact log q), and of exact target samples (a target with a density)."
            }
        }
    }

    /// The figure's name in file names and on the command line (`field-error`).
    pub fn name(self) -> &'static str {
        match self {
            Figure::Compare => "compare",
            Figure::Trajectories => "trajectories",
            Figure::Field => "field",
            Figure::FieldError => "field-error",
            Figure::Density => "density",
            Figure::Loss => "loss",
            Figure::Animation => "animation",
            Figure::Guidance => "guidance",
            Figure::Energy => "energy",
        }
    }

    /// Whether it draws samples or paths (an SDE, classes and guidance apply).
    fn samples(self) -> bool {
        matches!(self, Figure::Compare | Figure::Trajectories | Figure::Animation | Figure::Guidance)
    }
}

/// What to draw, as a command line gives it.
#[derive(Debug, Clone)]
pub struct PlotJob {
    /// The figure.
    pub figure: Figure,
    /// The run file (its target, `[sample]` section and folder are the defaults).
    pub config: Option<PathBuf>,
    /// The run folder [default: the run file's folder, else runs/seed].
    pub run: Option<PathBuf>,
    /// The checkpoint [default: RUN/model.safetensors].
    pub checkpoint: Option<PathBuf>,
    /// The target [default: the run file's, else the checkpoint's, else gmm3].
    pub target: Option<String>,
    /// The output file [default: RUN/FIGURE.png, .gif for the animation].
    pub out: Option<PathBuf>,
    /// Points to draw: samples for compare (10,000), paths for trajectories (300) and the
    /// animation (2,000), the guidance figure's samples per panel (2,000), grid cells along x for
    /// the density (120).
    pub points: Option<usize>,
    /// Integration steps, where given (over the run file's `[sample]`; else the model's kind chooses).
    pub steps: Option<usize>,
    /// The integration method, where given.
    pub method: Option<fm_ode::Method>,
    /// `--sde`, where given: an SDE, or `None` for the ODE.
    pub sde: Option<Option<fm_train::sde::Sde>>,
    /// The two coordinates drawn (0-based).
    pub coords: Vec<usize>,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// The field figure with the exact field (no model needed).
    pub exact: bool,
    /// The exact field's path [default: the run's, else linear].
    pub path: Option<fm_train::ProbabilityPath>,
    /// What a checkpoint without fm's record cannot say (the run file's `[model]` is added).
    pub foreign: fm_model::checkpoint::LoadOptions,
    /// A conditional model's classes (`K`, `K,K`, `all`) [default: all; the guidance figure's: 0].
    pub class: Option<String>,
    /// The guidance scale of compare and trajectories.
    pub cfg_scale: f64,
    /// The guidance figure's scales.
    pub scales: Vec<f64>,
}

/// What the energy figure draws ([`Plot::energies`]).
pub struct Energies {
    /// `−log p̃` of each generated sample.
    pub samples: ndarray::Array1<f64>,
    /// Their self-normalised importance weights `p̃/q` (summing to 1).
    pub weights: ndarray::Array1<f64>,
    /// `−log p̃` of as many exact target samples; `None` for a target without a sampler.
    pub reference: Option<ndarray::Array1<f64>>,
    /// The density's exact `log Z`, where known.
    pub log_z: Option<f64>,
    /// Generated samples left out: those where `p̃ = 0` (no energy; their weight is 0).
    pub left_out: usize,
    /// The weights' ESS and `log Z` estimate.
    pub summary: fm_dist::importance::ImportanceSummary,
}

/// One panel of the guidance figure: its scale and its samples.
pub type Panel = (f64, Array2<f64>);

/// A figure resolved: where it goes and what it is drawn from, every check passed.
pub struct Plot {
    /// The figure.
    pub figure: Figure,
    /// The run folder.
    pub dir: RunDir,
    /// The file to write.
    pub out: PathBuf,
    /// The two coordinates drawn.
    pub coords: (usize, usize),
    /// The model (none for the loss, and for the exact field when there is no model).
    pub bundle: Option<ModelBundle>,
    /// The target drawn against (none for the loss and the exact field).
    pub target: Option<Box<dyn Target>>,
    /// The exact flow of the field figure with `exact`, or of the field-error figure.
    pub flow: Option<fm_train::ExactFlow>,
    /// The sampler.
    pub sample: SampleConfig,
    /// The classes drawn (a class-conditional model).
    pub classes: Option<Vec<usize>>,
    /// The guidance scale of compare and trajectories.
    pub cfg_scale: f64,
    /// The guidance figure's scales.
    pub scales: Vec<f64>,
    /// Lines for the user (the exact flow's settings, a record that was missing).
    pub notes: Vec<String>,
}

/// Resolves `job` and checks everything a figure needs before any work: the run folder, run
/// file, checkpoint and target, the sampler (the model's defaults, an SDE only for figures of
/// samples), the classes and scales, the "no condition" entry where a figure uses it.
///
/// # Errors
/// A setting that does not apply to the figure, or that the model refuses; unreadable files.
pub fn prepare_plot(job: &PlotJob) -> Result<Plot> {
    let invalid = |m: String| Err(Error::Invalid(m));
    // The run folder: --run, else the run file's own folder (as for fm inspect/export), else runs/seed.
    let from_file = job.config.as_deref().filter(|_| job.run.is_none());
    let dir = match (&job.run, from_file) {
        (Some(run), _) => RunDir::new(run),
        (None, Some(config)) => RunDir::of_run_file(config),
        (None, None) => RunDir::new("runs/seed"),
    };
    let config = job.config.clone().or_else(|| Some(dir.file(RunDir::CONFIG)).filter(|p| p.exists()));
    let run = config.as_deref().map(RunConfig::read).transpose()?;
    let foreign = fm_model::checkpoint::LoadOptions { described: run.as_ref().map(|r| r.model.clone()), ..job.foreign.clone() };
    let name = match job.figure {
        Figure::Field if job.exact => "field-exact",
        figure => figure.name(),
    };
    let ext = if job.figure == Figure::Animation { "gif" } else { "png" };
    let out = job.out.clone().unwrap_or_else(|| dir.file(&format!("{name}.{ext}")));
    if job.exact && job.figure != Figure::Field {
        return invalid("--exact draws the exact field: it goes with fm plot field".into());
    }
    let coords = match job.coords[..] {
        [i, j] => (i, j),
        _ => return invalid(format!("--coords takes two coordinates, e.g. 0,1 (got {:?})", job.coords)),
    };
    let sample = run.as_ref().map_or_else(SampleConfig::default, |r| r.sample.clone());
    let mut plot = Plot {
        figure: job.figure,
        dir,
        out,
        coords,
        bundle: None,
        target: None,
        flow: None,
        sample,
        classes: None,
        cfg_scale: job.cfg_scale,
        scales: job.scales.clone(),
        notes: Vec::new(),
    };
    if job.figure == Figure::Loss {
        return Ok(plot);
    }
    let ckpt = match from_file {
        Some(config) => crate::checkpoint_or_run(job.checkpoint.as_deref(), Some(config), "--checkpoint C or --run DIR")?,
        None => job.checkpoint.clone().unwrap_or_else(|| plot.dir.file(RunDir::MODEL)),
    };
    if job.exact {
        if ckpt.exists() || job.checkpoint.is_some() {
            plot.bundle = Some(ModelBundle::load(&ckpt, &job.device, None, &foreign)?);
        }
        if plot.bundle.as_ref().is_some_and(|m| m.data_map.is_some()) {
            return invalid("the model was trained on standardised file data: there is no exact field to draw beside it".into());
        }
        let resolved = exact::resolve(job.target.as_deref(), None, job.path, run.as_ref(), plot.bundle.as_ref())?;
        (plot.flow, plot.notes) = (Some(resolved.flow), resolved.notes);
        return Ok(plot);
    }
    let bundle = ModelBundle::load(&ckpt, &job.device, None, &foreign)?;
    if job.target.is_none() && run.is_none() && bundle.target.is_none() {
        // A figure against a target the model never saw would mislead: the seed's is not assumed.
        return invalid("the checkpoint names no target: give --target".into());
    }
    let spec = crate::resolve_target(job.target.as_deref(), run.as_ref(), bundle.target.as_deref());
    let target = crate::parse_target(&spec).map_err(|source| Error::Spec { what: "target", source })?;
    if target.dim() != bundle.model.dim() {
        return invalid(format!("the target {} is {}-D but the model is {}-D", target.name(), target.dim(), bundle.model.dim()));
    }
    check_sampler(job, &bundle, &mut plot.sample)?;
    plot.classes = check_classes(job, &bundle, target.as_ref())?;
    if target.dim() < 2 && job.figure != Figure::Energy {
        return invalid(format!("figures draw two coordinates and the data are {}-D (fm sample and fm eval work in any dimension)", target.dim()));
    }
    if job.figure == Figure::FieldError {
        plot.flow = Some(field_error_flow(&bundle, run.as_ref(), target.as_ref())?);
    }
    (plot.bundle, plot.target) = (Some(bundle), Some(target));
    Ok(plot)
}

/// The sampler of the figure: the run file's, the user's flags, the model's defaults; an SDE
/// only for figures of samples, and only of a model it keeps the marginals of.
fn check_sampler(job: &PlotJob, bundle: &ModelBundle, cfg: &mut SampleConfig) -> Result<()> {
    cfg.steps = job.steps.unwrap_or(cfg.steps);
    cfg.method = job.method.unwrap_or(cfg.method);
    cfg.sde = job.sde.unwrap_or(cfg.sde);
    if cfg.sde.is_some() && !job.figure.samples() {
        return Err(Error::Invalid(format!("--sde samples: it goes with fm plot compare, trajectories, animation or guidance, not {}", job.figure.name())));
    }
    if let Some(sde) = &cfg.sde {
        bundle.check_sde(sde)?;
    }
    bundle.default_steps(cfg, job.steps.is_some(), job.method.is_some());
    if matches!(job.figure, Figure::Field | Figure::FieldError | Figure::Density | Figure::Animation | Figure::Energy) {
        // These draw the model without a condition: a conditional model's "no condition" entry.
        bundle.require_null_entry()?;
    }
    if matches!(job.figure, Figure::Field | Figure::FieldError | Figure::Density | Figure::Energy) {
        bundle.require_flow("the field, field-error, density and energy figures")?;
    }
    cfg.n_samples = job.points.unwrap_or(10_000);
    Ok(())
}

/// The classes drawn (a class-conditional model's figures are drawn class by class), after the
/// checks of `--class`, `--cfg-scale` and `--scales` against the figure, the model and the target.
fn check_classes(job: &PlotJob, bundle: &ModelBundle, target: &dyn Target) -> Result<Option<Vec<usize>>> {
    let invalid = |m: String| Err(Error::Invalid(m));
    fm_train::conditional::check_guidance_scale(job.cfg_scale).map_err(|e| Error::Invalid(format!("--cfg-scale: {e}")))?;
    if !job.scales.iter().all(|w| w.is_finite()) {
        return invalid(format!("--scales must be finite numbers, got {:?}", job.scales));
    }
    if job.class.is_some() && !matches!(job.figure, Figure::Compare | Figure::Trajectories | Figure::Guidance) {
        return invalid(format!("--class draws a conditional checkpoint's classes in the compare, trajectories and guidance figures, not in {:?}", job.figure));
    }
    let k = bundle.model.condition_shape().classes;
    let classes = match (&job.class, k) {
        (Some(spec), _) => Some(crate::parse_classes(spec, k)?),
        (None, 0) => None,
        (None, k) => Some((0..k).collect::<Vec<_>>()),
    };
    let weighed = target.class_weights().len();
    // A class the target does not weigh would be given no points: refused instead.
    if let Some(c) = classes.iter().flatten().find(|&&c| weighed > 0 && c >= weighed) {
        return invalid(format!("class {c} is not a class of the target {} (it has {weighed})", target.name()));
    }
    if job.figure == Figure::Guidance && k == 0 {
        return invalid("the guidance figure needs a class-conditional checkpoint (fm train --condition labels)".into());
    }
    if job.figure == Figure::Guidance && job.class.is_some() && classes.as_ref().is_some_and(|c| c.len() != 1) {
        return invalid("the guidance figure draws one class: give --class K".into());
    }
    if job.cfg_scale != 1.0 && k == 0 {
        return invalid("--cfg-scale guides a class-conditional checkpoint's classes; this one is unconditional".into());
    }
    if job.cfg_scale != 1.0 || (job.figure == Figure::Guidance && job.scales.iter().any(|&w| w != 1.0)) {
        bundle.require_null_entry()?;
    }
    Ok(classes)
}

/// The exact flow of the model's training setting, for its field error.
fn field_error_flow(bundle: &ModelBundle, run: Option<&RunConfig>, target: &dyn Target) -> Result<fm_train::ExactFlow> {
    if bundle.data_map.is_some() {
        return Err(Error::Invalid("the model was trained on standardised file data: there is no exact field to compare it with".into()));
    }
    if bundle.trained_on_pairs() {
        return Err(Error::Invalid("the model learnt a teacher's pairs (reflow): its flow is not the exact flow of independent pairs".into()));
    }
    let train = match run {
        Some(r) => r.train.clone(),
        None => bundle.train_or_seed()?.0,
    };
    Ok(fm_train::ExactFlow::for_training(target, bundle.source.as_ref(), train.path, train.coupling)?)
}

impl Plot {
    /// The model: [`prepare_plot`] loads it for every figure of a model.
    ///
    /// # Errors
    /// For the loss and the exact field alone, which have none.
    pub fn model(&self) -> Result<&ModelBundle> {
        self.bundle.as_ref().ok_or_else(|| Error::Invalid(format!("the {} figure has no model", self.figure.name())))
    }

    /// The target: [`prepare_plot`] resolves it for every figure of a model.
    ///
    /// # Errors
    /// For the loss and the exact field, which have none.
    pub fn target(&self) -> Result<&dyn Target> {
        self.target.as_deref().ok_or_else(|| Error::Invalid(format!("the {} figure has no target", self.figure.name())))
    }

    /// `n` points split among the classes drawn in proportion to their weights in the target
    /// (together they follow it; equal shares where it does not weigh its classes).
    fn counts(&self, n: usize) -> Result<Option<Vec<(usize, usize)>>> {
        let Some(classes) = self.classes.as_ref() else { return Ok(None) };
        let all = self.target()?.class_weights();
        let weights: Vec<f64> = classes.iter().map(|&c| all.get(c).copied().unwrap_or(1.0)).collect();
        Ok(Some(fm_train::counts_by_weight(n, &weights).into_iter().map(|(i, k)| (classes[i], k)).collect()))
    }

    /// The compare figure's samples (by class, guided, for a class-conditional model).
    ///
    /// # Errors
    /// The sampling failed.
    pub fn samples(&self) -> Result<Generated> {
        let model = self.model()?;
        let request = Request::new(model.generator(), &self.sample);
        Ok(match self.counts(self.sample.n_samples)? {
            None => model.units().generate(&request)?,
            Some(counts) => model.units().generate(&request.given(Condition::Classes(&counts)).guided(self.cfg_scale))?,
        })
    }

    /// The energy figure's values: the energies `−log p̃` of the model's samples (with their exact
    /// `log q`, one forward solve), their self-normalised importance weights, the energies of as
    /// many exact target samples, and the weights' ESS and `log Z`.
    ///
    /// # Errors
    /// A target without a density; the sampler's and the density's failures.
    pub fn energies(&self) -> Result<Energies> {
        let target = self.target()?;
        let density =
            fm_dist::density_of(target).ok_or_else(|| Error::Invalid(format!("the target {} has no density: it has no energy to draw", target.name())))?;
        let (x, log_q) = self.model()?.units().sample_with_log_q(&self.sample)?;
        let weights = fm_dist::importance::ImportanceWeights::new(&*density, x.view(), log_q.view())?;
        let exact =
            target.has_sampler().then(|| target.sample(x.nrows(), &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(self.sample.seed ^ 0xe4e7)));
        let reference = match exact {
            Some(exact) => Some(density.log_density(exact.view())?.iter().filter(|l| l.is_finite()).map(|l| -l).collect()),
            None => None,
        };
        // −log p̃ = −(log w + log q). Points of zero density have no energy to draw (their weight
        // is 0): left out, counted.
        let energy = -weights.log_w.clone() - &log_q;
        let keep: Vec<bool> = energy.iter().map(|e| e.is_finite()).collect();
        let kept = |v: &ndarray::Array1<f64>| v.iter().zip(&keep).filter(|(_, k)| **k).map(|(v, _)| *v).collect();
        Ok(Energies {
            samples: kept(&energy),
            weights: kept(&weights.normalised()),
            reference,
            log_z: density.log_normalizer(),
            left_out: keep.iter().filter(|k| !**k).count(),
            summary: weights.summary(),
        })
    }

    /// `n` paths from t = 0 to 1: by class and guided for a class-conditional model's
    /// trajectories; the animation's without a condition.
    ///
    /// # Errors
    /// The sampling failed.
    pub fn paths(&self, n: usize) -> Result<GeneratedPaths> {
        let model = self.model()?;
        let request = Request::new(model.generator(), &self.sample);
        let counts = if self.figure == Figure::Trajectories { self.counts(n)? } else { None };
        Ok(match counts {
            None => model.units().generate_paths(&request, n)?,
            Some(counts) => model.units().generate_paths(&request.given(Condition::Classes(&counts)).guided(self.cfg_scale), n)?,
        })
    }

    /// The guidance figure's class (the one `--class` named, else 0) and one sample set of `n`
    /// points per scale.
    ///
    /// # Errors
    /// The sampling failed.
    pub fn guidance(&self, n: usize) -> Result<(usize, Vec<Panel>)> {
        let model = self.model()?;
        let class = self.classes.as_ref().filter(|c| c.len() == 1).map_or(0, |c| c[0]);
        let cfg = SampleConfig { n_samples: n, ..self.sample.clone() };
        let request = Request::new(model.generator(), &cfg).given(Condition::Class(class));
        let panels = self.scales.iter().map(|&w| Ok((w, model.units().generate(&request.clone().guided(w))?.points))).collect::<Result<_>>()?;
        Ok((class, panels))
    }

    /// A standardised model's field is drawn around its data (its standard-normal source box
    /// would be far from them), through their mean for the coordinates not drawn: the ranges of
    /// the two coordinates and that point.
    pub fn data_frame(&self) -> Option<(std::ops::Range<f64>, std::ops::Range<f64>, Vec<f64>)> {
        let m = self.bundle.as_ref()?.data_map.as_ref()?;
        let range = |i: usize| m.shift[i] - 3.0 * m.scale[i]..m.shift[i] + 3.0 * m.scale[i];
        Some((range(self.coords.0), range(self.coords.1), m.shift.clone()))
    }
}
