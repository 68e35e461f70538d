//! ODE integrators for flow matching, over `tch` tensors.
//!
//! A flow-matching model is a velocity field `v(x, t)`; generating samples means solving
//! `dx/dt = v(x, t)` from `t = 0` (source samples) to `t = 1`. This crate knows ODEs and
//! nothing of training: any [`VectorField`] (a network, or a closure) can be integrated with
//! any [`Method`] on any [`TimeGrid`], forwards or backwards.
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
//! ```

mod method;
pub use method::Method;

use tch::Tensor;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A time-dependent velocity field `v(x, t)` on a batch `x` of shape `[n, d]`, all rows at time `t`.
pub trait VectorField {
    fn velocity(&self, x: &Tensor, t: f64) -> Result<Tensor>;
}

impl<F: Fn(&Tensor, f64) -> Result<Tensor>> VectorField for F {
    fn velocity(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        self(x, t)
    }
}

/// Strictly monotone times `t_0, …, t_N` to step through (increasing: forwards; decreasing: backwards).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeGrid(Vec<f64>);

impl TimeGrid {
    /// `steps` equal steps from `t0` to `t1`.
    pub fn uniform(t0: f64, t1: f64, steps: usize) -> Result<Self> {
        if steps == 0 {
            return Err(Error::Invalid("the number of integration steps must be at least 1".into()));
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

    pub fn times(&self) -> &[f64] {
        &self.0
    }
    pub fn steps(&self) -> usize {
        self.0.len() - 1
    }
}

/// What [`solve`] keeps besides the final state.
#[derive(Debug, Clone, Copy, Default)]
pub struct SolveOptions {
    /// Keep the state at every grid time (including the start) in [`Solution::trajectory`].
    pub keep_trajectory: bool,
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
}

/// Integrates `dx/dt = field(x, t)` from `x0` through `grid` with `method`.
///
/// Runs without gradient tracking: this is for sampling, not for backpropagating through the solver.
pub fn solve(field: &dyn VectorField, x0: &Tensor, grid: &TimeGrid, method: Method, opts: SolveOptions) -> Result<Solution> {
    let _no_grad = tch::no_grad_guard();
    let mut x = x0.shallow_clone();
    let mut nfe = 0;
    let mut trajectory = opts.keep_trajectory.then(|| vec![x0.copy()]);
    for w in grid.times().windows(2) {
        x = method.step(field, &x, w[0], w[1] - w[0], &mut nfe)?;
        if let Some(traj) = trajectory.as_mut() {
            traj.push(x.copy());
        }
    }
    Ok(Solution { x, nfe, trajectory })
}
