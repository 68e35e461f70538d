//! A new objective defined outside fm-train, through public calls only: shortcut models
//! (Frans et al. 2024, "One Step Diffusion via Shortcut Models", arXiv:2410.12557), trained,
//! sampled in 1, 2 and 4 steps, and checkpointed.
//!
//! A shortcut model `s(x_t, t, d)` is the average velocity over `[t, t + d]`, the same quantity
//! as MeanFlow's `u(x, r, t)` in our time convention (`r = t`, the end `t + d`): fm's average-
//! velocity network (two time inputs, the start and the end) and its jumps serve it unchanged.
//! What differs is the training target. A share of each batch learns flow matching (`d = 0`,
//! target `x1 − x0` on the straight path); the rest learns self-consistency: for `d = 2^-k`,
//! `s(x_t, t, 2d) = ½ [s(x_t, t, d) + s(x'_{t+d}, t + d, d)]` with `x'_{t+d} = x_t + d s(x_t, t, d)`,
//! the right side computed by the current network without gradient (the paper's Eq. 5).
//!
//! The objective is one `impl Objective` and one `register` call: after it, `"shortcut"` and
//! `"shortcut:0.25"` are valid wherever an objective is named (run files, `ObjectiveChoice`).
//!
//! ```text
//! cargo run --release -p fm-train --example shortcut
//! ```

use fm_dist::metrics::SampleQuality;
use fm_dist::{parse_target, Target};
use fm_model::{checkpoint, Activation, Mlp, MlpConfig, VelocityModel};
use fm_train::objective::{self, Batch, BatchLoss, Objective};
use fm_train::{train, DataUnits, Generator, ObjectiveChoice, ProbabilityPath, Request, SampleConfig, TrainConfig};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Shortcut models' objective: `consistency` of each batch's rows learn self-consistency, the
/// rest flow matching.
#[derive(Debug, Clone, Copy)]
struct Shortcut {
    consistency: f64,
}

/// The smallest step `d` of the self-consistency rows, `2^-MAX_LEVEL` (the paper's 1/128).
const MAX_LEVEL: i32 = 7;

impl Shortcut {
    fn build(arg: Option<&str>) -> fm_train::Result<Arc<dyn Objective>> {
        let consistency = match arg {
            None => 0.25,
            Some(a) => a.parse().map_err(|_| fm_train::Error::Config(format!("objective shortcut takes a share in [0, 1], got '{a}'")))?,
        };
        if !(0.0..=1.0).contains(&consistency) {
            return Err(fm_train::Error::Config(format!("objective shortcut: the share must be in [0, 1], got {consistency}")));
        }
        Ok(Arc::new(Shortcut { consistency }))
    }
}

impl Objective for Shortcut {
    fn spelling(&self) -> String {
        format!("shortcut:{}", self.consistency)
    }
    fn generator(&self) -> Generator {
        Generator::AverageVelocity
    }
    fn time_inputs(&self) -> usize {
        2
    }
    /// The end time of each row: `t` (flow matching) or `t + 2d`.
    fn extra_len(&self, _cfg: &TrainConfig, n: usize, _d: usize) -> usize {
        n
    }
    fn draw(&self, _cfg: &TrainConfig, times: &mut [f32], ends: &mut [f32], rng: &mut dyn rand::RngCore) {
        for (t, end) in times.iter_mut().zip(ends.iter_mut()) {
            if rng.random::<f64>() < self.consistency {
                // 2d = 2^-k, k in 0..MAX_LEVEL, and the start where the interval fits in [0, 1].
                let two_d = 0.5f32.powi(rng.random_range(0..MAX_LEVEL));
                *t *= 1.0 - two_d;
                *end = *t + two_d;
            } else {
                *end = *t;
            }
        }
    }
    fn loss(&self, model: &dyn VelocityModel, _cfg: &TrainConfig, b: &Batch) -> fm_train::Result<BatchLoss> {
        let t = &b.t;
        let end = b.extra.view_as(t);
        let xt = &b.x0 * (1.0 - t) + &b.x1 * t;
        let flow = &b.x1 - &b.x0;
        // Self-consistency: two half jumps of the current network, without gradient.
        let target = tch::no_grad(|| -> fm_model::Result<Tensor> {
            let half = (&end - t) / 2.0;
            let mid = t + &half;
            let first = model.forward(&xt, &Tensor::cat(&[t, &mid], 1))?;
            let x_mid = &xt + &first * &half;
            let second = model.forward(&x_mid, &Tensor::cat(&[&mid, &end], 1))?;
            Ok((first + second) / 2.0)
        })?;
        let consistent = end.gt_tensor(t).to_kind(Kind::Float);
        let target: Tensor = &target * &consistent + &flow * (1.0 - &consistent);
        Ok(BatchLoss::Regression { inputs: xt, times: Tensor::cat(&[t, &end], 1), target: target.detach() })
    }
}

/// "gap ± se / excess ± se" of 10,000 samples in `steps` jumps.
fn judge(model: &Mlp, target: &dyn Target, source: &dyn Target, steps: usize) -> Res<(String, ndarray::Array2<f64>)> {
    let units = DataUnits { field: model, source, map: None, path: ProbabilityPath::Linear };
    let sample = SampleConfig { steps, ..SampleConfig::default() };
    let x = units.generate(&Request::new(Generator::AverageVelocity, &sample))?.points;
    let q = SampleQuality::measure(target, x.view(), 2000, 5, &mut rand::rngs::StdRng::seed_from_u64(7))?;
    let gap = q.reference_mean_log_prob.zip(q.mean_log_prob).map_or(f64::NAN, |(r, m)| r - m);
    Ok((format!("{gap:+.3} ± {:.3} / {:+.3} ± {:.3}", q.log_prob_gap_se.unwrap_or(f64::NAN), q.w2 - q.w2_reference, q.w2_excess_se), x))
}

fn main() -> Res<()> {
    objective::register("shortcut", Shortcut::build, "shortcut[:SHARE]")?;
    let objective: ObjectiveChoice = "shortcut".parse()?;
    let target = parse_target("gmm3")?;
    let source = parse_target("normal:2")?;
    // The fast preset's budget and schedule, with shortcut models' objective.
    let preset = fm_train::Preset::named("fast")?;
    let cfg = TrainConfig { objective: objective.clone(), ..preset.train };
    let mut model = fm_model::with_torch_seed(0, || {
        Mlp::new(MlpConfig { dim: 2, time_inputs: objective.time_inputs(), activation: Activation::Gelu, ..preset.model }, Device::Cpu)
    })?;
    let report = train(&mut model, target.as_ref(), source.as_ref(), &cfg, &mut |_| {})?;
    println!("trained `{objective}` (10,000 × 256, fast preset settings) in {:.1} s, final loss {:.4}", report.seconds, report.final_loss);
    println!("\n| jumps | log-density gap / W2 excess (10,000 samples of gmm3) |\n|---|---|");
    let mut first = None;
    for steps in [1, 2, 4] {
        let (cell, x) = judge(&model, target.as_ref(), source.as_ref(), steps)?;
        println!("| {steps} | {cell} |");
        first.get_or_insert(x);
    }
    // The checkpoint records the architecture; read back into a fresh network, it samples the same points.
    let dir = std::env::temp_dir().join(format!("fm-shortcut-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("model.safetensors");
    checkpoint::save(&model, &path, &Default::default())?;
    let reloaded = Mlp::new(model.config().clone(), Device::Cpu)?;
    checkpoint::load_into(&reloaded, &path)?;
    let (_, again) = judge(&reloaded, target.as_ref(), source.as_ref(), 1)?;
    let same = first.as_ref() == Some(&again);
    println!(
        "\ncheckpoint {}: read back into a fresh network, its one-jump samples are {}",
        path.display(),
        if same { "the same, bit for bit" } else { "DIFFERENT" }
    );
    std::fs::remove_dir_all(&dir)?;
    if !same {
        return Err("the checkpoint did not read back".into());
    }
    Ok(())
}
