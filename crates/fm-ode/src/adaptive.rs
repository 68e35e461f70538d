//! The adaptive driver: first step, step-size control, output times. It is generic over the
//! Butcher tableau: any one with an embedded error estimate ([`crate::ErrorEstimate`]) steps
//! adaptively, its trial steps taken by `rk.rs`.
//!
//! Step control follows Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4: the error of a trial
//! step is measured in one RMS norm over every element of the batch,
//! `sqrt(mean((err / (atol + rtol·max(|y0|, |y1|)))²))`; the step is accepted when that is at
//! most 1, and the next step is scaled by `0.9 · norm^(-1/(q+1))` (q: order of the error
//! estimate), clamped to `[0.2, 10]` (and to at most 1 right after a rejection).

use crate::rk;
use crate::tableau::{ButcherTableau, ErrorEstimate};
use crate::{Error, Result, Solution, SolveOptions, TimeGrid, VectorField};
use tch::{Device, Kind, Tensor};

/// Safety factor on the optimal step-size scaling.
const SAFETY: f64 = 0.9;
/// Smallest factor a step may shrink by (also used after non-finite trials).
const MIN_FACTOR: f64 = 0.2;
/// Largest factor a step may grow by.
const MAX_FACTOR: f64 = 10.0;

/// Tolerances and budget of adaptive solves ([`crate::Method::Dopri5`], or any tableau with an
/// error estimate under [`crate::Stepping::Adaptive`]).
///
/// The defaults, `rtol = atol = 1e-5`, sit well below what a learned field's own error
/// distinguishes and above `f32` round-off, so they suit sampling and likelihoods of `f32`
/// models; tighten them for `f64` reference solutions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveOptions {
    /// Relative tolerance (default `1e-5`): the error allowed per unit of `max(|y0|, |y1|)`.
    pub rtol: f64,
    /// Absolute tolerance (default `1e-5`), must be positive: the error allowed near zero.
    pub atol: f64,
    /// Most attempted steps, accepted plus rejected (default 10,000), before giving up with
    /// [`Error::StepBudget`] instead of running on.
    pub max_steps: usize,
}

impl Default for AdaptiveOptions {
    fn default() -> Self {
        Self { rtol: 1e-5, atol: 1e-5, max_steps: 10_000 }
    }
}

impl AdaptiveOptions {
    /// Checks the settings: finite tolerances, `rtol >= 0`, `atol > 0`, `max_steps >= 1`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting out of its domain.
    pub fn validate(&self) -> Result<()> {
        if !(self.rtol.is_finite() && self.rtol >= 0.0) {
            return Err(Error::Invalid(format!("rtol must be finite and non-negative, got {}", self.rtol)));
        }
        if !(self.atol.is_finite() && self.atol > 0.0) {
            return Err(Error::Invalid(format!("atol must be finite and positive, got {}", self.atol)));
        }
        if self.max_steps == 0 {
            return Err(Error::Invalid("max_steps must be at least 1".into()));
        }
        Ok(())
    }
}

/// Reads a small tensor as `f64`s (one device synchronisation).
fn read(t: &Tensor) -> Result<Vec<f64>> {
    let t = t.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?.f_contiguous()?;
    let n = t.size().iter().product::<i64>().max(0) as usize;
    let mut out = vec![0.0; n];
    t.f_copy_data(&mut out, n)?;
    Ok(out)
}

/// `sqrt(mean((x / scale)²))` as a 0-d `f64` tensor.
fn rms(x: &Tensor, scale: &Tensor) -> Result<Tensor> {
    Ok(x.f_div(scale)?.f_square()?.f_mean(Kind::Double)?.f_sqrt()?)
}

/// `1.0` when every element of `x` is finite, as a 0-d `f64` tensor.
fn all_finite(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_isfinite()?.f_all()?.f_to_kind(Kind::Double)?)
}

/// Hairer's starting step (*Solving ODEs I*, §II.4): a step whose explicit Euler error
/// estimate is about 1% of the tolerance, costing one evaluation. Returns `|h|`.
#[allow(clippy::too_many_arguments)]
fn initial_step(f: &dyn VectorField, y0: &Tensor, k1: &Tensor, t0: f64, dir: f64, span: f64, exponent: f64, opts: &AdaptiveOptions) -> Result<f64> {
    let scale = y0.f_abs()?.f_mul_scalar(opts.rtol)?.f_add_scalar(opts.atol)?;
    let d = read(&Tensor::f_stack(&[rms(y0, &scale)?, rms(k1, &scale)?], 0)?)?;
    let (d0, d1) = (d[0], d[1]);
    if !d0.is_finite() {
        return Err(Error::NonFinite { t: t0, what: "the initial state" });
    }
    if !d1.is_finite() {
        return Err(Error::NonFinite { t: t0, what: "the field at the initial state" });
    }
    let h0 = if d0 < 1e-5 || d1 < 1e-5 { 1e-6 } else { 0.01 * d0 / d1 }.min(span);
    let y1 = y0.f_add(&k1.f_mul_scalar(dir * h0)?)?;
    let k2 = f.velocity(&y1, t0 + dir * h0)?;
    let d2 = read(&rms(&k2.f_sub(k1)?, &scale)?)?[0] / h0;
    if !d2.is_finite() {
        // The field is not finite one small step ahead: let step control shrink from h0.
        return Ok(h0);
    }
    let dmax = d1.max(d2);
    let h1 = if dmax <= 1e-15 { (h0 * 1e-3).max(1e-6) } else { (0.01 / dmax).powf(exponent) };
    Ok((100.0 * h0).min(h1).min(span))
}

/// The adaptive solve behind [`crate::solve_with`] for a validated tableau with an error estimate.
pub(crate) fn solve(tab: &ButcherTableau, est: &ErrorEstimate, f: &dyn VectorField, x0: &Tensor, grid: &TimeGrid, opts: &SolveOptions) -> Result<Solution> {
    let ao = &opts.adaptive;
    ao.validate()?;
    let times = grid.times();
    let (t0, t_end) = (grid.start(), grid.end());
    let dir = if t_end > t0 { 1.0 } else { -1.0 };
    let span = (t_end - t0).abs();
    let h_min = 10.0 * f64::EPSILON * t0.abs().max(t_end.abs());
    let exponent = 1.0 / (est.order as f64 + 1.0);
    let outputs = &times[1..times.len() - 1];
    let mut next_output = 0;
    let mut trajectory = if opts.keep_trajectory { Some(vec![x0.f_detach_copy()?]) } else { None };

    let mut y = x0.shallow_clone();
    let mut k1 = f.velocity(&y, t0)?;
    let mut h = initial_step(f, &y, &k1, t0, dir, span, exponent, ao)?;
    let mut nfe = 2;
    let (mut t, mut accepted, mut rejected, mut non_finite_trials) = (t0, 0usize, 0usize, 0usize);
    let mut after_rejection = false;

    while (t_end - t) * dir > 0.0 {
        if accepted + rejected >= ao.max_steps {
            return Err(Error::StepBudget { max_steps: ao.max_steps, t, t_end });
        }
        if h.is_nan() || h <= h_min {
            return Err(Error::StepSizeUnderflow { t, h, non_finite_trials });
        }
        // Take the rest in one step when it is (almost) within reach, so no sliver is left.
        let remaining = (t_end - t).abs();
        let last = 1.01 * h >= remaining;
        if last {
            h = remaining;
        }
        let a = rk::attempt(tab, est, f, &y, &k1, t, dir * h)?;
        nfe += tab.evals_per_attempt();
        let scale = y.f_abs()?.f_maximum(&a.y1.f_abs()?)?.f_mul_scalar(ao.rtol)?.f_add_scalar(ao.atol)?;
        let checks = Tensor::f_stack(&[rms(&a.err, &scale)?, all_finite(&a.y1)?, all_finite(&a.k_last)?], 0)?;
        let c = read(&checks)?;
        let (norm, finite) = (c[0], c[1] == 1.0 && c[2] == 1.0 && c[0].is_finite());
        if finite && norm <= 1.0 {
            let t_new = if last { t_end } else { t + dir * h };
            if let Some(traj) = trajectory.as_mut() {
                while next_output < outputs.len() && (outputs[next_output] - t_new) * dir <= 0.0 {
                    let theta = (outputs[next_output] - t) / (t_new - t);
                    traj.push(rk::interpolate(tab, &y, &a, dir * h, theta)?);
                    next_output += 1;
                }
            }
            accepted += 1;
            t = t_new;
            y = a.y1;
            k1 = a.k_last;
            let mut factor = if norm == 0.0 { MAX_FACTOR } else { (SAFETY * norm.powf(-exponent)).clamp(MIN_FACTOR, MAX_FACTOR) };
            if after_rejection {
                factor = factor.min(1.0);
            }
            after_rejection = false;
            h *= factor;
        } else {
            rejected += 1;
            let factor = if finite {
                (SAFETY * norm.powf(-exponent)).clamp(MIN_FACTOR, 1.0)
            } else {
                non_finite_trials += 1;
                MIN_FACTOR
            };
            after_rejection = true;
            h *= factor;
        }
    }
    if let Some(traj) = trajectory.as_mut() {
        traj.push(y.f_detach_copy()?);
    }
    Ok(Solution { x: y, nfe, trajectory, steps: accepted, rejected })
}
