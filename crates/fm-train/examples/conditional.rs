//! The conditional report of the README and docs/conditional.md: class-conditional flow
//! matching judged class by class against the exact class densities, a classifier-free
//! guidance sweep, and C2OT's 8gaussians → moons experiment.
//!
//! 1. Per class, for each mixture target (and the checkerboard, whose classes are its squares):
//!    the `fast` preset conditioned on the class labels at the seed's budget (10,000 × 256),
//!    then per class `KL(p(·|c) ‖ q(·|c))` from the exact likelihood on 4,000 fresh class samples,
//!    W2 to 2,000 fresh class samples beside the floor of two true sets, and the purity (share
//!    of samples whose most probable class is `c`) beside the true samples'. The unconditional
//!    model (the "no condition" entry) is judged by KL as today.
//! 2. Guidance sweep on gmm3 and 8gaussians: w = 0, 1, 1.5, 2, 3, 5; mean and largest per-class
//!    KL and mean purity against w.
//! 3. C2OT's Fig. 1 (Cheng & Schwing 2025): 8gaussians → moons conditioned on the moon; W2²
//!    after one Euler step and with dopri5, for independent pairs, condition-blind OT and C2OT;
//!    their settings (MLP 128 × 3, Adam 3e-4, 20,000 steps of 256, no condition dropout), our
//!    OT on each batch of 256 (theirs on batches of 1,024), W2² exact on 2,000 points.
//!
//! ```text
//! cargo xtask conditional [args]     # or:
//! cargo run --release -p fm-train --example conditional -- [--targets gmm3,8gaussians,25gaussians,checkerboard] [--steps 10000] [--c2ot-steps 20000] [--skip-c2ot]
//! ```

use fm_dist::{parse_target, Target};
use fm_model::{Mlp, MlpConfig};
use fm_ode::Method;
use fm_train::{class_quality, ConditionOn, Coupling, LikelihoodConfig, SampleConfig, TrainConfig, TrainHooks, TrainingData};
use rand::{rngs::StdRng, SeedableRng};
use std::time::Instant;
use tch::Device;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SCALES: [f64; 6] = [0.0, 1.0, 1.5, 2.0, 3.0, 5.0];

/// A conditional network trained on `target`'s labels from `source` with `cfg`; and its seconds.
fn train(target: &dyn Target, source: &dyn Target, model: MlpConfig, cfg: &TrainConfig) -> Res<(Mlp, f64)> {
    let model = MlpConfig { dim: target.dim(), classes: target.classes(), ..model };
    let mut mlp = fm_model::with_torch_seed(cfg.seed, || Mlp::new(model, Device::Cpu))?;
    let t0 = Instant::now();
    let out = fm_train::train_on(
        &mut mlp,
        TrainingData::Draw { target, source },
        cfg,
        None,
        TrainHooks { on_progress: &mut |_| {}, on_checkpoint: None, stop: None },
    )?;
    out.state.apply_ema(&mlp)?;
    Ok((mlp, t0.elapsed().as_secs_f64()))
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let targets = value("--targets").unwrap_or_else(|| "gmm3,8gaussians,25gaussians,checkerboard".into());
    let steps: usize = value("--steps").map(|s| s.parse()).transpose()?.unwrap_or(10_000);
    let c2ot_steps: usize = value("--c2ot-steps").map(|s| s.parse()).transpose()?.unwrap_or(20_000);
    let preset = fm_train::Preset::named("fast")?;
    let fast = TrainConfig { steps, warmup_steps: steps / 20, condition: ConditionOn::Labels, ..preset.train.clone() };
    let likelihood = LikelihoodConfig::default();
    let sample = SampleConfig::default();
    let (kl_points, w2_points) = (4000, 2000);

    println!("## Per class (fast preset conditioned on the labels, {steps} steps × {}, cond-drop {})\n", fast.batch_size, fast.cond_drop);
    println!("KL on {kl_points} fresh class samples (exact likelihood, RK4 {} steps); W2 on {w2_points} samples by {} Euler steps; purity: share whose most probable class is c.\n", likelihood.steps, sample.steps);
    println!("| target | class | KL(p(·∣c) ‖ q(·∣c)) | W2 | W2 floor | purity | true purity |");
    println!("|---|---|---|---|---|---|---|");
    let mut sweep_models = Vec::new();
    for name in targets.split(',') {
        let target = parse_target(name)?;
        let source = parse_target(&format!("normal:{}", target.dim()))?;
        let (mlp, seconds) = train(target.as_ref(), source.as_ref(), preset.model.clone(), &fast)?;
        let mut rng = StdRng::seed_from_u64(1);
        let mut worst = (0.0f64, 0.0f64);
        for class in 0..target.classes() {
            let q = class_quality(
                &fm_train::DataUnits { field: &mlp, source: source.as_ref(), map: None, path: fm_train::ProbabilityPath::Linear },
                target.as_ref(),
                class,
                &fm_train::Request::new(fm_train::Generator::Flow, &sample),
                w2_points,
                kl_points,
                &likelihood,
                &mut rng,
            )?;
            let kl = q.kl.as_ref().map_or("–".into(), |k| format!("{:.4} ± {:.4}", k.kl, k.kl_se));
            let (p, tp) = (q.purity.unwrap_or(f64::NAN), q.true_purity.unwrap_or(f64::NAN));
            worst = (worst.0.max(q.kl.as_ref().map_or(0.0, |k| k.kl)), worst.1.max((p - tp).abs()));
            println!("| {name} | {class} | {kl} | {:.4} | {:.4} | {p:.4} | {tp:.4} |", q.w2, q.w2_floor);
        }
        let unconditional = if target.has_density() {
            let kl = fm_train::kl_estimate(target.as_ref(), &mlp, source.as_ref(), kl_points, &likelihood, &mut rng)?;
            format!("{:.4} ± {:.4}", kl.kl, kl.kl_se)
        } else {
            "–".into()
        };
        println!("| {name} | all (no condition) | {unconditional} | | | | |");
        eprintln!("{name}: trained in {seconds:.1} s; largest class KL {:.4}, largest purity gap {:.4}", worst.0, worst.1);
        if matches!(name, "gmm3" | "8gaussians") {
            sweep_models.push((name.to_string(), target, source, mlp));
        }
    }

    println!("\n## Guidance sweep (classifier-free guidance v = v_∅ + w (v_c − v_∅), the models above)\n");
    println!("| target | w | mean class KL | largest class KL | mean purity | true purity |");
    println!("|---|---|---|---|---|---|");
    for (name, target, source, mlp) in &sweep_models {
        for w in SCALES {
            let mut rng = StdRng::seed_from_u64(2);
            let rows: Vec<_> = (0..target.classes())
                .map(|c| {
                    class_quality(
                        &fm_train::DataUnits { field: mlp, source: source.as_ref(), map: None, path: fm_train::ProbabilityPath::Linear },
                        target.as_ref(),
                        c,
                        &fm_train::Request::new(fm_train::Generator::Flow, &sample).guided(w),
                        w2_points,
                        kl_points,
                        &likelihood,
                        &mut rng,
                    )
                })
                .collect::<Result<_, _>>()?;
            let k = rows.len() as f64;
            let kls: Vec<f64> = rows.iter().map(|q| q.kl.as_ref().map_or(f64::NAN, |k| k.kl)).collect();
            let mean = |f: &dyn Fn(&fm_train::ClassQuality) -> f64| rows.iter().map(f).sum::<f64>() / k;
            println!(
                "| {name} | {w} | {:.4} | {:.4} | {:.4} | {:.4} |",
                kls.iter().sum::<f64>() / k,
                kls.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                mean(&|q| q.purity.unwrap_or(f64::NAN)),
                mean(&|q| q.true_purity.unwrap_or(f64::NAN))
            );
        }
    }

    if args.iter().any(|a| a == "--skip-c2ot") {
        return Ok(());
    }
    println!("\n## C2OT's 8gaussians → moons, conditioned on the moon ({c2ot_steps} steps × 256, Adam 3e-4, MLP 128 × 3)\n");
    println!("W2² exact on 2,000 points (classes in the true set's counts); floor: two true sets.\n");
    println!("| coupling | W2² 1 Euler step | W2² dopri5 | dopri5 NFE | seconds | paper (1-step / adaptive) |");
    println!("|---|---|---|---|---|---|");
    let (source, target) = (parse_target("8gaussians")?, parse_target("moons")?);
    let mut rng = StdRng::seed_from_u64(3);
    let truth = target.sample_conditioned(2000, &mut rng);
    let other = target.sample(2000, &mut rng);
    let labels = truth.labels.clone().unwrap_or_default();
    let floor = fm_dist::metrics::w2(truth.points.view(), other.view())?.powi(2);
    for (coupling, paper) in [(Coupling::Independent, "2.573 / 0.059"), (Coupling::Ot, "0.483 / 0.462"), (Coupling::c2ot(), "0.048 / 0.018")] {
        let cfg = TrainConfig { steps: c2ot_steps, lr: 3e-4, coupling, condition: ConditionOn::Labels, cond_drop: 0.0, seed: 0, ..TrainConfig::default() };
        let (mlp, seconds) = train(target.as_ref(), source.as_ref(), MlpConfig::default(), &cfg)?;
        // Each class sampled as many times as the true set holds it, then W2² against that set.
        let w2_by = |method: Method, steps: usize| -> Res<f64> {
            let mut parts = Vec::new();
            for c in 0..target.classes() {
                let n = labels.iter().filter(|&&l| l == c).count();
                let cfg = SampleConfig { n_samples: n, steps, method, seed: 10 + c as u64, ..SampleConfig::default() };
                let units = fm_train::DataUnits { field: &mlp, source: source.as_ref(), map: None, path: fm_train::ProbabilityPath::Linear };
                parts.push(units.generate(&fm_train::Request::new(fm_train::Generator::Flow, &cfg).given(fm_train::Condition::Class(c)))?.points);
            }
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            let x = ndarray::concatenate(ndarray::Axis(0), &views)?;
            Ok(fm_dist::metrics::w2(x.view(), truth.points.view())?.powi(2))
        };
        let one = w2_by(Method::Euler, 1)?;
        let adaptive = w2_by(Method::Dopri5, 1)?;
        let nfe = {
            let x0 = fm_train::array_to_tensor(source.sample(256, &mut StdRng::seed_from_u64(4)).view(), Device::Cpu)?;
            let guided = fm_train::Guided::new(&mlp, Some(0), None, 1.0)?;
            let grid = fm_ode::TimeGrid::uniform(0.0, 1.0, 1)?;
            fm_ode::solve(&guided, &x0, &grid, Method::Dopri5, SampleConfig::default().solve_options())?.nfe
        };
        println!("| {} | {one:.4} | {adaptive:.4} | {nfe} | {seconds:.0} | {paper} |", coupling.name());
    }
    println!("| (two true sets) | {floor:.4} | {floor:.4} | | | |");
    Ok(())
}
