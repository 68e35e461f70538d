//! Dormand–Prince 5(4): the tableau, its error weights and Shampine's fourth-order continuous
//! extension, as in Hairer's `dopri5.f` (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.5–6).

use crate::adaptive::{Attempt, EmbeddedPair};
use crate::{Result, VectorField};
use tch::Tensor;

const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
/// Rows 2–7 of the Butcher matrix (row 7 is the fifth-order weights: first same as last).
const A: [&[f64]; 6] = [
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0],
    &[9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0],
    &[35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0],
];
/// Fifth-order minus fourth-order weights, over the 7 stages.
const E: [f64; 7] = [71.0 / 57600.0, 0.0, -71.0 / 16695.0, 71.0 / 1920.0, -17253.0 / 339200.0, 22.0 / 525.0, -1.0 / 40.0];
/// Shampine's dense-output weights, over the 7 stages.
const D: [f64; 7] = [
    -12715105075.0 / 11282082432.0,
    0.0,
    87487479700.0 / 32700410799.0,
    -10690763975.0 / 1880347072.0,
    701980252875.0 / 199316789632.0,
    -1453857185.0 / 822651844.0,
    69997945.0 / 29380423.0,
];

/// `y + h Σ w_i k_i`, skipping zero weights.
fn combine(y: &Tensor, h: f64, w: &[f64], k: &[Tensor]) -> Result<Tensor> {
    let mut out = y.shallow_clone();
    for (wi, ki) in w.iter().zip(k) {
        if *wi != 0.0 {
            out = out.f_add(&ki.f_mul_scalar(h * wi)?)?;
        }
    }
    Ok(out)
}

/// `h Σ w_i k_i` over the 7 stages, skipping zero weights after the first.
fn weighted(h: f64, w: &[f64; 7], k: &[Tensor]) -> Result<Tensor> {
    let mut out = k[0].f_mul_scalar(h * w[0])?;
    for (wi, ki) in w[1..].iter().zip(&k[1..]) {
        if *wi != 0.0 {
            out = out.f_add(&ki.f_mul_scalar(h * wi)?)?;
        }
    }
    Ok(out)
}

/// The Dormand–Prince 5(4) pair.
pub(crate) struct Dopri5;

impl Dopri5 {
    /// Stages 2–6 from `k1`; returns all six and the fifth-order solution.
    fn stages(f: &dyn VectorField, y0: &Tensor, k1: &Tensor, t: f64, h: f64) -> Result<(Vec<Tensor>, Tensor)> {
        let mut k = vec![k1.shallow_clone()];
        for (i, row) in A[..5].iter().enumerate() {
            let yi = combine(y0, h, row, &k)?;
            k.push(f.velocity(&yi, t + C[i + 1] * h)?);
        }
        let y1 = combine(y0, h, A[5], &k)?;
        Ok((k, y1))
    }
}

impl EmbeddedPair for Dopri5 {
    fn error_order(&self) -> u32 {
        4
    }

    fn evals_per_attempt(&self) -> usize {
        6
    }

    fn attempt(&self, f: &dyn VectorField, y0: &Tensor, k1: &Tensor, t: f64, h: f64) -> Result<Attempt> {
        let (mut k, y1) = Self::stages(f, y0, k1, t, h)?;
        let k7 = f.velocity(&y1, t + h)?;
        k.push(k7.shallow_clone());
        let err = weighted(h, &E, &k)?;
        Ok(Attempt { y1, err, k_last: k7, stages: k })
    }

    /// Hairer's `contd5`: `y0 + θ(r2 + (1−θ)(r3 + θ(r4 + (1−θ) r5)))`, fourth order, continuous
    /// with matching derivatives at both ends of the step.
    fn interpolate(&self, y0: &Tensor, a: &Attempt, h: f64, theta: f64) -> Result<Tensor> {
        let k = &a.stages;
        let r2 = a.y1.f_sub(y0)?;
        let r3 = k[0].f_mul_scalar(h)?.f_sub(&r2)?;
        let r4 = r2.f_sub(&k[6].f_mul_scalar(h)?)?.f_sub(&r3)?;
        let r5 = weighted(h, &D, k)?;
        let t1 = 1.0 - theta;
        let inner = r4.f_add(&r5.f_mul_scalar(t1)?)?.f_mul_scalar(theta)?;
        let mid = r3.f_add(&inner)?.f_mul_scalar(t1)?;
        Ok(y0.f_add(&r2.f_add(&mid)?.f_mul_scalar(theta)?)?)
    }

    fn fixed_step(&self, f: &dyn VectorField, x: &Tensor, t: f64, dt: f64) -> Result<Tensor> {
        let k1 = f.velocity(x, t)?;
        Ok(Self::stages(f, x, &k1, t, dt)?.1)
    }
}
