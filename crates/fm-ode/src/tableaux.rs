//! The named methods as Butcher tableaux: what [`crate::Method`] maps to.
//!
//! The fixed-step ones are written as exact fractions ([`Weights::Rational`]), whose evaluation
//! is the hand-written form the crate used before tableaux (`x + ((k1 + k4) + (k2 + k3)·2)·(dt/6)`
//! for RK4), so results are unchanged bit for bit. Dormand–Prince keeps `f64` coefficients
//! ([`Weights::Real`]) evaluated term by term, as Hairer's `dopri5.f` does.

use crate::tableau::{ButcherTableau, ErrorEstimate};
use crate::weights::Weights;

fn fractions(rows: &[(&[i64], i64)]) -> Vec<Weights> {
    rows.iter().map(|(n, d)| Weights::rational(n, *d)).collect()
}

impl ButcherTableau {
    /// Forward Euler (order 1, 1 stage): `y1 = y0 + h f(y0, t)` (Euler 1768; Hairer, Nørsett &
    /// Wanner, *Solving ODEs I*, §I.7 and §II.1).
    pub fn euler() -> Self {
        ButcherTableau { name: "euler".into(), order: 1, c: vec![0.0], a: fractions(&[(&[], 1)]), b: Weights::rational(&[1], 1), error: None, dense: None }
    }

    /// The explicit midpoint rule (order 2, 2 stages; Runge 1895, in Hairer, Nørsett & Wanner,
    /// *Solving ODEs I*, §II.1): `c = (0, ½)`, `a_21 = ½`, `b = (0, 1)`.
    pub fn midpoint() -> Self {
        ButcherTableau {
            name: "midpoint".into(),
            order: 2,
            c: vec![0.0, 0.5],
            a: fractions(&[(&[], 1), (&[1], 2)]),
            b: Weights::rational(&[0, 1], 1),
            error: None,
            dense: None,
        }
    }

    /// Heun's method, the explicit trapezoidal rule (order 2, 2 stages; Heun 1900, in Hairer,
    /// Nørsett & Wanner, *Solving ODEs I*, §II.1): `c = (0, 1)`, `a_21 = 1`, `b = (½, ½)`.
    pub fn heun() -> Self {
        ButcherTableau {
            name: "heun".into(),
            order: 2,
            c: vec![0.0, 1.0],
            a: fractions(&[(&[], 1), (&[1], 1)]),
            b: Weights::rational(&[1, 1], 2),
            error: None,
            dense: None,
        }
    }

    /// The classical fourth-order Runge–Kutta method (order 4, 4 stages; Kutta 1901, in Hairer,
    /// Nørsett & Wanner, *Solving ODEs I*, §II.1; Butcher, *Numerical Methods for ODEs*):
    /// `c = (0, ½, ½, 1)`, `a_21 = a_32 = ½`, `a_43 = 1`, `b = (1, 2, 2, 1)/6`.
    pub fn rk4() -> Self {
        ButcherTableau {
            name: "rk4".into(),
            order: 4,
            c: vec![0.0, 0.5, 0.5, 1.0],
            a: fractions(&[(&[], 1), (&[1], 2), (&[0, 1], 2), (&[0, 0, 1], 1)]),
            b: Weights::rational(&[1, 2, 2, 1], 6),
            error: None,
            dense: None,
        }
    }

    /// Dormand–Prince 5(4) (order 5, 7 stages, first same as last, with a fourth-order error
    /// estimate and Shampine's fourth-order continuous extension): Dormand & Prince, "A family
    /// of embedded Runge–Kutta formulae", *J. Comput. Appl. Math.* 6 (1980) 19–26; coefficients,
    /// error weights and dense output as in Hairer's `dopri5.f` (Hairer, Nørsett & Wanner,
    /// *Solving ODEs I*, §II.5–6). Adaptive with [`crate::Method::Dopri5`].
    pub fn dopri5() -> Self {
        let b = [35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0];
        ButcherTableau {
            name: "dopri5".into(),
            order: 5,
            c: vec![0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0],
            a: vec![
                Weights::real(&[]),
                Weights::real(&[1.0 / 5.0]),
                Weights::real(&[3.0 / 40.0, 9.0 / 40.0]),
                Weights::real(&[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0]),
                Weights::real(&[19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0]),
                Weights::real(&[9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0]),
                Weights::real(&b),
            ],
            b: Weights::Real(b.iter().copied().chain([0.0]).collect()),
            // Fifth-order minus fourth-order weights (dopri5.f's E1…E7).
            error: Some(ErrorEstimate {
                order: 4,
                weights: Weights::real(&[71.0 / 57600.0, 0.0, -71.0 / 16695.0, 71.0 / 1920.0, -17253.0 / 339200.0, 22.0 / 525.0, -1.0 / 40.0]),
            }),
            // Shampine's dense-output weights (dopri5.f's D1…D7).
            dense: Some(Weights::real(&[
                -12715105075.0 / 11282082432.0,
                0.0,
                87487479700.0 / 32700410799.0,
                -10690763975.0 / 1880347072.0,
                701980252875.0 / 199316789632.0,
                -1453857185.0 / 822651844.0,
                69997945.0 / 29380423.0,
            ])),
        }
    }
}
