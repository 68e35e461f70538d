//! A flow-matching run as a library: what `fm run` and `fm train` write and read, for Rust
//! callers that produce or read run folders without the command line.
//!
//! - [`RunConfig`]: the run file (`config.toml`): target, source, device, model, training,
//!   sampling and evaluation settings, every field optional in TOML, `Default` the seed experiment.
//! - [`RunDir`]: the run folder's layout ([`RunDir::CONFIG`], [`RunDir::MODEL`], …), its lock
//!   (an OS file lock, released by the OS when the holder dies), atomic writes, the typed
//!   [`MetricsRow`] of `metrics.csv` and the typed [`Report`] of `report.json`.
//! - [`train_run`]: trains a run into its folder, checkpointing model, state and metrics in
//!   a crash-safe order, resuming from the folder when asked.
//! - [`finish_run`]: the second half of `fm run`: samples the trained model (class by class
//!   for a class-conditional one), judges samples and model, writes samples, labels and report.
//! - Every command's work short of parsing and printing: [`sample`] (a [`SampleJob`]: its
//!   condition, guidance and sampler checked against the model before any work, `log q` on
//!   request), [`evaluate`] (an [`EvalJob`]: samples, their importance weights, a model, its
//!   classes, the exact flow), [`prepare_plot`] (a [`PlotJob`]: every figure's refusals, its
//!   points and paths), [`inspect`], [`targets`]; [`resolve_target`] is the one rule for the
//!   target (flag, run file, checkpoint, the seed's).
//! - [`ModelBundle`]: a checkpoint with its metadata, its source and training record resolved once.
//! - [`seeds`]: how every random stream of a run derives from its one seed.
//!
//! ```no_run
//! use fm_run::{train_run, RunConfig, RunDir, TrainOptions};
//! let cfg = RunConfig { target: "8gaussians".into(), ..RunConfig::default() };
//! let dir = RunDir::new("runs/8g");
//! let trained = train_run(&cfg, &dir, &TrainOptions::default(), &mut |line| println!("{line}")).unwrap();
//! println!("final loss {}", trained.report.final_loss);
//! ```
//!
//! Part of `fm`; the user guide, a book with tutorials, how-tos and measured results, is
//! [docs/SUMMARY.md](https://github.com/fm-rs/flow-matching/blob/main/docs/SUMMARY.md)
//! in the repository (`mdbook serve docs` renders it).
#![warn(missing_docs)]

mod bundle;
mod config;
mod describe;
mod dir;
pub mod exact;
mod figures;
mod finish;
mod judge;
mod sampling;
mod train;

pub use bundle::ModelBundle;
pub use config::{EvalConfig, ReflowConfig, RunConfig};
pub use describe::{inspect, targets};
pub use dir::{MetricsRow, Report, RunDir, RunLock};
pub use figures::{prepare_plot, Energies, Figure, Plot, PlotJob};
pub use finish::{finish_run, prepare, write_labels, Finished};
pub use judge::{evaluate, EvalJob, Finding};
pub use sampling::{describe, labels_path, log_q_path, parse_classes, sample, write_sampled, SampleJob, Sampled};
pub use train::{train_run, TrainOptions, Trained, OUTPUT, PAIRS_METADATA};

use std::path::PathBuf;

/// The checkpoint a command reads: `checkpoint` when given, else the model of the run that the
/// run file `config` belongs to (`runs/x/config.toml` → `runs/x/model.safetensors`). A run file
/// given is read either way, so a broken one is an error. `flag` names the checkpoint argument
/// in the error when neither is given.
///
/// # Errors
/// A run file that does not read, or no checkpoint to be found.
pub fn checkpoint_or_run(checkpoint: Option<&std::path::Path>, config: Option<&std::path::Path>, flag: &str) -> Result<PathBuf> {
    if let Some(path) = config {
        RunConfig::read(path)?;
    }
    if let Some(path) = checkpoint {
        return Ok(path.to_path_buf());
    }
    let Some(config) = config else {
        return Err(Error::Invalid(format!("no checkpoint: give {flag}, or --config RUN/config.toml for that run's model.safetensors")));
    };
    let path = RunDir::of_run_file(config).file(RunDir::MODEL);
    if !path.is_file() {
        return Err(Error::Invalid(format!("no checkpoint beside the run file {} ({} is missing): give {flag}", config.display(), path.display())));
    }
    Ok(path)
}

/// The target a command judges or draws against, by one rule: the flag, else the run file's,
/// else the one the checkpoint records, else the seed's (`gmm3`).
pub fn resolve_target(flag: Option<&str>, run: Option<&RunConfig>, checkpoint: Option<&str>) -> String {
    flag.map(str::to_string).or_else(|| run.map(|r| r.target.clone())).or_else(|| checkpoint.map(str::to_string)).unwrap_or_else(|| RunConfig::default().target)
}

/// A target by its spelling, as fm-dist's [`fm_dist::parse_target`] reads it with what fm-train
/// adds to its registry (`energy:FILE?dim=D`, a TorchScript energy): every target a run, a
/// judgement or a figure names is opened here.
pub(crate) fn parse_target(spec: &str) -> fm_dist::Result<Box<dyn fm_dist::Target>> {
    register_targets();
    fm_dist::parse_target(spec)
}

/// A source by its spelling ([`fm_dist::parse_source`]), as [`parse_target`] reads targets.
pub(crate) fn parse_source(spec: &str, dim: usize) -> fm_dist::Result<Box<dyn fm_dist::Target>> {
    register_targets();
    fm_dist::parse_source(spec, dim)
}

pub(crate) fn register_targets() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // Registration refuses only built-in names, which `energy` is not: nothing to report.
    ONCE.call_once(|| drop(fm_train::scripted::register()));
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting or request that cannot be run (the message says which and why).
    #[error("{0}")]
    Invalid(String),
    /// A run file that cannot be parsed: its path, the line, and what is wrong.
    #[error("{path}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    RunFile {
        /// The file.
        path: PathBuf,
        /// The line of the fault, where known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A file or folder of the run that cannot be read or written (the OS error is the
    /// `source`: `{:#}` or an error chain prints it).
    #[error("{what} {}", path.display())]
    Io {
        /// What the file is for ("cannot read config", "cannot create output folder", …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Another process holds the run folder's lock.
    #[error("{} is in use by another fm process; wait for it to finish or choose another run folder", dir.display())]
    Locked {
        /// The run folder.
        dir: PathBuf,
    },
    /// `metrics.csv` cannot be read or written (the CSV error is the `source`).
    #[error("{}", path.display())]
    Metrics {
        /// The file.
        path: PathBuf,
        /// The CSV reader's or writer's error.
        source: csv::Error,
    },
    /// Training failed; `kept` says which checkpoint survives (why it failed is the `source`).
    #[error("training stopped; {kept}")]
    Stopped {
        /// "the last good checkpoint (step N) is kept in DIR", or "no checkpoint was written".
        kept: String,
        /// Why training stopped.
        source: fm_train::Error,
    },
    /// Training was stopped by the caller's flag (SIGINT, SIGTERM) after checkpointing.
    #[error("interrupted at step {step}; checkpoint in {dir}; continue with: fm train --resume {dir}", dir = dir.display())]
    Interrupted {
        /// The step checkpointed.
        step: usize,
        /// The run folder.
        dir: PathBuf,
    },
    /// A target or source spec that cannot be parsed (`what` says which).
    #[error("{what}")]
    Spec {
        /// `target` or `source`.
        what: &'static str,
        /// Why.
        source: fm_dist::Error,
    },
    /// The training state a run would continue from cannot be read.
    #[error("cannot resume")]
    Resume {
        /// Why.
        source: fm_train::Error,
    },
    /// From the training layer.
    #[error(transparent)]
    Train(#[from] fm_train::Error),
    /// From the model layer.
    #[error(transparent)]
    Model(#[from] fm_model::Error),
    /// From the distributions and files layer.
    #[error(transparent)]
    Dist(#[from] fm_dist::Error),
}

/// The result of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// How every random stream of a run derives from its one seed (`train.seed`), so that each
/// stream is reproducible and none changes another: tracking during training never changes
/// what is trained, and judging never changes what is sampled.
pub mod seeds {
    /// The sampling seed a new training seed implies (`--seed` given without a sampling seed:
    /// a new seed draws new sampling noise too): `seed + 1`.
    pub fn sampling(train_seed: u64) -> u64 {
        train_seed.wrapping_add(1)
    }
    /// The holdout set and noise of the figures tracked during training: `seed ^ 0x7ac4`.
    pub fn tracking(train_seed: u64) -> u64 {
        train_seed ^ 0x7ac4
    }
    /// The reference sets `fm run` judges its samples against: `seed + 2`.
    pub fn quality(train_seed: u64) -> u64 {
        train_seed.wrapping_add(2)
    }
    /// The source points of stage `stage`'s reflow pairs: `seed + 0x9a1f_0000 + stage`.
    pub fn pairs(train_seed: u64, stage: usize) -> u64 {
        train_seed.wrapping_add(0x9a1f_0000).wrapping_add(stage as u64)
    }
    /// The target points of `fm run`'s KL estimate: `seed + 3`.
    pub fn kl(train_seed: u64) -> u64 {
        train_seed.wrapping_add(3)
    }
}
