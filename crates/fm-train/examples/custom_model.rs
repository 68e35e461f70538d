//! A velocity-field network the library has never seen, trained, sampled, evaluated,
//! checkpointed and resumed with the same library calls `fm` uses.
//!
//! The model is a residual MLP with layer norm, `v(x, t) = W_out · (h + Σ_k f_k(LN(h)))` with
//! `h = W_in [x, t]` and `f_k = W_2 · SiLU(W_1 ·)`, defined here on `tch::nn`: all the library
//! asks of it is [`VelocityModel`] (its forward pass, parameters, device and architecture) and
//! [`VectorField`] for sampling (one line, [`velocity_at`]). Training takes autograd's gradients,
//! since the model offers no written-out backward pass.
//!
//! ```text
//! cargo run --release -p fm-train --example custom_model
//! ```

use anyhow::Result;
use fm_dist::parse_target;
use fm_model::{checkpoint, var_store_parameters, velocity_at, Architecture, VelocityModel};
use fm_ode::VectorField;
use fm_train::{kl_estimate, load_state_into, sample, save_state, Checkpoint, LikelihoodConfig, Resume, SampleConfig, TrainConfig, TrainHooks};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// The residual MLP's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ResConfig {
    dim: usize,
    width: usize,
    blocks: usize,
}

struct ResMlp {
    vs: nn::VarStore,
    config: ResConfig,
    input: nn::Linear,
    blocks: Vec<(nn::LayerNorm, nn::Linear, nn::Linear)>,
    output: nn::Linear,
}

impl ResMlp {
    fn new(config: ResConfig, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let w = config.width as i64;
        let input = nn::linear(&root / "input", config.dim as i64 + 1, w, Default::default());
        let blocks = (0..config.blocks)
            .map(|k| {
                let b = &root / format!("block{k}");
                (
                    nn::layer_norm(&b / "norm", vec![w], Default::default()),
                    nn::linear(&b / "fc1", w, 2 * w, Default::default()),
                    nn::linear(&b / "fc2", 2 * w, w, Default::default()),
                )
            })
            .collect();
        let output = nn::linear(&root / "output", w, config.dim as i64, Default::default());
        Self { vs, config, input, blocks, output }
    }
}

impl VelocityModel for ResMlp {
    fn forward(&self, x: &Tensor, t: &Tensor) -> fm_model::Result<Tensor> {
        let mut h = self.input.forward(&Tensor::f_cat(&[x, t], 1)?);
        for (norm, fc1, fc2) in &self.blocks {
            h = &h + fc2.forward(&fc1.forward(&norm.forward(&h)).silu());
        }
        Ok(self.output.forward(&h))
    }
    fn dim(&self) -> usize {
        self.config.dim
    }
    fn device(&self) -> Device {
        self.vs.device()
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        var_store_parameters(&self.vs)
    }
    fn architecture(&self) -> Architecture {
        Architecture { kind: "example/res-mlp".into(), config: serde_json::to_string(&self.config).unwrap_or_default() }
    }
}

impl VectorField for ResMlp {
    fn velocity(&self, x: &Tensor, t: f64) -> fm_ode::Result<Tensor> {
        velocity_at(self, x, t)
    }
}

fn build(seed: u64) -> ResMlp {
    fm_model::with_torch_seed(seed, || ResMlp::new(ResConfig { dim: 2, width: 64, blocks: 2 }, Device::Cpu))
}

fn main() -> Result<()> {
    let target = parse_target("8gaussians")?;
    let source = parse_target("normal:2")?;
    let cfg = TrainConfig { steps: 8000, batch_size: 256, lr: 1e-3, ema_decay: Some(0.999), checkpoint_every: 4000, ..TrainConfig::default() };
    let dir = std::env::temp_dir().join(format!("fm-custom-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let state_path = dir.join(fm_train::STATE_FILE);

    // One run straight through, checkpointing its state every 4,000 steps.
    let mut model = build(7);
    let mut save = |c: &Checkpoint<'_>| -> fm_train::Result<()> {
        if c.step == 4000 {
            save_state(&state_path, c, &Default::default())?;
        }
        Ok(())
    };
    let hooks = TrainHooks { on_progress: &mut |_| {}, on_checkpoint: Some(&mut save), stop: None };
    let outcome = fm_train::train_resumable(&mut model, target.as_ref(), source.as_ref(), &cfg, None, hooks)?;
    println!(
        "trained a {}-parameter residual MLP with layer norm: {} steps in {:.1} s, final loss {:.4}",
        model.named_parameters().iter().map(|(_, t)| t.numel()).sum::<usize>(),
        outcome.report.steps,
        outcome.report.seconds,
        outcome.report.final_loss
    );

    // The same run resumed from its step-4,000 checkpoint, into a freshly built model.
    let mut resumed = build(99);
    let loaded = load_state_into(&resumed, &state_path)?;
    let resume = Some(Resume { step: loaded.step, state: loaded.state });
    let hooks = TrainHooks { on_progress: &mut |_| {}, on_checkpoint: None, stop: None };
    let _ = fm_train::train_resumable(&mut resumed, target.as_ref(), source.as_ref(), &cfg, resume, hooks)?;
    let same = model.named_parameters().iter().zip(resumed.named_parameters()).all(|((_, a), (_, b))| a.equal(&b));
    println!("resumed from step {}: final weights {} the uninterrupted run's", loaded.step, if same { "equal, bit for bit," } else { "DIFFER from" });
    anyhow::ensure!(same, "the resumed run differs from the uninterrupted one");

    // Sample and judge the EMA weights, then write and read them back as a checkpoint.
    outcome.state.apply_ema(&model)?;
    let samples = sample(&model, source.as_ref(), &SampleConfig { n_samples: 2000, ..SampleConfig::default() })?;
    let truth = target.sample(2000, &mut rand::rngs::StdRng::seed_from_u64(1));
    let w2 = fm_dist::metrics::w2(samples.view(), truth.view())?;
    let floor = fm_dist::metrics::w2(target.sample(2000, &mut rand::rngs::StdRng::seed_from_u64(2)).view(), truth.view())?;
    let kl = kl_estimate(target.as_ref(), &model, source.as_ref(), 1000, &LikelihoodConfig::default(), &mut rand::rngs::StdRng::seed_from_u64(3))?;
    println!("EMA model: W2 {w2:.4} to 2,000 true points (two true sets: {floor:.4}); {kl}");

    let path = dir.join("model.safetensors");
    checkpoint::save(&model, &path, &Default::default())?;
    let reloaded = build(5);
    checkpoint::load_into(&reloaded, &path)?;
    let x = Tensor::randn([8, 2], (Kind::Float, Device::Cpu));
    let same = model.velocity(&x, 0.3)?.equal(&reloaded.velocity(&x, 0.3)?);
    println!("checkpoint {} read back into a new model: velocities {}", path.display(), if same { "equal" } else { "DIFFER" });
    anyhow::ensure!(same, "the reloaded model differs");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
