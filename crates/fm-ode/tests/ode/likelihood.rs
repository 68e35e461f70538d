//! Log-likelihoods through the divergence-augmented ODE, against closed-form densities.

use crate::common::max_abs;
use fm_ode::{log_likelihood, standard_normal_log_prob, Divergence, Error, LikelihoodOptions, Method, Probe, TimeGrid, AUTO_EXACT_MAX_DIM};
use tch::{Device, Kind, Tensor};

type Mat = [[f64; 3]; 3];

/// A fixed, non-symmetric, non-normal generator with trace 0.1.
const A: Mat = [[-0.5, 1.0, 0.2], [-0.3, 0.1, 0.4], [0.2, -0.6, 0.5]];
const B: [f64; 3] = [0.5, -1.0, 0.25];

fn matmul(a: &Mat, b: &Mat) -> Mat {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

fn matvec(a: &Mat, x: &[f64]) -> [f64; 3] {
    [0, 1, 2].map(|i| (0..3).map(|k| a[i][k] * x[k]).sum())
}

/// `Σ_k s^k M^k / (k + offset)!` for `offset` 0 (expm(sM)) or 1 (φ₁(sM)); 40 terms leave
/// `‖M‖^40/40!` < 1e-40 for these unit-sized matrices.
fn series(m: &Mat, s: f64, offset: u32) -> Mat {
    let mut term = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let mut fact = (1..=offset).product::<u32>() as f64;
    let mut sum = term.map(|r| r.map(|v| v / fact));
    for k in 1..40u32 {
        term = matmul(&term, &m.map(|r| r.map(|v| v * s)));
        fact *= (k + offset) as f64;
        for i in 0..3 {
            for j in 0..3 {
                sum[i][j] += term[i][j] / fact;
            }
        }
    }
    sum
}

/// The affine field `v(x, t) = A x + b` on rows.
fn affine(x: &Tensor, _t: f64) -> fm_ode::Result<Tensor> {
    let at = Tensor::from_slice(&A.concat()).reshape([3, 3]).tr().to_kind(x.kind());
    Ok(x.f_matmul(&at)?.f_add(&Tensor::from_slice(&B).to_kind(x.kind()))?)
}

/// Closed form under the affine flow: `x_1 = e^A x_0 + φ₁(A) b`, so
/// `x_0 = e^{−A}(x_1 − φ₁(A) b)` and, since `det e^A = e^{tr A}`,
/// `log q_1(x_1) = log N(x_0; 0, I) − tr A`.
fn affine_log_q1(x1: &[f64]) -> f64 {
    let c = matvec(&series(&A, 1.0, 1), &B);
    let diff = [x1[0] - c[0], x1[1] - c[1], x1[2] - c[2]];
    let x0 = matvec(&series(&A, -1.0, 0), &diff);
    let trace = A[0][0] + A[1][1] + A[2][2];
    -0.5 * x0.iter().map(|v| v * v).sum::<f64>() - 1.5 * (2.0 * std::f64::consts::PI).ln() - trace
}

/// Deterministic standard-normal-ish points (Box–Muller over a SplitMix64 stream), scaled.
fn points(n: usize, d: usize, seed: u64, scale: f64) -> Tensor {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let data: Vec<f64> = (0..n * d)
        .map(|_| {
            let (u1, u2) = (1.0 - next(), next());
            scale * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect();
    Tensor::from_slice(&data).reshape([n as i64, d as i64])
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    let t = t.to_kind(Kind::Double).contiguous();
    let (n, d) = (t.size()[0], t.size()[1]);
    let flat = Vec::<f64>::try_from(t.reshape([-1])).unwrap();
    (0..n as usize).map(|i| flat[i * d as usize..(i + 1) * d as usize].to_vec()).collect()
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous()).unwrap()
}

fn backwards(steps: usize) -> TimeGrid {
    TimeGrid::uniform(1.0, 0.0, steps).unwrap()
}

fn exact_opts() -> LikelihoodOptions {
    LikelihoodOptions { divergence: Divergence::Exact, ..Default::default() }
}

#[test]
fn affine_flow_log_density_matches_the_closed_form() {
    let x1 = points(300, 3, 1, 1.5);
    let expected: Vec<f64> = rows(&x1).iter().map(|r| affine_log_q1(r)).collect();
    let check = |method: Method, opts: &LikelihoodOptions, steps: usize, tol: f64| {
        let lik = log_likelihood(&affine, &x1, &backwards(steps), method, opts).unwrap();
        let got = to_vec(&lik.log_prob(standard_normal_log_prob).unwrap());
        let worst = got.iter().zip(&expected).map(|(g, e)| (g - e).abs()).fold(0.0, f64::max);
        eprintln!("affine {method}: max |error| {worst:.2e}, {} NFE", lik.nfe);
        assert!(worst < tol, "{method}: max error {worst:e}");
        lik
    };
    let lik = check(Method::Rk4, &exact_opts(), 20, 1e-4);
    assert_eq!(lik.nfe, 20 * 4);
    assert_eq!(lik.backward_passes, 20 * 4 * 3);
    assert_eq!(lik.x0.size(), [300, 3]);
    assert_eq!(lik.delta_log_p.size(), [300]);
    let tight = LikelihoodOptions { adaptive: fm_ode::AdaptiveOptions { rtol: 1e-8, atol: 1e-8, ..Default::default() }, ..exact_opts() };
    check(Method::Dopri5, &tight, 1, 1e-6);
}

/// `v = −(1+t) x³` per coordinate: `x_t = x_0 / sqrt(1 + 2 x_0² (t + t²/2))`, so
/// `∂x_1/∂x_0 = (1 + 3 x_0²)^{−3/2}`, `x_0 = x_1 / sqrt(1 − 3 x_1²)` and
/// `log q_1(x_1) = log N(x_0) + 1.5 Σ ln(1 + 3 x_0²)`.
#[test]
fn nonlinear_time_dependent_flow_matches_the_closed_form() {
    let field = |x: &Tensor, t: f64| -> fm_ode::Result<Tensor> { Ok(x.f_pow_tensor_scalar(3)?.f_mul_scalar(-(1.0 + t))?) };
    let x1 = points(200, 2, 7, 1.0).tanh() * 0.5; // |x1| < 0.5 keeps 1 − 3 x1² > 0
    let expected: Vec<f64> = rows(&x1)
        .iter()
        .map(|r| {
            r.iter()
                .map(|&y| {
                    let x0 = y / (1.0 - 3.0 * y * y).sqrt();
                    -0.5 * x0 * x0 - 0.5 * (2.0 * std::f64::consts::PI).ln() + 1.5 * (1.0 + 3.0 * x0 * x0).ln()
                })
                .sum()
        })
        .collect();
    for (method, steps, tol) in [(Method::Rk4, 50, 1e-4), (Method::Dopri5, 1, 1e-4)] {
        let lik = log_likelihood(&field, &x1, &backwards(steps), method, &LikelihoodOptions::default()).unwrap();
        assert_eq!(lik.divergence, Divergence::Exact, "Auto in 2-D");
        let got = to_vec(&lik.log_prob(standard_normal_log_prob).unwrap());
        let worst = got.iter().zip(&expected).map(|(g, e)| (g - e).abs()).fold(0.0, f64::max);
        eprintln!("cubic {method}: max |error| {worst:.2e}, {} NFE", lik.nfe);
        assert!(worst < tol, "{method}: max error {worst:e}");
    }
}

/// Sample mean, variance and fourth central moment.
fn moments(e: &[f64]) -> (f64, f64, f64) {
    let n = e.len() as f64;
    let mean = e.iter().sum::<f64>() / n;
    let var = e.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let m4 = e.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / n;
    (mean, var, m4)
}

/// For the affine field the Jacobian is `A` everywhere, so with probes fixed over time each
/// point's Hutchinson error is exactly `−(mean_k ε_kᵀ A ε_k − tr A)` (the grid runs from 1 to 0):
/// mean 0 and variance `σ²/K` with `σ² = 2 Σ_{i≠j} S_ij²` (Rademacher) or `2 Σ_{i,j} S_ij²`
/// (Gaussian), `S = (A + Aᵀ)/2`. The points' errors are independent, so the sample mean over `n`
/// points lies within 4 standard errors `sqrt(σ²/(K n))`, and the sample variance within 4 of
/// its own standard errors `sqrt((m₄ − s⁴)/n)`.
#[test]
fn hutchinson_error_has_the_derived_mean_and_variance_on_the_affine_flow() {
    let n = 4000;
    let x1 = points(n, 3, 3, 1.0);
    let trace = A[0][0] + A[1][1] + A[2][2];
    let s = |i: usize, j: usize| (A[i][j] + A[j][i]) / 2.0;
    let off: f64 = (0..3).flat_map(|i| (0..3).map(move |j| (i, j))).filter(|(i, j)| i != j).map(|(i, j)| s(i, j).powi(2)).sum();
    let diag: f64 = (0..3).map(|i| s(i, i).powi(2)).sum();
    for kind in Probe::ALL {
        let sigma2 = match kind {
            Probe::Rademacher => 2.0 * off,
            Probe::Gaussian => 2.0 * (off + diag),
        };
        for probes in [1, 4] {
            let opts = LikelihoodOptions { divergence: Divergence::Hutchinson { probes, kind }, seed: 11, ..Default::default() };
            let lik = log_likelihood(&affine, &x1, &backwards(4), Method::Rk4, &opts).unwrap();
            assert_eq!(lik.backward_passes, lik.nfe * probes);
            let errors: Vec<f64> = to_vec(&lik.delta_log_p).iter().map(|d| d + trace).collect();
            let (mean, var, m4) = moments(&errors);
            let expected_var = sigma2 / probes as f64;
            let se_mean = (expected_var / n as f64).sqrt();
            let se_var = ((m4 - var * var) / n as f64).sqrt();
            eprintln!("{kind} K={probes}: mean {mean:.4} (SE {se_mean:.4}), var {var:.4} vs {expected_var:.4} (SE {se_var:.4})");
            assert!(mean.abs() < 4.0 * se_mean, "{kind} K={probes}: mean error {mean} > 4 SE ({se_mean})");
            assert!((var - expected_var).abs() < 4.0 * se_var, "{kind} K={probes}: variance {var} vs {expected_var} (SE {se_var})");
        }
    }
}

/// A non-linear field with a full Jacobian: `v = U tanh(W x + t c) − x/2`.
fn mlp_like(x: &Tensor, t: f64) -> fm_ode::Result<Tensor> {
    let w = points(8, 3, 21, 0.8).to_kind(x.kind());
    let u = points(3, 8, 22, 0.5).to_kind(x.kind());
    let c = points(1, 8, 23, 1.0).to_kind(x.kind());
    let h = x.f_matmul(&w.f_tr()?)?.f_add(&c.f_mul_scalar(t)?)?.f_tanh()?;
    Ok(h.f_matmul(&u.f_tr()?)?.f_sub(&x.f_mul_scalar(0.5)?)?)
}

/// On a non-linear field, Hutchinson's per-point deviations from the exact divergence integral
/// average to zero: the x-trajectory is the same (the state does not feed back from the
/// log-density), so each deviation is an RK4-weighted sum of zero-mean terms, independent across
/// points; the mean lies within 4 standard errors estimated from the deviations' spread.
#[test]
fn hutchinson_agrees_with_the_exact_divergence_within_its_standard_error() {
    let n = 2000;
    let x1 = points(n, 3, 5, 1.0);
    let grid = backwards(10);
    let exact = log_likelihood(&mlp_like, &x1, &grid, Method::Rk4, &exact_opts()).unwrap();
    let exact = to_vec(&exact.delta_log_p);
    for kind in Probe::ALL {
        let opts = LikelihoodOptions { divergence: Divergence::Hutchinson { probes: 2, kind }, seed: 3, ..Default::default() };
        let hutch = log_likelihood(&mlp_like, &x1, &grid, Method::Rk4, &opts).unwrap();
        let dev: Vec<f64> = to_vec(&hutch.delta_log_p).iter().zip(&exact).map(|(h, e)| h - e).collect();
        let (mean, var, _) = moments(&dev);
        let se = (var / n as f64).sqrt();
        eprintln!("{kind}: mean deviation {mean:.4}, SE {se:.4}, per-point sd {:.4}", var.sqrt());
        assert!(var > 1e-4, "{kind}: the estimator should not be exact here");
        assert!(mean.abs() < 4.0 * se, "{kind}: mean deviation {mean} > 4 SE ({se})");
    }
}

#[test]
fn probes_are_seeded_and_independent_of_the_chunking() {
    let x1 = points(50, 3, 9, 1.0);
    let run = |chunk_size: usize, seed: u64, divergence: Divergence| {
        let opts = LikelihoodOptions { divergence, chunk_size, seed, ..Default::default() };
        to_vec(&log_likelihood(&mlp_like, &x1, &backwards(5), Method::Heun, &opts).unwrap().delta_log_p)
    };
    let max_diff = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    for divergence in [Divergence::Exact, Divergence::Hutchinson { probes: 3, kind: Probe::Gaussian }] {
        let whole = run(1024, 1, divergence);
        assert!(max_diff(&whole, &run(7, 1, divergence)) < 1e-12, "{divergence}: chunking changed the result");
        assert_eq!(whole, run(1024, 1, divergence), "{divergence}: not reproducible");
    }
    let h = Divergence::Hutchinson { probes: 1, kind: Probe::Rademacher };
    assert!(max_diff(&run(1024, 1, h), &run(1024, 2, h)) > 1e-3, "the seed should change the probes");
}

#[test]
fn auto_divergence_is_exact_in_low_dimension_and_hutchinson_above() {
    assert_eq!(Divergence::Auto.resolve(2), Divergence::Exact);
    assert_eq!(Divergence::Auto.resolve(AUTO_EXACT_MAX_DIM), Divergence::Exact);
    assert_eq!(Divergence::Auto.resolve(AUTO_EXACT_MAX_DIM + 1), Divergence::Hutchinson { probes: 1, kind: Probe::Rademacher });
    let d = AUTO_EXACT_MAX_DIM as i64 + 1;
    let x = Tensor::ones([5, d], (Kind::Double, Device::Cpu));
    let lik = log_likelihood(&|x: &Tensor, _: f64| Ok(x.f_mul_scalar(-0.3)?), &x, &backwards(2), Method::Euler, &LikelihoodOptions::default()).unwrap();
    assert_eq!(lik.divergence, Divergence::Hutchinson { probes: 1, kind: Probe::Rademacher });
    // v = −0.3 x: every probe sees εᵀ(−0.3 I)ε = −0.3 d exactly (Rademacher ε² = 1).
    assert!(max_abs(&(lik.delta_log_p - 0.3 * d as f64)) < 1e-12);
}

/// 10,000 points in chunks of 1024: NFE are the chunks' sum; the results carry no graph.
#[test]
fn many_points_are_processed_in_chunks() {
    let x1 = points(10_000, 2, 4, 1.0).to_kind(Kind::Float);
    let field = |x: &Tensor, t: f64| -> fm_ode::Result<Tensor> { Ok(x.f_mul_scalar(-t)?.f_tanh()?) };
    let lik = log_likelihood(&field, &x1, &backwards(4), Method::Midpoint, &LikelihoodOptions::default()).unwrap();
    assert_eq!(lik.nfe, 10 * 4 * 2);
    assert_eq!(lik.backward_passes, 10 * 4 * 2 * 2);
    assert_eq!(lik.x0.size(), [10_000, 2]);
    assert_eq!(lik.delta_log_p.size(), [10_000]);
    assert_eq!(lik.delta_log_p.kind(), Kind::Float);
    assert!(!lik.x0.requires_grad() && !lik.delta_log_p.requires_grad());
    assert!(bool::try_from(lik.delta_log_p.isfinite().all()).unwrap());
}

/// The divergence needs autograd whatever the caller's mode, and the caller's mode is restored.
#[test]
fn works_under_no_grad_and_restores_the_gradient_mode() {
    let x1 = points(20, 3, 2, 1.0);
    let inside = tch::no_grad(|| log_likelihood(&affine, &x1, &backwards(4), Method::Rk4, &exact_opts()).unwrap());
    let outside = log_likelihood(&affine, &x1, &backwards(4), Method::Rk4, &exact_opts()).unwrap();
    assert_eq!(max_abs(&(inside.delta_log_p - outside.delta_log_p)), 0.0);
    let w = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    assert!((&w * 2.0).requires_grad(), "gradient mode left off");
    tch::no_grad(|| {
        log_likelihood(&affine, &x1, &backwards(2), Method::Euler, &exact_opts()).unwrap();
        assert!(!(&w * 2.0).requires_grad(), "gradient mode left on");
    });
}

#[test]
fn standard_normal_log_prob_is_the_closed_form() {
    let x = Tensor::from_slice(&[0.0f64, 0.0, 1.0, 2.0]).reshape([2, 2]);
    let lp = to_vec(&standard_normal_log_prob(&x).unwrap());
    let ln2pi = (2.0 * std::f64::consts::PI).ln();
    assert!((lp[0] + ln2pi).abs() < 1e-12 && (lp[1] + 2.5 + ln2pi).abs() < 1e-12, "{lp:?}");
    assert!(standard_normal_log_prob(&Tensor::zeros([3], (Kind::Float, Device::Cpu))).is_err());
}

#[test]
fn any_source_density_can_be_added() {
    let x1 = points(10, 3, 8, 1.0);
    let lik = log_likelihood(&affine, &x1, &backwards(3), Method::Rk4, &exact_opts()).unwrap();
    let shifted = lik.log_prob(|x: &Tensor| Ok(standard_normal_log_prob(x)?.f_add_scalar(1.0)?)).unwrap();
    let standard = lik.log_prob(standard_normal_log_prob).unwrap();
    assert!(max_abs(&(shifted - standard - 1.0)) < 1e-12);
    let wrong = lik.log_prob(|x: &Tensor| Ok(x.f_sum(None::<Kind>)?)).unwrap_err();
    assert!(wrong.to_string().contains("source log-density returned shape"), "{wrong}");
}

#[test]
fn bad_inputs_are_errors() {
    let grid = backwards(2);
    let x = points(4, 3, 1, 1.0);
    let opts = LikelihoodOptions::default();
    let invalid = |r: fm_ode::Result<fm_ode::Likelihood>| matches!(r, Err(Error::Invalid(_)));
    assert!(invalid(log_likelihood(&affine, &Tensor::zeros([4], (Kind::Double, Device::Cpu)), &grid, Method::Rk4, &opts)));
    assert!(invalid(log_likelihood(&affine, &Tensor::zeros([4, 3], (Kind::Int64, Device::Cpu)), &grid, Method::Rk4, &opts)));
    assert!(invalid(log_likelihood(&affine, &x, &grid, Method::Rk4, &LikelihoodOptions { chunk_size: 0, ..opts })));
    let no_probes = LikelihoodOptions { divergence: Divergence::Hutchinson { probes: 0, kind: Probe::Rademacher }, ..opts };
    assert!(invalid(log_likelihood(&affine, &x, &grid, Method::Rk4, &no_probes)));
    // A field with no autograd path from x (a constant, or computed under no_grad).
    let constant = |x: &Tensor, _: f64| -> fm_ode::Result<Tensor> { Ok(x.f_ones_like()?) };
    let err = log_likelihood(&constant, &x, &grid, Method::Rk4, &opts).unwrap_err();
    assert!(err.to_string().contains("no autograd path"), "{err}");
    let detached = |x: &Tensor, t: f64| -> fm_ode::Result<Tensor> { tch::no_grad(|| affine(x, t)) };
    assert!(log_likelihood(&detached, &x, &grid, Method::Rk4, &opts).is_err());
    let wrong_shape = |x: &Tensor, _: f64| -> fm_ode::Result<Tensor> { Ok(x.f_sum_dim_intlist(1i64, true, None::<Kind>)?) };
    let err = log_likelihood(&wrong_shape, &x, &grid, Method::Rk4, &opts).unwrap_err();
    assert!(err.to_string().contains("returned shape [4, 1]"), "{err}");
    // No points: empty results.
    let empty = log_likelihood(&affine, &points(0, 3, 1, 1.0), &grid, Method::Rk4, &opts).unwrap();
    assert_eq!((empty.x0.size(), empty.delta_log_p.size(), empty.nfe), (vec![0, 3], vec![0], 0));
}

#[test]
fn divergence_and_probe_names_round_trip() {
    for d in [
        Divergence::Auto,
        Divergence::Exact,
        Divergence::Hutchinson { probes: 1, kind: Probe::Rademacher },
        Divergence::Hutchinson { probes: 8, kind: Probe::Gaussian },
    ] {
        assert_eq!(d.to_string().parse::<Divergence>().unwrap(), d);
    }
    assert_eq!("Hutchinson".parse::<Divergence>().unwrap(), Divergence::Hutchinson { probes: 1, kind: Probe::Rademacher });
    for bad in ["hutchinson:0", "hutchinson:x", "hutchinson:2:uniform", "exact:1", "trace"] {
        assert!(bad.parse::<Divergence>().is_err(), "{bad}");
    }
}
