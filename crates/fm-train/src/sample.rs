//! Generating samples by integrating a trained field.

use crate::{array_to_tensor, tensor_to_array, Error, ProbabilityPath, Result};
use fm_dist::Target;
use fm_ode::{solve, AdaptiveOptions, Method, SdeOptions, SolveOptions, TimeGrid, VectorField};
use ndarray::{Array2, Array3};
use rand::{rngs::StdRng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How to sample; `Default` is the seed's 10,000 samples by 100 Euler steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleConfig {
    /// Points to generate.
    pub n_samples: usize,
    /// Fixed steps from `t = 0` to `1` (1 to 1,000,000; `dopri5` ignores it but it is checked).
    pub steps: usize,
    /// The integrator (Euler, the seed's, by default); serde takes its name (`euler`,
    /// `midpoint`, `heun`, `rk4`, `dopri5`).
    #[serde(with = "method_name")]
    pub method: Method,
    /// Seeds the source draws.
    pub seed: u64,
    /// Rows integrated together. The rows are independent, and blocks of a few hundred keep
    /// each layer's activations in cache: 512 samples the seed twice as fast as one block of
    /// 10,000 on a 2-core CPU (measured, see the README).
    pub chunk_size: usize,
    /// Rows integrated together on a GPU, where a block of any size costs the same kernel
    /// launches: the seed's 10,000 samples in one block rather than twenty.
    pub gpu_chunk_size: usize,
    /// Relative and absolute tolerances of the adaptive method (`dopri5`), which ignores `steps`.
    pub rtol: f64,
    /// Absolute tolerance of the adaptive method.
    pub atol: f64,
    /// Most attempted steps of the adaptive method before it gives up (see
    /// [`AdaptiveOptions::max_steps`]).
    pub max_steps: usize,
    /// Stochastic sampling: Euler–Maruyama on the SDE with the flow's marginals and this
    /// diffusion ([`crate::sde`]), `steps` steps, the last one its mean; `None` (the default):
    /// the ODE. Spelled `sde = "sigma"` or `"constant:0.5"`; needs `method = "euler"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sde: Option<crate::sde::Sde>,
}

impl Default for SampleConfig {
    fn default() -> Self {
        let tol = AdaptiveOptions::default();
        Self {
            n_samples: 10_000,
            steps: 100,
            method: Method::Euler,
            seed: 1,
            chunk_size: 512,
            gpu_chunk_size: 1 << 16,
            rtol: tol.rtol,
            atol: tol.atol,
            max_steps: tol.max_steps,
            sde: None,
        }
    }
}

impl SampleConfig {
    /// One Euler step (one network evaluation per point): how one-step and MeanFlow models are
    /// judged; the rest as [`SampleConfig::default`].
    pub fn one_step() -> Self {
        Self { steps: 1, method: Method::Euler, ..Self::default() }
    }

    /// Checks every setting; returns the time grid the solve will step through.
    ///
    /// # Errors
    /// [`Error::Config`] for 0 samples or a chunk size of 0; [`Error::Ode`] for a step count
    /// of 0 or above a million, or invalid tolerances.
    pub fn validate(&self) -> Result<TimeGrid> {
        if self.n_samples == 0 {
            return Err(Error::Config("the number of samples must be at least 1".into()));
        }
        if self.chunk_size == 0 || self.gpu_chunk_size == 0 {
            return Err(Error::Config("the chunk size must be at least 1".into()));
        }
        self.solve_options().adaptive.validate()?;
        if self.sde.is_some() && self.method != Method::Euler {
            return Err(Error::Config(format!("--sde integrates by Euler–Maruyama in --steps steps: leave --method at euler, got {}", self.method)));
        }
        if self.sde.is_some() && self.steps < 2 {
            return Err(Error::Config("--sde needs at least 2 steps: its last step is taken without noise, so 1 step would be the ODE's".into()));
        }
        Ok(TimeGrid::uniform(0.0, 1.0, self.steps)?)
    }

    /// The solver options these settings ask for.
    pub fn solve_options(&self) -> SolveOptions {
        SolveOptions { adaptive: AdaptiveOptions { rtol: self.rtol, atol: self.atol, max_steps: self.max_steps }, ..SolveOptions::default() }
    }
}

mod method_name {
    use fm_ode::Method;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.name())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Draws `cfg.n_samples` source points and carries them through `field` from t = 0 to 1,
/// `cfg.chunk_size` rows at a time (`cfg.gpu_chunk_size` on a GPU).
///
/// # Errors
/// As [`SampleConfig::validate`]; [`Error::Ode`] when a solve fails (a field error, non-finite
/// values, an adaptive step underflow or budget); [`Error::NonFiniteSamples`] when samples end
/// NaN or infinite (naming how many, and the first step after which one was); [`Error::Torch`]
/// for torch failures.
pub fn sample(field: &(impl VectorField + HasDevice + ?Sized), source: &dyn Target, cfg: &SampleConfig) -> Result<Array2<f64>> {
    if cfg.sde.is_some() {
        return Err(no_path());
    }
    sample_on_path(field, ProbabilityPath::Linear, source, cfg)
}

/// [`sample`] of a field trained on `path`: the ODE, or the SDE with the flow's marginals when
/// `cfg.sde` asks for it (its score from the velocity on `path`, or the field's own).
///
/// # Errors
/// As [`sample`]; [`crate::sde::Sde::check`]'s refusals.
pub fn sample_on_path(field: &(impl VectorField + HasDevice + ?Sized), path: ProbabilityPath, source: &dyn Target, cfg: &SampleConfig) -> Result<Array2<f64>> {
    let grid = cfg.validate()?;
    if let Some(sde) = cfg.sde {
        sde.check(crate::Generator::Flow, path, source, field.has_score())?;
    }
    let x0 = source.sample(cfg.n_samples, &mut StdRng::seed_from_u64(cfg.seed));
    let x0 = array_to_tensor(x0.view(), field.device())?;
    tensor_to_array(&match cfg.sde {
        None => sample_from(field, x0, cfg)?,
        Some(sde) => {
            let drift = crate::sde::MarginalDrift { field, path, sde };
            let rows = if field.device().is_cuda() { cfg.gpu_chunk_size } else { cfg.chunk_size };
            let parts = x0.f_split(rows as i64, 0)?;
            let solved = parts.iter().scan(0, |first_row, part| {
                let row = *first_row;
                *first_row += part.size()[0] as usize;
                Some(crate::sde::integrate(&drift, part, &grid, cfg.seed, row, SdeOptions::default()).map(|s| s.x))
            });
            let x = tch::Tensor::f_cat(&solved.collect::<Result<Vec<_>>>()?, 0)?;
            let bad = x.size()[0] - i64::try_from(x.f_isfinite()?.f_all_dim(1, false)?.f_sum(tch::Kind::Int64)?)?;
            if bad > 0 {
                return Err(Error::NonFiniteSamples { bad: bad as usize, total: x.size()[0] as usize, first_bad: None });
            }
            x
        }
    })
}

/// Samples of the flow and each one's exact log-density under the model, `log q(x₁)`, from the
/// same forward solve: the state `[x, ℓ]` from `[x₀, log p₀(x₀)]` along `dℓ/dt = −div v(x, t)`
/// (the instantaneous change of variables, Chen et al. 2018, eq. 4), by `cfg`'s integrator and
/// steps, with the exact divergence (importance weights need it exact: a Hutchinson estimate's
/// noise would bias them). The source draws are [`sample`]'s (`cfg.seed`), so with a fixed-step
/// method the points are the ODE's samples (up to the last bits of the joint solve); dopri5's
/// step control weighs the log-density too, so its points differ within its tolerance.
///
/// # Errors
/// An SDE in `cfg` (its samples have no ODE likelihood), a source without a density, and as
/// [`sample`].
pub fn sample_with_log_q(
    field: &(impl VectorField + HasDevice + ?Sized),
    source: &dyn Target,
    cfg: &SampleConfig,
) -> Result<(Array2<f64>, ndarray::Array1<f64>)> {
    cfg.validate()?;
    if cfg.sde.is_some() {
        return Err(Error::Config("log q of the samples comes from the ODE's likelihood: an SDE's samples have none (leave --sde out)".into()));
    }
    if !source.has_density() {
        return Err(fm_dist::Error::NoDensity(format!("the source {} (log q needs its log-density)", source.name())).into());
    }
    let x0 = source.sample(cfg.n_samples, &mut StdRng::seed_from_u64(cfg.seed));
    let log_p0 = source.log_prob(x0.view())?;
    let grid = cfg.validate()?;
    let opts = fm_ode::LikelihoodOptions {
        divergence: fm_ode::Divergence::Exact,
        chunk_size: cfg.chunk_size,
        adaptive: cfg.solve_options().adaptive,
        ..Default::default()
    };
    let lik = fm_ode::log_likelihood(&Borrowed(field), &array_to_tensor(x0.view(), field.device())?, &grid, cfg.method, &opts)?;
    // Solved from 0 to 1: `x0` of the solution is the carried point x₁, `delta` is +∫ div v dt.
    let x1 = tensor_to_array(&lik.x0)?;
    let delta = Vec::<f64>::try_from(lik.delta_log_p.f_to_device(tch::Device::Cpu)?.f_to_kind(tch::Kind::Double)?.f_contiguous()?)?;
    let log_q = log_p0 - ndarray::Array1::from(delta);
    let bad = x1.rows().into_iter().zip(&log_q).filter(|(r, l)| !l.is_finite() || r.iter().any(|v| !v.is_finite())).count();
    if bad > 0 {
        return Err(Error::NonFiniteSamples { bad, total: x1.nrows(), first_bad: None });
    }
    Ok((x1, log_q))
}

/// [`sample`] from given starting points `x0: [n, d]` (on the field's device; `cfg.n_samples`
/// is not used).
pub(crate) fn sample_from(field: &(impl VectorField + HasDevice + ?Sized), x0: tch::Tensor, cfg: &SampleConfig) -> Result<tch::Tensor> {
    let grid = cfg.validate()?;
    let device = field.device();
    let n = x0.size()[0] as usize;
    let rows = if device.is_cuda() { cfg.gpu_chunk_size } else { cfg.chunk_size };
    let starts = x0.f_split(rows as i64, 0)?;
    // libtorch's threads for this work: measured on one evaluation of the first chunk.
    if let Some(first) = starts.first() {
        crate::threads::choose(|| field.velocity(first, 0.0).map(drop))?;
    }
    let parts = starts.iter().map(|part| Ok(solve(&Borrowed(field), part, &grid, cfg.method, cfg.solve_options())?.x)).collect::<Result<Vec<_>>>()?;
    let x = tch::Tensor::f_cat(&parts, 0)?;
    // One check of the whole result (a sync per step would slow GPU sampling); only when it
    // fails is the first bad block solved again, keeping its states, to find the step.
    let finite_rows = x.f_isfinite()?.f_all_dim(1, false)?;
    let bad = n - i64::try_from(finite_rows.f_sum(tch::Kind::Int64)?)? as usize;
    if bad > 0 {
        let mut first_bad = None;
        if !cfg.method.is_adaptive() {
            for (part, start) in parts.iter().zip(&starts) {
                if !crate::checkpoint::all_finite([part])? {
                    first_bad = first_non_finite_step(field, start, &grid, cfg)?;
                    break;
                }
            }
        }
        return Err(Error::NonFiniteSamples { bad, total: n, first_bad });
    }
    Ok(x)
}

/// The first step (1-based) after which a state of `x0`'s paths is NaN or infinite, and its time.
fn first_non_finite_step(
    field: &(impl VectorField + HasDevice + ?Sized),
    x0: &tch::Tensor,
    grid: &TimeGrid,
    cfg: &SampleConfig,
) -> Result<Option<(usize, f64)>> {
    let opts = SolveOptions { keep_trajectory: true, ..cfg.solve_options() };
    let states = solve(&Borrowed(field), x0, grid, cfg.method, opts)?.trajectory.unwrap_or_default();
    for (i, s) in states.iter().enumerate() {
        if !crate::checkpoint::all_finite([s])? {
            return Ok(Some((i, grid.times()[i])));
        }
    }
    Ok(None)
}

/// The paths of `n` source points through `field`: their states at every time of the
/// sampling grid (`steps + 1` times for a fixed-step method; for `dopri5`, 101 evenly spaced
/// output times from its dense output). Returns the times and a `[times, n, dim]` array.
///
/// # Errors
/// As [`sample`], and [`Error::Config`] for `n == 0`.
pub fn sample_paths(field: &(impl VectorField + HasDevice + ?Sized), source: &dyn Target, cfg: &SampleConfig, n: usize) -> Result<(Vec<f64>, Array3<f64>)> {
    if cfg.sde.is_some() {
        return Err(no_path());
    }
    sample_paths_on_path(field, ProbabilityPath::Linear, source, cfg, n)
}

/// The refusal of an SDE request made without the path its diffusion and score depend on.
fn no_path() -> Error {
    Error::Config("the SDE sampler needs the probability path the field was trained on: sample through DataUnits (its path) or sample_on_path".into())
}

/// [`sample_paths`] of a field trained on `path` (the SDE's paths when `cfg.sde` asks for them).
///
/// # Errors
/// As [`sample_on_path`].
pub fn sample_paths_on_path(
    field: &(impl VectorField + HasDevice + ?Sized),
    path: ProbabilityPath,
    source: &dyn Target,
    cfg: &SampleConfig,
    n: usize,
) -> Result<(Vec<f64>, Array3<f64>)> {
    let grid = if cfg.method.is_adaptive() { TimeGrid::uniform(0.0, 1.0, 100)? } else { cfg.validate()? };
    cfg.validate()?;
    if n == 0 {
        return Err(Error::Config("the number of paths must be at least 1".into()));
    }
    let x0 = array_to_tensor(source.sample(n, &mut StdRng::seed_from_u64(cfg.seed)).view(), field.device())?;
    let states = match cfg.sde {
        None => solve(&Borrowed(field), &x0, &grid, cfg.method, SolveOptions { keep_trajectory: true, ..cfg.solve_options() })?.trajectory,
        Some(sde) => {
            sde.check(crate::Generator::Flow, path, source, field.has_score())?;
            let drift = crate::sde::MarginalDrift { field, path, sde };
            crate::sde::integrate(&drift, &x0, &grid, cfg.seed, 0, SdeOptions { keep_trajectory: true, ..SdeOptions::default() })?.trajectory
        }
    }
    .unwrap_or_default();
    let views = states.iter().map(tensor_to_array).collect::<Result<Vec<_>>>()?;
    let views: Vec<_> = views.iter().map(|a| a.view()).collect();
    let paths = ndarray::stack(ndarray::Axis(0), &views).map_err(|e| Error::Internal(format!("trajectory shapes: {e}")))?;
    Ok((grid.times().to_vec(), paths))
}

/// What sampling and likelihoods need to know of a field besides its velocity: where its
/// tensors live, and the dimension of its points when it has a fixed one.
pub trait HasDevice {
    /// The device the field computes on: sampling and likelihoods put their points there.
    fn device(&self) -> tch::Device;
    /// The width `D` of the points the field takes (`None`: any; the source decides).
    fn dim(&self) -> Option<usize> {
        None
    }
    /// The score `∇log p_t(x)` of the field's marginals at `x: [n, D]`, when the field knows it
    /// exactly (the exact flow of a mixture); `None` (the default): the SDE sampler converts
    /// the velocity ([`crate::sde::score_from_velocity`]).
    fn score(&self, _x: &tch::Tensor, _t: f64) -> Option<fm_ode::Result<tch::Tensor>> {
        None
    }
    /// Whether [`HasDevice::score`] gives the score.
    fn has_score(&self) -> bool {
        false
    }
}

impl<M: fm_model::VelocityModel + ?Sized> HasDevice for M {
    fn device(&self) -> tch::Device {
        fm_model::VelocityModel::device(self)
    }
    fn dim(&self) -> Option<usize> {
        Some(fm_model::VelocityModel::dim(self))
    }
}

/// A borrowed field of any size (a `dyn VelocityModel`, say) as a sized one: fm-ode's
/// integrators take sized fields.
pub(crate) struct Borrowed<'a, F: ?Sized>(pub &'a F);

impl<F: VectorField + ?Sized> VectorField for Borrowed<'_, F> {
    fn velocity(&self, x: &tch::Tensor, t: f64) -> fm_ode::Result<tch::Tensor> {
        self.0.velocity(x, t)
    }
    fn velocity_and_divergence(&self, x: &tch::Tensor, t: f64) -> fm_ode::Result<Option<(tch::Tensor, tch::Tensor)>> {
        self.0.velocity_and_divergence(x, t)
    }
}

/// An average-velocity model ([`crate::objective::MeanFlow`]) as the field whose Euler steps of
/// size `h` are its jumps: `velocity(x, t) = u(x, t, min(t + h, 1))`, so Euler's update
/// `x + h·velocity(x, t)` is MeanFlow's `x_{t+h} = x_t + h·u(x_t, t, t + h)`. Only fixed steps of
/// `h` mean anything with it ([`crate::Generator::check`]).
pub struct Jumps<'a, M: ?Sized> {
    /// The average-velocity network (two time inputs).
    pub model: &'a M,
    /// The step, `1 / steps`.
    pub h: f64,
}

impl<M: fm_model::VelocityModel + ?Sized> VectorField for Jumps<'_, M> {
    fn velocity(&self, x: &tch::Tensor, t: f64) -> fm_ode::Result<tch::Tensor> {
        let n = x.size()[0];
        let opts = (tch::Kind::Float, x.device());
        let times = tch::Tensor::f_cat(&[tch::Tensor::f_full([n, 1], t, opts)?, tch::Tensor::f_full([n, 1], (t + self.h).min(1.0), opts)?], 1)?;
        let _no_grad = tch::no_grad_guard();
        Ok(self.model.forward(&x.f_to_kind(tch::Kind::Float)?, &times)?)
    }
}

impl<M: fm_model::VelocityModel + ?Sized> HasDevice for Jumps<'_, M> {
    fn device(&self) -> tch::Device {
        fm_model::VelocityModel::device(self.model)
    }
    fn dim(&self) -> Option<usize> {
        Some(fm_model::VelocityModel::dim(self.model))
    }
}
