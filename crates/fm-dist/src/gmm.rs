//! Gaussian mixtures with full covariances, in any dimension.

use crate::linalg::{cholesky, solve_lower, solve_lower_transpose};
use crate::{check_dim, Error, Result, Target};
use ndarray::{array, Array1, Array2, ArrayView2, Axis};
use rand::{Rng, RngCore};
use rand_distr::StandardNormal;

const LN_2PI: f64 = 1.837_877_066_409_345_5;
/// How far the weights may sum from 1 before the mixture is rejected.
pub const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;

/// A validated mixture `Σ_k w_k N(μ_k, Σ_k)`.
///
/// Sampling goes through each component's Cholesky factor; densities are evaluated
/// with log-sum-exp, so far tails give finite log-densities rather than `-inf`.
#[derive(Debug, Clone)]
pub struct GaussianMixture {
    weights: Vec<f64>,
    means: Array2<f64>,
    covs: Vec<Array2<f64>>,
    chol: Vec<Array2<f64>>,
    /// `ln w_k - ½ ln det Σ_k - D/2 ln 2π` for each component.
    log_norm: Vec<f64>,
    cum_weights: Vec<f64>,
    /// Display name given by the user (e.g. from a spec file).
    name: Option<String>,
}

impl GaussianMixture {
    /// Builds a mixture from weights (summing to 1), a `K × D` array of means and
    /// `K` covariance matrices of size `D × D` (symmetric positive definite).
    ///
    /// # Errors
    /// [`Error::Invalid`] for `K` or `D` of 0, counts that disagree, a negative or non-finite
    /// weight, weights whose sum is off 1 by more than [`WEIGHT_SUM_TOLERANCE`], a non-finite
    /// mean, or a covariance of the wrong shape or not symmetric positive definite.
    pub fn new(weights: Vec<f64>, means: Array2<f64>, covs: Vec<Array2<f64>>) -> Result<Self> {
        let (k, d) = means.dim();
        if k == 0 || d == 0 {
            return Err(Error::Invalid(format!("mixture needs at least one component and one dimension (got {k} × {d} means)")));
        }
        if weights.len() != k || covs.len() != k {
            return Err(Error::Invalid(format!(
                "{} weights, {} means and {} covariances: all three must have one entry per component",
                weights.len(),
                k,
                covs.len()
            )));
        }
        for (i, &w) in weights.iter().enumerate() {
            if !w.is_finite() || w < 0.0 {
                return Err(Error::Invalid(format!("component {i}: weight {w} is not a finite non-negative number")));
            }
        }
        let sum: f64 = weights.iter().sum();
        if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
            return Err(Error::Invalid(format!("weights sum to {sum}, not 1")));
        }
        let mut chol = Vec::with_capacity(k);
        let mut log_norm = Vec::with_capacity(k);
        for (i, cov) in covs.iter().enumerate() {
            if let Some(bad) = means.row(i).iter().find(|v| !v.is_finite()) {
                return Err(Error::Invalid(format!("component {i}: mean has a non-finite entry {bad}")));
            }
            if cov.dim() != (d, d) {
                return Err(Error::Invalid(format!("component {i}: covariance is {:?}, expected {d}x{d}", cov.dim())));
            }
            let l = cholesky(cov.view()).map_err(|e| match e {
                Error::Invalid(m) => Error::Invalid(format!("component {i}: {m}")),
                e => e,
            })?;
            let half_log_det: f64 = l.diag().iter().map(|v| v.ln()).sum();
            log_norm.push((weights[i] / sum).ln() - half_log_det - 0.5 * d as f64 * LN_2PI);
            chol.push(l);
        }
        let weights: Vec<f64> = weights.iter().map(|w| w / sum).collect();
        let cum_weights = weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w;
                Some(*acc)
            })
            .collect();
        Ok(Self { weights, means, covs, chol, log_norm, cum_weights, name: None })
    }

    /// The seed experiment's target: 3 components in 2-D, weights (0.3, 0.5, 0.2).
    pub fn seed() -> Self {
        Self::new(
            vec![0.3, 0.5, 0.2],
            array![[-2.0, -1.0], [1.0, 3.0], [4.0, -2.0]],
            vec![array![[0.5, 0.1], [0.1, 0.4]], array![[0.6, -0.2], [-0.2, 0.5]], array![[0.4, 0.0], [0.0, 0.6]]],
        )
        .expect("the seed mixture is valid")
    }

    /// The same mixture, shown under `name` (in titles and reports).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The number of components `K`.
    pub fn n_components(&self) -> usize {
        self.weights.len()
    }
    /// The `K` weights, divided by their sum (so they sum to 1 up to rounding).
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
    /// The means, `[K, D]`, one row per component.
    pub fn means(&self) -> ArrayView2<'_, f64> {
        self.means.view()
    }
    /// The `K` covariance matrices, each `[D, D]`, as given to [`GaussianMixture::new`].
    pub fn covariances(&self) -> &[Array2<f64>] {
        &self.covs
    }

    /// Each coordinate's standard deviation under the mixture: `√(Σ_k w_k (Σ_k,jj + μ_kj²) − m_j²)`
    /// with `m = Σ_k w_k μ_k` (the law of total variance).
    pub fn std_dev(&self) -> Vec<f64> {
        (0..self.means.ncols())
            .map(|j| {
                let mean: f64 = self.weights.iter().zip(self.means.column(j)).map(|(w, m)| w * m).sum();
                let second: f64 = self.weights.iter().zip(self.means.column(j)).zip(&self.covs).map(|((w, m), c)| w * (c[[j, j]] + m * m)).sum();
                (second - mean * mean).max(0.0).sqrt()
            })
            .collect()
    }

    /// `ln w_k + ln N(x | μ_k, Σ_k)` for every row of `x` and component `k` (`n × K`).
    ///
    /// # Errors
    /// [`Error::Dim`] when `x` does not have `D` columns.
    pub fn component_log_joint(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        check_dim(&x, self.dim())?;
        let (n, d) = x.dim();
        let mut out = Array2::<f64>::zeros((n, self.n_components()));
        let mut diff = vec![0.0; d];
        let mut y = vec![0.0; d];
        for (row, mut out_row) in x.axis_iter(Axis(0)).zip(out.axis_iter_mut(Axis(0))) {
            for k in 0..self.n_components() {
                for j in 0..d {
                    diff[j] = row[j] - self.means[[k, j]];
                }
                solve_lower(self.chol[k].view(), ndarray::ArrayView1::from(&diff[..]), &mut y);
                let maha: f64 = y.iter().map(|v| v * v).sum();
                out_row[k] = self.log_norm[k] - 0.5 * maha;
            }
        }
        Ok(out)
    }

    /// Density (not log) of each row of `x`.
    ///
    /// # Errors
    /// [`Error::Dim`] when `x` does not have `D` columns.
    pub fn pdf(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        Ok(self.log_prob(x)?.mapv(f64::exp))
    }
}

/// `ln Σ exp(v)`, stable, and `-inf` for an empty or all `-inf` slice.
pub fn log_sum_exp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = v.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.map(|x| (x - m).exp()).sum::<f64>().ln()
}

impl Target for GaussianMixture {
    fn name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("{}-component Gaussian mixture in {}-D", self.n_components(), self.dim()),
        }
    }
    fn dim(&self) -> usize {
        self.means.ncols()
    }
    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
        self.sample_conditioned(n, rng).points
    }
    /// Labelled by the component each point was drawn from.
    fn sample_conditioned(&self, n: usize, rng: &mut dyn RngCore) -> crate::Conditioned {
        let d = self.dim();
        let mut out = Array2::<f64>::zeros((n, d));
        let mut labels = Vec::with_capacity(n);
        let mut z = vec![0.0; d];
        for mut row in out.axis_iter_mut(Axis(0)) {
            let u: f64 = rng.random();
            // Rounding may leave the last cumulative weight a hair under 1.
            let k = self.cum_weights.iter().position(|&c| u < c).unwrap_or(self.n_components() - 1);
            labels.push(k);
            for zj in z.iter_mut() {
                *zj = rng.sample(StandardNormal);
            }
            let l = &self.chol[k];
            for i in 0..d {
                let mut s = self.means[[k, i]];
                for j in 0..=i {
                    s += l[[i, j]] * z[j];
                }
                row[i] = s;
            }
        }
        crate::Conditioned { points: out, labels: Some(labels), values: None }
    }
    fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        let joint = self.component_log_joint(x)?;
        Ok(joint.axis_iter(Axis(0)).map(|r| log_sum_exp(r.iter().copied())).collect())
    }
    fn as_mixture(&self) -> Option<&GaussianMixture> {
        Some(self)
    }
    fn as_gaussian(&self) -> Option<(Array1<f64>, Array2<f64>)> {
        (self.n_components() == 1).then(|| (self.means.row(0).to_owned(), self.covs[0].clone()))
    }
    /// `∇ log p(x) = Σ_k r_k(x) · (−Σ_k⁻¹ (x − μ_k))` with responsibilities `r_k(x)`
    /// (the softmax of [`GaussianMixture::component_log_joint`], so far tails stay finite).
    fn score(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        let joint = self.component_log_joint(x)?;
        let (n, d) = x.dim();
        let mut out = Array2::<f64>::zeros((n, d));
        let (mut diff, mut y, mut z) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        for ((row, logj), mut out_row) in x.axis_iter(Axis(0)).zip(joint.axis_iter(Axis(0))).zip(out.axis_iter_mut(Axis(0))) {
            let lse = log_sum_exp(logj.iter().copied());
            for k in 0..self.n_components() {
                let r = (logj[k] - lse).exp();
                if r == 0.0 {
                    continue;
                }
                for j in 0..d {
                    diff[j] = row[j] - self.means[[k, j]];
                }
                // Σ⁻¹ diff = L⁻ᵀ L⁻¹ diff.
                solve_lower(self.chol[k].view(), ndarray::ArrayView1::from(&diff[..]), &mut y);
                solve_lower_transpose(self.chol[k].view(), &y, &mut z);
                for j in 0..d {
                    out_row[j] -= r * z[j];
                }
            }
        }
        Ok(out)
    }
}
