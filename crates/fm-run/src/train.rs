//! Training a run into its folder.

use crate::{parse_source, parse_target};
use crate::{seeds, Error, MetricsRow, Result, RunConfig, RunDir, RunLock};
use fm_dist::affine::{standard_source, Affine, Pushforward};
use fm_dist::metrics::Estimate;
use fm_dist::{PointCloud, Target};
use fm_model::{checkpoint, parse_device, Network};
use fm_train::{Checkpoint, DataUnits, Progress, ProgressBarReporter, Resume, Tracker, TrainHooks, TrainReport};
use std::cell::{Cell, RefCell};
use std::sync::atomic::AtomicBool;

/// How [`train_run`] runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct TrainOptions<'a> {
    /// Continue from the folder's training state when there is one.
    pub resume: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Read after every step: once set, the run checkpoints and returns [`Error::Interrupted`].
    pub stop: Option<&'a AtomicBool>,
}

/// A finished training run.
pub struct Trained {
    /// Held until the caller has written everything into the run folder.
    pub lock: RunLock,
    /// The model to sample from (the EMA's weights when the run keeps an average), in standard
    /// units when [`Trained::data_map`] is set.
    pub model: Network,
    /// The target the run learnt, in the data's units.
    pub target: Box<dyn Target>,
    /// The source the model starts from (standard units when [`Trained::data_map`] is set).
    pub source: Box<dyn Target>,
    /// The standardisation of a file target, `x = shift + scale ⊙ z`: the model learnt `z`.
    pub data_map: Option<Affine>,
    /// What training measured.
    pub report: TrainReport,
    /// The loss floor of the setting, where the exact flow covers it.
    pub loss_floor: Option<Estimate>,
    /// How the model generates (from the run's objective).
    pub generator: fm_train::Generator,
    /// The probability path it was trained on.
    pub path: fm_train::ProbabilityPath,
}

impl Trained {
    /// The model with its source and map: samples and densities in the data's units.
    pub fn units(&self) -> DataUnits<'_, dyn fm_model::VelocityModel> {
        DataUnits { field: &*self.model, source: self.source.as_ref(), map: self.data_map.as_ref(), path: self.path }
    }
}

/// Metadata entry of a checkpoint trained on a teacher's pairs (reflow, distillation): the file.
pub const PAIRS_METADATA: &str = "pairs";

/// Metadata entry of a model checkpoint recording what its network outputs
/// ([`fm_train::Generator::output`]: `velocity`, `one-step map`, `average velocity`), so that
/// nothing is inferred from its shapes.
pub const OUTPUT: &str = "output";

/// Metadata entry of a checkpoint holding its [`Affine`] standardisation as JSON.
pub const STANDARDIZE: &str = "standardize";

/// Builds target, source and model from `cfg` (checking everything before any work), trains,
/// and writes into `dir`: `config.toml` first; then at every checkpoint (every
/// `train.checkpoint_every` steps and at the end) `model.safetensors`, then
/// `train-state.safetensors` (a kill between the two never leaves a state ahead of its model),
/// then `metrics.csv` (with the tracked figures where `[eval] track_every` asks), each
/// atomically. `log` receives the lines a user should see (resuming, training, trained).
///
/// With `opts.resume`, continues from the folder's training state when there is one: everything
/// that decides what is trained must be as the state records it (target and source, the content
/// of any file they read, the model and the training settings; only `steps` may grow), and a
/// difference is refused naming each field with its old and new values.
///
/// # Errors
/// Invalid settings, a locked or unwritable folder, a state that does not match
/// ([`Error::Invalid`]), a failure during training ([`Error::Stopped`], naming the checkpoint
/// kept), or [`Error::Interrupted`] when `opts.stop` was set.
///
/// With a `[reflow]` section, trains its stages (see [`crate::ReflowConfig`]): the teachers in
/// sub-folders, the last stage in `dir`.
pub fn train_run(cfg: &RunConfig, dir: &RunDir, opts: &TrainOptions<'_>, log: &mut dyn FnMut(&str)) -> Result<Trained> {
    if opts.resume {
        check_recipe_resume(cfg, dir)?;
    }
    match &cfg.reflow {
        None => train_stage(cfg, dir, opts, log),
        Some(reflow) => train_stages(cfg, reflow, dir, opts, log),
    }
}

/// Refuses a resume that would change what the folder holds: `[reflow]` added to a plain run
/// (its stages would retrain from scratch and replace the trained model), removed from a
/// recipe, or edited (stale pairs would stand for the new settings). A recipe records its
/// `[reflow]` in [`RunDir::RECIPE`] when it starts; a folder from before that record has its
/// `1-rf/` to say it is a recipe.
fn check_recipe_resume(cfg: &RunConfig, dir: &RunDir) -> Result<()> {
    let record = dir.file(RunDir::RECIPE);
    let is_recipe = record.exists() || dir.path().join("1-rf").is_dir();
    let trained = dir.file(RunDir::STATE).exists() || dir.file(RunDir::MODEL).exists();
    let invalid = |why: String| Err(Error::Invalid(format!("cannot resume {}: {why}", dir.path().display())));
    match (&cfg.reflow, is_recipe) {
        (Some(_), false) if trained => invalid(
            "it holds a run trained without [reflow]; a recipe would retrain from stage 1 and replace its model (remove [reflow] to continue the run, or start the recipe in another folder)"
                .into(),
        ),
        (None, true) => invalid("it holds the stages of a [reflow] recipe: put its [reflow] section back to resume them".into()),
        (Some(now), true) if record.exists() => {
            let text = std::fs::read_to_string(&record).map_err(|source| Error::Io { what: "cannot read", path: record.clone(), source })?;
            let then: crate::ReflowConfig =
                serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{}: the recipe record cannot be read: {e}", record.display())))?;
            let changed: Vec<String> = [
                ("rounds", then.rounds.to_string(), now.rounds.to_string()),
                ("distill", then.distill.to_string(), now.distill.to_string()),
                ("pairs", then.pairs.to_string(), now.pairs.to_string()),
                ("pair_steps", then.pair_steps.to_string(), now.pair_steps.to_string()),
            ]
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(k, a, b)| format!("reflow.{k} was {a}, is {b}"))
            .collect();
            if changed.is_empty() {
                Ok(())
            } else {
                invalid(format!("config.toml no longer describes the recipe: {} (restore them, or start a new recipe in another folder)", changed.join("; ")))
            }
        }
        _ => Ok(()),
    }
}

/// The stages of `reflow`: `1-rf/` (flow matching), `k-rf/` (trained on `(k−1)-rf/pairs.npy`
/// from `(k−1)-rf/model.safetensors`), and the last one in `dir`.
fn train_stages(cfg: &RunConfig, reflow: &crate::ReflowConfig, dir: &RunDir, opts: &TrainOptions<'_>, log: &mut dyn FnMut(&str)) -> Result<Trained> {
    reflow.validate()?;
    if cfg.pairs.is_some() || cfg.init.is_some() {
        return Err(Error::Invalid("[reflow] draws its own pairs and starts each stage from the last: leave pairs and init unset".into()));
    }
    if !cfg.train.objective.is("flow-matching") {
        return Err(Error::Invalid(format!(
            "[reflow] trains flows (and distils the last one): the objective must be flow-matching, got {}",
            cfg.train.objective
        )));
    }
    // Everything a later stage would refuse is refused before the first one trains.
    if cfg.standardize && cfg.target.starts_with("file:") {
        return Err(Error::Invalid("[reflow] of a standardised file target is not supported: give --no-standardize (standardize = false)".into()));
    }
    if reflow.distill && cfg.train.path != fm_train::ProbabilityPath::Linear {
        return Err(Error::Invalid(format!("[reflow] distils on the straight path: set path to linear, got {}", cfg.train.path)));
    }
    cfg.train.validate()?;
    cfg.sample.validate()?;
    parse_device(&cfg.device)?;
    let stages = 1 + reflow.rounds + usize::from(reflow.distill);
    // Each student's settings as fm-train checks them before training, on stand-in pairs of
    // the target's dimension: a refusal of stage k comes before stage 1 trains.
    let dim = parse_target(&cfg.target).map_err(|source| Error::Spec { what: "target", source })?.dim();
    fm_model::MlpConfig { dim, ..cfg.model.clone() }.validate()?;
    let stand_in = fm_train::Pairs::new(ndarray::Array2::zeros((1, dim)), ndarray::Array2::zeros((1, dim)))?;
    for k in 2..=stages {
        let student = stage_config(cfg, reflow, dir, k);
        fm_train::check_training(
            &student.train,
            fm_train::TrainingData::Pairs(&stand_in),
            dim,
            student.train.objective.time_inputs(),
            fm_model::ConditionShape::NONE,
        )
        .map_err(|e| Error::Invalid(format!("[reflow] stage {k} of {stages} would refuse: {e}")))?;
        let standard_normal = fm_dist::StandardNormal::new(dim).map_err(|source| Error::Spec { what: "source", source })?;
        check_sde(&student, true, &standard_normal).map_err(|e| Error::Invalid(format!("[reflow] stage {k} of {stages} would refuse: {e}")))?;
    }
    // The folder's run file is the whole recipe (the last stage writes its own while it trains,
    // and it is put back after): `fm train --resume DIR` resumes every stage from its folder.
    let write_recipe = || -> Result<()> {
        std::fs::create_dir_all(dir.path()).map_err(|source| Error::Io { what: "cannot create", path: dir.path().to_path_buf(), source })?;
        if !dir.file(RunDir::RECIPE).exists() {
            let record = serde_json::to_string_pretty(reflow).map_err(|e| Error::Invalid(e.to_string()))?;
            fm_dist::io::write_atomic(&dir.file(RunDir::RECIPE), record.as_bytes())?;
        }
        Ok(fm_dist::io::write_atomic(&dir.file(RunDir::CONFIG), cfg.to_toml()?.as_bytes())?)
    };
    write_recipe()?;
    // Once a stage trains (an interrupted one finishing, or one extended by --steps), the stages
    // after it learn from a new teacher: they start afresh.
    let mut teacher_changed = false;
    for k in 1..=stages {
        let last = k == stages;
        let name = if last && reflow.distill { "distilled".to_string() } else { format!("{k}-RF") };
        let stage_dir = RunDir::new(stage_dir(dir, reflow, k));
        let stage_cfg = stage_config(cfg, reflow, dir, k);
        log(&format!("fm: stage {k} of {stages}: {name} in {}", stage_dir.path().display()));
        // An interrupted stage is resumed through the recipe's folder, whose run file is put back
        // whatever happened to the last stage.
        if opts.resume && teacher_changed {
            log(&format!("fm: {name} starts afresh: its teacher has changed"));
        }
        let stage_opts = TrainOptions { resume: opts.resume && !teacher_changed, ..*opts };
        let trained = train_stage(&stage_cfg, &stage_dir, &stage_opts, log).map_err(|e| match e {
            Error::Interrupted { step, .. } => Error::Interrupted { step, dir: dir.path().to_path_buf() },
            e => e,
        });
        if last {
            write_recipe()?;
        }
        let trained = trained?;
        if last {
            log(&format!("fm: {stages} stages, {} steps × {} in all", fm_dist::empirical::group_digits(stages * cfg.train.steps), cfg.train.batch_size));
            return Ok(trained);
        }
        teacher_changed |= !trained.report.loss_history.is_empty();
        let file = stage_dir.file(PAIRS_FILE);
        // A stage resumed at its end trained nothing: its pairs (same weights, seed and solver) stand.
        if opts.resume && !teacher_changed && file.exists() {
            log(&format!("fm: {name} is complete; its pairs stand: {}", file.display()));
            continue;
        }
        let sample = fm_train::SampleConfig {
            n_samples: reflow.pairs,
            steps: reflow.pair_steps,
            method: fm_ode::Method::Rk4,
            seed: crate::seeds::pairs(cfg.train.seed, k),
            ..cfg.sample.clone()
        };
        let t0 = std::time::Instant::now();
        let pairs = fm_train::draw_pairs(&*trained.model, trained.source.as_ref(), &sample)?;
        fm_dist::io::write_npy(&file, pairs.to_array().view())?;
        log(&format!(
            "fm: drew {} pairs from {name} (RK4, {} steps) in {:.1} s: {}",
            fm_dist::empirical::group_digits(pairs.len()),
            reflow.pair_steps,
            t0.elapsed().as_secs_f64(),
            file.display()
        ));
    }
    Err(Error::Invalid("no stage to train".into()))
}

/// The folder of stage `k` of a recipe in `dir` (the last stage's is `dir` itself).
fn stage_dir(dir: &RunDir, reflow: &crate::ReflowConfig, k: usize) -> std::path::PathBuf {
    if k == 1 + reflow.rounds + usize::from(reflow.distill) {
        dir.path().to_path_buf()
    } else {
        dir.path().join(format!("{k}-rf"))
    }
}

/// The run of stage `k` (from 1) of the recipe `reflow` in `dir`: the teachers are flows, sampled
/// (and tracked) as flows whatever the last stage's sampling; a student trains on its teacher's
/// pairs (coupled already) on the straight path, from its weights; the last stage samples as
/// the recipe says, and is the distilled map when the recipe distils.
fn stage_config(cfg: &RunConfig, reflow: &crate::ReflowConfig, dir: &RunDir, k: usize) -> RunConfig {
    let defaults = fm_train::SampleConfig::default();
    let flow_sampling = fm_train::SampleConfig { steps: defaults.steps, method: defaults.method, sde: None, ..cfg.sample.clone() };
    let mut stage = RunConfig { reflow: None, sample: flow_sampling, ..cfg.clone() };
    if k > 1 {
        let teacher = stage_dir(dir, reflow, k - 1);
        stage.pairs = Some(teacher.join(PAIRS_FILE).display().to_string());
        stage.init = Some(teacher.join(RunDir::MODEL).display().to_string());
        stage.train.coupling = fm_train::Coupling::Independent;
        stage.train.path = fm_train::ProbabilityPath::Linear;
    }
    if k == 1 + reflow.rounds + usize::from(reflow.distill) {
        stage.sample = cfg.sample.clone();
        if reflow.distill {
            stage.train.objective = fm_train::ObjectiveChoice::distill();
        }
    }
    stage
}

/// The refusals of `cfg.sample.sde` for the model `cfg` trains (on pairs when `on_pairs`), from
/// `source`: before training, so that a run is not trained to be refused at its sampling.
fn check_sde(cfg: &RunConfig, on_pairs: bool, source: &dyn Target) -> Result<()> {
    if let Some(sde) = cfg.sample.sde {
        sde.check(cfg.train.objective.generator(), cfg.train.path, source, false)?;
        sde.check_training(&cfg.train, on_pairs)?;
    }
    Ok(())
}

/// What the run asks of its target and source against what they offer: the same dimension, a
/// source to draw from, a target without a sampler only for an energy-weighted objective, which
/// in turn takes no pairs.
fn check_offers(cfg: &RunConfig, target: &dyn Target, source: &dyn Target) -> Result<()> {
    let energy = cfg.train.objective.energy().is_some();
    let refusal = if source.dim() != target.dim() {
        format!("the source {} is {}-D but the target {} is {}-D", source.name(), source.dim(), target.name(), target.dim())
    } else if !source.has_sampler() {
        format!("the source {} has no sampler: a source is drawn from", source.name())
    } else if !target.has_sampler() && !energy {
        format!(
            "the target {} is known by its density alone (no sampler): train towards it with --objective ewfm (energy-weighted flow matching), not {}",
            target.name(),
            cfg.train.objective
        )
    } else if cfg.pairs.is_some() && energy {
        format!("objective {} trains from the target's density alone: it takes no --pairs", cfg.train.objective)
    } else {
        return Ok(());
    };
    Err(Error::Invalid(refusal))
}

/// The file of a teacher's pairs in its stage folder.
const PAIRS_FILE: &str = "pairs.npy";

fn train_stage(cfg: &RunConfig, dir: &RunDir, opts: &TrainOptions<'_>, log: &mut dyn FnMut(&str)) -> Result<Trained> {
    let device = parse_device(&cfg.device)?;
    let target = parse_target(&cfg.target).map_err(|source| Error::Spec { what: "target", source })?;
    let source = parse_source(&cfg.source, target.dim()).map_err(|source| Error::Spec { what: "source", source })?;
    check_offers(cfg, target.as_ref(), source.as_ref())?;
    // The condition the data must carry, before anything is read further or logged.
    let condition = cfg.train.condition.shape_for(&target.name(), target.classes(), target.condition_dim())?;
    let data_map = standardization(cfg, target.as_ref(), log)?;
    let pairs = match &cfg.pairs {
        None => None,
        Some(_) if data_map.is_some() => {
            return Err(Error::Invalid("training pairs with a standardised file target are not supported: give --no-standardize (standardize = false)".into()))
        }
        Some(file) => {
            let rows = fm_dist::io::read_points(std::path::Path::new(file))?;
            let pairs = fm_train::Pairs::from_array(rows.view()).map_err(|e| Error::Invalid(format!("{file}: {e}")))?;
            if pairs.dim() != target.dim() {
                return Err(Error::Invalid(format!(
                    "{file} holds {}-D pairs ({} columns) but the target {} is {}-D",
                    pairs.dim(),
                    2 * pairs.dim(),
                    target.name(),
                    target.dim()
                )));
            }
            Some(pairs)
        }
    };
    // What the network trains on: with a standardisation, the target (and a source in data
    // units) seen in standard units.
    let standard = match &data_map {
        None => None,
        Some(map) => {
            let target = Box::new(Pushforward::new(parse_target(&cfg.target)?, map.inverse())?) as Box<dyn Target>;
            let source = standard_source(parse_source(&cfg.source, target.dim())?, map)?;
            Some((target, source))
        }
    };
    let train_target = standard.as_ref().map_or(target.as_ref(), |(t, _)| t.as_ref());
    let train_source = standard.as_ref().map_or(source.as_ref(), |(_, s)| s.as_ref());
    let mut cfg = cfg.clone();
    cfg.model.dim = target.dim();
    cfg.model.time_inputs = cfg.train.objective.time_inputs();
    (cfg.model.classes, cfg.model.cond_dim) = (condition.classes, condition.dim);
    cfg.model.validate()?;
    cfg.sample.validate()?;
    // Energy-only training weighs the model's own samples against the target's density: no
    // target sample is drawn (the target's sampler, where it has one, only judges the result).
    let density = fm_dist::density_of(target.as_ref());
    let data = match (&pairs, cfg.train.objective.energy()) {
        (Some(p), _) => fm_train::TrainingData::Pairs(p),
        (None, Some(_)) => {
            let density = density
                .as_deref()
                .ok_or_else(|| Error::Invalid(format!("objective {}: the target {} has no density to weigh by", cfg.train.objective, target.name())))?;
            fm_train::TrainingData::Energy { density, source: train_source, map: data_map.as_ref() }
        }
        (None, None) => fm_train::TrainingData::Draw { target: train_target, source: train_source },
    };
    // Everything that can refuse the run does before the folder is touched.
    fm_train::check_training(&cfg.train, data, cfg.model.dim, cfg.model.time_inputs, condition)?;
    check_sde(&cfg, pairs.is_some(), train_source)?;
    let init_from = cfg.init.as_deref().map(|init| init_checkpoint(init, &cfg.model, device)).transpose()?;
    let fingerprint = fingerprint(&cfg, init_from.as_deref())?;
    // The tracker checks its settings (and draws its holdout) before the folder is touched too.
    let tracker = match cfg.eval.track_every {
        0 => None,
        _ if !target.has_sampler() => {
            log(&format!(
                "fm: no W2 or KL tracked during training: the target {} has no sampler (metrics.csv's ESS and log Z follow the training)",
                target.name()
            ));
            None
        }
        _ => {
            let tracker = Tracker::new(train_target, train_source, cfg.eval.track_points, seeds::tracking(cfg.train.seed), &cfg.sample, &cfg.eval.likelihood)?;
            Some(
                match &data_map {
                    Some(map) => tracker.in_data_units(map.clone()),
                    None => tracker,
                }
                .for_generator(cfg.train.objective.generator()),
            )
        }
    };
    let lock = dir.create_and_lock()?;
    let state_path = dir.file(RunDir::STATE);
    dir.remove_stale_temporaries();

    let (mut model, start, rows) = if opts.resume && state_path.exists() {
        let loaded = fm_train::load_state(&state_path, device).map_err(|source| Error::Resume { source })?;
        let invalid = |what: String| Err(Error::Invalid(format!("cannot resume: {what}")));
        let recorded = recorded_fingerprint(&loaded)?;
        let changed = changed_fields(&recorded, &fingerprint)?;
        if !changed.is_empty() {
            return invalid(format!(
                "config.toml no longer describes the run in {}: {} (restore them, or start a new run in another folder)",
                state_path.display(),
                changed.join("; ")
            ));
        }
        if loaded.step > cfg.train.steps {
            return invalid(format!(
                "{} is at step {}, past the {} steps asked for (give --steps {} or more)",
                dir.path().display(),
                loaded.step,
                cfg.train.steps,
                loaded.step
            ));
        }
        log(&format!("fm: resuming {} at step {} of {}", dir.path().display(), loaded.step, cfg.train.steps));
        let rows = dir.metrics_up_to(loaded.step)?;
        (loaded.model, Some(Resume { step: loaded.step, state: loaded.state }), rows)
    } else {
        if opts.resume {
            log(&format!("fm: {} holds no checkpoint yet; starting from step 0", dir.path().display()));
        }
        // A fresh run: an old run's state must not be resumed into it.
        match std::fs::remove_file(&state_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::Io { what: "cannot remove", path: state_path, source: e }),
            _ => {}
        }
        let model = fm_model::with_torch_seed(cfg.train.seed, || fm_model::registry::build(&cfg.model, device))?;
        if let Some(from) = &init_from {
            fm_model::copy_parameters(&*model, &from.named_parameters())?;
        }
        (model, None, Vec::new())
    };
    fm_dist::io::write_atomic(&dir.file(RunDir::CONFIG), cfg.to_toml()?.as_bytes())?;
    dir.write_metrics(&rows)?;

    for data in [&source, &target].into_iter().filter_map(|t| t.describe_data()) {
        log(&format!("fm: read {data}"));
    }
    let from = match (&pairs, &cfg.pairs) {
        (Some(p), Some(file)) => format!("{} pairs of {file}", fm_dist::empirical::group_digits(p.len())),
        _ => source.name(),
    };
    let objective = if cfg.train.objective.is("flow-matching") { String::new() } else { format!(" ({})", cfg.train.objective) };
    let objective = match condition.is_conditional() {
        true => format!("{objective}, conditioned on {condition} (dropped for {} of the rows)", cfg.train.cond_drop),
        false => objective,
    };
    if condition.is_conditional() && matches!(cfg.train.coupling, fm_train::Coupling::Ot | fm_train::Coupling::Sinkhorn { .. }) {
        log(&format!(
            "fm: note: coupling {} pairs blind to the condition (the known failure of minibatch OT with conditions, Cheng & Schwing 2025); ot-class or c2ot respect it",
            cfg.train.coupling
        ));
    }
    log(&format!("fm: training {from} → {}{objective} on {device:?}, {} steps of {}", target.name(), cfg.train.steps, cfg.train.batch_size));
    // The EMA weights are written through a second model. Its initial weights are overwritten
    // at once, but drawing them takes torch's global generator: under its lock, seeded, so that
    // a caller initialising another model in parallel gets the same draws whatever runs beside it.
    let ema_model = cfg.train.ema_decay.map(|_| fm_model::with_torch_seed(cfg.train.seed, || fm_model::registry::build(&cfg.model, device))).transpose()?;
    // The exact flow's floor is that of flow matching on drawn pairs.
    // (Conditional training regresses on a different field: no floor computed for it yet.)
    let loss_floor = match &pairs {
        None if cfg.train.objective.has_flow_matching_floor() && cfg.train.condition.is_none() => {
            fm_train::exact::training_floor(train_target, train_source, &cfg.train)?
        }
        _ => None,
    };
    let bar = ProgressBarReporter::new(cfg.train.steps, opts.quiet).with_floor(loss_floor.map(|f| f.mean));
    let rows = RefCell::new(rows);
    let last_checkpoint = Cell::new(start.as_ref().map(|r| r.step));
    let start_step = start.as_ref().map(|r| r.step);
    let output = (OUTPUT, cfg.train.objective.generator().output().to_string());
    let mut meta: checkpoint::Metadata =
        [("target", cfg.target.clone()), ("source", cfg.source.clone()), output].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    if let Some(pairs) = &cfg.pairs {
        // A model of a teacher's pairs is not judged against the exact flow of independent pairs.
        meta.insert(PAIRS_METADATA.into(), pairs.clone());
    }
    if let Some(map) = &data_map {
        meta.insert(STANDARDIZE.into(), serde_json::to_string(map).map_err(|e| Error::Invalid(e.to_string()))?);
    }
    // The training state also records the fingerprint, which a resume compares.
    let mut state_meta = meta.clone();
    state_meta.insert(FINGERPRINT.into(), serde_json::to_string(&fingerprint).map_err(|e| Error::Invalid(e.to_string()))?);
    let train_json = serde_json::to_string(&cfg.train).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut on_progress = |p: &Progress| {
        bar.update(p);
        let row = MetricsRow::new(p, loss_floor.map(|f| f.mean));
        dir.append_metrics(&row);
        rows.borrow_mut().push(row);
    };
    let mut on_checkpoint = |c: &Checkpoint<'_>| -> fm_train::Result<()> {
        // No timings here: the same seed and settings must give the same checkpoint bytes.
        let summary = serde_json::json!({ "steps": c.step, "final_loss": c.loss, "loss_floor": loss_floor.map(|f| f.mean) });
        let mut model_meta = meta.clone();
        model_meta.insert("train".into(), train_json.clone());
        model_meta.insert("report".into(), summary.to_string());
        let model: &dyn fm_model::VelocityModel = match (&c.state.ema, ema_model.as_deref()) {
            (Some(ema), Some(m)) => {
                ema.copy_to(m)?;
                m
            }
            _ => c.model,
        };
        // A run resumed at its last step has its model already (written before the state it
        // resumed from), with its final loss: rewriting it would record no loss (NaN).
        let resumed_at_end = start_step == Some(c.step) && c.loss.is_nan() && dir.file(RunDir::MODEL).exists();
        if !resumed_at_end {
            checkpoint::save(model, &dir.file(RunDir::MODEL), &model_meta)?;
        }
        if let Some(tracker) = tracker.as_ref().filter(|_| c.step.is_multiple_of(cfg.eval.track_every) || c.step == cfg.train.steps) {
            let tracked = tracker.measure(model, train_source)?;
            if let Some(row) = rows.borrow_mut().last_mut().filter(|r| r.step == c.step) {
                row.w2 = Some(tracked.w2);
                row.kl = tracked.kl;
            }
        }
        // The metrics before the state: a folder that turns unwritable in between leaves rows
        // past the state's step, which a resume drops (it keeps the rows up to its step); the
        // state written last is the checkpoint the message names.
        dir.write_metrics(&rows.borrow()).map_err(|e| fm_train::Error::Hook(Box::new(e)))?;
        fm_train::save_state(&state_path, c, &state_meta)?;
        last_checkpoint.set(Some(c.step));
        Ok(())
    };
    let hooks = TrainHooks { on_progress: &mut on_progress, on_checkpoint: Some(&mut on_checkpoint), stop: opts.stop };
    let outcome = fm_train::train_on(&mut *model, data, &cfg.train, start, hooks).map_err(|source| {
        let kept = match last_checkpoint.get() {
            Some(step) => format!("the last good checkpoint (step {step}) is kept in {}", dir.path().display()),
            None => "no checkpoint was written".to_string(),
        };
        Error::Stopped { kept, source }
    })?;
    bar.finish();
    if outcome.stopped {
        return Err(Error::Interrupted { step: outcome.step, dir: dir.path().to_path_buf() });
    }
    let report = outcome.report;
    let floor_note = loss_floor.map(|f| format!(" (floor {:.4} ± {:.4}: the part no model can remove)", f.mean, f.se)).unwrap_or_default();
    if report.loss_history.is_empty() {
        log(&format!("fm: {} was complete at step {}: nothing to train", dir.path().display(), report.steps));
    } else {
        log(&format!(
            "trained {} steps in {:.1} s ({:.0} steps/s), final loss {:.4}{floor_note}",
            report.steps, report.seconds, report.steps_per_s, report.final_loss
        ));
    }
    if let (Some(decay), Some(_)) = (cfg.train.ema_decay, &outcome.state.ema) {
        apply_ema(&*model, data, &cfg.train, &outcome.state, report.steps, decay, log)?;
    }
    let source = standard.map_or(source, |(_, s)| s);
    Ok(Trained { lock, model, target, source, data_map, report, loss_floor, generator: cfg.train.objective.generator(), path: cfg.train.path })
}

/// Puts the EMA's weights into `model`, saying which weights are sampled and how they compare
/// with the last ones on batches no step trained on (the same batches for both: the
/// difference is paired); a run on a density alone has no such batches, and says so.
fn apply_ema(
    model: &dyn fm_model::VelocityModel,
    data: fm_train::TrainingData<'_>,
    cfg: &fm_train::TrainConfig,
    state: &fm_train::TrainState,
    steps: usize,
    decay: f64,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    if matches!(data, fm_train::TrainingData::Energy { .. }) {
        state.apply_ema(model)?;
        log(&format!("model: the EMA of the weights (ema_decay {decay}; no held-out loss: a density alone has no target points)"));
        return Ok(());
    }
    let last = fm_train::held_out_loss(model, data, cfg, HELD_OUT_BATCHES)?;
    state.apply_ema(model)?;
    let ema = fm_train::held_out_loss(model, data, cfg, HELD_OUT_BATCHES)?;
    let diff: Vec<f64> = ema.iter().zip(&last).map(|(e, l)| e - l).collect();
    let (ema, last, diff) = (Estimate::of(&ema)?, Estimate::of(&last)?, Estimate::of(&diff)?);
    // The decay the warm-up had reached at the last step: what the average actually was.
    let reached = decay.min((1 + steps) as f64 / (10 + steps) as f64);
    log(&format!(
        "model: the EMA of the weights (ema_decay {decay}; after the warm-up min(decay, (1 + k)/(10 + k)), {reached:.4} at step {}); held-out loss {:.4} ± {:.4}, the last weights' {:.4} ± {:.4} (difference {:+.4} ± {:.4}; {HELD_OUT_BATCHES} batches no step trained on)",
        steps, ema.mean, ema.se, last.mean, last.se, diff.mean, diff.se
    ));
    Ok(())
}

/// Batches of [`fm_train::held_out_loss`] comparing an EMA with the last weights.
const HELD_OUT_BATCHES: usize = 16;

/// Metadata entry of the training state holding [`fingerprint`] as JSON.
const FINGERPRINT: &str = "fingerprint";

/// The settings of a run file a resumed run may change, with why; every other setting of the
/// resolved configuration is in its [`fingerprint`] (a test walks every field). A name ending in
/// `.` covers a whole section.
pub const MAY_CHANGE_ON_RESUME: [(&str, &str); 6] = [
    ("train.steps", "extends (or shortens) the run: the steps already taken stand"),
    ("train.report_every", "when the loss is printed: not what is trained"),
    ("train.checkpoint_every", "when the state is written: not what is trained"),
    ("device", "where it computes (results agree to float precision, not bit for bit, across devices)"),
    ("sample.", "how `fm run` samples the trained model, after training"),
    ("eval.", "how `fm run` judges the samples, after training"),
];

/// Whether `field` (a fingerprint key such as `train.lr`) is one a resume may change.
fn may_change_on_resume(field: &str) -> bool {
    MAY_CHANGE_ON_RESUME.iter().any(|(name, _)| match name.strip_suffix('.') {
        Some(section) => field == section || field.starts_with(name),
        None => field == *name,
    })
}

/// What decides what a run trains, by field: every setting of the resolved configuration
/// (nested sections flattened to `section.field`, values as JSON) but those of
/// [`MAY_CHANGE_ON_RESUME`], with the files the run reads by content: the target's and
/// source's (and their labels' or conditions'), the pairs' (`pairs`), and the init weights'
/// (`init`; read once, for this and for the copy: `init` is that network). A setting a run file
/// leaves out (`cond_drop` at its default, say) is absent, and absent is read as its default.
fn fingerprint(cfg: &RunConfig, init: Option<&dyn fm_model::VelocityModel>) -> Result<Fingerprint> {
    let mut f = settings(cfg)?;
    for (name, spec) in [("target", &cfg.target), ("source", &cfg.source)] {
        if let Some(arg) = spec.strip_prefix("file:").or_else(|| spec.strip_prefix("spec:")) {
            let (path, options) = fm_dist::empirical::split_conditions(arg);
            f.insert(format!("{name} file content"), file_digest(std::path::Path::new(path))?);
            // A second file of labels or conditions (`?labels=Y.npy`) is data too.
            for (key, file) in options.into_iter().flat_map(|o| o.split('&')).filter_map(|o| o.split_once('=')) {
                if matches!(key.trim(), "labels" | "conds") {
                    f.insert(format!("{name} {} file content", key.trim()), file_digest(std::path::Path::new(file.trim()))?);
                }
            }
        }
    }
    // By content, not by name (a folder spelled `./runs/x` is `runs/x`); "none" when unset, so
    // adding pairs or init to a run is a difference too.
    let none = || "none".to_string();
    f.remove("pairs");
    f.remove("init");
    f.insert("pairs file content".into(), cfg.pairs.as_deref().map(|p| file_digest(std::path::Path::new(p))).transpose()?.unwrap_or_else(none));
    f.insert("init weights".into(), init.map(weights_digest).transpose()?.unwrap_or_else(none));
    Ok(f)
}

/// A fingerprint: field → value (JSON text).
type Fingerprint = std::collections::BTreeMap<String, String>;

/// The fields where `recorded` and `now` differ, as `field was OLD, is NEW`: over the fields of
/// both, a field absent from one side read as its value in the default configuration (what a
/// run file that leaves it out means, and what an older fm that did not know it trained with).
fn changed_fields(recorded: &Fingerprint, now: &Fingerprint) -> Result<Vec<String>> {
    let mut defaults = settings(&RunConfig::default())?;
    // Settings a run file writes only away from their default: their default, spelled as when written.
    let json = |v: serde_json::Result<serde_json::Value>| v.map(|v| v.to_string()).map_err(|e| Error::Invalid(e.to_string()));
    defaults.insert("train.cond_drop".into(), json(serde_json::to_value(fm_train::DEFAULT_COND_DROP))?);
    defaults.insert("train.condition".into(), json(serde_json::to_value(fm_train::ConditionOn::None))?);
    let value = |f: &Fingerprint, k: &str| f.get(k).or_else(|| defaults.get(k)).cloned().unwrap_or_else(|| "(default)".into());
    let fields: std::collections::BTreeSet<&String> = recorded.keys().chain(now.keys()).filter(|k| !may_change_on_resume(k)).collect();
    Ok(fields
        .into_iter()
        .filter_map(|k| {
            let (old, new) = (value(recorded, k), value(now, k));
            (old != new).then(|| format!("{k} was {old}, is {new}"))
        })
        .collect())
}

/// Every setting of `cfg` but those of [`MAY_CHANGE_ON_RESUME`], nested sections flattened to
/// `section.field`.
fn settings(cfg: &RunConfig) -> Result<Fingerprint> {
    let value = serde_json::to_value(cfg).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut f = Fingerprint::new();
    flatten(&mut f, "", &value);
    f.retain(|k, _| !may_change_on_resume(k));
    Ok(f)
}

/// `value`'s leaves under `prefix`: a section's fields as `prefix.field`, anything else (numbers,
/// text, lists, a variant's settings) as its JSON text.
fn flatten(f: &mut Fingerprint, prefix: &str, value: &serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) if prefix.is_empty() || matches!(prefix, "model" | "train" | "reflow") => {
            for (k, v) in fields {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(f, &key, v);
            }
        }
        // A top-level text (target, source) as written, as fingerprints always held them.
        serde_json::Value::String(text) if !prefix.contains('.') => {
            f.insert(prefix.to_string(), text.clone());
        }
        other => {
            f.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The standardisation of a file target when `cfg.standardize` asks for it (logged); otherwise
/// `None`, with a warning when the target is far from unit scale.
fn standardization(cfg: &RunConfig, target: &dyn Target, log: &mut dyn FnMut(&str)) -> Result<Option<Affine>> {
    let file = cfg.target.strip_prefix("file:").map(PointCloud::open).transpose()?;
    let fmt = |v: &[f64]| v.iter().map(|x| format!("{x:.4e}")).collect::<Vec<_>>().join(", ");
    if cfg.train.objective.energy().is_some() {
        // Energy-only training starts from N(0, I) in units of the density's stated scale, so
        // that its first proposal covers the distribution (DEM's data_normalization_factor).
        let Some(scale) = fm_dist::density_of(target).and_then(|d| d.std_dev()) else { return Ok(None) };
        let map = Affine { shift: vec![0.0; scale.len()], scale };
        map.validate(target.dim()).map_err(|e| Error::Invalid(format!("the scale the density {} states (Density::std_dev): {e}", target.name())))?;
        log(&format!("fm: energy-weighted training in units of the density's scale: z = x / [{}], sampled back in the density's units", fmt(&map.scale)));
        return Ok(Some(map));
    }
    match file {
        Some(cloud) if cfg.standardize => {
            let map = Affine::standardizing(cloud.points())?;
            log(&format!(
                "fm: standardising the data: trained on z = (x − [{}]) / [{}], sampled back in the data's units (standardize = false in the run file, or --no-standardize, turns this off)",
                fmt(&map.shift),
                fmt(&map.scale)
            ));
            Ok(Some(map))
        }
        _ => {
            // Built-in and mixture targets are not standardised (their exact flow is in their units).
            let points = target.sample(10_000, &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0));
            if let Some(warning) = Affine::scale_warning(points.view()) {
                let how = if cfg.target.starts_with("file:") { "standardisation is off" } else { "only file targets are standardised" };
                log(&format!("warning: {warning}; {how}"));
            }
            Ok(None)
        }
    }
}

/// The fingerprint a training state was written with; for a state written before fingerprints,
/// the part its metadata holds (target, source, model and training settings).
fn recorded_fingerprint(loaded: &fm_train::LoadedState) -> Result<Fingerprint> {
    if let Some(json) = loaded.metadata.get(FINGERPRINT) {
        return serde_json::from_str(json).map_err(|e| Error::Invalid(format!("cannot resume: the training state's fingerprint cannot be read: {e}")));
    }
    let model = fm_model::registry::config_of(&*loaded.model)
        .ok_or_else(|| Error::Invalid("cannot resume: the training state's network is not of the registry".into()))?;
    let cfg = RunConfig { model, train: loaded.train.clone(), ..RunConfig::default() };
    let mut f = settings(&cfg)?;
    // Only what the metadata holds: the rest of an old state is unknown, not default.
    f.retain(|k, _| k.starts_with("model.") || k.starts_with("train."));
    f.extend(["target", "source"].into_iter().filter_map(|k| Some((k.to_string(), loaded.metadata.get(k)?.clone()))));
    Ok(f)
}

/// `sha256:` and the hex SHA-256 of a checkpoint's weights (names and `f32` values): what a run
/// starting from it depends on, not its metadata (a finished run resumed rewrites its report).
fn weights_digest(model: &dyn fm_model::VelocityModel) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (name, t) in model.named_parameters() {
        hash.update(name.as_bytes());
        let values = Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).flatten(0, -1)).map_err(|e| Error::Invalid(format!("init weights: {e}")))?;
        values.iter().for_each(|v| hash.update(v.to_le_bytes()));
    }
    Ok(format!("sha256:{:x}", hash.finalize()))
}

/// The network a run starts from (`--init`): any file fm reads (a PyTorch state dict, which does
/// not record its activation, is read with the run's), refused unless it is this run's network.
fn init_checkpoint(path: &str, model: &fm_model::MlpConfig, device: tch::Device) -> Result<Network> {
    // A file without fm's record is read as this run's network where its shapes are that network.
    let opts = checkpoint::LoadOptions { activation: Some(model.activation), described: Some(model.clone()), ..Default::default() };
    let (from, _) = checkpoint::load_any_with(std::path::Path::new(path), device, &opts)?;
    let recorded = fm_model::registry::config_of(&*from).unwrap_or_default();
    if &recorded != model {
        // Name what differs, field by field, as the run file spells it.
        let fields = |c: &fm_model::MlpConfig| {
            [
                ("kind", c.kind.clone()),
                ("dim", c.dim.to_string()),
                ("hidden_dim", c.hidden_dim.to_string()),
                ("hidden_layers", c.hidden_layers.to_string()),
                ("activation", c.activation.name().to_string()),
                ("time_embedding", c.time_embedding.to_string()),
                ("time_inputs", c.time_inputs.to_string()),
                ("classes", c.classes.to_string()),
                ("cond_dim", c.cond_dim.to_string()),
            ]
        };
        let differences: Vec<String> = fields(&recorded)
            .into_iter()
            .zip(fields(model))
            .filter(|(a, b)| a.1 != b.1)
            .map(|((k, a), (_, b))| format!("{k} {a} in the file, {b} in this run"))
            .collect();
        return Err(Error::Invalid(format!(
            "--init {path} holds another network than this run trains: {} (give the run the same [model] settings, or another --init)",
            differences.join(", ")
        )));
    }
    Ok(from)
}

/// `sha256:` and the hex SHA-256 of a file's bytes.
fn file_digest(path: &std::path::Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|source| Error::Io { what: "cannot read", path: path.to_path_buf(), source })?;
    Ok(format!("sha256:{:x}", Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run file with every optional setting given and every value away from its default.
    fn everything_set() -> RunConfig {
        let mut cfg = RunConfig {
            pairs: Some("pairs.npy".into()),
            init: Some("init.safetensors".into()),
            reflow: Some(crate::ReflowConfig::default()),
            ..RunConfig::default()
        };
        cfg.train.ema_decay = Some(0.99);
        cfg.train.max_grad_norm = Some(1.0);
        cfg.train.condition = fm_train::ConditionOn::Labels;
        cfg.train.cond_drop = 0.5;
        cfg
    }

    /// Every leaf of `value`, nested as deep as it goes.
    fn leaves(out: &mut Vec<String>, prefix: &str, value: &serde_json::Value) {
        match value {
            serde_json::Value::Object(fields) => {
                for (k, v) in fields {
                    leaves(out, &if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn every_setting_is_fingerprinted_or_listed_as_free_on_resume() {
        let cfg = everything_set();
        let mut f = settings(&cfg).unwrap();
        // What `fingerprint` reads by content instead of by name.
        for (setting, by_content) in [("pairs", "pairs file content"), ("init", "init weights")] {
            assert!(f.remove(setting).is_some(), "{setting} missing from the settings");
            f.insert(by_content.into(), String::new());
        }
        let mut all = Vec::new();
        leaves(&mut all, "", &serde_json::to_value(&cfg).unwrap());
        let covered = |leaf: &str| {
            let content = match leaf {
                "pairs" => "pairs file content",
                "init" => "init weights",
                other => other,
            };
            f.keys().any(|k| content == k || content.starts_with(&format!("{k}.")))
        };
        for leaf in &all {
            assert!(
                covered(leaf) != may_change_on_resume(leaf),
                "the setting {leaf} must be either in the fingerprint or in MAY_CHANGE_ON_RESUME (exactly one): add it to the list, with why, if a resume may change it"
            );
        }
        assert!(all.iter().any(|l| l == "train.cond_drop"), "the walk reaches settings a default run file leaves out");
    }

    #[test]
    fn cond_drop_edited_in_the_run_file_is_a_change() {
        // The run started at the default cond_drop (not written), config.toml then said 0.5.
        let mut before = everything_set();
        before.train.cond_drop = fm_train::DEFAULT_COND_DROP;
        let (recorded, now) = (settings(&before).unwrap(), settings(&everything_set()).unwrap());
        assert!(!recorded.contains_key("train.cond_drop"));
        let changed = changed_fields(&recorded, &now).unwrap();
        assert_eq!(changed, vec!["train.cond_drop was 0.1, is 0.5".to_string()]);
        assert!(changed_fields(&now, &now).unwrap().is_empty());
        // Absent on both sides, or absent on one and the default on the other: no change.
        let mut explicit = recorded.clone();
        explicit.insert("train.cond_drop".into(), "0.1".into());
        assert!(changed_fields(&recorded, &explicit).unwrap().is_empty());
    }

    #[test]
    fn what_a_resume_may_change_changes_nothing() {
        let mut other = everything_set();
        other.train.steps *= 2;
        other.train.report_every += 1;
        other.train.checkpoint_every += 1;
        other.device = "cpu".into();
        other.sample.n_samples += 1;
        other.eval.kl_points += 1;
        assert!(changed_fields(&settings(&everything_set()).unwrap(), &settings(&other).unwrap()).unwrap().is_empty());
        other.train.lr *= 2.0;
        assert_eq!(changed_fields(&settings(&everything_set()).unwrap(), &settings(&other).unwrap()).unwrap().len(), 1);
    }
}
