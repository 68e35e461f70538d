//! `cargo xtask integrators`: the integrator table of the seed model, printed by fm-train's
//! `integrators` example (release build): for each method at several step counts and Dopri5 at
//! several tolerances, NFE, wall time for 10,000 samples, W2 excess and the KL that the
//! method's own likelihood solve gives.

use crate::cargo;
use std::path::Path;

/// Flags of the example that take a path: made absolute here, since cargo runs the example
/// from the workspace root rather than from where `cargo xtask` was called.
const PATH_FLAGS: [&str; 2] = ["--checkpoint", "--save"];

pub fn run(args: &[String]) -> Result<(), String> {
    let cwd = std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    let mut forwarded = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        forwarded.push(arg.clone());
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v)),
            None => (arg.as_str(), None),
        };
        if !PATH_FLAGS.contains(&flag) {
            continue;
        }
        let value = match inline {
            Some(v) => {
                forwarded.pop();
                forwarded.push(flag.to_string());
                v.to_string()
            }
            None => it.next().ok_or_else(|| format!("{flag} needs a path"))?.clone(),
        };
        let path = Path::new(&value);
        forwarded.push(if path.is_absolute() { value.clone() } else { cwd.join(path).to_string_lossy().into_owned() });
    }
    let mut cmd = vec!["run", "--release", "--quiet", "-p", "fm-train", "--example", "integrators", "--"];
    cmd.extend(forwarded.iter().map(String::as_str));
    cargo(&cmd)
}
