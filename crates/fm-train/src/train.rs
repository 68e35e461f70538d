//! The training loop and its configuration.

use crate::objective::{Batch, BatchLoss, ObjectiveChoice};
use crate::optim::{Adam, Ema, LrSchedule, OptimizerKind};
use crate::{ConditionOn, Coupling, Error, Pairs, ProbabilityPath, Result, TimeSampling};
use fm_dist::Target;
use fm_model::ConditionShape;
use fm_model::VelocityModel;
use rand::{rngs::StdRng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

/// How to train; `Default` is the seed experiment (10,000 steps of 256, Adam 1e-4 at a
/// constant rate, straight paths, independent pairs, uniform times, no clipping, no EMA).
///
/// Read from TOML or JSON with every field optional (`deny_unknown_fields`); the serde
/// names are the field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer updates in the run.
    pub steps: usize,
    /// Pairs `(x0, x1)` per step: the rows of every batch.
    pub batch_size: usize,
    /// Base learning rate (the peak of the schedule).
    pub lr: f64,
    /// Seeds the data stream (source, target, coupling, time and noise draws).
    pub seed: u64,
    /// The probability path: how `x_t` and the velocity `u_t` to regress on are built from a pair.
    #[serde(deserialize_with = "crate::spelling::text_or_table")]
    pub path: ProbabilityPath,
    /// How each batch's source and target rows are paired.
    #[serde(deserialize_with = "crate::spelling::text_or_table")]
    pub coupling: Coupling,
    /// The law of the training times.
    #[serde(deserialize_with = "crate::spelling::text_or_table")]
    pub time_sampling: TimeSampling,
    /// Adam (Kingma & Ba 2015) or AdamW (Loshchilov & Hutter 2019), as PyTorch implements them.
    #[serde(deserialize_with = "crate::spelling::text_or_table")]
    pub optimizer: OptimizerKind,
    /// Adam's `(β1, β2)`.
    pub betas: (f64, f64),
    /// Adam's `ε`.
    pub eps: f64,
    /// L2 (`adam`) or decoupled (`adamw`) weight decay `λ`.
    pub weight_decay: f64,
    /// The learning-rate schedule after the warm-up.
    #[serde(deserialize_with = "crate::spelling::text_or_table")]
    pub lr_schedule: LrSchedule,
    /// Linear warm-up from 0 to `lr` over this many steps (0: none), before the schedule.
    pub warmup_steps: usize,
    /// Clip the total gradient norm to this (PyTorch's `clip_grad_norm_`); `None`: no clipping.
    pub max_grad_norm: Option<f64>,
    /// Keep an exponential moving average of the weights with this decay; [`train`] then
    /// leaves the averaged weights in the model. `None`: no EMA.
    pub ema_decay: Option<f64>,
    /// Report the mean loss (and check it is finite) every this many steps.
    pub report_every: usize,
    /// Checkpoint every this many steps (0: only at the end), when the caller asks for
    /// checkpoints (see [`train_resumable`]); each checkpoint also closes a reporting window.
    pub checkpoint_every: usize,
    /// What the network learns: the velocity (flow matching, the seed's), a one-step map
    /// (distillation, on coupled pairs) or the average velocity (MeanFlow).
    pub objective: ObjectiveChoice,
    /// What the network is conditioned on: nothing (the seed), the target's class labels or
    /// its condition vectors. Written only when conditioned.
    #[serde(skip_serializing_if = "ConditionOn::is_none")]
    pub condition: ConditionOn,
    /// The probability that a row trains on "no condition" instead of its own (classifier-free
    /// guidance's condition dropout), in `[0, 1)`; only read when conditioned. Written only when
    /// not the default [`crate::DEFAULT_COND_DROP`].
    #[serde(skip_serializing_if = "is_default_cond_drop")]
    pub cond_drop: f64,
}

fn is_default_cond_drop(p: &f64) -> bool {
    *p == crate::DEFAULT_COND_DROP
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 10_000,
            batch_size: 256,
            lr: 1e-4,
            seed: 0,
            path: ProbabilityPath::Linear,
            coupling: Coupling::Independent,
            time_sampling: TimeSampling::Uniform,
            optimizer: OptimizerKind::Adam,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            lr_schedule: LrSchedule::Constant,
            warmup_steps: 0,
            max_grad_norm: None,
            ema_decay: None,
            report_every: 100,
            checkpoint_every: 1000,
            objective: ObjectiveChoice::flow_matching(),
            condition: ConditionOn::None,
            cond_drop: crate::DEFAULT_COND_DROP,
        }
    }
}

/// The named recipes [`Preset::named`] knows, with a one-line description.
pub const PRESETS: [(&str, &str); 4] = [
    ("seed", "the seed experiment: 10,000 steps of 256, Adam 1e-4 constant, straight paths, independent pairs, the ReLU network"),
    ("fast", "the seed's budget (10,000 × 256 samples) spent better: cosine decay from 2e-3 after 500 warm-up steps, EMA 0.999, GELU network"),
    ("one-step", "fm run/train: a fast teacher, its reflow (2-RF) and a one-step map distilled from it, 3 × 10,000 × 256 samples; sampled in 1 step"),
    ("energy", "from a target's energy alone: the fast recipe at batch 1,024 and learning rate 8e-3 with annealed energy-weighted flow matching (ewfm:4), 81,920 energy evaluations"),
];

/// A named recipe: training settings and the network they were tuned with (its `dim` is the
/// default's; the caller sets the data's).
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// The training settings.
    pub train: TrainConfig,
    /// The network they were tuned with (`dim` the default's 2).
    pub model: fm_model::MlpConfig,
}

impl Preset {
    /// The preset `name` (see [`PRESETS`]); an unknown name is an error listing the valid ones.
    ///
    /// # Errors
    /// [`Error::Config`] for a name not in [`PRESETS`].
    pub fn named(name: &str) -> Result<Preset> {
        let model = fm_model::MlpConfig::default();
        match name.trim().to_ascii_lowercase().as_str() {
            "seed" => Ok(Preset { train: TrainConfig::default(), model }),
            // Its stages are the run's (fm_run::ReflowConfig); each trains with the fast settings.
            "one-step" => Preset::named("fast"),
            "fast" => Ok(Preset {
                train: TrainConfig {
                    lr: 2e-3,
                    lr_schedule: LrSchedule::Cosine { min_lr: 0.0 },
                    warmup_steps: 500,
                    ema_decay: Some(0.999),
                    ..TrainConfig::default()
                },
                // Smooth units: mean KL 0.0042 over 8 training seeds against ReLU's 0.0069 over 5 at this schedule
                // (README, "Training variants"), at the same width and depth.
                model: fm_model::MlpConfig { activation: fm_model::Activation::Gelu, ..model },
            }),
            // Measured (docs/howto/energy.md): batch 1,024 takes GMM-40's W2 from 5.6 to 4.1, the
            // exact samples' own; learning rate 8e-3 keeps every ManyWell-32 well on two seeds
            // (and GMM-40 at 4.06), where 2e-3 loses at least one (13 pairs once reweighted) and
            // 5e-4 loses 11.
            "energy" => {
                let fast = Preset::named("fast")?;
                let objective = ObjectiveChoice::new(crate::objective::EnergyWeighted { start_temperature: 4.0, ..Default::default() });
                Ok(Preset { train: TrainConfig { batch_size: 1024, lr: 8e-3, objective, ..fast.train }, ..fast })
            }
            other => {
                let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                Err(Error::Config(format!("unknown preset '{other}'; valid presets: {}", names.join(", "))))
            }
        }
    }
}

impl TrainConfig {
    /// The training settings of the preset `name` ([`Preset::named`]).
    ///
    /// # Errors
    /// [`Error::Config`] for a name not in [`PRESETS`].
    pub fn preset(name: &str) -> Result<TrainConfig> {
        Ok(Preset::named(name)?.train)
    }

    /// Checks every setting; each message names the field.
    ///
    /// # Errors
    /// [`Error::Config`] for the first setting out of its domain, or a Schrödinger-bridge path
    /// without the Sinkhorn coupling of `reg = 2σ²` it needs.
    pub fn validate(&self) -> Result<()> {
        let config = |msg: String| Err(Error::Config(msg));
        if self.steps == 0 {
            return config("steps must be at least 1".into());
        }
        if self.batch_size == 0 {
            return config("batch size must be at least 1 (batch_size)".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return config(format!("learning rate must be a positive number (lr), got {}", self.lr));
        }
        if self.report_every == 0 {
            return config("report_every must be at least 1".into());
        }
        self.path.validate()?;
        self.coupling.validate()?;
        self.time_sampling.validate()?;
        if let ProbabilityPath::SchrodingerBridge { sigma } = self.path {
            let want = 2.0 * sigma * sigma;
            if !matches!(self.coupling, Coupling::Sinkhorn { reg } if (reg - want).abs() <= 1e-9 * want) {
                return config(format!("coupling: the schrodinger-bridge path (sigma {sigma}) pairs samples by entropic OT with reg = 2σ²: set coupling to sinkhorn with reg = {want}, got {}", self.coupling));
            }
        }
        let (b1, b2) = self.betas;
        if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
            return config(format!("betas must both be in [0, 1), got ({b1}, {b2})"));
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return config(format!("eps must be a finite number ≥ 0, got {}", self.eps));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return config(format!("weight_decay must be a finite number ≥ 0, got {}", self.weight_decay));
        }
        if let LrSchedule::Cosine { min_lr } = self.lr_schedule {
            if !(min_lr.is_finite() && (0.0..=self.lr).contains(&min_lr)) {
                return config(format!("lr_schedule: cosine min_lr must be in [0, lr = {}], got {min_lr}", self.lr));
            }
        }
        if self.warmup_steps > self.steps {
            return config(format!(
                "warmup_steps ({}) must not exceed steps ({}): give --warmup-steps N (warmup_steps in a run file; the fast and one-step presets set 500)",
                self.warmup_steps, self.steps
            ));
        }
        if let Some(m) = self.max_grad_norm {
            if !(m.is_finite() && m > 0.0) {
                return config(format!("max_grad_norm must be a positive number, got {m}"));
            }
        }
        if let Some(d) = self.ema_decay {
            if !(0.0..1.0).contains(&d) {
                return config(format!("ema_decay must be in [0, 1), got {d}"));
            }
        }
        if !(0.0..1.0).contains(&self.cond_drop) {
            return config(format!("cond_drop must be a probability in [0, 1), got {}", self.cond_drop));
        }
        if self.condition.is_none() && self.coupling.uses_conditions() {
            return config(format!("coupling {} pairs within conditions: train with a condition (condition = labels or values)", self.coupling));
        }
        if self.coupling == Coupling::OtClass && self.condition != ConditionOn::Labels {
            return config(format!(
                "coupling ot-class pairs within classes: it needs condition = labels, got {} (c2ot pairs condition vectors)",
                self.condition
            ));
        }
        if self.condition.is_none() && self.cond_drop != crate::DEFAULT_COND_DROP {
            return config(format!("cond_drop ({}) applies to conditional training: set condition = labels or values (--condition)", self.cond_drop));
        }
        if !self.condition.is_none() && !self.objective.conditional() {
            return config(format!("objective {} trains unconditional networks only: leave condition unset (got {})", self.objective, self.condition));
        }
        Ok(())
    }

    /// The learning rate of update `step` (counted from 1): warm-up, then the schedule.
    pub fn lr_at(&self, step: usize) -> f64 {
        self.lr_schedule.lr_at(self.lr, step, self.steps, self.warmup_steps)
    }
}

/// A progress report, every `report_every` steps and at the end.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Updates taken so far, counting those before a resume.
    pub step: usize,
    /// The run's length, `cfg.steps`.
    pub total_steps: usize,
    /// Mean loss over the steps since the previous report.
    pub loss: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Wall-clock seconds since this call of the training loop started (a resumed run counts
    /// from the resume).
    pub elapsed_s: f64,
    /// Energy-only training: the evaluations so far and the current proposal's weights.
    pub energy: Option<crate::proposal::EnergyProgress>,
}

/// What a finished run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// The step reached: updates taken, counting those before a resume (`cfg.steps` unless
    /// stopped early).
    pub steps: usize,
    /// Mean loss over the last reporting window.
    #[serde(deserialize_with = "fm_dist::metrics::nan_as_null::deserialize")]
    pub final_loss: f64,
    /// Wall-clock seconds of this call of the training loop (from the resume, for a resumed run).
    pub seconds: f64,
    /// Updates per second over this call: the updates it took divided by `seconds`.
    pub steps_per_s: f64,
    /// Of `seconds`, the time spent pairing the batches on the host (0 for independent pairs).
    #[serde(default)]
    pub coupling_seconds: f64,
    /// `(step, mean loss over the window ending there)`.
    pub loss_history: Vec<(usize, f64)>,
}

/// The optimizer and EMA a run leaves behind (to checkpoint, or to sample with the EMA).
#[derive(Debug)]
pub struct TrainState {
    /// Adam or AdamW, with its moments and step count.
    pub optimizer: Adam,
    /// Present when `ema_decay` was set.
    pub ema: Option<Ema>,
    /// The weighted proposal energy-only training draws its batches from (its current refresh).
    pub proposal: Option<crate::proposal::Proposal>,
}

impl TrainState {
    /// Fresh state for training `model` with `cfg`: Adam or AdamW with zero moments, and the
    /// EMA (when enabled) starting at the current weights.
    ///
    /// # Errors
    /// A torch failure allocating the moments.
    pub fn new(model: &(impl VelocityModel + ?Sized), cfg: &TrainConfig) -> Result<Self> {
        let params = model.named_parameters();
        let mut names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            let msg = format!("the model names two parameters '{}': checkpoints and the EMA match parameters by name", twice[0]);
            return Err(Error::Model(fm_model::Error::Parameters(msg)));
        }
        if params.is_empty() || params.iter().any(|(_, p)| !p.requires_grad()) {
            let msg = "the model has no parameters, or one that does not track gradients (named_parameters must hand out the model's own trainable tensors)";
            return Err(Error::Model(fm_model::Error::Parameters(msg.into())));
        }
        let mut optimizer = Adam::new(params.iter().map(|(n, p)| (n.clone(), p.shallow_clone())).collect(), cfg.lr)?;
        optimizer.kind = cfg.optimizer;
        optimizer.betas = cfg.betas;
        optimizer.eps = cfg.eps;
        optimizer.weight_decay = cfg.weight_decay;
        let ema = cfg.ema_decay.map(|d| Ema::new(params, d)).transpose()?;
        Ok(Self { optimizer, ema, proposal: None })
    }

    /// Everything as named tensors: `optimizer.` + [`Adam::state`] names, `ema.` + parameter
    /// names when there is an EMA, and `proposal.*` during energy-only training.
    ///
    /// # Errors
    /// [`Error::Torch`] when a tensor cannot be copied.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out: Vec<(String, Tensor)> = self.optimizer.state()?.into_iter().map(|(n, t)| (format!("optimizer.{n}"), t)).collect();
        if let Some(ema) = &self.ema {
            out.extend(ema.state()?.into_iter().map(|(n, t)| (format!("ema.{n}"), t)));
        }
        if let Some(proposal) = &self.proposal {
            out.extend(proposal.state()?);
        }
        Ok(out)
    }

    /// Restores what [`TrainState::state`] exported (an EMA in the state but not here, or
    /// here but not in the state, is an error).
    ///
    /// # Errors
    /// [`Error::State`] for an EMA present on one side only, a tensor missing or of another
    /// shape, or a `step` that is not a scalar ≥ 0 (see [`Adam::load_state`], [`Ema::load_state`]);
    /// [`Error::Torch`] when a copy fails.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let part = |prefix: &str| -> Vec<(String, Tensor)> {
            state.iter().filter_map(|(n, t)| n.strip_prefix(prefix).map(|n| (n.to_string(), t.shallow_clone()))).collect()
        };
        let ema_part = part("ema.");
        match (&mut self.ema, ema_part.is_empty()) {
            (Some(ema), false) => ema.load_state(&ema_part)?,
            (None, true) => {}
            (Some(_), true) => return Err(Error::State("it has no EMA weights but ema_decay is set".into())),
            (None, false) => return Err(Error::State("it has EMA weights but ema_decay is not set".into())),
        }
        let proposal = part("proposal.");
        self.proposal = if proposal.is_empty() { None } else { Some(crate::proposal::Proposal::from_state(&proposal)?) };
        self.optimizer.load_state(&part("optimizer."))
    }

    /// Puts the weights to sample from into `model`: the EMA's when there is one (else nothing changes).
    ///
    /// # Errors
    /// `model` is not the model the EMA was made for.
    pub fn apply_ema(&self, model: &(impl VelocityModel + ?Sized)) -> Result<()> {
        match &self.ema {
            Some(ema) => ema.copy_to(model),
            None => Ok(()),
        }
    }
}

/// Trains `model` to carry `source` to `target` by flow matching, and leaves in `model` the
/// weights to sample from: the exponential moving average when `cfg.ema_decay` is set,
/// the last iterate otherwise.
///
/// Each step draws `x0 ~ source` and `x1 ~ target`, pairs their rows by `cfg.coupling`,
/// draws `t` by `cfg.time_sampling` and (for noisy paths) `ε ~ N(0, I)`, all from a
/// generator seeded by `cfg.seed` and the step (so the data are the same on every device); builds
/// `x_t` and `u_t` from `cfg.path`, and takes an optimizer step on the mean squared error
/// `|v(x_t, t) − u_t|²` (learning rate from the schedule, gradients clipped if asked,
/// then the EMA updated). See [`train_with_state`] for the last iterate and the optimizer state.
///
/// # Errors
/// As [`train_resumable`] (without checkpoints).
pub fn train<M: VelocityModel + ?Sized>(
    model: &mut M,
    target: &dyn Target,
    source: &dyn Target,
    cfg: &TrainConfig,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<TrainReport> {
    let (report, state) = train_with_state(model, target, source, cfg, on_progress)?;
    state.apply_ema(model)?;
    Ok(report)
}

/// [`train`], but `model` keeps the last iterate and the optimizer and EMA come back beside
/// the report (to checkpoint them, or to sample with [`TrainState::apply_ema`] / [`Ema::to_model`]).
///
/// # Errors
/// As [`train_resumable`] (without checkpoints).
pub fn train_with_state<M: VelocityModel + ?Sized>(
    model: &mut M,
    target: &dyn Target,
    source: &dyn Target,
    cfg: &TrainConfig,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<(TrainReport, TrainState)> {
    let out = train_resumable(model, target, source, cfg, None, TrainHooks { on_progress, on_checkpoint: None, stop: None })?;
    Ok((out.report, out.state))
}

/// Where each step's pairs `(x0, x1)` come from.
#[derive(Clone, Copy)]
pub enum TrainingData<'a> {
    /// `x0 ~ source` and `x1 ~ target`, drawn independently and paired by the coupling.
    Draw {
        /// The distribution learnt.
        target: &'a dyn Target,
        /// The distribution the flow starts from.
        source: &'a dyn Target,
    },
    /// Fixed coupled pairs (a teacher's: reflow and distillation), drawn uniformly with
    /// replacement; the coupling must be `independent` (the pairs are coupled already).
    Pairs(&'a Pairs),
    /// A density alone (a Boltzmann target's `p̃ = exp(−E/T)`): no target point is drawn. An
    /// objective that trains from it ([`crate::objective::EnergyWeighted`]) weighs the model's
    /// own samples; `x0 ~ source` in the network's units, which `map` leads out of to the
    /// density's (`x = shift + scale ⊙ z`; `None`: the same units).
    Energy {
        /// What the samples are weighed against.
        density: &'a dyn fm_dist::Density,
        /// The distribution the flow starts from, in the network's units.
        source: &'a dyn Target,
        /// From the network's units to the density's.
        map: Option<&'a fm_dist::affine::Affine>,
    },
}

impl TrainingData<'_> {
    fn dim(&self) -> (usize, usize) {
        match self {
            TrainingData::Draw { target, source } => (target.dim(), source.dim()),
            TrainingData::Pairs(p) => (p.dim(), p.dim()),
            TrainingData::Energy { density, source, .. } => (density.density_dim(), source.dim()),
        }
    }
}

/// Step `step`'s training data on the host, `[x0 | x1 | t | extra | c | w]` (`extra`: ε for noisy
/// paths, MeanFlow's second time column; `c`: each row's condition features, `shape.features()`
/// wide, when conditional; `w`: each row's weight, with a `proposal` only), all drawn from the
/// step's own generator; and the seconds its coupling took.
fn draw_batch(
    step: usize,
    cfg: &TrainConfig,
    data: TrainingData<'_>,
    d: usize,
    shape: ConditionShape,
    proposal: Option<&crate::proposal::Proposal>,
) -> Result<(Vec<f32>, f64)> {
    let n = cfg.batch_size;
    let extra = cfg.objective.extra_len(cfg, n, d);
    let features = shape.features();
    let base = n * (2 * d + 1) + extra + n * features;
    let mut host = vec![0f32; base + if proposal.is_some() { n } else { 0 }];
    let (host_base, weights) = host.split_at_mut(base);
    let mut coupling_seconds = 0.0;
    let mut rng = StdRng::seed_from_u64(step_seed(cfg.seed, step));
    let (xs, rest) = host_base.split_at_mut(2 * n * d);
    // The target rows' conditions, and which target row each training row took.
    let mut conditions: Option<(fm_dist::Conditioned, Vec<usize>)> = None;
    match data {
        TrainingData::Pairs(pairs) => {
            let (h0, h1) = xs.split_at_mut(n * d);
            pairs.draw(h0, h1, &mut rng);
        }
        TrainingData::Energy { source, .. } => {
            let proposal = proposal.ok_or_else(|| Error::Internal("a batch of a density needs the proposal to weigh".into()))?;
            let (h0, h1) = xs.split_at_mut(n * d);
            for (h, x) in h0.iter_mut().zip(source.sample(n, &mut rng).iter()) {
                *h = *x as f32;
            }
            proposal.fill(h1, weights, &mut rng);
        }
        TrainingData::Draw { target, source } => {
            let x0 = source.sample(n, &mut rng);
            let drawn = if shape.is_conditional() {
                target.sample_conditioned(n, &mut rng)
            } else {
                fm_dist::Conditioned { points: target.sample(n, &mut rng), labels: None, values: None }
            };
            let x1 = &drawn.points;
            let pairs = if cfg.coupling == Coupling::Independent {
                (0..n).map(|i| (i, i)).collect()
            } else {
                let t0 = Instant::now();
                let labels = if shape.classes > 0 { drawn.labels.as_deref() } else { None };
                let values = if shape.dim > 0 { drawn.values.as_ref().map(|v| v.view()) } else { None };
                let pairs = cfg.coupling.pairs_conditioned(x0.view(), x1.view(), labels, values, &mut rng)?;
                coupling_seconds = t0.elapsed().as_secs_f64();
                pairs
            };
            let (h0, h1) = xs.split_at_mut(n * d);
            for (k, &(i, j)) in pairs.iter().enumerate() {
                for c in 0..d {
                    h0[k * d + c] = x0[[i, c]] as f32;
                    h1[k * d + c] = x1[[j, c]] as f32;
                }
            }
            if shape.is_conditional() {
                conditions = Some((drawn, pairs.into_iter().map(|(_, j)| j).collect()));
            }
        }
    }
    let (ts, rest) = rest.split_at_mut(n);
    let (extra, cs) = rest.split_at_mut(extra);
    cfg.time_sampling.fill(ts, &mut rng);
    cfg.objective.draw(cfg, ts, extra, &mut rng);
    if let Some((drawn, partners)) = conditions {
        for (row, &j) in cs.chunks_exact_mut(features).zip(&partners) {
            // Classifier-free guidance's dropout: this row learns the unconditional field.
            let dropped = rand::Rng::random::<f64>(&mut rng) < cfg.cond_drop;
            let label = drawn.labels.as_ref().filter(|_| shape.classes > 0 && !dropped).map(|l| l[j]);
            let values = drawn.values.as_ref().filter(|_| shape.dim > 0 && !dropped).map(|v| v.row(j).to_vec());
            shape.write_features(row, label, values.as_deref())?;
        }
    }
    Ok((host, coupling_seconds))
}

type DrawnBatch = Result<(Vec<f32>, f64)>;

/// Where the steps' data come from. On the CPU the training thread draws them itself. On a GPU,
/// where that thread only queues kernels, helper threads draw them ahead of it (helper `j` the
/// steps `j`, `j + k`, …: every step has its own generator, so the values are the same), and
/// the host draws overlap the GPU's work instead of adding to it. Measured on an H200 with a
/// 16-D mixture at batch 4,096: drawing inline made the step host-bound.
enum Batches<'a> {
    Inline { cfg: &'a TrainConfig, data: TrainingData<'a>, d: usize, shape: ConditionShape },
    Ahead { first_step: usize, queues: Vec<std::sync::mpsc::Receiver<DrawnBatch>> },
}

impl<'a> Batches<'a> {
    /// How many helpers draw ahead on `device`: none on the CPU; on a GPU up to 4, leaving 2
    /// cores to the training thread and libtorch.
    fn helpers(device: Device) -> usize {
        if device.is_cuda() {
            std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(2).clamp(1, 4)
        } else {
            0
        }
    }

    /// The batches of the steps after `first_step`, drawn by `helpers` threads of `scope` (0: inline).
    fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        helpers: usize,
        first_step: usize,
        cfg: &'a TrainConfig,
        data: TrainingData<'a>,
        d: usize,
        shape: ConditionShape,
    ) -> Self
    where
        'a: 'scope,
    {
        if helpers == 0 {
            return Batches::Inline { cfg, data, d, shape };
        }
        let queues = (0..helpers)
            .map(|j| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<DrawnBatch>(2);
                scope.spawn(move || {
                    for step in (first_step + 1 + j..=cfg.steps).step_by(helpers) {
                        let batch = draw_batch(step, cfg, data, d, shape, None);
                        let failed = batch.is_err();
                        // The training loop has stopped (its queues are gone), or this failed.
                        if tx.send(batch).is_err() || failed {
                            break;
                        }
                    }
                });
                rx
            })
            .collect();
        Batches::Ahead { first_step, queues }
    }

    fn get(&self, step: usize) -> DrawnBatch {
        match self {
            Batches::Inline { cfg, data, d, shape } => draw_batch(step, cfg, *data, *d, *shape, None),
            Batches::Ahead { first_step, queues } => {
                let queue = &queues[(step - first_step - 1) % queues.len()];
                queue.recv().map_err(|_| Error::Internal(format!("the thread drawing the training data stopped before step {step}")))?
            }
        }
    }
}

/// The host buffer `values` as a tensor on `device`. On a GPU the copy goes through
/// page-locked memory and does not wait: a copy from ordinary memory would first wait for the
/// GPU to finish the queued work (the previous step), every step. The caching host allocator
/// keeps the page-locked block until its copy is done. (`_pin_memory`: `pin_memory` with a
/// device argument prints a deprecation warning at every call.)
fn to_device_without_waiting(values: &[f32], device: Device) -> Result<Tensor> {
    let host = Tensor::f_from_slice(values)?;
    Ok(if device.is_cuda() { host.f_internal_pin_memory(device)?.f_to_device_(device, Kind::Float, true, false)? } else { host })
}

/// The loss of one drawn batch, with its gradients left in the parameters `opt` holds. The
/// network's written-out backward pass (autograd's gradients, bit for bit, in 15 % less time on
/// the seed step); autograd where it declines (the first step, before the gradients exist, and
/// SELU) and for a loss that is not a regression. `first`: check, on the first step, that the
/// loss reaches the parameters.
fn gradients(model: &dyn VelocityModel, cfg: &TrainConfig, host: &[f32], shape: ConditionShape, opt: &mut Adam, first: bool) -> Result<Tensor> {
    let written_out = match batch_loss(model, cfg, host, shape)? {
        BatchLoss::Regression { inputs, times, target } => match model.mse_backward(&inputs, &times, &target)? {
            Some(loss) => Ok(loss),
            None => Err(model.forward(&inputs, &times)?.f_mse_loss(&target, Reduction::Mean)?),
        },
        BatchLoss::Loss(loss) => Err(loss),
    };
    let loss = match written_out {
        Ok(loss) => return Ok(loss),
        Err(loss) => loss,
    };
    opt.zero_grad();
    loss.f_backward()?;
    let reached = |p: &Tensor| -> Result<bool> {
        let g = p.grad();
        Ok(g.defined() && f64::try_from(g.f_abs()?.f_sum(Kind::Double)?)? > 0.0)
    };
    if first && !opt.params().iter().map(reached).collect::<Result<Vec<_>>>()?.contains(&true) {
        // The loss does not reach the parameters the optimizer holds (copies, say).
        let msg = "no parameter of the model received a gradient: named_parameters must hand out the tensors its forward pass uses";
        return Err(Error::Model(fm_model::Error::Parameters(msg.into())));
    }
    Ok(loss)
}

/// Energy-only training: draws the proposal of `step`'s refresh from the model as it is when the
/// refresh begins, unless the state holds it already (a resumed run has the one it trained on).
fn refresh_proposal(model: &dyn VelocityModel, cfg: &TrainConfig, data: TrainingData<'_>, step: usize, state: &mut TrainState) -> Result<()> {
    let (TrainingData::Energy { density, source, map }, Some(objective)) = (data, cfg.objective.energy()) else {
        return Ok(());
    };
    if let Some(p) = state.proposal.as_ref().filter(|p| p.dim() != model.dim()) {
        return Err(Error::State(format!("the state's proposal holds {}-D points but the model is {}-D", p.dim(), model.dim())));
    }
    let round = (step - 1) / objective.plan.every;
    if state.proposal.as_ref().map(|p| p.round) != Some(round) {
        let before = state.proposal.as_ref().map_or(0, |p| p.evaluations);
        state.proposal = Some(crate::proposal::Proposal::draw(model, density, source, map, objective, round, cfg.steps, cfg.seed, before)?);
    }
    Ok(())
}

/// The objective's loss for one drawn batch (`host`, as [`draw_batch`] lays it out: a weights
/// column after the rest when it is `n` values longer); a conditional network's rows read their
/// condition features after their times.
fn batch_loss(model: &dyn VelocityModel, cfg: &TrainConfig, host: &[f32], shape: ConditionShape) -> Result<BatchLoss> {
    let (n, d) = (cfg.batch_size, model.dim());
    let batch = to_device_without_waiting(host, model.device())?;
    let view = |offset: usize, rows: usize, cols: usize| batch.f_narrow(0, offset as i64, (rows * cols) as i64)?.f_view([rows as i64, cols as i64]);
    let extra = cfg.objective.extra_len(cfg, n, d);
    let base = 2 * n * d + n + extra + n * shape.features();
    let conditions = view(2 * n * d + n + extra, n, shape.features())?;
    let weights = if host.len() == base + n { Some(view(base, n, 1)?) } else { None };
    let drawn = Batch {
        x0: view(0, n, d)?,
        x1: view(n * d, n, d)?,
        t: view(2 * n * d, n, 1)?,
        extra: batch.f_narrow(0, (2 * n * d + n) as i64, extra as i64)?,
        conditions,
        weights,
    };
    Ok(match cfg.objective.loss(model, cfg, &drawn)? {
        BatchLoss::Regression { inputs, times, target } => {
            let times = match shape.features() {
                0 => times,
                _ => Tensor::f_cat(&[&times, &drawn.conditions], 1)?,
            };
            BatchLoss::Regression { inputs, times, target }
        }
        loss => loss,
    })
}

/// The value of one batch's loss, without training (no gradient kept).
fn loss_value(model: &dyn VelocityModel, loss: BatchLoss) -> Result<f64> {
    Ok(match loss {
        BatchLoss::Regression { inputs, times, target } => {
            let _no_grad = tch::no_grad_guard();
            f64::try_from(model.forward(&inputs, &times)?.f_mse_loss(&target, Reduction::Mean)?)?
        }
        BatchLoss::Loss(loss) => f64::try_from(loss.f_detach()?)?,
    })
}

/// The training loss of `model` on `batches` batches drawn as training draws them but from a
/// stream of their own (seeded by [`HELD_OUT_SEED`] mixed into `cfg.seed`: no training step
/// saw them), without changing it: the mean and standard error over the batches, and the
/// per-batch losses (to compare two weight sets on the same batches).
///
/// # Errors
/// As [`train_on`]'s batch drawing and forward pass.
pub fn held_out_loss(model: &dyn VelocityModel, data: TrainingData<'_>, cfg: &TrainConfig, batches: usize) -> Result<Vec<f64>> {
    if matches!(data, TrainingData::Energy { .. }) {
        return Err(Error::Config("a held-out loss needs target points or pairs: a density alone has none".into()));
    }
    let held_out = TrainConfig { seed: cfg.seed ^ HELD_OUT_SEED, ..cfg.clone() };
    let shape = model.condition_shape();
    (1..=batches)
        .map(|step| {
            let (host, _) = draw_batch(step, &held_out, data, model.dim(), shape, None)?;
            loss_value(model, batch_loss(model, &held_out, &host, shape)?)
        })
        .collect()
}

/// Mixed into the run's seed for [`held_out_loss`]'s batches.
pub const HELD_OUT_SEED: u64 = 0x4e1d_0a77_5eed_0000;

/// The seed of step `step`'s generator in a run seeded by `seed` (a SplitMix64 mix of both):
/// every step draws its data from `StdRng::seed_from_u64(step_seed(seed, step))`, so a
/// resumed run needs no generator state to draw what an uninterrupted one would.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where a resumed run starts: `step` updates already taken, with this optimizer and EMA
/// (the model passed beside it must hold the weights of that step).
#[derive(Debug)]
pub struct Resume {
    /// Updates already taken (at most `cfg.steps`).
    pub step: usize,
    /// The optimizer and EMA as of that step.
    pub state: TrainState,
}

/// Writes a checkpoint (see [`TrainHooks::on_checkpoint`]).
pub type CheckpointHook<'a> = dyn FnMut(&crate::Checkpoint<'_>) -> Result<()> + 'a;

/// What [`train_resumable`] calls along the way.
pub struct TrainHooks<'a> {
    /// Every `report_every` steps, at each checkpoint and at the end.
    pub on_progress: &'a mut dyn FnMut(&Progress),
    /// Every `checkpoint_every` steps, at the end, and when stopped early; an error stops the
    /// run. `None`: no checkpoints (and no checks of the weights).
    pub on_checkpoint: Option<&'a mut CheckpointHook<'a>>,
    /// Read after every step: once set, the run finishes that step, checkpoints and returns
    /// with [`TrainOutcome::stopped`] set.
    pub stop: Option<&'a AtomicBool>,
}

/// What [`train_resumable`] leaves.
#[derive(Debug)]
pub struct TrainOutcome {
    /// What the run measured (its times and loss history cover this call only).
    pub report: TrainReport,
    /// The optimizer and EMA at `step` (the model holds the last iterate).
    pub state: TrainState,
    /// Updates taken, counting those before a resume: `cfg.steps` unless stopped.
    pub step: usize,
    /// Whether the stop flag ended the run early.
    pub stopped: bool,
}

/// The training loop of [`train`], resumable: it starts after `resume.step` (from scratch
/// when `None`), checkpoints through `hooks.on_checkpoint` every `cfg.checkpoint_every`
/// steps (0: only at the end), at the end, and when `hooks.stop` is set (after finishing
/// the step under way); `model` keeps the last iterate.
///
/// A run interrupted at a checkpoint and resumed from it ends with the same weights, bit for
/// bit on the CPU, as one that ran through: each step's data come from a generator seeded by
/// [`step_seed`]`(cfg.seed, step)`, and the learning rate depends on the step only.
///
/// Each checkpoint closes a reporting window. A non-finite window loss is
/// [`Error::Diverged`] naming the step that closed it, before any checkpoint of that window
/// is written; a checkpoint whose weights, moments or average are not all finite is refused
/// the same way, so the last checkpoint written stays the last good one.
///
/// # Errors
/// [`Error::Config`] for an invalid `cfg`, dimensions of model, target and source that differ,
/// or a resume past `cfg.steps`; [`Error::Diverged`] as above; whatever the checkpoint hook
/// returns; and the coupling's, the model's and torch's failures.
pub fn train_resumable<M: VelocityModel + ?Sized>(
    model: &mut M,
    target: &dyn Target,
    source: &dyn Target,
    cfg: &TrainConfig,
    resume: Option<Resume>,
    hooks: TrainHooks<'_>,
) -> Result<TrainOutcome> {
    train_on(model, TrainingData::Draw { target, source }, cfg, resume, hooks)
}

/// The checks [`train_on`] makes before any work, for a model of `dim`-D points taking
/// `time_inputs` times and conditioned on `condition`: a caller can refuse a run with them
/// before it writes anything.
///
/// # Errors
/// [`Error::Config`] for an invalid `cfg`, dimensions that differ, pairs with a coupling other
/// than `independent`, distillation without pairs, time inputs that do not fit the objective,
/// or a condition that the data do not carry or the model does not take.
pub fn check_training(cfg: &TrainConfig, data: TrainingData<'_>, dim: usize, time_inputs: usize, condition: ConditionShape) -> Result<()> {
    cfg.validate()?;
    let wanted = match data {
        TrainingData::Draw { target, .. } => cfg.condition.shape_for(&target.name(), target.classes(), target.condition_dim())?,
        TrainingData::Pairs(_) if !cfg.condition.is_none() => {
            return Err(Error::Config(format!("condition {}: training on pairs (reflow, distillation) is unconditional", cfg.condition)))
        }
        TrainingData::Pairs(_) => ConditionShape::NONE,
        TrainingData::Energy { .. } if cfg.objective.energy().is_none() => {
            return Err(Error::Config(format!(
                "objective {} needs samples of the target: a target known by its density alone trains with objective ewfm (energy-weighted flow matching)",
                cfg.objective
            )))
        }
        TrainingData::Energy { .. } if !cfg.condition.is_none() => {
            return Err(Error::Config(format!("condition {}: energy-only training is unconditional", cfg.condition)))
        }
        TrainingData::Energy { .. } => ConditionShape::NONE,
    };
    if wanted != condition {
        return Err(Error::Config(format!("condition {}: the data give {wanted}, the model is {condition} (model.classes, model.cond_dim)", cfg.condition)));
    }
    let (target_dim, source_dim) = data.dim();
    if target_dim != dim || source_dim != dim {
        let what =
            if matches!(data, TrainingData::Pairs(_)) { format!("pairs {target_dim}-D") } else { format!("target {target_dim}-D, source {source_dim}-D") };
        return Err(Error::Config(format!("dimension mismatch: model {dim}-D, {what}")));
    }
    match data {
        TrainingData::Pairs(_) if cfg.coupling != Coupling::Independent => {
            return Err(Error::Config(format!("coupling {}: training pairs are coupled already (by their teacher); set coupling to independent", cfg.coupling)))
        }
        _ => {}
    }
    cfg.objective.check(cfg, &data)?;
    if time_inputs != cfg.objective.time_inputs() {
        return Err(Error::Config(format!(
            "objective {} needs a network of {} time input(s), the model takes {} (model.time_inputs)",
            cfg.objective,
            cfg.objective.time_inputs(),
            time_inputs
        )));
    }
    Ok(())
}

/// [`train_resumable`] on any [`TrainingData`]: drawn and coupled each step, or fixed pairs
/// (reflow, distillation).
///
/// # Errors
/// As [`train_resumable`]; [`Error::Config`] also for pairs with a coupling other than
/// `independent`, distillation without pairs, and a model whose time inputs do not fit the
/// objective (MeanFlow's network takes two).
pub fn train_on<M: VelocityModel + ?Sized>(
    model: &mut M,
    data: TrainingData<'_>,
    cfg: &TrainConfig,
    resume: Option<Resume>,
    hooks: TrainHooks<'_>,
) -> Result<TrainOutcome> {
    let (model, shape, dim) = (&crate::units::AsDyn(&*model), model.condition_shape(), model.dim()); // one body for sized and `dyn` models
    check_training(cfg, data, dim, model.time_inputs(), shape)?;
    let TrainHooks { on_progress, mut on_checkpoint, stop } = hooks;
    let device = model.device();
    let (first_step, mut state) = match resume {
        Some(Resume { step, .. }) if step > cfg.steps => {
            return Err(Error::Config(format!("cannot resume at step {step}: the run has only {} steps (raise steps to continue it)", cfg.steps)))
        }
        Some(Resume { step, state }) => (step, state),
        None => (0, TrainState::new(model, cfg)?),
    };
    let mut window = Tensor::f_zeros([], (Kind::Float, device))?;
    let mut window_start = first_step;
    let mut history = Vec::new();
    let mut coupling_seconds = 0.0;
    let mut last_step = first_step;
    let mut stopped = false;
    let start = Instant::now();
    let has_hook = on_checkpoint.is_some();
    // Checks the weights, moments and average (all of them, before the hook writes any file:
    // a diverged model must not be left beside a refused state), then hands the checkpoint over.
    let mut checkpoint = |step: usize, model: &crate::units::AsDyn<'_, M>, state: &TrainState, loss: f64| -> Result<()> {
        if let Some(hook) = on_checkpoint.as_mut() {
            let weights = model.named_parameters().into_iter().map(|(_, t)| t);
            if !crate::checkpoint::all_finite(weights.chain(state.state()?.into_iter().map(|(_, t)| t)).collect::<Vec<_>>().iter())? {
                return Err(Error::Diverged { step, loss });
            }
            hook(&crate::Checkpoint { step, model, state, cfg, loss, finished: step == cfg.steps })?;
        }
        Ok(())
    };
    if first_step == cfg.steps {
        // Resumed at its last step: checkpoint once more, so that every file is complete.
        checkpoint(first_step, model, &state, f64::NAN)?;
    }
    // libtorch's threads for this run, measured once on a forward pass of its first batch (drawn
    // as the step will draw it) and then kept: counts switched mid-run changed the last bits of
    // the weights (measured: a 40-step run on a busy machine), while a run at 1 or at 2 threads
    // gives the same bits, so that a seed gives the same checkpoint however busy the machine.
    // (Energy-only training draws its proposal inside the loop, at the chosen count, on a fresh
    // run as on a resumed one: its probe is the forward pass on a batch of zeros.)
    if first_step < cfg.steps {
        let energy = matches!(data, TrainingData::Energy { .. });
        let host = if energy { None } else { Some(draw_batch(first_step + 1, cfg, data, dim, shape, None)?.0) };
        crate::threads::choose(|| -> Result<()> {
            let Some(host) = host.as_deref() else {
                let _no_grad = tch::no_grad_guard();
                let zeros = |cols: usize| Tensor::f_zeros([cfg.batch_size as i64, cols as i64], (Kind::Float, device));
                return Ok(model.forward(&zeros(dim)?, &zeros(model.time_inputs())?).map(drop)?);
            };
            match batch_loss(&*model, cfg, host, shape)? {
                BatchLoss::Regression { inputs, times, .. } => {
                    let _no_grad = tch::no_grad_guard();
                    model.forward(&inputs, &times).map(drop)?
                }
                BatchLoss::Loss(loss) => drop(loss),
            }
            Ok(())
        })?;
    }
    std::thread::scope(|scope| -> Result<()> {
        let helpers = if matches!(data, TrainingData::Energy { .. }) { 0 } else { Batches::helpers(device) };
        let batches = Batches::start(scope, helpers, first_step, cfg, data, dim, shape);
        for step in first_step + 1..=cfg.steps {
            refresh_proposal(&*model, cfg, data, step, &mut state)?;
            let (host, seconds) = match (data, &state.proposal) {
                (TrainingData::Energy { .. }, Some(proposal)) => draw_batch(step, cfg, data, dim, shape, Some(proposal))?,
                _ => batches.get(step)?,
            };
            coupling_seconds += seconds;
            let lr = cfg.lr_at(step);
            let opt = &mut state.optimizer;
            opt.lr = lr;
            let loss = gradients(&*model, cfg, &host, shape, opt, step == first_step + 1)?;
            if let Some(max_norm) = cfg.max_grad_norm {
                let _total_norm = opt.clip_grad_norm(max_norm)?;
            }
            opt.step()?;
            if let Some(ema) = &mut state.ema {
                ema.update(step)?;
            }
            last_step = step;

            window = window.f_add(&loss.f_detach()?)?;
            let checkpoint_due = step == cfg.steps || (cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0);
            let mut mean = None;
            let mut close_window = |window: &mut Tensor| -> Result<f64> {
                let m = f64::try_from(&*window)? / (step - window_start) as f64;
                if !m.is_finite() {
                    return Err(Error::Diverged { step, loss: m });
                }
                history.push((step, m));
                let _ = window.f_zero_()?;
                let energy = state.proposal.as_ref().map(crate::proposal::Proposal::progress);
                on_progress(&Progress { step, total_steps: cfg.steps, loss: m, lr, elapsed_s: start.elapsed().as_secs_f64(), energy });
                Ok(m)
            };
            if step % cfg.report_every == 0 || step == cfg.steps || (checkpoint_due && has_hook) {
                mean = Some(close_window(&mut window)?);
            }
            // Read after the progress report, so that a report can ask to stop at its own step.
            stopped = stop.is_some_and(|s| s.load(Ordering::SeqCst)) && step < cfg.steps;
            if stopped && mean.is_none() {
                mean = Some(close_window(&mut window)?);
            }
            if let Some(m) = mean {
                window_start = step;
                if (checkpoint_due || stopped) && has_hook {
                    checkpoint(step, model, &state, m)?;
                }
            }
            if stopped {
                break;
            }
        }
        Ok(())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let report = TrainReport {
        steps: last_step,
        final_loss: history.last().map_or(f64::NAN, |h| h.1),
        seconds,
        steps_per_s: (last_step - first_step) as f64 / seconds,
        coupling_seconds,
        loss_history: history,
    };
    Ok(TrainOutcome { report, state, step: last_step, stopped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fm_dist::GaussianMixture;

    fn setting() -> (TrainConfig, GaussianMixture, fm_dist::StandardNormal) {
        let cfg =
            TrainConfig { steps: 40, batch_size: 16, path: ProbabilityPath::Icfm { sigma: 0.1 }, coupling: Coupling::Ot, seed: 3, ..TrainConfig::default() };
        (cfg, GaussianMixture::seed(), fm_dist::StandardNormal::new(2).unwrap())
    }

    /// The seed mixture's classes: batches drawn ahead carry the conditions and their dropout too.
    const COND: ConditionShape = ConditionShape { classes: 3, dim: 0 };

    /// Helpers drawing ahead (the GPU path) hand the loop the batches it would draw inline (the
    /// CPU path), in step order, noise, coupling and conditions included.
    #[test]
    fn batches_drawn_ahead_are_the_inline_batches() {
        let (cfg, target, source) = setting();
        for helpers in [1, 3] {
            std::thread::scope(|scope| {
                let ahead = Batches::start(scope, helpers, 5, &cfg, TrainingData::Draw { target: &target, source: &source }, 2, COND);
                for step in 6..=cfg.steps {
                    let (got, _) = ahead.get(step).unwrap();
                    let (want, _) = draw_batch(step, &cfg, TrainingData::Draw { target: &target, source: &source }, 2, COND, None).unwrap();
                    assert_eq!(got.len(), 16 * 7 + 16 * COND.features());
                    assert_eq!(got, want, "step {step}, {helpers} helper(s)");
                }
            });
        }
    }

    /// A loop that stops early (an error, a signal) leaves its helpers blocked on full queues;
    /// dropping the queues must end them, or the run would hang instead of returning.
    /// Each training row carries the condition of its own target row, whatever the coupling did
    /// to the order: on the checkerboard a target point's class is its square, so a row whose
    /// one-hot is not the square of its `x1` (or whose flag says dropped while labelled) is
    /// caught. Condition-blind OT permutes the pairs, so a mix-up of source and target indices
    /// would show.
    #[test]
    fn every_row_carries_its_target_points_condition() {
        let cfg = TrainConfig { batch_size: 64, coupling: Coupling::Ot, cond_drop: 0.25, ..TrainConfig::default() };
        let target = fm_dist::Checkerboard;
        let source = fm_dist::StandardNormal::new(2).unwrap();
        let shape = ConditionShape { classes: 8, dim: 0 };
        let (n, f) = (64, shape.features());
        let mut dropped = 0;
        for step in 1..=5 {
            let (host, _) = draw_batch(step, &cfg, TrainingData::Draw { target: &target, source: &source }, 2, shape, None).unwrap();
            let (x1, cond) = (&host[n * 2..n * 4], &host[n * 5..]);
            for (k, row) in cond.chunks_exact(f).enumerate() {
                if row[8] == 1.0 {
                    assert!(row[..8].iter().all(|&v| v == 0.0));
                    dropped += 1;
                    continue;
                }
                let class = row[..8].iter().position(|&v| v == 1.0).unwrap();
                let square = fm_dist::Checkerboard::square(x1[2 * k] as f64, x1[2 * k + 1] as f64);
                assert_eq!(square, Some(class), "step {step} row {k}");
            }
        }
        // 320 rows at 0.25: 80 dropped on average (binomial sd 7.7).
        assert!((49..=111).contains(&dropped), "{dropped} of 320 rows dropped");
    }

    #[test]
    fn stopping_early_releases_the_helpers() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (cfg, target, source) = setting();
            let cfg = TrainConfig { steps: 100_000, ..cfg };
            std::thread::scope(|scope| {
                let ahead = Batches::start(scope, 4, 0, &cfg, TrainingData::Draw { target: &target, source: &source }, 2, ConditionShape::NONE);
                ahead.get(1).unwrap();
            });
            done_tx.send(()).unwrap();
        });
        assert!(done_rx.recv_timeout(std::time::Duration::from_secs(60)).is_ok(), "the helpers did not stop");
    }
}
