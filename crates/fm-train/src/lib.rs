//! Flow-matching training, sampling and evaluation: the crates put together.
//!
//! Training regresses a network `v_θ(x_t, t)` on the velocity `u_t` of a probability path
//! between source samples `x0` and target samples `x1` (the seed: `x_t = (1-t) x0 + t x1`,
//! `u_t = x1 - x0`); sampling integrates the learned field from source samples.
//!
//! The variants in use are settings of [`TrainConfig`]: the path ([`ProbabilityPath`]:
//! linear, I-CFM, Lipman, variance-preserving, Schrödinger bridge), how each batch's rows are
//! paired ([`Coupling`]: independent, exact minibatch OT, Sinkhorn), the law of the times
//! ([`TimeSampling`]), and the optimisation ([`OptimizerKind`] Adam/AdamW, [`LrSchedule`] with
//! warm-up, gradient clipping, an [`Ema`] of the weights). [`TrainConfig::preset`] names
//! tested combinations; `Default` is the seed experiment. A target known by its energy alone
//! trains by energy-weighted flow matching ([`objective::EnergyWeighted`] on
//! [`TrainingData::Energy`]); a user's energy can be a TorchScript module ([`ScriptedEnergy`]).
//!
//! ```
//! use fm_dist::{GaussianMixture, StandardNormal};
//! use fm_model::{Mlp, MlpConfig};
//! use fm_train::{train, sample, TrainConfig, SampleConfig};
//!
//! let target = GaussianMixture::seed();
//! let source = StandardNormal::new(2).unwrap();
//! let mut mlp = Mlp::new(MlpConfig::default(), tch::Device::Cpu).unwrap();
//! let cfg = TrainConfig { steps: 50, ..TrainConfig::default() };
//! let report = train(&mut mlp, &target, &source, &cfg, &mut |_| {}).unwrap();
//! assert_eq!(report.steps, 50);
//!
//! let x = sample(&mlp, &source, &SampleConfig { n_samples: 100, ..SampleConfig::default() }).unwrap();
//! assert_eq!(x.dim(), (100, 2));
//! ```
//!
//! Part of `fm`; the user guide, a book with tutorials, how-tos and measured results, is
//! [docs/SUMMARY.md](https://github.com/fm-rs/flow-matching/blob/main/docs/SUMMARY.md)
//! in the repository (`mdbook serve docs` renders it).

#![warn(missing_docs)]

pub mod checkpoint;
pub mod conditional;
mod convert;
pub mod coupling;
pub mod eval;
pub mod exact;
pub mod objective;
pub mod optim;
pub mod path;
mod progress;
pub mod proposal;
pub mod reflow;
mod sample;
pub mod scripted;
pub mod sde;
mod spelling;
pub mod threads;
pub mod time;
mod train;
mod units;

pub use checkpoint::{load_state, load_state_into, save_state, Checkpoint, LoadedState, ResumedState, STATE_FILE};
pub use conditional::{class_quality, class_samples, counts_by_weight, ClassQuality, ConditionOn, Guided, DEFAULT_COND_DROP};
pub use convert::{array_to_tensor, tensor_to_array};
pub use coupling::Coupling;
pub use eval::{kl_estimate, model_likelihood, model_log_prob, KlEstimate, LikelihoodConfig, ModelLikelihood, Tracked, Tracker};
pub use exact::ExactFlow;
pub use objective::{Generator, Objective, ObjectiveChoice};
pub use optim::{clip_grad_norm, Adam, Ema, LrSchedule, OptimizerKind};
pub use path::{AffineCoefficients, ProbabilityPath};
pub use progress::ProgressBarReporter;
pub use reflow::{draw_pairs, Pairs};
pub use sample::{sample, sample_on_path, sample_paths, sample_paths_on_path, sample_with_log_q, HasDevice, Jumps, SampleConfig};
pub use scripted::ScriptedEnergy;
pub use time::TimeSampling;
pub use train::{
    check_training, held_out_loss, step_seed, train, train_on, train_resumable, train_with_state, CheckpointHook, Preset, Progress, Resume, TrainConfig,
    TrainHooks, TrainOutcome, TrainReport, TrainState, TrainingData, HELD_OUT_SEED, PRESETS,
};
pub use units::{velocity_array, Condition, DataUnits, Generated, GeneratedPaths, Request};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Training data that cannot be used (NaN or infinite values in a batch), or a coupling
    /// solver that fails on them; the message says which.
    #[error("{0}")]
    Data(String),
    /// An optimizer, EMA or training state that does not fit the model or settings it is
    /// restored into (a tensor missing or of another shape, an EMA present on one side only).
    #[error("training state: {0}")]
    State(String),
    /// A broken invariant of this crate (a bug); the message says which.
    #[error("internal error: {0}")]
    Internal(String),
    /// The caller's checkpoint hook failed (writing its files, say): its own error.
    #[error(transparent)]
    Hook(Box<dyn std::error::Error + Send + Sync>),
    /// A setting or an input out of its domain (a training, sampling or likelihood setting, a
    /// name that does not parse, batches of mismatched shapes, state tensors that do not fit);
    /// the message names the field or the problem.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Training produced NaN or infinity: the mean loss of a reporting window, or a weight,
    /// moment or average about to be checkpointed, is not finite.
    #[error("training diverged at step {step} (mean loss {loss:e} since the last report; NaN or infinity in the loss, weights or optimizer state)")]
    Diverged {
        /// The step that closed the window, or the step of the refused checkpoint.
        step: usize,
        /// The mean loss of the window that ended at `step`: itself NaN or infinite when the
        /// loss diverged; NaN also when no window was measured (a run resumed at its last step).
        loss: f64,
    },
    /// Sampling carried some points to NaN or infinity: a diverged model, or a field too steep
    /// for the integrator's steps. Nothing of the samples is returned.
    #[error(
        "sampling produced NaN or infinite values in {bad} of {total} samples{}: the field blows up there (a diverged model, or too few integration steps for it)",
        first_bad.map_or(String::new(), |(step, t)| format!(", the first after step {step} (t = {t})"))
    )]
    NonFiniteSamples {
        /// Samples that ended NaN or infinite.
        bad: usize,
        /// Samples drawn.
        total: usize,
        /// The first integration step (1-based) after which a sample was not finite, and the time it
        /// reached; `None` for the adaptive method, whose steps are not fixed in advance.
        first_bad: Option<(usize, f64)>,
    },
    /// A training checkpoint that cannot be written or read back.
    #[error("training checkpoint: {0}")]
    Checkpoint(String),
    /// What the exact flow of [`exact`] does not cover (the message says what it does).
    #[error("{0}")]
    Exact(String),
    /// From the distributions: a dimension mismatch, a target without a density, a metric
    /// that cannot be computed, a file that cannot be written.
    #[error(transparent)]
    Dist(#[from] fm_dist::Error),
    /// From the ODE solvers: a bad grid or tolerance, a solve that failed.
    #[error(transparent)]
    Ode(#[from] fm_ode::Error),
    /// From the model: an invalid network configuration or input, an unusable checkpoint.
    #[error(transparent)]
    Model(#[from] fm_model::Error),
    /// A libtorch operation failed (shapes, kinds, devices, memory).
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The result of this crate's fallible functions, with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// `name:arg` as (`name`, `Some(arg)`), `name` as (`name`, `None`), both trimmed: the text
/// form of the settings that take a parameter (`icfm:0.1`, `logit-normal:0,1`).
/// Whether `source` is the standard normal `N(0, I)` (what the likelihood objective and the
/// SDE's score from the velocity are written for).
pub(crate) fn is_standard_normal(source: &dyn fm_dist::Target) -> bool {
    source.as_gaussian().is_some_and(|(mean, cov)| mean.iter().all(|&m| m == 0.0) && cov == ndarray::Array2::<f64>::eye(mean.len()))
}

pub(crate) fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((n, a)) => (n.trim(), Some(a.trim())),
        None => (spec, None),
    }
}
