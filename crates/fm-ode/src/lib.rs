//! ODE integrators for flow matching, over `tch` tensors.
//!
//! A flow-matching model is a velocity field `v(x, t)`; generating samples means solving
//! `dx/dt = v(x, t)` from `t = 0` (source samples) to `t = 1`. This crate knows ODEs and
//! nothing of training: any [`VectorField`] (a network, or a closure) can be integrated with
//! any [`Method`] on any [`TimeGrid`], forwards or backwards, and the same solvers carry the
//! divergence-augmented ODE that gives exact log-likelihoods ([`log_likelihood`]).
//!
//! ```
//! use fm_ode::{solve, Method, SolveOptions, TimeGrid};
//! use tch::{Device, Kind, Tensor};
//!
//! // dx/dt = -x has the solution x(1) = x(0) e^{-1}.
//! let field = |x: &Tensor, _t: f64| -> fm_ode::Result<Tensor> { Ok(-x) };
//! let x0 = Tensor::ones([4, 2], (Kind::Float, Device::Cpu));
//! let grid = TimeGrid::uniform(0.0, 1.0, 20).unwrap();
//! let sol = solve(&field, &x0, &grid, Method::Rk4, SolveOptions::default()).unwrap();
//! let x1 = f64::try_from(sol.x.mean(Kind::Float)).unwrap();
//! assert!((x1 - (-1f64).exp()).abs() < 1e-6);
//! assert_eq!(sol.nfe, 20 * 4);
//!
//! // The adaptive method only uses the grid's end points (and its inner times as output times).
//! let sol = solve(&field, &x0, &grid, "dopri5".parse().unwrap(), SolveOptions::default()).unwrap();
//! let x1 = f64::try_from(sol.x.mean(Kind::Float)).unwrap();
//! assert!((x1 - (-1f64).exp()).abs() < 1e-5);
//! assert!(sol.nfe < 80);
//! ```

mod adaptive;
mod dopri5;
mod likelihood;
mod method;

pub use adaptive::AdaptiveOptions;
pub use likelihood::{log_likelihood, standard_normal_log_prob, Divergence, Likelihood, LikelihoodOptions, Probe, AUTO_EXACT_MAX_DIM};
pub use method::Method;

use tch::Tensor;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting or an input out of its domain (bad grid, tolerance, shape, name…).
    #[error("{0}")]
    Invalid(String),
    /// The adaptive step size shrank below what the time variable can resolve: the solution
    /// blows up, the field is discontinuous or stiff, or trial steps kept producing NaN/infinity.
    #[error(
        "step size underflow at t = {t}: the adaptive step shrank to {h:e} without meeting the tolerance \
         ({non_finite_trials} of the rejected trial steps held non-finite values)"
    )]
    StepSizeUnderflow {
        /// Time reached.
        t: f64,
        /// The step size that underflowed.
        h: f64,
        /// How many rejected trials held NaN or infinity (the field's output or the state).
        non_finite_trials: usize,
    },
    /// The adaptive solver used all its attempted steps ([`AdaptiveOptions::max_steps`]).
    #[error(
        "the adaptive solver used its budget of {max_steps} steps and stopped at t = {t} before reaching {t_end} \
         (raise max_steps or the tolerances)"
    )]
    StepBudget {
        /// The budget that ran out.
        max_steps: usize,
        /// Time reached.
        t: f64,
        /// Time the solve was heading for.
        t_end: f64,
    },
    /// A state or a field value that no step size can repair is NaN or infinite.
    #[error("non-finite values at t = {t}: {what}")]
    NonFinite {
        /// Where it was seen.
        t: f64,
        /// What held them.
        what: &'static str,
    },
    /// A libtorch operation failed (shapes, kinds, devices).
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The result of this crate's fallible operations.
pub type Result<T> = std::result::Result<T, Error>;

/// A time-dependent velocity field `v(x, t)` on a batch `x` of shape `[n, d]`, all rows at time `t`.
///
/// Rows are assumed independent (row `i` of the output depends on row `i` of `x` only): the
/// divergence computation of [`log_likelihood`] relies on it.
pub trait VectorField {
    /// The velocity at every row of `x` (same shape as `x`).
    fn velocity(&self, x: &Tensor, t: f64) -> Result<Tensor>;

    /// The velocity and its exact divergence `Σ_i ∂v_i/∂x_i` at every row (`[n, d]` and `[n]`),
    /// for a field that computes them itself faster than one autograd pass per dimension;
    /// `None` (the default): the likelihood takes the divergence with autograd.
    fn velocity_and_divergence(&self, _x: &Tensor, _t: f64) -> Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }
}

impl<F: Fn(&Tensor, f64) -> Result<Tensor>> VectorField for F {
    fn velocity(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        self(x, t)
    }
}

/// Strictly monotone times `t_0, …, t_N` to step through (increasing: forwards; decreasing: backwards).
///
/// Fixed-step methods step from each time to the next; the adaptive [`Method::Dopri5`] integrates
/// from the first to the last time with its own steps and uses the inner times only as output
/// times (for [`SolveOptions::keep_trajectory`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeGrid(Vec<f64>);

impl TimeGrid {
    /// The most steps [`TimeGrid::uniform`] makes: a grid holds every time, so a step count read
    /// from a file or a flag must not size an allocation unchecked (a million fixed steps is far
    /// beyond any useful accuracy; adaptive methods have their own `max_steps`).
    pub const MAX_UNIFORM_STEPS: usize = 1_000_000;

    /// `steps` equal steps from `t0` to `t1` (1 to [`TimeGrid::MAX_UNIFORM_STEPS`]).
    pub fn uniform(t0: f64, t1: f64, steps: usize) -> Result<Self> {
        if steps == 0 {
            return Err(Error::Invalid("the number of integration steps must be at least 1".into()));
        }
        if steps > Self::MAX_UNIFORM_STEPS {
            return Err(Error::Invalid(format!("{steps} integration steps is more than the {} a time grid may have", Self::MAX_UNIFORM_STEPS)));
        }
        Self::new((0..=steps).map(|i| t0 + (t1 - t0) * i as f64 / steps as f64).collect())
    }

    /// Any grid of at least two finite, strictly monotone times.
    pub fn new(times: Vec<f64>) -> Result<Self> {
        if times.len() < 2 {
            return Err(Error::Invalid("a time grid needs at least two times".into()));
        }
        if let Some(t) = times.iter().find(|t| !t.is_finite()) {
            return Err(Error::Invalid(format!("time grid holds a non-finite time {t}")));
        }
        let up = times[1] > times[0];
        if let Some(w) = times.windows(2).find(|w| if up { w[1] <= w[0] } else { w[1] >= w[0] }) {
            return Err(Error::Invalid(format!("time grid is not strictly monotone at {} → {}", w[0], w[1])));
        }
        Ok(Self(times))
    }

    /// The times, in the order they are passed through.
    pub fn times(&self) -> &[f64] {
        &self.0
    }
    /// The number of intervals (the steps a fixed-step method takes).
    pub fn steps(&self) -> usize {
        self.0.len() - 1
    }
    /// The time the solve starts from.
    pub fn start(&self) -> f64 {
        self.0[0]
    }
    /// The time the solve ends at.
    pub fn end(&self) -> f64 {
        self.0[self.0.len() - 1]
    }
}

/// What [`solve`] keeps besides the final state, and how the adaptive method is controlled.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SolveOptions {
    /// Keep the state at every grid time (including the start) in [`Solution::trajectory`].
    pub keep_trajectory: bool,
    /// Tolerances and step budget of [`Method::Dopri5`]; fixed-step methods ignore them.
    pub adaptive: AdaptiveOptions,
}

/// The result of a solve.
#[derive(Debug)]
pub struct Solution {
    /// The state at the last grid time.
    pub x: Tensor,
    /// Number of field evaluations.
    pub nfe: usize,
    /// The states at the grid times, when asked for.
    pub trajectory: Option<Vec<Tensor>>,
    /// Accepted steps (the grid's steps for a fixed-step method).
    pub steps: usize,
    /// Rejected trial steps of the adaptive method (0 for fixed-step methods).
    pub rejected: usize,
}

/// Integrates `dx/dt = field(x, t)` from `x0` through `grid` with `method`.
///
/// Fixed-step methods take one step per grid interval. [`Method::Dopri5`] integrates from the
/// grid's first to its last time with adaptive steps (`opts.adaptive`) and, when a trajectory is
/// asked for, returns the states at the grid times by its dense output; the final state does not
/// depend on whether a trajectory is kept.
///
/// Runs without gradient tracking: this is for sampling, not for backpropagating through the solver.
pub fn solve(field: &dyn VectorField, x0: &Tensor, grid: &TimeGrid, method: Method, opts: SolveOptions) -> Result<Solution> {
    let _no_grad = tch::no_grad_guard();
    if method.is_adaptive() {
        return method.solve_adaptive(field, x0, grid, &opts);
    }
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
