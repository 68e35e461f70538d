//! Explicit Runge–Kutta methods as data: Butcher tableaux, optionally with an embedded error
//! estimate (for adaptive steps) and a continuous extension (for output between steps).
//!
//! An `s`-stage explicit method steps from `(y0, t)` by `h` through the stages
//! `k_i = f(y0 + h Σ_{j<i} a_ij k_j, t + c_i h)` to `y1 = y0 + h Σ_i b_i k_i` (Butcher,
//! *Numerical Methods for Ordinary Differential Equations*; Hairer, Nørsett & Wanner, *Solving
//! ODEs I*, §II.1). The named methods are in `tableaux.rs`, the stepper in `rk.rs`.

use crate::weights::Weights;
use crate::{Error, Result};

/// The embedded error estimate of an adaptive pair: a second, lower-order solution
/// `ŷ1 = y0 + h Σ_j b̂_j k_j` from the same stages, whose difference from `y1` estimates the
/// local error (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorEstimate {
    /// Order `q` of the embedded solution (for a `p(q)` pair, the `q`): the estimate is
    /// `O(h^{q+1})`, so the step-size controller scales steps by `norm^(−1/(q+1))`.
    pub order: u32,
    /// The error weights `e_j = b_j − b̂_j`, one per stage: the estimate is `h Σ_j e_j k_j`.
    /// For a first-same-as-last tableau the last stage is `f(y1, t + h)`.
    pub weights: Weights,
}

impl ErrorEstimate {
    /// The estimate of the embedded weights `b_hat` against the propagated weights `b`:
    /// `e = b − b_hat`, exact ([`Weights::Rational`] over the least common denominator) when
    /// both are fractions, [`Weights::Real`] otherwise.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the lengths differ or the exact difference overflows `i64`.
    pub fn from_embedded(b: &Weights, b_hat: &Weights, order: u32) -> Result<Self> {
        if b.len() != b_hat.len() {
            return Err(Error::Invalid(format!("embedded weights: {} against {} coefficients", b_hat.len(), b.len())));
        }
        let weights = match (b, b_hat) {
            (Weights::Rational { numerators: n1, denominator: d1 }, Weights::Rational { numerators: n2, denominator: d2 }) => {
                let overflow = || Error::Invalid("embedded weights: the exact difference overflows i64".into());
                let (d1, d2) = (*d1, *d2);
                let gcd = |mut a: i64, mut b: i64| {
                    while b != 0 {
                        (a, b) = (b, a % b);
                    }
                    a.abs().max(1)
                };
                let d = (d1 / gcd(d1, d2)).checked_mul(d2).ok_or_else(overflow)?;
                let scaled = |n: i64, di: i64| n.checked_mul(d / di).ok_or_else(overflow);
                let numerators = n1.iter().zip(n2).map(|(&x, &y)| scaled(x, d1)?.checked_sub(scaled(y, d2)?).ok_or_else(overflow)).collect::<Result<_>>()?;
                Weights::Rational { numerators, denominator: d }
            }
            _ => Weights::Real(b.values().iter().zip(b_hat.values()).map(|(x, y)| x - y).collect()),
        };
        Ok(Self { order, weights })
    }
}

/// An explicit Runge–Kutta method of `s` stages as its Butcher tableau
///
/// ```text
/// c_1 = 0 |
/// c_2     | a_21
/// …       | …     ⋱
/// c_s     | a_s1  …  a_s,s−1
/// --------+---------------------
///         | b_1   …  b_s−1  b_s
/// ```
///
/// with an optional embedded error estimate ([`ErrorEstimate`]) that makes it usable with
/// adaptive steps, and optional dense-output weights. The named methods are
/// [`ButcherTableau::euler`], [`ButcherTableau::midpoint`], [`ButcherTableau::heun`],
/// [`ButcherTableau::rk4`] and [`ButcherTableau::dopri5`] (what [`crate::Method`] maps to); any
/// other explicit method is a value of this type integrated by [`crate::solve_with`].
///
/// The fields are public so a tableau can be written as a literal; [`ButcherTableau::validate`]
/// checks one (the solvers call it).
#[derive(Debug, Clone, PartialEq)]
pub struct ButcherTableau {
    /// A short name for messages (`"rk4"`).
    pub name: String,
    /// Order `p` of the propagated solution `y1`: its global error shrinks as `h^p`.
    pub order: u32,
    /// The nodes `c_i`, one per stage (`s` of them): stage `i` is evaluated at `t + c_i h`.
    /// `c_1 = 0` and `c_i = Σ_j a_ij` (the row sums, checked to 1e-12).
    pub c: Vec<f64>,
    /// The Butcher matrix, one row per stage: row `i` (from 0) holds the `i` coefficients
    /// `a_ij`, `j < i`, of the earlier stages (row 0 is empty). Strictly lower triangular:
    /// the method is explicit.
    pub a: Vec<Weights>,
    /// The weights `b_i` of the propagated solution, one per stage, summing to 1.
    pub b: Weights,
    /// The embedded error estimate, needed for adaptive steps ([`crate::Stepping::Adaptive`]).
    pub error: Option<ErrorEstimate>,
    /// Dense-output weights `d_i`, one per stage, for the continuous extension of Hairer's
    /// `dopri5.f`: between `t` and `t + h` the state at `θ ∈ [0, 1]` is
    /// `y0 + θ(r2 + (1−θ)(r3 + θ(r4 + (1−θ) r5)))` with `r2 = y1 − y0`, `r3 = h k_1 − r2`,
    /// `r4 = r2 − h f(y1) − r3` and `r5 = h Σ_i d_i k_i`. Without them `r5 = 0`: the cubic
    /// Hermite interpolant of `y0, y1` and their derivatives (third order). Used for the
    /// output times of adaptive solves only.
    pub dense: Option<Weights>,
}

/// How far `c_i` may be from the row sum of `a`, and `Σ b` from 1, relative to the coefficients' size.
const TOLERANCE: f64 = 1e-12;

impl ButcherTableau {
    /// The number of stages `s`.
    pub fn stages(&self) -> usize {
        self.c.len()
    }

    /// Whether the last stage is evaluated at `y1` itself (`c_s = 1`, `a_s· = b`, `b_s = 0`, with
    /// `a_s·` and `b` in the same representation), so an adaptive step reuses it as the next
    /// step's first stage ("first same as last"): `s − 1` new evaluations per attempted step
    /// instead of `s`.
    pub fn is_fsal(&self) -> bool {
        let s = self.stages();
        s >= 2 && self.a.len() == s && self.b.len() == s && self.c[s - 1] == 1.0 && self.b.value(s - 1) == 0.0 && self.a[s - 1] == self.b.prefix(s - 1)
    }

    /// Field evaluations per fixed step: the stages up to the last with a non-zero weight `b_i`.
    pub fn evals_per_step(&self) -> usize {
        (0..self.b.len()).rev().find(|&i| self.b.value(i) != 0.0).map_or(1, |i| i + 1)
    }

    /// New field evaluations per attempted adaptive step: `s − 1` when [`ButcherTableau::is_fsal`],
    /// else `s` (the stages after the first, and `f(y1, t + h)`, the next step's first stage).
    pub fn evals_per_attempt(&self) -> usize {
        if self.is_fsal() {
            self.stages() - 1
        } else {
            self.stages()
        }
    }

    /// Checks that the tableau is a well-formed explicit method: at least one stage, `order`
    /// at least 1, one row of `a` per stage with exactly the earlier stages' coefficients,
    /// `c_i` the row sums of `a`, weights summing to 1 (error weights to 0), one weight per
    /// stage in `b`, `error` and `dense`, every coefficient finite, denominators positive.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the tableau and the first defect found.
    pub fn validate(&self) -> Result<()> {
        self.defect().map_err(|d| Error::Invalid(format!("Butcher tableau '{}': {d}", self.name)))
    }

    fn defect(&self) -> std::result::Result<(), String> {
        let s = self.stages();
        if s == 0 {
            return Err("no stages (c is empty)".into());
        }
        if self.order == 0 {
            return Err("order must be at least 1".into());
        }
        if self.a.len() != s {
            return Err(format!("a has {} rows for {s} stages (one per stage, the first empty)", self.a.len()));
        }
        if let Some(i) = self.c.iter().position(|c| !c.is_finite()) {
            return Err(format!("c[{i}] is not finite"));
        }
        for (i, row) in self.a.iter().enumerate() {
            row.check(&format!("a[{i}]"), row.len())?;
            if let Some(j) = (i..row.len()).find(|&j| row.value(j) != 0.0) {
                return Err(format!("a[{i}][{j}] is not zero: the method is not explicit (stage {i} may use stages 0..{i} only)"));
            }
            if row.len() != i {
                return Err(format!("ragged rows: a[{i}] has {} coefficients, stage {i} of an explicit method has {i}", row.len()));
            }
            let (sum, size) = row.values().iter().fold((0.0, 0.0), |(s, m), w| (s + w, m + w.abs()));
            if (self.c[i] - sum).abs() > TOLERANCE * (1.0 + size) {
                return Err(format!("c[{i}] = {} is not the row sum {sum} of a[{i}]", self.c[i]));
            }
        }
        let sums_to = |w: &Weights, what: &str, target: f64| {
            w.check(what, s)?;
            let (sum, size) = w.values().iter().fold((0.0, 0.0), |(s, m), w| (s + w, m + w.abs()));
            match (sum - target).abs() <= TOLERANCE * (1.0 + size) {
                true => Ok(()),
                false => Err(format!("the {what} sum to {sum}, not {target}")),
            }
        };
        sums_to(&self.b, "weights b", 1.0)?;
        if let Some(e) = &self.error {
            if e.order == 0 {
                return Err("the error estimate's order must be at least 1".into());
            }
            sums_to(&e.weights, "error weights", 0.0)?;
        }
        match &self.dense {
            Some(d) => d.check("dense-output weights", s),
            None => Ok(()),
        }
    }
}
