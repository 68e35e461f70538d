//! The methods: one enum, one `step` each. Adding a fixed-step method means adding a
//! variant, its name and its step here; an adaptive one adds a variant here and its embedded
//! pair in a file of its own (see `dopri5.rs`). Callers select methods by value or by name.

use crate::adaptive::{self, EmbeddedPair};
use crate::{dopri5, Error, Result, Solution, SolveOptions, TimeGrid, VectorField};
use tch::Tensor;

/// An explicit Runge–Kutta method: fixed-step ones step through every grid interval, the
/// adaptive one chooses its own steps between the grid's end points.
///
/// The settings of the adaptive method live in [`crate::AdaptiveOptions`], not in the variant,
/// so every method is a plain name that parses from text (`"dopri5".parse()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Method {
    /// Forward Euler (order 1, 1 evaluation per step): the seed experiment's sampler.
    #[default]
    Euler,
    /// Explicit midpoint (order 2, 2 evaluations per step).
    Midpoint,
    /// Heun's method, the trapezoidal RK2 (order 2, 2 evaluations per step).
    Heun,
    /// Classic fourth-order Runge–Kutta (order 4, 4 evaluations per step).
    Rk4,
    /// Dormand–Prince 5(4), adaptive (6 evaluations per attempted step thanks to FSAL): steps
    /// are sized to meet [`crate::AdaptiveOptions`]' tolerances, which usually costs far fewer
    /// evaluations than a fixed grid fine enough for the same error.
    Dopri5,
}

impl Method {
    /// Every method, in the order error messages list them.
    pub const ALL: [Method; 5] = [Method::Euler, Method::Midpoint, Method::Heun, Method::Rk4, Method::Dopri5];
    /// The fixed-step methods (one step per grid interval).
    pub const FIXED_STEP: [Method; 4] = [Method::Euler, Method::Midpoint, Method::Heun, Method::Rk4];

    /// The name [`std::str::FromStr`] parses and [`std::fmt::Display`] prints.
    pub fn name(self) -> &'static str {
        match self {
            Method::Euler => "euler",
            Method::Midpoint => "midpoint",
            Method::Heun => "heun",
            Method::Rk4 => "rk4",
            Method::Dopri5 => "dopri5",
        }
    }

    /// Order of accuracy: the global error shrinks as `dt^order`.
    pub fn order(self) -> u32 {
        match self {
            Method::Euler => 1,
            Method::Midpoint | Method::Heun => 2,
            Method::Rk4 => 4,
            Method::Dopri5 => 5,
        }
    }

    /// Whether [`crate::solve`] chooses the steps itself (between the grid's end points).
    pub fn is_adaptive(self) -> bool {
        self.pair().is_some()
    }

    /// The embedded pair of an adaptive method.
    fn pair(self) -> Option<&'static dyn EmbeddedPair> {
        match self {
            Method::Dopri5 => Some(&dopri5::Dopri5),
            _ => None,
        }
    }

    /// Field evaluations per [`Method::step`] (for Dopri5: its fifth-order step taken on its own,
    /// without error control).
    pub fn evals_per_step(self) -> usize {
        match self {
            Method::Euler => 1,
            Method::Midpoint | Method::Heun => 2,
            Method::Rk4 => 4,
            Method::Dopri5 => 6,
        }
    }

    /// One step of size `dt` (negative to go backwards) from `(x, t)`; adds the evaluations to `nfe`.
    ///
    /// For an adaptive method this is one step of its propagated (highest-order) solution, with
    /// no error control: [`crate::solve`] is the way to use it adaptively.
    pub fn step(self, f: &dyn VectorField, x: &Tensor, t: f64, dt: f64, nfe: &mut usize) -> Result<Tensor> {
        *nfe += self.evals_per_step();
        let next = match self {
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
            Method::Dopri5 => dopri5::Dopri5.fixed_step(f, x, t, dt)?,
        };
        Ok(next)
    }

    /// The adaptive solve of [`crate::solve`] (an error for fixed-step methods).
    pub(crate) fn solve_adaptive(self, f: &dyn VectorField, x0: &Tensor, grid: &TimeGrid, opts: &SolveOptions) -> Result<Solution> {
        let pair = self.pair().ok_or_else(|| Error::Invalid(format!("{self} is not an adaptive method")))?;
        adaptive::solve(pair, f, x0, grid, opts)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase();
        Method::ALL.into_iter().find(|m| m.name() == key || (key == "rk2" && *m == Method::Heun)).ok_or_else(|| {
            let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
            Error::Invalid(format!("unknown integration method '{s}' (valid: {})", names.join(", ")))
        })
    }
}
