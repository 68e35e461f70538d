//! Measures training configurations on the seed experiment (N(0, I) → the 3-component
//! mixture; the seed ReLU network unless the candidate names another) by the figures `fm run` reports: W2 excess over the noise
//! floor and the log-density gap, and KL(target ‖ model) from fm-ode's likelihood (5,000
//! target points, RK4 with 100 steps from t = 1 to 0, exact divergence) (10,000 samples, 100 Euler steps, W2 on 2,000 points × 5: `SampleQuality`).
//!
//! ```text
//! cargo run --release -p fm-train --example presets -- seed fast [--seeds 0,1,2]
//! cargo run --release -p fm-train --example presets -- --list
//! ```

use fm_dist::{metrics::SampleQuality, GaussianMixture, StandardNormal, Target};
use fm_model::{Mlp, MlpConfig};
use fm_ode::{log_likelihood, standard_normal_log_prob, LikelihoodOptions, Method, TimeGrid};
use fm_train::{sample, train, Coupling, LrSchedule, SampleConfig, TimeSampling, TrainConfig};
use rand::{rngs::StdRng, SeedableRng};
use tch::Device;

/// The candidates: the presets, and variations of `fast` on one setting each.
fn candidates() -> Vec<(&'static str, TrainConfig, MlpConfig)> {
    let fast = TrainConfig::preset("fast").unwrap();
    // The presets with their own networks; every other candidate is on the seed's ReLU network.
    let mut all: Vec<_> = training_candidates().into_iter().map(|(n, c)| (n, c, fm_train::Preset::named(n).map(|p| p.model).unwrap_or_default())).collect();
    for (name, model) in [
        ("fast-relu", MlpConfig::default()),
        ("fast-te8", MlpConfig { time_embedding: 8, ..MlpConfig::default() }),
        ("fast-te16", MlpConfig { time_embedding: 16, ..MlpConfig::default() }),
        ("fast-te32", MlpConfig { time_embedding: 32, ..MlpConfig::default() }),
        ("fast-silu", MlpConfig { activation: fm_model::Activation::Silu, ..MlpConfig::default() }),
        ("fast-silu-te16", MlpConfig { activation: fm_model::Activation::Silu, time_embedding: 16, ..MlpConfig::default() }),
    ] {
        all.push((name, fast.clone(), model));
    }
    let silu = MlpConfig { activation: fm_model::Activation::Silu, ..MlpConfig::default() };
    all.push(("fast-silu-ema9995", TrainConfig { ema_decay: Some(0.9995), ..fast.clone() }, silu.clone()));
    all.push(("fast-silu-ot", TrainConfig { coupling: Coupling::Ot, ..fast.clone() }, silu.clone()));
    // Where the field error over t (fm eval --checkpoint) points: less noise from the times, more capacity.
    let gelu = fm_train::Preset::named("fast").unwrap().model;
    let stratified = TrainConfig { time_sampling: TimeSampling::Stratified, ..fast.clone() };
    all.push(("fast-stratified", stratified.clone(), gelu.clone()));
    all.push(("fast-w256", fast.clone(), MlpConfig { hidden_dim: 256, ..gelu.clone() }));
    all.push(("fast-w256-stratified", stratified.clone(), MlpConfig { hidden_dim: 256, ..gelu.clone() }));
    all.push(("fast-w256-stratified-lr1e-3", TrainConfig { lr: 1e-3, ..stratified.clone() }, MlpConfig { hidden_dim: 256, ..gelu.clone() }));
    all.push(("fast-w512-stratified", stratified.clone(), MlpConfig { hidden_dim: 512, ..gelu.clone() }));
    all.push(("fast-l4-stratified", stratified, MlpConfig { hidden_layers: 4, ..gelu }));
    all
}

/// Training settings on the seed network.
fn training_candidates() -> Vec<(&'static str, TrainConfig)> {
    let fast = TrainConfig::preset("fast").unwrap();
    let cosine = |lr: f64, warmup: usize, ema: Option<f64>| TrainConfig {
        lr,
        lr_schedule: LrSchedule::Cosine { min_lr: 0.0 },
        warmup_steps: warmup,
        ema_decay: ema,
        ..TrainConfig::default()
    };
    vec![
        ("seed", TrainConfig::preset("seed").unwrap()),
        ("fast", fast.clone()),
        ("cos2e-3", cosine(2e-3, 500, None)),
        ("cos2e-3-ema", cosine(2e-3, 500, Some(0.999))),
        ("cos1e-3-ema", cosine(1e-3, 500, Some(0.999))),
        ("cos3e-3-ema", cosine(3e-3, 500, Some(0.999))),
        ("cos2e-3-ema-nowarm", cosine(2e-3, 0, Some(0.999))),
        ("cos2e-3-ema9995", cosine(2e-3, 500, Some(0.9995))),
        ("fast-ot", TrainConfig { coupling: Coupling::Ot, ..fast.clone() }),
        ("fast-b512", TrainConfig { steps: 5000, batch_size: 512, warmup_steps: 250, ema_decay: Some(0.998), ..fast.clone() }),
        ("fast-b512-ot", TrainConfig { steps: 5000, batch_size: 512, warmup_steps: 250, ema_decay: Some(0.998), coupling: Coupling::Ot, ..fast.clone() }),
        ("fast-logitnormal", TrainConfig { time_sampling: TimeSampling::logit_normal(), ..fast.clone() }),
        ("fast-clip1", TrainConfig { max_grad_norm: Some(1.0), ..fast.clone() }),
        ("fast-b128", TrainConfig { steps: 20_000, batch_size: 128, warmup_steps: 1000, ema_decay: Some(0.9995), ..fast.clone() }),
        ("fast-b128-ema999", TrainConfig { steps: 20_000, batch_size: 128, warmup_steps: 1000, ..fast.clone() }),
        ("fast-b64", TrainConfig { steps: 40_000, batch_size: 64, warmup_steps: 2000, ema_decay: Some(0.99975), ..fast.clone() }),
        ("fast-ot-b128", TrainConfig { steps: 20_000, batch_size: 128, warmup_steps: 1000, ema_decay: Some(0.9995), coupling: Coupling::Ot, ..fast.clone() }),
        ("fast-adamw", TrainConfig { optimizer: fm_train::OptimizerKind::AdamW, weight_decay: 1e-4, ..fast.clone() }),
    ]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = candidates();
    if args.iter().any(|a| a == "--list") {
        for (name, cfg, model) in &all {
            println!("{name}: {} {model:?}", serde_json_like(cfg));
        }
        return Ok(());
    }
    let mut seeds = vec![0u64];
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--seeds" {
            seeds = it.next().ok_or("--seeds needs a list")?.split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>()?;
        } else {
            names.push(a.clone());
        }
    }
    let target = GaussianMixture::seed();
    let source = StandardNormal::new(2)?;
    // The same target points for every candidate: KL differences are paired.
    let kl_points = target.sample(5000, &mut StdRng::seed_from_u64(12_345));
    let log_p = target.log_prob(kl_points.view())?;
    let kl_x = fm_train::array_to_tensor(kl_points.view(), Device::Cpu)?;
    let grid = TimeGrid::uniform(1.0, 0.0, 100)?;
    println!(
        "{:<22} {:>4} {:>7} {:>9} {:>7} {:>7} {:>8} {:>8} {:>7} {:>8} {:>7}",
        "candidate", "seed", "train_s", "couple_ms", "w2", "w2_ref", "w2_exc", "lp_gap", "share", "kl", "kl_se"
    );
    for name in &names {
        let (_, cfg, model) = all.iter().find(|(n, _, _)| n == name).ok_or_else(|| format!("unknown candidate {name}"))?;
        for &seed in &seeds {
            let cfg = TrainConfig { seed, ..cfg.clone() };
            let mut mlp = fm_model::with_torch_seed(seed, || Mlp::new(model.clone(), Device::Cpu))?;
            let report = train(&mut mlp, &target, &source, &cfg, &mut |_| {})?;
            let samples = sample(&mlp, &source, &SampleConfig { seed: seed.wrapping_add(1), ..SampleConfig::default() })?;
            let q = SampleQuality::measure(
                &target,
                samples.view(),
                SampleQuality::W2_POINTS,
                SampleQuality::W2_DRAWS,
                &mut StdRng::seed_from_u64(seed.wrapping_add(2)),
            )?;
            let lik = log_likelihood(&mlp, &kl_x, &grid, Method::Rk4, &LikelihoodOptions::default())?;
            let log_q = fm_train::tensor_to_array(&lik.log_prob(standard_normal_log_prob)?.reshape([-1, 1]))?.column(0).to_owned();
            let diff = &log_p - &log_q;
            let kl = diff.mean().unwrap();
            let kl_se = diff.std(1.0) / (diff.len() as f64).sqrt();
            println!(
                "{:<22} {:>4} {:>7.1} {:>9.3} {:>7.4} {:>7.4} {:>8.4} {:>8.4} {:>7.3} {:>8.4} {:>7.4}",
                name,
                seed,
                report.seconds,
                1e3 * report.coupling_seconds / report.steps as f64,
                q.w2,
                q.w2_reference,
                q.w2_excess(),
                q.log_prob_gap().unwrap_or(f64::NAN),
                q.max_share_error().unwrap_or(f64::NAN),
                kl,
                kl_se
            );
        }
    }
    Ok(())
}

fn serde_json_like(cfg: &TrainConfig) -> String {
    format!("{cfg:?}")
}
