//! `cargo xtask bench --whole`: the whole seed experiment as a user runs it, `fm run` (train,
//! sample, judge, draw) against `xtask/python/seed_pytorch.py` (the same training and sampling
//! in efficient PyTorch eager, no judging, no figure), timed as whole processes, on a quiet
//! machine and beside one busy process of our own (a core held by a spinning loop, killed after
//! each run and bounded in time whatever happens), alternating sides and modes. Prints medians
//! and ranges, and the two ratios that matter: each side's loaded/quiet, and PyTorch/fm.
//! Timings are reported, never judged.

use crate::bench::{find_python, stats, target_dir};
use crate::setup::workspace_root;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: cargo xtask bench --whole [--reps N] [--quick] [--fm PATH] [--python PATH] [--no-loaded]

The seed experiment as whole processes: fm run (train, sample, judge, draw) against
xtask/python/seed_pytorch.py (the same training and sampling in PyTorch eager), alternating, in
two modes: quiet, and loaded (beside one busy process of its own that holds a core). Prints the
medians, ranges and ratios and writes target/bench/whole.md. On 2 cores a full run takes about
20 minutes, most of it PyTorch's loaded runs (5 minutes each); --no-loaded takes 2.

  --reps N      runs of each side in each mode (default 3)
  --quick       1,000 training steps instead of 10,000 (a smoke run)
  --fm PATH     the fm binary (default: cargo build --release -p fm-cli)
  --python PATH the Python with torch (default: the set-up's virtual environment)
  --no-loaded   the quiet mode only
";

/// The busy process's own bound: it exits after this long even if nobody kills it.
pub const BUSY_LIMIT: Duration = Duration::from_secs(900);

/// `cargo xtask busy`: spins one core until killed, or for [`BUSY_LIMIT`].
pub fn busy() -> Result<(), String> {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < BUSY_LIMIT {
        for _ in 0..1_000_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    Ok(())
}

struct Busy(Child);

impl Busy {
    fn start() -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the xtask binary: {e}"))?;
        let child = Command::new(exe).arg("busy").stdout(Stdio::null()).spawn().map_err(|e| format!("cannot start the busy process: {e}"))?;
        // Let it reach the scheduler's steady state before the measured run starts.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self(child))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Fm,
    PyTorch,
}

pub fn run(args: &[String], torch_dir: Option<&std::path::Path>) -> Result<(), String> {
    let (mut reps, mut quick, mut fm, mut python, mut loaded) = (3usize, false, None::<PathBuf>, None::<PathBuf>, true);
    let mut it = args.iter().filter(|a| *a != "--whole");
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--reps" => reps = value()?.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("--reps needs a positive integer\n{USAGE}"))?,
            "--quick" => quick = true,
            "--fm" => fm = Some(value()?.into()),
            "--python" => python = Some(value()?.into()),
            "--no-loaded" => loaded = false,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    let fm = match fm {
        Some(p) => p,
        None => {
            eprintln!("xtask bench --whole: building fm (cargo build --release -p fm-cli)");
            crate::cargo(&["build", "--release", "--quiet", "-p", "fm-cli", "--bin", "fm"])?;
            target_dir().join("release").join("fm")
        }
    };
    let python = python.unwrap_or_else(|| find_python(torch_dir));
    let script = workspace_root().join("xtask").join("python").join("seed_pytorch.py");
    let out = target_dir().join("bench").join("whole-run");
    let steps = if quick { 1_000 } else { 10_000 };
    let modes: &[bool] = if loaded { &[false, true] } else { &[false] };
    // times[mode][side]
    let mut times = vec![[Vec::new(), Vec::new()]; modes.len()];
    for rep in 0..reps {
        for (mi, &busy) in modes.iter().enumerate() {
            let order = if (rep + mi) % 2 == 0 { [Side::Fm, Side::PyTorch] } else { [Side::PyTorch, Side::Fm] };
            for side in order {
                let mut cmd = match side {
                    Side::Fm => {
                        let _ = std::fs::remove_dir_all(&out);
                        let mut c = Command::new(&fm);
                        c.args(["run", "--quiet", "--steps", &steps.to_string(), "--out"]).arg(&out);
                        c
                    }
                    Side::PyTorch => {
                        let mut c = Command::new(&python);
                        c.arg(&script).args(["--steps", &steps.to_string()]);
                        c
                    }
                };
                let guard = if busy { Some(Busy::start()?) } else { None };
                let t0 = Instant::now();
                let o = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
                let s = t0.elapsed().as_secs_f64();
                drop(guard);
                if !o.status.success() {
                    return Err(format!("{:?} failed ({}): {}", cmd.get_program(), o.status, String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")));
                }
                let name = if side == Side::Fm { "fm run" } else { "PyTorch" };
                eprintln!("xtask bench --whole: rep {}/{reps} {:6} {name:8} {s:6.1} s", rep + 1, if busy { "loaded" } else { "quiet" });
                times[mi][side as usize].push(s);
            }
        }
    }
    let cell = |v: &[f64]| {
        let (m, lo, hi) = stats(v);
        if v.len() > 1 {
            format!("{m:.1} s ({lo:.1}–{hi:.1})")
        } else {
            format!("{m:.1} s")
        }
    };
    let median = |v: &[f64]| stats(v).0;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut report = format!(
        "The seed experiment as whole processes ({steps} training steps; {reps} alternating runs per side and mode; {cores} cores; \
         loaded: beside one busy process)\n\n| mode | `fm run` | PyTorch eager | PyTorch / fm |\n|---|---|---|---|\n"
    );
    for (mi, &busy) in modes.iter().enumerate() {
        let [f, p] = &times[mi];
        report += &format!("| {} | {} | {} | {:.2}× |\n", if busy { "loaded" } else { "quiet" }, cell(f), cell(p), median(p) / median(f));
    }
    if modes.len() == 2 {
        let ratio = |side: usize| median(&times[1][side]) / median(&times[0][side]);
        report += &format!("| loaded / quiet | {:.2}× | {:.2}× | |\n", ratio(0), ratio(1));
    }
    println!("{report}");
    let md = target_dir().join("bench").join("whole.md");
    std::fs::write(&md, &report).map_err(|e| format!("cannot write {}: {e}", md.display()))?;
    eprintln!("xtask bench --whole: written {}", md.display());
    Ok(())
}
