//! The `fm` binary end to end, on a tiny budget, and its answers to bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fm")).args(args).output().expect("fm runs")
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fm-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A failure with one `error:` line naming the problem, no panic, no backtrace.
fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "stderr should name '{needle}': {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

fn tiny_run(out: &Path) -> Output {
    fm(&["run", "--quiet", "--device", "cpu", "--steps", "40", "--batch-size", "64", "--samples", "400", "--sample-steps", "10", "--w2-points", "200", "--w2-draws", "1", "--out", out.to_str().unwrap()])
}

#[test]
fn run_writes_checkpoint_samples_figure_and_report() {
    let out = temp("run");
    let o = tiny_run(&out);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for what in ["component shares", "mean log-density", "W2 to true samples", "steps/s", "model.safetensors", "samples.npy", "compare.png"] {
        assert!(stdout.contains(what), "stdout lacks '{what}':\n{stdout}");
    }
    let samples = fm_dist::io::read_npy(&out.join("samples.npy")).unwrap();
    assert_eq!(samples.dim(), (400, 2));
    let (mlp, meta) = fm_model::checkpoint::load(&out.join("model.safetensors"), tch::Device::Cpu).unwrap();
    assert_eq!(mlp.config(), &fm_model::MlpConfig::default());
    assert!(meta["train"].contains("\"steps\":40"));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["quality"]["shares"].as_array().unwrap().len(), 3);
    for key in ["max_share_error", "log_prob_gap", "w2_excess"] {
        assert!(report[key].is_f64(), "report.json lacks {key}, which cargo xtask e2e reads");
    }
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["batch_size"], 64);
    assert!(std::fs::metadata(out.join("compare.png")).unwrap().len() > 10_000);

    // The checkpoint alone is enough to sample again.
    let o = fm(&["sample", "--device", "cpu", "--checkpoint", out.join("model.safetensors").to_str().unwrap(), "--samples", "30", "--steps", "4", "--method", "rk4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fm_dist::io::read_npy(&out.join("samples-rk4-4.npy")).unwrap().dim(), (30, 2));
}

#[test]
fn same_seed_same_checkpoint_bytes() {
    let (a, b) = (temp("seed-a"), temp("seed-b"));
    assert!(tiny_run(&a).status.success());
    assert!(tiny_run(&b).status.success());
    assert_eq!(std::fs::read(a.join("model.safetensors")).unwrap(), std::fs::read(b.join("model.safetensors")).unwrap());
}

#[test]
fn bad_numbers_are_refused_before_any_work() {
    let out = temp("bad-numbers");
    let o_str = out.to_str().unwrap();
    assert_clean_failure(&fm(&["run", "--steps", "0", "--out", o_str]), "steps must be at least 1");
    assert_clean_failure(&fm(&["run", "--batch-size", "0", "--out", o_str]), "batch size must be at least 1");
    assert_clean_failure(&fm(&["run", "--lr=-1", "--out", o_str]), "learning rate must be a positive number");
    assert_clean_failure(&fm(&["run", "--sample-steps", "0", "--out", o_str]), "integration steps must be at least 1");
    assert_clean_failure(&fm(&["run", "--hidden-dim", "0", "--out", o_str]), "must all be at least 1");
    assert!(!out.exists(), "a refused run must not create its output folder");
}

#[test]
fn unknown_names_list_the_valid_ones() {
    let o = fm(&["run", "--method", "rk5"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("euler, midpoint, heun, rk4"), "{}", stderr(&o));
    assert_clean_failure(&fm(&["run", "--device", "tpu", "--out", temp("dev").to_str().unwrap()]), "auto, cpu, cuda, cuda:N");
    if !tch::Cuda::is_available() {
        assert_clean_failure(&fm(&["run", "--device", "cuda", "--out", temp("cuda").to_str().unwrap()]), "CUDA is not available");
    }
}

#[test]
fn unwritable_output_folder_is_an_error() {
    let base = temp("unwritable");
    std::fs::create_dir_all(&base).unwrap();
    let file = base.join("a-file");
    std::fs::write(&file, b"keep me").unwrap();
    assert_clean_failure(&fm(&["run", "--out", file.join("sub").to_str().unwrap()]), "cannot create output folder");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[test]
fn missing_or_corrupt_checkpoints_are_errors() {
    let dir = temp("ckpt");
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("nope.safetensors");
    assert_clean_failure(&fm(&["sample", "--checkpoint", missing.to_str().unwrap()]), "No such file");
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ").unwrap();
    assert_clean_failure(&fm(&["sample", "--checkpoint", corrupt.to_str().unwrap()]), "not a valid safetensors file");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no output may be written");
}

#[test]
fn eval_judges_any_npy_and_refuses_bad_ones() {
    let dir = temp("eval");
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("truth.npy");
    let truth = fm_dist::Target::sample(&fm_dist::GaussianMixture::seed(), 600, &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0));
    fm_dist::io::write_npy(&good, truth.view()).unwrap();
    let o = fm(&["eval", "--samples", good.to_str().unwrap(), "--w2-points", "300", "--w2-draws", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("component shares"));
    let three = dir.join("three.npy");
    fm_dist::io::write_npy(&three, ndarray::Array2::<f32>::zeros((5, 3)).view()).unwrap();
    assert_clean_failure(&fm(&["eval", "--samples", three.to_str().unwrap()]), "expected 2 columns, got 3");
    let junk = dir.join("junk.npy");
    std::fs::write(&junk, b"not numpy").unwrap();
    assert_clean_failure(&fm(&["eval", "--samples", junk.to_str().unwrap()]), "bad magic");
}
