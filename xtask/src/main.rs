//! `cargo xtask <task>`: set-up and end-to-end tasks, std only (plus JSON for reports).

mod bench;
mod downstream;
mod e2e;
mod fuzz;
mod integrators;
mod setup;
mod whole;

use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  setup                  install torch 2.11.0 (libtorch for tch) into a user cache, once, and link it as .libtorch
  test [cargo args]      set up, then run the whole test suite (cargo test --workspace)
  downstream             set up, then build and run templates/downstream as a project of one's own would be,
                         outside this workspace (LIBTORCH as setup prints it, no LD_LIBRARY_PATH)
  run [fm run args]      set up, then run the seed experiment (fm run, release build); e.g. -- --device cpu
  e2e [--device D] [--preset seed|fast|one-step] [--fm PATH]
                         set up, run the seed experiment (or the preset) on D (auto, cpu, cuda) and fail unless the
                         quality bar holds (--fm: an fm binary already built, e.g. carried to a GPU machine)
  bench [--reps N] [--quick] [--threads N] [--device cpu|cuda] [--ours PATH] ...  (bench --help: all options)
                         set up, then time our library against an efficient PyTorch script, side by side (figures, no pass/fail);
                         --whole: the whole seed experiment (fm run) against PyTorch, quiet and beside a busy process
  integrators [--exact] [--checkpoint P] [--save P] [--samples N] [--kl-points N] [--threads N]
                         set up, then print the integrator table of the seed model (NFE, time, W2, KL per method);
                         trains the seed model first (10,000 steps) unless given a checkpoint; --exact: of the
                         exact flow of the seed setting instead, where every error is the integrator's
  few-step [--targets T,..] [--methods M,..] [--pairs N] [--steps N] [--meanflow-ratio R]
                         set up, then print the few-step report: quality against NFE (1, 2, 4, 8, 100) for the seed's
                         model, OT-CFM, 1/2/3-RF, 2-RF distilled and MeanFlow, with each one's training budget
  conditional [--targets T,..] [--steps N] [--c2ot-steps N] [--skip-c2ot]
                         set up, then print the conditional report: per-class KL, W2 and purity of class-conditional
                         models, the classifier-free guidance sweep, and C2OT's 8gaussians → moons experiment
  energy [--quick] [--only gmm40|manywell:32|funnel:10] [--preset P] [--objective O] [--batch-size N] [--lr X] [--steps N] [--seed N]
                         set up, then print the energy report: energy-weighted flow matching (fm run --preset energy)
                         beside importance sampling and MALA at the same energy budget (W2, ESS, log Z, well shares, KL)
  fuzz [--seconds N] [--target NAME] [--seed S]
                         set up, then fuzz the file parsers and loaders (release build; 60 s in all by default):
                         executions per target, executions/s and time; fails on any panic, hang or unbounded allocation
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, r)) => (t.as_str(), r.to_vec()),
        None => {
            eprint!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let result = match task {
        "setup" => setup::ensure_libtorch().map(|torch| println!("{}", downstream::instructions(torch.as_ref()))),
        "downstream" => setup::ensure_libtorch().and_then(|torch| downstream::run(torch.as_deref())),
        "test" => setup::ensure_libtorch().and_then(|_| cargo(&[&["test", "--workspace"], &as_strs(&rest)[..]].concat())),
        "run" => setup::ensure_libtorch()
            .and_then(|_| cargo(&[&["run", "--release", "--quiet", "-p", "fm-cli", "--bin", "fm", "--", "run"], &as_strs(fm_flags(&rest))[..]].concat())),
        "e2e" => setup::ensure_libtorch().and_then(|_| e2e::run(&rest)),
        "bench" => setup::ensure_libtorch().and_then(|torch| bench::run(&rest, torch.as_deref())),
        "integrators" => setup::ensure_libtorch().and_then(|_| integrators::run(&rest)),
        "conditional" => setup::ensure_libtorch()
            .and_then(|_| cargo(&[&["run", "--release", "--quiet", "-p", "fm-train", "--example", "conditional", "--"], &as_strs(&rest)[..]].concat())),
        "few-step" => setup::ensure_libtorch()
            .and_then(|_| cargo(&[&["run", "--release", "--quiet", "-p", "fm-train", "--example", "few_step", "--"], &as_strs(&rest)[..]].concat())),
        "energy" => setup::ensure_libtorch()
            .and_then(|_| cargo(&[&["run", "--release", "--quiet", "-p", "fm-run", "--example", "energy", "--"], &as_strs(&rest)[..]].concat())),
        "fuzz" => setup::ensure_libtorch().and_then(|_| fuzz::run(&rest)),
        // The busy process of `bench --whole`'s loaded mode (not listed: an internal helper).
        "busy" => whole::busy(),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown task '{other}'\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The flags for `fm`: `cargo xtask run -- --preset fast` (as the README writes it) and
/// `cargo xtask run --preset fast` mean the same.
fn fm_flags(rest: &[String]) -> &[String] {
    match rest.split_first() {
        Some((first, flags)) if first == "--" => flags,
        _ => rest,
    }
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs cargo (the one that runs us) in the workspace root; an error if it fails.
pub fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_checked(Command::new(cargo).args(args).current_dir(setup::workspace_root()))
}

/// Runs a command with inherited output; an error naming it if it fails.
pub fn run_checked(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{} {}", cmd.get_program().to_string_lossy(), cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let status = cmd.status().map_err(|e| format!("cannot start `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_leading_separator_before_fm_flags_is_dropped() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(super::fm_flags(&v(&["--", "--preset", "fast"])), v(&["--preset", "fast"]));
        assert_eq!(super::fm_flags(&v(&["--preset", "fast"])), v(&["--preset", "fast"]));
        assert_eq!(super::fm_flags(&v(&["--help", "--"])), v(&["--help", "--"]));
        assert!(super::fm_flags(&[]).is_empty());
    }
}
