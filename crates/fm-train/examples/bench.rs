//! Our side of `cargo xtask bench`: the same work as `xtask/python/bench_pytorch.py`, through the
//! library's own entry points, printing one JSON line with the same keys.
//!
//! ```text
//! cargo run --release -p fm-train --example bench -- run [--target gmm3|spec:FILE] [--width W] [--layers L]
//!     [--batch B] [--train-steps N] [--samples N] [--euler-steps N] [--rk4-steps N] [--lik-points N]
//!     [--lik-steps N] [--lik-chunk N] [--sample-chunk N] [--threads N] [--seed S] [--device cpu|cuda]
//!     [--out-samples X.npy]
//! cargo run --release -p fm-train --example bench -- judge --samples X.npy [--target gmm3|spec:FILE] [--seed S]
//! ```
//!
//! `run` times, each phase on its own and with its own peak RSS (the high-water mark is reset
//! before each phase through `/proc/self/clear_refs`; one untimed training step on a throwaway
//! network first, so one-time initialisation is not counted):
//! - `train`: [`fm_train::train`] with the seed configuration (Adam 1e-4, straight paths,
//!   independent pairs, uniform times) on batches of `--batch`, for `--train-steps` steps, of an
//!   MLP `d+1 → W → … → d` (ReLU, `--layers` hidden layers) from `N(0, I)` to the target;
//! - `euler`, `rk4`: [`fm_train::sample`] of `--samples` points with `--euler-steps` Euler steps,
//!   then `--rk4-steps` RK4 steps (`--sample-chunk` rows at a time, the library's default 512;
//!   on a GPU the library's `gpu_chunk_size`, 65,536);
//! - `lik`: [`fm_train::model_log_prob`] of `--lik-points` target draws, RK4 with `--lik-steps`
//!   steps from t = 1 to 0, the exact divergence, `--lik-chunk` rows at a time.
//!
//! On `--device cuda` the network, the training step, the integration and the divergence run on
//! the GPU; the mixture is drawn on the host (as always, one copy per step, page-locked and not
//! waited for). Each phase ends by reading its result back, so its time includes the GPU's work.
//!
//! `micro` times the pieces of one seed-scale training step and of one field evaluation, each
//! against a leaner alternative written here with the same math (the evidence for library
//! changes; best of 5 trials, microseconds per call):
//!
//! ```text
//! cargo run --release -p fm-train --example bench -- micro [--threads N] [--iters N]
//! ```
//!
//! `judge` prints, as JSON, how samples saved by either side compare with the target
//! ([`fm_dist::metrics::SampleQuality`], 2,000 points × 5 draws for W2), so both sides are judged
//! by the same code.

use fm_dist::metrics::SampleQuality;
use fm_dist::{parse_target, StandardNormal};
use fm_model::{Activation, Mlp, MlpConfig};
use fm_ode::{Divergence, Method};
use fm_train::{model_log_prob, sample, train, LikelihoodConfig, SampleConfig, TrainConfig};
use rand::{rngs::StdRng, SeedableRng};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Tensor};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "usage: bench run [--target gmm3|spec:FILE] [--width W] [--layers L] [--batch B] [--lr LR] [--train-steps N] \
[--samples N] [--euler-steps N] [--rk4-steps N] [--lik-points N] [--lik-steps N] [--lik-chunk N] [--sample-chunk N] \
[--threads N] [--seed S] [--device cpu|cuda] [--out-samples X.npy]\n       bench judge --samples X.npy [--target gmm3|spec:FILE] [--seed S]\n       bench micro [--threads N] [--iters N] [--width W]";

struct Args {
    task: String,
    target: String,
    width: usize,
    layers: usize,
    batch: usize,
    lr: f64,
    train_steps: usize,
    samples: usize,
    euler_steps: usize,
    rk4_steps: usize,
    lik_points: usize,
    lik_steps: usize,
    lik_chunk: usize,
    sample_chunk: usize,
    threads: usize,
    seed: u64,
    device: String,
    out_samples: Option<PathBuf>,
    samples_file: Option<PathBuf>,
    iters: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let task = it.next().ok_or_else(|| USAGE.to_string())?;
    if task == "-h" || task == "--help" {
        println!("{USAGE}");
        std::process::exit(0);
    }
    if task != "run" && task != "judge" && task != "micro" {
        return Err(format!("unknown task '{task}'\n{USAGE}"));
    }
    let mut a = Args {
        task,
        target: "gmm3".into(),
        width: 128,
        layers: 3,
        batch: 256,
        lr: 1e-4,
        train_steps: 10_000,
        samples: 10_000,
        euler_steps: 100,
        rk4_steps: 20,
        lik_points: 10_000,
        lik_steps: 20,
        lik_chunk: 1024,
        sample_chunk: SampleConfig::default().chunk_size,
        threads: 0,
        seed: 0,
        device: "cpu".into(),
        out_samples: None,
        samples_file: None,
        iters: 2000,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: '{v}': {e}"));
        match flag.as_str() {
            "--target" => a.target = value()?,
            "--width" => a.width = number(value()?)?,
            "--layers" => a.layers = number(value()?)?,
            "--batch" => a.batch = number(value()?)?,
            "--lr" => a.lr = value()?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--train-steps" => a.train_steps = number(value()?)?,
            "--samples" if a.task == "judge" => a.samples_file = Some(value()?.into()),
            "--samples" => a.samples = number(value()?)?,
            "--euler-steps" => a.euler_steps = number(value()?)?,
            "--rk4-steps" => a.rk4_steps = number(value()?)?,
            "--lik-points" => a.lik_points = number(value()?)?,
            "--lik-steps" => a.lik_steps = number(value()?)?,
            "--lik-chunk" => a.lik_chunk = number(value()?)?,
            "--sample-chunk" => a.sample_chunk = number(value()?)?,
            "--threads" => a.threads = number(value()?)?,
            "--seed" => a.seed = number(value()?)? as u64,
            "--device" => a.device = value()?,
            "--out-samples" => a.out_samples = Some(value()?.into()),
            "--iters" => a.iters = number(value()?)?.max(1),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    Ok(a)
}

/// VmHWM of this process in kB (None without /proc).
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of this process (all threads, user + system) in seconds, from /proc/self/stat
/// (USER_HZ = 100 on Linux, so 10 ms resolution); NaN without /proc.
fn cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(14) + ticks(15)) / 100.0
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so the next reading is one phase's peak.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn run(a: &Args) -> Res<()> {
    if a.threads > 0 {
        tch::set_num_threads(a.threads as i32);
    }
    tch::manual_seed(a.seed as i64);
    let device = fm_model::parse_device(&a.device)?;
    let target = parse_target(&a.target)?;
    let d = target.dim();
    let source = StandardNormal::new(d)?;
    let mut mlp = Mlp::new(
        MlpConfig {
            dim: d,
            hidden_dim: a.width,
            hidden_layers: a.layers,
            activation: Activation::Relu,
            time_embedding: 0,
            time_inputs: 1,
            ..MlpConfig::default()
        },
        device,
    )?;
    let mut rss = serde_json::Map::new();
    let clears = reset_peak_rss();

    let cfg = TrainConfig { steps: a.train_steps, batch_size: a.batch, lr: a.lr, seed: a.seed, ..TrainConfig::default() };
    // Warm-up: one step on a throwaway network, so one-time initialisation (libtorch loading its
    // CUDA libraries at the first backward pass, allocator growth) stays out of the timings. The
    // PyTorch side does the same.
    let (start, cpu0) = (Instant::now(), cpu_s());
    let mut warm = Mlp::new(mlp.config().clone(), device)?;
    train(&mut warm, target.as_ref(), &source, &TrainConfig { steps: 1, ..cfg.clone() }, &mut |_| {})?;
    drop(warm);
    let (warmup_s, warmup_cpu_s) = (start.elapsed().as_secs_f64(), cpu_s() - cpu0);
    let (start, cpu0) = (Instant::now(), cpu_s());
    let report = train(&mut mlp, target.as_ref(), &source, &cfg, &mut |_| {})?;
    let (train_s, train_cpu_s) = (start.elapsed().as_secs_f64(), cpu_s() - cpu0);
    rss.insert("train".into(), json!(peak_rss_kb()));

    let euler_cfg = SampleConfig {
        n_samples: a.samples,
        steps: a.euler_steps,
        method: Method::Euler,
        seed: a.seed + 1,
        chunk_size: a.sample_chunk,
        ..SampleConfig::default()
    };
    reset_peak_rss();
    let (start, cpu0) = (Instant::now(), cpu_s());
    let x = sample(&mlp, &source, &euler_cfg)?;
    let (euler_s, euler_cpu_s) = (start.elapsed().as_secs_f64(), cpu_s() - cpu0);
    rss.insert("euler".into(), json!(peak_rss_kb()));
    if let Some(path) = &a.out_samples {
        fm_dist::io::write_npy(path, x.view())?;
    }
    drop(x);

    let rk4_cfg = SampleConfig { steps: a.rk4_steps, method: Method::Rk4, ..euler_cfg };
    reset_peak_rss();
    let (start, cpu0) = (Instant::now(), cpu_s());
    let _ = sample(&mlp, &source, &rk4_cfg)?;
    let (rk4_s, rk4_cpu_s) = (start.elapsed().as_secs_f64(), cpu_s() - cpu0);
    rss.insert("rk4".into(), json!(peak_rss_kb()));

    let points = target.sample(a.lik_points, &mut StdRng::seed_from_u64(a.seed + 2));
    let lik_cfg =
        LikelihoodConfig { method: Method::Rk4, steps: a.lik_steps, divergence: Divergence::Exact, chunk_size: a.lik_chunk, ..LikelihoodConfig::default() };
    reset_peak_rss();
    let (start, cpu0) = (Instant::now(), cpu_s());
    let log_q = model_log_prob(&mlp, &source, points.view(), &lik_cfg)?;
    let (lik_s, lik_cpu_s) = (start.elapsed().as_secs_f64(), cpu_s() - cpu0);
    rss.insert("lik".into(), json!(peak_rss_kb()));

    let peak = rss.values().filter_map(|v| v.as_u64()).max();
    let out = json!({
        "side": "ours",
        "version": format!("fm-train {} (tch, libtorch)", env!("CARGO_PKG_VERSION")),
        "threads": tch::get_num_threads(),
        "device": format!("{device:?}"),
        "dim": d,
        "train_steps": a.train_steps,
        "train_s": train_s,
        "train_steps_per_s": a.train_steps as f64 / train_s,
        "final_loss": report.final_loss,
        "euler_s": euler_s,
        "euler_samples_steps_per_s": (a.samples * a.euler_steps) as f64 / euler_s,
        "rk4_s": rk4_s,
        "rk4_samples_steps_per_s": (a.samples * a.rk4_steps) as f64 / rk4_s,
        "lik_s": lik_s,
        "lik_points_per_s": a.lik_points as f64 / lik_s,
        "lik_mean_log_q": log_q.mean().unwrap_or(f64::NAN),
        "rss_kb": rss,
        "rss_phases_separate": clears,
        "peak_rss_kb": peak,
        "warmup_s": warmup_s,
        "cpu_s": { "warmup": warmup_cpu_s, "train": train_cpu_s, "euler": euler_cpu_s, "rk4": rk4_cpu_s, "lik": lik_cpu_s },
    });
    println!("{out}");
    Ok(())
}

fn judge(a: &Args) -> Res<()> {
    let path = a.samples_file.as_ref().ok_or("judge needs --samples X.npy")?;
    let x = fm_dist::io::read_points(path)?;
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(format!("{}: value {i} is not finite", path.display()).into());
    }
    let target = parse_target(&a.target)?;
    let w2_points = SampleQuality::W2_POINTS.min(x.nrows());
    let q = SampleQuality::measure(target.as_ref(), x.view(), w2_points, SampleQuality::W2_DRAWS, &mut StdRng::seed_from_u64(a.seed))?;
    let out = json!({
        "n_samples": q.n_samples,
        "w2": q.w2,
        "w2_reference": q.w2_reference,
        "w2_excess": q.w2_excess(),
        "w2_points": q.w2_points,
        "log_prob_gap": q.log_prob_gap(),
        "max_share_error": q.max_share_error(),
        "shares": q.shares,
        "mmd2": q.mmd2,
    });
    println!("{out}");
    Ok(())
}

type Job<'a> = (String, Box<dyn FnMut() -> Res<()> + 'a>);

/// Times the jobs interleaved (one batch of `iters` calls of each in turn, 7 rounds, so a busy
/// spell of a shared machine hits all of them), and prints and returns the best round of each
/// in microseconds per call.
fn time_group(iters: usize, mut jobs: Vec<Job<'_>>, out: &mut serde_json::Map<String, serde_json::Value>) -> Res<()> {
    let mut best = vec![f64::INFINITY; jobs.len()];
    for _ in 0..7 {
        for (b, (_, f)) in best.iter_mut().zip(jobs.iter_mut()) {
            let start = Instant::now();
            for _ in 0..iters {
                f()?;
            }
            *b = b.min(start.elapsed().as_secs_f64() * 1e6 / iters as f64);
        }
    }
    for ((name, _), b) in jobs.iter().zip(best) {
        eprintln!("  {name:56} {b:9.1} µs");
        out.insert(name.clone(), json!(b));
    }
    Ok(())
}

/// The hidden layers and output of an MLP given its first pre-activation.
fn rest(layers: &[(Tensor, Tensor)], mut h: Tensor) -> Res<Tensor> {
    for (w, b) in &layers[1..] {
        h = h.f_relu()?.f_linear(w, Some(b))?;
    }
    Ok(h)
}

fn micro(a: &Args) -> Res<()> {
    use fm_dist::{GaussianMixture, Target};
    use fm_ode::VectorField;
    use fm_train::{Adam, TimeSampling};
    use tch::{Kind, Reduction};
    if a.threads > 0 {
        tch::set_num_threads(a.threads as i32);
    }
    tch::manual_seed(0);
    let (n, iters) = (a.batch, a.iters);
    let cpu = (Kind::Float, Device::Cpu);
    let target = GaussianMixture::seed();
    let source = StandardNormal::new(2)?;
    let mlp = Mlp::new(MlpConfig { hidden_dim: a.width, ..MlpConfig::default() }, Device::Cpu)?;
    let vars = mlp.var_store().variables();
    let n_params: i64 = vars.values().map(|t| t.numel() as i64).sum();
    let layers: Vec<(Tensor, Tensor)> =
        (0..=3).map(|i| (vars[&format!("net.{}.weight", 2 * i)].shallow_clone(), vars[&format!("net.{}.bias", 2 * i)].shallow_clone())).collect();
    let mut out = serde_json::Map::new();
    eprintln!("micro: seed network (width {}), batch {n}, {} parameter tensors, {n_params} numbers, {} thread(s)", a.width, vars.len(), tch::get_num_threads());

    // One training step's pieces, as fm_train::train does them: `adam` keeps the parameters,
    // gradients and moments of `mlp` in flat buffers. `old` is the same network and optimizer
    // with its parameters moved out of the buffer afterwards, so that every update and
    // zero_grad goes tensor by tensor (the form before flat buffers).
    let mut rng = StdRng::seed_from_u64(0);
    let mut host = vec![0f32; n * 5];
    let (x, t, u) = (Tensor::f_randn([n as i64, 2], cpu)?, Tensor::f_rand([n as i64, 1], cpu)?, Tensor::f_randn([n as i64, 2], cpu)?);
    let mlp_old = Mlp::new(mlp.config().clone(), Device::Cpu)?;
    let mut adam = Adam::new(fm_model::VelocityModel::named_parameters(&mlp), 1e-4)?;
    let mut adam_old = Adam::new(fm_model::VelocityModel::named_parameters(&mlp_old), 1e-4)?;
    tch::no_grad(|| -> Res<()> {
        for (_, mut p) in fm_model::VelocityModel::named_parameters(&mlp_old) {
            let copy = p.f_detach_copy()?;
            p.f_set_data(&copy)?;
        }
        Ok(())
    })?;
    for (opt, net) in [(&mut adam, &mlp), (&mut adam_old, &mlp_old)] {
        net.forward(&x, &t)?.f_mse_loss(&u, Reduction::Mean)?.f_backward()?;
        opt.step()?;
    }
    assert!(adam.is_flat() && !adam_old.is_flat());
    let mut ema = fm_train::Ema::new(fm_model::VelocityModel::named_parameters(&mlp), 0.999)?;
    let mut ema_old = fm_train::Ema::new(fm_model::VelocityModel::named_parameters(&mlp_old), 0.999)?;
    let fwd_bwd = |opt: &mut Adam, net: &Mlp| -> Res<()> {
        opt.zero_grad();
        net.forward(&x, &t)?.f_mse_loss(&u, Reduction::Mean)?.f_backward()?;
        Ok(())
    };
    let (adam, adam_old) = (std::cell::RefCell::new(adam), std::cell::RefCell::new(adam_old));
    let jobs: Vec<Job> = vec![
        (
            "train: host draws + one copy to a tensor".into(),
            Box::new(|| {
                let x0 = source.sample(n, &mut rng);
                let x1 = Target::sample(&target, n, &mut rng);
                for (dst, src) in host.iter_mut().zip(x0.iter().chain(x1.iter())) {
                    *dst = *src as f32;
                }
                TimeSampling::Uniform.fill(&mut host[4 * n..], &mut rng);
                let _ = Tensor::from_slice(&host);
                Ok(())
            }),
        ),
        ("train: zero_grad + forward + MSE + backward, flat gradients".into(), Box::new(|| fwd_bwd(&mut adam.borrow_mut(), &mlp))),
        ("train: zero_grad + forward + MSE + backward, per tensor (before)".into(), Box::new(|| fwd_bwd(&mut adam_old.borrow_mut(), &mlp_old))),
        (
            "train: forward + MSE + backward written out (Mlp::mse_backward)".into(),
            Box::new(|| {
                let _ = mlp.mse_backward(&x, &t, &u)?.ok_or("no gradients to write into")?;
                Ok(())
            }),
        ),
        ("train: Adam step, flat buffers (fm_train::Adam)".into(), Box::new(|| Ok(adam.borrow_mut().step()?))),
        ("train: Adam step, per tensor (before)".into(), Box::new(|| Ok(adam_old.borrow_mut().step()?))),
        ("train: EMA update, flat (fm_train::Ema)".into(), Box::new(|| Ok(ema.update(1_000_000)?))),
        ("train: EMA update, per tensor (before)".into(), Box::new(|| Ok(ema_old.update(1_000_000)?))),
    ];
    time_group(iters, jobs, &mut out)?;

    // One field evaluation (sampling), as the library does it and as PyTorch code does.
    let _g = tch::no_grad_guard();
    for rows in [512i64, 10_000] {
        let x = Tensor::f_randn([rows, 2], cpu)?;
        let reps = (iters * 512 / rows as usize).max(20);
        let (w0, b0) = &layers[0];
        let jobs: Vec<Job> = vec![
            (
                format!("field, {rows} rows: Mlp::velocity (W_x x + (W_t t + b))"),
                Box::new(|| {
                    let _ = mlp.velocity(&x, 0.5)?;
                    Ok(())
                }),
            ),
            (
                format!("field, {rows} rows: first layer as one addmm"),
                Box::new(|| {
                    let bias = w0.f_select(1, 2)?.f_mul_scalar(0.5)?.f_add(b0)?;
                    let _ = rest(&layers, bias.f_addmm(&x, &w0.f_narrow(1, 0, 2)?.f_tr()?)?)?;
                    Ok(())
                }),
            ),
            (
                format!("field, {rows} rows: cat [x, t] + linear (PyTorch's)"),
                Box::new(|| {
                    let xt = Tensor::f_cat(&[x.shallow_clone(), x.f_new_full([rows, 1], 0.5, cpu)?], 1)?;
                    let _ = rest(&layers, xt.f_linear(w0, Some(b0))?)?;
                    Ok(())
                }),
            ),
        ];
        time_group(reps, jobs, &mut out)?;
    }

    // One evaluation of the likelihood's augmented field on 1,024 rows: velocity and exact
    // divergence, written out and by autograd (one backward pass per dimension).
    let x = Tensor::f_randn([1024, 2], cpu)?;
    let autograd_divergence = || -> Res<()> {
        let xg = x.f_detach()?.f_set_requires_grad(true)?;
        tch::with_grad(|| -> Res<()> {
            let v = mlp.velocity(&xg, 0.5)?;
            for k in 0..2 {
                let _ = Tensor::f_run_backward(&[v.f_select(1, k)?.f_sum(None::<Kind>)?], &[&xg], k == 0, false)?;
            }
            Ok(())
        })
    };
    let jobs: Vec<Job> = vec![
        (
            "divergence, 1024 rows: Mlp::velocity_and_divergence".into(),
            Box::new(|| {
                let _ = mlp.velocity_and_divergence(&x, 0.5)?;
                Ok(())
            }),
        ),
        ("divergence, 1024 rows: autograd, a pass per dimension".into(), Box::new(autograd_divergence)),
    ];
    time_group((iters / 8).max(20), jobs, &mut out)?;
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

fn main() {
    let result = parse_args().map_err(Into::into).and_then(|a| match a.task.as_str() {
        "run" => run(&a),
        "micro" => micro(&a),
        _ => judge(&a),
    });
    if let Err(e) = result {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}
