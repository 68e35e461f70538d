//! `cargo xtask fuzz`: the long run of the fuzz harness (fm-tests' `fuzz` binary, release
//! build), which prints the executions of each target, executions per second and time, and
//! fails if any input panicked, hung or allocated without bound (saved under
//! `target/fuzz-crashes/`). The test suite runs the same targets briefly (tests/tests/fuzz.rs).

use crate::cargo;

const USAGE: &str = "usage: cargo xtask fuzz [--seconds N] [--target NAME] [--seed S]";

pub fn run(args: &[String]) -> Result<(), String> {
    let mut forwarded: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag {
            "--seconds" => {
                let v = value()?;
                v.parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0).ok_or_else(|| format!("--seconds needs a positive number, got '{v}'"))?;
                forwarded.extend(["--seconds".into(), v]);
            }
            "--seed" => {
                let v = value()?;
                let ok = match v.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16).is_ok(),
                    None => v.parse::<u64>().is_ok(),
                };
                if !ok {
                    return Err(format!("--seed needs an integer (decimal or 0x hex), got '{v}'"));
                }
                forwarded.extend(["--seed".into(), v]);
            }
            "--target" => forwarded.extend(["--target".into(), value()?]),
            "-h" | "--help" => {
                println!("{USAGE}\n  --seconds N   total time, shared equally by the targets (default 60)\n  --target NAME spec, run-config, checkpoint, npy or csv (repeatable; default all)\n  --seed S      seed of the mutations (default: from the clock, printed)");
                return Ok(());
            }
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    let mut cmd = vec!["run", "--release", "--quiet", "-p", "fm-tests", "--bin", "fuzz", "--"];
    cmd.extend(forwarded.iter().map(String::as_str));
    cargo(&cmd)
}
