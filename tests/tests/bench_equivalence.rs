//! The benchmark compares like with like: the PyTorch script of `cargo xtask bench`
//! (`xtask/python/bench_pytorch.py`) and our library, given the seed experiment, produce samples of
//! the same quality, judged by the same code.
//!
//! The PyTorch side runs the script with the benchmark's seed workload (`Workload::seed` in
//! `xtask/src/bench.rs`: width 128, 3 layers, batch 256, Adam 1e-4, 10,000 training steps,
//! 10,000 samples by 100 Euler steps, seed 0, one thread), saving its Euler samples with
//! `--out-samples`; only the phases the samples do not depend on (RK4 sampling and the
//! log-likelihood, which come after the samples are saved) shrink to one step of one point. Our side is
//! the seed experiment through the library, as `fm run` does it: `tch::manual_seed(0)`, the
//! default `Mlp`, `fm_train::train` with `TrainConfig::default()`, `fm_train::sample` with
//! `SampleConfig::default()`. The two sets are judged by `SampleQuality::measure` against
//! `GaussianMixture::seed()` (2,000 points × 5 draws for W2, the benchmark's judge seed 7, so
//! both sides are compared with the same true sets).
//!
//! What is asserted, and why (the figures below are from 10 training seeds of each side,
//! 0–9, at the full budget, judged the same way):
//! - both sides clear the e2e bars (`xtask/src/e2e.rs`);
//! - the component shares agree within 4 standard deviations of their difference, where that
//!   deviation counts the training seed as well as sampling (see [`SHARE_TRAINING_SD`]):
//!   sampling noise alone is not a sound yardstick, because a different training run moves a
//!   share by more than sampling 10,000 points does;
//! - the mean log-density and the W2 excess are only held to the bars: their spread over training
//!   seeds (sd of the ours − PyTorch difference over the 10 seed pairs: 0.067 nats and 0.084)
//!   puts a sound 4-SD agreement bound at 0.27 nats and 0.34, hardly sharper than (or looser
//!   than) what both-within-the-bars already implies (0.30; about 0.3, the W2 excess being
//!   ≥ −0.1 in practice), so such an assertion would all but never fail. A bound from sampling noise
//!   alone (4 × 0.018 = 0.07 nats for the log-density) would fail honest runs: the seed-3 pair differs
//!   by 0.11 nats. Their differences are printed for information.
//!
//! The interpreter is the one `kl_pytorch` uses ([`fm_tests::torch_python`]); without it the
//! test fails, it does not skip. Both sides use one torch thread and run side by side (35–41 s
//! measured on 2 cores shared with other work, load average 2–4).

use fm_dist::metrics::SampleQuality;
use fm_dist::{GaussianMixture, StandardNormal, Target};
use fm_model::{Mlp, MlpConfig};
use fm_train::{sample, train, SampleConfig, TrainConfig};
use ndarray::{Array2, ArrayView2};
use rand::{rngs::StdRng, SeedableRng};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tch::Device;

// The e2e quality bars: constants of `xtask/src/e2e.rs` (MAX_SHARE_ERROR, MAX_LOG_PROB_GAP,
// MAX_W2_EXCESS; a binary crate, which this one cannot import), also stated in the README's
// "The seed experiment, and the bar it must clear". Keep them in step.
/// |share − weight| for every component.
const MAX_SHARE_ERROR: f64 = 0.03;
/// |mean log-density of generated − of true samples|, nats.
const MAX_LOG_PROB_GAP: f64 = 0.15;
/// W2(generated, true) − W2(true, true), averaged over draws.
const MAX_W2_EXCESS: f64 = 0.20;

/// The seed of the judge's true samples: the one `cargo xtask bench` judges both sides with.
const JUDGE_SEED: u64 = 7;

/// How much one training run's share of each component (its expected share, sampling aside)
/// varies with the training seed, per side: `[ours, PyTorch]`, by component.
///
/// Measured over training seeds 0–9 of each side at the full budget (10,000 samples each,
/// judged as here): the between-seed standard deviation of the observed shares was
/// ours 0.0117 / 0.0149 / 0.0076, PyTorch 0.0083 / 0.0092 / 0.0066, of which sampling accounts
/// for sqrt(w(1 − w)/n) = 0.0046 / 0.0050 / 0.0040; the rest, sqrt(sd² − w(1 − w)/n), is below.
/// Means over the seeds: ours 0.297 / 0.502 / 0.201, PyTorch 0.301 / 0.497 / 0.202 (Welch
/// t = −0.9, 1.0, −0.5: no systematic difference between the implementations).
const SHARE_TRAINING_SD: [[f64; 3]; 2] = [[0.0107, 0.0140, 0.0065], [0.0069, 0.0078, 0.0053]];

/// Standard deviations of agreement.
const Z_MAX: f64 = 4.0;

fn judge(target: &GaussianMixture, x: ArrayView2<f64>) -> SampleQuality {
    SampleQuality::measure(target, x, SampleQuality::W2_POINTS, SampleQuality::W2_DRAWS, &mut StdRng::seed_from_u64(JUDGE_SEED)).unwrap()
}

/// Mean and standard error of the mean of the target log-density of the rows of `x`.
fn mean_log_prob_and_se(target: &GaussianMixture, x: ArrayView2<f64>) -> (f64, f64) {
    let lp = target.log_prob(x).unwrap();
    let n = lp.len() as f64;
    let mean = lp.mean().unwrap();
    (mean, (lp.var(1.0) / n).sqrt())
}

#[test]
fn pytorch_benchmark_script_and_ours_sample_the_seed_experiment_equally_well() {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("fm-bench-equivalence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = GaussianMixture::seed();
    let source = StandardNormal::new(2).unwrap();
    let (train_cfg, sample_cfg) = (TrainConfig::default(), SampleConfig::default());
    // One torch thread on each side: they run side by side.
    tch::set_num_threads(1);

    // The PyTorch side, as `cargo xtask bench` runs it (Workload::seed, --threads 1), in the
    // background. The training and Euler settings are our defaults, so both sides do one thing.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../xtask/python/bench_pytorch.py");
    let python = fm_tests::torch_python("torch and numpy");
    let torch_samples = dir.join("pytorch-samples.npy");
    let s = |v: usize| v.to_string();
    #[rustfmt::skip]
    let args = [
        "run".to_string(), "--target".into(), "gmm3".into(),
        "--width".into(), s(MlpConfig::default().hidden_dim), "--layers".into(), s(MlpConfig::default().hidden_layers),
        "--batch".into(), s(train_cfg.batch_size), "--lr".into(), train_cfg.lr.to_string(), "--train-steps".into(), s(train_cfg.steps),
        "--samples".into(), s(sample_cfg.n_samples), "--euler-steps".into(), s(sample_cfg.steps),
        // Timed phases after the samples are saved, which do not change them: as short as they go.
        "--rk4-steps".into(), "1".into(), "--lik-points".into(), "1".into(), "--lik-steps".into(), "1".into(),
        "--threads".into(), "1".into(), "--seed".into(), "0".into(), "--out-samples".into(), torch_samples.display().to_string(),
    ];
    assert_eq!(sample_cfg.method, fm_ode::Method::Euler);
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let mut child = Command::new(&python)
        .arg(&script)
        .args(&args)
        .env("OMP_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(log("python.out"))
        .stderr(log("python.err"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));

    // Our side: the seed experiment, as `fm run` does it.
    tch::manual_seed(train_cfg.seed as i64);
    let mut mlp = Mlp::new(MlpConfig::default(), Device::Cpu).unwrap();
    let t0 = Instant::now();
    let report = train(&mut mlp, &target, &source, &train_cfg, &mut |_| {}).unwrap();
    let ours = sample(&mlp, &source, &sample_cfg).unwrap();
    let ours_s = t0.elapsed().as_secs_f64();
    let q_ours = judge(&target, ours.view());

    let status = fm_tests::wait_at_most(&mut child, Duration::from_secs(600))
        .unwrap_or_else(|| panic!("{} {} took over 600 s (files in {})", python.display(), script.display(), dir.display()));
    let stderr = std::fs::read_to_string(dir.join("python.err")).unwrap_or_default();
    assert!(status.success(), "{} {} failed ({status}), files in {}:\n{stderr}", python.display(), script.display(), dir.display());
    let py: serde_json::Value = serde_json::from_str(std::fs::read_to_string(dir.join("python.out")).unwrap().trim()).unwrap();
    assert_eq!(py["train_steps"].as_u64(), Some(train_cfg.steps as u64), "{py}");
    let torch: Array2<f64> = fm_dist::io::read_points(&torch_samples).unwrap();
    assert_eq!(torch.dim(), ours.dim(), "the PyTorch samples have the wrong shape");
    assert!(torch.iter().all(|v| v.is_finite()), "the PyTorch samples hold NaN or infinite values");
    let q_torch = judge(&target, torch.view());

    println!("ours ({ours_s:.1} s to train and sample; final loss {:.4}):\n{q_ours}", report.final_loss);
    println!(
        "PyTorch ({} {}; train {:.1} s, Euler {:.1} s; final loss {:.4}):\n{q_torch}",
        script.display(),
        py["version"].as_str().unwrap_or("?"),
        py["train_s"].as_f64().unwrap_or(f64::NAN),
        py["euler_s"].as_f64().unwrap_or(f64::NAN),
        py["final_loss"].as_f64().unwrap_or(f64::NAN)
    );

    // 1. Both clear the e2e bars.
    let mut failures = Vec::new();
    for (side, q) in [("ours", &q_ours), ("PyTorch", &q_torch)] {
        let checks = [
            ("max component-share error", q.max_share_error().unwrap(), MAX_SHARE_ERROR),
            ("|log-density gap|", q.log_prob_gap().unwrap().abs(), MAX_LOG_PROB_GAP),
            ("W2 excess", q.w2_excess(), MAX_W2_EXCESS),
        ];
        for (what, value, bar) in checks {
            let ok = value <= bar;
            println!("  {} {side:7} {what}: {value:.4} (bar {bar})", if ok { "PASS" } else { "FAIL" });
            if !ok {
                failures.push(format!("{side}: {what} {value:.4} above the e2e bar {bar}"));
            }
        }
    }

    // 2. The shares agree. Each side's n = 10,000 samples are i.i.d. (independent source draws
    //    through a deterministic flow), so a side's count in component k is binomial(n, p_k) with
    //    p_k its model's share: the observed share has variance p_k(1 − p_k)/n, and the
    //    difference of the two sides' (independent) shares p̂_o − p̂_t has
    //      Var = p_o(1 − p_o)/n + p_t(1 − p_t)/n + σ_o,k² + σ_t,k²,
    //    the last two the spread of p_k itself over training seeds (SHARE_TRAINING_SD): one run
    //    per side is one draw of each model. p_o, p_t are estimated by the observed shares.
    //    Under "same implementation up to the seed", |difference| exceeds 4 SD with probability
    //    6e-5 per component. The sampling part alone (4 SD = 0.026 / 0.028 / 0.023) is not a
    //    sound bound: over the 10 seed pairs measured, the pair of seed 3 differs by 0.038 in the
    //    second component. With the training part the bounds are 0.057 / 0.070 / 0.040: sharper
    //    than both-within-the-bar (0.06) for the first and third components, not for the second.
    let (so, st) = (q_ours.shares.as_ref().unwrap(), q_torch.shares.as_ref().unwrap());
    let n = (q_ours.n_samples as f64, q_torch.n_samples as f64);
    for k in 0..so.len() {
        let sampling_var = so[k] * (1.0 - so[k]) / n.0 + st[k] * (1.0 - st[k]) / n.1;
        let training_var = SHARE_TRAINING_SD[0][k].powi(2) + SHARE_TRAINING_SD[1][k].powi(2);
        let sd = (sampling_var + training_var).sqrt();
        let diff = so[k] - st[k];
        let ok = diff.abs() <= Z_MAX * sd;
        println!(
            "  {} share of component {k}: ours {:.4} − PyTorch {:.4} = {diff:+.4}, {:.2} SD (SD {sd:.4}, of which sampling {:.4}; bound ±{:.4})",
            if ok { "PASS" } else { "FAIL" },
            so[k],
            st[k],
            diff / sd,
            sampling_var.sqrt(),
            Z_MAX * sd
        );
        if !ok {
            failures.push(format!("component {k}: share {:.4} (ours) vs {:.4} (PyTorch), {:.1} SD apart", so[k], st[k], diff / sd));
        }
    }

    // 3. For information: the mean log-density and W2 excess differences in units of sampling
    //    noise alone (SE of a difference of two means from the per-point log-densities; the true
    //    sets, hence the references, are the same for both sides). Not asserted: the training
    //    seed moves them by several such units (see the module's doc).
    let ((mo, seo), (mt, set)) = (mean_log_prob_and_se(&target, ours.view()), mean_log_prob_and_se(&target, torch.view()));
    let se = (seo * seo + set * set).sqrt();
    println!("  info    mean log-density: ours {mo:.4} − PyTorch {mt:.4} = {:+.4} ({:.2} sampling SE of {se:.4})", mo - mt, (mo - mt) / se);
    println!("  info    W2 excess: ours {:.4}, PyTorch {:.4}", q_ours.w2_excess(), q_torch.w2_excess());
    println!("bench_equivalence: {:.1} s in all", started.elapsed().as_secs_f64());

    assert!(failures.is_empty(), "the PyTorch benchmark script and ours disagree on the seed experiment:\n  {}", failures.join("\n  "));
    std::fs::remove_dir_all(&dir).ok();
}
