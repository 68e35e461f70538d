//! ODE integrators for flow matching, over `tch` tensors.
//!
//! A flow-matching model is a velocity field `v(x, t)`; generating samples means solving
//! `dx/dt = v(x, t)` from `t = 0` (source samples) to `t = 1`. This crate knows ODEs and
//! nothing of training: any [`VectorField`] (a network, or a closure) can be integrated with
//! any [`Method`] (or any explicit Runge–Kutta tableau) on any [`TimeGrid`], forwards or
//! backwards, and the same solvers carry the divergence-augmented ODE that gives exact
//! log-likelihoods ([`log_likelihood`]).
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
//!
//! A method is data: an explicit Runge–Kutta [`ButcherTableau`] (with an optional embedded
//! [`ErrorEstimate`] for adaptive steps), and each [`Method`] names one ([`Method::tableau`]).
//! A method the crate does not ship is a tableau given to [`solve_with`], in fixed or adaptive
//! steps ([`Stepping`]); the step-size control is the same for every tableau.
//!
//! ```
//! use fm_ode::{solve_with, ButcherTableau, ErrorEstimate, SolveOptions, Stepping, TimeGrid, Weights};
//! use tch::{Device, Kind, Tensor};
//!
//! // Bogacki–Shampine 3(2): third order, first same as last, second-order embedded solution.
//! let b = Weights::rational(&[2, 3, 4, 0], 9);
//! let bs3 = ButcherTableau {
//!     name: "bs3".into(),
//!     order: 3,
//!     c: vec![0.0, 0.5, 0.75, 1.0],
//!     a: vec![Weights::rational(&[], 1), Weights::rational(&[1], 2), Weights::rational(&[0, 3], 4), Weights::rational(&[2, 3, 4], 9)],
//!     error: Some(ErrorEstimate::from_embedded(&b, &Weights::rational(&[7, 6, 8, 3], 24), 2).unwrap()),
//!     b,
//!     dense: None,
//! };
//! let field = |x: &Tensor, _t: f64| -> fm_ode::Result<Tensor> { Ok(-x) };
//! let x0 = Tensor::ones([4, 2], (Kind::Double, Device::Cpu));
//! let grid = TimeGrid::new(vec![0.0, 1.0]).unwrap();
//! let sol = solve_with(&field, &x0, &grid, &bs3, Stepping::Adaptive, SolveOptions::default()).unwrap();
//! let x1 = f64::try_from(sol.x.mean(Kind::Double)).unwrap();
//! assert!((x1 - (-1f64).exp()).abs() < 1e-4);
//! assert_eq!(sol.nfe, 2 + 3 * (sol.steps + sol.rejected));
//! ```
//!
//! Part of `fm`; the user guide, a book with tutorials, how-tos and measured results, is
//! [docs/SUMMARY.md](https://github.com/fm-rs/flow-matching/blob/main/docs/SUMMARY.md)
//! in the repository (`mdbook serve docs` renders it).

#![warn(missing_docs)]

mod adaptive;
mod divergence;
mod grid;
mod likelihood;
mod method;
mod rk;
mod sde;
mod tableau;
mod tableaux;
mod weights;

pub use adaptive::AdaptiveOptions;
pub use divergence::{Divergence, Probe, AUTO_EXACT_MAX_DIM};
pub use grid::TimeGrid;
pub use likelihood::{log_likelihood, log_likelihood_with, standard_normal_log_prob, Likelihood, LikelihoodOptions};
pub use method::Method;
pub use sde::{euler_maruyama, SdeOptions, SdeSolution};
pub use tableau::{ButcherTableau, ErrorEstimate};
pub use weights::Weights;

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
         (raise max_steps or loosen rtol and atol)"
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

/// What [`solve`] keeps besides the final state, and how the adaptive method is controlled.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SolveOptions {
    /// Keep the state at every grid time (including the start) in [`Solution::trajectory`].
    pub keep_trajectory: bool,
    /// Tolerances and step budget of adaptive solves ([`Method::Dopri5`], [`Stepping::Adaptive`]);
    /// fixed steps ignore them.
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

/// How [`solve_with`] places the steps of a tableau.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Stepping {
    /// One step per grid interval (any tableau).
    #[default]
    Fixed,
    /// Steps sized by the tableau's error estimate to meet [`SolveOptions::adaptive`], from the
    /// grid's first to its last time; the inner grid times are output times only, filled by the
    /// dense output. Needs [`ButcherTableau::error`].
    Adaptive,
}

/// Integrates `dx/dt = field(x, t)` from `x0` through `grid` with `method`:
/// [`solve_with`] with the method's tableau and [`Method::stepping`].
///
/// Fixed-step methods take one step per grid interval. [`Method::Dopri5`] integrates from the
/// grid's first to its last time with adaptive steps (`opts.adaptive`) and, when a trajectory is
/// asked for, returns the states at the grid times by its dense output; the final state does not
/// depend on whether a trajectory is kept.
///
/// Runs without gradient tracking: this is for sampling, not for backpropagating through the solver.
///
/// # Errors
/// As [`solve_with`].
pub fn solve(field: &dyn VectorField, x0: &Tensor, grid: &TimeGrid, method: Method, opts: SolveOptions) -> Result<Solution> {
    solve_with(field, x0, grid, method.tableau(), method.stepping(), opts)
}

/// Integrates `dx/dt = field(x, t)` from `x0` (`[n, d]`, any floating kind and device) through
/// `grid` with any explicit Runge–Kutta `tableau`, in fixed steps (one per grid interval) or
/// adaptive ones ([`Stepping`]); the state keeps `x0`'s shape, kind and device.
///
/// Runs without gradient tracking. With a named method's tableau and stepping this is exactly
/// [`solve`].
///
/// # Errors
/// [`Error::Invalid`] for a malformed tableau ([`ButcherTableau::validate`]), for adaptive
/// stepping with a tableau that has no error estimate, or for invalid [`AdaptiveOptions`];
/// [`Error::StepSizeUnderflow`], [`Error::StepBudget`] and [`Error::NonFinite`] from adaptive
/// solves; the field's own errors; [`Error::Torch`] from libtorch.
pub fn solve_with(field: &dyn VectorField, x0: &Tensor, grid: &TimeGrid, tableau: &ButcherTableau, stepping: Stepping, opts: SolveOptions) -> Result<Solution> {
    tableau.validate()?;
    let _no_grad = tch::no_grad_guard();
    if stepping == Stepping::Adaptive {
        let est = tableau.error.as_ref().ok_or_else(|| Error::Invalid(format!("{} has no error estimate, so it cannot step adaptively", tableau.name)))?;
        return adaptive::solve(tableau, est, field, x0, grid, &opts);
    }
    let mut x = x0.shallow_clone();
    let mut nfe = 0;
    let mut trajectory = if opts.keep_trajectory { Some(vec![x0.f_detach_copy()?]) } else { None };
    for w in grid.times().windows(2) {
        x = rk::step(tableau, field, &x, w[0], w[1] - w[0], &mut nfe)?;
        if let Some(traj) = trajectory.as_mut() {
            traj.push(x.f_detach_copy()?);
        }
    }
    Ok(Solution { x, nfe, trajectory, steps: grid.steps(), rejected: 0 })
}
