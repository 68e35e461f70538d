//! The pre-tableau implementation of the solvers (fm-ode before issue 15), kept verbatim (paths
//! and visibility adjusted, nothing else) as the reference the tableau-driven solvers must match
//! bit for bit. Do not edit the arithmetic here: it is the record of the old results.
#![allow(dead_code, clippy::all)]

use fm_ode::{AdaptiveOptions, Error, Method, Result, Solution, SolveOptions, TimeGrid, VectorField};
use tch::{Device, Kind, Tensor};

fn evals_per_step(m: Method) -> usize {
    match m {
        Method::Euler => 1,
        Method::Midpoint | Method::Heun => 2,
        Method::Rk4 => 4,
        Method::Dopri5 => 6,
    }
}

/// The old `Method::step`.
pub struct Old(pub Method);

impl Old {
    fn evals_per_step(&self) -> usize {
        evals_per_step(self.0)
    }

    pub fn step(&self, f: &dyn VectorField, x: &Tensor, t: f64, dt: f64, nfe: &mut usize) -> Result<Tensor> {
        *nfe += self.evals_per_step();
        let next = match self.0 {
            Method::Euler => x.f_add(&f.velocity(x, t)?.f_mul_scalar(dt)?)?,
            Method::Midpoint => {
                let k1 = f.velocity(x, t)?;
                let xm = x.f_add(&k1.f_mul_scalar(dt / 2.0)?)?;
                x.f_add(&f.velocity(&xm, t + dt / 2.0)?.f_mul_scalar(dt)?)?
            }
            Method::Heun => {
                let k1 = f.velocity(x, t)?;
                let k2 = f.velocity(&x.f_add(&k1.f_mul_scalar(dt)?)?, t + dt)?;
                x.f_add(&k1.f_add(&k2)?.f_mul_scalar(dt / 2.0)?)?
            }
            Method::Rk4 => {
                let k1 = f.velocity(x, t)?;
                let k2 = f.velocity(&x.f_add(&k1.f_mul_scalar(dt / 2.0)?)?, t + dt / 2.0)?;
                let k3 = f.velocity(&x.f_add(&k2.f_mul_scalar(dt / 2.0)?)?, t + dt / 2.0)?;
                let k4 = f.velocity(&x.f_add(&k3.f_mul_scalar(dt)?)?, t + dt)?;
                let sum = k1.f_add(&k4)?.f_add(&k2.f_add(&k3)?.f_mul_scalar(2.0)?)?;
                x.f_add(&sum.f_mul_scalar(dt / 6.0)?)?
            }
            Method::Dopri5 => Dopri5.fixed_step(f, x, t, dt)?,
        };
        Ok(next)
    }
}

/// The old `solve`.
pub fn solve(field: &dyn VectorField, x0: &Tensor, grid: &TimeGrid, method: Method, opts: SolveOptions) -> Result<Solution> {
    let _no_grad = tch::no_grad_guard();
    if method == Method::Dopri5 {
        return solve_adaptive(&Dopri5, field, x0, grid, &opts);
    }
    let method = Old(method);
    let mut x = x0.shallow_clone();
    let mut nfe = 0;
    let mut trajectory = if opts.keep_trajectory { Some(vec![x0.f_detach_copy()?]) } else { None };
    for w in grid.times().windows(2) {
        x = method.step(field, &x, w[0], w[1] - w[0], &mut nfe)?;
        if let Some(traj) = trajectory.as_mut() {
            traj.push(x.f_detach_copy()?);
        }
    }
    Ok(Solution { x, nfe, trajectory, steps: grid.steps(), rejected: 0 })
}

// ---- adaptive.rs ----

/// Safety factor on the optimal step-size scaling.
const SAFETY: f64 = 0.9;
/// Smallest factor a step may shrink by (also used after non-finite trials).
const MIN_FACTOR: f64 = 0.2;
/// Largest factor a step may grow by.
const MAX_FACTOR: f64 = 10.0;

/// One trial step of an embedded pair.
pub struct Attempt {
    /// The propagated solution at `t + h`.
    pub y1: Tensor,
    /// The local error estimate (difference of the two embedded solutions).
    pub err: Tensor,
    /// `f(y1, t + h)`, the next step's first stage (first same as last).
    pub k_last: Tensor,
    /// The stages, kept for the dense output.
    pub stages: Vec<Tensor>,
}

/// An embedded explicit Runge–Kutta pair with the first-same-as-last property and a continuous
/// extension: everything the driver needs from a tableau.
pub trait EmbeddedPair: Sync {
    /// Order `q` of the error estimate: the step-size exponent is `1/(q+1)`.
    fn error_order(&self) -> u32;
    /// New field evaluations per trial step (the first stage is reused).
    fn evals_per_attempt(&self) -> usize;
    /// A trial step of size `h` (signed) from `(y0, t)` where `k1 = f(y0, t)`.
    fn attempt(&self, f: &dyn VectorField, y0: &Tensor, k1: &Tensor, t: f64, h: f64) -> Result<Attempt>;
    /// The state at `t + theta·h`, `theta` in `[0, 1]`, from an accepted attempt.
    fn interpolate(&self, y0: &Tensor, a: &Attempt, h: f64, theta: f64) -> Result<Tensor>;
    /// One step of the propagated solution without error control.
    fn fixed_step(&self, f: &dyn VectorField, x: &Tensor, t: f64, dt: f64) -> Result<Tensor>;
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

/// The old adaptive solve behind `solve` for an adaptive method.
pub fn solve_adaptive(pair: &dyn EmbeddedPair, f: &dyn VectorField, x0: &Tensor, grid: &TimeGrid, opts: &SolveOptions) -> Result<Solution> {
    let ao = &opts.adaptive;
    ao.validate()?;
    let times = grid.times();
    let (t0, t_end) = (grid.start(), grid.end());
    let dir = if t_end > t0 { 1.0 } else { -1.0 };
    let span = (t_end - t0).abs();
    let h_min = 10.0 * f64::EPSILON * t0.abs().max(t_end.abs());
    let exponent = 1.0 / (pair.error_order() as f64 + 1.0);
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
        let a = pair.attempt(f, &y, &k1, t, dir * h)?;
        nfe += pair.evals_per_attempt();
        let scale = y.f_abs()?.f_maximum(&a.y1.f_abs()?)?.f_mul_scalar(ao.rtol)?.f_add_scalar(ao.atol)?;
        let checks = Tensor::f_stack(&[rms(&a.err, &scale)?, all_finite(&a.y1)?, all_finite(&a.k_last)?], 0)?;
        let c = read(&checks)?;
        let (norm, finite) = (c[0], c[1] == 1.0 && c[2] == 1.0 && c[0].is_finite());
        if finite && norm <= 1.0 {
            let t_new = if last { t_end } else { t + dir * h };
            if let Some(traj) = trajectory.as_mut() {
                while next_output < outputs.len() && (outputs[next_output] - t_new) * dir <= 0.0 {
                    let theta = (outputs[next_output] - t) / (t_new - t);
                    traj.push(pair.interpolate(&y, &a, dir * h, theta)?);
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

// ---- dopri5.rs ----

const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
/// Rows 2–7 of the Butcher matrix (row 7 is the fifth-order weights: first same as last).
const A: [&[f64]; 6] = [
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0],
    &[9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0],
    &[35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0],
];
/// Fifth-order minus fourth-order weights, over the 7 stages.
const E: [f64; 7] = [71.0 / 57600.0, 0.0, -71.0 / 16695.0, 71.0 / 1920.0, -17253.0 / 339200.0, 22.0 / 525.0, -1.0 / 40.0];
/// Shampine's dense-output weights, over the 7 stages.
const D: [f64; 7] = [
    -12715105075.0 / 11282082432.0,
    0.0,
    87487479700.0 / 32700410799.0,
    -10690763975.0 / 1880347072.0,
    701980252875.0 / 199316789632.0,
    -1453857185.0 / 822651844.0,
    69997945.0 / 29380423.0,
];

/// `y + h Σ w_i k_i`, skipping zero weights.
fn combine(y: &Tensor, h: f64, w: &[f64], k: &[Tensor]) -> Result<Tensor> {
    let mut out = y.shallow_clone();
    for (wi, ki) in w.iter().zip(k) {
        if *wi != 0.0 {
            out = out.f_add(&ki.f_mul_scalar(h * wi)?)?;
        }
    }
    Ok(out)
}

/// `h Σ w_i k_i` over the 7 stages, skipping zero weights after the first.
fn weighted(h: f64, w: &[f64; 7], k: &[Tensor]) -> Result<Tensor> {
    let mut out = k[0].f_mul_scalar(h * w[0])?;
    for (wi, ki) in w[1..].iter().zip(&k[1..]) {
        if *wi != 0.0 {
            out = out.f_add(&ki.f_mul_scalar(h * wi)?)?;
        }
    }
    Ok(out)
}

/// The Dormand–Prince 5(4) pair.
pub struct Dopri5;

impl Dopri5 {
    /// Stages 2–6 from `k1`; returns all six and the fifth-order solution.
    fn stages(f: &dyn VectorField, y0: &Tensor, k1: &Tensor, t: f64, h: f64) -> Result<(Vec<Tensor>, Tensor)> {
        let mut k = vec![k1.shallow_clone()];
        for (i, row) in A[..5].iter().enumerate() {
            let yi = combine(y0, h, row, &k)?;
            k.push(f.velocity(&yi, t + C[i + 1] * h)?);
        }
        let y1 = combine(y0, h, A[5], &k)?;
        Ok((k, y1))
    }
}

impl EmbeddedPair for Dopri5 {
    fn error_order(&self) -> u32 {
        4
    }

    fn evals_per_attempt(&self) -> usize {
        6
    }

    fn attempt(&self, f: &dyn VectorField, y0: &Tensor, k1: &Tensor, t: f64, h: f64) -> Result<Attempt> {
        let (mut k, y1) = Self::stages(f, y0, k1, t, h)?;
        let k7 = f.velocity(&y1, t + h)?;
        k.push(k7.shallow_clone());
        let err = weighted(h, &E, &k)?;
        Ok(Attempt { y1, err, k_last: k7, stages: k })
    }

    /// Hairer's `contd5`: `y0 + θ(r2 + (1−θ)(r3 + θ(r4 + (1−θ) r5)))`, fourth order, continuous
    /// with matching derivatives at both ends of the step.
    fn interpolate(&self, y0: &Tensor, a: &Attempt, h: f64, theta: f64) -> Result<Tensor> {
        let k = &a.stages;
        let r2 = a.y1.f_sub(y0)?;
        let r3 = k[0].f_mul_scalar(h)?.f_sub(&r2)?;
        let r4 = r2.f_sub(&k[6].f_mul_scalar(h)?)?.f_sub(&r3)?;
        let r5 = weighted(h, &D, k)?;
        let t1 = 1.0 - theta;
        let inner = r4.f_add(&r5.f_mul_scalar(t1)?)?.f_mul_scalar(theta)?;
        let mid = r3.f_add(&inner)?.f_mul_scalar(t1)?;
        Ok(y0.f_add(&r2.f_add(&mid)?.f_mul_scalar(theta)?)?)
    }

    fn fixed_step(&self, f: &dyn VectorField, x: &Tensor, t: f64, dt: f64) -> Result<Tensor> {
        let k1 = f.velocity(x, t)?;
        Ok(Self::stages(f, x, &k1, t, dt)?.1)
    }
}
