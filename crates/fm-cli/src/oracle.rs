//! The exact flow of a Gaussian-mixture target from the command line (`fm_train::exact`):
//! `fm sample --oracle`, `fm eval --oracle`, the field error of `fm eval --checkpoint` and
//! `fm plot field-error`.

use crate::config::RunConfig;
use anyhow::{Context, Result};
use fm_dist::metrics::Estimate;
use fm_dist::Target;
use fm_model::checkpoint::Metadata;
use fm_train::{ExactFlow, HasDevice, ProbabilityPath, TimeSampling, TrainConfig};
use fm_ode::VectorField;
use rand::{rngs::StdRng, SeedableRng};

/// The training settings a checkpoint records (fm checkpoints); `None` for a file that records
/// none (a PyTorch state dict); an error for a record that cannot be read (never a guess).
pub fn trained_with(meta: &Metadata) -> Result<Option<TrainConfig>> {
    meta.get("train").map(|json| serde_json::from_str(json).context("the checkpoint's training settings cannot be read")).transpose()
}

/// [`trained_with`], or the seed's settings (linear path, uniform times) for a file that records
/// none, saying so on stderr.
pub fn trained_with_or_seed(meta: &Metadata) -> Result<TrainConfig> {
    Ok(trained_with(meta)?.unwrap_or_else(|| {
        eprintln!("note: the checkpoint records no training settings; the exact flow of the seed's (linear path, uniform times, independent pairs) is assumed");
        TrainConfig::default()
    }))
}

/// The exact flow a command is asked for, with its source: the target, source and path each
/// from its flag, else the run file's, else the checkpoint's record (`meta`), else the seed's
/// (`gmm3`, `normal:D`, linear); the coupling from the run file or the checkpoint.
pub fn resolve(target: Option<&str>, source: Option<&str>, path: Option<ProbabilityPath>, run: Option<&RunConfig>, meta: Option<&Metadata>) -> Result<(ExactFlow, Box<dyn Target>)> {
    let named = |key: &str| meta.and_then(|m| m.get(key).cloned());
    let target = target.map(str::to_string).or_else(|| run.map(|r| r.target.clone())).or_else(|| named("target")).unwrap_or_else(|| "gmm3".into());
    let source = source.map(str::to_string).or_else(|| run.map(|r| r.source.clone())).or_else(|| named("source"));
    let train = match (run, meta) {
        (Some(r), _) => r.train.clone(),
        (None, Some(meta)) => trained_with_or_seed(meta)?,
        (None, None) => TrainConfig::default(),
    };
    flow(&target, source.as_deref(), path.unwrap_or(train.path), train.coupling)
}

/// The exact flow of `path` from `source` (default `normal:D`) to `target`, with the source; a
/// note on stderr where its ends are blurred ([`ExactFlow::blurred_ends`]). `coupling` is a run
/// file's: the exact flow needs independent pairs.
fn flow(target: &str, source: Option<&str>, path: ProbabilityPath, coupling: fm_train::Coupling) -> Result<(ExactFlow, Box<dyn Target>)> {
    let target = fm_dist::parse_target(target).context("target")?;
    let spec = source.map(str::to_string).unwrap_or_else(|| format!("normal:{}", target.dim()));
    let source = fm_dist::parse_target(&spec).context("source")?;
    let flow = ExactFlow::for_training(target.as_ref(), source.as_ref(), path, coupling).map_err(|e| match coupling {
        fm_train::Coupling::Independent => anyhow::Error::from(e),
        _ => anyhow::anyhow!("the run file trains with coupling {coupling}, and {e}: give --target, --source and --path instead of the run file"),
    })?;
    if let Some(note) = flow.blurred_ends() {
        eprintln!("note: {note}");
    }
    Ok((flow, source))
}

/// Times of the printed field-error curve.
pub const CURVE_TIMES: [f64; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// What `fm eval --checkpoint` reports of a model against the exact flow.
pub struct FieldReport {
    pub path: ProbabilityPath,
    pub time_sampling: TimeSampling,
    pub floor: Estimate,
    pub error: Estimate,
    pub curve: Vec<(f64, Estimate)>,
}

/// The model's field error under the training setting `train` (path, coupling, time law), its
/// loss floor and its error curve over `times`; `Ok(None)` with the reason where the exact flow
/// does not cover the setting.
pub fn field_report(model: &(impl VectorField + HasDevice), target: &dyn Target, source: &dyn Target, train: &TrainConfig, times: &[f64], seed: u64) -> Result<std::result::Result<FieldReport, String>> {
    let flow = match ExactFlow::for_training(target, source, train.path, train.coupling) {
        Ok(flow) => flow,
        Err(fm_train::Error::Exact(why)) => return Ok(Err(why)),
        Err(e) => return Err(e.into()),
    };
    let floor = fm_train::exact::training_floor(target, source, train)?.ok_or_else(|| anyhow::anyhow!("no loss floor for a covered setting"))?;
    let mut rng = StdRng::seed_from_u64(seed);
    // A quarter of the floor's times and points, at most 1,024 × 64: the model is called once per time.
    let (n_times, points) = flow.floor_draws();
    let error = flow.field_error(model, train.time_sampling, (n_times / 4).clamp(32, 1024), points.min(64), &mut rng)?;
    let curve = times.iter().copied().zip(flow.field_error_curve(model, times, (points * 8).min(2048), &mut rng)?).collect();
    Ok(Ok(FieldReport { path: train.path, time_sampling: train.time_sampling, floor, error, curve }))
}

impl std::fmt::Display for FieldReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  field error E‖v − v*‖²  {:.5}   (per coordinate, {} times; this checkpoint's expected loss is floor + field error)", self.error, self.time_sampling)?;
        writeln!(f, "  loss floor             {:.4}   (path {}: the part of the loss no model can remove)", self.floor, self.path)?;
        let row = |v: &dyn Fn(&(f64, Estimate)) -> String| self.curve.iter().map(v).collect::<Vec<_>>().join(" ");
        writeln!(f, "  over t:  t     {}", row(&|(t, _)| format!("{t:>7.2}")))?;
        write!(f, "           error {}", row(&|(_, e)| format!("{:>7.4}", e.mean)))
    }
}
