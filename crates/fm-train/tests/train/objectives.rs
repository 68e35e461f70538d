//! The objective seam: the built-in objectives give the weights they gave before the seam
//! (digests recorded from the enum they replaced), a user's own objective registers and parses,
//! and maximum likelihood computes the log-density the likelihood evaluation computes.

use fm_dist::{GaussianMixture, StandardNormal, Target};
use fm_model::{Mlp, MlpConfig, VelocityModel};
use fm_train::objective::{self, Batch, BatchLoss, Objective};
use fm_train::{draw_pairs, train_on, ConditionOn, ObjectiveChoice, ProbabilityPath, SampleConfig, TrainConfig, TrainHooks, TrainingData};
use tch::Device;

fn digest(model: &Mlp) -> u64 {
    // FNV-1a over every parameter's f32 bits, in the model's fixed parameter order.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (_, p) in model.named_parameters() {
        let v: Vec<f32> = Vec::<f32>::try_from(p.f_detach().unwrap().f_flatten(0, -1).unwrap()).unwrap();
        for x in v {
            for b in x.to_bits().to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}

fn tiny(time_inputs: usize, classes: usize) -> Mlp {
    let cfg = MlpConfig { hidden_dim: 16, time_inputs, classes, ..MlpConfig::default() };
    fm_model::with_torch_seed(4, || Mlp::new(cfg, Device::Cpu)).unwrap()
}

fn run(model: &mut Mlp, data: TrainingData<'_>, cfg: &TrainConfig) -> u64 {
    train_on(model, data, cfg, None, TrainHooks { on_progress: &mut |_| {}, on_checkpoint: None, stop: None }).unwrap();
    digest(model)
}

fn digests() -> Vec<(&'static str, u64)> {
    let target = GaussianMixture::seed();
    let source = StandardNormal::new(2).unwrap();
    let draw = TrainingData::Draw { target: &target, source: &source };
    let base = TrainConfig { steps: 25, batch_size: 32, seed: 11, ..TrainConfig::default() };
    let pairs = draw_pairs(&tiny(1, 0), &source, &SampleConfig { n_samples: 64, steps: 4, seed: 2, ..SampleConfig::default() }).unwrap();
    vec![
        ("flow-matching", run(&mut tiny(1, 0), draw, &base)),
        ("flow-matching icfm:0.1", run(&mut tiny(1, 0), draw, &TrainConfig { path: ProbabilityPath::Icfm { sigma: 0.1 }, ..base.clone() })),
        ("flow-matching labels", run(&mut tiny(1, 3), draw, &TrainConfig { condition: ConditionOn::Labels, ..base.clone() })),
        ("meanflow", run(&mut tiny(2, 0), draw, &TrainConfig { objective: ObjectiveChoice::meanflow(), ..base.clone() })),
        ("distill", run(&mut tiny(1, 0), TrainingData::Pairs(&pairs), &TrainConfig { objective: ObjectiveChoice::distill(), ..base.clone() })),
    ]
}

/// Recorded at commit 63ea6fd (the `Objective` enum matched in the loop) with the same runs:
/// 25 steps of 32 on the seed mixture, a 16-wide network, on the CPU.
const RECORDED: [(&str, u64); 5] = [
    ("flow-matching", 0xf471_6254_8f4a_7d51),
    ("flow-matching icfm:0.1", 0x5df0_c8d1_5457_27f5),
    ("flow-matching labels", 0x7e46_5b72_d58d_9243),
    ("meanflow", 0x248e_717a_6b0f_521b),
    ("distill", 0xaac5_82d1_4081_9c19),
];

#[test]
fn built_in_objectives_give_the_weights_they_gave_as_an_enum() {
    assert_eq!(digests(), RECORDED.to_vec());
}

/// A user's objective outside the crate: flow matching under another name, registered so
/// that a run file can name it; names are unique and a bad argument is refused.
#[derive(Debug)]
struct Renamed;

impl Objective for Renamed {
    fn spelling(&self) -> String {
        "renamed-fm".into()
    }
    fn loss(&self, model: &dyn VelocityModel, cfg: &TrainConfig, batch: &Batch) -> fm_train::Result<BatchLoss> {
        objective::FlowMatching.loss(model, cfg, batch)
    }
}

#[test]
fn a_registered_objective_is_named_by_run_files() {
    objective::register("renamed-fm", |_| Ok(std::sync::Arc::new(Renamed)), "renamed-fm").unwrap();
    assert!(objective::register("renamed-fm", |_| Ok(std::sync::Arc::new(Renamed)), "renamed-fm").is_err());
    assert!(objective::register("meanflow", |_| Ok(std::sync::Arc::new(Renamed)), "meanflow").is_err());
    let cfg: TrainConfig = serde_json::from_str(r#"{"objective": "renamed-fm"}"#).unwrap();
    assert_eq!(cfg.objective.spelling(), "renamed-fm");
    let err = "nonsense".parse::<ObjectiveChoice>().unwrap_err().to_string();
    assert!(err.contains("renamed-fm") && err.contains("likelihood[:STEPS]"), "{err}");
    // The table earlier versions wrote reads back, and the text form is what is written now.
    let old: TrainConfig = serde_json::from_str(r#"{"objective":{"meanflow":{"ratio":0.25}}}"#).unwrap();
    assert_eq!(old.objective.spelling(), "meanflow:0.25");
    assert_eq!(serde_json::to_value(&old).unwrap()["objective"], "meanflow:0.25");
    assert!("distill:3".parse::<ObjectiveChoice>().is_err());
    assert!("likelihood:0".parse::<ObjectiveChoice>().is_err());
}

/// The likelihood objective's `log q` (RK4 through the divergence-augmented ODE, kept
/// differentiable) is the log-density the likelihood evaluation computes with dopri5 at tight
/// tolerances, for an untrained network with a smooth activation (a ReLU network's divergence
/// jumps at its kinks, which costs RK4 its order).
#[test]
fn maximum_likelihood_computes_the_models_log_density() {
    let cfg = MlpConfig { hidden_dim: 16, activation: fm_model::Activation::Gelu, ..MlpConfig::default() };
    let mlp = fm_model::with_torch_seed(4, || Mlp::new(cfg, Device::Cpu)).unwrap();
    let source = StandardNormal::new(2).unwrap();
    let x = GaussianMixture::seed().sample(50, &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3));
    let ours = objective::MaximumLikelihood { steps: 32 }.log_q(&mlp, &fm_train::array_to_tensor(x.view(), Device::Cpu).unwrap()).unwrap();
    let ours = fm_train::tensor_to_array(&ours.f_unsqueeze(1).unwrap()).unwrap();
    let cfg = fm_train::LikelihoodConfig { method: fm_ode::Method::Dopri5, rtol: 1e-7, atol: 1e-7, ..fm_train::LikelihoodConfig::default() };
    let reference = fm_train::model_log_prob(&mlp, &source, x.view(), &cfg).unwrap();
    for (a, b) in ours.column(0).iter().zip(reference.iter()) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
}

/// Training by maximum likelihood raises the mean log-density of points it never saw, and
/// every step's loss reaches the weights (the loop's autograd branch).
#[test]
fn maximum_likelihood_training_raises_held_out_log_density() {
    let target = GaussianMixture::seed();
    let source = StandardNormal::new(2).unwrap();
    let x = target.sample(500, &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(99));
    let cfg = TrainConfig { steps: 150, batch_size: 64, lr: 3e-3, seed: 5, objective: "likelihood:4".parse().unwrap(), ..TrainConfig::default() };
    let mut mlp = tiny(1, 0);
    let lik = fm_train::LikelihoodConfig::default();
    let before = fm_train::model_log_prob(&mlp, &source, x.view(), &lik).unwrap().mean().unwrap();
    let report = train_on(
        &mut mlp,
        TrainingData::Draw { target: &target, source: &source },
        &cfg,
        None,
        TrainHooks { on_progress: &mut |_| {}, on_checkpoint: None, stop: None },
    )
    .unwrap()
    .report;
    let after = fm_train::model_log_prob(&mlp, &source, x.view(), &lik).unwrap().mean().unwrap();
    // 500 points of a log-density whose spread is about 1.5 nats: a standard error near 0.07.
    assert!(after > before + 1.0, "held-out mean log q {before:.3} → {after:.3}");
    // The training loss is the negative log-likelihood of the batches: it ends near −after.
    assert!((report.final_loss + after).abs() < 0.5, "final loss {} vs −{after}", report.final_loss);
}

/// Likelihood training refuses what it cannot do, before any work.
#[test]
fn maximum_likelihood_refuses_pairs_and_other_sources() {
    let target = GaussianMixture::seed();
    let cfg = TrainConfig { steps: 1, objective: ObjectiveChoice::new(objective::MaximumLikelihood::default()), ..TrainConfig::default() };
    let data = TrainingData::Draw { target: &target, source: &target };
    let err = fm_train::check_training(&cfg, data, 2, 1, fm_model::ConditionShape::NONE).unwrap_err().to_string();
    assert!(err.contains("standard normal"), "{err}");
}

/// The MLP without its written-out divergence: the likelihood objective falls back to autograd.
struct AutogradOnly<'a>(&'a Mlp);

impl fm_ode::VectorField for AutogradOnly<'_> {
    fn velocity(&self, x: &tch::Tensor, t: f64) -> fm_ode::Result<tch::Tensor> {
        self.0.velocity(x, t)
    }
}

impl VelocityModel for AutogradOnly<'_> {
    fn forward(&self, x: &tch::Tensor, t: &tch::Tensor) -> fm_model::Result<tch::Tensor> {
        self.0.forward(x, t)
    }
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn named_parameters(&self) -> Vec<(String, tch::Tensor)> {
        self.0.named_parameters()
    }
    fn architecture(&self) -> fm_model::Architecture {
        self.0.architecture()
    }
}

/// The likelihood loss's gradient in the weights through the MLP's written-out divergence (one
/// pass carrying the Jacobian's rows, recorded for autograd) equals the gradient through
/// autograd's divergence (a backward pass per dimension, differentiated again), for ReLU and GELU.
#[test]
fn the_written_out_divergence_trains_as_autograds_does() {
    let x = GaussianMixture::seed().sample(64, &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(8));
    let x = fm_train::array_to_tensor(x.view(), Device::Cpu).unwrap();
    for activation in [fm_model::Activation::Relu, fm_model::Activation::Gelu] {
        let cfg = MlpConfig { hidden_dim: 16, activation, ..MlpConfig::default() };
        let mlp = fm_model::with_torch_seed(6, || Mlp::new(cfg, Device::Cpu)).unwrap();
        let gradients = |model: &dyn VelocityModel| -> Vec<tch::Tensor> {
            let params: Vec<tch::Tensor> = model.named_parameters().into_iter().map(|(_, p)| p).collect();
            let loss = objective::MaximumLikelihood { steps: 3 }.log_q(model, &x).unwrap().mean(tch::Kind::Float);
            tch::Tensor::run_backward(&[loss], &params, false, false)
        };
        let written = gradients(&mlp);
        let autograd = gradients(&AutogradOnly(&mlp));
        for (a, b) in written.iter().zip(&autograd) {
            let scale = f64::try_from(b.abs().max()).unwrap().max(1e-3);
            let diff = f64::try_from((a - b).abs().max()).unwrap();
            assert!(diff < 1e-4 * scale, "{activation:?}: gradients differ by {diff} (scale {scale})");
        }
    }
}

/// A two-layer tanh network in `f64`, small enough for finite differences to be exact to 1e-6.
struct Double {
    w1: tch::Tensor,
    w2: tch::Tensor,
}

impl Double {
    fn new() -> Self {
        let _g = tch::no_grad_guard();
        let w1 = tch::Tensor::randn([3, 6], (tch::Kind::Double, Device::Cpu)).set_requires_grad(true);
        let w2 = (tch::Tensor::randn([6, 2], (tch::Kind::Double, Device::Cpu)) * 0.5).set_requires_grad(true);
        Self { w1, w2 }
    }
}

impl fm_ode::VectorField for Double {
    fn velocity(&self, x: &tch::Tensor, t: f64) -> fm_ode::Result<tch::Tensor> {
        fm_model::velocity_at(self, x, t)
    }
}

impl VelocityModel for Double {
    fn forward(&self, x: &tch::Tensor, t: &tch::Tensor) -> fm_model::Result<tch::Tensor> {
        let input = tch::Tensor::cat(&[x.to_kind(tch::Kind::Double), t.to_kind(tch::Kind::Double)], 1);
        Ok(input.matmul(&self.w1).tanh().matmul(&self.w2))
    }
    fn dim(&self) -> usize {
        2
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn named_parameters(&self) -> Vec<(String, tch::Tensor)> {
        vec![("w1".into(), self.w1.shallow_clone()), ("w2".into(), self.w2.shallow_clone())]
    }
    fn architecture(&self) -> fm_model::Architecture {
        fm_model::Architecture { kind: "test/double".into(), config: "{}".into() }
    }
}

/// The likelihood loss's gradient through the solver agrees with central finite differences of
/// the loss itself (in `f64`), entry by entry; and one gradient step lowers its batch's NLL.
#[test]
fn likelihood_gradients_agree_with_finite_differences_and_a_step_lowers_the_nll() {
    tch::manual_seed(5);
    let mut model = Double::new();
    let x = tch::Tensor::randn([16, 2], (tch::Kind::Double, Device::Cpu)) * 1.5;
    let objective = objective::MaximumLikelihood { steps: 4 };
    let loss = |m: &Double| objective.log_q(m, &x).unwrap().mean(tch::Kind::Double).neg();
    let value = loss(&model);
    let grads = tch::Tensor::run_backward(&[&value], &[&model.w1, &model.w2], false, false);
    let h = 1e-6;
    for (param, grad) in [(&model.w1, &grads[0]), (&model.w2, &grads[1])] {
        for i in 0..param.numel() as i64 {
            let entry = |delta: f64| {
                let _g = tch::no_grad_guard();
                let flat = param.view(-1);
                let _ = flat.get(i).g_add_scalar_(delta);
            };
            entry(h);
            let up = f64::try_from(loss(&model)).unwrap();
            entry(-2.0 * h);
            let down = f64::try_from(loss(&model)).unwrap();
            entry(h);
            let fd = (up - down) / (2.0 * h);
            let g = f64::try_from(grad.view(-1).get(i)).unwrap();
            assert!((fd - g).abs() < 1e-5 * (1.0 + g.abs()), "entry {i}: finite difference {fd} vs gradient {g}");
        }
    }
    // One small gradient step along −∇ lowers the batch's NLL.
    let before = f64::try_from(&value).unwrap();
    {
        let _g = tch::no_grad_guard();
        let _ = model.w1.g_sub_(&(&grads[0] * 0.01));
        let _ = model.w2.g_sub_(&(&grads[1] * 0.01));
    }
    let after = f64::try_from(loss(&model)).unwrap();
    assert!(after < before, "NLL {before} → {after}");
}
