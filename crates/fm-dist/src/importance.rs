//! Importance weights of samples `xᵢ ~ q` against a density `p̃ = Z p`: `log wᵢ = log p̃(xᵢ) −
//! log q(xᵢ)`. From them: the normalised effective sample size (Kish 1965), the estimate of
//! `log Z` with its standard error, and self-normalised expectations under `p` (Owen 2013,
//! "Monte Carlo theory, methods and examples", ch. 9).

use crate::gmm::log_sum_exp;
use crate::{Density, Error, Result};
use ndarray::{Array1, ArrayView1, ArrayView2};

/// The importance weights of `n` samples, as log-weights (finite ones; a sample where `p̃` is 0
/// has weight 0).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportanceWeights {
    /// `log p̃(xᵢ) − log q(xᵢ)`, nats (`−∞` where `p̃(xᵢ) = 0`).
    pub log_w: Array1<f64>,
}

/// What [`ImportanceWeights::summary`] reports.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
/// Non-finite figures (every weight 0: `log Z = −∞`; one sample: an infinite se) are written as
/// `null` by JSON and read back as NaN.
pub struct ImportanceSummary {
    /// Samples weighed.
    pub n: usize,
    /// Kish's effective sample size over `n`, `(Σw)² / (n Σw²)`, in `(0, 1]`: 1 when `q = p`.
    #[serde(deserialize_with = "crate::metrics::nan_as_null::deserialize")]
    pub ess: f64,
    /// `log Ẑ = log (1/n) Σ wᵢ`: unbiased in `Z` (not in `log Z`, whose estimate is biased low by
    /// about half its relative variance).
    #[serde(deserialize_with = "crate::metrics::nan_as_null::deserialize")]
    pub log_z: f64,
    /// The standard error of `log Ẑ` by the delta method: `sd(w) / (√n · mean(w))`.
    #[serde(deserialize_with = "crate::metrics::nan_as_null::deserialize")]
    pub log_z_se: f64,
}

impl ImportanceWeights {
    /// The weights of samples `x` (`n × dim`) with log-densities `log_q` under their proposal,
    /// against `density`.
    ///
    /// # Errors
    /// [`Error::Dim`] for points of another width; [`Error::Invalid`] for `log_q` of another
    /// length, a `log q` that is not finite, no samples, or a `log p̃` that is NaN or `+∞`.
    pub fn new(density: &dyn Density, x: ArrayView2<f64>, log_q: ArrayView1<f64>) -> Result<Self> {
        if x.nrows() != log_q.len() {
            return Err(Error::Invalid(format!("{} samples but {} log q values", x.nrows(), log_q.len())));
        }
        if x.nrows() == 0 {
            return Err(Error::Invalid("no samples to weigh".into()));
        }
        if let Some(i) = log_q.iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!("log q of sample {i} is {}: a proposal's log-density must be finite at its samples", log_q[i])));
        }
        let log_p = density.log_density(x)?;
        if let Some(i) = log_p.iter().position(|v| v.is_nan() || *v == f64::INFINITY) {
            return Err(Error::Invalid(format!("the density {} gives log p̃ = {} at sample {i}", density.density_name(), log_p[i])));
        }
        Ok(Self { log_w: log_p - log_q })
    }

    /// ESS and `log Z` ± its standard error.
    pub fn summary(&self) -> ImportanceSummary {
        let n = self.log_w.len();
        let log_sum = log_sum_exp(self.log_w.iter().copied());
        if log_sum == f64::NEG_INFINITY {
            // Every sample where p̃ is 0: nothing is estimated.
            return ImportanceSummary { n, ess: 0.0, log_z: f64::NEG_INFINITY, log_z_se: f64::INFINITY };
        }
        let log_sum_sq = log_sum_exp(self.log_w.iter().map(|v| 2.0 * v));
        let ess = (2.0 * log_sum - log_sum_sq - (n as f64).ln()).exp();
        let log_z = log_sum - (n as f64).ln();
        // sd(w)/mean(w) = √(n Σw²/(Σw)² − 1) · √(n/(n−1)), on the weights relative to their mean.
        let rel_var = ((n as f64) * (log_sum_sq - 2.0 * log_sum).exp() - 1.0).max(0.0) * n as f64 / (n as f64 - 1.0).max(1.0);
        // One sample says nothing of the weights' spread.
        let log_z_se = if n < 2 { f64::INFINITY } else { (rel_var / n as f64).sqrt() };
        ImportanceSummary { n, ess, log_z, log_z_se }
    }

    /// The self-normalised weights `wᵢ / Σw` (summing to 1).
    pub fn normalised(&self) -> Array1<f64> {
        let log_sum = log_sum_exp(self.log_w.iter().copied());
        self.log_w.mapv(|v| (v - log_sum).exp())
    }

    /// The self-normalised estimate of `E_p[f]` for `f` given at the samples.
    pub fn expectation(&self, f: ArrayView1<f64>) -> f64 {
        self.normalised().dot(&f)
    }
}

/// W2 between the energy distributions of `samples` and `reference` under `density`: the 1-D
/// Wasserstein-2 distance of `−log p̃` at each set's points (the "energy W2" of the Boltzmann
/// samplers' benchmarks, DEM and its re-examinations), by matching the two empirical quantile
/// functions at `max(n, m)` midpoints. Points where `p̃` is 0 (infinite energy: outside a
/// bounded support) are left out of both sets.
///
/// # Errors
/// An empty set (after those are left out), points of another width, or a `log p̃` that is NaN
/// or `+∞` at a point.
pub fn energy_w2(density: &dyn Density, samples: ArrayView2<f64>, reference: ArrayView2<f64>) -> Result<f64> {
    let energies = |x: ArrayView2<f64>, what: &str| -> Result<Vec<f64>> {
        let log_p = density.log_density(x)?;
        if log_p.iter().any(|v| v.is_nan() || *v == f64::INFINITY) {
            return Err(Error::Invalid(format!("energy W2: log p̃ is NaN or +∞ at one of the {what}")));
        }
        let mut e: Vec<f64> = log_p.iter().filter(|v| v.is_finite()).map(|v| -v).collect();
        if e.is_empty() {
            return Err(Error::Invalid(format!("energy W2: none of the {what} has a finite energy")));
        }
        e.sort_by(f64::total_cmp);
        Ok(e)
    };
    let (a, b) = (energies(samples, "samples")?, energies(reference, "reference samples")?);
    let k = a.len().max(b.len());
    let at = |v: &[f64], i: usize| v[((i as f64 + 0.5) / k as f64 * v.len() as f64) as usize];
    Ok(((0..k).map(|i| (at(&a, i) - at(&b, i)).powi(2)).sum::<f64>() / k as f64).sqrt())
}
