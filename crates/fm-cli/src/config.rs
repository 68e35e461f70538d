//! A whole run in one TOML file, and the flags that override it.
//!
//! Precedence: a flag given on the command line > the `--config` file > the `--preset` >
//! the library defaults (the seed experiment). The resolved configuration is written into
//! the run folder as `config.toml`, so `fm train --config runs/x/config.toml` repeats a run.

use anyhow::Result;
use clap::parser::ValueSource;
use clap::ArgMatches;
use fm_ode::Method;
pub use fm_run::RunConfig;
use fm_train::SampleConfig;
use std::path::PathBuf;

pub use fm_run::checkpoint_or_run;

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
    /// budget, better result), one-step (a fast teacher, its reflow and a distilled one-step map: 3× the budget) or
    /// energy (from the target's energy alone: annealed energy-weighted flow matching at batch 1,024, learning rate 8e-3;
    /// --objective ewfm without --preset or --config starts from it).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
}

impl ConfigArgs {
    /// The configuration before flags: [`RunConfig::load`] from the preset
    /// [`RunConfig::starting_preset`] names for `objective` (the `--objective` given), and that
    /// preset's name where the objective chose it.
    pub fn load(&self, objective: Option<&fm_train::ObjectiveChoice>) -> Result<(RunConfig, Option<&str>)> {
        let preset = RunConfig::starting_preset(self.config.as_deref(), self.preset.as_deref(), objective);
        Ok((RunConfig::load(self.config.as_deref(), preset)?, preset.filter(|_| self.preset.is_none())))
    }
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
        if let Some(sde) = self.given() {
            cfg.sde = sde;
        }
    }

    /// What the flag asked for where it was given: an SDE, or `None` for the ODE.
    pub fn given(&self) -> Option<Option<fm_train::sde::Sde>> {
        self.sde.map(|SdeChoice(sde)| sde)
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

impl SampleFlags {
    pub fn apply(&self, m: &ArgMatches, cfg: &mut SampleConfig) {
        override_given!(m, self, samples => cfg.n_samples, sample_steps => cfg.steps, method => cfg.method);
        self.sde.apply(cfg);
    }
}
