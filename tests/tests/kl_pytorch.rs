//! The model's log-likelihood and KL(target ‖ model), checked against an independent PyTorch
//! computation on the same checkpoint and the same points.
//!
//! A seed-architecture model is trained briefly, saved with `fm_model::checkpoint::save`, and
//! `tests/python/kl_reference.py` recomputes `log q` on the same target samples (a `.npy`):
//! its own network (`nn.Sequential` loaded with `safetensors.torch.load_file`), RK4 with 200
//! steps from t = 1 to 0 in float64, exact divergence by `torch.autograd`, and the seed
//! mixture's density from its parameters. Our side is `fm_train::kl_estimate` (float32, RK4
//! with 200 steps, exact divergence).
//!
//! The interpreter is `$FM_PYTHON`, else the one of the venv that `.libtorch` points into
//! (`cargo xtask setup`); without either the test fails, it does not skip.
//!
//! To check a given model instead (say a fully trained one) on more points:
//! `FM_KL_CHECKPOINT=model.safetensors FM_KL_POINTS=10000 cargo test -p fm-tests --test kl_pytorch -- --nocapture`.

use fm_dist::{GaussianMixture, StandardNormal, Target};
use fm_model::{checkpoint, Mlp, MlpConfig};
use fm_ode::{Divergence, Method};
use fm_train::{kl_estimate, model_log_prob, train, KlEstimate, LikelihoodConfig, TrainConfig};
use ndarray::Array1;
use rand::{rngs::StdRng, SeedableRng};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tch::Device;

/// Target samples the two sides evaluate (overridden by `FM_KL_POINTS`).
const POINTS: usize = 1000;
/// Seed of the target samples.
const SEED: u64 = 42;

/// Both sides integrate the same ODE with the same RK4 grid from the same float32 weights; they
/// differ by arithmetic only: float32 with the first layer split as `W_x x + (W_t t + b)` here,
/// float64 there. For almost every point that leaves ~1e-6 (measured on 2,000 points of a
/// briefly trained model: median 6e-7, mean 3e-6, 99th percentile 4e-5; on 10,000 points of
/// the seed model trained 10,000 steps: mean 5e-6). But a ReLU network's divergence is
/// piecewise constant in `x` and jumps where a unit switches: when round-off puts one RK4 stage
/// on the other side of such a kink, that stage's divergence changes by O(1) and `log q` by about
/// `h/3 · jump ≈ 1e-3` (h = 1/200). The worst point of those 2,000 differs by 1.2e-3 (of the
/// 10,000: 1.5e-3), and PyTorch in float32 differs from itself in float64 by 6e-4 at that
/// point. Hence a tight bound on the mean and a loose one on the maximum; both stay far below
/// what a real discrepancy gives (a wrong time direction, divergence sign or step: ≥ 0.1) and below the
/// KL's standard error (~1e-2 on 1,000 points).
const MEAN_TOL: f64 = 1e-4;
const MAX_TOL: f64 = 1e-2;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}"))).unwrap_or(default)
}

#[test]
fn model_log_likelihood_and_kl_agree_with_pytorch() {
    let dir = std::env::temp_dir().join(format!("fm-kl-pytorch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = GaussianMixture::seed();
    let source = StandardNormal::new(2).unwrap();
    let n = env_usize("FM_KL_POINTS", POINTS);
    // One libtorch thread here and one in PyTorch, which runs alongside: on a small, busy
    // machine two spinning thread pools each slow everything down many times over.
    tch::set_num_threads(1);

    let mlp: fm_model::Network = match std::env::var_os("FM_KL_CHECKPOINT") {
        Some(path) => {
            checkpoint::load_any_with(Path::new(&path), Device::Cpu, &checkpoint::LoadOptions::with_activation(fm_model::Activation::Relu)).unwrap().0
        }
        None => {
            // The seed network and data, with a shorter, faster schedule than the seed's
            // 10,000 steps at 1e-4: KL is larger than a fully trained model's, which does not
            // matter for the comparison.
            tch::manual_seed(0);
            let mut mlp = Mlp::new(MlpConfig::default(), Device::Cpu).unwrap();
            let start = Instant::now();
            train(&mut mlp, &target, &source, &TrainConfig { steps: 1500, lr: 2e-3, ..TrainConfig::default() }, &mut |_| {}).unwrap();
            println!("trained 1,500 steps in {:.1} s", start.elapsed().as_secs_f64());
            Box::new(mlp)
        }
    };
    let ckpt = dir.join("model.safetensors");
    checkpoint::save(&*mlp, &ckpt, &Default::default()).unwrap();
    let (mlp, _) = checkpoint::load(&ckpt, Device::Cpu).unwrap();
    let x = target.sample(n, &mut StdRng::seed_from_u64(SEED));
    fm_dist::io::write_npy(&dir.join("points.npy"), x.view()).unwrap();

    // PyTorch runs while we compute our side.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/kl_reference.py");
    let python = fm_tests::torch_python("torch, numpy and safetensors");
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let mut child = Command::new(&python)
        .arg(&script)
        .args([&ckpt, &dir.join("points.npy"), &dir.join("report.json")])
        .args(["--steps", "200", "--threads", "1"])
        .stdin(Stdio::null())
        .stdout(log("python.out"))
        .stderr(log("python.err"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));

    let cfg = LikelihoodConfig { method: Method::Rk4, steps: 200, divergence: Divergence::Exact, ..LikelihoodConfig::default() };
    let ours = kl_estimate(&target, &*mlp, &source, n, &cfg, &mut StdRng::seed_from_u64(SEED)).unwrap();
    // kl_estimate draws its points first from the rng: the same points as the .npy.
    let log_q = model_log_prob(&*mlp, &source, x.view(), &cfg).unwrap();
    let log_p = target.log_prob(x.view()).unwrap();
    assert_eq!(KlEstimate::from_log_probs(log_p.view(), log_q.view()).unwrap().kl, ours.kl);
    fm_dist::io::write_npy(&dir.join("ours_log_q.npy"), log_q.view().insert_axis(ndarray::Axis(1))).unwrap();

    let status = fm_tests::wait_at_most(&mut child, Duration::from_secs(600))
        .unwrap_or_else(|| panic!("{} {} took over 600 s (files in {})", python.display(), script.display(), dir.display()));
    let stderr = std::fs::read_to_string(dir.join("python.err")).unwrap_or_default();
    assert!(status.success(), "{} {} failed ({status}), files in {}:\n{stderr}", python.display(), script.display(), dir.display());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let array = |key: &str| -> Array1<f64> {
        report[key].as_array().unwrap_or_else(|| panic!("no '{key}' in the report")).iter().map(|v| v.as_f64().unwrap()).collect()
    };
    let (py_log_q, py_log_p) = (array("log_q"), array("log_p"));
    assert_eq!(py_log_q.len(), n);
    let number = |key: &str| report[key].as_f64().unwrap_or_else(|| panic!("no '{key}' in the report"));
    let (py_kl, py_se) = (number("kl"), number("kl_se"));

    let dq = (&log_q - &py_log_q).mapv(f64::abs);
    let (mean_dq, max_dq) = (dq.mean().unwrap(), dq.fold(0.0f64, |m, v| m.max(*v)));
    let max_dp = (&log_p - &py_log_p).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
    println!("ours:    {ours}");
    println!("PyTorch: KL {py_kl:.5} ± {py_se:.5} (NLL {:.5}, entropy {:.5}; {n} samples, {:.1} s)", number("nll"), number("entropy"), number("seconds"));
    println!("per point: mean |Δ log q| {mean_dq:.2e}, max {max_dq:.2e}; max |Δ log p| {max_dp:.2e}");

    assert!(max_dp < 1e-9, "the target log-densities differ by up to {max_dp:e}");
    assert!(mean_dq < MEAN_TOL && max_dq < MAX_TOL, "log q differs from PyTorch's: mean {mean_dq:e}, max {max_dq:e} (files in {})", dir.display());
    assert!((ours.kl - py_kl).abs() < 0.1 * ours.kl_se, "KL {} vs PyTorch's {py_kl} (SE {})", ours.kl, ours.kl_se);
    assert!((ours.kl_se - py_se).abs() < 0.01 * ours.kl_se, "SE {} vs PyTorch's {py_se}", ours.kl_se);
    // A short run is far from perfect but already a decent density model of the mixture.
    assert!(ours.kl > 0.0 && ours.kl < 1.0, "{ours}");
    std::fs::remove_dir_all(&dir).ok();
}
