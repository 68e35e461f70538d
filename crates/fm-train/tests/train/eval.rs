//! Model log-likelihoods and KL estimates, on hand-built models whose flow is known in closed form.

use fm_dist::{GaussianMixture, Moons, StandardNormal, Target};
use fm_model::{Activation, Mlp, MlpConfig};
use fm_ode::{log_likelihood, standard_normal_log_prob, Divergence, Method, Probe, TimeGrid};
use fm_train::{array_to_tensor, kl_estimate, model_likelihood, model_log_prob, tensor_to_array, KlEstimate, LikelihoodConfig};
use ndarray::{array, Array1, Array2};
use rand::{rngs::StdRng, SeedableRng};
use std::f64::consts::PI;
use tch::{Device, Tensor};

/// The generator `A = diag(A_DIAG)` and offset `B` of the linear field `v(x, t) = A x + b`.
const A_DIAG: [f64; 2] = [0.3, -0.5];
const B: [f64; 2] = [1.0, -0.5];

/// A ReLU network that computes `v(x, t) = A x + b` exactly: its hidden layer holds
/// `relu(x_i)` and `relu(−x_i)`, and `relu(x) − relu(−x) = x`.
fn linear_mlp() -> Mlp {
    let config = MlpConfig { dim: 2, hidden_dim: 4, hidden_layers: 1, activation: Activation::Relu, time_embedding: 0, time_inputs: 1, ..MlpConfig::default() };
    let mlp = Mlp::new(config, Device::Cpu).unwrap();
    let [a0, a1] = A_DIAG.map(|a| a as f32);
    let values: [(&str, Vec<f32>, Vec<i64>); 4] = [
        ("net.0.weight", vec![1., 0., 0., -1., 0., 0., 0., 1., 0., 0., -1., 0.], vec![4, 3]),
        ("net.0.bias", vec![0.; 4], vec![4]),
        ("net.2.weight", vec![a0, -a0, 0., 0., 0., 0., a1, -a1], vec![2, 4]),
        ("net.2.bias", B.map(|b| b as f32).to_vec(), vec![2]),
    ];
    let mut vars = mlp.var_store().variables();
    tch::no_grad(|| {
        for (name, v, shape) in values {
            vars.get_mut(name).unwrap().copy_(&Tensor::from_slice(&v).reshape(shape));
        }
    });
    mlp
}

/// The model of [`linear_mlp`] with source `N(0, I)`: `x_1 = e^A x_0 + φ₁(A) b`, i.e.
/// `N(m, diag(s²))` with `m_i = (e^{a_i} − 1)/a_i · b_i` and `s_i = e^{a_i}`.
fn linear_model_law() -> ([f64; 2], [f64; 2]) {
    let m = [0, 1].map(|i| (A_DIAG[i].exp() - 1.0) / A_DIAG[i] * B[i]);
    let s = A_DIAG.map(f64::exp);
    (m, s)
}

fn linear_model_log_q(x: &[f64]) -> f64 {
    let (m, s) = linear_model_law();
    (0..2).map(|i| -0.5 * ((x[i] - m[i]) / s[i]).powi(2) - s[i].ln() - 0.5 * (2.0 * PI).ln()).sum()
}

/// A one-component mixture: the Gaussian `N(mean, cov)`.
fn gaussian(mean: [f64; 2], cov: [[f64; 2]; 2]) -> GaussianMixture {
    GaussianMixture::new(vec![1.0], array![[mean[0], mean[1]]], vec![array![[cov[0][0], cov[0][1]], [cov[1][0], cov[1][1]]]]).unwrap()
}

fn points(n: usize, seed: u64) -> Array2<f64> {
    gaussian([0.5, 0.5], [[2.0, 0.3], [0.3, 1.5]]).sample(n, &mut StdRng::seed_from_u64(seed))
}

fn max_abs_diff(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    (a - b).mapv(f64::abs).fold(0.0, |m: f64, v| m.max(*v))
}

fn normal() -> StandardNormal {
    StandardNormal::new(2).unwrap()
}

#[test]
fn log_prob_of_a_linear_flow_is_the_closed_form() {
    let mlp = linear_mlp();
    let x = points(500, 1);
    let want: Array1<f64> = x.rows().into_iter().map(|r| linear_model_log_q(r.as_slice().unwrap())).collect();
    // RK4's error on a linear ODE is tiny; what is left is float32 round-off.
    let got = model_log_prob(&mlp, &normal(), x.view(), &LikelihoodConfig::default()).unwrap();
    assert!(max_abs_diff(&got, &want) < 1e-4, "{}", max_abs_diff(&got, &want));
    let dopri = LikelihoodConfig { method: Method::Dopri5, ..LikelihoodConfig::default() };
    let got = model_likelihood(&mlp, &normal(), x.view(), &dopri).unwrap();
    assert!(max_abs_diff(&got.log_q, &want) < 1e-4, "{}", max_abs_diff(&got.log_q, &want));
    // Euler with few steps is visibly off: the comparison has teeth.
    let euler = LikelihoodConfig { method: Method::Euler, steps: 5, ..LikelihoodConfig::default() };
    let got = model_log_prob(&mlp, &normal(), x.view(), &euler).unwrap();
    assert!(max_abs_diff(&got, &want) > 1e-2);
}

#[test]
fn model_log_prob_is_fm_ode_log_likelihood_plus_the_source_density() {
    let mlp = Mlp::new(MlpConfig { hidden_dim: 32, ..MlpConfig::default() }, Device::Cpu).unwrap();
    let x = points(300, 2);
    let cfg = LikelihoodConfig { steps: 20, chunk_size: 64, ..LikelihoodConfig::default() };
    let got = model_likelihood(&mlp, &normal(), x.view(), &cfg).unwrap();
    let grid = TimeGrid::uniform(1.0, 0.0, 20).unwrap();
    let lik = log_likelihood(&mlp, &array_to_tensor(x.view(), Device::Cpu).unwrap(), &grid, Method::Rk4, &cfg.options()).unwrap();
    // Ours adds the source's own log-density (float64) at the point reached …
    let delta: Vec<f64> = Vec::try_from(lik.delta_log_p.to_kind(tch::Kind::Double)).unwrap();
    let want = normal().log_prob(tensor_to_array(&lik.x0).unwrap().view()).unwrap() + Array1::from(delta);
    assert!(max_abs_diff(&got.log_q, &want) < 1e-9, "{}", max_abs_diff(&got.log_q, &want));
    // … which is fm-ode's float32 `standard_normal_log_prob` up to float32 round-off.
    let f32_sum: Vec<f64> = Vec::try_from(lik.log_prob(standard_normal_log_prob).unwrap().to_kind(tch::Kind::Double)).unwrap();
    let scale = want.mapv(f64::abs).fold(1.0f64, |m, v| m.max(*v));
    assert!(max_abs_diff(&got.log_q, &Array1::from(f32_sum)) < 1e-5 * scale);
    // NFE per chunk: 20 RK4 steps of 4 evaluations, whatever the number of chunks.
    assert_eq!(got.nfe, 80.0);
    assert_eq!(lik.nfe, 80 * 300usize.div_ceil(64));
}

#[test]
fn results_do_not_depend_on_the_chunking() {
    // Seeded: the tolerance holds for these weights (an unseeded draw failed it once in a loaded run).
    let mlp = fm_model::with_torch_seed(5, || Mlp::new(MlpConfig { hidden_dim: 32, ..MlpConfig::default() }, Device::Cpu)).unwrap();
    let x = points(200, 3);
    for divergence in [Divergence::Exact, Divergence::Hutchinson { probes: 2, kind: Probe::Rademacher }] {
        let cfg = |chunk_size| LikelihoodConfig { steps: 10, divergence, chunk_size, seed: 4, ..LikelihoodConfig::default() };
        let whole = model_log_prob(&mlp, &normal(), x.view(), &cfg(1024)).unwrap();
        let chunked = model_log_prob(&mlp, &normal(), x.view(), &cfg(64)).unwrap();
        assert!(max_abs_diff(&whole, &chunked) < 1e-5, "{divergence}");
    }
    let empty = model_log_prob(&mlp, &normal(), Array2::zeros((0, 2)).view(), &LikelihoodConfig::default()).unwrap();
    assert_eq!(empty.len(), 0);
}

#[test]
fn kl_to_a_gaussian_target_matches_the_closed_form() {
    let mlp = linear_mlp();
    let (mu, sigma) = ([0.5, 0.5], [[2.0, 0.3], [0.3, 1.5]]);
    // KL(N(μ, Σ) ‖ N(m, S)) = ½ (tr(S⁻¹Σ) + (m − μ)ᵀ S⁻¹ (m − μ) − d + ln det S − ln det Σ), S diagonal.
    let (m, s) = linear_model_law();
    let s2 = s.map(|v| v * v);
    let det_sigma = sigma[0][0] * sigma[1][1] - sigma[0][1] * sigma[1][0];
    let want = 0.5 * ((0..2).map(|i| sigma[i][i] / s2[i] + (m[i] - mu[i]).powi(2) / s2[i] + s2[i].ln()).sum::<f64>() - 2.0 - det_sigma.ln());
    let est = kl_estimate(&gaussian(mu, sigma), &mlp, &normal(), 4000, &LikelihoodConfig::default(), &mut StdRng::seed_from_u64(5)).unwrap();
    assert!((est.kl - want).abs() < 4.0 * est.kl_se, "KL {} ± {} vs closed form {want}", est.kl, est.kl_se);
    assert!(est.kl_se > 0.0 && est.kl_se < 0.1 * want, "{est}");
    assert_eq!(est.n, 4000);
    assert_eq!(est.nfe, 200.0);
    assert!((est.kl - (est.nll - est.entropy)).abs() < 1e-12);
    // The entropy of N(μ, Σ) is ½ ln((2πe)² det Σ).
    let entropy = 0.5 * ((2.0 * PI * 1f64.exp()).powi(2) * det_sigma).ln();
    assert!((est.entropy - entropy).abs() < 0.1, "{} vs {entropy}", est.entropy);
}

#[test]
fn kl_of_the_models_own_law_is_zero() {
    let (m, s) = linear_model_law();
    let own = gaussian(m, [[s[0] * s[0], 0.0], [0.0, s[1] * s[1]]]);
    let est = kl_estimate(&own, &linear_mlp(), &normal(), 1000, &LikelihoodConfig::default(), &mut StdRng::seed_from_u64(6)).unwrap();
    // Every per-sample difference is the solve's error (float32): nothing to average away.
    assert!(est.kl.abs() < 1e-4 && est.kl_se < 1e-5, "{est}");
}

#[test]
fn kl_estimate_draws_its_points_first_and_uses_the_standard_error_formula() {
    let mlp = Mlp::new(MlpConfig { hidden_dim: 16, ..MlpConfig::default() }, Device::Cpu).unwrap();
    let target = GaussianMixture::seed();
    let cfg = LikelihoodConfig { steps: 8, ..LikelihoodConfig::default() };
    let est = kl_estimate(&target, &mlp, &normal(), 300, &cfg, &mut StdRng::seed_from_u64(7)).unwrap();
    let x = target.sample(300, &mut StdRng::seed_from_u64(7));
    let d = target.log_prob(x.view()).unwrap() - model_log_prob(&mlp, &normal(), x.view(), &cfg).unwrap();
    let mean = d.mean().unwrap();
    let sd = (d.mapv(|v| (v - mean).powi(2)).sum() / 299.0).sqrt();
    assert!((est.kl - mean).abs() < 1e-9 && (est.kl_se - sd / 300f64.sqrt()).abs() < 1e-9, "{est}");
    assert!(est.seconds > 0.0);
}

#[test]
fn from_log_probs_is_mean_and_standard_error_of_the_differences() {
    let est = KlEstimate::from_log_probs(array![0.0, 0.0, 0.0, 0.0].view(), array![-1.0, -2.0, -3.0, -4.0].view()).unwrap();
    // Differences 1, 2, 3, 4: mean 2.5, sample variance 5/3.
    assert_eq!((est.n, est.kl, est.nll, est.entropy), (4, 2.5, 2.5, 0.0));
    assert!((est.kl_se - (5.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-15);
    assert_eq!((est.nfe, est.seconds), (0.0, 0.0));
    let line = est.to_string();
    assert!(line.starts_with("KL(target ‖ model) 2.5000 ± 0.6455 nats") && !line.contains('\n'), "{line}");
    let json = serde_json::to_value(&est).unwrap();
    assert_eq!(json["kl"], 2.5);

    let err = |p: Vec<f64>, q: Vec<f64>| KlEstimate::from_log_probs(Array1::from(p).view(), Array1::from(q).view()).unwrap_err().to_string();
    assert!(err(vec![0.0, 1.0], vec![0.0]).contains("1 model log-densities"));
    assert!(err(vec![0.0], vec![0.0]).contains("at least 2 samples"));
    assert!(err(vec![0.0, 1.0], vec![f64::NEG_INFINITY, 0.0]).contains("1 of 2 under the model"));
}

#[test]
fn targets_and_sources_without_density_are_errors() {
    let mlp = linear_mlp();
    let cfg = LikelihoodConfig { steps: 2, ..LikelihoodConfig::default() };
    let rng = &mut StdRng::seed_from_u64(0);
    let e = kl_estimate(&Moons, &mlp, &normal(), 100, &cfg, rng).unwrap_err().to_string();
    assert!(e.contains("moons") && e.contains("no analytic density"), "{e}");
    let e = kl_estimate(&GaussianMixture::seed(), &mlp, &Moons, 100, &cfg, rng).unwrap_err().to_string();
    assert!(e.contains("source moons") && e.contains("no analytic density"), "{e}");
    let e = model_log_prob(&mlp, &Moons, points(3, 0).view(), &cfg).unwrap_err().to_string();
    assert!(e.contains("no analytic density"), "{e}");
}

#[test]
fn dimension_mismatches_are_errors() {
    let mlp = linear_mlp();
    let cfg = LikelihoodConfig { steps: 2, ..LikelihoodConfig::default() };
    let three = StandardNormal::new(3).unwrap();
    let e = model_log_prob(&mlp, &normal(), Array2::zeros((4, 3)).view(), &cfg).unwrap_err().to_string();
    assert!(e.contains("expected 2 columns, got 3"), "{e}");
    let e = model_log_prob(&mlp, &three, points(4, 0).view(), &cfg).unwrap_err().to_string();
    assert!(e.contains("expected 2 columns, got 3"), "{e}");
    let e = kl_estimate(&three, &mlp, &normal(), 10, &cfg, &mut StdRng::seed_from_u64(0)).unwrap_err().to_string();
    assert!(e.contains("expected 2 columns, got 3"), "{e}");
    let e = kl_estimate(&GaussianMixture::seed(), &mlp, &three, 10, &cfg, &mut StdRng::seed_from_u64(0)).unwrap_err().to_string();
    assert!(e.contains("expected 2 columns, got 3"), "{e}");
}

#[test]
fn bad_inputs_and_settings_are_errors() {
    let mlp = linear_mlp();
    let x = points(4, 0);
    let check = |cfg: LikelihoodConfig, want: &str| {
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains(want), "{e} (wanted '{want}')");
        let e = model_log_prob(&mlp, &normal(), x.view(), &cfg).unwrap_err().to_string();
        assert!(e.contains(want), "{e} (wanted '{want}')");
    };
    let d = LikelihoodConfig::default;
    check(LikelihoodConfig { steps: 0, ..d() }, "steps must be at least 1");
    check(LikelihoodConfig { chunk_size: 0, ..d() }, "chunk_size must be at least 1");
    check(LikelihoodConfig { divergence: Divergence::Hutchinson { probes: 0, kind: Probe::Gaussian }, ..d() }, "at least 1 probe");
    check(LikelihoodConfig { rtol: -1.0, ..d() }, "rtol must be finite and non-negative");
    check(LikelihoodConfig { rtol: f64::NAN, ..d() }, "rtol must be finite");
    check(LikelihoodConfig { atol: 0.0, ..d() }, "atol must be finite and positive");
    check(LikelihoodConfig { max_steps: 0, ..d() }, "max_steps must be at least 1");
    assert_eq!(d().validate().unwrap().times().first(), Some(&1.0));

    let mut bad = x.clone();
    bad[[2, 1]] = f64::NAN;
    let e = model_log_prob(&mlp, &normal(), bad.view(), &d()).unwrap_err().to_string();
    assert!(e.contains("row 2") && e.contains("NaN"), "{e}");
    let e = kl_estimate(&GaussianMixture::seed(), &mlp, &normal(), 1, &d(), &mut StdRng::seed_from_u64(0)).unwrap_err().to_string();
    assert!(e.contains("at least 2 samples"), "{e}");
    // A budget too small for Dopri5 is the solver's error, not a panic.
    let tiny = LikelihoodConfig { method: Method::Dopri5, rtol: 1e-9, atol: 1e-9, max_steps: 2, ..d() };
    let e = model_log_prob(&mlp, &normal(), x.view(), &tiny).unwrap_err().to_string();
    assert!(e.contains("budget of 2 steps"), "{e}");
}

#[test]
fn config_reads_names_and_rejects_unknown_fields() {
    let cfg: LikelihoodConfig = serde_json::from_str(r#"{"method": "dopri5", "divergence": "hutchinson:4:gaussian", "rtol": 1e-6}"#).unwrap();
    assert_eq!(cfg.method, Method::Dopri5);
    assert_eq!(cfg.divergence, Divergence::Hutchinson { probes: 4, kind: Probe::Gaussian });
    assert_eq!((cfg.rtol, cfg.steps, cfg.atol), (1e-6, LikelihoodConfig::default().steps, 1e-5));
    let back: LikelihoodConfig = serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
    let defaults: LikelihoodConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults, LikelihoodConfig::default());
    assert_eq!((defaults.method, defaults.divergence), (Method::Rk4, Divergence::Auto));

    let e = serde_json::from_str::<LikelihoodConfig>(r#"{"stepz": 3}"#).unwrap_err().to_string();
    assert!(e.contains("unknown field `stepz`"), "{e}");
    let e = serde_json::from_str::<LikelihoodConfig>(r#"{"method": "rk5"}"#).unwrap_err().to_string();
    assert!(e.contains("unknown integration method 'rk5'"), "{e}");
    let e = serde_json::from_str::<LikelihoodConfig>(r#"{"divergence": "hutchinson:0"}"#).unwrap_err().to_string();
    assert!(e.contains("at least 1 probe"), "{e}");
}

/// A model trained in standard units, read in data units `x = shift + scale ⊙ z`: its
/// log-density is the change of variables of the closed form, and its samples are the map of
/// the standard-unit samples.
#[test]
fn data_units_carry_densities_and_samples_through_the_standardisation() {
    let mlp = linear_mlp();
    let map = fm_dist::affine::Affine { shift: vec![5e6, -3.0], scale: vec![2e5, 1e-3] };
    let units = fm_train::DataUnits { field: &mlp, source: &normal(), map: Some(&map), path: fm_train::ProbabilityPath::Linear };
    let z = points(300, 2);
    let x = map.apply(z.view());
    let log_det = (2e5f64).ln() + (1e-3f64).ln();
    let want: Array1<f64> = z.rows().into_iter().map(|r| linear_model_log_q(r.as_slice().unwrap()) - log_det).collect();
    let got = units.log_prob(x.view(), &LikelihoodConfig::default()).unwrap();
    assert!(max_abs_diff(&got, &want) < 1e-4, "{}", max_abs_diff(&got, &want));

    let cfg = fm_train::SampleConfig { n_samples: 50, ..Default::default() };
    let plain = fm_train::sample(&mlp, &normal(), &cfg).unwrap();
    let mapped = units.sample(&cfg).unwrap();
    assert_eq!(mapped, map.apply(plain.view()));
    // Velocities scale with the map (v_x = scale ⊙ v_z); its shift does not move them.
    let v = units.velocity(x.view(), 0.5).unwrap();
    let vz = fm_train::velocity_array(&mlp, z.view(), 0.5).unwrap();
    for (a, b) in v.rows().into_iter().zip(vz.rows()) {
        assert!((a[0] - 2e5 * b[0]).abs() <= 1e-6 * a[0].abs().max(1.0) && (a[1] - 1e-3 * b[1]).abs() <= 1e-9, "{a} vs {b}");
    }
}

/// `log q` from the forward solve (the samples' own) equals the backward likelihood of the same
/// points, per point; the points are the plain sampler's; the conditional field's and the units
/// map's go through the same request.
#[test]
fn forward_log_q_equals_the_backward_likelihood_per_point() {
    let mlp = fm_model::with_torch_seed(4, || {
        fm_model::Mlp::new(fm_model::MlpConfig { activation: fm_model::Activation::Gelu, time_embedding: 8, ..Default::default() }, tch::Device::Cpu)
    })
    .unwrap();
    let source = fm_dist::StandardNormal::new(2).unwrap();
    let cfg = fm_train::SampleConfig { n_samples: 300, steps: 100, method: fm_ode::Method::Rk4, seed: 3, ..Default::default() };
    let (x, log_q) = fm_train::sample_with_log_q(&mlp, &source, &cfg).unwrap();
    let plain = fm_train::sample(&mlp, &source, &cfg).unwrap();
    assert!((&x - &plain).iter().all(|d| d.abs() < 1e-5), "the points are the sampler's");
    let back = fm_train::model_log_prob(&mlp, &source, x.view(), &fm_train::LikelihoodConfig { steps: 100, ..Default::default() }).unwrap();
    let worst = log_q.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-3, "forward and backward log q differ by up to {worst}");
    // Through a request, in data units: log q(x) = log q(z) − log|det| of the map.
    let map = fm_dist::affine::Affine { shift: vec![1.0, -2.0], scale: vec![2.0, 0.5] };
    let units = fm_train::DataUnits { field: &mlp, source: &source, map: Some(&map), path: fm_train::ProbabilityPath::Linear };
    let g = units.generate(&fm_train::Request::new(fm_train::Generator::Flow, &cfg).with_log_q()).unwrap();
    let shifted = g.log_q.unwrap() - &log_q;
    assert!(shifted.iter().all(|d| (d - (-(2.0f64 * 0.5).ln())).abs() < 1e-9));
    // A one-step map has no likelihood: refused by name.
    let err = units.generate(&fm_train::Request::new(fm_train::Generator::OneStep, &fm_train::SampleConfig::one_step()).with_log_q()).unwrap_err();
    assert!(err.to_string().contains("log q needs a flow"), "{err}");
}
