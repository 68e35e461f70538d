//! Few-step generation: reflow pairs, distillation, MeanFlow's target and sampling.

use fm_dist::{parse_target, GaussianMixture, StandardNormal, Target};
use fm_model::{copy_parameters, Activation, Architecture, Mlp, MlpConfig, VelocityModel};
use fm_ode::{solve, AdaptiveOptions, Method, SolveOptions, TimeGrid, VectorField};
use fm_train::objective::meanflow_target;
use fm_train::{
    array_to_tensor, draw_pairs, tensor_to_array, train_on, DataUnits, Error, Generator, ObjectiveChoice, Pairs, SampleConfig, TrainConfig, TrainHooks,
    TrainingData,
};
use ndarray::Array2;
use rand::{rngs::StdRng, SeedableRng};
use tch::{Device, Kind, Tensor};

fn mlp(seed: u64, time_inputs: usize) -> Mlp {
    let cfg = MlpConfig { hidden_dim: 64, activation: Activation::Gelu, time_inputs, ..MlpConfig::default() };
    fm_model::with_torch_seed(seed, || Mlp::new(cfg, Device::Cpu)).unwrap()
}

fn fit(model: &mut Mlp, data: TrainingData<'_>, cfg: &TrainConfig) -> fm_train::Result<()> {
    let out = train_on(model, data, cfg, None, TrainHooks { on_progress: &mut |_| {}, on_checkpoint: None, stop: None })?;
    out.state.apply_ema(model)?;
    Ok(())
}

fn short(steps: usize) -> TrainConfig {
    TrainConfig { steps, warmup_steps: steps / 20, ..TrainConfig::preset("fast").unwrap() }
}

fn max_abs(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    (a - b).iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// The pairs are the source draws and their images: an independent adaptive solve at tight
/// tolerances lands on the same points.
#[test]
fn reflow_pairs_are_the_teachers_ode_solution() {
    let teacher = mlp(1, 1);
    let source = StandardNormal::new(2).unwrap();
    let cfg = SampleConfig { n_samples: 64, steps: 50, method: Method::Rk4, seed: 9, ..SampleConfig::default() };
    let pairs = draw_pairs(&teacher, &source, &cfg).unwrap();
    assert_eq!(pairs.x0(), source.sample(64, &mut StdRng::seed_from_u64(9)));
    let x0 = array_to_tensor(pairs.x0(), Device::Cpu).unwrap();
    let opts = SolveOptions { adaptive: AdaptiveOptions { rtol: 1e-7, atol: 1e-7, ..AdaptiveOptions::default() }, ..SolveOptions::default() };
    let exact = solve(&teacher, &x0, &TimeGrid::uniform(0.0, 1.0, 1).unwrap(), Method::Dopri5, opts).unwrap().x;
    let err = max_abs(&pairs.x1().to_owned(), &tensor_to_array(&exact).unwrap());
    assert!(err < 1e-4, "pairs differ from the independent solve by {err}");
    // The file layout round-trips.
    assert_eq!(Pairs::from_array(pairs.to_array().view()).unwrap(), pairs);
}

/// `E ∫ ‖v(x_t, t)‖² dt − E ‖x1 − x0‖²` along Euler paths, over `E ‖x1 − x0‖²`: 0 for straight
/// paths at constant speed, positive otherwise (Jensen).
fn path_curvature(field: &Mlp, x0: &Tensor, steps: usize) -> f64 {
    let _guard = tch::no_grad_guard();
    let h = 1.0 / steps as f64;
    let (mut x, mut energy) = (x0.shallow_clone(), 0.0);
    for k in 0..steps {
        let v = field.velocity(&x, k as f64 * h).unwrap();
        energy += f64::try_from(v.square().sum_dim_intlist(1, false, Kind::Double).mean(Kind::Double)).unwrap() * h;
        // Not `+=`: that would add in place into x0, which x shares at first.
        x = &x + v * h;
    }
    let displacement = f64::try_from((&x - x0).square().sum_dim_intlist(1, false, Kind::Double).mean(Kind::Double)).unwrap();
    (energy - displacement) / displacement
}

/// Rectified flow's claim (Liu et al. 2022, Thm 3.7): the reflowed flow's paths are
/// straighter than its teacher's.
#[test]
fn a_reflowed_flow_is_straighter_than_its_teacher() {
    let (target, source) = (GaussianMixture::seed(), StandardNormal::new(2).unwrap());
    let mut teacher = mlp(0, 1);
    fit(&mut teacher, TrainingData::Draw { target: &target, source: &source }, &short(1500)).unwrap();
    let pairs = draw_pairs(&teacher, &source, &SampleConfig { n_samples: 8192, steps: 20, method: Method::Rk4, ..SampleConfig::default() }).unwrap();
    let mut student = mlp(0, 1);
    copy_parameters(&student, &teacher.named_parameters()).unwrap();
    fit(&mut student, TrainingData::Pairs(&pairs), &short(1500)).unwrap();
    let x0 = array_to_tensor(source.sample(2000, &mut StdRng::seed_from_u64(5)).view(), Device::Cpu).unwrap();
    let (c_teacher, c_student) = (path_curvature(&teacher, &x0, 100), path_curvature(&student, &x0, 100));
    assert!(c_student < 0.5 * c_teacher, "2-RF curvature {c_student} vs its teacher's {c_teacher}");
}

/// The average velocity of the affine field `v(x) = a x + b` over `[r, t]`, anchored at `x_r = x`:
/// `u(x, r, t) = (e^{a(t−r)} − 1)(x + b/a) / (t − r)` (and `a x + b` at `r = t`), as a model.
struct AffineAverage {
    a: f64,
    b: f64,
    dummy: Tensor,
}

impl VelocityModel for AffineAverage {
    fn forward(&self, x: &Tensor, t: &Tensor) -> fm_model::Result<Tensor> {
        let (r, t) = (t.narrow(1, 0, 1).to_kind(Kind::Double), t.narrow(1, 1, 1).to_kind(Kind::Double));
        let h = &t - &r;
        let x = x.to_kind(Kind::Double);
        // (e^{ah} − 1)/h, written through expm1 and well defined as h → 0 (h ≥ 1e-3 here).
        let growth = (&h * self.a).expm1() / &h;
        Ok((x + self.b / self.a) * growth)
    }
    fn dim(&self) -> usize {
        2
    }
    fn time_inputs(&self) -> usize {
        2
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("dummy".into(), self.dummy.shallow_clone())]
    }
    fn architecture(&self) -> Architecture {
        Architecture { kind: "test/affine-average".into(), config: String::new() }
    }
}

impl VectorField for AffineAverage {
    fn velocity(&self, x: &Tensor, t: f64) -> fm_ode::Result<Tensor> {
        fm_model::velocity_at(self, x, t)
    }
}

/// MeanFlow's target is the closed-form average velocity of an affine field: with `r = 0` and
/// `x1 = x0 + v(x0)` the pair's velocity is the field's, and the identity
/// `u = v + (t − r)(∂_r u + v · ∇_x u)` must give `u(x0, 0, t)` exactly (up to rounding).
#[test]
fn the_meanflow_target_is_the_average_velocity_of_an_affine_field() {
    let model = AffineAverage { a: -0.7, b: 0.4, dummy: Tensor::zeros([1], (Kind::Float, Device::Cpu)).set_requires_grad(true) };
    tch::manual_seed(2);
    let x0 = Tensor::randn([50, 2], (Kind::Double, Device::Cpu));
    let x1 = &x0 + (&x0 * model.a + model.b);
    let r = Tensor::zeros([50, 1], (Kind::Double, Device::Cpu));
    let t = Tensor::rand([50, 1], (Kind::Double, Device::Cpu)) * 0.9 + 0.1;
    let (xr, target, times) = meanflow_target(&model, &x0, &x1, &r, &t, &Tensor::zeros([x0.size()[0], 0], (Kind::Float, Device::Cpu))).unwrap();
    assert_eq!(f64::try_from((&xr - &x0).abs().max()).unwrap(), 0.0);
    let exact = model.forward(&x0, &times).unwrap();
    let err = f64::try_from((&target.to_kind(Kind::Double) - &exact).abs().max()).unwrap();
    // The target's terms are taken in f32 (the autograd JVP casts to the training precision).
    assert!(err < 1e-5, "MeanFlow target off the closed form by {err}");
    // With the sign of the derivative term turned (the paper's convention, read literally), it is not.
    let (_, du) = model.jvp(&x0, &times, &(&x1 - &x0), &Tensor::cat(&[r.ones_like(), t.zeros_like()], 1)).unwrap();
    let wrong = (&x1 - &x0) - (&t - &r) * du.to_kind(Kind::Double);
    assert!(f64::try_from((&wrong - &exact).abs().max()).unwrap() > 1e-2);
}

/// A trained MeanFlow network at `r = t` is the velocity: on the seed mixture its `u(x, t, t)` is
/// as close to the exact field as a flow-matching network's `v(x, t)` trained on as many `r = t`
/// rows (MeanFlow's default spends half its rows on `r < t`: the flow-matching network gets half
/// the steps). Before the EMA's warm-up both averages held a fifth of their initial weights at
/// 1,500 steps, which hid the difference in budget.
#[test]
fn a_trained_meanflow_model_at_equal_times_is_the_velocity() {
    let (target, source) = (GaussianMixture::seed(), StandardNormal::new(2).unwrap());
    let draw = TrainingData::Draw { target: &target, source: &source };
    let mut fm = mlp(0, 1);
    fit(&mut fm, draw, &short(750)).unwrap();
    let mut mf = mlp(0, 2);
    fit(&mut mf, draw, &TrainConfig { objective: ObjectiveChoice::meanflow(), ..short(1500) }).unwrap();
    let exact = fm_train::ExactFlow::new(&target, &source, fm_train::ProbabilityPath::Linear).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let (mut e_fm, mut e_mf) = (0.0, 0.0);
    for t in [0.1, 0.3, 0.5, 0.7, 0.9] {
        let x = array_to_tensor(exact.marginal(t).unwrap().sample(2000, &mut rng).view(), Device::Cpu).unwrap();
        let v = exact.velocity(&x, t).unwrap().to_kind(Kind::Double);
        let err = |m: &Mlp| f64::try_from((m.velocity(&x, t).unwrap().to_kind(Kind::Double) - &v).square().mean(Kind::Double)).unwrap();
        e_fm += err(&fm);
        e_mf += err(&mf);
    }
    assert!(e_mf < 2.0 * e_fm + 0.05, "MeanFlow u(x, t, t) error {e_mf} vs flow matching's {e_fm}");
}

/// A distilled model's one step is one Euler step, `x0 + v(x0, 0)`, bit for bit; MeanFlow's
/// one jump is `x0 + u(x0, 0, 1)`; and other settings are refused before any work.
#[test]
fn one_step_sampling_is_the_models_one_update() {
    let source = StandardNormal::new(2).unwrap();
    let cfg = SampleConfig { n_samples: 100, steps: 1, ..SampleConfig::default() };
    let x0 = array_to_tensor(source.sample(100, &mut StdRng::seed_from_u64(cfg.seed)).view(), Device::Cpu).unwrap().to_kind(Kind::Float);
    let _guard = tch::no_grad_guard();
    for (model, generator, times) in [(mlp(3, 1), Generator::OneStep, vec![0.0f32]), (mlp(3, 2), Generator::AverageVelocity, vec![0.0, 1.0])] {
        let units = DataUnits { field: &model, source: &source, map: None, path: fm_train::ProbabilityPath::Linear };
        let got = units.generate(&fm_train::Request::new(generator, &cfg)).unwrap().points;
        let t = Tensor::from_slice(&times).view([1, times.len() as i64]).expand([100, times.len() as i64], false);
        let want = tensor_to_array(&(&x0 + model.forward(&x0, &t).unwrap())).unwrap();
        assert_eq!(got, want, "{generator:?}");
    }
    let one_step = mlp(3, 1);
    let units = DataUnits { field: &one_step, source: &source, map: None, path: fm_train::ProbabilityPath::Linear };
    let err = units.generate(&fm_train::Request::new(Generator::OneStep, &SampleConfig { steps: 2, ..cfg.clone() })).unwrap_err().to_string();
    assert!(err.contains("--steps 1"), "{err}");
    let mean = mlp(3, 2);
    let units = DataUnits { field: &mean, source: &source, map: None, path: fm_train::ProbabilityPath::Linear };
    let err = units.generate(&fm_train::Request::new(Generator::AverageVelocity, &SampleConfig { method: Method::Dopri5, ..cfg })).unwrap_err().to_string();
    assert!(err.contains("dopri5 does not apply"), "{err}");
}

#[test]
fn settings_that_do_not_fit_are_refused() {
    let (target, source) = (GaussianMixture::seed(), StandardNormal::new(2).unwrap());
    let draw = TrainingData::Draw { target: &target, source: &source };
    let pairs = Pairs::new(Array2::zeros((4, 2)), Array2::ones((4, 2))).unwrap();
    let cfg = short(2);
    let cases: Vec<(TrainingData<'_>, TrainConfig, Mlp, &str)> = vec![
        (draw, TrainConfig { objective: ObjectiveChoice::distill(), ..cfg.clone() }, mlp(0, 1), "train it on pairs"),
        (TrainingData::Pairs(&pairs), TrainConfig { coupling: fm_train::Coupling::Ot, ..cfg.clone() }, mlp(0, 1), "coupled already"),
        (draw, TrainConfig { objective: ObjectiveChoice::meanflow(), ..cfg.clone() }, mlp(0, 1), "2 time input(s)"),
        (draw, cfg.clone(), mlp(0, 2), "1 time input(s)"),
        (draw, TrainConfig { objective: ObjectiveChoice::meanflow(), path: fm_train::ProbabilityPath::Vp, ..cfg.clone() }, mlp(0, 2), "straight path"),
    ];
    for (data, cfg, mut model, needle) in cases {
        let err = fit(&mut model, data, &cfg).unwrap_err();
        assert!(matches!(err, Error::Config(_)) && err.to_string().contains(needle), "{needle}: {err}");
    }
    let three_d = parse_target("normal:3").unwrap();
    let wrong = Pairs::new(three_d.sample(4, &mut StdRng::seed_from_u64(0)), three_d.sample(4, &mut StdRng::seed_from_u64(1))).unwrap();
    assert!(fit(&mut mlp(0, 1), TrainingData::Pairs(&wrong), &cfg).unwrap_err().to_string().contains("pairs 3-D"));
    let mut nan = Array2::zeros((3, 4));
    nan[[2, 3]] = f64::NAN;
    assert!(Pairs::from_array(nan.view()).unwrap_err().to_string().contains("pair 2"));
    assert!(Pairs::from_array(Array2::zeros((3, 3)).view()).unwrap_err().to_string().contains("even width"));
    for bad in ["meanflow:1.5", "meanflow:x", "reflow"] {
        assert!(bad.parse::<ObjectiveChoice>().is_err(), "{bad}");
    }
    assert_eq!("meanflow:0.5".parse::<ObjectiveChoice>().unwrap(), ObjectiveChoice::new(fm_train::objective::MeanFlow { ratio: 0.5 }));
}

/// Guidance stacks on MeanFlow's jumps: the jump field of a guided conditional average-velocity
/// network is `u_∅ + w (u_c − u_∅)`, each `u` the network on `[x | r, t | features]` computed
/// by hand here.
#[test]
fn guidance_stacks_on_jumps() {
    let cfg = MlpConfig { hidden_dim: 16, time_inputs: 2, classes: 3, ..MlpConfig::default() };
    let model = fm_model::with_torch_seed(3, || Mlp::new(cfg, Device::Cpu)).unwrap();
    let shape = model.condition_shape();
    let x = Tensor::randn([5, 2], (Kind::Float, Device::Cpu));
    let (t, h, w) = (0.25, 0.5, 2.0);
    let guided = fm_train::Guided::new(&model, Some(1), None, w).unwrap();
    let got = fm_train::Jumps { model: &guided, h }.velocity(&x, t).unwrap();
    let by_hand = |features: Vec<f32>| {
        let rows = Tensor::from_slice(&[vec![t as f32, (t + h) as f32], features].concat()).unsqueeze(0).expand([5, -1], false);
        model.forward(&x, &rows).unwrap()
    };
    let (cond, null) = (by_hand(shape.features_of(Some(1), None).unwrap()), by_hand(shape.features_of(None, None).unwrap()));
    let want = &null + (cond - &null) * w;
    assert!(got.allclose(&want, 1e-6, 1e-6, false));
}

/// Conditional MeanFlow (class labels) trains and generates each class in 2 jumps through one
/// request: the samples of class `c` are class `c`'s (purity), and an unconditional request
/// of the same model takes its "no condition" entry.
#[test]
fn conditional_meanflow_generates_each_class_in_jumps() {
    let target = GaussianMixture::seed();
    let source = StandardNormal::new(2).unwrap();
    let cfg = TrainConfig { condition: fm_train::ConditionOn::Labels, objective: ObjectiveChoice::meanflow(), ..short(1500) };
    let mut model = fm_model::with_torch_seed(0, || {
        Mlp::new(MlpConfig { hidden_dim: 64, activation: Activation::Gelu, time_inputs: 2, classes: 3, ..MlpConfig::default() }, Device::Cpu)
    })
    .unwrap();
    fit(&mut model, TrainingData::Draw { target: &target, source: &source }, &cfg).unwrap();
    let units = DataUnits { field: &model, source: &source, map: None, path: fm_train::ProbabilityPath::Linear };
    let sample = SampleConfig { n_samples: 400, steps: 2, ..SampleConfig::default() };
    let request = fm_train::Request::new(Generator::AverageVelocity, &sample);
    for class in 0..3 {
        let x = units.generate(&request.clone().given(fm_train::Condition::Class(class))).unwrap().points;
        let best = target.most_probable_class(x.view()).unwrap();
        let purity = best.iter().filter(|b| **b == Some(class)).count() as f64 / 400.0;
        // The true samples' purity is 1.000 on this well-separated mixture (±0.005 at 400 points).
        assert!(purity > 0.97, "class {class}: purity {purity}");
    }
    let all = units.generate(&request).unwrap().points;
    assert_eq!(all.dim(), (400, 2));
}
