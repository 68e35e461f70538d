//! A whole run in one TOML file, and the flags that override it.
//!
//! Precedence: a flag given on the command line > the `--config` file > the `--preset` >
//! the library defaults (the seed experiment). The resolved configuration is written into
//! the run folder as `config.toml`, so `fm train --config runs/x/config.toml` repeats a run.

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;
use fm_model::MlpConfig;
use fm_ode::Method;
pub use fm_run::RunConfig;
use fm_run::RunDir;
use fm_train::{Coupling, LrSchedule, OptimizerKind, ProbabilityPath, SampleConfig, TimeSampling, TrainConfig};
use std::path::{Path, PathBuf};

/// The checkpoint a command reads: `checkpoint` when given, else the model of the run that the
/// run file `config` belongs to (`runs/x/config.toml` → `runs/x/model.safetensors`). A run file
/// given is read either way, so a broken one is an error. `flag` names the checkpoint argument
/// in the error when neither is given.
pub fn checkpoint_or_run(checkpoint: Option<&Path>, config: Option<&Path>, flag: &str) -> Result<PathBuf> {
    if let Some(path) = config {
        RunConfig::read(path)?;
    }
    if let Some(path) = checkpoint {
        return Ok(path.to_path_buf());
    }
    let config = config.with_context(|| format!("no checkpoint: give {flag}, or --config RUN/config.toml for that run's model.safetensors"))?;
    let path = RunDir::of_run_file(config).file(RunDir::MODEL);
    anyhow::ensure!(path.is_file(), "no checkpoint beside the run file {} ({} is missing): give {flag}", config.display(), path.display());
    Ok(path)
}

/// What a checkpoint without our config (a PyTorch state dict) cannot say of its network,
/// shared by every command that reads a checkpoint.
#[derive(clap::Args, Debug, Clone)]
pub struct ForeignModelArgs {
    /// The network's activation where the checkpoint does not record it (a PyTorch state dict; the seed's network
    /// is relu) [default: the run file's, with --config, when the file's shapes are that run's network; else such a
    /// file is refused].
    #[arg(long)]
    pub activation: Option<fm_model::Activation>,
    /// What the network's first-layer inputs are after the data, where the checkpoint does not record it (a PyTorch
    /// state dict): t (the seed's), t:N (N sinusoidal time features), meanflow (an average velocity's r, t) or
    /// meanflow-paper (the same in the MeanFlow paper's time, converted), then ,classes:K and/or ,cond:C for a
    /// conditional network [default: the run file's, with --config; else only the seed's layout is read from shapes].
    #[arg(long, value_name = "LAYOUT")]
    pub inputs: Option<fm_model::checkpoint::InputLayout>,
}

impl ForeignModelArgs {
    /// The load options: the flag, else the run file's `[model]` (for a file of its shapes).
    pub fn options(&self, run: Option<&RunConfig>) -> fm_model::checkpoint::LoadOptions {
        fm_model::checkpoint::LoadOptions { config: None, activation: self.activation, described: run.map(|r| r.model.clone()), inputs: self.inputs }
    }
}

/// `--threads`, on every command that computes (read by `main` before the command runs).
#[derive(clap::Args, Debug)]
pub struct ThreadsFlag {
    /// libtorch threads (and helper threads) to compute with [default: OMP_NUM_THREADS if set, else measured:
    /// all cores on a quiet machine, one when another process holds a core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// `--config` and `--preset`, shared by every command that trains.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// A TOML file describing the run (see docs/config.md); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Start from a named preset (training settings and network): seed (the original experiment), fast (same
    /// budget, better result) or one-step (a fast teacher, its reflow and a distilled one-step map: 3× the budget).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
}

impl ConfigArgs {
    /// The configuration before flags: [`RunConfig::load`].
    pub fn load(&self) -> Result<RunConfig> {
        Ok(RunConfig::load(self.config.as_deref(), self.preset.as_deref())?)
    }
}

/// What to learn, from what, where.
#[derive(clap::Args, Debug)]
pub struct DataFlags {
    /// Distribution to learn: a built-in name, spec:FILE (mixture spec) or file:FILE (point cloud); see `fm targets`.
    #[arg(long, default_value_t = RunConfig::default().target)]
    pub target: String,
    /// Distribution to start from (any target works as a source).
    #[arg(long, default_value_t = RunConfig::default().source)]
    pub source: String,
    /// Where to compute: auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value_t = RunConfig::default().device)]
    pub device: String,
    /// Train a file:FILE target in its own units instead of standardised per coordinate (the default: mean 0,
    /// standard deviation 1, undone at sampling; the map is kept in the checkpoint).
    #[arg(long)]
    pub no_standardize: bool,
    /// Train on the coupled pairs of FILE (rows [x0 | x1], as `fm sample --pairs` writes): reflow, or with
    /// --objective distill a one-step map; --target still names what the model is judged against.
    #[arg(long, value_name = "FILE")]
    pub pairs: Option<String>,
    /// Start from the weights of CHECKPOINT (the same network) instead of a fresh initialisation: a reflow
    /// student from its teacher, a distilled map from its flow.
    #[arg(long, value_name = "CHECKPOINT")]
    pub init: Option<String>,
}

/// The network.
#[derive(clap::Args, Debug)]
pub struct ModelFlags {
    /// The network: mlp (the seed's: linear layers and an activation) or resmlp (residual blocks
    /// with layer norm on sinusoidal time features, 32 unless --time-embedding; --hidden-layers
    /// counts its blocks).
    #[arg(long = "model", id = "kind", value_name = "KIND", default_value = fm_model::registry::MLP)]
    pub kind: String,
    /// Width of the hidden layers.
    #[arg(long, default_value_t = MlpConfig::default().hidden_dim)]
    pub hidden_dim: usize,
    /// Number of hidden layers.
    #[arg(long, default_value_t = MlpConfig::default().hidden_layers)]
    pub hidden_layers: usize,
    /// Activation: relu, silu, gelu, selu or elu.
    #[arg(long, default_value_t = MlpConfig::default().activation)]
    pub activation: fm_model::Activation,
    /// Sinusoidal time features fed in place of the raw time (even; 0: the raw time, as the seed).
    #[arg(long, value_name = "N", default_value_t = MlpConfig::default().time_embedding)]
    pub time_embedding: usize,
}

/// The training run.
#[derive(clap::Args, Debug)]
pub struct TrainFlags {
    /// Seed of the initialisation and of the data stream.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Training steps.
    #[arg(long, default_value_t = TrainConfig::default().steps)]
    pub steps: usize,
    /// Batch size of each training step.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f64,
    /// Probability path: linear, icfm:SIGMA, lipman:SIGMA_MIN, vp, schrodinger-bridge:SIGMA.
    #[arg(long, default_value_t = TrainConfig::default().path)]
    pub path: ProbabilityPath,
    /// Pairing of source and target rows in a batch: independent, ot (exact minibatch OT), sinkhorn:REG; with --condition,
    /// ot-class (OT within each class) or c2ot / c2ot:RATIO (condition-aware OT, Cheng & Schwing 2025).
    #[arg(long, default_value_t = TrainConfig::default().coupling)]
    pub coupling: Coupling,
    /// Law of the training times: `uniform`, `stratified` (one uniform time per 1/n of each batch) or `logit-normal:MEAN,STD`.
    #[arg(long, default_value_t = TrainConfig::default().time_sampling)]
    pub time_sampling: TimeSampling,
    /// Optimizer: adam or adamw.
    #[arg(long, default_value_t = TrainConfig::default().optimizer)]
    pub optimizer: OptimizerKind,
    /// Weight decay (L2 for adam, decoupled for adamw).
    #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
    pub weight_decay: f64,
    /// Learning-rate schedule: `constant` or `cosine` (to 0), `cosine:MIN_LR`.
    #[arg(long, default_value_t = TrainConfig::default().lr_schedule)]
    pub lr_schedule: LrSchedule,
    /// Linear warm-up steps before the schedule.
    #[arg(long, default_value_t = TrainConfig::default().warmup_steps)]
    pub warmup_steps: usize,
    /// Clip the total gradient norm to this [default: no clipping].
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// Keep an exponential moving average of the weights with this decay (e.g. 0.999) and sample with it [default: none].
    #[arg(long)]
    pub ema_decay: Option<f64>,
    /// Write a resumable checkpoint every this many steps (0: only at the end); see `fm train --resume`.
    #[arg(long, default_value_t = TrainConfig::default().checkpoint_every)]
    pub checkpoint_every: usize,
    /// What the network learns: flow-matching (a velocity field), distill (a one-step map from --pairs, sampled
    /// with --steps 1), meanflow or meanflow:RATIO (an average velocity u(x, r, t), sampled in any number of jumps),
    /// or likelihood or likelihood:STEPS (maximum likelihood through STEPS RK4 steps of the ODE, default 8).
    #[arg(long, default_value_t = TrainConfig::default().objective)]
    pub objective: fm_train::ObjectiveChoice,
    /// Condition the network: `labels` (the target's classes: a mixture's components, a file's ?label=COL) or `values`
    /// (a file's condition vectors, ?cond=COL,…); sample with fm sample --class K, --cfg-scale W.
    #[arg(long, default_value_t = TrainConfig::default().condition)]
    pub condition: fm_train::ConditionOn,
    /// With --condition: the probability of training a row on "no condition", which classifier-free guidance needs.
    #[arg(long, default_value_t = TrainConfig::default().cond_drop)]
    pub cond_drop: f64,
}

/// How to sample.
#[derive(clap::Args, Debug)]
pub struct SampleFlags {
    /// Samples to generate.
    #[arg(long, default_value_t = SampleConfig::default().n_samples)]
    pub samples: usize,
    /// Integration steps from t = 0 to 1 (fixed-step methods).
    #[arg(long, default_value_t = SampleConfig::default().steps)]
    pub sample_steps: usize,
    /// Integration method (euler, midpoint, heun, rk4, dopri5).
    #[arg(long, default_value_t = SampleConfig::default().method)]
    pub method: Method,
    #[command(flatten)]
    pub sde: crate::config::SdeFlag,
}

/// `--sde [FORM[:NORM]]` (`fm sample`, `fm run`, `fm plot`): the sampler of the flow's marginals,
/// or `--sde none` for the ODE where a run file asks for the SDE.
#[derive(clap::Args, Debug, Clone)]
pub struct SdeFlag {
    /// Sample stochastically: Euler–Maruyama on the SDE with the flow's marginals, dx = [v + w(t) ∇log p_t] dt +
    /// √(2w(t)) dW, the score from the velocity (the exact flow's own with --oracle), the last step without noise.
    /// FORM: sigma (the default), constant, linear, decreasing, increasing-decreasing, sbdm; NORM in [0, 100] scales
    /// w (0: the ODE); none: the ODE (over a run file's sde). Needs --method euler, at least 2 steps, and a flow
    /// trained by flow matching on independent pairs along a noise-free affine path from N(0, I).
    #[arg(long = "sde", value_name = "FORM[:NORM]|none", num_args = 0..=1, default_missing_value = "sigma", value_parser = parse_sde)]
    sde: Option<SdeChoice>,
}

/// What `--sde` asked for: an SDE, or none (the ODE).
#[derive(Debug, Clone, Copy)]
struct SdeChoice(Option<fm_train::sde::Sde>);

fn parse_sde(s: &str) -> Result<SdeChoice, String> {
    match s.trim() {
        "none" | "ode" => Ok(SdeChoice(None)),
        s => s.parse().map(|sde| SdeChoice(Some(sde))).map_err(|e: fm_train::Error| e.to_string()),
    }
}

impl SdeFlag {
    /// Sets `cfg.sde` when the flag was given.
    pub fn apply(&self, cfg: &mut SampleConfig) {
        if let Some(SdeChoice(sde)) = self.sde {
            cfg.sde = sde;
        }
    }
}

/// Whether the flag `id` was given on the command line (not merely defaulted).
pub fn given(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
}

/// Copies each flag given on the command line (`$flags.$id`) into its configuration field.
macro_rules! override_given {
    ($m:expr, $flags:expr, $($id:ident => $dst:expr),+ $(,)?) => {
        $( if $crate::config::given($m, stringify!($id)) { $dst = $flags.$id.clone(); } )+
    };
}
pub(crate) use override_given;

impl DataFlags {
    pub fn apply(&self, m: &ArgMatches, cfg: &mut RunConfig) {
        override_given!(m, self, target => cfg.target, source => cfg.source, device => cfg.device);
        if self.no_standardize {
            cfg.standardize = false;
        }
        if self.pairs.is_some() {
            cfg.pairs = self.pairs.clone();
        }
        if self.init.is_some() {
            cfg.init = self.init.clone();
        }
    }
}

impl ModelFlags {
    pub fn apply(&self, m: &ArgMatches, cfg: &mut MlpConfig) {
        override_given!(m, self, kind => cfg.kind, hidden_dim => cfg.hidden_dim, hidden_layers => cfg.hidden_layers, activation => cfg.activation, time_embedding => cfg.time_embedding);
    }
}

impl TrainFlags {
    pub fn apply(&self, m: &ArgMatches, cfg: &mut TrainConfig) {
        override_given!(m, self,
            seed => cfg.seed,
            steps => cfg.steps,
            batch_size => cfg.batch_size,
            lr => cfg.lr,
            path => cfg.path,
            coupling => cfg.coupling,
            time_sampling => cfg.time_sampling,
            optimizer => cfg.optimizer,
            weight_decay => cfg.weight_decay,
            lr_schedule => cfg.lr_schedule,
            warmup_steps => cfg.warmup_steps,
            max_grad_norm => cfg.max_grad_norm,
            ema_decay => cfg.ema_decay,
            checkpoint_every => cfg.checkpoint_every,
            objective => cfg.objective,
            condition => cfg.condition,
            cond_drop => cfg.cond_drop,
        );
    }
}

impl SampleFlags {
    pub fn apply(&self, m: &ArgMatches, cfg: &mut SampleConfig) {
        override_given!(m, self, samples => cfg.n_samples, sample_steps => cfg.steps, method => cfg.method);
        self.sde.apply(cfg);
    }
}
