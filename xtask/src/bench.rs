//! `cargo xtask bench`: our library against an efficient PyTorch eager script, the same work on
//! the same machine, side by side.
//!
//! Each repetition runs, at each scale, both sides one after the other, the order alternating
//! between repetitions (so a slow spell of a shared machine does not fall on one side only):
//! ours is `crates/fm-train/examples/bench.rs` (built once, run as a binary), PyTorch's is
//! `xtask/python/bench_pytorch.py` with the torch the set-up installed. Both print one JSON line
//! of timings and per-phase peak RSS (VmHWM, reset before each phase). The report is a markdown
//! table of medians and min–max ranges, printed and written to `target/bench/latest.md` (raw runs
//! in `target/bench/latest.json`). Timings are reported, never judged: there is no pass/fail.
//!
//! The sample quality is judged for both sides by the same code (the example's `judge`, i.e.
//! `fm_dist::metrics::SampleQuality`), on the seed-scale Euler samples of the first repetition.

use crate::setup::workspace_root;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const USAGE: &str = "\
usage: cargo xtask bench [--reps N] [--quick] [--threads N] [--scale seed|large|both] [--device cpu|cuda] [--python PATH]
                         [--py-sample-chunk N] [--py-cuda-graph] [--ours PATH]

  --reps N             repetitions of each side at each scale (default 3; 1 with --quick)
  --quick              a smoke run: tiny workloads, to check both sides work end to end
  --threads N          torch threads on both sides (default: the available cores)
  --scale S            seed (2-D, width 128, batch 256), large (16-D mixture, width 512, batch 4,096) or both (default)
  --python PATH        the Python with torch (default: the set-up's virtual environment, else python3)
  --device D           where both sides compute (default cpu); on cuda the large scale runs 20× the training steps,
                       16× the samples and 8× the log-density points, so that each phase lasts long enough to time
  --py-sample-chunk N  let the PyTorch side sample N rows at a time too (default: all at once, as idiomatic code does)
  --py-cuda-graph      the PyTorch side captures its training step as a CUDA graph and replays it (with --device cuda)
  --ours PATH          our side's binary, already built (default: build the bench example with cargo)
  --whole              the whole seed experiment instead, `fm run` against seed_pytorch.py as whole processes, on a
                       quiet machine and beside a busy process of its own (bench --whole --help: its options)
";

/// A side of the comparison.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Ours,
    PyTorch,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Ours => "ours",
            Side::PyTorch => "pytorch",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Side::Ours => "ours (Rust, tch)",
            Side::PyTorch => "PyTorch eager",
        }
    }
}

/// The work of one scale, passed identically to both sides.
#[derive(Clone, Debug)]
struct Workload {
    name: &'static str,
    target: String,
    width: usize,
    layers: usize,
    batch: usize,
    train_steps: usize,
    samples: usize,
    euler_steps: usize,
    rk4_steps: usize,
    lik_points: usize,
    lik_steps: usize,
    lik_chunk: usize,
}

impl Workload {
    fn seed(quick: bool) -> Self {
        let w = Workload {
            name: "seed",
            target: "gmm3".into(),
            width: 128,
            layers: 3,
            batch: 256,
            train_steps: 10_000,
            samples: 10_000,
            euler_steps: 100,
            rk4_steps: 20,
            lik_points: 10_000,
            lik_steps: 20,
            lik_chunk: 1024,
        };
        if quick {
            Workload { train_steps: 300, samples: 2_000, euler_steps: 20, rk4_steps: 5, lik_points: 1_000, lik_steps: 4, ..w }
        } else {
            w
        }
    }

    /// 16-D, width 512, batch 4,096; the counts keep one side's run near half a minute on 2 cores
    /// (on a GPU, where the same counts take a fraction of a second, more work).
    fn large(spec: &Path, quick: bool, cuda: bool) -> Self {
        let w = Workload {
            name: "large",
            target: format!("spec:{}", spec.display()),
            width: 512,
            layers: 3,
            batch: 4096,
            train_steps: 100,
            samples: 4096,
            euler_steps: 50,
            rk4_steps: 10,
            lik_points: 1024,
            lik_steps: 5,
            lik_chunk: 1024,
        };
        if quick {
            Workload { train_steps: 3, samples: 512, euler_steps: 4, rk4_steps: 2, lik_points: 128, lik_steps: 1, ..w }
        } else if cuda {
            Workload { train_steps: 20 * w.train_steps, samples: 16 * w.samples, lik_points: 8 * w.lik_points, ..w }
        } else {
            w
        }
    }

    fn args(&self, threads: usize, device: &str) -> Vec<String> {
        let pairs: [(&str, String); 13] = [
            ("--target", self.target.clone()),
            ("--width", self.width.to_string()),
            ("--layers", self.layers.to_string()),
            ("--batch", self.batch.to_string()),
            ("--train-steps", self.train_steps.to_string()),
            ("--samples", self.samples.to_string()),
            ("--euler-steps", self.euler_steps.to_string()),
            ("--rk4-steps", self.rk4_steps.to_string()),
            ("--lik-points", self.lik_points.to_string()),
            ("--lik-steps", self.lik_steps.to_string()),
            ("--lik-chunk", self.lik_chunk.to_string()),
            ("--threads", threads.to_string()),
            ("--device", device.to_string()),
        ];
        let mut out = vec!["run".to_string()];
        for (k, v) in pairs {
            out.push(k.into());
            out.push(v);
        }
        out
    }

    fn dim_label(&self) -> String {
        if self.name == "seed" {
            "seed: 2-D, 3→128→128→128→2".into()
        } else {
            format!("16-D mixture, width {}", self.width)
        }
    }
}

struct Options {
    reps: usize,
    quick: bool,
    threads: usize,
    scales: Vec<&'static str>,
    python: Option<PathBuf>,
    py_sample_chunk: Option<usize>,
    py_cuda_graph: bool,
    device: String,
    ours: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut o = Options {
        reps: 0,
        quick: false,
        threads: cores,
        scales: vec!["seed", "large"],
        python: None,
        py_sample_chunk: None,
        py_cuda_graph: false,
        device: "cpu".into(),
        ours: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (flag.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        let positive = |v: String| match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{flag} needs a positive integer, got '{v}'")),
        };
        match flag {
            "--reps" => o.reps = positive(value()?)?,
            "--quick" => o.quick = true,
            "--threads" => o.threads = positive(value()?)?,
            "--scale" => {
                o.scales = match value()?.as_str() {
                    "seed" => vec!["seed"],
                    "large" => vec!["large"],
                    "both" => vec!["seed", "large"],
                    other => return Err(format!("--scale: seed, large or both, got '{other}'")),
                }
            }
            "--python" => o.python = Some(value()?.into()),
            "--py-sample-chunk" => o.py_sample_chunk = Some(positive(value()?)?),
            "--py-cuda-graph" => o.py_cuda_graph = true,
            "--device" => {
                o.device = match value()?.as_str() {
                    d @ ("cpu" | "cuda") => d.to_string(),
                    other => return Err(format!("--device: cpu or cuda, got '{other}'")),
                }
            }
            "--ours" => o.ours = Some(value()?.into()),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    if o.py_cuda_graph && o.device != "cuda" {
        return Err("--py-cuda-graph needs --device cuda".into());
    }
    if o.reps == 0 {
        o.reps = if o.quick { 1 } else { 3 };
    }
    Ok(o)
}

/// The Python of the set-up's virtual environment (`<venv>/lib/pythonX.Y/site-packages/torch`
/// is what set-up returns), else `python3`.
pub fn find_python(torch_dir: Option<&Path>) -> PathBuf {
    if let Some(venv) = torch_dir.and_then(|t| t.ancestors().nth(4)) {
        let python = venv.join("bin").join("python");
        if python.exists() {
            return python;
        }
    }
    PathBuf::from("python3")
}

pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// SplitMix64: the mixture of the large scale is generated here, once, from a fixed seed.
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }
}

/// The large scale's target, written as a mixture spec both sides read: 8 components in 16-D,
/// means uniform in [-4, 4]¹⁶, diagonal variances in [0.2, 1], weights ∝ U(0.5, 1.5); seed 16.
fn write_mixture_spec(path: &Path) -> Result<(), String> {
    let (k, d) = (8, 16);
    let mut rng = SplitMix(16);
    let raw: Vec<f64> = (0..k).map(|_| rng.uniform(0.5, 1.5)).collect();
    let total: f64 = raw.iter().sum();
    let components: Vec<Value> = raw
        .iter()
        .map(|w| {
            let mean: Vec<f64> = (0..d).map(|_| rng.uniform(-4.0, 4.0)).collect();
            let diag: Vec<f64> = (0..d).map(|_| rng.uniform(0.2, 1.0)).collect();
            json!({ "weight": w / total, "mean": mean, "diag": diag })
        })
        .collect();
    let spec = json!({ "name": "bench: 8-component diagonal Gaussian mixture in 16-D", "components": components });
    std::fs::write(path, serde_json::to_string_pretty(&spec).expect("JSON")).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The last `n` lines of a text.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a side's command; its last stdout line must be a JSON object. Errors name the side and
/// show the tail of its stderr.
fn run_side(side: Side, what: &str, cmd: &mut Command) -> Result<Value, String> {
    let shown = format!("{} {}", cmd.get_program().to_string_lossy(), cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let out = cmd.output().map_err(|e| format!("{} side ({what}): cannot start `{shown}`: {e}", side.label()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let fail =
        |why: String| format!("{} side ({what}) failed: {why}\n  command: {shown}\n  stderr (last lines):\n{}", side.label(), indent(&tail(&stderr, 25)));
    if !out.status.success() {
        return Err(fail(out.status.to_string()));
    }
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).ok_or_else(|| fail("it printed nothing".into()))?;
    match serde_json::from_str::<Value>(line) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(fail(format!("its last line is not a JSON object: {line}"))),
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

struct Sides {
    ours: PathBuf,
    python: PathBuf,
    script: PathBuf,
    py_sample_chunk: Option<usize>,
    py_cuda_graph: bool,
}

impl Sides {
    fn command(&self, side: Side, args: &[String]) -> Command {
        match side {
            Side::Ours => {
                let mut c = Command::new(&self.ours);
                c.args(args);
                c
            }
            Side::PyTorch => {
                let mut c = Command::new(&self.python);
                c.arg(&self.script).args(args);
                if let Some(n) = self.py_sample_chunk.filter(|_| args.first().map(String::as_str) == Some("run")) {
                    c.args(["--sample-chunk", &n.to_string()]);
                }
                if self.py_cuda_graph && args.first().map(String::as_str) == Some("run") {
                    c.arg("--cuda-graph");
                }
                c
            }
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next().map(str::to_string)).unwrap_or_else(|| "?".into())
}

pub fn run(args: &[String], torch_dir: Option<&Path>) -> Result<(), String> {
    if args.iter().any(|a| a == "--whole") {
        return crate::whole::run(args, torch_dir);
    }
    let o = parse(args)?;
    let root = workspace_root();
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;

    let ours = match &o.ours {
        Some(path) => path.clone(),
        None => {
            eprintln!("xtask bench: building our side (cargo build --release -p fm-train --example bench)");
            crate::cargo(&["build", "--release", "--quiet", "-p", "fm-train", "--example", "bench"])?;
            target_dir().join("release").join("examples").join("bench")
        }
    };
    let sides = Sides {
        ours,
        python: o.python.clone().unwrap_or_else(|| find_python(torch_dir)),
        script: root.join("xtask").join("python").join("bench_pytorch.py"),
        py_sample_chunk: o.py_sample_chunk,
        py_cuda_graph: o.py_cuda_graph,
    };
    if !sides.ours.exists() {
        return Err(format!("our side's binary {} does not exist", sides.ours.display()));
    }

    // Fail early, not after the first long run, when the PyTorch side cannot even start.
    let mut check = Command::new(&sides.python);
    check.args(["-c", "import json, numpy, torch; print(json.dumps({'torch': torch.__version__}))"]);
    run_side(Side::PyTorch, &format!("checking that {} imports torch and numpy; --python PATH picks another", sides.python.display()), &mut check)?;

    let spec = out_dir.join("mix16.json");
    write_mixture_spec(&spec)?;
    let workloads: Vec<Workload> =
        o.scales.iter().map(|s| if *s == "seed" { Workload::seed(o.quick) } else { Workload::large(&spec, o.quick, o.device == "cuda") }).collect();

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let load_start = load_average();
    if load_start.parse::<f64>().is_ok_and(|l| l > cores as f64 * 0.75) {
        let hint = if o.threads > 1 {
            format!("; with {} torch threads each side's thread pool waits on preempted threads and may run many times slower (try --threads 1)", o.threads)
        } else {
            String::new()
        };
        eprintln!("xtask bench: warning: load average {load_start} on {cores} cores: other processes compete for the CPU, timings will be noisy{hint}");
    }

    // runs[scale][side] = one JSON per repetition.
    let mut runs: Vec<[Vec<Value>; 2]> = workloads.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    let mut samples_files: [Option<PathBuf>; 2] = [None, None];
    let started = Instant::now();
    for rep in 0..o.reps {
        for (wi, w) in workloads.iter().enumerate() {
            let order = if (rep + wi) % 2 == 0 { [Side::Ours, Side::PyTorch] } else { [Side::PyTorch, Side::Ours] };
            for side in order {
                let mut args = w.args(o.threads, &o.device);
                let save = (rep == 0 && w.name == "seed").then(|| out_dir.join(format!("samples-{}.npy", side.name())));
                if let Some(p) = &save {
                    args.push("--out-samples".into());
                    args.push(p.display().to_string());
                }
                let what = format!("{} scale, repetition {}/{}", w.name, rep + 1, o.reps);
                let t0 = Instant::now();
                let v = run_side(side, &what, &mut sides.command(side, &args))?;
                eprintln!(
                    "xtask bench: rep {}/{} {:5} {:7}: train {:8.1} steps/s, euler {:9.0}, rk4 {:9.0} samples·steps/s, lik {:7.1} points/s ({:.1} s, load {})",
                    rep + 1,
                    o.reps,
                    w.name,
                    side.name(),
                    num(&v, "train_steps_per_s"),
                    num(&v, "euler_samples_steps_per_s"),
                    num(&v, "rk4_samples_steps_per_s"),
                    num(&v, "lik_points_per_s"),
                    t0.elapsed().as_secs_f64(),
                    load_average()
                );
                if let Some(p) = save {
                    samples_files[side as usize] = Some(p);
                }
                runs[wi][side as usize].push(v);
            }
        }
    }
    let bench_s = started.elapsed().as_secs_f64();
    let load_end = load_average();

    // The same judge for both sides' samples, with the same true sets.
    let mut quality: [Option<Value>; 2] = [None, None];
    for side in [Side::Ours, Side::PyTorch] {
        if let Some(path) = &samples_files[side as usize] {
            let args = ["judge".to_string(), "--samples".into(), path.display().to_string(), "--target".into(), "gmm3".into(), "--seed".into(), "7".into()];
            let mut cmd = Command::new(&sides.ours);
            cmd.args(&args);
            quality[side as usize] = Some(run_side(Side::Ours, &format!("judging the {} samples", side.label()), &mut cmd)?);
        }
    }

    let report = render(&o, &workloads, &runs, &quality, cores, &load_start, &load_end, bench_s);
    println!("{report}");
    let md = out_dir.join("latest.md");
    std::fs::write(&md, &report).map_err(|e| format!("cannot write {}: {e}", md.display()))?;
    let raw = json!({
        "threads": o.threads,
        "reps": o.reps,
        "quick": o.quick,
        "cores": cores,
        "load_average": { "start": load_start, "end": load_end },
        "device": o.device,
        "py_cuda_graph": o.py_cuda_graph,
        "workloads": workloads.iter().map(|w| json!({ "name": w.name, "args": w.args(o.threads, &o.device) })).collect::<Vec<_>>(),
        "runs": workloads.iter().zip(&runs).map(|(w, r)| json!({ "scale": w.name, "ours": r[0], "pytorch": r[1] })).collect::<Vec<_>>(),
        "quality": { "ours": quality[0], "pytorch": quality[1] },
    });
    let js = out_dir.join("latest.json");
    std::fs::write(&js, serde_json::to_string_pretty(&raw).expect("JSON")).map_err(|e| format!("cannot write {}: {e}", js.display()))?;
    eprintln!("xtask bench: written {} and {}", md.display(), js.display());
    Ok(())
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// (median, min, max) of finite values; NaN when none.
pub fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    (median, v[0], v[n - 1])
}

/// A figure to 3 significant digits, with k / M for thousands and millions.
fn short(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let (v, suffix) = if x.abs() >= 1e6 {
        (x / 1e6, "M")
    } else if x.abs() >= 1e4 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{suffix}")
}

fn with_range(values: &[f64]) -> String {
    let (m, lo, hi) = stats(values);
    if values.len() > 1 {
        format!("{} ({}–{})", short(m), short(lo), short(hi))
    } else {
        short(m)
    }
}

/// "**1.20×** (1.12–1.22)": the ratio of the medians, and the range of the per-repetition ratios.
fn ratio_text(ours: &[f64], py: &[f64]) -> String {
    let ratios: Vec<f64> = ours.iter().zip(py).map(|(a, b)| a / b).collect();
    let ratio = stats(ours).0 / stats(py).0;
    let (_, lo, hi) = stats(&ratios);
    if ratios.len() > 1 {
        format!("**{ratio:.2}×** ({lo:.2}–{hi:.2})")
    } else {
        format!("**{ratio:.2}×**")
    }
}

fn mib(values: &[f64]) -> String {
    let (m, lo, hi) = stats(values);
    if !m.is_finite() {
        return "–".into();
    }
    if values.len() > 1 && hi - lo >= 1024.0 {
        format!("{:.0} MiB ({:.0}–{:.0})", m / 1024.0, lo / 1024.0, hi / 1024.0)
    } else {
        format!("{:.0} MiB", m / 1024.0)
    }
}

#[allow(clippy::too_many_arguments)]
fn render(
    o: &Options,
    workloads: &[Workload],
    runs: &[[Vec<Value>; 2]],
    quality: &[Option<Value>; 2],
    cores: usize,
    load_start: &str,
    load_end: &str,
    bench_s: f64,
) -> String {
    let mut s = String::new();
    let first = |side: usize, key: &str| runs.iter().find_map(|r| r[side].first().and_then(|v| v[key].as_str().map(str::to_string))).unwrap_or_default();
    let _ = writeln!(s, "### `cargo xtask bench`{}", if o.quick { " --quick (smoke run: tiny workloads, figures meaningless)" } else { "" });
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Device {}; {} repetition(s) per side, sides alternating; {} torch thread(s) on both sides on {cores} core(s); load average {load_start} at the start, {load_end} at the end; {:.0} s in all. \
         Ours: {}; PyTorch: {}, eager{}, `xtask/python/bench_pytorch.py`. Throughputs: median (min–max); the ratio is ours / PyTorch of the medians, \
         with the range of the per-repetition ratios. Peak RSS: VmHWM of the phase (reset before it), median{}.",
        o.device,
        o.reps,
        o.threads,
        bench_s,
        first(0, "version"),
        first(1, "version"),
        if o.py_cuda_graph { " with its training step captured as a CUDA graph" } else { "" },
        if o.device == "cpu" { "" } else { "; host memory only (the GPU's is not measured)" },
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "| task | ours | PyTorch | ours / PyTorch | peak RSS ours | peak RSS PyTorch |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let mut cpu_table = String::new();
    for (w, r) in workloads.iter().zip(runs) {
        let rows = [
            (
                format!("training, {} steps × {} ({}), steps/s", thousands(w.train_steps), thousands(w.batch), w.dim_label()),
                "train_steps_per_s",
                "train",
                w.train_steps,
            ),
            (
                format!("sampling, {} × {}, samples·steps/s", thousands(w.samples), steps(w.euler_steps, "Euler")),
                "euler_samples_steps_per_s",
                "euler",
                w.samples * w.euler_steps,
            ),
            (
                format!("sampling, {} × {}, samples·steps/s", thousands(w.samples), steps(w.rk4_steps, "RK4")),
                "rk4_samples_steps_per_s",
                "rk4",
                w.samples * w.rk4_steps,
            ),
            (
                format!("log-density, {} points, {}, exact divergence, points/s", thousands(w.lik_points), steps(w.lik_steps, "RK4")),
                "lik_points_per_s",
                "lik",
                w.lik_points,
            ),
        ];
        for (label, key, phase, work) in rows {
            let wall = |side: usize| r[side].iter().map(|v| num(v, key)).collect::<Vec<f64>>();
            let cpu = |side: usize| r[side].iter().map(|v| work as f64 / v["cpu_s"][phase].as_f64().unwrap_or(f64::NAN)).collect::<Vec<f64>>();
            let rss = |side: usize| mib(&r[side].iter().map(|v| v["rss_kb"][phase].as_f64().unwrap_or(f64::NAN)).collect::<Vec<_>>());
            let (ours, py) = (wall(0), wall(1));
            let _ = writeln!(s, "| {label} | {} | {} | {} | {} | {} |", with_range(&ours), with_range(&py), ratio_text(&ours, &py), rss(0), rss(1));
            let (ours, py) = (cpu(0), cpu(1));
            let _ = writeln!(cpu_table, "| {label} | {} | {} | {} |", with_range(&ours), with_range(&py), ratio_text(&ours, &py));
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "The same work per CPU-second of each side's process (user + system time of all its threads; less sensitive to other processes on a shared machine, \
         but it counts the spinning of idle pool threads when there are several):"
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "| task | ours | PyTorch | ours / PyTorch |");
    let _ = writeln!(s, "|---|---|---|---|");
    s.push_str(&cpu_table);
    if o.device == "cuda" {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Sampling: ours integrates up to 65,536 rows at a time on a GPU (`SampleConfig::gpu_chunk_size`), PyTorch {}. Log-density: both sides solve 1,024 rows at a time.",
            o.py_sample_chunk.map_or("all rows at once".to_string(), |n| format!("{n} at a time"))
        );
    } else if o.py_sample_chunk.is_none() {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Sampling: ours integrates 512 rows at a time (`SampleConfig::chunk_size`, the library default), PyTorch all rows at once (`--py-sample-chunk 512` gives it the same blocks). \
             Log-density: both sides solve 1,024 rows at a time."
        );
    } else {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Sampling: ours 512 rows at a time, PyTorch {} (`--py-sample-chunk`). Log-density: both sides 1,024 rows at a time.",
            o.py_sample_chunk.unwrap_or(0)
        );
    }
    if quality.iter().any(Option::is_some) {
        let seed = workloads.iter().zip(runs).find(|(w, _)| w.name == "seed");
        let _ = writeln!(s);
        let _ = writeln!(s, "Same quality (seed scale, first repetition; both sides' Euler samples judged by the same code, `fm_dist::metrics::SampleQuality`, with the same true samples):");
        let _ = writeln!(s);
        let _ = writeln!(s, "| side | final training loss | W2 excess | log-density gap (nats) | max share error | mean log q of target points |");
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for side in [Side::Ours, Side::PyTorch] {
            let q = &quality[side as usize];
            let run = seed.and_then(|(_, r)| r[side as usize].first());
            let f = |v: Option<&Value>, key: &str| v.and_then(|v| v[key].as_f64()).map_or("–".to_string(), |x| format!("{x:.4}"));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                side.label(),
                f(run, "final_loss"),
                f(q.as_ref(), "w2_excess"),
                f(q.as_ref(), "log_prob_gap"),
                f(q.as_ref(), "max_share_error"),
                f(run, "lik_mean_log_q")
            );
        }
    }
    s
}

/// "20 RK4 steps", "1 RK4 step".
fn steps(n: usize, method: &str) -> String {
    format!("{n} {method} step{}", if n == 1 { "" } else { "s" })
}

/// 10000 → "10,000".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
