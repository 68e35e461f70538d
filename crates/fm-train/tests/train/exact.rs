//! The exact flow of Gaussian-mixture targets (`fm_train::exact`), checked against what it must
//! satisfy independently of its formulas: the continuity equation, its ends, a textbook field,
//! a brute-force loss floor, and the loss decomposition on a trained model.

use fm_dist::{GaussianMixture, Moons, StandardNormal, Target};
use fm_model::{Mlp, MlpConfig};
use fm_ode::VectorField;
use fm_train::exact::ExactFlow;
use fm_train::{kl_estimate, Coupling, LikelihoodConfig, ProbabilityPath, TimeSampling, TrainConfig};
use ndarray::{array, Array1, Array2};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tch::{Kind, Tensor};

const PATHS: [ProbabilityPath; 4] =
    [ProbabilityPath::Linear, ProbabilityPath::Icfm { sigma: 0.3 }, ProbabilityPath::Lipman { sigma_min: 0.05 }, ProbabilityPath::Vp];

fn normal(d: usize) -> StandardNormal {
    StandardNormal::new(d).unwrap()
}

/// A 3-D mixture with full covariances, to keep the algebra honest beyond diagonal 2-D.
fn mixture_3d() -> GaussianMixture {
    GaussianMixture::new(
        vec![0.6, 0.4],
        array![[1.0, -2.0, 0.5], [-1.5, 1.0, 2.0]],
        vec![array![[0.5, 0.1, 0.0], [0.1, 0.3, 0.05], [0.0, 0.05, 0.2]], array![[0.2, -0.05, 0.0], [-0.05, 0.4, 0.1], [0.0, 0.1, 0.6]]],
    )
    .unwrap()
}

fn velocity(flow: &ExactFlow, x: &Array2<f64>, t: f64) -> Array2<f64> {
    let xt = Tensor::from_slice(x.as_slice().unwrap()).reshape([x.nrows() as i64, x.ncols() as i64]);
    let v = flow.velocity(&xt, t).unwrap();
    let v: Vec<f64> = Vec::try_from(v.to_kind(Kind::Double).contiguous().view(-1)).unwrap();
    Array2::from_shape_vec(x.dim(), v).unwrap()
}

/// `∂_t p_t + ∇·(p_t v*) = 0`, divided by `p_t`: `∂_t log p_t + ∇ log p_t · v* + ∇·v* = 0`, every
/// term by central differences of `log_prob_t` and of the field at random points and times.
#[test]
fn the_exact_field_satisfies_the_continuity_equation() {
    let mut rng = StdRng::seed_from_u64(1);
    for (target, name) in [(GaussianMixture::seed(), "gmm3"), (mixture_3d(), "3-D mixture")] {
        let d = target.dim();
        for path in PATHS {
            let flow = ExactFlow::new(&target, &normal(d), path).unwrap();
            for _ in 0..6 {
                let t: f64 = rng.random_range(0.05..0.95);
                let x = flow.marginal(t).unwrap().sample(8, &mut rng);
                let (h, ht) = (1e-4, 1e-5);
                let lp = |x: &Array2<f64>, t: f64| flow.log_prob_t(x.view(), t).unwrap();
                let dt = (lp(&x, t + ht) - lp(&x, t - ht)) / (2.0 * ht);
                let v = velocity(&flow, &x, t);
                let (mut transport, mut div) = (Array1::<f64>::zeros(8), Array1::<f64>::zeros(8));
                for j in 0..d {
                    let (mut up, mut down) = (x.clone(), x.clone());
                    up.column_mut(j).mapv_inplace(|a| a + h);
                    down.column_mut(j).mapv_inplace(|a| a - h);
                    transport = transport + (lp(&up, t) - lp(&down, t)) / (2.0 * h) * v.column(j);
                    div = div + (&velocity(&flow, &up, t).column(j) - &velocity(&flow, &down, t).column(j)) / (2.0 * h);
                }
                for i in 0..8 {
                    let scale = dt[i].abs() + transport[i].abs() + div[i].abs() + 1.0;
                    let residual = dt[i] + transport[i] + div[i];
                    assert!(
                        residual.abs() < 1e-4 * scale,
                        "{name}, {path}, t = {t}: ∂t log p {} + transport {} + div {} = {residual}",
                        dt[i],
                        transport[i],
                        div[i]
                    );
                }
            }
        }
    }
}

#[test]
fn the_marginal_is_the_source_at_0_and_the_target_at_1() {
    let target = mixture_3d();
    let x = target.sample(50, &mut StdRng::seed_from_u64(2));
    for path in [ProbabilityPath::Linear, ProbabilityPath::Vp, ProbabilityPath::Lipman { sigma_min: 0.0 }] {
        let flow = ExactFlow::new(&target, &normal(3), path).unwrap();
        let at0 = flow.log_prob_t(x.view(), 0.0).unwrap();
        let at1 = flow.log_prob_t(x.view(), 1.0).unwrap();
        let want0 = normal(3).log_prob(x.view()).unwrap();
        let want1 = target.log_prob(x.view()).unwrap();
        for i in 0..50 {
            assert!((at0[i] - want0[i]).abs() < 1e-10 && (at1[i] - want1[i]).abs() < 1e-10, "{path}: row {i}");
        }
    }
    // Lipman's path ends σ_min away from the target: p_1 = target ⊛ N(0, σ_min² I).
    let flow = ExactFlow::new(&GaussianMixture::seed(), &normal(2), ProbabilityPath::Lipman { sigma_min: 0.1 }).unwrap();
    let blurred = flow.marginal(1.0).unwrap();
    assert!((blurred.covariances()[0][[0, 0]] - (0.5 + 0.01)).abs() < 1e-12);
}

/// N(0, I) → N(μ, diag(s²)) on the straight path: per coordinate
/// `v*(x, t) = μ + (t s² − (1 − t)) / (t² s² + (1 − t)²) (x − t μ)`.
#[test]
fn one_gaussian_gives_the_textbook_linear_field() {
    let (mu, s2) = ([1.5, -0.5], [0.25, 2.0]);
    let target = GaussianMixture::new(vec![1.0], array![[mu[0], mu[1]]], vec![array![[s2[0], 0.0], [0.0, s2[1]]]]).unwrap();
    let flow = ExactFlow::new(&target, &normal(2), ProbabilityPath::Linear).unwrap();
    let x = normal(2).sample(20, &mut StdRng::seed_from_u64(3)) * 2.0;
    for t in [0.0, 0.2, 0.5, 0.9, 1.0] {
        let v = velocity(&flow, &x, t);
        for i in 0..20 {
            for j in 0..2 {
                let want = mu[j] + (t * s2[j] - (1.0 - t)) / (t * t * s2[j] + (1.0 - t) * (1.0 - t)) * (x[[i, j]] - t * mu[j]);
                assert!((v[[i, j]] - want).abs() < 1e-10, "t = {t}: {} vs {want}", v[[i, j]]);
            }
        }
    }
}

/// Draws `(x_t, u_t)` through the training code's own path (`interpolate_with_noise`) at
/// `n_times` uniform times, `per_time` independent pairs each, and returns per-time means of
/// `g(x_t, u_t, t)`.
fn brute_force(
    flow: &ExactFlow,
    target: &dyn Target,
    n_times: usize,
    per_time: usize,
    seed: u64,
    g: impl Fn(&Tensor, &Tensor, f64) -> Tensor,
) -> fm_dist::metrics::Estimate {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = target.dim() as i64;
    let as_tensor = |a: Array2<f64>| Tensor::from_slice(a.as_slice().unwrap()).reshape([per_time as i64, d]);
    let means: Vec<f64> = (0..n_times)
        .map(|_| {
            let t: f64 = rng.random();
            let x0 = as_tensor(normal(target.dim()).sample(per_time, &mut rng));
            let x1 = as_tensor(target.sample(per_time, &mut rng));
            let eps = as_tensor(normal(target.dim()).sample(per_time, &mut rng));
            let tt = Tensor::full([per_time as i64, 1], t, (Kind::Double, tch::Device::Cpu));
            let (xt, u) = flow.path().interpolate_with_noise(&x0, &x1, &tt, &eps).unwrap();
            f64::try_from(g(&xt, &u, t).mean(Kind::Double)).unwrap()
        })
        .collect();
    fm_dist::metrics::Estimate::of(&means).unwrap()
}

#[test]
fn the_loss_floor_agrees_with_a_brute_force_average_over_drawn_pairs() {
    let target = GaussianMixture::seed();
    for path in [ProbabilityPath::Linear, ProbabilityPath::Icfm { sigma: 0.2 }, ProbabilityPath::Vp] {
        let flow = ExactFlow::new(&target, &normal(2), path).unwrap();
        let formula = flow.loss_floor(TimeSampling::Uniform, 2000, 32, &mut StdRng::seed_from_u64(4)).unwrap();
        let brute = brute_force(&flow, &target, 2000, 32, 5, |xt, u, t| (u - flow.velocity(xt, t).unwrap()).square().mean_dim(1i64, false, Kind::Double));
        let se = (formula.se.powi(2) + brute.se.powi(2)).sqrt();
        assert!((formula.mean - brute.mean).abs() < 4.0 * se, "{path}: formula {formula} vs brute force {brute}");
        // Rao–Blackwellised: the closed-form inner expectation is far less noisy.
        assert!(formula.se < brute.se, "{path}: formula se {} vs brute force se {}", formula.se, brute.se);
    }
}

/// `E‖v − u‖² = E‖v − v*‖² + L_floor` for a model `v`: on a briefly trained network, the
/// brute-force loss equals the library's floor plus field error within their standard errors.
#[test]
fn loss_minus_floor_is_the_field_error_on_a_trained_model() {
    let target = GaussianMixture::seed();
    let source = normal(2);
    let cfg = TrainConfig { steps: 400, ..TrainConfig::default() };
    let mut mlp = fm_model::with_torch_seed(0, || Mlp::new(MlpConfig::default(), tch::Device::Cpu)).unwrap();
    fm_train::train(&mut mlp, &target, &source, &cfg, &mut |_| {}).unwrap();
    let flow = ExactFlow::new(&target, &source, cfg.path).unwrap();
    let _no_grad = tch::no_grad_guard();
    let loss = brute_force(&flow, &target, 1500, 64, 6, |xt, u, t| {
        (mlp.velocity(&xt.to_kind(Kind::Float), t).unwrap().to_kind(Kind::Double) - u).square().mean_dim(1i64, false, Kind::Double)
    });
    let floor = flow.loss_floor(TimeSampling::Uniform, 1500, 64, &mut StdRng::seed_from_u64(7)).unwrap();
    let error = flow.field_error(&mlp, TimeSampling::Uniform, 1500, 64, &mut StdRng::seed_from_u64(8)).unwrap();
    let se = (loss.se.powi(2) + floor.se.powi(2) + error.se.powi(2)).sqrt();
    assert!(error.mean > 10.0 * error.se, "a briefly trained model is visibly off: {error}");
    assert!((loss.mean - floor.mean - error.mean).abs() < 4.0 * se, "loss {loss} − floor {floor} vs field error {error} (se {se})");
}

#[test]
fn the_exact_flow_has_kl_zero_and_its_samples_are_the_targets() {
    let target = GaussianMixture::seed();
    let flow = ExactFlow::new(&target, &normal(2), ProbabilityPath::Linear).unwrap();
    let kl = kl_estimate(&target, &flow, &normal(2), 2000, &LikelihoodConfig::default(), &mut StdRng::seed_from_u64(9)).unwrap();
    assert!(kl.kl.abs() < 2.0 * kl.kl_se + 1e-3, "{kl}");
    let cfg = fm_train::SampleConfig { n_samples: 4000, method: fm_ode::Method::Rk4, steps: 50, ..Default::default() };
    let x = fm_train::sample(&flow, &normal(2), &cfg).unwrap();
    let shares = fm_dist::metrics::mixture_shares(&target, x.view()).unwrap();
    // Binomial standard error of a share at n = 4000 is at most 0.008.
    for (s, w) in shares.iter().zip(target.weights()) {
        assert!((s - w).abs() < 0.03, "shares {shares:?}");
    }
}

#[test]
fn what_the_exact_flow_does_not_cover_is_a_one_line_error_naming_what_it_does() {
    let gmm = GaussianMixture::seed();
    let cases: Vec<(fm_train::Result<ExactFlow>, &str)> = vec![
        (ExactFlow::new(&Moons, &normal(2), ProbabilityPath::Linear), "is not a Gaussian mixture"),
        (ExactFlow::new(&gmm, &fm_dist::EightGaussians::default(), ProbabilityPath::Linear), "is not a single Gaussian"),
        (ExactFlow::new(&gmm, &normal(2), ProbabilityPath::SchrodingerBridge { sigma: 0.5 }), "is not affine"),
        (ExactFlow::for_training(&gmm, &normal(2), ProbabilityPath::Linear, Coupling::Ot), "pairs samples through the batch"),
    ];
    for (result, want) in cases {
        let e = result.unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("the exact flow needs a Gaussian-mixture target") && !e.contains('\n'), "{e}");
    }
    let flow = ExactFlow::new(&gmm, &normal(2), ProbabilityPath::Linear).unwrap();
    assert!(flow.marginal(1.5).unwrap_err().to_string().contains("outside [0, 1]"));
    assert!(ExactFlow::new(&gmm, &normal(3), ProbabilityPath::Linear).is_err());
}
