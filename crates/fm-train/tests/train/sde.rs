//! Stochastic sampling (`fm_train::sde`): the score from the velocity is the exact score, the
//! SDE keeps the flow's marginals (and a noise without the score correction does not), zero
//! diffusion is Euler bit for bit, the transition log-densities are Gaussian's, and what does
//! not apply is refused.

use fm_dist::{GaussianMixture, StandardNormal, Target};
use fm_ode::{Method, SdeOptions, TimeGrid, VectorField};
use fm_train::exact::ExactFlow;
use fm_train::sde::{score_from_velocity, DiffusionForm, MarginalDrift, Sde};
use fm_train::{array_to_tensor, tensor_to_array, DataUnits, Generator, HasDevice, ProbabilityPath, SampleConfig};
use ndarray::Array2;
use rand::{rngs::StdRng, SeedableRng};
use tch::{Device, Kind, Tensor};

fn normal() -> StandardNormal {
    StandardNormal::new(2).unwrap()
}

fn points(n: usize, seed: u64) -> Array2<f64> {
    // Spread wider than the mixture: the score is checked where the marginals are thin too.
    normal().sample(n, &mut StdRng::seed_from_u64(seed)) * 2.5
}

fn f64_tensor(x: &Array2<f64>) -> Tensor {
    array_to_tensor(x.view(), Device::Cpu).unwrap().to_kind(Kind::Double)
}

/// The exact flow's score is the gradient of its marginal log-density (central differences of
/// `log_prob_t`, independent of the score's formula), and the score converted from its velocity
/// is that score, on every noise-free affine path, at early, middle and late times.
#[test]
fn the_score_from_the_velocity_is_the_exact_score() {
    let target = GaussianMixture::seed();
    for path in [ProbabilityPath::Linear, ProbabilityPath::Lipman { sigma_min: 0.05 }, ProbabilityPath::Vp] {
        let flow = ExactFlow::new(&target, &normal(), path).unwrap();
        for t in [0.05, 0.5, 0.9, 0.99] {
            let x = points(64, 7);
            let exact = tensor_to_array(&flow.score(&f64_tensor(&x), t).unwrap().unwrap()).unwrap();
            let h = 1e-5;
            for c in 0..2 {
                let (mut up, mut down) = (x.clone(), x.clone());
                up.column_mut(c).mapv_inplace(|v| v + h);
                down.column_mut(c).mapv_inplace(|v| v - h);
                let fd = (flow.log_prob_t(up.view(), t).unwrap() - flow.log_prob_t(down.view(), t).unwrap()) / (2.0 * h);
                for (a, b) in exact.column(c).iter().zip(fd.iter()) {
                    assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{path} t = {t}: exact score {a} vs finite difference {b}");
                }
            }
            let v = flow.velocity(&f64_tensor(&x), t).unwrap();
            let converted = tensor_to_array(&score_from_velocity(path, &f64_tensor(&x), &v, t).unwrap()).unwrap();
            let worst = (&converted - &exact).iter().fold(0.0f64, |m, d| m.max(d.abs()));
            let scale = exact.iter().fold(1.0f64, |m, d| m.max(d.abs()));
            assert!(worst < 1e-9 * scale, "{path} t = {t}: converted score off by {worst}");
        }
    }
}

fn log_density_gap(samples: &Array2<f64>, target: &GaussianMixture, reference: usize) -> (f64, f64) {
    let truth = target.sample(reference, &mut StdRng::seed_from_u64(4242));
    let (a, b) = (target.log_prob(samples.view()).unwrap(), target.log_prob(truth.view()).unwrap());
    let var = |v: &ndarray::Array1<f64>| v.var(1.0) / v.len() as f64;
    (b.mean().unwrap() - a.mean().unwrap(), (var(&a) + var(&b)).sqrt())
}

/// Euler–Maruyama on the marginal-preserving SDE of the exact flow lands on the target (its
/// mean log-density within 4 standard errors of the true samples' with 250 steps), for each
/// diffusion form; the same noise without the score term (Langevin noise "added to an ODE",
/// zea #551's fault) blurs the target far beyond that.
#[test]
fn the_sde_keeps_the_flows_marginals_and_noise_alone_does_not() {
    let target = GaussianMixture::seed();
    let flow = ExactFlow::new(&target, &normal(), ProbabilityPath::Linear).unwrap();
    let n = 3000;
    let units = DataUnits { field: &flow, source: &normal(), map: None, path: ProbabilityPath::Linear };
    for (form, _) in DiffusionForm::ALL {
        let cfg = SampleConfig { n_samples: n, steps: 250, sde: Some(Sde { form, norm: 1.0 }), seed: 3, ..SampleConfig::default() };
        let x = units.sample(&cfg).unwrap();
        let (gap, se) = log_density_gap(&x, &target, 20_000);
        assert!(gap.abs() < 4.0 * se + 0.02, "{}: gap {gap:.4} ± {se:.4}", form.name());
    }
    // Noise without the score: the drift is v alone.
    let grid = TimeGrid::uniform(0.0, 1.0, 250).unwrap();
    let x0 = array_to_tensor(normal().sample(n, &mut StdRng::seed_from_u64(3)).view(), Device::Cpu).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let mut noise = |_k: usize| -> fm_ode::Result<Tensor> { Ok(array_to_tensor(normal().sample(n, &mut rng).view(), Device::Cpu).unwrap()) };
    let wrong =
        fm_ode::euler_maruyama(&flow, &|t: f64| (2.0 * (1.0 - t)).sqrt(), &x0, &grid, &mut noise, SdeOptions { last_step_mean: true, ..SdeOptions::default() })
            .unwrap();
    let (gap, se) = log_density_gap(&tensor_to_array(&wrong.x).unwrap(), &target, 20_000);
    assert!(gap > 10.0 * se + 0.1, "noise without the score correction should blur: gap {gap:.4} ± {se:.4}");
}

/// With zero diffusion the SDE sampler is the Euler ODE sampler, bit for bit (the exact flow
/// and a network; `constant:0` and a form that is zero by its norm).
#[test]
fn zero_diffusion_is_euler_bit_for_bit() {
    let target = GaussianMixture::seed();
    let flow = ExactFlow::new(&target, &normal(), ProbabilityPath::Linear).unwrap();
    let mlp = fm_model::with_torch_seed(2, || fm_model::Mlp::new(fm_model::MlpConfig::default(), Device::Cpu)).unwrap();
    let base = SampleConfig { n_samples: 700, steps: 20, chunk_size: 256, ..SampleConfig::default() };
    for sde in ["constant:0", "sigma:0"] {
        let cfg = SampleConfig { sde: Some(sde.parse().unwrap()), ..base.clone() };
        let source = normal();
        let ode = DataUnits { field: &flow, source: &source, map: None, path: ProbabilityPath::Linear }.sample(&base).unwrap();
        let sde_x = DataUnits { field: &flow, source: &source, map: None, path: ProbabilityPath::Linear }.sample(&cfg).unwrap();
        assert_eq!(ode, sde_x, "{sde}, exact flow");
        let ode = DataUnits { field: &mlp, source: &source, map: None, path: ProbabilityPath::Linear }.sample(&base).unwrap();
        let sde_x = DataUnits { field: &mlp, source: &source, map: None, path: ProbabilityPath::Linear }.sample(&cfg).unwrap();
        assert_eq!(ode, sde_x, "{sde}, network");
    }
}

/// A seed gives the same SDE samples whatever the chunk size (each row's noise is its own).
#[test]
fn sde_samples_do_not_depend_on_the_chunk_size() {
    let flow = ExactFlow::new(&GaussianMixture::seed(), &normal(), ProbabilityPath::Linear).unwrap();
    let units = DataUnits { field: &flow, source: &normal(), map: None, path: ProbabilityPath::Linear };
    let cfg = |chunk_size| SampleConfig { n_samples: 300, steps: 10, chunk_size, sde: Some(Sde::default()), ..SampleConfig::default() };
    let whole = units.sample(&cfg(300)).unwrap();
    // The same noise; the field's own arithmetic may round differently by block size (it does
    // for the ODE too), hence a float tolerance, far below a different seed's difference.
    let chunked = units.sample(&cfg(64)).unwrap();
    let max_diff = |a: &ndarray::Array2<f64>, b: &ndarray::Array2<f64>| (a - b).iter().fold(0.0f64, |m, d| m.max(d.abs()));
    assert!(max_diff(&whole, &chunked) < 1e-4, "chunks changed the samples by {}", max_diff(&whole, &chunked));
    assert!(max_diff(&whole, &units.sample(&SampleConfig { seed: 2, ..cfg(300) }).unwrap()) > 0.1);
}

/// Each noisy step's log-probability is the Gaussian transition density of the step it took,
/// recomputed here from the states; the mean last step has none; a seed reproduces the noise.
#[test]
fn transition_log_probabilities_are_the_steps_gaussian_densities() {
    let target = GaussianMixture::seed();
    let flow = ExactFlow::new(&target, &normal(), ProbabilityPath::Linear).unwrap();
    let drift = MarginalDrift { field: &flow, path: ProbabilityPath::Linear, sde: Sde { form: DiffusionForm::Constant, norm: 0.7 } };
    let grid = TimeGrid::uniform(0.0, 1.0, 5).unwrap();
    let x0 = f64_tensor(&points(40, 1));
    let opts = SdeOptions { keep_trajectory: true, log_probs: true, ..SdeOptions::default() };
    let run = fm_train::sde::integrate(&drift, &x0, &grid, 9, 0, opts).unwrap();
    let again = fm_train::sde::integrate(&drift, &x0, &grid, 9, 0, opts).unwrap();
    assert!(run.x.equal(&again.x));
    let states = run.trajectory.unwrap();
    let log_probs = run.log_probs.unwrap();
    assert!(log_probs[4].is_none(), "the last step is its mean");
    let (h, g2) = (0.2, 2.0 * 0.7);
    for k in 0..4 {
        let mean = Method::Euler.step(&drift, &states[k], grid.times()[k], h, &mut 0).unwrap();
        let r2 = tensor_to_array(&(&states[k + 1] - &mean).square()).unwrap().sum_axis(ndarray::Axis(1));
        let want = r2.mapv(|r| -r / (2.0 * g2 * h) - (2.0 * std::f64::consts::PI * g2 * h).ln());
        let got: Vec<f64> = Vec::try_from(log_probs[k].as_ref().unwrap().to_kind(Kind::Double)).unwrap();
        for (a, b) in got.iter().zip(want.iter()) {
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "step {k}: {a} vs {b}");
        }
    }
}

/// What the SDE does not apply to is refused with the reason, before any work.
#[test]
fn the_sde_refuses_what_it_does_not_apply_to() {
    let sde = Sde::default();
    let n = normal();
    let gmm = GaussianMixture::seed();
    let refuse = |g: Generator, p: ProbabilityPath, s: &dyn Target, want: &str| {
        let err = sde.check(g, p, s, false).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    };
    refuse(Generator::AverageVelocity, ProbabilityPath::Linear, &n, "meanflow model");
    refuse(Generator::OneStep, ProbabilityPath::Linear, &n, "one-step model");
    refuse(Generator::Flow, ProbabilityPath::Icfm { sigma: 0.1 }, &n, "adds noise of its own");
    refuse(Generator::Flow, ProbabilityPath::SchrodingerBridge { sigma: 0.5 }, &n, "not affine");
    refuse(Generator::Flow, ProbabilityPath::Linear, &gmm, "standard-normal source");
    assert!(sde.check(Generator::Flow, ProbabilityPath::Vp, &n, false).is_ok());
    let cfg = SampleConfig { sde: Some(sde), method: Method::Rk4, ..SampleConfig::default() };
    assert!(cfg.validate().unwrap_err().to_string().contains("Euler–Maruyama"));
    assert!(Generator::AverageVelocity.check(&SampleConfig { sde: Some(sde), ..SampleConfig::default() }).is_err());
    for bad in ["sigma:-1", "sigma:nan", "brownian", "constant:x"] {
        assert!(bad.parse::<Sde>().is_err(), "{bad}");
    }
    assert_eq!("constant:0.5".parse::<Sde>().unwrap().to_string(), "constant:0.5");
    // fm_train::sample has no path to build the score from: refused, not guessed.
    let mlp = fm_model::Mlp::new(fm_model::MlpConfig::default(), Device::Cpu).unwrap();
    assert!(fm_train::sample(&mlp, &n, &SampleConfig { sde: Some(sde), n_samples: 4, ..SampleConfig::default() }).is_err());
}

/// The SDE keeps the exact flow's marginal at intermediate times too (its Fokker–Planck
/// equation is the flow's continuity equation): the states at t = 0.25, 0.5 and 0.75 of
/// 3,000 SDE paths have the mean `log p_t` of fresh draws of `p_t`, within 4 standard errors
/// (+0.02 for the discretisation at 200 steps).
#[test]
fn the_sde_keeps_the_marginal_at_intermediate_times() {
    let target = GaussianMixture::seed();
    let flow = ExactFlow::new(&target, &normal(), ProbabilityPath::Linear).unwrap();
    let units = DataUnits { field: &flow, source: &normal(), map: None, path: ProbabilityPath::Linear };
    let cfg = SampleConfig { steps: 200, sde: Some(Sde { form: DiffusionForm::Constant, norm: 1.0 }), seed: 8, ..SampleConfig::default() };
    let (times, paths) = units.sample_paths(&cfg, 3000).unwrap();
    for k in [50, 100, 150] {
        let t = times[k];
        let x = paths.index_axis(ndarray::Axis(0), k).to_owned();
        let fresh = flow.marginal(t).unwrap().sample(20_000, &mut StdRng::seed_from_u64(k as u64));
        let (a, b) = (flow.log_prob_t(x.view(), t).unwrap(), flow.log_prob_t(fresh.view(), t).unwrap());
        let se = (a.var(1.0) / a.len() as f64 + b.var(1.0) / b.len() as f64).sqrt();
        let gap = b.mean().unwrap() - a.mean().unwrap();
        assert!(gap.abs() < 4.0 * se + 0.02, "t = {t}: gap {gap:.4} ± {se:.4}");
    }
}
