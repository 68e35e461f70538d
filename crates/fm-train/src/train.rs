//! The training loop.

use crate::optim::Adam;
use crate::{Error, ProbabilityPath, Result};
use fm_dist::Target;
use fm_model::Mlp;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Kind, Reduction, Tensor};

/// How to train; `Default` is the seed experiment (10,000 steps of 256, Adam 1e-4, straight paths).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Seeds the data stream (source, target and time draws).
    pub seed: u64,
    pub path: ProbabilityPath,
    /// Report the mean loss (and check it is finite) every this many steps.
    pub report_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { steps: 10_000, batch_size: 256, lr: 1e-4, seed: 0, path: ProbabilityPath::Linear, report_every: 100 }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::Config("steps must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::Config(format!("learning rate must be a positive number, got {}", self.lr)));
        }
        if self.report_every == 0 {
            return Err(Error::Config("report_every must be at least 1".into()));
        }
        Ok(())
    }
}

/// A progress report, every `report_every` steps and at the end.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub step: usize,
    pub total_steps: usize,
    /// Mean loss over the steps since the previous report.
    pub loss: f64,
    pub elapsed_s: f64,
}

/// What a finished run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub steps: usize,
    /// Mean loss over the last reporting window.
    pub final_loss: f64,
    pub seconds: f64,
    pub steps_per_s: f64,
    /// `(step, mean loss over the window ending there)`.
    pub loss_history: Vec<(usize, f64)>,
}

/// Trains `mlp` to carry `source` to `target` by flow matching.
///
/// Each step draws `x0 ~ source`, `x1 ~ target` and `t ~ U(0, 1)` from one generator seeded by
/// `cfg.seed` (so the data are the same on every device), builds `x_t` and `u_t` from
/// `cfg.path`, and takes an Adam step on the mean squared error `|v(x_t, t) − u_t|²`.
pub fn train(mlp: &mut Mlp, target: &dyn Target, source: &dyn Target, cfg: &TrainConfig, on_progress: &mut dyn FnMut(&Progress)) -> Result<TrainReport> {
    cfg.validate()?;
    let dim = mlp.config().dim;
    if target.dim() != dim || source.dim() != dim {
        return Err(Error::Config(format!("dimension mismatch: model {dim}-D, target {}-D, source {}-D", target.dim(), source.dim())));
    }
    let device = mlp.device();
    let params = mlp.var_store().trainable_variables();
    let mut opt = Adam::new(params, cfg.lr)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let (n, d) = (cfg.batch_size, dim);
    let mut host = vec![0f32; n * (2 * d + 1)];
    let mut window = Tensor::f_zeros([], (Kind::Float, device))?;
    let mut window_start = 0;
    let mut history = Vec::new();
    let start = Instant::now();
    for step in 1..=cfg.steps {
        // One host buffer [x0 | x1 | t] and one copy to the device per step.
        let x0 = source.sample(n, &mut rng);
        let x1 = target.sample(n, &mut rng);
        for (dst, src) in host.iter_mut().zip(x0.iter().chain(x1.iter())) {
            *dst = *src as f32;
        }
        for v in &mut host[2 * n * d..] {
            *v = rng.random::<f32>();
        }
        let batch = Tensor::from_slice(&host).f_to_device(device)?;
        let x0 = batch.f_narrow(0, 0, (n * d) as i64)?.f_view([n as i64, d as i64])?;
        let x1 = batch.f_narrow(0, (n * d) as i64, (n * d) as i64)?.f_view([n as i64, d as i64])?;
        let t = batch.f_narrow(0, (2 * n * d) as i64, n as i64)?.f_view([n as i64, 1])?;
        let (xt, ut) = cfg.path.interpolate(&x0, &x1, &t)?;
        let loss = mlp.forward(&xt, &t)?.f_mse_loss(&ut, Reduction::Mean)?;
        opt.backward_step(&loss)?;
        window = window.f_add(&loss.f_detach()?)?;
        if step % cfg.report_every == 0 || step == cfg.steps {
            let mean = f64::try_from(&window)? / (step - window_start) as f64;
            if !mean.is_finite() {
                return Err(Error::Diverged { step, loss: mean });
            }
            history.push((step, mean));
            window = window.f_zero_()?;
            window_start = step;
            on_progress(&Progress { step, total_steps: cfg.steps, loss: mean, elapsed_s: start.elapsed().as_secs_f64() });
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(TrainReport { steps: cfg.steps, final_loss: history.last().map_or(f64::NAN, |h| h.1), seconds, steps_per_s: cfg.steps as f64 / seconds, loss_history: history })
}
