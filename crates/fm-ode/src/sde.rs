//! Stochastic differential equations `dx = f(x, t) dt + g(t) dW` (Itô, a scalar diffusion
//! times the identity), integrated by Euler–Maruyama: the drift is a [`VectorField`] like any
//! ODE's (diffrax's `ODETerm`), the diffusion a function of time (its `ControlTerm` with a
//! Brownian control), so an SDE sampler adds one term to what the ODE solvers take.

use crate::{rk, Error, Method, Result, TimeGrid, VectorField};
use tch::{Kind, Tensor};

/// What [`euler_maruyama`] keeps and how it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SdeOptions {
    /// Keep the state at every grid time (including the start).
    pub keep_trajectory: bool,
    /// Keep each noisy step's Gaussian transition log-density `log N(x_{k+1}; x_k + h f, g² h I)`
    /// per row (the Flow-GRPO style policy log-probability).
    pub log_probs: bool,
    /// Take the last step without noise (its mean): the samples end on the drift's prediction
    /// rather than one step of noise away from it (SiT's `last_step = "Mean"`).
    pub last_step_mean: bool,
}

/// The result of [`euler_maruyama`].
#[derive(Debug)]
pub struct SdeSolution {
    /// The state at the last grid time.
    pub x: Tensor,
    /// Drift evaluations.
    pub nfe: usize,
    /// The states at the grid times, when asked for.
    pub trajectory: Option<Vec<Tensor>>,
    /// Per step `k`, the transition log-density of each row (`[n]`, in nats), `None` for a step
    /// taken without noise (zero diffusion, or the mean last step); when asked for.
    pub log_probs: Option<Vec<Option<Tensor>>>,
}

/// Integrates `dx = drift(x, t) dt + diffusion(t) dW` from `x0` (`[n, d]`) through `grid`:
/// `x_{k+1} = x_k + h f(x_k, t_k) + g(t_k) √h ξ_k`, `ξ_k = noise(k)` standard normal of `x0`'s
/// shape (the caller seeds it per step, so a run reproduces). The deterministic part is
/// [`Method::Euler`]'s step of the drift, so with `g ≡ 0` the result is Euler's, bit for bit.
/// Strong order 1/2, weak order 1 (Kloeden & Platen 1992, §10.2, §14.1). Runs without
/// gradient tracking.
///
/// # Errors
/// [`Error::Invalid`] for a diffusion that is negative or not finite at a step, or noise of the
/// wrong shape; the drift's errors; [`Error::Torch`].
pub fn euler_maruyama(
    drift: &dyn VectorField,
    diffusion: &dyn Fn(f64) -> f64,
    x0: &Tensor,
    grid: &TimeGrid,
    noise: &mut dyn FnMut(usize) -> Result<Tensor>,
    opts: SdeOptions,
) -> Result<SdeSolution> {
    let _no_grad = tch::no_grad_guard();
    let mut x = x0.shallow_clone();
    let mut nfe = 0;
    let mut trajectory = if opts.keep_trajectory { Some(vec![x0.f_detach_copy()?]) } else { None };
    let mut log_probs = if opts.log_probs { Some(Vec::new()) } else { None };
    let steps = grid.steps();
    for (k, w) in grid.times().windows(2).enumerate() {
        let (t, h) = (w[0], w[1] - w[0]);
        let g = diffusion(t);
        if !(g.is_finite() && g >= 0.0) {
            return Err(Error::Invalid(format!("the diffusion coefficient at t = {t} is {g}: it must be a finite number ≥ 0")));
        }
        let mean = rk::step(Method::Euler.tableau(), drift, &x, t, h, &mut nfe)?;
        let noisy = g > 0.0 && !(opts.last_step_mean && k + 1 == steps);
        let mut log_prob = None;
        x = if noisy {
            let xi = noise(k)?;
            if xi.size() != x.size() {
                return Err(Error::Invalid(format!("noise of shape {:?} for states of shape {:?}", xi.size(), x.size())));
            }
            let scale = g * h.sqrt();
            let increment = xi.f_to_kind(mean.kind())?.f_mul_scalar(scale)?;
            if opts.log_probs {
                // log N(increment; 0, scale² I), from the increment as taken (in the state's kind).
                let d = x.size()[1] as f64;
                let quadratic =
                    increment.f_to_kind(Kind::Double)?.f_square()?.f_sum_dim_intlist(1i64, false, Kind::Double)?.f_mul_scalar(-0.5 / (scale * scale))?;
                log_prob = Some(quadratic.f_sub_scalar(0.5 * d * (2.0 * std::f64::consts::PI * scale * scale).ln())?);
            }
            mean.f_add(&increment)?
        } else {
            mean
        };
        if let Some(lp) = log_probs.as_mut() {
            lp.push(log_prob);
        }
        if let Some(traj) = trajectory.as_mut() {
            traj.push(x.f_detach_copy()?);
        }
    }
    Ok(SdeSolution { x, nfe, trajectory, log_probs })
}
