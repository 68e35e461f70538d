//! Closed-form ODEs shared by the integrator tests.
#![allow(dead_code)]

use tch::{Kind, Tensor};

/// An ODE `dx/dt = field(x, t)` with its exact flow.
pub struct Problem {
    pub name: &'static str,
    pub field: fn(&Tensor, f64) -> fm_ode::Result<Tensor>,
    /// The exact solution at `t` of the solution that is `x` at `s`.
    pub exact: fn(&Tensor, f64, f64) -> Tensor,
    pub x0: fn() -> Tensor,
}

/// dx/dt = −x: x(t) = x(s) e^{−(t−s)}.
pub fn decay() -> Problem {
    Problem {
        name: "decay",
        field: |x, _| Ok(x.f_neg()?),
        exact: |x, s, t| x * (-(t - s)).exp(),
        x0: || Tensor::from_slice(&[0.5f64, -1.0, 2.0]).reshape([3, 1]),
    }
}

/// dx/dt = J x with J the rotation generator: x(t) = R(t−s) x(s).
pub fn rotation() -> Problem {
    Problem {
        name: "rotation",
        field: |x, _| {
            let (a, b) = (x.f_select(1, 0)?, x.f_select(1, 1)?);
            Ok(Tensor::f_stack(&[b.f_neg()?, a], 1)?)
        },
        exact: |x, s, t| {
            let (c, sn) = ((t - s).cos(), (t - s).sin());
            let (a, b) = (x.select(1, 0), x.select(1, 1));
            Tensor::stack(&[&a * c - &b * sn, &a * sn + &b * c], 1)
        },
        x0: || Tensor::from_slice(&[1.0f64, 0.0, 0.3, -2.0, -1.5, 0.7]).reshape([3, 2]),
    }
}

/// dx/dt = x cos t (time-dependent): x(t) = x(s) e^{sin t − sin s}.
pub fn time_dependent() -> Problem {
    Problem {
        name: "time-dependent",
        field: |x, t| Ok(x.f_mul_scalar(t.cos())?),
        exact: |x, s, t| x * (t.sin() - s.sin()).exp(),
        x0: || Tensor::from_slice(&[0.5f64, -1.0, 2.0, 1.0]).reshape([2, 2]),
    }
}

pub fn problems() -> [Problem; 3] {
    [decay(), rotation(), time_dependent()]
}

pub fn max_abs(t: &Tensor) -> f64 {
    f64::try_from(t.abs().max().to_kind(Kind::Double)).unwrap()
}
