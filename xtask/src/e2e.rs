//! `cargo xtask e2e`: the seed experiment on a device, judged by the foundation's quality bar
//! (the seed's own PyTorch script meets it; see the README).

use crate::{cargo, setup::workspace_root};
use serde_json::Value;

/// |share − weight| for every component.
const MAX_SHARE_ERROR: f64 = 0.03;
/// |mean log-density of generated − of true samples|, nats. The seed's settings leave this
/// figure at the mercy of the training seed: ours measured 0.043, 0.094 and 0.118 for seeds
/// 1, 2 and 0; the efficient PyTorch script 0.031 and 0.101 on two runs. The bar sits above
/// both implementations' spread (it was 0.06, from one seed, before that was measured).
const MAX_LOG_PROB_GAP: f64 = 0.15;
/// W2(generated, true) − W2(true, true), averaged over draws.
const MAX_W2_EXCESS: f64 = 0.20;

const USAGE: &str =
    "usage: cargo xtask e2e [--device auto|cpu|cuda] [--preset seed|fast|one-step] [--fm PATH]  (--fm: an fm binary already built; default: build it; \
--preset one-step judges the distilled model's one-step samples)";

pub fn run(args: &[String]) -> Result<(), String> {
    let (mut device, mut fm, mut preset) = ("auto".to_string(), None, "seed".to_string());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let value = inline.or_else(|| it.next().cloned()).ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag {
            "--device" => device = value,
            "--fm" => fm = Some(value),
            "--preset" => preset = value,
            _ => return Err(USAGE.into()),
        }
    }
    let out = workspace_root().join("target").join("e2e").join(format!("{}-{preset}", device.replace(':', "-")));
    let out_str = out.to_string_lossy().to_string();
    let fm_args = ["run", "--quiet", "--device", &device, "--preset", &preset, "--out", &out_str];
    match fm {
        Some(fm) => crate::run_checked(std::process::Command::new(fm).args(fm_args))?,
        None => cargo(&[&["run", "--release", "--quiet", "-p", "fm-cli", "--bin", "fm", "--"][..], &fm_args].concat())?,
    }

    let path = out.join("report.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let report: Value = serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    // fm derives these from its quality report (fm_dist::metrics::SampleQuality); the bar is ours.
    let num = |key: &str| report[key].as_f64().ok_or_else(|| format!("{} has no number '{key}'", path.display()));
    let (share_error, gap, w2_excess) = (num("max_share_error")?, num("log_prob_gap")?.abs(), num("w2_excess")?);

    let checks = [
        ("component shares within ±0.03 of the weights", share_error, MAX_SHARE_ERROR),
        ("mean log-density within 0.15 nats of true samples'", gap, MAX_LOG_PROB_GAP),
        ("W2 at most 0.20 above true-vs-true", w2_excess, MAX_W2_EXCESS),
    ];
    println!("e2e on {device}, preset {preset}:");
    let mut failed = 0;
    for (what, value, bar) in checks {
        let ok = value <= bar;
        failed += usize::from(!ok);
        println!("  {} {what}: {value:.4} (bar {bar})", if ok { "PASS" } else { "FAIL" });
    }
    if failed > 0 {
        return Err(format!("{failed} of {} quality checks failed; outputs in {}", checks.len(), out.display()));
    }
    println!("e2e passed; outputs in {}", out.display());
    Ok(())
}
