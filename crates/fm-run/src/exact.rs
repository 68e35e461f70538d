//! The exact flow a command asks for (`fm_train::exact`), resolved from flags, a run file or
//! a checkpoint's record, and the field report of a model against it.

use crate::{Error, ModelBundle, Result, RunConfig};
use fm_dist::metrics::Estimate;
use fm_dist::Target;
use fm_ode::VectorField;
use fm_train::{Coupling, ExactFlow, HasDevice, ProbabilityPath, TimeSampling, TrainConfig};
use rand::{rngs::StdRng, SeedableRng};

/// An exact flow, its source, and the notes a user should read about it.
pub struct Resolved {
    /// The flow.
    pub flow: ExactFlow,
    /// Its source distribution.
    pub source: Box<dyn Target>,
    /// What was assumed, and where the flow's ends are blurred ([`ExactFlow::blurred_ends`]).
    pub notes: Vec<String>,
}

/// The exact flow a command is asked for: the target, source and path each from its argument,
/// else the run file's, else the checkpoint's record, else the seed's (`gmm3`, `normal:D`,
/// linear); the coupling from the run file or the checkpoint.
///
/// # Errors
/// A target or source that cannot be parsed, or a setting the exact flow does not cover.
pub fn resolve(
    target: Option<&str>,
    source: Option<&str>,
    path: Option<ProbabilityPath>,
    run: Option<&RunConfig>,
    bundle: Option<&ModelBundle>,
) -> Result<Resolved> {
    let target =
        target.map(str::to_string).or_else(|| run.map(|r| r.target.clone())).or_else(|| bundle.and_then(|b| b.target.clone())).unwrap_or_else(|| "gmm3".into());
    let source = source.map(str::to_string).or_else(|| run.map(|r| r.source.clone())).or_else(|| bundle.and_then(|b| b.metadata.get("source").cloned()));
    let mut notes = Vec::new();
    let train = match (run, bundle) {
        (Some(r), _) => r.train.clone(),
        (None, Some(b)) => {
            let (train, note) = b.train_or_seed()?;
            notes.extend(note.map(String::from));
            train
        }
        (None, None) => TrainConfig::default(),
    };
    let coupling = train.coupling;
    let target = crate::parse_target(&target)?;
    let spec = source.unwrap_or_else(|| format!("normal:{}", target.dim()));
    let source = crate::parse_target(&spec)?;
    let flow = ExactFlow::for_training(target.as_ref(), source.as_ref(), path.unwrap_or(train.path), coupling).map_err(|e| match coupling {
        Coupling::Independent => Error::from(e),
        _ => Error::Invalid(format!("the run file trains with coupling {coupling}, and {e}: give --target, --source and --path instead of the run file")),
    })?;
    notes.extend(flow.blurred_ends());
    Ok(Resolved { flow, source, notes })
}

/// Times of the printed field-error curve.
pub const CURVE_TIMES: [f64; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// What `fm eval --checkpoint` reports of a model against the exact flow.
#[derive(Debug, Clone)]
pub struct FieldReport {
    /// The probability path of the training setting.
    pub path: ProbabilityPath,
    /// Its law of the times.
    pub time_sampling: TimeSampling,
    /// The loss floor of the setting.
    pub floor: Estimate,
    /// `E‖v − v*‖²` per coordinate over the time law.
    pub error: Estimate,
    /// The same at each time of the curve.
    pub curve: Vec<(f64, Estimate)>,
}

/// The model's field error under the training setting `train` (path, coupling, time law), its
/// loss floor and its error curve over `times`; `Ok(Err(reason))` where the exact flow does not
/// cover the setting.
///
/// # Errors
/// A model of another dimension, or a torch failure.
pub fn field_report(
    model: &(impl VectorField + HasDevice + ?Sized),
    target: &dyn Target,
    source: &dyn Target,
    train: &TrainConfig,
    times: &[f64],
    seed: u64,
) -> Result<std::result::Result<FieldReport, String>> {
    let flow = match ExactFlow::for_training(target, source, train.path, train.coupling) {
        Ok(flow) => flow,
        Err(fm_train::Error::Exact(why)) => return Ok(Err(why)),
        Err(e) => return Err(e.into()),
    };
    let Some(floor) = fm_train::exact::training_floor(target, source, train)? else {
        return Ok(Err("no loss floor for this setting".into()));
    };
    let mut rng = StdRng::seed_from_u64(seed);
    // A quarter of the floor's times and points, at most 1,024 × 64: the model is called once per time.
    let (n_times, points) = flow.floor_draws();
    let error = flow.field_error(model, train.time_sampling, (n_times / 4).clamp(32, 1024), points.min(64), &mut rng)?;
    let curve = times.iter().copied().zip(flow.field_error_curve(model, times, (points * 8).min(2048), &mut rng)?).collect();
    Ok(Ok(FieldReport { path: train.path, time_sampling: train.time_sampling, floor, error, curve }))
}

impl std::fmt::Display for FieldReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  field error E‖v − v*‖²  {:.5}   (per coordinate, {} times; this checkpoint's expected loss is floor + field error)",
            self.error, self.time_sampling
        )?;
        writeln!(f, "  loss floor             {:.4}   (path {}: the part of the loss no model can remove)", self.floor, self.path)?;
        let row = |v: &dyn Fn(&(f64, Estimate)) -> String| self.curve.iter().map(v).collect::<Vec<_>>().join(" ");
        writeln!(f, "  over t:  t     {}", row(&|(t, _)| format!("{t:>7.2}")))?;
        write!(f, "           error {}", row(&|(_, e)| format!("{:>7.4}", e.mean)))
    }
}
