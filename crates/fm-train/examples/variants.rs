//! The variants table of the README: each probability path × coupling trained on the same
//! budget, on the seed mixture, `8gaussians`, `moons` and `8gaussians → moons`.
//!
//! Per run: exact W2 between 2,000 generated points and 2,000 fresh target points after 10,
//! 20 and 100 Euler steps (the W2 of two target draws, the noise floor, is printed beside
//! it); KL(target ‖ model) on 2,000 target points (RK4-100, exact divergence) where the
//! target and source have densities; the normalized path energy
//! `|E ∫₀¹ ‖v(x_t, t)‖² dt − W2²(source, target)| / W2²(source, target)` along the learned
//! flow's 100-step Euler trajectories; training steps/s.
//!
//! ```text
//! cargo run --release -p fm-train --example variants -- [--steps 5000] [--targets gmm3,8gaussians,moons,8gaussians-moons] [--variants NAME,..]
//! ```

use fm_dist::{metrics::w2, parse_target};
use fm_model::{Mlp, MlpConfig};
use fm_ode::VectorField;
use fm_train::{array_to_tensor, kl_estimate, train_with_state, Coupling, LikelihoodConfig, ProbabilityPath, TrainConfig};
use rand::{rngs::StdRng, SeedableRng};
use tch::{Device, Kind, Tensor};

const POINTS: usize = 2000;

fn variants() -> Vec<(&'static str, ProbabilityPath, Coupling)> {
    let sb = 0.5;
    vec![
        ("linear (seed)", ProbabilityPath::Linear, Coupling::Independent),
        ("icfm:0.1", ProbabilityPath::Icfm { sigma: 0.1 }, Coupling::Independent),
        ("lipman:1e-4", ProbabilityPath::Lipman { sigma_min: 1e-4 }, Coupling::Independent),
        ("vp", ProbabilityPath::Vp, Coupling::Independent),
        ("linear + ot", ProbabilityPath::Linear, Coupling::Ot),
        ("schrodinger-bridge:0.5", ProbabilityPath::SchrodingerBridge { sigma: sb }, Coupling::schrodinger_bridge(sb)),
    ]
}

/// `(x after `steps` Euler steps from x0, E ∫ ‖v‖² dt along the way)`.
fn euler_with_energy(mlp: &Mlp, x0: &Tensor, steps: usize) -> Result<(Tensor, f64), Box<dyn std::error::Error>> {
    let _guard = tch::no_grad_guard();
    let dt = 1.0 / steps as f64;
    let mut x = x0.shallow_clone();
    let mut energy = 0.0;
    for k in 0..steps {
        let v = mlp.velocity(&x, k as f64 * dt)?;
        energy += v.f_square()?.f_sum_dim_intlist(1, false, Kind::Float)?.f_mean(Kind::Float)?.double_value(&[]) * dt;
        x = x.f_add(&v.f_mul_scalar(dt)?)?;
    }
    Ok((x, energy))
}

fn to_array(t: &Tensor) -> Result<ndarray::Array2<f64>, Box<dyn std::error::Error>> {
    Ok(fm_train::tensor_to_array(t)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let steps: usize = value("--steps").map(|s| s.parse()).transpose()?.unwrap_or(5000);
    let targets = value("--targets").unwrap_or_else(|| "gmm3,8gaussians,moons,8gaussians-moons".into());
    let wanted = value("--variants");
    let base = TrainConfig { steps, warmup_steps: steps / 20, ..TrainConfig::preset("fast")? };
    println!("{steps} steps of batch {} ({} lr {} cosine, EMA {:?}); W2 on {POINTS} points", base.batch_size, base.optimizer.name(), base.lr, base.ema_decay);
    println!(
        "{:<18} {:<24} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7} {:>7} {:>8}",
        "source → target", "variant", "w2@10", "w2@20", "w2@100", "w2_ref", "kl", "kl_se", "energy", "steps/s"
    );
    for pair in targets.split(',') {
        let (source_name, target_name) = match pair.split_once('-') {
            Some((s, t)) => (s, t),
            None => ("normal", pair),
        };
        let target = parse_target(target_name)?;
        let source = parse_target(&format!("{source_name}{}", if source_name == "normal" { format!(":{}", target.dim()) } else { String::new() }))?;
        let mut rng = StdRng::seed_from_u64(7);
        let x0 = source.sample(POINTS, &mut rng);
        let x1 = target.sample(POINTS, &mut rng);
        let w2_ref = w2(x1.view(), target.sample(POINTS, &mut rng).view())?;
        let w2_st = w2(x0.view(), x1.view())?;
        let x0_t = array_to_tensor(x0.view(), Device::Cpu)?;
        for (name, path, coupling) in variants() {
            if wanted.as_ref().is_some_and(|w| !w.split(',').any(|n| n == name)) {
                continue;
            }
            let cfg = TrainConfig { path, coupling, ..base.clone() };
            let mut mlp = fm_model::with_torch_seed(0, || Mlp::new(MlpConfig { dim: target.dim(), ..MlpConfig::default() }, Device::Cpu))?;
            let (report, state) = train_with_state(&mut mlp, target.as_ref(), source.as_ref(), &cfg, &mut |_| {})?;
            state.apply_ema(&mlp)?;
            let mut w = [0.0; 3];
            let mut energy = 0.0;
            for (slot, n) in [10, 20, 100].into_iter().enumerate() {
                let (x, e) = euler_with_energy(&mlp, &x0_t, n)?;
                w[slot] = w2(to_array(&x)?.view(), x1.view())?;
                energy = e;
            }
            let normalized_energy = (energy - w2_st * w2_st).abs() / (w2_st * w2_st);
            let kl = if target.has_density() && source.has_density() {
                let k = kl_estimate(target.as_ref(), &mlp, source.as_ref(), POINTS, &LikelihoodConfig::default(), &mut StdRng::seed_from_u64(11))?;
                format!("{:>8.4} {:>7.4}", k.kl, k.kl_se)
            } else {
                format!("{:>8} {:>7}", "—", "—")
            };
            println!(
                "{:<18} {:<24} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {kl} {:>7.3} {:>8.0}",
                format!("{source_name} → {target_name}"),
                name,
                w[0],
                w[1],
                w[2],
                w2_ref,
                normalized_energy,
                report.steps_per_s
            );
        }
    }
    Ok(())
}
