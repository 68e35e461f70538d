//! The integrator table for the trained seed model (N(0, I) → the 3-component mixture), or with
//! `--exact` for the exact flow of that setting (`fm_train::exact`: every error in the table is
//! then the integrator's own): for each method at several step counts, and Dopri5 at several
//! tolerances, the cost and quality of sampling and of the likelihood solve. Prints a markdown table.
//!
//! ```text
//! cargo run --release -p fm-train --example integrators -- [--exact] [--checkpoint PATH] [--save PATH]
//!     [--samples N] [--kl-points N] [--seed S] [--threads N]
//! cargo xtask integrators [same flags]
//! ```
//!
//! Without `--checkpoint` the seed model is trained first (the seed configuration: 10,000 steps
//! of 256, Adam 1e-4; `--save PATH` keeps it). Per row:
//!
//! - sampling: `--samples` source draws (default 10,000) carried from t = 0 to 1 in chunks of
//!   512 (as `fm_train::sample` does); NFE per chunk, wall time, and the W2 excess of the
//!   samples over the noise floor, as `SampleQuality` computes it (2,000 points × 5 draws; the
//!   same true sets for every row, so rows differ by their samples only), and the RMS distance of
//!   each sample to where the most accurate solve of the table carried the same source point
//!   (the integration error itself, free of sampling noise);
//! - likelihood: `log q` of `--kl-points` fresh target samples (default 5,000; the same points
//!   in every row) by the row's own method and steps (or tolerance) from t = 1 to 0, exact
//!   divergence; NFE per chunk, wall time, the KL(target ‖ model) estimate this solve gives,
//!   and the mean |log q − log q_ref| against the most accurate solve of the table.

use fm_dist::{metrics, GaussianMixture, StandardNormal, Target};
use fm_model::{checkpoint, Mlp, MlpConfig};
use fm_ode::VectorField;
use fm_ode::{solve, AdaptiveOptions, Method, SolveOptions, TimeGrid};
use fm_train::{array_to_tensor, model_likelihood, tensor_to_array, train, ExactFlow, HasDevice, KlEstimate, LikelihoodConfig, TrainConfig};
use ndarray::{Array1, Array2};
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Tensor};

const USAGE: &str = "usage: integrators [--exact] [--checkpoint PATH] [--save PATH] [--samples N] [--kl-points N] [--seed S] [--threads N]";
const FIXED_STEPS: [usize; 5] = [5, 10, 20, 50, 100];
const TOLERANCES: [f64; 3] = [1e-3, 1e-5, 1e-7];
const SAMPLE_CHUNK: usize = 512;
const W2_POINTS: usize = metrics::SampleQuality::W2_POINTS;
const W2_DRAWS: usize = metrics::SampleQuality::W2_DRAWS;

struct Args {
    /// The exact flow instead of a trained model.
    exact: bool,
    checkpoint: Option<PathBuf>,
    save: Option<PathBuf>,
    samples: usize,
    kl_points: usize,
    seed: u64,
    /// libtorch's intra-op threads (`None`: its default, one per core).
    threads: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { exact: false, checkpoint: None, save: None, samples: 10_000, kl_points: 5_000, seed: 0, threads: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--exact" => args.exact = true,
            "--checkpoint" => args.checkpoint = Some(value()?.into()),
            "--save" => args.save = Some(value()?.into()),
            "--samples" => args.samples = number(value()?)?,
            "--kl-points" => args.kl_points = number(value()?)?,
            "--seed" => args.seed = number(value()?)? as u64,
            "--threads" => args.threads = Some(number(value()?)?.max(1)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    if args.samples < W2_POINTS {
        return Err(format!("--samples must be at least {W2_POINTS} (the W2 sets)"));
    }
    if args.kl_points < 2 {
        return Err("--kl-points must be at least 2".into());
    }
    Ok(args)
}

/// A row of the table: a method with its steps, or Dopri5 with its tolerance (rtol = atol).
#[derive(Clone, Copy)]
enum Setting {
    Steps(Method, usize),
    Tol(f64),
}

impl Setting {
    fn method(self) -> Method {
        match self {
            Setting::Steps(m, _) => m,
            Setting::Tol(_) => Method::Dopri5,
        }
    }
    fn steps(self) -> usize {
        match self {
            Setting::Steps(_, n) => n,
            Setting::Tol(_) => 1,
        }
    }
    fn adaptive(self) -> AdaptiveOptions {
        match self {
            Setting::Steps(..) => AdaptiveOptions::default(),
            Setting::Tol(tol) => AdaptiveOptions { rtol: tol, atol: tol, ..AdaptiveOptions::default() },
        }
    }
    fn label(self) -> String {
        match self {
            Setting::Steps(_, n) => n.to_string(),
            Setting::Tol(tol) => format!("tol {tol:.0e}"),
        }
    }
    fn likelihood(self) -> LikelihoodConfig {
        let a = self.adaptive();
        LikelihoodConfig {
            method: self.method(),
            steps: self.steps(),
            divergence: fm_ode::Divergence::Exact,
            rtol: a.rtol,
            atol: a.atol,
            ..LikelihoodConfig::default()
        }
    }
}

struct Row {
    samples: Array2<f64>,
    sample_nfe: f64,
    sample_s: f64,
    w2_excess: f64,
    w2_se: f64,
    lik_nfe: f64,
    lik_s: f64,
    kl: KlEstimate,
    log_q: Array1<f64>,
}

/// Carries the source draws from t = 0 to 1, 512 rows at a time: (samples, NFE per chunk, seconds).
fn sample(field: &dyn VectorField, x0: &Tensor, setting: Setting) -> Result<(Array2<f64>, f64, f64), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let grid = TimeGrid::uniform(0.0, 1.0, setting.steps())?;
    let opts = SolveOptions { keep_trajectory: false, adaptive: setting.adaptive() };
    let (mut parts, mut nfe) = (Vec::new(), 0);
    let chunks = x0.f_split(SAMPLE_CHUNK as i64, 0)?;
    for part in &chunks {
        let sol = solve(field, part, &grid, setting.method(), opts)?;
        nfe += sol.nfe;
        parts.push(sol.x);
    }
    let x = tensor_to_array(&Tensor::f_cat(&parts, 0)?)?;
    Ok((x, nfe as f64 / chunks.len() as f64, start.elapsed().as_secs_f64()))
}

/// One row: sampling, its W2 excess, and the likelihood solve with its KL.
#[allow(clippy::too_many_arguments)]
fn measure(
    field: &(impl VectorField + HasDevice + ?Sized),
    target: &GaussianMixture,
    source: &StandardNormal,
    x0: &Tensor,
    w2_seed: u64,
    x_kl: &Array2<f64>,
    log_p: &Array1<f64>,
    setting: Setting,
) -> Result<Row, Box<dyn std::error::Error>> {
    let (x, sample_nfe, sample_s) = sample(&|x: &Tensor, t: f64| field.velocity(x, t), x0, setting)?;
    // The same generator for every row: rows differ by their samples only.
    let quality = metrics::SampleQuality::measure(target, x.view(), W2_POINTS, W2_DRAWS, &mut StdRng::seed_from_u64(w2_seed))?;
    let lik = model_likelihood(field, source, x_kl.view(), &setting.likelihood())?;
    let kl = KlEstimate::from_log_probs(log_p.view(), lik.log_q.view())?;
    Ok(Row {
        samples: x,
        sample_nfe,
        sample_s,
        w2_excess: quality.w2_excess(),
        w2_se: quality.w2_excess_se,
        lik_nfe: lik.nfe,
        lik_s: lik.seconds,
        kl,
        log_q: lik.log_q,
    })
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("integrators: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    if let Some(n) = args.threads {
        tch::set_num_threads(n as i32);
    }
    let target = GaussianMixture::seed();
    let source = StandardNormal::new(2)?;
    let mlp: fm_model::Network = match &args.checkpoint {
        // A PyTorch state dict is the seed's network (ReLU); fm's files record theirs.
        Some(path) => checkpoint::load_any_with(path, Device::Cpu, &checkpoint::LoadOptions::with_activation(fm_model::Activation::Relu))?.0,
        // The exact flow needs no model (this one is never used).
        None if args.exact => Box::new(Mlp::new(MlpConfig::default(), Device::Cpu)?),
        None => {
            tch::manual_seed(args.seed as i64);
            let mut mlp = Mlp::new(MlpConfig::default(), Device::Cpu)?;
            let cfg = TrainConfig { seed: args.seed, ..TrainConfig::default() };
            let start = Instant::now();
            let report = train(&mut mlp, &target, &source, &cfg, &mut |_| {})?;
            eprintln!("trained the seed model ({} steps, final loss {:.4}) in {:.1} s", report.steps, report.final_loss, start.elapsed().as_secs_f64());
            Box::new(mlp)
        }
    };
    if let Some(path) = &args.save {
        checkpoint::save(&*mlp, path, &Default::default())?;
        eprintln!("saved the model to {}", path.display());
    }

    // Shared inputs: source draws, the generator of the true sets for W2, KL points.
    let x0 = array_to_tensor(source.sample(args.samples, &mut StdRng::seed_from_u64(args.seed + 1)).view(), Device::Cpu)?;
    let w2_seed = args.seed + 2;
    let x_kl = target.sample(args.kl_points, &mut StdRng::seed_from_u64(args.seed + 3));
    let log_p = target.log_prob(x_kl.view())?;

    let mut settings: Vec<Setting> = Method::FIXED_STEP.iter().flat_map(|&m| FIXED_STEPS.map(|n| Setting::Steps(m, n))).collect();
    settings.extend(TOLERANCES.map(Setting::Tol));
    // A row whose solve fails (say Dopri5 at a tolerance float32 cannot meet) is reported, not fatal.
    let mut rows: Vec<(Setting, Result<Row, String>)> = Vec::new();
    let exact = ExactFlow::new(&target, &source, fm_train::ProbabilityPath::Linear)?;
    for setting in settings {
        let row = if args.exact {
            measure(&exact, &target, &source, &x0, w2_seed, &x_kl, &log_p, setting)
        } else {
            measure(&*mlp, &target, &source, &x0, w2_seed, &x_kl, &log_p, setting)
        };
        let row = row.map_err(|e| e.to_string());
        match &row {
            Ok(r) => eprintln!(
                "{} {}: sampling {:.0} NFE {:.2} s; likelihood {:.0} NFE {:.2} s; KL {:.4}",
                setting.method(),
                setting.label(),
                r.sample_nfe,
                r.sample_s,
                r.lik_nfe,
                r.lik_s,
                r.kl.kl
            ),
            Err(e) => eprintln!("{} {}: failed: {e}", setting.method(), setting.label()),
        }
        rows.push((setting, row));
    }

    // The reference log q: the most accurate solve that succeeded (the tightest Dopri5 first).
    let (ref_setting, reference, ref_samples) = rows
        .iter()
        .rev()
        .filter(|(s, _)| matches!(s, Setting::Tol(_)))
        .chain(rows.iter().rev().filter(|(s, _)| matches!(s, Setting::Steps(Method::Rk4, _))))
        .find_map(|(s, r)| r.as_ref().ok().map(|r| (*s, r.log_q.clone(), r.samples.clone())))
        .ok_or("every solve failed")?;
    let what = if args.exact { "the exact flow of the seed setting (linear path)" } else { "the seed model" };
    println!(
        "Integrators on {what} ({} sampled points, chunks of {SAMPLE_CHUNK}; KL on {} target samples, chunks of {}; {} libtorch threads).\n",
        args.samples,
        args.kl_points,
        LikelihoodConfig::default().chunk_size,
        tch::get_num_threads()
    );
    println!("- NFE: field evaluations per chunk (per trajectory); the likelihood's also cost 2 backward passes each (exact divergence).");
    println!("- W2 excess: as `SampleQuality` reports it (mean exact W2 of {W2_POINTS} samples to {W2_POINTS} true points with their component counts over {W2_DRAWS} draws, minus the true-vs-true floor; ± its standard error over the draws).");
    println!(
        "- KL: KL(target ‖ model) with log q from the row's own likelihood solve (same method and steps/tolerance, t = 1 → 0) on the same {} target samples \
         in every row. The model is the same in every row, so the rows differ only by the solve's error; ± is the Monte Carlo standard error (common to all rows).",
        args.kl_points
    );
    println!(
        "- KL − ref and |Δ log q|: the KL's difference from, and the mean |log q − log q_ref| over those points against, the {} {} solve.\n",
        ref_setting.method(),
        ref_setting.label()
    );
    println!("- sample error: RMS distance of each sample to where the reference solve (the same) carried the same source point.\n");
    println!("| method | steps | sampling NFE | sampling s | W2 excess | sample error | likelihood NFE | likelihood s | KL ± SE (nats) | KL − ref | mean abs Δ log q |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (setting, row) in &rows {
        let r = match row {
            Ok(r) => r,
            Err(e) => {
                println!("| {} | {} | failed: {} | | | | | | | | |", setting.method(), setting.label(), e.replace('|', "/"));
                continue;
            }
        };
        let diff = &reference - &r.log_q;
        let (dkl, dlq) = (diff.mean().unwrap_or(f64::NAN), diff.mapv(f64::abs).mean().unwrap_or(f64::NAN));
        let rms = ((&r.samples - &ref_samples).mapv(|v| v * v).sum() / r.samples.nrows() as f64).sqrt();
        println!(
            "| {} | {} | {:.0} | {:.3} | {:.3} ± {:.3} | {:.1e} | {:.0} | {:.2} | {:.4} ± {:.4} | {:+.1e} | {:.1e} |",
            setting.method(),
            setting.label(),
            r.sample_nfe,
            r.sample_s,
            r.w2_excess,
            r.w2_se,
            rms,
            r.lik_nfe,
            r.lik_s,
            r.kl.kl,
            r.kl.kl_se,
            dkl,
            dlq
        );
    }
    Ok(())
}
