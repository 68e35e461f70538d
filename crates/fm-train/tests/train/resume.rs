//! Checkpoints and resuming: an interrupted run resumed from its checkpoint bytes ends with
//! the same weights as one that ran through; the stop flag; divergence keeps the last good
//! checkpoint.

use fm_dist::{GaussianMixture, StandardNormal};
use fm_model::{Mlp, MlpConfig, VelocityModel};
use fm_train::checkpoint::{state_from_bytes, state_to_bytes};
use fm_train::{
    load_state, save_state, train_resumable, train_with_state, Checkpoint, Coupling, Error, LrSchedule, OptimizerKind, ProbabilityPath, Resume, TrainConfig,
    TrainHooks, TrainOutcome,
};
use std::sync::atomic::{AtomicBool, Ordering};
use tch::Device;

fn model(seed: u64) -> Mlp {
    model_for(seed, &TrainConfig::default())
}

/// The network `cfg`'s objective trains (MeanFlow's takes two times).
fn model_for(seed: u64, cfg: &TrainConfig) -> Mlp {
    // A conditional run on the seed's mixture: its 3 classes.
    let classes = if cfg.condition == fm_train::ConditionOn::Labels { 3 } else { 0 };
    let config = MlpConfig { hidden_dim: 32, time_inputs: cfg.objective.time_inputs(), classes, ..MlpConfig::default() };
    fm_model::with_torch_seed(seed, || Mlp::new(config, Device::Cpu)).unwrap()
}

fn weights(mlp: &(impl VelocityModel + ?Sized)) -> Vec<u8> {
    fm_model::checkpoint::to_bytes(mlp, &Default::default()).unwrap()
}

/// AdamW, cosine decay after a warm-up, an EMA, OT pairs and a noisy path.
fn rich(steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 32,
        lr: 3e-3,
        seed: 11,
        path: ProbabilityPath::Icfm { sigma: 0.1 },
        coupling: Coupling::Ot,
        optimizer: OptimizerKind::AdamW,
        weight_decay: 0.01,
        lr_schedule: LrSchedule::Cosine { min_lr: 1e-4 },
        warmup_steps: 5,
        max_grad_norm: Some(1.0),
        ema_decay: Some(0.9),
        report_every: 7,
        checkpoint_every: 10,
        ..TrainConfig::default()
    }
}

fn plain(steps: usize) -> TrainConfig {
    TrainConfig { steps, batch_size: 32, lr: 1e-3, seed: 4, report_every: 7, checkpoint_every: 10, ..TrainConfig::default() }
}

/// Runs `cfg` (from `resume` if given), keeping every checkpoint's bytes by step.
fn run(
    mlp: &mut (impl VelocityModel + ?Sized),
    cfg: &TrainConfig,
    resume: Option<Resume>,
    stop: Option<&AtomicBool>,
    stop_at: Option<usize>,
) -> (fm_train::Result<TrainOutcome>, Vec<(usize, Vec<u8>)>) {
    let (t, s) = (GaussianMixture::seed(), StandardNormal::new(2).unwrap());
    let mut saved = Vec::new();
    let mut on_checkpoint = |c: &Checkpoint<'_>| -> fm_train::Result<()> {
        saved.push((c.step, state_to_bytes(c, &Default::default())?));
        Ok(())
    };
    let mut on_progress = |p: &fm_train::Progress| {
        if let (Some(flag), Some(at)) = (stop, stop_at) {
            if p.step == at {
                flag.store(true, Ordering::SeqCst);
            }
        }
    };
    let out = train_resumable(mlp, &t, &s, cfg, resume, TrainHooks { on_progress: &mut on_progress, on_checkpoint: Some(&mut on_checkpoint), stop });
    (out, saved)
}

fn resume_from(bytes: &[u8]) -> (fm_model::Network, Resume) {
    let loaded = state_from_bytes(bytes, Device::Cpu).unwrap();
    (loaded.model, Resume { step: loaded.step, state: loaded.state })
}

fn check_resume_is_exact(cfg: TrainConfig) {
    // Straight through, with checkpoints, and without any hook: the same weights.
    let mut straight = model_for(1, &cfg);
    let (out, saved) = run(&mut straight, &cfg, None, None, None);
    let out = out.unwrap();
    assert_eq!((out.step, out.stopped), (60, false));
    assert_eq!(saved.iter().map(|s| s.0).collect::<Vec<_>>(), [10, 20, 30, 40, 50, 60]);
    let mut no_hooks = model_for(1, &cfg);
    train_with_state(&mut no_hooks, &GaussianMixture::seed(), &StandardNormal::new(2).unwrap(), &cfg, &mut |_| {}).unwrap();
    assert_eq!(weights(&straight), weights(&no_hooks), "checkpointing changed the run");

    // 30 steps, then everything from the step-30 checkpoint bytes alone.
    let (_, at30) = saved.iter().find(|s| s.0 == 30).unwrap();
    let (mut resumed, resume) = resume_from(at30);
    assert_eq!(resume.step, 30);
    let (out2, saved2) = run(&mut *resumed, &cfg, Some(resume), None, None);
    assert_eq!(out2.unwrap().step, 60);
    assert_eq!(saved2.iter().map(|s| s.0).collect::<Vec<_>>(), [40, 50, 60]);
    assert_eq!(weights(&*resumed), weights(&straight), "the resumed run's last iterate differs");
    // The final checkpoints (weights, Adam moments and step, EMA, metadata) are the same bytes.
    assert!(saved2.last().unwrap().1 == saved.last().unwrap().1, "final checkpoints differ");
}

#[test]
fn resuming_from_the_checkpoint_bytes_gives_the_same_weights_with_adamw_cosine_ema_ot_icfm() {
    check_resume_is_exact(rich(60));
}

#[test]
fn resuming_from_the_checkpoint_bytes_gives_the_same_weights_with_adam() {
    check_resume_is_exact(plain(60));
}

/// MeanFlow's step (a Jacobian-vector product, two time columns) resumes bit for bit too.
#[test]
fn resuming_a_meanflow_run_gives_the_same_weights() {
    check_resume_is_exact(TrainConfig { objective: fm_train::ObjectiveChoice::meanflow(), path: ProbabilityPath::Linear, ..rich(60) });
}

/// Maximum likelihood's step (backpropagation through the solver, OT pairs unused) resumes bit
/// for bit too.
#[test]
fn resuming_a_likelihood_run_gives_the_same_weights() {
    check_resume_is_exact(TrainConfig {
        objective: "likelihood:1".parse().unwrap(),
        path: ProbabilityPath::Linear,
        coupling: Coupling::Independent,
        ..rich(60)
    });
}

/// A conditional run (class labels, condition dropout, OT within classes, a noisy path)
/// resumes bit for bit: the dropout and the class split are drawn from each step's generator.
#[test]
fn resuming_a_conditional_run_gives_the_same_weights() {
    check_resume_is_exact(TrainConfig { condition: fm_train::ConditionOn::Labels, coupling: Coupling::OtClass, cond_drop: 0.3, ..rich(60) });
}

#[test]
fn the_stop_flag_checkpoints_the_step_and_the_run_resumes_exactly() {
    let cfg = TrainConfig { report_every: 1, ..rich(60) };
    let mut straight = model(2);
    let (out, saved) = run(&mut straight, &cfg, None, None, None);
    out.unwrap();

    let flag = AtomicBool::new(false);
    let mut stopped = model(2);
    let (out, saved_a) = run(&mut stopped, &cfg, None, Some(&flag), Some(23));
    let out = out.unwrap();
    assert!(out.stopped);
    assert_eq!((out.step, out.report.steps), (23, 23));
    assert_eq!(saved_a.last().unwrap().0, 23, "the stop must checkpoint the step it finished");
    assert_eq!(out.report.loss_history.last().unwrap().0, 23);

    let (mut resumed, resume) = resume_from(&saved_a.last().unwrap().1);
    assert_eq!(resume.step, 23);
    let (out, saved_b) = run(&mut *resumed, &cfg, Some(resume), None, None);
    assert!(!out.unwrap().stopped);
    assert_eq!(weights(&*resumed), weights(&straight));
    assert!(saved_b.last().unwrap().1 == saved.last().unwrap().1, "final checkpoints differ");
}

#[test]
fn a_non_finite_loss_names_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = std::env::temp_dir().join(format!("fm-train-nan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(fm_train::STATE_FILE);
    let (t, s) = (GaussianMixture::seed(), StandardNormal::new(2).unwrap());
    let mut written = Vec::new();
    let mut save = |c: &Checkpoint<'_>| -> fm_train::Result<()> {
        written.push(c.step);
        save_state(&path, c, &Default::default())
    };
    let cfg = TrainConfig { checkpoint_every: 5, ..plain(10) };
    let mut mlp = model(3);
    train_resumable(&mut mlp, &t, &s, &cfg, None, TrainHooks { on_progress: &mut |_| {}, on_checkpoint: Some(&mut save), stop: None }).unwrap();
    assert_eq!(written, [5, 10]);
    let good = std::fs::read(&path).unwrap();

    // Continue with an absurd learning rate: the weights blow up, the loss follows.
    let loaded = load_state(&path, Device::Cpu).unwrap();
    assert_eq!(loaded.step, 10);
    let mut mlp = loaded.model;
    let wild = TrainConfig { lr: 1e30, steps: 30, ..cfg.clone() };
    let mut save = |c: &Checkpoint<'_>| -> fm_train::Result<()> { save_state(&path, c, &Default::default()) };
    let err = train_resumable(
        &mut *mlp,
        &t,
        &s,
        &wild,
        Some(Resume { step: 10, state: loaded.state }),
        TrainHooks { on_progress: &mut |_| {}, on_checkpoint: Some(&mut save), stop: None },
    )
    .unwrap_err();
    let Error::Diverged { step, .. } = err else { panic!("expected Diverged, got {err}") };
    assert_eq!(step, 14, "the first report window (every 7 steps) after the blow-up");
    assert!(err.to_string().contains("at step 14"), "{err}");
    assert!(std::fs::read(&path).unwrap() == good, "the last good checkpoint was touched");
    let again = load_state(&path, Device::Cpu).unwrap();
    assert_eq!(again.step, 10);
    assert!(std::fs::read_dir(&dir).unwrap().count() == 1, "a temporary file was left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn checkpoints_refuse_nan_weights_and_bad_bytes_are_errors() {
    let cfg = plain(10);
    let mut mlp = model(5);
    let (out, saved) = run(&mut mlp, &cfg, None, None, None);
    let state = out.unwrap().state;
    let w = mlp.var_store().variables().remove("net.0.weight").unwrap();
    let _ = tch::no_grad(|| w.get(0).get(0).fill_(f64::NAN));
    let c = Checkpoint { step: 10, model: &mlp, state: &state, cfg: &cfg, loss: 1.0, finished: true };
    assert!(matches!(state_to_bytes(&c, &Default::default()), Err(Error::Diverged { step: 10, .. })));

    let good = &saved.last().unwrap().1;
    for cut in [0, 7, 100, good.len() / 2, good.len() - 1] {
        let err = state_from_bytes(&good[..cut], Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("training checkpoint"), "{err}");
    }
    // Nor is a model file written from NaN weights.
    let err = fm_model::checkpoint::to_bytes(&mlp, &Default::default()).unwrap_err().to_string();
    assert!(err.contains("parameter 'net.0.weight' holds NaN or infinite values"), "{err}");
    let model_file = fm_model::checkpoint::to_bytes(&model(5), &Default::default()).unwrap();
    let err = state_from_bytes(&model_file, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("format 'fm-rs/mlp' is not fm-rs/train-state"), "{err}");
    let loaded = state_from_bytes(good, Device::Cpu).unwrap();
    assert_eq!((loaded.step, &loaded.train), (10, &cfg));
    assert_eq!(loaded.metadata["format"], "fm-rs/train-state");
}

#[test]
fn resuming_past_the_end_is_refused_and_a_finished_run_checkpoints_again() {
    let cfg = plain(10);
    let mut mlp = model(6);
    let (out, saved) = run(&mut mlp, &cfg, None, None, None);
    out.unwrap();
    let (mut m, resume) = resume_from(&saved.last().unwrap().1);
    let (out, again) = run(&mut *m, &cfg, Some(resume), None, None);
    assert_eq!(out.unwrap().step, 10);
    assert!(again.len() == 1 && again[0].1 == saved.last().unwrap().1);
    let (mut m, resume) = resume_from(&saved.last().unwrap().1);
    let err = run(&mut *m, &TrainConfig { steps: 5, ..cfg }, Some(resume), None, None).0.unwrap_err().to_string();
    assert!(err.contains("cannot resume at step 10"), "{err}");
}

/// A training state whose model config outgrows its tensors is refused before the model is
/// built (it was built first: 2²⁰-wide layers asked libtorch for 4 TiB, a panic).
#[test]
fn a_state_whose_config_outgrows_its_tensors_is_refused() {
    let mlp = model(1);
    let cfg = plain(10);
    let state = fm_train::TrainState::new(&mlp, &cfg).unwrap();
    let good = state_to_bytes(&Checkpoint { step: 0, model: &mlp, state: &state, cfg: &cfg, loss: 0.0, finished: false }, &Default::default()).unwrap();
    let edit = |from: &str, to: &str| {
        let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&good[8..8 + n]).unwrap();
        assert!(header.contains(from), "{from} is not in {header}");
        let header = header.replacen(from, to, 1);
        let bytes = [&(header.len() as u64).to_le_bytes()[..], header.as_bytes(), &good[8 + n..]].concat();
        state_from_bytes(&bytes, Device::Cpu).unwrap_err().to_string()
    };
    // Sizes a network may have, but this file does not hold.
    for (from, to) in [(r#"hidden_dim\":32"#, r#"hidden_dim\":8192"#), (r#"hidden_layers\":3"#, r#"hidden_layers\":1000"#)] {
        let err = edit(from, to);
        assert!(err.contains("has more parameters than the file holds"), "{to}: {err}");
    }
    // Sizes no network may have (MlpConfig::MAX_PARAMETERS).
    for (from, to) in [(r#"hidden_dim\":32"#, r#"hidden_dim\":1048576"#), (r#"hidden_layers\":3"#, r#"hidden_layers\":4294967296"#)] {
        let err = edit(from, to);
        assert!(err.contains("more than the 268435456 allowed"), "{to}: {err}");
    }
    let err = edit(r#"hidden_dim\":32"#, r#"hidden_dim\":31"#);
    assert!(err.contains("'net.0.weight' has shape [32, 3], the model's is [31, 3]"), "{err}");
}

/// A network the library does not know: `v = W_2 tanh(W_1 [x, t])`, on autograd alone.
struct TanhNet {
    vs: tch::nn::VarStore,
    hidden: tch::nn::Linear,
    out: tch::nn::Linear,
    width: i64,
}

impl TanhNet {
    fn new(seed: u64, width: i64) -> Self {
        fm_model::with_torch_seed(seed, || {
            let vs = tch::nn::VarStore::new(Device::Cpu);
            let hidden = tch::nn::linear(vs.root() / "hidden", 3, width, Default::default());
            let out = tch::nn::linear(vs.root() / "out", width, 2, Default::default());
            Self { vs, hidden, out, width }
        })
    }
}

impl fm_model::VelocityModel for TanhNet {
    fn forward(&self, x: &tch::Tensor, t: &tch::Tensor) -> fm_model::Result<tch::Tensor> {
        use tch::nn::Module;
        Ok(self.out.forward(&self.hidden.forward(&tch::Tensor::f_cat(&[x, t], 1)?).tanh()))
    }
    fn dim(&self) -> usize {
        2
    }
    fn device(&self) -> Device {
        self.vs.device()
    }
    fn named_parameters(&self) -> Vec<(String, tch::Tensor)> {
        fm_model::var_store_parameters(&self.vs)
    }
    fn architecture(&self) -> fm_model::Architecture {
        fm_model::Architecture { kind: "test/tanh-net".into(), config: format!("{{\"width\":{}}}", self.width) }
    }
}

impl fm_ode::VectorField for TanhNet {
    fn velocity(&self, x: &tch::Tensor, t: f64) -> fm_ode::Result<tch::Tensor> {
        fm_model::velocity_at(self, x, t)
    }
}

fn params(m: &impl fm_model::VelocityModel) -> Vec<tch::Tensor> {
    m.named_parameters().into_iter().map(|(_, t)| t.detach().copy()).collect()
}

/// A model from outside the library trains (its loss falls), resumes from its checkpoint bit
/// for bit, and its weights round-trip through a checkpoint; a checkpoint of another
/// architecture is refused naming both.
#[test]
fn a_custom_model_trains_resumes_and_round_trips() {
    let cfg = TrainConfig { report_every: 50, checkpoint_every: 100, ..rich(200) };
    let (t, s) = (GaussianMixture::seed(), StandardNormal::new(2).unwrap());
    let mut straight = TanhNet::new(3, 32);
    let dir = std::env::temp_dir().join(format!("fm-custom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state_path = dir.join("state.safetensors");
    let mut save = |c: &Checkpoint<'_>| -> fm_train::Result<()> {
        if c.step == 100 {
            save_state(&state_path, c, &Default::default())?;
        }
        Ok(())
    };
    let out = train_resumable(&mut straight, &t, &s, &cfg, None, TrainHooks { on_progress: &mut |_| {}, on_checkpoint: Some(&mut save), stop: None }).unwrap();
    let history = &out.report.loss_history;
    assert!(history.last().unwrap().1 < 0.8 * history[0].1, "the loss did not fall: {history:?}");

    let mut resumed = TanhNet::new(99, 32);
    let loaded = fm_train::load_state_into(&resumed, &state_path).unwrap();
    assert_eq!(loaded.step, 100);
    let resume = Some(Resume { step: loaded.step, state: loaded.state });
    train_resumable(&mut resumed, &t, &s, &cfg, resume, TrainHooks { on_progress: &mut |_| {}, on_checkpoint: None, stop: None }).unwrap();
    for (a, b) in params(&straight).iter().zip(params(&resumed)) {
        assert!(a.equal(&b), "the resumed run differs from the uninterrupted one");
    }

    let path = dir.join("model.safetensors");
    fm_model::checkpoint::save(&straight, &path, &Default::default()).unwrap();
    let reloaded = TanhNet::new(5, 32);
    fm_model::checkpoint::load_into(&reloaded, &path).unwrap();
    for (a, b) in params(&straight).iter().zip(params(&reloaded)) {
        assert!(a.equal(&b));
    }
    let err = fm_model::checkpoint::load_into(&TanhNet::new(5, 16), &path).unwrap_err().to_string();
    assert!(err.contains("\"width\":32") && err.contains("\"width\":16"), "{err}");
    let err = fm_train::load_state_into(&TanhNet::new(5, 16), &state_path).unwrap_err().to_string();
    assert!(err.contains("test/tanh-net") && err.contains("\"width\":16"), "{err}");
    let err = fm_train::load_state_into(&model(1), &state_path).unwrap_err().to_string();
    assert!(err.contains("fm-rs/mlp"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A model whose `named_parameters` hands out copies would train nothing: refused, not run.
#[test]
fn a_model_that_hands_out_copies_of_its_parameters_is_refused() {
    struct Copies(TanhNet);
    impl fm_model::VelocityModel for Copies {
        fn forward(&self, x: &tch::Tensor, t: &tch::Tensor) -> fm_model::Result<tch::Tensor> {
            fm_model::VelocityModel::forward(&self.0, x, t)
        }
        fn dim(&self) -> usize {
            2
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn named_parameters(&self) -> Vec<(String, tch::Tensor)> {
            fm_model::VelocityModel::named_parameters(&self.0).into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
        }
        fn architecture(&self) -> fm_model::Architecture {
            fm_model::VelocityModel::architecture(&self.0)
        }
    }
    impl fm_ode::VectorField for Copies {
        fn velocity(&self, x: &tch::Tensor, t: f64) -> fm_ode::Result<tch::Tensor> {
            fm_model::velocity_at(self, x, t)
        }
    }
    let (t, s) = (GaussianMixture::seed(), StandardNormal::new(2).unwrap());
    let err = fm_train::train(&mut Copies(TanhNet::new(1, 8)), &t, &s, &plain(5), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("named_parameters"), "{err}");
}
