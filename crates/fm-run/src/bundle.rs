//! A checkpoint with what it records about its training, resolved once.

use crate::parse_source;
use crate::{Error, Result};
use fm_dist::affine::Affine;
use fm_dist::Target;
use fm_model::checkpoint::{self, LoadOptions, Metadata};
use fm_model::Network;
use fm_train::{DataUnits, TrainConfig};
use std::path::Path;

/// A model read from a checkpoint (ours or PyTorch's), with the source it was trained from and
/// what the file records of its training. Every command that reads a checkpoint resolves it here.
pub struct ModelBundle {
    /// The network, of the architecture the file records.
    pub model: Network,
    /// The header metadata (empty for a PyTorch state dict).
    pub metadata: Metadata,
    /// The source distribution to sample from: the one asked for, else the file's record, else `N(0, I)`.
    pub source: Box<dyn Target>,
    /// The target spec the file records (`None` for a file that records none).
    pub target: Option<String>,
    /// The training settings the file records (`Ok(None)` for a file that records none; `Err`
    /// saying why for a record that cannot be read, never a guess).
    pub train: std::result::Result<Option<TrainConfig>, String>,
    /// How the model generates: what the file records its network outputs
    /// ([`crate::OUTPUT`]), else the objective its training record names (files written
    /// before the output was recorded); only a file with neither (a PyTorch state dict) is read
    /// from its shapes: two time inputs an average velocity, one a flow.
    pub generator: fm_train::Generator,
    /// The standardisation the model was trained under (`x = shift + scale ⊙ z`; the model and
    /// [`ModelBundle::source`] are in standard units `z`), for a file target.
    pub data_map: Option<Affine>,
}

/// How a checkpoint's network generates: what the file records it outputs ([`crate::OUTPUT`]),
/// else the objective its training record names (files written before the output was
/// recorded), else (a PyTorch state dict) its time inputs: two an average velocity, one a flow.
///
/// # Errors
/// An output this fm does not know, or one its network's time inputs contradict (an average
/// velocity takes two, a velocity or one-step map one).
pub fn generator_of(metadata: &Metadata, train: &std::result::Result<Option<TrainConfig>, String>, time_inputs: usize) -> Result<fm_train::Generator> {
    use fm_train::Generator;
    let generator = match (metadata.get(crate::OUTPUT), train) {
        (Some(output), _) => Generator::from_output(output)?,
        (None, Ok(Some(t))) => t.objective.generator(),
        _ if time_inputs == 2 => return Ok(Generator::AverageVelocity),
        _ => return Ok(Generator::Flow),
    };
    if (generator == Generator::AverageVelocity) != (time_inputs == 2) {
        return Err(Error::Invalid(format!("the file records a {} model, but its network takes {time_inputs} time input(s)", generator.name())));
    }
    Ok(generator)
}

impl ModelBundle {
    /// Reads the checkpoint at `path` onto `device` (`auto`, `cpu`, `cuda`, `cuda:N`), with
    /// `source` (a target spec) overriding the file's record, and `foreign` saying what a file
    /// that does not record its architecture (a PyTorch state dict) cannot.
    ///
    /// # Errors
    /// An unreadable checkpoint or device, a file without its activation where `foreign` does
    /// not give one, or a source of another dimension than the model (a training record that
    /// cannot be read is not an error: it is kept in [`ModelBundle::train`]).
    pub fn load(path: &Path, device: &str, source: Option<&str>, foreign: &LoadOptions) -> Result<Self> {
        let (model, metadata) = checkpoint::load_any_with(path, fm_model::parse_device(device)?, foreign)?;
        let dim = model.dim();
        let spec = source.map(str::to_string).or_else(|| metadata.get("source").cloned()).unwrap_or_else(|| format!("normal:{dim}"));
        let source = parse_source(&spec, dim)?;
        if source.dim() != dim {
            return Err(Error::Invalid(format!("the source {} is {}-D but the checkpoint's model is {dim}-D", source.name(), source.dim())));
        }
        if !source.has_sampler() {
            return Err(Error::Invalid(format!("the source {} has no sampler: a source is drawn from", source.name())));
        }
        let train = metadata
            .get("train")
            .map(|json| serde_json::from_str::<TrainConfig>(json).map_err(|e| format!("the checkpoint's training settings cannot be read: {e}")))
            .transpose();
        let data_map = match metadata.get(crate::train::STANDARDIZE) {
            None => None,
            Some(json) => {
                let map: Affine =
                    serde_json::from_str(json).map_err(|e| Error::Invalid(format!("{}: the standardisation record cannot be read: {e}", path.display())))?;
                map.validate(dim).map_err(|e| Error::Invalid(format!("{}: the standardisation record: {e}", path.display())))?;
                Some(map)
            }
        };
        // The model starts from its source in standard units: a data source is standardised too.
        let source = match &data_map {
            Some(map) => fm_dist::affine::standard_source(source, map)?,
            None => source,
        };
        let generator = generator_of(&metadata, &train, model.time_inputs()).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        Ok(Self { target: metadata.get("target").cloned(), model, metadata, source, train, generator, data_map })
    }

    /// The model with its source and map: samples and densities in the data's units.
    pub fn units(&self) -> DataUnits<'_, dyn fm_model::VelocityModel> {
        DataUnits { field: &*self.model, source: self.source.as_ref(), map: self.data_map.as_ref(), path: self.path() }
    }

    /// The refusals of sampling this model by `sde` before any work: what
    /// [`fm_train::sde::Sde::check`] refuses (the kind of model, its path, its source), and what
    /// [`fm_train::sde::Sde::check_training`] refuses of its training record (another objective
    /// than flow matching, a minibatch coupling, a teacher's pairs). A record-less state dict
    /// is taken as the seed's (flow matching, independent pairs).
    ///
    /// # Errors
    /// [`Error::Train`] with the reason; [`Error::Invalid`] for an unreadable training record.
    pub fn check_sde(&self, sde: &fm_train::sde::Sde) -> Result<()> {
        sde.check(self.generator(), self.path(), self.source.as_ref(), false)?;
        match &self.train {
            Ok(Some(train)) => Ok(sde.check_training(train, self.metadata.contains_key(crate::train::PAIRS_METADATA))?),
            Ok(None) => Ok(()),
            Err(e) => Err(Error::Invalid(format!("--sde needs the checkpoint's training settings: {e}"))),
        }
    }

    /// The probability path the model was trained on: its record's, else the seed's (linear:
    /// a PyTorch state dict of the seed's experiment).
    pub fn path(&self) -> fm_train::ProbabilityPath {
        self.train.as_ref().ok().and_then(Option::as_ref).map_or(fm_train::ProbabilityPath::Linear, |t| t.path)
    }

    /// How the model generates (resolved when it is loaded, see [`ModelBundle::generator`] in
    /// [`ModelBundle::load`]).
    pub fn generator(&self) -> fm_train::Generator {
        self.generator
    }

    /// Whether the model learnt a teacher's pairs (reflow, distillation): its flow is not the
    /// exact flow of the target's independent pairs, and is not judged against it.
    pub fn trained_on_pairs(&self) -> bool {
        self.metadata.contains_key(crate::PAIRS_METADATA)
    }

    /// `cfg` as this model samples by default: [`fm_train::Generator::defaults`], with what
    /// was given on the command line kept.
    pub fn default_steps(&self, cfg: &mut fm_train::SampleConfig, steps_given: bool, method_given: bool) {
        self.generator().defaults(cfg, steps_given, method_given);
    }

    /// Refuses what needs the model's velocity field at every time (likelihoods, field and
    /// density figures) for a model that is not a flow: its likelihood is not its sampler's.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `what` for a one-step or MeanFlow model.
    pub fn require_flow(&self, what: &str) -> Result<()> {
        match self.generator() {
            fm_train::Generator::Flow => Ok(()),
            g => Err(Error::Invalid(format!(
                "{what} need a flow, and this checkpoint is a {} model (it generates in jumps, not by integrating its field): judge it with fm eval --checkpoint",
                g.name()
            ))),
        }
    }

    /// Checks that a conditional model's "no condition" entry was trained (its run dropped the
    /// condition on some rows): guidance and unconditional sampling evaluate it.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a model trained with `cond_drop = 0`.
    pub fn require_null_entry(&self) -> Result<()> {
        match &self.train {
            Ok(Some(t)) if fm_train::conditional::null_entry_untrained(t) => Err(Error::Invalid(
                "this checkpoint was trained with cond_drop 0: its \"no condition\" entry never trained, and guidance (--cfg-scale other than 1) \
                 and unconditional sampling use it; sample a class with --cfg-scale 1, or train with --cond-drop above 0"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    /// The classes `spec` names of this model ([`crate::parse_classes`]).
    ///
    /// # Errors
    /// As `parse_classes`; a model of condition vectors is told to take `--cond`.
    pub fn classes(&self, spec: &str) -> Result<Vec<usize>> {
        let shape = self.model.condition_shape();
        if shape.classes == 0 && shape.dim > 0 {
            return Err(Error::Invalid(format!(
                "--class: the checkpoint is conditioned on {}-D vectors, not classes: give --cond V,… to fm sample",
                shape.dim
            )));
        }
        crate::parse_classes(spec, shape.classes)
    }

    /// Checks a request's condition (`classes`, or a condition vector `cond`) and guidance scale
    /// against the model: a vector of its width, finite; guidance only with a condition; the
    /// "no condition" entry (unconditional sampling of a conditional model, guidance) only where
    /// it trained. Returns warnings (a vector outside the training data's range).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the flag.
    pub fn check_condition(&self, classes: Option<&[usize]>, cond: Option<&[f64]>, cfg_scale: f64) -> Result<Vec<String>> {
        let shape = self.model.condition_shape();
        let mut warnings = Vec::new();
        if let Some(v) = cond {
            let refuse = |m: String| Err(Error::Invalid(format!("--cond: {m}")));
            if shape.dim == 0 {
                return refuse(format!(
                    "the checkpoint is not conditioned on vectors{}",
                    if shape.classes > 0 { " (it takes classes: --class K)" } else { "" }
                ));
            }
            if v.len() != shape.dim {
                return refuse(format!("a {}-D condition vector: the checkpoint takes {}-D ones", v.len(), shape.dim));
            }
            if !v.iter().all(|x| x.is_finite()) {
                return refuse(format!("every value must be a finite number, got {v:?}"));
            }
            warnings.extend(self.condition_outside_training(v).map(|note| format!("--cond: {note}")));
        }
        let unconditional = classes.is_none() && cond.is_none();
        if cfg_scale != 1.0 && unconditional {
            return Err(Error::Invalid("--cfg-scale guides a condition: give --class K (or --cond V,… for a model of condition vectors)".into()));
        }
        if shape.is_conditional() && (cfg_scale != 1.0 || unconditional) {
            self.require_null_entry()?;
        }
        Ok(warnings)
    }

    /// Checks that the model's samples can be a student's pairs: a flow, trained in the data's units.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a one-step or MeanFlow model, or one trained on standardised data.
    pub fn require_pairs(&self) -> Result<()> {
        if !self.generator.is_flow() {
            return Err(Error::Invalid(format!("--pairs needs a flow (a reflow teacher); this checkpoint is a {} model", self.generator.name())));
        }
        if self.data_map.is_some() {
            return Err(Error::Invalid("--pairs needs a flow trained in the data's units; this one was trained on standardised file data".into()));
        }
        Ok(())
    }

    /// A note when a condition vector lies outside the range of the training data's condition
    /// values (by more than a tenth of that range in a coordinate): the model extrapolates there,
    /// and its samples say nothing the data did. The range is read from the recorded target's
    /// draws (10,000, seeded); `None` where it is inside, or where the file records no target
    /// with condition values of that width.
    pub fn condition_outside_training(&self, values: &[f64]) -> Option<String> {
        let target = crate::parse_target(self.target.as_deref()?).ok()?;
        if target.condition_dim() != values.len() || values.is_empty() {
            return None;
        }
        let drawn = target.sample_conditioned(10_000, &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0)).values?;
        let outside: Vec<String> = drawn
            .columns()
            .into_iter()
            .zip(values)
            .enumerate()
            .filter_map(|(j, (col, &v))| {
                let (lo, hi) = col.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &c| (lo.min(c), hi.max(c)));
                let margin = 0.1 * (hi - lo);
                (v < lo - margin || v > hi + margin).then(|| format!("value {} is {v}, the data's run from {lo:.4} to {hi:.4}", j + 1))
            })
            .collect();
        (!outside.is_empty())
            .then(|| format!("the condition lies outside the training data's ({}): the model extrapolates, its samples are not the data's", outside.join("; ")))
    }

    /// The training settings the file records, or the seed's (linear path, uniform times,
    /// independent pairs) with a note saying so for a file that records none.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a record that cannot be read.
    pub fn train_or_seed(&self) -> Result<(TrainConfig, Option<&'static str>)> {
        match &self.train {
            Ok(Some(t)) => Ok((t.clone(), None)),
            Ok(None) => Ok((
                TrainConfig::default(),
                Some("the checkpoint records no training settings; the exact flow of the seed's (linear path, uniform times, independent pairs) is assumed"),
            )),
            Err(why) => Err(Error::Invalid(why.clone())),
        }
    }
}
