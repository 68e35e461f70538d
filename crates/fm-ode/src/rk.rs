//! The generic explicit Runge–Kutta stepper: a fixed step, an adaptive trial step with its
//! error estimate, and the dense output, for any [`ButcherTableau`].
//!
//! Every linear combination goes through [`combine`], whose operation order is fixed by the
//! [`crate::Weights`] representation; that is what keeps the named methods bit for bit
//! identical to the hand-written code they replace (see `tests/bit_for_bit.rs`).

use crate::tableau::{ButcherTableau, ErrorEstimate};
use crate::weights::combine;
use crate::{Result, VectorField};
use tch::Tensor;

impl ButcherTableau {
    /// One fixed step of size `dt` (negative to go backwards) from `(x, t)`; adds
    /// [`ButcherTableau::evals_per_step`] to `nfe`. [`crate::Method::step`] for any tableau.
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] for a malformed tableau; the field's errors; [`crate::Error::Torch`].
    pub fn step(&self, f: &dyn VectorField, x: &Tensor, t: f64, dt: f64, nfe: &mut usize) -> Result<Tensor> {
        self.validate()?;
        step(self, f, x, t, dt, nfe)
    }
}

/// The stage derivatives `k_1…k_n` of a step from `(y0, t)` by `h`, `k_1` given.
fn stages(tab: &ButcherTableau, f: &dyn VectorField, y0: &Tensor, k1: Tensor, t: f64, h: f64, n: usize) -> Result<Vec<Tensor>> {
    let mut k = Vec::with_capacity(n + 1);
    k.push(k1);
    for i in 1..n {
        let yi = combine(&tab.a[i], Some(y0), h, &k)?;
        k.push(f.velocity(&yi, t + tab.c[i] * h)?);
    }
    Ok(k)
}

/// One fixed step of a validated tableau; adds [`ButcherTableau::evals_per_step`] to `nfe`.
pub(crate) fn step(tab: &ButcherTableau, f: &dyn VectorField, x: &Tensor, t: f64, dt: f64, nfe: &mut usize) -> Result<Tensor> {
    let n = tab.evals_per_step();
    *nfe += n;
    let k = stages(tab, f, x, f.velocity(x, t)?, t, dt, n)?;
    combine(&tab.b, Some(x), dt, &k)
}

/// One trial step of an embedded pair.
pub(crate) struct Attempt {
    /// The propagated solution at `t + h`.
    pub y1: Tensor,
    /// The local error estimate `h Σ e_i k_i`.
    pub err: Tensor,
    /// `f(y1, t + h)`, the next step's first stage.
    pub k_last: Tensor,
    /// The `s` stages, kept for the dense output.
    pub stages: Vec<Tensor>,
}

/// A trial step of size `h` (signed) from `(y0, t)` where `k1 = f(y0, t)`: the stages, `y1`,
/// `f(y1, t + h)` (the last stage of a first-same-as-last tableau, else one more evaluation),
/// and the error estimate. Costs [`ButcherTableau::evals_per_attempt`] evaluations.
pub(crate) fn attempt(tab: &ButcherTableau, est: &ErrorEstimate, f: &dyn VectorField, y0: &Tensor, k1: &Tensor, t: f64, h: f64) -> Result<Attempt> {
    let s = tab.stages();
    let before_y1 = if tab.is_fsal() { s - 1 } else { s };
    let mut k = stages(tab, f, y0, k1.shallow_clone(), t, h, before_y1)?;
    let y1 = combine(&tab.b, Some(y0), h, &k)?;
    let k_last = f.velocity(&y1, t + h)?;
    k.push(k_last.shallow_clone());
    k.truncate(s);
    let err = combine(&est.weights, None, h, &k)?;
    Ok(Attempt { y1, err, k_last, stages: k })
}

/// The state at `t + θh`, `θ ∈ [0, 1]`, from an accepted attempt: Hairer's `contd5`,
/// `y0 + θ(r2 + (1−θ)(r3 + θ(r4 + (1−θ) r5)))`, with `r5 = h Σ d_i k_i` when the tableau has
/// dense-output weights and `r5 = 0` (the cubic Hermite interpolant) when not. Continuous with
/// matching derivatives at both ends of the step.
pub(crate) fn interpolate(tab: &ButcherTableau, y0: &Tensor, a: &Attempt, h: f64, theta: f64) -> Result<Tensor> {
    let r2 = a.y1.f_sub(y0)?;
    let r3 = a.stages[0].f_mul_scalar(h)?.f_sub(&r2)?;
    let r4 = r2.f_sub(&a.k_last.f_mul_scalar(h)?)?.f_sub(&r3)?;
    let t1 = 1.0 - theta;
    let inner = match &tab.dense {
        Some(d) => r4.f_add(&combine(d, None, h, &a.stages)?.f_mul_scalar(t1)?)?,
        None => r4,
    }
    .f_mul_scalar(theta)?;
    let mid = r3.f_add(&inner)?.f_mul_scalar(t1)?;
    Ok(y0.f_add(&r2.f_add(&mid)?.f_mul_scalar(theta)?)?)
}
