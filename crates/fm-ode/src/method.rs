//! The fixed-step methods: one enum, one `step` each. Adding a method means adding a
//! variant, its name and its step here; callers select methods by value or by name.

use crate::{Error, Result, VectorField};
use tch::Tensor;

/// An explicit Runge–Kutta method with a fixed step.
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
}

impl Method {
    pub const ALL: [Method; 4] = [Method::Euler, Method::Midpoint, Method::Heun, Method::Rk4];

    pub fn name(self) -> &'static str {
        match self {
            Method::Euler => "euler",
            Method::Midpoint => "midpoint",
            Method::Heun => "heun",
            Method::Rk4 => "rk4",
        }
    }

    /// Order of accuracy: the global error shrinks as `dt^order`.
    pub fn order(self) -> u32 {
        match self {
            Method::Euler => 1,
            Method::Midpoint | Method::Heun => 2,
            Method::Rk4 => 4,
        }
    }

    /// Field evaluations per step.
    pub fn evals_per_step(self) -> usize {
        match self {
            Method::Euler => 1,
            Method::Midpoint | Method::Heun => 2,
            Method::Rk4 => 4,
        }
    }

    /// One step of size `dt` (negative to go backwards) from `(x, t)`; adds the evaluations to `nfe`.
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
        };
        Ok(next)
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
