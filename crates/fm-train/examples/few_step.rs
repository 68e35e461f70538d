//! The few-step report of the README: quality against network evaluations (NFE) for the seed's
//! flow-matching model, OT-CFM, rectified flow (1-RF, 2-RF, 3-RF), 2-RF distilled into one step,
//! and MeanFlow, on `gmm3`, `8gaussians`, `moons` and `checkerboard`.
//!
//! Every model is the library's `Mlp` trained with `fm_train::train_on`; flows are sampled by
//! Euler steps (as the rectified-flow paper does), MeanFlow by jumps of its average velocity,
//! the distilled map by its one step. Per (method, NFE), on 10,000 samples: W2 excess over
//! the floor of two true sets (2,000 points × 5 draws, component counts matched for mixtures),
//! the largest component-share error (mixtures) and the mean log-density gap (targets with a
//! density) — the seed experiment's figures —, whether they meet the seed experiment's bar, and
//! the sampling rate (samples per second of that generation). Budgets are training samples (steps × 256,
//! teachers included) and seconds on this machine (teacher pairs' solves included).
//!
//! ```text
//! cargo xtask few-step [args]        # or:
//! cargo run --release -p fm-train --example few_step -- [--targets gmm3,8gaussians,moons,checkerboard] [--methods NAME,..] [--pairs 100000] [--steps 10000] [--meanflow-ratio 0.5]
//! ```

use fm_dist::metrics::SampleQuality;
use fm_dist::{parse_target, Target};
use fm_model::{copy_parameters, Mlp, MlpConfig, VelocityModel};
use fm_ode::Method;
use fm_train::{draw_pairs, train_on, Coupling, DataUnits, Generator, ObjectiveChoice, Pairs, SampleConfig, TrainConfig, TrainHooks, TrainingData};
use rand::{rngs::StdRng, SeedableRng};
use std::time::Instant;
use tch::Device;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const NFES: [usize; 5] = [1, 2, 4, 8, 100];

/// A trained model and what it cost.
struct Trained {
    mlp: Mlp,
    generator: Generator,
    /// Training samples, teachers included.
    samples: usize,
    /// Seconds, teachers and pairs included.
    seconds: f64,
}

fn network(dim: usize, objective: ObjectiveChoice, init: Option<&Mlp>) -> Res<Mlp> {
    let cfg = MlpConfig { dim, time_inputs: objective.time_inputs(), ..fm_train::Preset::named("fast")?.model };
    let mlp = fm_model::with_torch_seed(0, || Mlp::new(cfg, Device::Cpu))?;
    if let Some(init) = init {
        copy_parameters(&mlp, &init.named_parameters())?;
    }
    Ok(mlp)
}

fn fit(mut mlp: Mlp, data: TrainingData<'_>, cfg: &TrainConfig) -> Res<(Mlp, f64)> {
    let t0 = Instant::now();
    let out = train_on(&mut mlp, data, cfg, None, TrainHooks { on_progress: &mut |_| {}, on_checkpoint: None, stop: None })?;
    out.state.apply_ema(&mlp)?;
    Ok((mlp, t0.elapsed().as_secs_f64()))
}

/// The teacher's pairs: `n` source points and their images by RK4 with 50 steps (200 NFE).
fn pairs_of(teacher: &Mlp, source: &dyn Target, n: usize) -> Res<(Pairs, f64)> {
    let t0 = Instant::now();
    let cfg = SampleConfig { n_samples: n, steps: 50, method: Method::Rk4, seed: 12_345, ..SampleConfig::default() };
    Ok((draw_pairs(teacher, source, &cfg)?, t0.elapsed().as_secs_f64()))
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let targets = value("--targets").unwrap_or_else(|| "gmm3,8gaussians,moons,checkerboard".into());
    let wanted = value("--methods");
    let n_pairs: usize = value("--pairs").map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let ratio: f64 = value("--meanflow-ratio").map(|s| s.parse()).transpose()?.unwrap_or(0.5);
    let steps: usize = value("--steps").map(|s| s.parse()).transpose()?.unwrap_or(10_000);
    let want = |name: &str| wanted.as_ref().is_none_or(|w| w.split(',').any(|n| n == name));
    let fast = TrainConfig { steps, warmup_steps: steps / 20, ..TrainConfig::preset("fast")? };
    let batch = fast.batch_size;
    println!("stages of {steps} steps × {batch}; reflow pairs: {n_pairs} by RK4-50; quality on 10,000 samples (W2: 2,000 points × 5 draws)");
    println!(
        "{:<13} {:<18} {:>10} {:>7} {:>4} {:>9} {:>8} {:>8} {:>10} {:>4} {:>7}",
        "target", "method", "samples", "seconds", "NFE", "W2 exc.", "share", "log gap", "samples/s", "bar", "W2²"
    );
    for name in targets.split(',') {
        // `SOURCE-TARGET` (8gaussians-moons, as C2OT's Fig. 1), else from N(0, I).
        let (source_name, target_name) = name.split_once('-').unwrap_or(("normal", name));
        let target = parse_target(target_name)?;
        let d = target.dim();
        let source = if source_name == "normal" { parse_target(&format!("normal:{d}"))? } else { parse_target(source_name)? };
        let draw = TrainingData::Draw { target: target.as_ref(), source: source.as_ref() };
        let mut rows: Vec<(String, Trained)> = Vec::new();
        if want("FM (seed)") {
            let cfg = TrainConfig { steps, ..TrainConfig::default() };
            let mlp = fm_model::with_torch_seed(0, || Mlp::new(MlpConfig { dim: d, ..MlpConfig::default() }, Device::Cpu))?;
            let (mlp, seconds) = fit(mlp, draw, &cfg)?;
            rows.push(("FM (seed)".into(), Trained { mlp, generator: Generator::Flow, samples: steps * batch, seconds }));
        }
        if want("OT-CFM") {
            let (mlp, seconds) = fit(network(d, ObjectiveChoice::flow_matching(), None)?, draw, &TrainConfig { coupling: Coupling::Ot, ..fast.clone() })?;
            rows.push(("OT-CFM".into(), Trained { mlp, generator: Generator::Flow, samples: steps * batch, seconds }));
        }
        if ["1-RF", "2-RF", "2-RF distilled", "3-RF"].iter().any(|m| want(m)) {
            // 1-RF is flow matching (the fast preset); k-RF starts from (k−1)-RF's weights and trains on its pairs.
            let (rf1, s1) = fit(network(d, ObjectiveChoice::flow_matching(), None)?, draw, &fast)?;
            let (pairs1, p1) = pairs_of(&rf1, source.as_ref(), n_pairs)?;
            let (rf2, s2) = fit(network(d, ObjectiveChoice::flow_matching(), Some(&rf1))?, TrainingData::Pairs(&pairs1), &fast)?;
            let (pairs2, p2) = pairs_of(&rf2, source.as_ref(), n_pairs)?;
            let (distilled, s3) = fit(
                network(d, ObjectiveChoice::distill(), Some(&rf2))?,
                TrainingData::Pairs(&pairs2),
                &TrainConfig { objective: ObjectiveChoice::distill(), ..fast.clone() },
            )?;
            let (rf3, s4) = if want("3-RF") {
                fit(network(d, ObjectiveChoice::flow_matching(), Some(&rf2))?, TrainingData::Pairs(&pairs2), &fast)?
            } else {
                (network(d, ObjectiveChoice::flow_matching(), None)?, 0.0)
            };
            let b = steps * batch;
            for (name, mlp, generator, samples, seconds) in [
                ("1-RF", rf1, Generator::Flow, b, s1),
                ("2-RF", rf2, Generator::Flow, 2 * b, s1 + p1 + s2),
                ("2-RF distilled", distilled, Generator::OneStep, 3 * b, s1 + p1 + s2 + p2 + s3),
                ("3-RF", rf3, Generator::Flow, 3 * b, s1 + p1 + s2 + p2 + s4),
            ] {
                if want(name) {
                    rows.push((name.into(), Trained { mlp, generator, samples, seconds }));
                }
            }
        }
        for (label, k) in [("MeanFlow", 1), ("MeanFlow 3×", 3)] {
            if want(label) {
                let objective = ObjectiveChoice::new(fm_train::objective::MeanFlow { ratio });
                let cfg = TrainConfig { steps: k * steps, warmup_steps: k * steps / 20, objective: objective.clone(), ..fast.clone() };
                let (mlp, seconds) = fit(network(d, objective, None)?, draw, &cfg)?;
                rows.push((label.into(), Trained { mlp, generator: Generator::AverageVelocity, samples: k * steps * batch, seconds }));
            }
        }
        for (method, t) in &rows {
            for nfe in NFES {
                if t.generator == Generator::OneStep && nfe > 1 {
                    continue;
                }
                let cfg = SampleConfig { n_samples: 10_000, steps: nfe, method: Method::Euler, ..SampleConfig::default() };
                let t0 = Instant::now();
                let x = DataUnits { field: &t.mlp, source: source.as_ref(), map: None, path: fm_train::ProbabilityPath::Linear }
                    .generate(&fm_train::Request::new(t.generator, &cfg))?
                    .points;
                let rate = cfg.n_samples as f64 / t0.elapsed().as_secs_f64();
                let q = SampleQuality::measure(target.as_ref(), x.view(), 2000, 5, &mut StdRng::seed_from_u64(7))?;
                let opt = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
                // The seed experiment's bar: shares within 0.03, log-density within 0.15 nats, W2 excess at most 0.20.
                let meets = q.w2_excess() <= 0.20 && q.max_share_error().is_none_or(|e| e <= 0.03) && q.log_prob_gap().is_none_or(|g| g.abs() <= 0.15);
                println!(
                    "{:<13} {:<18} {:>10} {:>7.1} {:>4} {:>9.3} {:>8} {:>8} {:>10.0} {:>4} {:>7.3}",
                    name,
                    method,
                    t.samples,
                    t.seconds,
                    nfe,
                    q.w2_excess(),
                    opt(q.max_share_error()),
                    opt(q.log_prob_gap()),
                    rate,
                    if meets { "yes" } else { "no" },
                    q.w2 * q.w2
                );
            }
        }
    }
    Ok(())
}
