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
    assert_eq!(o.status.code(), Some(1), "expected exit code 1; stderr: {err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "stderr should name '{needle}': {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

/// A run folder `name` holding a 2-step, 8-wide trained model (`fm train`).
fn tiny_trained(name: &str) -> PathBuf {
    let run = temp(name);
    let o = fm(&["train", "--quiet", "--device", "cpu", "--steps", "2", "--hidden-dim", "8", "--out", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    run
}

fn tiny_run(out: &Path) -> Output {
    fm(&[
        "run",
        "--quiet",
        "--device",
        "cpu",
        "--steps",
        "40",
        "--batch-size",
        "64",
        "--samples",
        "400",
        "--sample-steps",
        "10",
        "--w2-points",
        "200",
        "--w2-draws",
        "1",
        "--kl-points",
        "100",
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn run_writes_checkpoint_samples_figure_and_report() {
    let out = temp("run");
    let o = tiny_run(&out);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for what in
        ["component shares", "mean log-density", "W2 to true samples", "KL(target ‖ model)", "steps/s", "model.safetensors", "samples.npy", "compare.png"]
    {
        assert!(stdout.contains(what), "stdout lacks '{what}':\n{stdout}");
    }
    let samples = fm_dist::io::read_npy(&out.join("samples.npy")).unwrap();
    assert_eq!(samples.dim(), (400, 2));
    let (mlp, meta) = fm_model::checkpoint::load(&out.join("model.safetensors"), tch::Device::Cpu).unwrap();
    assert_eq!(fm_model::registry::config_of(&*mlp), Some(fm_model::MlpConfig::default()));
    assert!(meta["train"].contains("\"steps\":40"));
    // The typed report reads back, NaN figures (one W2 draw has no standard error) included.
    let typed = fm_run::RunDir::new(&out).read_report().unwrap();
    assert!(typed.quality.unwrap().w2_excess_se.is_nan() && typed.kl.unwrap().n == 100);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["quality"]["shares"].as_array().unwrap().len(), 3);
    assert_eq!(report["kl"]["n"], 100);
    for key in ["max_share_error", "log_prob_gap", "w2_excess"] {
        assert!(report[key].is_f64(), "report.json lacks {key}, which cargo xtask e2e reads");
    }
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(out.join("config.toml")).unwrap()).unwrap();
    assert_eq!(config["train"]["batch_size"].as_integer(), Some(64));
    let losses = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(losses.starts_with("step,loss,loss_floor,lr,w2,kl,evaluations,temperature,ess,log_z,log_z_se\n") && losses.lines().count() == 2, "{losses}");
    // The last step is tracked: W2 on the holdout and KL (the seed mixture has a density).
    // (The energy-only columns are empty: no density was weighed.)
    let row: Vec<&str> = losses.lines().nth(1).unwrap().split(',').collect();
    assert!(row[6..].iter().all(|v| v.is_empty()), "{losses}");
    let row: Vec<f64> = row[..6].iter().map(|v| v.parse().unwrap()).collect();
    assert!(row.len() == 6 && row[0] == 40.0 && row[4] > 0.0 && row[4].is_finite() && row[5].is_finite(), "{losses}");
    // The seed mixture's loss floor (the README's figure), beside every loss and in the report.
    assert!((row[2] - 2.98).abs() < 0.03 && row[1] > row[2], "{losses}");
    assert!((report["loss_floor"]["mean"].as_f64().unwrap() - row[2]).abs() < 1e-12, "{report}");
    assert!(std::fs::metadata(out.join("compare.png")).unwrap().len() > 10_000);

    // The checkpoint alone is enough to sample again.
    let o = fm(&[
        "sample",
        "--device",
        "cpu",
        "--checkpoint",
        out.join("model.safetensors").to_str().unwrap(),
        "--samples",
        "30",
        "--steps",
        "4",
        "--method",
        "rk4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fm_dist::io::read_npy(&out.join("samples-rk4-4.npy")).unwrap().dim(), (30, 2));
}

#[test]
fn same_seed_same_checkpoint_bytes() {
    let (a, b) = (temp("seed-a"), temp("seed-b"));
    assert!(tiny_run(&a).status.success());
    assert!(tiny_run(&b).status.success());
    assert!(std::fs::read(a.join("model.safetensors")).unwrap() == std::fs::read(b.join("model.safetensors")).unwrap(), "checkpoints differ");
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

/// A run that diverges before its first checkpoint leaves no model, no training state and no
/// samples (the weights it held are NaN or astronomically large), and says so.
#[test]
fn a_diverged_run_leaves_no_model() {
    let out = temp("diverged");
    let o = fm(&[
        "run",
        "--quiet",
        "--device",
        "cpu",
        "--lr",
        "1000",
        "--steps",
        "400",
        "--checkpoint-every",
        "100",
        "--hidden-dim",
        "16",
        "--batch-size",
        "64",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "no checkpoint was written");
    assert!(stderr(&o).contains("diverged at step 100"), "{}", stderr(&o));
    for file in ["model.safetensors", "train-state.safetensors", "samples.npy", "report.json"] {
        assert!(!out.join(file).exists(), "{file} was left behind");
    }
}

#[test]
fn unknown_names_list_the_valid_ones() {
    let o = fm(&["run", "--method", "rk5"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("euler, midpoint, heun, rk4, dopri5"), "{}", stderr(&o));
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
    assert_clean_failure(&fm(&["eval", "--samples", three.to_str().unwrap()]), "its points are 3-D and the target 3-component Gaussian mixture in 2-D is 2-D");
    let junk = dir.join("junk.npy");
    std::fs::write(&junk, b"not numpy").unwrap();
    assert_clean_failure(&fm(&["eval", "--samples", junk.to_str().unwrap()]), "bad magic");
}

/// The resolved config.toml repeats the run; flags given on top of it win, the rest stays.
#[test]
fn config_file_repeats_a_run_and_flags_override_it() {
    let (a, b) = (temp("cfg-a"), temp("cfg-b"));
    let o = fm(&[
        "train",
        "--quiet",
        "--device",
        "cpu",
        "--steps",
        "30",
        "--batch-size",
        "32",
        "--coupling",
        "ot",
        "--path",
        "icfm:0.05",
        "--ema-decay",
        "0.9",
        "--out",
        a.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = a.join("config.toml");
    let o = fm(&["train", "--quiet", "--config", cfg.to_str().unwrap(), "--steps", "20", "--out", b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first: toml::Value = toml::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let second: toml::Value = toml::from_str(&std::fs::read_to_string(b.join("config.toml")).unwrap()).unwrap();
    assert_eq!(second["train"]["steps"].as_integer(), Some(20));
    for key in ["batch_size", "coupling", "path", "ema_decay"] {
        assert_eq!(first["train"][key], second["train"][key], "{key} must come from the file");
    }
}

#[test]
fn ewfm_without_a_preset_or_file_takes_the_energy_presets_other_settings_and_says_so() {
    let (a, b) = (temp("ewfm-a"), temp("ewfm-b"));
    let quick = ["--steps", "2", "--warmup-steps", "0", "--batch-size", "64", "--hidden-dim", "8", "--quiet"];
    let o = fm(&[&["train", "--target", "gmm40", "--objective", "ewfm", "--out", a.to_str().unwrap()][..], &quick].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("--objective ewfm takes its other settings from --preset energy"), "{}", stderr(&o));
    let cfg: toml::Value = toml::from_str(&std::fs::read_to_string(a.join("config.toml")).unwrap()).unwrap();
    // The preset's learning rate and EMA, the objective and batch as given.
    assert_eq!((cfg["train"]["lr"].as_float(), cfg["train"]["ema_decay"].as_float()), (Some(8e-3), Some(0.999)));
    assert_eq!((cfg["train"]["objective"].as_str(), cfg["train"]["batch_size"].as_integer()), (Some("ewfm"), Some(64)));
    // A run file holds the whole training section: nothing is taken from a preset then.
    let file = a.join("config.toml");
    let o = fm(&[&["train", "--config", file.to_str().unwrap(), "--objective", "ewfm:2", "--out", b.to_str().unwrap()][..], &quick].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("takes its other settings"), "{}", stderr(&o));
}

#[test]
fn bad_config_files_name_the_problem() {
    let dir = temp("bad-cfg");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let typo = write("typo.toml", "[train]\nstepz = 3\n");
    assert_clean_failure(&fm(&["train", "--config", &typo]), "line 2: unknown field `stepz`");
    let bad_value = write("value.toml", "[train]\nsteps = -3\n");
    assert_clean_failure(&fm(&["train", "--config", &bad_value]), "value.toml line 2");
    let zero = write("zero.toml", "[train]\nsteps = 0\n");
    assert_clean_failure(&fm(&["train", "--config", &zero, "--out", dir.join("o").to_str().unwrap()]), "steps must be at least 1");
    assert_clean_failure(&fm(&["train", "--config", dir.join("missing.toml").to_str().unwrap()]), "cannot read config");
    assert_clean_failure(&fm(&["train", "--preset", "nope"]), "valid presets: seed, fast");
    assert_clean_failure(&fm(&["train", "--preset", "fast", "--config", &zero]), "not both");
    assert_clean_failure(&fm(&["train", "--target", "moons", "--source", "normal:3"]), "is 3-D but the target moons is 2-D");
    assert!(!dir.join("o").exists());
}

/// Export to .pth, import back, inspect both: the same network and settings survive.
#[test]
fn checkpoints_cross_to_pth_and_back() {
    let dir = temp("cross");
    let o = fm(&["train", "--quiet", "--device", "cpu", "--steps", "5", "--activation", "silu", "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (st, pth, back) = (dir.join("model.safetensors"), dir.join("model.pth"), dir.join("back.safetensors"));
    assert!(fm(&["export", "--checkpoint", st.to_str().unwrap(), "--out", pth.to_str().unwrap()]).status.success());
    let o = fm(&["import", "--checkpoint", pth.to_str().unwrap(), "--out", back.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&st).unwrap() == std::fs::read(&back).unwrap(), "a round trip through .pth must change nothing");
    let o = fm(&["inspect", pth.to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.contains("Pth") && shown.contains("3 hidden layers of 128 (silu)") && shown.contains("33794 parameters"), "{shown}");
    let o = fm(&["sample", "--checkpoint", pth.to_str().unwrap(), "--samples", "20", "--method", "dopri5", "--out", dir.join("s.csv").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fm_dist::io::read_points(&dir.join("s.csv")).unwrap().dim(), (20, 2));
    assert_clean_failure(&fm(&["inspect", dir.join("s.csv").to_str().unwrap()]), "s.csv");
    let o = fm(&["eval", "--checkpoint", pth.to_str().unwrap(), "--kl-points", "50", "--kl-steps", "4"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("KL(target ‖ model)"), "{}", stderr(&o));
    assert_clean_failure(&fm(&["eval", "--checkpoint", pth.to_str().unwrap(), "--target", "moons"]), "no analytic density");
}

#[test]
fn targets_lists_every_name() {
    let o = fm(&["targets"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for (name, _) in fm_dist::list_targets() {
        assert!(out.contains(name), "{out}");
    }
}

/// Every figure kind from one tiny run: a non-empty PNG (GIF for the animation), named by kind.
#[test]
fn plot_draws_every_kind_from_a_run() {
    let run = temp("plot");
    assert!(tiny_run(&run).status.success());
    let r = run.to_str().unwrap();
    for (kind, points, file, magic) in [
        ("trajectories", "50", "trajectories.png", &b"\x89PNG"[..]),
        ("field", "10", "field.png", &b"\x89PNG"[..]),
        ("density", "16", "density.png", &b"\x89PNG"[..]),
        ("loss", "10", "loss.png", &b"\x89PNG"[..]),
        ("compare", "300", "compare.png", &b"\x89PNG"[..]),
        ("animation", "50", "animation.gif", &b"GIF8"[..]),
        ("energy", "300", "energy.png", &b"\x89PNG"[..]),
    ] {
        let o = fm(&["plot", kind, "--run", r, "--points", points, "--steps", "5"]);
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        let bytes = std::fs::read(run.join(file)).unwrap();
        assert!(bytes.starts_with(magic) && bytes.len() > 2_000, "{kind}: {} bytes", bytes.len());
    }
    // The exact field of the run's setting, and the model's distance to it (curve and map).
    for (args, files) in [(vec!["field", "--exact"], vec!["field-exact.png"]), (vec!["field-error"], vec!["field-error.png", "field-error-map.png"])] {
        let o = fm(&[&["plot"][..], &args[..], &["--run", r]].concat());
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        for file in files {
            assert!(std::fs::read(run.join(file)).unwrap().starts_with(b"\x89PNG"), "{file}");
        }
    }
    let o = fm(&["plot", "field", "--run", r, "--out", run.join("field.svg").to_str().unwrap()]);
    assert!(o.status.success() && std::fs::read_to_string(run.join("field.svg")).unwrap().contains("<svg"));
    assert_clean_failure(&fm(&["plot", "field", "--run", r, "--coords", "0,5"]), "coordinate");
    assert_clean_failure(&fm(&["plot", "loss", "--run", temp("no-run").to_str().unwrap()]), "metrics.csv");
}

/// A run folder locked by a live process is refused; a lock file an older fm left (a PID
/// in it) is no obstacle, and the lock goes with the process that held it.
#[test]
fn a_run_folder_in_use_is_refused() {
    let out = temp("lock");
    let dir = fm_run::RunDir::new(&out);
    let held = dir.create_and_lock().unwrap();
    assert_clean_failure(&fm(&["train", "--steps", "1", "--out", out.to_str().unwrap()]), "in use by another fm process");
    assert!(!out.join("model.safetensors").exists());
    drop(held);
    std::fs::write(out.join(".fm.lock"), "4194304\n").unwrap();
    let o = fm(&["train", "--quiet", "--device", "cpu", "--steps", "1", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _free = dir.create_and_lock().expect("the lock is released when the command ends");
}

/// A run folder written by the library reads back through the CLI, and one the CLI wrote
/// reads back through the library: the two share one layout.
#[test]
fn run_folders_pass_between_library_and_cli() {
    let out = temp("lib-run");
    let cfg = fm_run::RunConfig {
        device: "cpu".into(),
        model: fm_model::MlpConfig { hidden_dim: 8, ..Default::default() },
        train: fm_train::TrainConfig { steps: 20, batch_size: 32, report_every: 10, ..Default::default() },
        ..Default::default()
    };
    let dir = fm_run::RunDir::new(&out);
    let trained = fm_run::train_run(&cfg, &dir, &fm_run::TrainOptions { quiet: true, ..Default::default() }, &mut |_| {}).unwrap();
    drop(trained);
    let config = out.join("config.toml");
    let o = fm(&["sample", "--config", config.to_str().unwrap(), "--samples", "50", "--out", out.join("s.npy").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fm_dist::io::read_npy(&out.join("s.npy")).unwrap().dim(), (50, 2));
    let o = fm(&["plot", "loss", "--run", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fm(&["train", "--resume", out.to_str().unwrap(), "--steps", "30", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let run = tiny_trained("cli-run");
    let dir = fm_run::RunDir::new(&run);
    let cfg = fm_run::RunConfig::read(&dir.file(fm_run::RunDir::CONFIG)).unwrap();
    assert_eq!(cfg.train.steps, 2);
    let rows = dir.read_metrics().unwrap();
    assert_eq!(rows.last().map(|r| r.step), Some(2));
    assert!(rows.iter().all(|r| r.loss.is_finite() && r.loss_floor.is_some()));
    let bundle = fm_run::ModelBundle::load(&dir.file(fm_run::RunDir::MODEL), "cpu", None, &Default::default()).unwrap();
    assert_eq!(bundle.model.architecture().kind, "fm-rs/mlp");
    assert_eq!(fm_model::registry::config_of(&*bundle.model).unwrap().hidden_dim, 8);
    assert_eq!(bundle.target.as_deref(), Some("gmm3"));
    assert_eq!(bundle.train.unwrap().unwrap().steps, 2);
    let state = fm_train::load_state(&dir.file(fm_run::RunDir::STATE), tch::Device::Cpu).unwrap();
    assert_eq!(state.step, 2);
}

/// sample, eval and plot take a run file too: its sections are their defaults, flags win.
#[test]
fn sample_eval_and_plot_read_a_run_file() {
    let run = temp("cfg-all");
    assert!(tiny_run(&run).status.success());
    let cfg = run.join("my.toml");
    std::fs::write(&cfg, "[sample]\nn_samples = 37\nmethod = \"rk4\"\nsteps = 3\n[eval]\nw2_points = 30\nw2_draws = 1\nkl_points = 20\n").unwrap();
    let (c, ck) = (cfg.to_str().unwrap(), run.join("model.safetensors"));
    let o = fm(&["sample", "--config", c, "--checkpoint", ck.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fm_dist::io::read_npy(&run.join("samples-rk4-3.npy")).unwrap().dim(), (37, 2));
    let o = fm(&["sample", "--config", c, "--checkpoint", ck.to_str().unwrap(), "--samples", "5", "--out", run.join("five.npy").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fm_dist::io::read_npy(&run.join("five.npy")).unwrap().dim(), (5, 2));
    let o = fm(&["eval", "--config", c, "--samples", run.join("samples-rk4-3.npy").to_str().unwrap(), "--checkpoint", ck.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("30 points × 1 draws") && out.contains("20 samples"), "{out}{}", stderr(&o));
    let o = fm(&["plot", "trajectories", "--config", c, "--run", run.to_str().unwrap(), "--points", "10"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `fm completions SHELL` prints clap's script; a shell it does not know lists the valid ones.
#[test]
fn completions_print_a_script_for_each_shell() {
    let o = fm(&["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = String::from_utf8_lossy(&o.stdout).to_string();
    for word in ["_fm", "train", "sample", "inspect", "completions", "--config"] {
        assert!(script.contains(word), "the bash script lacks '{word}'");
    }
    // A syntax check where bash is installed.
    if let Ok(mut bash) = Command::new("bash").arg("-n").stdin(std::process::Stdio::piped()).spawn() {
        use std::io::Write;
        bash.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        assert!(bash.wait().unwrap().success(), "bash -n refuses the completion script");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let o = fm(&["completions", shell]);
        assert!(o.status.success() && !o.stdout.is_empty(), "{shell}: {}", stderr(&o));
    }
    let o = fm(&["completions", "tcsh"]);
    assert!(!o.status.success() && stderr(&o).contains("bash, elvish, fish, powershell, zsh"), "{}", stderr(&o));
}

/// inspect, export, import and targets take a run file too: inspect and export find the run's
/// checkpoint beside it, import takes its activation, targets shows its target and source.
#[test]
fn inspect_export_import_and_targets_read_a_run_file() {
    let run = temp("cfg-convert");
    let r = run.to_str().unwrap();
    let o = fm(&["train", "--quiet", "--device", "cpu", "--steps", "2", "--hidden-dim", "8", "--activation", "gelu", "--target", "moons", "--out", r]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = run.join("config.toml");
    let c = cfg.to_str().unwrap();
    let shown = |o: &Output| String::from_utf8_lossy(&o.stdout).to_string();

    let o = fm(&["inspect", "--config", c]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(shown(&o).contains("model.safetensors") && shown(&o).contains("3 hidden layers of 8 (gelu)"), "{}", shown(&o));
    assert_clean_failure(&fm(&["inspect"]), "give a CHECKPOINT, or --config");
    let elsewhere = run.join("sub").join("config.toml");
    std::fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    std::fs::copy(&cfg, &elsewhere).unwrap();
    assert_clean_failure(&fm(&["inspect", "--config", elsewhere.to_str().unwrap()]), "no checkpoint beside the run file");

    let pth = run.join("exported.pth");
    let o = fm(&["export", "--config", c, "--out", pth.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fm(&["inspect", pth.to_str().unwrap()]);
    assert!(shown(&o).contains("Pth") && shown(&o).contains("of 8 (gelu)"), "{}", shown(&o));
    assert_clean_failure(&fm(&["export", "--out", pth.to_str().unwrap()]), "give --checkpoint C, or --config");

    // A bare state dict (no fm metadata) does not say its activation: the run file does.
    let (mlp, _) = fm_model::checkpoint::load(&run.join("model.safetensors"), tch::Device::Cpu).unwrap();
    let mut tensors: Vec<(String, tch::Tensor)> = mlp.named_parameters();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let bare = run.join("bare.safetensors");
    std::fs::write(&bare, fm_model::checkpoint::encode_safetensors(&tensors, &Default::default()).unwrap()).unwrap();
    let refused = run.join("refused.safetensors");
    assert_clean_failure(&fm(&["import", "--checkpoint", bare.to_str().unwrap(), "--out", refused.to_str().unwrap()]), "--activation relu|silu|gelu|selu|elu");
    assert!(!refused.exists(), "nothing is written for a refused file");
    assert_clean_failure(&fm(&["sample", "--checkpoint", bare.to_str().unwrap()]), "net.0.weight [8, 3]");
    assert_clean_failure(&fm(&["export", "--checkpoint", bare.to_str().unwrap(), "--out", refused.to_str().unwrap()]), "--activation relu|silu|gelu|selu|elu");
    let exported = run.join("bare-exported.pth");
    assert!(fm(&["export", "--checkpoint", bare.to_str().unwrap(), "--activation", "gelu", "--out", exported.to_str().unwrap()]).status.success());
    // A run file lends its activation only to a file of its network's shapes.
    let other = temp("other-run-file");
    assert!(fm(&["train", "--quiet", "--device", "cpu", "--steps", "1", "--hidden-dim", "16", "--out", other.to_str().unwrap()]).status.success());
    let other_config = other.join("config.toml");
    // Inspecting needs no activation: the shapes are described, and what sampling would say.
    let o = fm(&["inspect", bare.to_str().unwrap(), "--config", other_config.to_str().unwrap()]);
    assert!(o.status.success() && shown(&o).contains("are not the network the run file describes"), "{}", shown(&o));
    for (extra, activation) in [(&["--activation", "relu"][..], "relu"), (&["--config", c][..], "gelu"), (&["--config", c, "--activation", "silu"][..], "silu")]
    {
        let out = run.join(format!("imported-{activation}.safetensors"));
        let o = fm(&[&["import", "--checkpoint", bare.to_str().unwrap(), "--out", out.to_str().unwrap()][..], extra].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let o = fm(&["inspect", out.to_str().unwrap()]);
        assert!(shown(&o).contains(&format!("of 8 ({activation})")), "{extra:?}: {}", shown(&o));
    }

    let o = fm(&["targets", "--config", c]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = shown(&o);
    assert!(out.contains("target  moons") && out.contains("2-D, no density"), "{out}");
    assert!(out.contains("source  normal") && out.contains("N(0, I2), 2-D, with a density"), "{out}");
    let bad = run.join("bad-target.toml");
    std::fs::write(&bad, "target = \"moonz\"\n").unwrap();
    assert_clean_failure(&fm(&["targets", "--config", bad.to_str().unwrap()]), "moonz");
}

/// sample and plot given a run folder's config.toml and no --checkpoint/--run work on that run's
/// model.safetensors and write beside it, as --run does; --checkpoint and --run still win.
#[test]
fn sample_and_plot_find_the_run_files_checkpoint() {
    let run = tiny_trained("cfg-sample-plot");
    let cfg = run.join("config.toml");
    let c = cfg.to_str().unwrap();

    let o = fm(&["sample", "--config", c, "--device", "cpu", "--samples", "7", "--steps", "2", "--method", "rk4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fm_dist::io::read_npy(&run.join("samples-rk4-2.npy")).unwrap().dim(), (7, 2));
    let o = fm(&["plot", "field", "--config", c]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(run.join("field.png")).unwrap().starts_with(b"\x89PNG"), "the figure goes into the run file's folder");
    let o = fm(&["plot", "loss", "--config", c]);
    assert!(o.status.success() && run.join("loss.png").is_file(), "{}", stderr(&o));

    // Explicit flags win: --checkpoint (samples beside it), --run (its model, figure into it).
    let other = run.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(run.join("model.safetensors"), other.join("model.safetensors")).unwrap();
    let ck = other.join("model.safetensors");
    let o = fm(&["sample", "--config", c, "--checkpoint", ck.to_str().unwrap(), "--samples", "3", "--steps", "2", "--method", "rk4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fm_dist::io::read_npy(&other.join("samples-rk4-2.npy")).unwrap().dim(), (3, 2));
    let o = fm(&["plot", "trajectories", "--config", c, "--run", other.to_str().unwrap(), "--points", "5", "--steps", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(other.join("trajectories.png").is_file() && !run.join("trajectories.png").exists());

    // A run file with no checkpoint beside it: an error naming it, unless a checkpoint is given.
    let bare = run.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(&cfg, bare.join("config.toml")).unwrap();
    let b = bare.join("config.toml");
    let b = b.to_str().unwrap();
    assert_clean_failure(&fm(&["sample", "--config", b]), "no checkpoint beside the run file");
    assert_clean_failure(&fm(&["plot", "field", "--config", b]), "no checkpoint beside the run file");
    assert_clean_failure(&fm(&["sample"]), "give --checkpoint C, or --config");
    let o = fm(&["plot", "field", "--config", b, "--checkpoint", ck.to_str().unwrap()]);
    assert!(o.status.success() && bare.join("field.png").is_file(), "{}", stderr(&o));
}

/// `fm ARGS` with its stdout a pipe whose reader has already gone, as in `fm targets | head -0`.
#[cfg(target_os = "linux")]
fn fm_into_closed_pipe(args: &[&str]) -> Output {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // O_CLOEXEC: no process another test spawns meanwhile inherits the read end and keeps it open.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just opened both, and nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Command::new(env!("CARGO_BIN_EXE_fm")).args(args).stdout(write).output().expect("fm runs")
}

/// Output into a closed pipe ends fm quietly by SIGPIPE, like other Unix tools, not with a panic.
#[cfg(target_os = "linux")]
#[test]
fn a_closed_pipe_ends_fm_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let run = tiny_trained("pipe");
    let ck = run.join("model.safetensors");
    for args in [&["targets"][..], &["inspect", ck.to_str().unwrap()], &["completions", "bash"]] {
        let o = fm_into_closed_pipe(args);
        let err = stderr(&o);
        assert!(!err.contains("internal error") && !err.contains("panicked") && !err.contains("error:"), "{args:?}: {err}");
        assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{args:?}: {:?}", o.status);
    }
}

#[test]
fn off_a_terminal_training_logs_plain_lines_and_quiet_silences_them() {
    let out = temp("plain-log");
    let flags = ["train", "--device", "cpu", "--steps", "300", "--batch-size", "16", "--hidden-dim", "8", "--out", out.to_str().unwrap()];
    // stderr is a pipe here: no bar, a line at each tenth of the run.
    let o = fm(&flags);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("step ")).collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[2].starts_with("step 300/300  loss ") && lines[2].contains("steps/s") && lines[2].contains("ETA"), "{err}");
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "terminal control characters in a log: {err:?}");
    let o = fm(&[&flags[..], &["--quiet"]].concat());
    assert!(o.status.success() && !stderr(&o).contains("step "), "{}", stderr(&o));
}

/// `fm sample --oracle` and `fm eval --oracle`: the exact flow of a Gaussian-mixture target,
/// with every integrator; what it does not cover is one line naming what it does.
#[test]
fn the_oracle_samples_and_judges_the_exact_flow() {
    let dir = temp("oracle");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("exact.npy");
    let o = fm(&[
        "sample",
        "--oracle",
        "--target",
        "8gaussians",
        "--path",
        "vp",
        "--method",
        "rk4",
        "--steps",
        "20",
        "--samples",
        "2000",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("the exact flow"));
    let o = fm(&["eval", "--samples", out.to_str().unwrap(), "--target", "8gaussians", "--w2-points", "500", "--w2-draws", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let max_error: f64 = text.split("max error ").nth(1).unwrap().split([';', ')']).next().unwrap().parse().unwrap();
    // Eight shares of 1/8 from 2,000 points: binomial standard error 0.0074.
    assert!(max_error < 0.03, "{text}");
    let o = fm(&["eval", "--oracle", "--kl-points", "400", "--kl-steps", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let kl: f64 = text.split("KL(target ‖ exact flow) ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(text.contains("exact flow") && kl.abs() < 0.02, "{text}");
    assert_clean_failure(&fm(&["sample", "--oracle", "--target", "moons", "--samples", "10"]), "the exact flow needs a Gaussian-mixture target");
    assert_clean_failure(&fm(&["eval", "--oracle", "--path", "schrodinger-bridge:0.5"]), "is not affine");
    let ot = dir.join("ot.toml");
    std::fs::write(&ot, "[train]\ncoupling = \"ot\"\n").unwrap();
    assert_clean_failure(&fm(&["sample", "--oracle", "--config", ot.to_str().unwrap(), "--samples", "10"]), "pairs samples through the batch");
    assert!(!stderr(&fm(&["sample", "--oracle", "--checkpoint", "x.safetensors"])).is_empty());
    // --path and --target belong to the exact flow: beside a checkpoint they are refused, not ignored.
    assert!(!fm(&["sample", "--path", "vp", "--checkpoint", "x.safetensors"]).status.success());
    // The blurred ends of I-CFM are said, not passed off as an integrator's error.
    let o = fm(&["eval", "--oracle", "--path", "icfm:0.5", "--kl-points", "50", "--kl-steps", "4"]);
    assert!(o.status.success() && stderr(&o).contains("blurred"), "{}", stderr(&o));
    // The exact field needs no model.
    let png = dir.join("exact.png");
    let o = fm(&[
        "plot",
        "field",
        "--exact",
        "--target",
        "8gaussians",
        "--path",
        "vp",
        "--run",
        dir.join("none").to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success() && std::fs::read(&png).unwrap().starts_with(b"\x89PNG"), "{}", stderr(&o));
}

/// `fm eval --checkpoint` on a mixture target: the field error, the floor and the curve over t.
#[test]
fn eval_reports_the_field_error_against_the_exact_flow() {
    let run = tiny_trained("field-error");
    let o = fm(&["eval", "--checkpoint", run.join("model.safetensors").to_str().unwrap(), "--kl-points", "50", "--kl-steps", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for want in ["field error E‖v − v*‖²", "loss floor", "over t:", "error"] {
        assert!(text.contains(want), "lacks '{want}': {text}");
    }
    // --kl-points 0 skips the likelihood, and only the field error is reported.
    let o = fm(&["eval", "--checkpoint", run.join("model.safetensors").to_str().unwrap(), "--kl-points", "0"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && !text.contains("KL(") && text.contains("field error"), "{text}{}", stderr(&o));
    // A training record this fm cannot read is said, never replaced by a guess.
    let (mlp, mut meta) = fm_model::checkpoint::load(&run.join("model.safetensors"), tch::Device::Cpu).unwrap();
    let train = meta["train"].replacen('{', "{\"from_the_future\":1,", 1);
    meta.insert("train".into(), train);
    let odd = run.join("odd.safetensors");
    fm_model::checkpoint::save(&*mlp, &odd, &meta).unwrap();
    let o = fm(&["eval", "--checkpoint", odd.to_str().unwrap(), "--kl-points", "0"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("no field error: the checkpoint's training settings cannot be read"), "{text}");
}

/// Resuming a run whose metrics.csv an older fm wrote (no `loss_floor` column) keeps each value
/// under its own name, so the file stays one table and `fm plot loss` reads it.
#[test]
fn resuming_a_run_with_an_older_metrics_file_keeps_its_columns() {
    let run = tiny_trained("old-metrics");
    let metrics = run.join("metrics.csv");
    std::fs::write(&metrics, "step,loss,lr,w2,kl\n1,5.5,0.0001,,\n2,4.5,0.0001,0.7,0.9\n").unwrap();
    let o = fm(&["train", "--resume", run.to_str().unwrap(), "--steps", "3", "--quiet", "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&metrics).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[..3],
        ["step,loss,loss_floor,lr,w2,kl,evaluations,temperature,ess,log_z,log_z_se", "1,5.5,,0.0001,,,,,,,", "2,4.5,,0.0001,0.7,0.9,,,,,"],
        "{text}"
    );
    assert!(lines[3].starts_with("3,") && lines[3].split(',').count() == 11, "{text}");
    let o = fm(&["plot", "loss", "--run", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Usage errors found by clap (a bad value, an unknown flag, a missing argument) are one
/// `error:` line with exit code 1, as every other error; help and version still exit 0.
#[test]
fn usage_errors_are_one_line_with_exit_code_1() {
    for (args, needle) in [
        (&["train", "--steps", "abc"][..], "invalid value 'abc' for '--steps <STEPS>'"),
        (&["train", "--stpes", "3"][..], "a similar argument exists: '--steps'"),
        (&["export"][..], "--out <OUT>"),
        (&["sample", "--method", "foo"][..], "valid: euler, midpoint, heun, rk4, dopri5"),
        (&["frobnicate"][..], "unrecognized subcommand 'frobnicate'"),
        (&[][..], "fm needs a command: run, train"),
        // A negative number is a value, refused by the setting's own check.
        (&["sample", "--checkpoint", "x.safetensors", "--rtol", "-1"][..], "rtol must be finite and non-negative, got -1"),
    ] {
        let o = fm(args);
        assert_clean_failure(&o, needle);
        assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{args:?}: {}", stderr(&o));
    }
    for args in [&["--help"][..], &["sample", "--help"][..], &["--version"][..]] {
        let o = fm(args);
        assert!(o.status.success() && !o.stdout.is_empty(), "{args:?}: {}", stderr(&o));
    }
}

/// A resumed run must train on what it started with: a changed target, source, data file or
/// setting in config.toml is refused naming each field with its old and new values.
#[test]
fn resume_refuses_changed_data_and_settings_by_name() {
    let run = temp("resume-fingerprint");
    std::fs::create_dir_all(&run).unwrap();
    let data = run.join("pts.csv");
    let original = "x,y\n1,2\n3,4\n5,6.5\n";
    std::fs::write(&data, original).unwrap();
    let target = format!("file:{}", data.display());
    let r = run.join("run");
    let o = fm(&["train", "--quiet", "--device", "cpu", "--target", &target, "--steps", "20", "--hidden-dim", "8", "--out", r.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = r.join("config.toml");
    let toml = std::fs::read_to_string(&config).unwrap().replacen("steps = 20\n", "steps = 30\n", 1);
    let resume = || fm(&["train", "--quiet", "--resume", r.to_str().unwrap()]);

    std::fs::write(&data, "x,y\n1,2\n3,4\n5,7.5\n").unwrap();
    std::fs::write(&config, &toml).unwrap();
    assert_clean_failure(&resume(), "target file content was sha256:");
    std::fs::write(&data, original).unwrap();

    let edits = [
        (format!("target = \"{target}\""), "target = \"moons\"".to_string(), format!("target was {target}, is moons")),
        ("source = \"normal\"".into(), "source = \"8gaussians\"".into(), "source was normal, is 8gaussians".into()),
        ("lr = 0.0001".into(), "lr = 0.01".into(), "train.lr was 0.0001, is 0.01".into()),
        ("seed = 0\n".into(), "seed = 7\n".into(), "train.seed was 0, is 7".into()),
    ];
    for (from, to, needle) in &edits {
        assert!(toml.contains(from.as_str()), "config.toml has no '{from}':\n{toml}");
        std::fs::write(&config, toml.replacen(from.as_str(), to, 1)).unwrap();
        assert_clean_failure(&resume(), needle);
    }
    std::fs::write(&config, &toml).unwrap();
    let o = resume();
    assert!(o.status.success(), "the unchanged run resumes: {}", stderr(&o));
}

/// Data far from unit scale (map coordinates around 10⁶): standardised by default, so the
/// samples land on the data; with --no-standardize a warning gives the figures.
#[test]
fn file_targets_far_from_unit_scale_are_standardised() {
    let dir = temp("standardise");
    std::fs::create_dir_all(&dir).unwrap();
    // Two clusters 4e5 apart around (5e6, 4e6): standard deviation about 2e5 per coordinate.
    let mut csv = String::from("easting,northing\n");
    for i in 0..400 {
        let (c, jitter) = (if i % 2 == 0 { -2e5 } else { 2e5 }, (i % 7) as f64 * 1e3);
        csv += &format!("{},{}\n", 5e6 + c + jitter, 4e6 - c + jitter);
    }
    let data = dir.join("utm.csv");
    std::fs::write(&data, csv).unwrap();
    let target = format!("file:{}", data.display());
    let run = dir.join("run");
    let r = run.to_str().unwrap();
    let o = fm(&["run", "--quiet", "--device", "cpu", "--target", &target, "--steps", "300", "--hidden-dim", "16", "--samples", "2000", "--out", r]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("standardising the data") && out.contains("read 400 points in 2 dimensions"), "{out}");
    let samples = fm_dist::io::read_points(&run.join("samples.npy")).unwrap();
    let mean = samples.mean_axis(ndarray::Axis(0)).unwrap();
    // Within one data standard deviation (2e5) of the data's mean; a model trained on the raw
    // numbers samples near the origin, 6e6 away.
    assert!((mean[0] - 5e6).abs() < 2e5 && (mean[1] - 4e6).abs() < 2e5, "sample mean {mean}");
    let o = fm(&["inspect", run.join("model.safetensors").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("standardize"), "{}", String::from_utf8_lossy(&o.stdout));

    // A data source (here the same cloud) is standardised with the target, in training and when
    // the checkpoint is read back: `fm sample` lands on the data too (it once started from the
    // raw source numbers in standard units, 1e6 standard deviations away).
    // `fm train` on the cloud, a small network, with `extra` flags.
    let train = |out: &Path, extra: &[&str]| {
        fm(&[&["train", "--quiet", "--device", "cpu", "--target", &target, "--hidden-dim", "8", "--out", out.to_str().unwrap()][..], extra].concat())
    };
    let from_data = dir.join("from-data");
    let o = train(&from_data, &["--source", &target, "--steps", "50"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.join("from-data.npy");
    let o = fm(&["sample", "--checkpoint", from_data.join("model.safetensors").to_str().unwrap(), "--samples", "500", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mean = fm_dist::io::read_points(&out).unwrap().mean_axis(ndarray::Axis(0)).unwrap();
    assert!((mean[0] - 5e6).abs() < 2e5 && (mean[1] - 4e6).abs() < 2e5, "fm sample of a data-source model: mean {mean}");

    let raw = dir.join("raw");
    let o = train(&raw, &["--steps", "5", "--no-standardize"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning: the data are far from unit scale") && stderr(&o).contains("standardisation is off"), "{}", stderr(&o));
}

/// Every dimension training accepts completes `fm run`: a 1-D cloud (default source `normal`,
/// which takes the data's dimension) gets its samples and report, and the figure it cannot
/// have is skipped and said.
#[test]
fn a_one_dimensional_run_completes_without_its_figure() {
    let dir = temp("one-d");
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("one.csv");
    std::fs::write(&data, "x\n1\n2.5\n3\n4.2\n").unwrap();
    let run = dir.join("run");
    let target = format!("file:{}", data.display());
    let o = fm(&[
        "run",
        "--quiet",
        "--device",
        "cpu",
        "--target",
        &target,
        "--steps",
        "20",
        "--hidden-dim",
        "8",
        "--samples",
        "2000",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("compare.png skipped: figures draw two coordinates and the data are 1-D"), "{out}");
    assert!(!out.contains("compare.png\n") && !run.join("compare.png").exists());
    assert!(run.join("report.json").exists() && run.join("samples.npy").exists());
    let o = fm(&["sample", "--checkpoint", run.join("model.safetensors").to_str().unwrap(), "--samples", "5", "--out", dir.join("s.csv").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The `one-step` recipe's stages on a tiny budget: a teacher and its pairs, 2-RF and its pairs,
/// a distilled map in the run folder; the map samples in one step by default, refuses more, and
/// is judged by its samples.
#[test]
fn a_reflow_recipe_trains_its_stages_and_samples_in_one_step() {
    let out = temp("one-step");
    std::fs::create_dir_all(&out).unwrap();
    let run_file = out.join("recipe.toml");
    std::fs::write(
        &run_file,
        "device = \"cpu\"\n[model]\nhidden_dim = 16\nactivation = \"gelu\"\n[train]\nsteps = 30\nbatch_size = 64\n\
         [sample]\nn_samples = 300\nsteps = 1\n[eval]\nw2_points = 100\nw2_draws = 1\nkl_points = 50\n\
         [reflow]\nrounds = 1\ndistill = true\npairs = 500\npair_steps = 4\n",
    )
    .unwrap();
    let dir = out.join("run");
    let o = fm(&["run", "--quiet", "--config", run_file.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o) + &String::from_utf8_lossy(&o.stdout);
    for what in
        ["stage 1 of 3: 1-RF", "stage 2 of 3: 2-RF", "stage 3 of 3: distilled", "drew 500 pairs", "(distill)", "3 stages, 90 steps × 64", "1 euler step "]
    {
        assert!(log.contains(what), "the log lacks '{what}':\n{log}");
    }
    assert!(!log.contains("KL(target ‖ model)"), "a one-step model has no likelihood of its sampler:\n{log}");
    for stage in ["1-rf", "2-rf"] {
        assert_eq!(fm_dist::io::read_npy(&dir.join(stage).join("pairs.npy")).unwrap().dim(), (500, 4));
    }
    let model = dir.join("model.safetensors");
    let (_, meta) = fm_model::checkpoint::load(&model, tch::Device::Cpu).unwrap();
    assert!(meta["train"].contains("\"objective\":\"distill\""), "{}", meta["train"]);

    let o = fm(&["sample", "--device", "cpu", "--checkpoint", model.to_str().unwrap(), "--samples", "50"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fm_dist::io::read_npy(&dir.join("samples-euler-1.npy")).unwrap().dim(), (50, 2));
    assert_clean_failure(&fm(&["sample", "--device", "cpu", "--checkpoint", model.to_str().unwrap(), "--steps", "3"]), "--steps 1");
    assert_clean_failure(&fm(&["plot", "field", "--checkpoint", model.to_str().unwrap(), "--out", out.join("f.png").to_str().unwrap()]), "need a flow");
    let o = fm(&["eval", "--checkpoint", model.to_str().unwrap(), "--w2-points", "200", "--w2-draws", "1"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("one-step model, 1 step"), "{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
    let o = fm(&["inspect", "--checkpoint", model.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("a one-step map"), "{}", String::from_utf8_lossy(&o.stdout));
    // The folder's run file is the recipe: resuming goes through every stage, each already complete.
    assert!(std::fs::read_to_string(dir.join("config.toml")).unwrap().contains("[reflow]"));
    let before = std::fs::read(&model).unwrap();
    let o = fm(&["train", "--resume", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o) + &String::from_utf8_lossy(&o.stdout);
    assert_eq!(log.matches("resuming").count(), 3, "{log}");
    assert!(std::fs::read(&model).unwrap() == before, "resuming a finished recipe changed its model");
    // Extended, the teacher trains on and every stage after it learns afresh from the new teacher.
    let o = fm(&["train", "--resume", dir.to_str().unwrap(), "--steps", "35"]);
    let log = stderr(&o) + &String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{log}");
    assert_eq!(log.matches("starts afresh").count(), 2, "{log}");
    let (_, meta) = fm_model::checkpoint::load(&model, tch::Device::Cpu).unwrap();
    assert!(meta["report"].contains("\"steps\":35"), "{}", meta["report"]);
}

/// Reflow by hand: a teacher's pairs (`fm sample --pairs`), a student trained on them from the
/// teacher's weights, a MeanFlow model sampled in jumps; and each bad input a one-line error.
#[test]
fn pairs_init_and_meanflow_from_the_command_line() {
    let out = temp("reflow-cli");
    let teacher = tiny_trained("reflow-teacher").join("model.safetensors");
    let pairs = out.join("pairs.npy");
    std::fs::create_dir_all(&out).unwrap();
    let o = fm(&[
        "sample",
        "--device",
        "cpu",
        "--checkpoint",
        teacher.to_str().unwrap(),
        "--pairs",
        "--samples",
        "200",
        "--method",
        "rk4",
        "--steps",
        "5",
        "--out",
        pairs.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fm_dist::io::read_npy(&pairs).unwrap().dim(), (200, 4));
    let student = out.join("student");
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--device", "cpu", "--steps", "3", "--hidden-dim", "8"];
        args.extend_from_slice(extra);
        fm(&args)
    };
    let o = train(&["--pairs", pairs.to_str().unwrap(), "--init", teacher.to_str().unwrap(), "--out", student.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o) + &String::from_utf8_lossy(&o.stdout);
    assert!(log.contains("200 pairs of"), "{log}");

    let mean = out.join("meanflow");
    let o = train(&["--objective", "meanflow", "--out", mean.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ckpt = mean.join("model.safetensors");
    let o = fm(&["sample", "--device", "cpu", "--checkpoint", ckpt.to_str().unwrap(), "--steps", "2", "--samples", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_failure(&fm(&["sample", "--checkpoint", ckpt.to_str().unwrap(), "--method", "dopri5"]), "does not apply");

    // Bad input, each refused before training.
    let csv = out.join("nan.csv");
    std::fs::write(&csv, "0.1,0.2,0.3,0.4\n0.5,nan,0.7,0.8\n").unwrap();
    assert_clean_failure(&train(&["--pairs", csv.to_str().unwrap(), "--out", out.join("a").to_str().unwrap()]), "nan.csv");
    let three = out.join("three.csv");
    std::fs::write(&three, "0.1,0.2,0.3,0.4,0.5,0.6\n0.5,0.6,0.7,0.8,0.9,1.0\n").unwrap();
    assert_clean_failure(&train(&["--pairs", three.to_str().unwrap(), "--out", out.join("b").to_str().unwrap()]), "3-D pairs");
    assert_clean_failure(&train(&["--objective", "distill", "--out", out.join("c").to_str().unwrap()]), "--pairs FILE");
    assert!(!out.join("c").exists(), "a refused run must leave no folder behind");
    assert_clean_failure(
        &fm(&[
            "train",
            "--quiet",
            "--device",
            "cpu",
            "--steps",
            "3",
            "--hidden-dim",
            "12",
            "--init",
            teacher.to_str().unwrap(),
            "--out",
            out.join("d").to_str().unwrap(),
        ]),
        "holds another network",
    );
    assert_clean_failure(&train(&["--objective", "meanflow:2", "--out", out.join("e").to_str().unwrap()]), "[0, 1]");
    // fm run checks how it will sample the trained model before training it.
    let f = out.join("f");
    assert_clean_failure(
        &fm(&["run", "--objective", "distill", "--pairs", pairs.to_str().unwrap(), "--sample-steps", "4", "--out", f.to_str().unwrap()]),
        "--steps 1",
    );
    assert!(!f.exists(), "nothing may be trained or written before the refusal");
}

/// `fm train --condition labels` with the fast preset and OT within classes, then `fm sample
/// --class`, `fm eval` per class, `fm inspect`, and a resume: the conditional pipeline end to end.
#[test]
fn a_conditional_run_trains_samples_judges_and_resumes_by_class() {
    let run = temp("conditional");
    let r = run.to_str().unwrap();
    let o = fm(&[
        "train",
        "--quiet",
        "--device",
        "cpu",
        "--preset",
        "fast",
        "--condition",
        "labels",
        "--coupling",
        "ot-class",
        "--steps",
        "200",
        "--warmup-steps",
        "20",
        "--hidden-dim",
        "32",
        "--out",
        r,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("condition = \"labels\"") && config.contains("classes = 3"), "{config}");
    let model = run.join("model.safetensors");
    let m = model.to_str().unwrap();
    let o = fm(&["inspect", m]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("condition  3 classes"), "{}", String::from_utf8_lossy(&o.stdout));

    let out = run.join("s.npy");
    let o = fm(&["sample", "--checkpoint", m, "--class", "all", "--samples", "50", "--steps", "10", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fm_dist::io::read_points(&out).unwrap().nrows(), 150);
    // 50 of each class, in a random order (no window of rows is one class).
    let labels = fm_dist::io::read_npy(&run.join("s.labels.npy")).unwrap().column(0).to_vec();
    assert!((0..3).all(|c| labels.iter().filter(|&&l| l == c as f64).count() == 50), "{labels:?}");
    assert!(labels[..50].iter().any(|&l| l != labels[0]), "{labels:?}");
    let o = fm(&["sample", "--checkpoint", m, "--class", "2", "--cfg-scale", "3", "--samples", "20", "--steps", "5", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = fm(&["eval", "--checkpoint", m, "--config", run.join("config.toml").to_str().unwrap(), "--class", "0", "--kl-points", "50", "--w2-points", "50"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && stdout.contains("class 0 (w = 1): KL") && stdout.contains("purity"), "{stdout}{}", stderr(&o));

    let o = fm(&["train", "--quiet", "--resume", r, "--steps", "220"]);
    assert!(o.status.success(), "{}", stderr(&o));

    for (args, needle) in [
        (vec!["--class", "3"], "out of range: the checkpoint has 3 classes"),
        (vec!["--class", "one"], "'one' is not a class number"),
        (vec!["--class", "1", "--cfg-scale", "NaN"], "the guidance scale must be a finite number"),
        (vec!["--cfg-scale", "2"], "--cfg-scale guides a condition"),
        (vec!["--cond", "0.5"], "not conditioned on vectors (it takes classes: --class K)"),
        (vec!["--class", "0,0"], "class 0 is named twice"),
    ] {
        let o = fm(&[&["sample", "--checkpoint", m][..], &args].concat());
        assert_clean_failure(&o, needle);
    }
}

#[test]
fn conditions_the_data_or_the_model_lack_are_one_line_errors() {
    let plain = tiny_trained("cond-plain");
    let o = fm(&["sample", "--checkpoint", plain.join("model.safetensors").to_str().unwrap(), "--class", "0"]);
    assert_clean_failure(&o, "not conditioned on classes");
    let out = temp("cond-refused");
    for (args, needle) in [
        (vec!["--condition", "labels", "--target", "swissroll"], "has no class labels"),
        (vec!["--coupling", "ot-class"], "train with a condition"),
        (vec!["--condition", "labels", "--objective", "likelihood"], "unconditional networks only"),
        (vec!["--condition", "labels", "--cond-drop", "1.5"], "cond_drop must be a probability"),
        (vec!["--condition", "values"], "has no condition vectors"),
        (vec!["--cond-drop", "0.2"], "applies to conditional training"),
    ] {
        let o = fm(&[&["train", "--quiet", "--device", "cpu", "--steps", "2", "--out", out.to_str().unwrap()][..], &args].concat());
        assert_clean_failure(&o, needle);
        assert!(!out.exists(), "a refused run left {}", out.display());
    }
    // A file's labels: the last column of a CSV.
    let dir = temp("cond-file");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("pts.csv");
    std::fs::write(&csv, "x,y,label\n0.1,0.2,0\n1.1,1.2,1\n-1.0,0.5,1\n2.0,-0.3,0\n").unwrap();
    let spec = format!("file:{}?label=last", csv.display());
    let o = fm(&[
        "train",
        "--quiet",
        "--device",
        "cpu",
        "--steps",
        "3",
        "--hidden-dim",
        "8",
        "--condition",
        "labels",
        "--target",
        &spec,
        "--out",
        dir.join("run").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fm(&["targets"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("gmm3           3 classes"), "{}", String::from_utf8_lossy(&o.stdout));
    // Trained without condition dropout, the "no condition" entry never learnt: guidance and
    // unconditional sampling are refused, a class at w = 1 is not.
    let run = dir.join("nodrop");
    let o = fm(&[
        "train",
        "--quiet",
        "--device",
        "cpu",
        "--steps",
        "2",
        "--hidden-dim",
        "8",
        "--condition",
        "labels",
        "--cond-drop",
        "0",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = run.join("model.safetensors");
    let m = m.to_str().unwrap();
    assert!(fm(&["sample", "--checkpoint", m, "--class", "0", "--samples", "5", "--steps", "2"]).status.success());
    assert_clean_failure(&fm(&["sample", "--checkpoint", m, "--samples", "5"]), "trained with cond_drop 0");
    assert_clean_failure(&fm(&["sample", "--checkpoint", m, "--class", "0", "--cfg-scale", "2"]), "trained with cond_drop 0");
}

/// A continuous condition from a file's column (`--condition values`), sampled with `--cond`,
/// and C2OT's weighted cost on it.
#[test]
fn a_condition_vector_from_a_file_trains_and_samples() {
    let dir = temp("cond-values");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("pts.csv");
    // y = 2·cond + noise: a 1-D point with its 1-D condition.
    let rows: String = (0..200).map(|i| format!("{},{}\n", 2.0 * (i as f64 / 100.0 - 1.0) + 0.01 * (i % 7) as f64, i as f64 / 100.0 - 1.0)).collect();
    std::fs::write(&csv, format!("x,c\n{rows}")).unwrap();
    let run = dir.join("run");
    let spec = format!("file:{}?cond=c", csv.display());
    let o = fm(&[
        "train",
        "--quiet",
        "--device",
        "cpu",
        "--steps",
        "20",
        "--hidden-dim",
        "8",
        "--condition",
        "values",
        "--coupling",
        "c2ot",
        "--no-standardize",
        "--target",
        &spec,
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = run.join("model.safetensors");
    let out = dir.join("s.npy");
    let o = fm(&["sample", "--checkpoint", m.to_str().unwrap(), "--cond", "0.5", "--samples", "30", "--steps", "5", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fm_dist::io::read_points(&out).unwrap().dim(), (30, 1));
    let o = fm(&["sample", "--checkpoint", m.to_str().unwrap(), "--cond", "0.5,1"]);
    assert_clean_failure(&o, "a 2-D condition vector: the checkpoint takes 1-D ones");
    // The condition reaches the samples: another condition, other samples from the same noise.
    let other = dir.join("other.npy");
    let o = fm(&["sample", "--checkpoint", m.to_str().unwrap(), "--cond", "-0.5", "--samples", "30", "--steps", "5", "--out", other.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(fm_dist::io::read_points(&out).unwrap(), fm_dist::io::read_points(&other).unwrap());
    let o = fm(&[
        "train",
        "--quiet",
        "--device",
        "cpu",
        "--steps",
        "2",
        "--condition",
        "values",
        "--coupling",
        "ot-class",
        "--target",
        &spec,
        "--out",
        dir.join("r2").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "ot-class pairs within classes: it needs condition = labels");
    assert!(!dir.join("r2").exists());
    let o = fm(&["sample", "--checkpoint", m.to_str().unwrap(), "--class", "0"]);
    assert_clean_failure(&o, "conditioned on 1-D vectors, not classes: give --cond");
}

// Files from the wild, round two (issue 30): one named test per input tried.

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Kind 3: `fm run --preset fast --steps 1000` printed "final loss 3.0570" and sampled an EMA
/// that still held 37 % of the initial weights (KL 2.30 nats; the last weights 0.028).
#[test]
fn a_short_preset_run_samples_a_warmed_up_average_within_the_seed_bar() {
    let out = temp("short-fast");
    let o = fm(&["run", "--quiet", "--device", "cpu", "--preset", "fast", "--steps", "1000", "--kl-points", "0", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("model: the EMA of the weights (ema_decay 0.999; after the warm-up min(decay, (1 + k)/(10 + k)), 0.9911 at step 1000)"),
        "{}",
        stdout(&o)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let figure = |k: &str| report[k].as_f64().unwrap_or_else(|| panic!("{k} in {report}"));
    // The seed experiment's bar (cargo xtask e2e).
    assert!(figure("max_share_error") <= 0.03, "{report}");
    assert!(figure("log_prob_gap") <= 0.15, "{report}");
    assert!(figure("w2_excess") <= 0.20, "{report}");
}

/// Kind 4: `fm run --preset one-step --condition labels` trained a teacher and drew 100,000
/// pairs before refusing, leaving a stage folder.
#[test]
fn a_recipe_a_later_stage_would_refuse_is_refused_before_any_work() {
    let out = temp("one-step-conditional");
    let o = fm(&["run", "--quiet", "--device", "cpu", "--preset", "one-step", "--condition", "labels", "--out", out.to_str().unwrap()]);
    assert_clean_failure(&o, "stage 2 of 3 would refuse");
    assert!(stderr(&o).contains("unconditional"), "{}", stderr(&o));
    assert!(!out.exists(), "the refusal left {} behind", out.display());
}

/// Kind 5: `objective = "meanflow"` in a run file failed with "invalid type: unit variant,
/// expected struct variant" while `--objective meanflow` worked.
#[test]
fn a_run_file_takes_the_command_lines_spellings() {
    let dir = temp("run-file-spellings");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("run.toml");
    let text = "[train]\nsteps = 2\nobjective = \"meanflow:0.25\"\npath = \"linear\"\ncoupling = \"independent\"\ntime_sampling = \"logit-normal:0,1\"\nlr_schedule = \"cosine\"\noptimizer = \"adamw\"\n[model]\nhidden_dim = 8\n";
    std::fs::write(&file, text).unwrap();
    let out = dir.join("run");
    let o = fm(&["train", "--quiet", "--device", "cpu", "--config", file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let written = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(written.contains("objective = \"meanflow:0.25\"") && written.contains("adamw"), "{written}");
    // A spelling neither form knows names the valid ones.
    std::fs::write(&file, "[train]\nobjective = \"meanflow:two\"\n").unwrap();
    assert_clean_failure(&fm(&["train", "--config", file.to_str().unwrap(), "--out", out.to_str().unwrap()]), "meanflow");
    std::fs::write(&file, "[train]\npath = \"icfm:0.1\"\n").unwrap();
    let o = fm(&[
        "train",
        "--quiet",
        "--device",
        "cpu",
        "--steps",
        "2",
        "--hidden-dim",
        "8",
        "--config",
        file.to_str().unwrap(),
        "--out",
        dir.join("icfm").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Kind 2: `cond_drop` edited in config.toml resumed silently (the flag was refused).
#[test]
fn resume_refuses_a_cond_drop_edited_in_the_run_file() {
    let run = temp("cond-drop-resume");
    let o = fm(&[
        "train",
        "--quiet",
        "--device",
        "cpu",
        "--target",
        "gmm3",
        "--condition",
        "labels",
        "--steps",
        "4",
        "--checkpoint-every",
        "2",
        "--hidden-dim",
        "8",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = run.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace("[train]\n", "[train]\ncond_drop = 0.5\n");
    std::fs::write(&config, text).unwrap();
    let o = fm(&["train", "--resume", run.to_str().unwrap(), "--steps", "6"]);
    assert_clean_failure(&o, "train.cond_drop was 0.1, is 0.5");
}

/// Kind 6: small answers that were wrong or missing.
#[test]
fn guidance_scales_labels_and_inspect_say_what_they_mean() {
    let run = tiny_trained("kind6");
    let ckpt = run.join("model.safetensors");
    // `--cfg-scale -inf` was "unexpected argument '-i'"; 1e30 wrote samples near 1e28.
    for w in ["-inf", "1e30", "nan"] {
        let o = fm(&["sample", "--checkpoint", ckpt.to_str().unwrap(), "--class", "0", "--cfg-scale", w]);
        assert_clean_failure(&o, "the guidance scale must be a finite number in [-100, 100]");
    }
    // A label of 10⁷ was "not whole, non-negative": the rule is a bound.
    let dir = temp("big-label");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("pts.csv");
    std::fs::write(&csv, "x,y,c\n0,0,0\n1,1,10000000\n").unwrap();
    let o = fm(&["eval", "--samples", csv.to_str().unwrap(), "--target", &format!("file:{}?label=c", csv.display())]);
    assert_clean_failure(&o, "at most 65536 classes");
    // `fm inspect` of a plain state dict refused without --activation: inspecting needs none.
    let (mlp, _) = fm_model::checkpoint::load(&ckpt, tch::Device::Cpu).unwrap();
    let tensors: Vec<(String, tch::Tensor)> = mlp.named_parameters();
    let bare = dir.join("bare.safetensors");
    std::fs::write(&bare, fm_model::checkpoint::encode_safetensors(&tensors, &Default::default()).unwrap()).unwrap();
    let o = fm(&["inspect", bare.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("linear layers 3→8→8→8→2") && stdout(&o).contains("activation is not recorded"), "{}", stdout(&o));
}

/// Kind 6: `fm eval --class` refused a labelled point cloud (standardised by default) although
/// the docs promise a per-class W2; `fm run` skipped its per-class table.
#[test]
fn a_labelled_point_cloud_is_judged_class_by_class() {
    let dir = temp("labelled-cloud");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("pts.csv");
    let mut text = String::from("x,y,c\n");
    for i in 0..200 {
        let (c, a) = (i % 2, i as f64 * 0.37);
        text += &format!("{},{},{c}\n", 100.0 + 30.0 * c as f64 + a.sin(), -50.0 + a.cos());
    }
    std::fs::write(&csv, text).unwrap();
    let run = dir.join("run");
    let target = format!("file:{}?label=c", csv.display());
    let o = fm(&[
        "run",
        "--quiet",
        "--device",
        "cpu",
        "--target",
        &target,
        "--condition",
        "labels",
        "--steps",
        "30",
        "--hidden-dim",
        "8",
        "--samples",
        "200",
        "--sample-steps",
        "5",
        "--w2-points",
        "100",
        "--w2-draws",
        "1",
        "--kl-points",
        "0",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("per class (w = 1):") && stdout(&o).contains("class 1 (w = 1): no KL"), "{}", stdout(&o));
    let o = fm(&[
        "eval",
        "--config",
        run.join("config.toml").to_str().unwrap(),
        "--checkpoint",
        run.join("model.safetensors").to_str().unwrap(),
        "--class",
        "all",
        "--w2-points",
        "100",
        "--kl-points",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("class 0 (w = 1): no KL (no class density), W2"), "{}", stdout(&o));
}

/// Issue 26, bug 1: a conditional run with `--cond-drop 0` judged and drew its "no condition"
/// entry, which never trained (the guard sat at three call sites only).
#[test]
fn an_untrained_no_condition_entry_is_never_judged_or_drawn() {
    let run = temp("cond-drop-0");
    let o = fm(&[
        "run",
        "--quiet",
        "--device",
        "cpu",
        "--target",
        "gmm3",
        "--condition",
        "labels",
        "--cond-drop",
        "0",
        "--steps",
        "20",
        "--hidden-dim",
        "8",
        "--samples",
        "300",
        "--sample-steps",
        "5",
        "--w2-points",
        "100",
        "--w2-draws",
        "1",
        "--kl-points",
        "50",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("note: no pooled likelihood") && !stdout(&o).contains("likelihood of the model"), "{}", stdout(&o));
    let ckpt = run.join("model.safetensors");
    let o = fm(&["eval", "--checkpoint", ckpt.to_str().unwrap(), "--kl-points", "50"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("no likelihood or field error of the \"no condition\" entry") && !stdout(&o).contains("KL(target"), "{}", stdout(&o));
    for kind in ["field", "density", "field-error"] {
        assert_clean_failure(&fm(&["plot", kind, "--checkpoint", ckpt.to_str().unwrap(), "--out", run.join("x.png").to_str().unwrap()]), "cond_drop 0");
    }
    // Issue 26, bug 3: a class the target does not have was drawn with 0 samples.
    let o = fm(&[
        "plot",
        "compare",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--target",
        "8gaussians",
        "--class",
        "1",
        "--points",
        "50",
        "--out",
        run.join("c.png").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "a class both have: {}", stderr(&o));
    let o = fm(&[
        "plot",
        "compare",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--target",
        "moons",
        "--class",
        "2",
        "--points",
        "50",
        "--out",
        run.join("c.png").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "class 2 is not a class of the target");
    // A newcomer's catch: judged class by class against a target of other classes (a state dict
    // that records none is judged against gmm3), results came before the refusal.
    let o = fm(&["eval", "--checkpoint", ckpt.to_str().unwrap(), "--target", "8gaussians", "--class", "all", "--kl-points", "10"]);
    assert_clean_failure(&o, "the checkpoint's model has 3 classes and the target");
    assert!(String::from_utf8_lossy(&o.stdout).is_empty(), "nothing is judged before the refusal");
    // Issue 26, bug 3: fm inspect dropped a training record it could not read.
    let (mlp, mut meta) = fm_model::checkpoint::load(&ckpt, tch::Device::Cpu).unwrap();
    meta.insert("train".into(), "{ not json".into());
    let broken = run.join("broken-record.safetensors");
    fm_model::checkpoint::save(&*mlp, &broken, &meta).unwrap();
    let o = fm(&["inspect", broken.to_str().unwrap()]);
    assert!(o.status.success() && stdout(&o).contains("its training record cannot be read"), "{}", stdout(&o));
}

/// Round two's review: `[reflow]` appended to a plain run's config.toml resumed as a recipe,
/// retrained from stage 1 and replaced the trained model; a recipe's own settings refused only
/// after its first stage had started; `--init` named a default it read wrong.
#[test]
fn a_resume_never_turns_a_run_into_a_recipe_and_recipes_refuse_before_work() {
    let run = tiny_trained("plain-then-recipe");
    let model = std::fs::read(run.join("model.safetensors")).unwrap();
    let config = run.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[reflow]\nrounds = 1\npairs = 100\npair_steps = 2\n")).unwrap();
    let o = fm(&["train", "--resume", run.to_str().unwrap(), "--steps", "4"]);
    assert_clean_failure(&o, "it holds a run trained without [reflow]");
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), model, "the trained model is untouched");
    assert!(!run.join("1-rf").exists());

    for bad in [&["--hidden-dim", "0"][..], &["--time-embedding", "3"][..]] {
        let out = temp("one-step-bad");
        let o = fm(&[&["run", "--quiet", "--device", "cpu", "--preset", "one-step", "--out", out.to_str().unwrap()][..], bad].concat());
        assert_eq!(o.status.code(), Some(1), "{bad:?}: {}", stderr(&o));
        assert!(!out.exists(), "{bad:?} left {} behind", out.display());
    }

    let other = temp("init-meanflow");
    let o = fm(&[
        "train",
        "--quiet",
        "--device",
        "cpu",
        "--steps",
        "2",
        "--hidden-dim",
        "8",
        "--objective",
        "meanflow",
        "--init",
        run.join("model.safetensors").to_str().unwrap(),
        "--out",
        other.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "time_inputs 1 in the file, 2 in this run");
}

/// A run's judging on the smallest budget that still runs every figure.
const QUICK_RUN_JUDGING: [&str; 10] = ["--samples", "300", "--sample-steps", "10", "--w2-points", "100", "--w2-draws", "1", "--kl-points", "50"];

/// `fm sample --sde` (checkpoint and `--oracle`), `fm run --sde`, `--objective likelihood`:
/// the spellings the issue names, each run, and the refusals one line each.
#[test]
fn stochastic_sampling_and_likelihood_training_from_the_command_line() {
    let dir = temp("sde");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("sde.npy");
    let o = fm(&["sample", "--oracle", "--target", "gmm3", "--sde", "--steps", "50", "--samples", "500", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Euler–Maruyama steps of the SDE with diffusion sigma:1"));
    assert_eq!(fm_dist::io::read_points(&out).unwrap().dim(), (500, 2));
    let run = tiny_trained("sde-run");
    let model = run.join("model.safetensors");
    for sde in ["constant:0.5", "linear"] {
        let o = fm(&["sample", "--checkpoint", model.to_str().unwrap(), "--sde", sde, "--steps", "20", "--samples", "100", "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{sde}: {}", stderr(&o));
    }
    assert_clean_failure(&fm(&["sample", "--checkpoint", model.to_str().unwrap(), "--sde", "--method", "rk4", "--samples", "10"]), "Euler–Maruyama");
    assert_clean_failure(&fm(&["sample", "--checkpoint", model.to_str().unwrap(), "--sde", "brownian", "--samples", "10"]), "unknown diffusion");
    assert_clean_failure(&fm(&["sample", "--checkpoint", model.to_str().unwrap(), "--sde", "--pairs", "--samples", "10"]), "without --sde");
    assert_clean_failure(&fm(&["sample", "--checkpoint", model.to_str().unwrap(), "--sde", "--steps", "1", "--samples", "10"]), "at least 2 steps");
    // A minibatch-OT model's velocity does not give the score: refused before sampling; a run
    // asking for it is refused before training.
    let ot = temp("sde-ot");
    let o = fm(&["train", "--quiet", "--steps", "2", "--hidden-dim", "8", "--coupling", "ot", "--out", ot.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_failure(&fm(&["sample", "--checkpoint", ot.join("model.safetensors").to_str().unwrap(), "--sde", "--samples", "10"]), "coupling ot");
    let refused = temp("sde-refused");
    assert_clean_failure(&fm(&["run", "--steps", "2", "--sde", "--path", "icfm:0.1", "--out", refused.to_str().unwrap()]), "adds noise of its own");
    assert!(!refused.join("model.safetensors").exists(), "trained before refusing");
    // A flow-matching run judged on SDE samples records its sampler; `--sde none` samples that run's
    // model by the ODE.
    let sde_run = dir.join("sde-run");
    let o = fm(&[
        &["run", "--quiet", "--steps", "6", "--batch-size", "32", "--hidden-dim", "8", "--sde"][..],
        &QUICK_RUN_JUDGING[..],
        &["--out", sde_run.to_str().unwrap()],
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let config = sde_run.join("config.toml");
    assert!(std::fs::read_to_string(&config).unwrap().contains("sde = \"sigma:1\""));
    let o = fm(&[
        "sample",
        "--config",
        config.to_str().unwrap(),
        "--sde",
        "none",
        "--method",
        "rk4",
        "--steps",
        "5",
        "--samples",
        "50",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Likelihood training runs end to end through the run folder, and says what it trained.
    let lk = dir.join("lk");
    let o = fm(&[
        &["run", "--quiet", "--objective", "likelihood:2", "--steps", "6", "--batch-size", "32"][..],
        &QUICK_RUN_JUDGING[..],
        &["--out", lk.to_str().unwrap()],
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(lk.join("config.toml")).unwrap().contains("objective = \"likelihood:2\""));
    assert_clean_failure(&fm(&["sample", "--config", lk.join("config.toml").to_str().unwrap(), "--sde", "--samples", "10"]), "marginal velocity");
    assert_clean_failure(&fm(&["train", "--objective", "likelihood:0", "--steps", "1"]), "1..=100");
    assert_clean_failure(&fm(&["train", "--objective", "likelihood", "--path", "vp", "--steps", "1"]), "no probability path");
}

/// The residual MLP from a run file's `[model] kind` and from `--model`: trained, resumed bit
/// for bit (with an EMA), sampled, inspected, exported to `.pth` and imported back; its
/// checkpoint records its kind and what it outputs.
#[test]
fn the_residual_mlp_runs_from_a_run_file_and_from_the_flag() {
    let root = temp("resmlp");
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("res.toml");
    std::fs::write(&file, "device = \"cpu\"\n[model]\nkind = \"resmlp\"\nhidden_dim = 16\nhidden_layers = 2\n[train]\nsteps = 30\nbatch_size = 32\nema_decay = 0.9\ncheckpoint_every = 10\n").unwrap();
    let (straight, resumed) = (root.join("straight"), root.join("resumed"));
    let o = fm(&["train", "--quiet", "--config", file.to_str().unwrap(), "--out", straight.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fm(&["train", "--quiet", "--config", file.to_str().unwrap(), "--steps", "10", "--out", resumed.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fm(&["train", "--quiet", "--resume", resumed.to_str().unwrap(), "--steps", "30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let model = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(model(&straight) == model(&resumed), "a resumed residual MLP ends with the straight run's bytes");
    let (back, meta) = fm_model::checkpoint::load(&straight.join("model.safetensors"), tch::Device::Cpu).unwrap();
    assert_eq!(back.architecture().kind, "fm-rs/resmlp");
    assert_eq!(meta.get("output").map(String::as_str), Some("velocity"));
    assert!(std::fs::read_to_string(straight.join("config.toml")).unwrap().contains("kind = \"resmlp\""));
    let shown = |o: &Output| String::from_utf8_lossy(&o.stdout).to_string();
    let o = fm(&["inspect", straight.join("model.safetensors").to_str().unwrap()]);
    assert!(shown(&o).contains("2-D resmlp: 2 blocks of 16") && shown(&o).contains("32 time features"), "{}", shown(&o));
    let (pth, again) = (root.join("res.pth"), root.join("again.safetensors"));
    let o = fm(&["export", "--checkpoint", straight.join("model.safetensors").to_str().unwrap(), "--out", pth.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fm(&["import", "--checkpoint", pth.to_str().unwrap(), "--out", again.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (imported, _) = fm_model::checkpoint::load(&again, tch::Device::Cpu).unwrap();
    assert_eq!(fm_model::checkpoint::state_dict(&*imported).unwrap(), fm_model::checkpoint::state_dict(&*back).unwrap());
    // The flag, with the run's figures.
    let flag = root.join("flag");
    let o = fm(&[
        "run",
        "--quiet",
        "--model",
        "resmlp",
        "--hidden-dim",
        "16",
        "--steps",
        "20",
        "--samples",
        "300",
        "--w2-points",
        "200",
        "--kl-points",
        "100",
        "--device",
        "cpu",
        "--out",
        flag.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(flag.join("compare.png").exists() && flag.join("report.json").exists());
    assert_clean_failure(
        &fm(&["train", "--model", "transformer", "--out", root.join("x").to_str().unwrap()]),
        "unknown model 'transformer' (valid: mlp, resmlp",
    );
    std::fs::remove_dir_all(&root).ok();
}
