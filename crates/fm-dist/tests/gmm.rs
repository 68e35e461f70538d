//! The Gaussian mixture: moments, density, validation, reproducibility.

use approx::assert_relative_eq;
use fm_dist::{GaussianMixture, StandardNormal, Target};
use ndarray::{array, Array2, Axis};
use rand::{rngs::StdRng, SeedableRng};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Mean and covariance of a mixture: Σ w μ and Σ w (Σ_k + μ_k μ_kᵀ) − m mᵀ.
fn mixture_moments(g: &GaussianMixture) -> (Vec<f64>, Array2<f64>) {
    let d = g.dim();
    let mut mean = vec![0.0; d];
    let mut second = Array2::<f64>::zeros((d, d));
    for (k, &w) in g.weights().iter().enumerate() {
        let mu = g.means().row(k).to_owned();
        for i in 0..d {
            mean[i] += w * mu[i];
            for j in 0..d {
                second[[i, j]] += w * (g.covariances()[k][[i, j]] + mu[i] * mu[j]);
            }
        }
    }
    let cov = Array2::from_shape_fn((d, d), |(i, j)| second[[i, j]] - mean[i] * mean[j]);
    (mean, cov)
}

#[test]
fn sample_moments_match_the_parameters() {
    let g = GaussianMixture::seed();
    let n = 200_000;
    let x = g.sample(n, &mut rng(1));
    let (mean, cov) = mixture_moments(&g);
    let emp_mean = x.mean_axis(Axis(0)).unwrap();
    for i in 0..2 {
        // Five standard errors of the sample mean.
        let tol = 5.0 * (cov[[i, i]] / n as f64).sqrt();
        assert!((emp_mean[i] - mean[i]).abs() < tol, "mean[{i}] {} vs {} (tol {tol})", emp_mean[i], mean[i]);
    }
    let centred = &x - &emp_mean;
    let emp_cov = centred.t().dot(&centred) / (n as f64 - 1.0);
    for i in 0..2 {
        for j in 0..2 {
            // Var of a sample covariance entry ≈ (σ_ii σ_jj + σ_ij²)/n for near-Gaussian data;
            // the mixture has heavier fourth moments, so allow a factor 2 on top of 5 σ.
            let tol = 10.0 * ((cov[[i, i]] * cov[[j, j]] + cov[[i, j]].powi(2)) / n as f64).sqrt();
            assert!((emp_cov[[i, j]] - cov[[i, j]]).abs() < tol, "cov[{i},{j}] {} vs {} (tol {tol})", emp_cov[[i, j]], cov[[i, j]]);
        }
    }
}

#[test]
fn density_integrates_to_one() {
    let g = GaussianMixture::seed();
    // Midpoint rule on [-10, 12] × [-9, 10]: the mass outside is < 1e-12.
    let (n, x0, x1, y0, y1) = (600usize, -10.0, 12.0, -9.0, 10.0);
    let (dx, dy) = ((x1 - x0) / n as f64, (y1 - y0) / n as f64);
    let grid = Array2::from_shape_fn((n * n, 2), |(k, c)| if c == 0 { x0 + ((k % n) as f64 + 0.5) * dx } else { y0 + ((k / n) as f64 + 0.5) * dy });
    let mass = g.pdf(grid.view()).unwrap().sum() * dx * dy;
    assert_relative_eq!(mass, 1.0, epsilon = 1e-4);
}

#[test]
fn one_component_log_prob_matches_statrs() {
    let mean = array![[0.5, -1.5, 2.0]];
    let cov = array![[1.0, 0.3, 0.1], [0.3, 0.8, -0.2], [0.1, -0.2, 0.5]];
    let g = GaussianMixture::new(vec![1.0], mean.clone(), vec![cov.clone()]).unwrap();
    let mvn = statrs::distribution::MultivariateNormal::new(mean.iter().cloned().collect(), cov.iter().cloned().collect()).unwrap();
    let x = StandardNormal::new(3).unwrap().sample(50, &mut rng(2));
    let ours = g.log_prob(x.view()).unwrap();
    for (row, lp) in x.axis_iter(Axis(0)).zip(ours.iter()) {
        let reference = statrs::distribution::Continuous::ln_pdf(&mvn, &nalgebra::DVector::from_vec(row.to_vec()));
        assert_relative_eq!(*lp, reference, max_relative = 1e-10);
    }
}

#[test]
fn log_prob_is_finite_far_in_the_tails() {
    let g = GaussianMixture::seed();
    let lp = g.log_prob(array![[1e3, -1e3]].view()).unwrap();
    assert!(lp[0].is_finite() && lp[0] < -1e5);
}

#[test]
fn standard_normal_log_prob() {
    let n = StandardNormal::new(2).unwrap();
    let lp = n.log_prob(array![[0.0, 0.0], [1.0, 1.0]].view()).unwrap();
    let c = -(2.0 * std::f64::consts::PI).ln();
    assert_relative_eq!(lp[0], c, epsilon = 1e-12);
    assert_relative_eq!(lp[1], c - 1.0, epsilon = 1e-12);
}

#[test]
fn sampling_is_reproducible_from_a_seed() {
    let g = GaussianMixture::seed();
    assert_eq!(g.sample(100, &mut rng(7)), g.sample(100, &mut rng(7)));
    assert_ne!(g.sample(100, &mut rng(7)), g.sample(100, &mut rng(8)));
}

#[test]
fn wrong_dimension_is_an_error() {
    let g = GaussianMixture::seed();
    let err = g.log_prob(Array2::zeros((3, 5)).view()).unwrap_err();
    assert!(err.to_string().contains("expected 2 columns, got 5"), "{err}");
}

fn err_of(weights: Vec<f64>, means: Array2<f64>, covs: Vec<Array2<f64>>) -> String {
    GaussianMixture::new(weights, means, covs).unwrap_err().to_string()
}

#[test]
fn constructor_errors_name_the_problem() {
    let eye = || array![[1.0, 0.0], [0.0, 1.0]];
    let means = || array![[0.0, 0.0], [1.0, 1.0]];
    assert!(err_of(vec![0.5, 0.6], means(), vec![eye(), eye()]).contains("weights sum to 1.1"));
    assert!(err_of(vec![-0.5, 1.5], means(), vec![eye(), eye()]).contains("component 0: weight -0.5"));
    assert!(err_of(vec![f64::NAN, 1.0], means(), vec![eye(), eye()]).contains("component 0: weight NaN"));
    assert!(err_of(vec![0.5, 0.5], means(), vec![eye(), array![[1.0, 0.5], [0.4, 1.0]]]).contains("component 1: covariance is not symmetric"));
    assert!(err_of(vec![0.5, 0.5], means(), vec![eye(), array![[1.0, 2.0], [2.0, 1.0]]]).contains("component 1: covariance is not positive definite"));
    assert!(err_of(vec![0.5, 0.5], means(), vec![eye(), array![[1.0]]]).contains("component 1: covariance is (1, 1), expected 2x2"));
    assert!(err_of(vec![1.0], means(), vec![eye(), eye()]).contains("one entry per component"));
    assert!(err_of(vec![], Array2::zeros((0, 2)), vec![]).contains("at least one component"));
    assert!(err_of(vec![0.5, 0.5], array![[0.0, f64::INFINITY], [1.0, 1.0]], vec![eye(), eye()]).contains("component 0: mean has a non-finite entry"));
}

#[test]
fn high_dimensional_mixture_samples_and_evaluates() {
    let d = 64;
    let means = Array2::from_shape_fn((4, d), |(k, j)| (k as f64) * if j % 2 == 0 { 1.0 } else { -1.0 });
    let covs = (0..4)
        .map(|k| {
            Array2::from_shape_fn((d, d), |(i, j)| {
                if i == j {
                    1.0 + 0.1 * k as f64
                } else if i.abs_diff(j) == 1 {
                    0.2
                } else {
                    0.0
                }
            })
        })
        .collect();
    let g = GaussianMixture::new(vec![0.25; 4], means, covs).unwrap();
    let x = g.sample(500, &mut rng(3));
    let lp = g.log_prob(x.view()).unwrap();
    assert!(lp.iter().all(|v| v.is_finite()));
}
