//! The optimizer pieces: AdamW against Adam and a hand-computed PyTorch step, the
//! learning-rate schedule, gradient clipping, the EMA, state export; and time sampling.

use fm_model::VelocityModel;
use fm_model::{Mlp, MlpConfig};
use fm_train::{clip_grad_norm, Adam, Ema, LrSchedule, OptimizerKind, TimeSampling};
use rand::{rngs::StdRng, SeedableRng};
use tch::{Device, Kind, Tensor};

/// A float64 parameter (so hand computations in f64 compare tightly) with a gradient to set.
fn param(values: &[f64]) -> Tensor {
    Tensor::from_slice(values).set_requires_grad(true)
}

fn set_grad(p: &Tensor, g: &[f64]) {
    let mut grad = p.grad();
    if !grad.defined() {
        // Create the gradient buffer once through autograd: d(Σ p·0)/dp = 0.
        (p * 0.0).sum(Kind::Double).backward();
        grad = p.grad();
    }
    tch::no_grad(|| grad.copy_(&Tensor::from_slice(g)));
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().flatten(0, -1)).unwrap()
}

const GRADS: [[f64; 3]; 3] = [[0.5, -2.0, 1e-3], [0.1, 0.3, -4.0], [-1.0, 1.0, 2.0]];

#[test]
fn adamw_without_weight_decay_is_adam() {
    let (a, b) = (param(&[1.0, -0.5, 2.0]), param(&[1.0, -0.5, 2.0]));
    let mut adam = Adam::new(vec![("p".into(), a.shallow_clone())], 0.01).unwrap();
    let mut adamw = Adam::adamw(vec![("p".into(), b.shallow_clone())], 0.01, 0.0).unwrap();
    assert_eq!(adamw.kind, OptimizerKind::AdamW);
    for g in GRADS {
        set_grad(&a, &g);
        set_grad(&b, &g);
        adam.step().unwrap();
        adamw.step().unwrap();
        assert_eq!(values(&a), values(&b));
    }
    assert_ne!(values(&a), [1.0, -0.5, 2.0]);
}

/// PyTorch's single-tensor Adam/AdamW step, in f64 by hand.
fn reference_steps(p0: &[f64], grads: &[[f64; 3]], lr: f64, wd: f64, decoupled: bool) -> Vec<f64> {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let mut p = p0.to_vec();
    let (mut m, mut v) = (vec![0.0; p.len()], vec![0.0; p.len()]);
    for (k, g) in grads.iter().enumerate() {
        let step = (k + 1) as f64;
        for i in 0..p.len() {
            let mut gi = g[i];
            if decoupled {
                p[i] *= 1.0 - lr * wd;
            } else {
                gi += wd * p[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let denom = (v[i].sqrt() / (1.0 - b2.powf(step)).sqrt()) + eps;
            p[i] -= lr / (1.0 - b1.powf(step)) * m[i] / denom;
        }
    }
    p
}

#[test]
fn adamw_and_adam_steps_match_pytorch_by_hand() {
    let p0 = [1.0, -0.5, 2.0];
    let (lr, wd) = (0.1, 0.05);
    for decoupled in [true, false] {
        let p = param(&p0);
        let named = vec![("p".to_string(), p.shallow_clone())];
        let mut opt = if decoupled { Adam::adamw(named, lr, wd).unwrap() } else { Adam::new(named, lr).unwrap() };
        opt.weight_decay = wd;
        for k in 1..=GRADS.len() {
            set_grad(&p, &GRADS[k - 1]);
            opt.step().unwrap();
            let want = reference_steps(&p0, &GRADS[..k], lr, wd, decoupled);
            let got = values(&p);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-14, "decoupled {decoupled}, step {k}: {got:?} vs {want:?}");
            }
        }
        // One step from rest is p(1 − lr λ) − lr · sign(g) (up to ε) for AdamW: check the first by the closed form.
        if decoupled {
            let p = param(&p0);
            let mut opt = Adam::adamw(vec![("p".into(), p.shallow_clone())], lr, wd).unwrap();
            set_grad(&p, &GRADS[0]);
            opt.step().unwrap();
            let want: Vec<f64> = p0.iter().zip(GRADS[0]).map(|(p, g)| p * (1.0 - lr * wd) - lr * g / (g.abs() + 1e-8)).collect();
            for (g, w) in values(&p).iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "{g} vs {w}");
            }
        }
    }
}

#[test]
fn optimizer_state_round_trips_and_resumes_identically() {
    let run = |p: &Tensor, opt: &mut Adam, grads: &[[f64; 3]]| {
        for g in grads {
            set_grad(p, g);
            opt.step().unwrap();
        }
    };
    let p = param(&[1.0, 2.0, 3.0]);
    let mut opt = Adam::adamw(vec![("w".into(), p.shallow_clone())], 0.05, 0.01).unwrap();
    run(&p, &mut opt, &GRADS[..2]);
    let state = opt.state().unwrap();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["step", "exp_avg.w", "exp_avg_sq.w"]);
    assert_eq!(i64::try_from(&state[0].1).unwrap(), 2);

    // A second optimizer on a copy of the weights, loaded with the state, takes the same next step.
    let q = param(&values(&p));
    let mut resumed = Adam::adamw(vec![("w".into(), q.shallow_clone())], 0.05, 0.01).unwrap();
    resumed.load_state(&state).unwrap();
    assert_eq!(resumed.step_count(), 2);
    run(&p, &mut opt, &GRADS[2..]);
    run(&q, &mut resumed, &GRADS[2..]);
    assert_eq!(values(&p), values(&q));
    // The exported state was a copy: later steps did not change it.
    assert_eq!(i64::try_from(&state[0].1).unwrap(), 2);
    assert_ne!(values(&state[1].1), values(&opt.state().unwrap()[1].1));

    // Missing or misshapen tensors are refused and change nothing.
    let mut other = Adam::new(vec![("w".into(), param(&[0.0, 0.0, 0.0]))], 0.1).unwrap();
    assert!(other.load_state(&state[..2]).unwrap_err().to_string().contains("exp_avg_sq.w"));
    let bad = vec![
        ("step".into(), Tensor::from(1i64)),
        ("exp_avg.w".into(), Tensor::zeros([2], (Kind::Double, Device::Cpu))),
        ("exp_avg_sq.w".into(), Tensor::zeros([3], (Kind::Double, Device::Cpu))),
    ];
    assert!(other.load_state(&bad).unwrap_err().to_string().contains("shape"));
    assert_eq!(other.step_count(), 0);
}

#[test]
fn cosine_schedule_with_warmup() {
    let (lr, min_lr, total, warmup) = (2e-3, 1e-5, 1000, 100);
    let cos = LrSchedule::Cosine { min_lr };
    let at = |s| cos.lr_at(lr, s, total, warmup);
    assert!((at(1) - lr / 100.0).abs() < 1e-18);
    assert!((at(50) - lr / 2.0).abs() < 1e-18);
    assert_eq!(at(warmup), lr);
    assert!((at(550) - (lr + min_lr) / 2.0).abs() < 1e-15, "{}", at(550));
    assert_eq!(at(total), min_lr);
    assert_eq!(at(total + 10), min_lr);
    // Monotone: up during the warm-up, down after.
    assert!((1..warmup).all(|s| at(s) < at(s + 1)));
    assert!((warmup..total).all(|s| at(s) > at(s + 1)));
    // Without warm-up the first step is (almost) the base rate; constant is constant after its warm-up.
    assert!((cos.lr_at(lr, 1, total, 0) - lr).abs() < lr * 1e-5);
    assert_eq!(LrSchedule::Constant.lr_at(lr, 10, total, 20), lr / 2.0);
    assert_eq!(LrSchedule::Constant.lr_at(lr, 20, total, 20), lr);
    assert_eq!(LrSchedule::Constant.lr_at(lr, total, total, 0), lr);
    assert_eq!(serde_json::to_string(&cos).unwrap(), r#"{"cosine":{"min_lr":0.00001}}"#);
    assert_eq!(serde_json::from_str::<LrSchedule>(r#"{"cosine":{"min_lr":1e-5}}"#).unwrap(), cos);
    assert_eq!(serde_json::from_str::<LrSchedule>(r#""constant""#).unwrap(), LrSchedule::Constant);
    for s in [LrSchedule::Constant, cos, LrSchedule::Cosine { min_lr: 0.0 }] {
        assert_eq!(s.to_string().parse::<LrSchedule>().unwrap(), s);
    }
    assert_eq!("cosine".parse::<LrSchedule>().unwrap(), LrSchedule::Cosine { min_lr: 0.0 });
    assert!("linear".parse::<LrSchedule>().unwrap_err().to_string().contains("constant, cosine"));
    assert!("cosine:-1".parse::<LrSchedule>().is_err());
    assert_eq!(serde_json::from_str::<LrSchedule>(r#"{"cosine":{}}"#).unwrap(), LrSchedule::Cosine { min_lr: 0.0 });
}

#[test]
fn clipping_bounds_the_total_norm_like_pytorch() {
    let (a, b) = (param(&[3.0, 0.0, -4.0]), param(&[0.0, 12.0, 0.0]));
    set_grad(&a, &[3.0, 0.0, -4.0]);
    set_grad(&b, &[0.0, 12.0, 0.0]);
    let params = [a.shallow_clone(), b.shallow_clone()];
    // Total norm sqrt(5² + 12²) = 13.
    let total = clip_grad_norm(&params, 1.0).unwrap();
    assert!((f64::try_from(&total).unwrap() - 13.0).abs() < 1e-12);
    let coef = 1.0 / (13.0 + 1e-6);
    assert_eq!(values(&a.grad()), [3.0 * coef, 0.0, -4.0 * coef]);
    let after: f64 = params.iter().map(|p| values(&p.grad()).iter().map(|g| g * g).sum::<f64>()).sum::<f64>().sqrt();
    assert!(after <= 1.0 && after > 1.0 - 1e-6, "{after}");
    // Below the bound nothing changes, bit for bit.
    let before = values(&b.grad());
    let _ = clip_grad_norm(&params, 10.0).unwrap();
    assert_eq!(values(&b.grad()), before);
    // No gradients: norm 0.
    assert_eq!(f64::try_from(clip_grad_norm(&[param(&[1.0])], 1.0).unwrap()).unwrap(), 0.0);
}

#[test]
fn ema_of_a_constant_parameter_converges_geometrically() {
    let p = param(&[5.0, -1.0]);
    let mut ema = Ema::new(vec![("p".into(), p.shallow_clone())], 0.9).unwrap();
    // The parameter jumps to a constant; the average approaches it as 0.9^k.
    tch::no_grad(|| p.shallow_clone().copy_(&Tensor::from_slice(&[1.0f64, 1.0])));
    // Past the warm-up (from step 80 the decay is 0.9), as 0.9^k.
    for k in 1..=200 {
        ema.update(1000 + k as usize).unwrap();
        let got = values(&ema.weights()[0].1);
        let want = [1.0 + 4.0 * 0.9f64.powi(k), 1.0 - 2.0 * 0.9f64.powi(k)];
        assert!((got[0] - want[0]).abs() < 1e-12 && (got[1] - want[1]).abs() < 1e-12, "k = {k}: {got:?}");
    }
    assert!(values(&ema.weights()[0].1).iter().all(|v| (v - 1.0).abs() < 1e-8));
    assert!(Ema::new(vec![("p".into(), p.shallow_clone())], 1.0).is_err());
    assert!(Ema::new(vec![("p".into(), p)], -0.1).is_err());
}

#[test]
fn ema_warms_up_so_that_a_short_run_forgets_its_initial_weights() {
    let p = param(&[5.0]);
    let mut ema = Ema::new(vec![("p".into(), p.shallow_clone())], 0.999).unwrap();
    assert_eq!(ema.decay_at(1), 2.0 / 11.0);
    assert_eq!(ema.decay_at(1_000), 1001.0 / 1010.0);
    assert_eq!(ema.decay_at(1_000_000), 0.999);
    tch::no_grad(|| p.shallow_clone().copy_(&Tensor::from_slice(&[1.0f64])));
    let mut initial_share = 1.0;
    for k in 1..=1000 {
        ema.update(k).unwrap();
        initial_share *= ema.decay_at(k);
    }
    // The initial weight's share is the product of the decays: (2·3·…·10)/(1002·…·1010), about 4e-21.
    let got = values(&ema.weights()[0].1)[0];
    assert!((got - (1.0 + 4.0 * initial_share)).abs() < 1e-12 && initial_share < 1e-15, "{got} {initial_share}");
    // Without the warm-up it would be 0.999^1000 = 0.37 of it.
}

#[test]
fn ema_weights_go_into_a_model_and_round_trip_as_state() {
    tch::manual_seed(0);
    let cfg = MlpConfig { hidden_dim: 8, ..MlpConfig::default() };
    let mlp = Mlp::new(cfg.clone(), Device::Cpu).unwrap();
    let params = VelocityModel::named_parameters(&mlp);
    assert_eq!(params.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), cfg.parameter_shapes().into_iter().map(|(n, _)| n).collect::<Vec<_>>());
    let mut ema = Ema::new(params, 0.5).unwrap();
    let before = fm_model::checkpoint::to_bytes(&mlp, &Default::default()).unwrap();
    // Move the live weights; the EMA goes half-way.
    tch::no_grad(|| {
        for (_, mut p) in VelocityModel::named_parameters(&mlp) {
            let _ = p.f_add_scalar_(1.0).unwrap();
        }
    });
    ema.update(1000).unwrap();
    let averaged = ema.to_model(&mlp, Device::Cpu).unwrap();
    for ((_, a), (_, p)) in averaged.named_parameters().iter().zip(VelocityModel::named_parameters(&mlp)) {
        assert!(f64::try_from((a - (&p - 0.5)).abs().max()).unwrap() < 1e-6);
    }
    // State out, into a fresh EMA, then into the model.
    let state = ema.state().unwrap();
    let mut other = Ema::new(VelocityModel::named_parameters(&mlp), 0.5).unwrap();
    other.load_state(&state).unwrap();
    other.copy_to(&mlp).unwrap();
    assert_eq!(fm_model::checkpoint::to_bytes(&mlp, &Default::default()).unwrap(), fm_model::checkpoint::to_bytes(&*averaged, &Default::default()).unwrap());
    assert_ne!(fm_model::checkpoint::to_bytes(&mlp, &Default::default()).unwrap(), before);
    let wrong = Mlp::new(MlpConfig { hidden_dim: 4, ..cfg }, Device::Cpu).unwrap();
    assert!(ema.copy_to(&{ wrong }).unwrap_err().to_string().contains("shape"));
}

#[test]
fn logit_normal_times_lie_inside_with_the_right_median() {
    let n = 20_001;
    for (mean, std) in [(0.0, 1.0), (0.8, 1.5), (-1.0, 0.5)] {
        let mut t = vec![0f32; n];
        TimeSampling::LogitNormal { mean, std }.fill(&mut t, &mut StdRng::seed_from_u64(7));
        assert!(t.iter().all(|&v| v > 0.0 && v < 1.0));
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = t[n / 2] as f64;
        let m = 1.0 / (1.0 + (-mean).exp());
        // Standard error of a sample median: 1 / (2 f(m) √n), with f(m) = φ(0) / (std m (1 − m)).
        let se = std * m * (1.0 - m) / (2.0 * (1.0 / (2.0 * std::f64::consts::PI).sqrt()) * (n as f64).sqrt());
        assert!((median - m).abs() < 5.0 * se, "mean {mean}, std {std}: median {median}, want {m} ± {se}");
    }
    // Very wide laws still stay strictly inside (0, 1) in f32.
    let mut t = vec![0f32; 10_000];
    TimeSampling::LogitNormal { mean: 0.0, std: 60.0 }.fill(&mut t, &mut StdRng::seed_from_u64(8));
    assert!(t.iter().all(|&v| v > 0.0 && v < 1.0));
    assert!(t.contains(&TimeSampling::LOGIT_NORMAL_RANGE.1));
    let mut u = vec![0f32; 1000];
    TimeSampling::Uniform.fill(&mut u, &mut StdRng::seed_from_u64(9));
    assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)));
}

#[test]
fn stratified_times_put_one_time_in_each_stratum_of_the_batch() {
    let mut t = vec![0f32; 256];
    TimeSampling::Stratified.fill(&mut t, &mut StdRng::seed_from_u64(10));
    for (i, &v) in t.iter().enumerate() {
        assert!((i as f32 / 256.0..(i + 1) as f32 / 256.0).contains(&v) && v < 1.0, "row {i}: {v}");
    }
    // Not the same offsets every batch.
    let mut again = vec![0f32; 256];
    TimeSampling::Stratified.fill(&mut again, &mut StdRng::seed_from_u64(11));
    assert_ne!(t, again);
}

#[test]
fn quantiles_invert_each_time_law() {
    for u in [0.01, 0.3, 0.5, 0.9] {
        assert_eq!(TimeSampling::Uniform.quantile(u), u);
        assert_eq!(TimeSampling::Stratified.quantile(u), u);
    }
    // Logit-normal: F⁻¹(u) = sigmoid(mean + std Φ⁻¹(u)); the median is sigmoid(mean), and the
    // share of drawn times below F⁻¹(0.2) is 0.2 within 4 binomial standard errors.
    let law = TimeSampling::LogitNormal { mean: 0.8, std: 1.5 };
    assert!((law.quantile(0.5) - 1.0 / (1.0 + (-0.8f64).exp())).abs() < 1e-12);
    let mut t = vec![0f32; 20_000];
    law.fill(&mut t, &mut StdRng::seed_from_u64(12));
    let below = t.iter().filter(|&&v| (v as f64) < law.quantile(0.2)).count() as f64 / 20_000.0;
    assert!((below - 0.2).abs() < 4.0 * (0.2f64 * 0.8 / 20_000.0).sqrt(), "{below}");
}

#[test]
fn time_samplings_parse_and_serialize() {
    assert_eq!("logit-normal".parse::<TimeSampling>().unwrap(), TimeSampling::LogitNormal { mean: 0.0, std: 1.0 });
    assert_eq!("logit-normal:0.5, 2".parse::<TimeSampling>().unwrap(), TimeSampling::LogitNormal { mean: 0.5, std: 2.0 });
    assert_eq!("Uniform".parse::<TimeSampling>().unwrap(), TimeSampling::Uniform);
    for bad in ["beta", "logit-normal:1", "logit-normal:0,-1", "uniform:2", "stratified:2"] {
        assert!(bad.parse::<TimeSampling>().is_err(), "{bad}");
    }
    assert!("beta".parse::<TimeSampling>().unwrap_err().to_string().contains("uniform, stratified, logit-normal"));
    assert_eq!("stratified".parse::<TimeSampling>().unwrap(), TimeSampling::Stratified);
    assert!("stratified:3".parse::<TimeSampling>().is_err());
    let ln = TimeSampling::LogitNormal { mean: 0.5, std: 2.0 };
    assert_eq!(ln.to_string().parse::<TimeSampling>().unwrap(), ln);
    assert_eq!(serde_json::from_str::<TimeSampling>(r#"{"logit-normal":{}}"#).unwrap(), TimeSampling::logit_normal());
    assert_eq!(serde_json::from_str::<TimeSampling>(r#""uniform""#).unwrap(), TimeSampling::Uniform);
    assert_eq!(serde_json::to_string(&ln).unwrap(), r#"{"logit-normal":{"mean":0.5,"std":2.0}}"#);
    assert_eq!("AdamW".parse::<OptimizerKind>().unwrap(), OptimizerKind::AdamW);
    assert_eq!(serde_json::to_string(&OptimizerKind::AdamW).unwrap(), "\"adamw\"");
    assert!("sgd".parse::<OptimizerKind>().unwrap_err().to_string().contains("adam, adamw"));
}

/// A seed-shaped network (narrower) and a fixed batch for it.
fn small_model(seed: u64) -> (Mlp, [Tensor; 3]) {
    fm_model::with_torch_seed(seed, || {
        let mlp = Mlp::new(MlpConfig { hidden_dim: 16, ..MlpConfig::default() }, Device::Cpu).unwrap();
        let cpu = (Kind::Float, Device::Cpu);
        let batch = [Tensor::randn([64, 2], cpu), Tensor::rand([64, 1], cpu), Tensor::randn([64, 2], cpu)];
        (mlp, batch)
    })
}

fn loss(mlp: &Mlp, [x, t, u]: &[Tensor; 3]) -> Tensor {
    mlp.forward(x, t).unwrap().mse_loss(u, tch::Reduction::Mean)
}

fn grad_ptrs(opt: &Adam) -> Vec<usize> {
    opt.params().iter().map(|p| p.grad().data_ptr() as usize).collect()
}

#[test]
fn flat_buffers_keep_the_model_and_gradients_accumulate_in_place() {
    let (mlp, batch) = small_model(3);
    let bytes = fm_model::checkpoint::to_bytes(&mlp, &Default::default()).unwrap();
    let out = mlp.forward(&batch[0], &batch[1]).unwrap().detach();
    let mut opt = Adam::new(VelocityModel::named_parameters(&mlp), 1e-3).unwrap();
    assert!(opt.is_flat());
    // The parameters moved into one buffer with their values: the model (its layers and its
    // variable store alike) is the same network.
    assert_eq!(fm_model::checkpoint::to_bytes(&mlp, &Default::default()).unwrap(), bytes);
    assert!(mlp.forward(&batch[0], &batch[1]).unwrap().equal(&out));
    let ptrs: Vec<usize> = opt.params().iter().map(|p| p.data_ptr() as usize).collect();
    let sizes: Vec<usize> = opt.params().iter().map(|p| p.numel() * 4).collect();
    assert!(ptrs.windows(2).zip(&sizes).all(|(w, s)| w[1] == w[0] + s), "parameters are not back to back");

    // First pass: autograd allocates the gradients; the step moves them into the buffer.
    loss(&mlp, &batch).backward();
    let first: Vec<Vec<f64>> = opt.params().iter().map(|p| values(&p.grad())).collect();
    opt.step().unwrap();
    let slots = grad_ptrs(&opt);
    assert!(slots.windows(2).zip(&sizes).all(|(w, s)| w[1] == w[0] + s), "gradients are not back to back");
    for (p, g) in opt.params().iter().zip(&first) {
        assert_eq!(&values(&p.grad()), g);
    }
    // Later passes accumulate into those slots, as they did into per-tensor gradients.
    let mut twice = Vec::new();
    for _ in 0..2 {
        opt.zero_grad();
        assert_eq!(grad_ptrs(&opt), slots);
        assert!(opt.params().iter().all(|p| values(&p.grad()).iter().all(|&g| g == 0.0)));
        loss(&mlp, &batch).backward();
        loss(&mlp, &batch).backward();
        assert_eq!(grad_ptrs(&opt), slots);
        twice = opt.params().iter().map(|p| values(&p.grad())).collect();
    }
    opt.zero_grad();
    loss(&mlp, &batch).backward();
    for (p, g2) in opt.params().iter().zip(&twice) {
        let g: Vec<f64> = values(&p.grad()).iter().map(|g| 2.0 * g).collect();
        assert_eq!(&g, g2);
    }
    // The state is exported under the same names and shapes as before.
    let state = opt.state().unwrap();
    for ((name, p), (key, m)) in VelocityModel::named_parameters(&mlp).iter().zip(&state[1..]) {
        assert_eq!(key, &format!("exp_avg.{name}"));
        assert_eq!(m.size(), p.size());
    }
}

/// `steps` updates of `mlp` on `batch`, clipped, with an EMA; returns the weights, the
/// optimizer state and the average, as checkpoint bytes.
fn trajectory(mlp: &Mlp, batch: &[Tensor; 3], kind: OptimizerKind, per_tensor: bool, steps: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut opt = Adam::new(VelocityModel::named_parameters(mlp), 3e-2).unwrap();
    opt.kind = kind;
    opt.weight_decay = 0.05;
    if per_tensor {
        // Parameters moved out of the buffer after the optimizer was made: it goes tensor by tensor.
        tch::no_grad(|| {
            for (_, mut p) in VelocityModel::named_parameters(mlp) {
                let copy = p.detach_copy();
                p.set_data(&copy);
            }
        });
    }
    assert_eq!(opt.is_flat(), !per_tensor);
    let mut ema = Ema::new(VelocityModel::named_parameters(mlp), 0.8).unwrap();
    // The average is one tensor exactly when the parameters are (it is updated in one operation).
    assert_eq!(format!("{ema:?}").contains("flat: true"), !per_tensor);
    for k in 0..steps {
        opt.zero_grad();
        loss(mlp, batch).backward();
        let _ = opt.clip_grad_norm(if k % 2 == 0 { 0.05 } else { 1e3 }).unwrap();
        opt.step().unwrap();
        ema.update(k + 1).unwrap();
    }
    let bytes = |named: Vec<(String, Tensor)>| fm_model::checkpoint::encode_safetensors(&named, &Default::default()).unwrap();
    (fm_model::checkpoint::to_bytes(mlp, &Default::default()).unwrap(), bytes(opt.state().unwrap()), bytes(ema.state().unwrap()))
}

#[test]
fn flat_and_per_tensor_updates_agree_bit_for_bit() {
    for kind in [OptimizerKind::Adam, OptimizerKind::AdamW] {
        let (a, batch) = small_model(5);
        let (b, _) = small_model(5);
        let flat = trajectory(&a, &batch, kind, false, 12);
        let per_tensor = trajectory(&b, &batch, kind, true, 12);
        assert!(flat == per_tensor, "{kind}: the flat update differs from the per-tensor one");
    }
}

#[test]
fn flat_adam_leaves_parameters_without_gradient_alone() {
    let (a, b) = (param(&[1.0, -0.5, 2.0]), param(&[3.0, 4.0]));
    let mut opt = Adam::new(vec![("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())], 0.1).unwrap();
    assert!(opt.is_flat());
    set_grad(&a, &GRADS[0]);
    opt.step().unwrap();
    assert_eq!(values(&b), [3.0, 4.0]);
    let want = reference_steps(&[1.0, -0.5, 2.0], &GRADS[..1], 0.1, 0.0, false);
    assert!(values(&a).iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-14));
    // Once both have gradients the flat update takes over, from the same moments.
    set_grad(&a, &GRADS[1]);
    (&b * 0.0).sum(Kind::Double).backward();
    opt.step().unwrap();
    let want = reference_steps(&[1.0, -0.5, 2.0], &GRADS[..2], 0.1, 0.0, false);
    assert!(values(&a).iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-14));
    assert_eq!(opt.step_count(), 2);
    // A tensor given twice cannot be two slots of one buffer: per tensor then.
    let c = param(&[1.0]);
    assert!(!Adam::new(vec![("x".into(), c.shallow_clone()), ("y".into(), c.shallow_clone())], 0.1).unwrap().is_flat());
}
