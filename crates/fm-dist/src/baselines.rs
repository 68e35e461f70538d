//! Samplers of a [`Density`] that use the energy alone: the baselines a learned Boltzmann
//! sampler is judged beside at the same number of energy evaluations (a re-examination of the
//! diffusion samplers, ICLR 2025 blog "a need for a course correction", found plain importance
//! sampling and MCMC matching them on GMM-40 and DW-4).
//!
//! - [`importance_from_normal`]: `n` draws of a wide Gaussian proposal with their `log q`, for
//!   [`crate::importance::ImportanceWeights`]; `n` evaluations.
//! - [`mala`]: the Metropolis-adjusted Langevin algorithm (Roberts & Tweedie 1996) on many
//!   parallel chains, its step size tuned during the first half towards the acceptance rate
//!   0.574 (Roberts & Rosenthal 1998); one evaluation of `log p̃` and its gradient per chain
//!   per step.

use crate::{Density, Error, Result};
use ndarray::{Array1, Array2, Axis};
use rand::{Rng, RngCore};

/// `n` draws of `N(0, scale² I)` in `density`'s dimension and their log-densities under it.
///
/// # Errors
/// [`Error::Invalid`] for a scale that is not positive and finite.
pub fn importance_from_normal(density: &dyn Density, n: usize, scale: f64, rng: &mut dyn RngCore) -> Result<(Array2<f64>, Array1<f64>)> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::Invalid(format!("the proposal's scale must be positive and finite, got {scale}")));
    }
    let d = density.density_dim();
    let x = Array2::from_shape_simple_fn((n, d), || scale * rng.sample::<f64, _>(rand_distr::StandardNormal));
    let c = -0.5 * d as f64 * (2.0 * std::f64::consts::PI * scale * scale).ln();
    let log_q = x.map_axis(Axis(1), |r| c - 0.5 * r.dot(&r) / (scale * scale));
    Ok((x, log_q))
}

/// What [`mala`] returns.
#[derive(Debug, Clone)]
pub struct Mala {
    /// Each chain's last state, `chains × dim`.
    pub samples: Array2<f64>,
    /// Evaluations of `log p̃` with its gradient: `chains × (steps + 1)`.
    pub evaluations: usize,
    /// The share of proposals accepted over the second half (the tuned steps).
    pub acceptance: f64,
    /// The step size the first half tuned.
    pub step_size: f64,
}

/// `steps` MALA steps of every row of `init` (one chain each) targeting `density`: propose
/// `x' = x + ε ∇log p̃(x) + √(2ε) ξ`, accept with the Metropolis–Hastings ratio of the Langevin
/// proposals. During the first `steps / 2` steps `ε` is multiplied by 1.1 after a step whose
/// acceptance rate exceeds 0.574 and by 0.9 otherwise; the second half keeps it fixed (so the
/// chains' law is the target's stationary one).
///
/// # Errors
/// A step size that is not positive, `log p̃` NaN or `+∞` at a state, or its gradient's errors.
pub fn mala(density: &dyn Density, init: Array2<f64>, steps: usize, step_size: f64, rng: &mut dyn RngCore) -> Result<Mala> {
    if !(step_size.is_finite() && step_size > 0.0) {
        return Err(Error::Invalid(format!("MALA's step size must be positive and finite, got {step_size}")));
    }
    let (chains, d) = init.dim();
    let eval = |x: &Array2<f64>| -> Result<(Array1<f64>, Array2<f64>)> {
        let lp = density.log_density(x.view())?;
        if let Some(i) = lp.iter().position(|v| v.is_nan() || *v == f64::INFINITY) {
            return Err(Error::Invalid(format!("log p̃ of {} is {} at a chain's state (row {i})", density.density_name(), lp[i])));
        }
        Ok((lp, density.grad_log_density(x.view())?))
    };
    let (mut x, mut eps) = (init, step_size);
    let (mut lp, mut grad) = eval(&x)?;
    let (mut evaluations, mut accepted, mut proposed) = (chains, 0usize, 0usize);
    // log q(to | from) of the Langevin proposal, up to a constant that cancels.
    let log_kernel = |to: &Array2<f64>, from: &Array2<f64>, g: &Array2<f64>, eps: f64| -> Array1<f64> {
        let mean = from + &(g * eps);
        (to - &mean).map_axis(Axis(1), |r| -r.dot(&r) / (4.0 * eps))
    };
    for step in 0..steps {
        let noise = Array2::from_shape_simple_fn((chains, d), || rng.sample::<f64, _>(rand_distr::StandardNormal));
        let proposal = &x + &(&grad * eps) + &(noise * (2.0 * eps).sqrt());
        let (lp_new, grad_new) = eval(&proposal)?;
        evaluations += chains;
        let log_ratio = &lp_new - &lp + log_kernel(&x, &proposal, &grad_new, eps) - log_kernel(&proposal, &x, &grad, eps);
        let accept: Vec<bool> = log_ratio.iter().map(|r| rng.random::<f64>().ln() < *r).collect();
        let n_acc = accept.iter().filter(|a| **a).count();
        for (i, _) in accept.iter().enumerate().filter(|(_, a)| **a) {
            x.row_mut(i).assign(&proposal.row(i));
            grad.row_mut(i).assign(&grad_new.row(i));
            lp[i] = lp_new[i];
        }
        if step < steps / 2 {
            eps *= if n_acc as f64 > 0.574 * chains as f64 { 1.1 } else { 0.9 };
        } else {
            (accepted, proposed) = (accepted + n_acc, proposed + chains);
        }
    }
    let acceptance = if proposed == 0 { f64::NAN } else { accepted as f64 / proposed as f64 };
    Ok(Mala { samples: x, evaluations, acceptance, step_size: eps })
}
