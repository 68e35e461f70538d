//! The flags of the commands that train (`fm train`, `fm run`): what to learn, the network and
//! the training run, each applied over the run file only where given on the command line.

use crate::config::override_given;
use clap::ArgMatches;
use fm_model::MlpConfig;
use fm_run::RunConfig;
use fm_train::{Coupling, LrSchedule, OptimizerKind, ProbabilityPath, TimeSampling, TrainConfig};
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
    /// Number of hidden layers (for resmlp: residual blocks).
    #[arg(long, default_value_t = MlpConfig::default().hidden_layers)]
    pub hidden_layers: usize,
    /// Activation: relu, silu, gelu, selu or elu.
    #[arg(long, default_value_t = MlpConfig::default().activation)]
    pub activation: fm_model::Activation,
    /// Sinusoidal time features fed in place of the raw time (even; 0: the raw time, as the seed; for resmlp, 32).
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
    /// likelihood or likelihood:STEPS (maximum likelihood through STEPS RK4 steps of the ODE, default 8), or ewfm or
    /// ewfm:T0 (energy-weighted flow matching from the target's density alone, annealed from temperature T0;
    /// ewfm:T0:EVERY:SIZE:ODE_STEPS also sets its proposal: SIZE points every EVERY steps by ODE_STEPS RK4 steps).
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
