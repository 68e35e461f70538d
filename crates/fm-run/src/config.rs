//! The run file: a whole run in one TOML file (`config.toml` in a run folder).

use crate::{Error, Result};
use fm_dist::metrics::SampleQuality;
use fm_model::MlpConfig;
use fm_train::{ObjectiveChoice, SampleConfig, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything a run needs; `Default` is the seed experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// The distribution to learn (see `fm targets`).
    pub target: String,
    /// The distribution to start from.
    pub source: String,
    /// auto, cpu, cuda or cuda:N.
    pub device: String,
    /// Train on a file target (`file:FILE`) standardised per coordinate (mean 0, standard
    /// deviation 1), the map stored in the checkpoint and undone at sampling; `false` trains in
    /// the data's units (with a warning when they are far from unit scale).
    pub standardize: bool,
    /// The network.
    pub model: MlpConfig,
    /// How it is trained.
    pub train: TrainConfig,
    /// How `fm run` samples it.
    pub sample: SampleConfig,
    /// How `fm run` judges the samples.
    pub eval: EvalConfig,
    /// Train on the coupled pairs of this file (rows `[x0 | x1]`, `.npy` or `.csv`: a teacher's
    /// source points and their images, as `fm sample --pairs` writes) instead of drawing and
    /// coupling `source` and `target` (reflow, distillation); the target still judges the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairs: Option<String>,
    /// Start from the weights of this checkpoint (same network) instead of a fresh
    /// initialisation: a reflow student from its teacher, a distilled map from its flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// Train in stages, each from the last one's pairs (rectified flow's reflow, then
    /// distillation): the `one-step` preset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reflow: Option<ReflowConfig>,
}

/// Staged few-step training (Liu et al. 2022): a flow-matching teacher (1-RF) in the folder's
/// `1-rf/`, then `rounds` reflows (k-RF in `k-rf/`, each trained on its teacher's pairs from its
/// teacher's weights), then, with `distill`, a one-step map distilled from the last flow's
/// pairs. The last stage is the run folder's model. Every stage trains `[train]`'s steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReflowConfig {
    /// Reflows after the teacher: 1 trains 2-rectified flow, 2 trains 3-RF.
    pub rounds: usize,
    /// Then distil the last flow into a one-step map.
    pub distill: bool,
    /// Pairs drawn from each teacher (each stage's training draws from them with replacement).
    pub pairs: usize,
    /// RK4 steps of the teachers' solves (4 evaluations each).
    pub pair_steps: usize,
}

impl Default for ReflowConfig {
    fn default() -> Self {
        Self { rounds: 1, distill: true, pairs: 100_000, pair_steps: 50 }
    }
}

impl ReflowConfig {
    /// Checks the sizes.
    ///
    /// # Errors
    /// [`Error::Invalid`] for no stage after the teacher, or no pairs or steps.
    pub fn validate(&self) -> Result<()> {
        if self.rounds == 0 && !self.distill {
            return Err(Error::Invalid("[reflow] needs at least one round or distill = true (else it is plain flow matching)".into()));
        }
        if self.pairs == 0 || self.pair_steps == 0 {
            return Err(Error::Invalid(format!("[reflow] pairs and pair_steps must be at least 1, got {} and {}", self.pairs, self.pair_steps)));
        }
        Ok(())
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            target: "gmm3".into(),
            source: "normal".into(),
            device: "auto".into(),
            standardize: true,
            model: MlpConfig::default(),
            train: TrainConfig::default(),
            sample: SampleConfig::default(),
            eval: EvalConfig::default(),
            pairs: None,
            init: None,
            reflow: None,
        }
    }
}

/// How samples are judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Points per set of the exact W2 figure.
    pub w2_points: usize,
    /// Draws the W2 figure is averaged over.
    pub w2_draws: usize,
    /// Fresh target samples of the KL(target ‖ model) estimate (targets with a density only;
    /// 0 skips it).
    pub kl_points: usize,
    /// How the model's log-likelihood is computed for it.
    pub likelihood: fm_train::LikelihoodConfig,
    /// During training, W2 (and KL where densities exist) on a fixed holdout are added to
    /// metrics.csv at the checkpoints whose step is a multiple of this, and at the end (0: never).
    pub track_every: usize,
    /// Holdout target points (and generated samples) of those figures.
    pub track_points: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            w2_points: SampleQuality::W2_POINTS,
            w2_draws: SampleQuality::W2_DRAWS,
            kl_points: 4000,
            likelihood: fm_train::LikelihoodConfig::default(),
            track_every: 5000,
            track_points: 500,
        }
    }
}

impl EvalConfig {
    /// Checks the settings against the number of samples they will judge.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting out of range.
    pub fn validate(&self, n_samples: usize) -> Result<()> {
        if !(self.w2_points >= 2 && self.w2_points <= n_samples && self.w2_draws > 0) {
            return Err(Error::Invalid(format!(
                "w2_points must be in 2..={n_samples} (the number of samples) and w2_draws at least 1, got {} and {}",
                self.w2_points, self.w2_draws
            )));
        }
        self.likelihood.validate()?;
        Ok(())
    }

    /// Judges `samples` against `target` with these settings.
    ///
    /// # Errors
    /// Samples of another dimension than the target's, or too few of them.
    pub fn measure(&self, target: &dyn fm_dist::Target, samples: ndarray::ArrayView2<f64>, rng: &mut dyn rand::RngCore) -> Result<SampleQuality> {
        Ok(SampleQuality::measure(target, samples, self.w2_points, self.w2_draws, rng)?)
    }
}

impl RunConfig {
    /// Reads a TOML run file.
    ///
    /// # Errors
    /// [`Error::Io`] for a file that cannot be read, [`Error::RunFile`] (one line: the file, the
    /// line, what is wrong) for one that does not parse.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { what: "cannot read config", path: path.into(), source })?;
        toml::from_str(&text).map_err(|e| Error::RunFile {
            path: path.into(),
            line: e.span().map(|s| text.get(..s.start).unwrap_or("").matches('\n').count() + 1),
            message: e.message().trim().to_string(),
        })
    }

    /// The configuration before command-line flags: the defaults (the seed experiment), then
    /// the named `preset`'s training settings and network ([`fm_train::Preset`]), or the run
    /// file at `path`.
    ///
    /// # Errors
    /// Both given (a run file holds the whole training and model sections), an unknown preset,
    /// or a run file that cannot be read ([`RunConfig::read`]).
    pub fn load(path: Option<&Path>, preset: Option<&str>) -> Result<Self> {
        match (path, preset) {
            (Some(_), Some(_)) => Err(Error::Invalid("give --preset or --config, not both (a config file holds the whole training and model sections)".into())),
            (Some(path), None) => Self::read(path),
            (None, Some(name)) => {
                let preset = fm_train::Preset::named(name)?;
                let mut cfg = Self { train: preset.train, model: preset.model, ..Self::default() };
                if name.trim().eq_ignore_ascii_case("one-step") {
                    // The measured recipe (docs/few-step.md): teacher, 2-RF, distilled; sampled in one step.
                    cfg.reflow = Some(ReflowConfig::default());
                    cfg.sample.steps = 1;
                }
                Ok(cfg)
            }
            (None, None) => Ok(Self::default()),
        }
    }

    /// The preset a run starts from: the one named; with neither it nor a run file, the one the
    /// objective asked for on the command line was measured with ([`fm_train::Objective::preset`]:
    /// `ewfm`'s is `energy`), so that `--objective ewfm` alone trains with settings that suit it.
    pub fn starting_preset<'a>(path: Option<&Path>, preset: Option<&'a str>, objective: Option<&ObjectiveChoice>) -> Option<&'a str> {
        match (path, preset) {
            (None, None) => objective.and_then(|o| o.preset()),
            _ => preset,
        }
    }

    /// How the model this run trains generates: a one-step map when `[reflow]` distils or the
    /// objective is `distill`, an average velocity for MeanFlow, a flow otherwise.
    pub fn generator(&self) -> fm_train::Generator {
        match &self.reflow {
            Some(r) if r.distill => fm_train::Generator::OneStep,
            _ => self.train.objective.generator(),
        }
    }

    /// The run file's text (TOML, every section written out).
    ///
    /// # Errors
    /// A setting TOML cannot hold (a non-finite number).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::Invalid(format!("the run file cannot be written: {e}")))
    }
}
