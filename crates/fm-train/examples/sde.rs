//! The stochastic sampler against the ODE, as tables of sample quality (markdown).
//!
//! ```text
//! cargo run --release -p fm-train --example sde -- --exact     # the exact flow: the SDE's own error
//! cargo run --release -p fm-train --example sde                # trained models, SDE vs ODE at equal NFE
//! ```
//!
//! `--exact`: the exact flow of `gmm3` and `8gaussians` (straight path, N(0, I) source; its score
//! is the mixture's own), 10,000 samples by Euler (the ODE) and by Euler–Maruyama with each
//! diffusion form at norm 1, at 25, 50, 100, 250 and 1,000 steps.
//!
//! Without it: four models (the seed's settings and the `fast` preset, on `gmm3` and
//! `8gaussians`, 10,000 steps of 256 each, trained here), sampled by Euler and by each SDE at
//! 50, 100 and 250 network evaluations (one per step for both).
//!
//! Per cell: the mean log-density gap to true samples (`SampleQuality`, nats, ± its standard
//! error) and the W2 excess over the noise floor (2,000 points × 5 draws, ± its standard error).
//! Every row of a table is sampled from the same source draws (seed 1), with its own noise.

use fm_dist::metrics::SampleQuality;
use fm_dist::{parse_target, StandardNormal, Target};
use fm_model::{Mlp, MlpConfig};
use fm_ode::VectorField;
use fm_train::exact::ExactFlow;
use fm_train::sde::{DiffusionForm, Sde};
use fm_train::{train, DataUnits, HasDevice, Preset, ProbabilityPath, SampleConfig};
use rand::{rngs::StdRng, SeedableRng};
use tch::Device;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The samplers of every table: the ODE, then each diffusion form at norm 1.
fn samplers() -> Vec<(String, Option<Sde>)> {
    let mut all = vec![("ODE (Euler)".to_string(), None)];
    all.extend(DiffusionForm::ALL.iter().map(|&(form, name)| (format!("SDE {name}"), Some(Sde { form, norm: 1.0 }))));
    all
}

/// "gap ± se / excess ± se" of `steps`-step samples of `field` by `sde` (or the ODE).
fn cell(field: &(impl VectorField + HasDevice + ?Sized), target: &dyn Target, steps: usize, sde: Option<Sde>) -> Res<String> {
    let source = StandardNormal::new(target.dim())?;
    let units = DataUnits { field, source: &source, map: None, path: ProbabilityPath::Linear };
    let x = units.sample(&SampleConfig { steps, sde, ..SampleConfig::default() })?;
    let q = SampleQuality::measure(target, x.view(), SampleQuality::W2_POINTS, SampleQuality::W2_DRAWS, &mut StdRng::seed_from_u64(7))?;
    let gap = q.reference_mean_log_prob.zip(q.mean_log_prob).map_or(f64::NAN, |(r, m)| r - m);
    Ok(format!("{gap:+.3} ± {:.3} / {:+.3} ± {:.3}", q.log_prob_gap_se.unwrap_or(f64::NAN), q.w2 - q.w2_reference, q.w2_excess_se))
}

fn table(title: &str, field: &(impl VectorField + HasDevice + ?Sized), target: &dyn Target, steps: &[usize]) -> Res<()> {
    println!("\n### {title}\n");
    println!("| sampler | {} |", steps.iter().map(|s| format!("{s} steps: gap / W2 excess")).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---|".repeat(steps.len()));
    for (name, sde) in samplers() {
        let cells = steps.iter().map(|&s| cell(field, target, s, sde)).collect::<Res<Vec<_>>>()?;
        println!("| {name} | {} |", cells.join(" | "));
    }
    Ok(())
}

fn main() -> Res<()> {
    let exact = std::env::args().any(|a| a == "--exact");
    for spec in ["gmm3", "8gaussians"] {
        let target = parse_target(spec)?;
        let source = StandardNormal::new(target.dim())?;
        if exact {
            let flow = ExactFlow::new(target.as_ref(), &source, ProbabilityPath::Linear)?;
            table(&format!("exact flow of {spec}"), &flow, target.as_ref(), &[25, 50, 100, 250, 1000])?;
            continue;
        }
        for preset in ["seed", "fast"] {
            let Preset { train: cfg, model } = Preset::named(preset)?;
            let mut mlp = fm_model::with_torch_seed(cfg.seed, || Mlp::new(MlpConfig { dim: target.dim(), ..model }, Device::Cpu))?;
            let report = train(&mut mlp, target.as_ref(), &source, &cfg, &mut |_| {})?;
            eprintln!("{preset} on {spec}: trained in {:.1} s", report.seconds);
            table(&format!("{preset} preset on {spec} (10,000 × 256)"), &mlp, target.as_ref(), &[50, 100, 250])?;
        }
    }
    Ok(())
}
