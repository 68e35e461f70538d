//! A user's energy written in PyTorch, saved with `torch.jit.script`, loaded as a density:
//! its values and gradient are the module's (checked against the closed form of the double
//! well it computes), bad modules are one-line errors, NaN energies are refused by whatever
//! weighs them, and energy-weighted flow matching trains from it.
//!
//! The interpreter is `$FM_PYTHON`, else the one of the venv that `.libtorch` points into
//! (`cargo xtask setup`); without either the test fails, it does not skip.

use fm_dist::{Density, StandardNormal};
use fm_model::{Mlp, MlpConfig};
use fm_train::objective::{EnergyWeighted, ProposalPlan};
use fm_train::{train_on, ObjectiveChoice, ScriptedEnergy, TrainConfig, TrainHooks, TrainingData};
use ndarray::array;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes the TorchScript modules the tests load into `dir` (`double_well.pt`: `Σ (x² − 1)²`;
/// `nan.pt`: NaN where `x₀ > 0`; `matrix.pt`: a `[n, n]` output), and a file that is not one.
fn write_modules(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let script = r#"
import sys, torch
out = sys.argv[1]
class DoubleWell(torch.nn.Module):
    def forward(self, x):
        return ((x ** 2 - 1) ** 2).sum(-1)
class Nan(torch.nn.Module):
    def forward(self, x):
        e = (x ** 2).sum(-1)
        return torch.where(x[:, 0] > 0, torch.full_like(e, float("nan")), e)
class Matrix(torch.nn.Module):
    def forward(self, x):
        return x @ x.T
for name, m in [("double_well", DoubleWell()), ("nan", Nan()), ("matrix", Matrix())]:
    torch.jit.script(m).save(f"{out}/{name}.pt")
"#;
    // torch.jit.script reads the classes' source: a file, not `python -c`.
    let file = dir.join("energies.py");
    std::fs::write(&file, script).unwrap();
    let status = Command::new(fm_tests::torch_python("torch")).arg(&file).arg(dir).status().expect("cannot run Python");
    assert!(status.success(), "the Python side failed to write the modules");
    std::fs::write(dir.join("not_a_module.pt"), b"E(x) = x^2").unwrap();
}

fn modules() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fm-scripted-energy-{}", std::process::id()));
    if !dir.join("double_well.pt").exists() {
        write_modules(&dir);
    }
    dir
}

#[test]
fn a_torchscript_energy_is_a_density_with_its_gradient() {
    let dir = modules();
    let energy = ScriptedEnergy::load(&dir.join("double_well.pt"), 2, 2.0).unwrap();
    let x = array![[0.0, 1.0], [1.5, -0.5], [-2.0, 0.25]];
    // log p̃ = −E/T and ∇ log p̃ = −∇E/T, with E = Σ (xᵢ² − 1)² and ∂E/∂xᵢ = 4 xᵢ (xᵢ² − 1).
    let log_p = energy.log_density(x.view()).unwrap();
    let grad = energy.grad_log_density(x.view()).unwrap();
    for (i, row) in x.rows().into_iter().enumerate() {
        let e: f64 = row.iter().map(|v| (v * v - 1.0).powi(2)).sum();
        assert!((log_p[i] + e / 2.0).abs() < 1e-5, "row {i}: log p̃ {} vs {}", log_p[i], -e / 2.0);
        for (j, v) in row.iter().enumerate() {
            assert!((grad[[i, j]] + 4.0 * v * (v * v - 1.0) / 2.0).abs() < 1e-4, "row {i}, coordinate {j}");
        }
    }
    assert!(energy.log_normalizer().is_none());
    assert!(energy.log_density(array![[1.0, 2.0, 3.0]].view()).is_err(), "points of another dimension");
}

#[test]
fn bad_modules_are_one_line_errors_and_nan_energies_are_refused_where_weighed() {
    let dir = modules();
    for (file, needle) in [("not_a_module.pt", "not a TorchScript module"), ("matrix.pt", "returned shape [2, 2]"), ("missing.pt", "cannot read it")] {
        let err = ScriptedEnergy::load(&dir.join(file), 2, 1.0).err().expect("refused").to_string();
        assert!(err.contains(needle) && err.contains(file) && !err.contains('\n'), "{file}: {err}");
    }
    let nan = ScriptedEnergy::load(&dir.join("nan.pt"), 2, 1.0).unwrap();
    let x = array![[-1.0, 0.0], [1.0, 0.0]];
    let err = fm_dist::importance::ImportanceWeights::new(&nan, x.view(), array![0.0, 0.0].view()).unwrap_err().to_string();
    assert!(err.contains("gives log p̃ = NaN at sample 1"), "{err}");
}

#[test]
fn energy_weighted_flow_matching_trains_from_a_torchscript_energy() {
    let dir = modules();
    let energy = ScriptedEnergy::load(&dir.join("double_well.pt"), 2, 1.0).unwrap();
    let source = StandardNormal::new(2).unwrap();
    let objective = ObjectiveChoice::new(EnergyWeighted { start_temperature: 1.0, plan: ProposalPlan { every: 50, size: 512, ode_steps: 4 } });
    let cfg = TrainConfig { steps: 100, batch_size: 128, lr: 2e-3, report_every: 50, objective, ..TrainConfig::default() };
    let mut model = fm_model::with_torch_seed(3, || Mlp::new(MlpConfig { hidden_dim: 32, ..MlpConfig::default() }, tch::Device::Cpu)).unwrap();
    let mut reports = Vec::new();
    let hooks = TrainHooks { on_progress: &mut |p| reports.push(*p), on_checkpoint: None, stop: None };
    train_on(&mut model, TrainingData::Energy { density: &energy, source: &source, map: None }, &cfg, None, hooks).unwrap();
    let last = reports.last().unwrap().energy.unwrap();
    assert_eq!(last.evaluations, 2 * 512);
    assert!(last.weights.ess > 0.0 && last.weights.log_z.is_finite());
}

/// A run against `energy:FILE?dim=D` from start to finish, through the run layer the command
/// line calls: trained by energy-weighted flow matching alone, its samples written with their
/// exact log q and judged by their importance weights (no sample quality, no KL: no sampler),
/// the same judgement from the stored files and from the checkpoint, and every other objective
/// refused before the folder is touched.
#[test]
fn a_torchscript_energy_is_the_target_of_a_whole_run_judged_by_importance_weights() {
    let modules = modules();
    let spec = format!("energy:{}?dim=2&scale=1.2", modules.join("double_well.pt").display());
    let out = modules.join(format!("run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let objective = ObjectiveChoice::new(EnergyWeighted { start_temperature: 1.0, plan: ProposalPlan { every: 50, size: 512, ode_steps: 4 } });
    let mut cfg = fm_run::RunConfig { target: spec.clone(), ..fm_run::RunConfig::default() };
    cfg.train = TrainConfig { steps: 100, batch_size: 128, lr: 2e-3, report_every: 50, objective, ..cfg.train };
    (cfg.model.hidden_dim, cfg.sample.n_samples, cfg.sample.steps, cfg.eval.track_every) = (32, 2000, 20, 50);
    fm_run::prepare(&mut cfg, true, false).unwrap();
    let dir = fm_run::RunDir::new(&out);
    let mut lines = Vec::new();
    let options = fm_run::TrainOptions { resume: false, quiet: true, stop: None };
    let trained = fm_run::train_run(&cfg, &dir, &options, &mut |l| lines.push(l.to_string())).unwrap();
    assert!(lines.iter().any(|l| l.contains("no W2 or KL tracked")), "{lines:?}");
    let (done, ()) = fm_run::finish_run(&cfg, &dir, &trained, &mut |l| lines.push(l.to_string()), |_, _| ()).unwrap();
    let report = &done.report;
    assert!(report.quality.is_none() && report.w2_excess.is_none() && report.kl.is_none());
    let weights = report.weights.expect("weighed against the energy");
    assert!(weights.n == 2000 && weights.ess > 0.0 && weights.ess <= 1.0 && weights.log_z.is_finite(), "{weights:?}");
    assert!(lines.iter().any(|l| l.contains("no sample quality")), "{lines:?}");
    // The report on disk says the same; log q lies beside the samples, one per sample.
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.file(fm_run::RunDir::REPORT)).unwrap()).unwrap();
    assert!(json["quality"].is_null() && json["weights"]["n"] == 2000, "{json}");
    let samples = dir.file(fm_run::RunDir::SAMPLES);
    assert_eq!(fm_dist::io::read_npy(&fm_run::log_q_path(&samples)).unwrap().dim(), (2000, 1));

    // `fm eval --samples S --target energy:…`: weighed from the files (the samples stored as f32).
    let judged = |job: fm_run::EvalJob| {
        let mut found = Vec::new();
        fm_run::evaluate(&job, &mut |f| found.push(f.to_string())).unwrap();
        found.join("\n")
    };
    let from_files = judged(fm_run::EvalJob { samples: Some(samples), target: Some(spec.clone()), cfg_scale: 1.0, ..fm_run::EvalJob::default() });
    assert!(from_files.contains("no sample quality") && from_files.contains("of n = 2000") && from_files.contains("log Z"), "{from_files}");
    assert!(!from_files.contains("energy W2"), "no target samples to compare energies with: {from_files}");
    // Samples of another dimension than the energy's are refused, naming both.
    let three = spec.replace("dim=2", "dim=3");
    let job = fm_run::EvalJob { samples: Some(dir.file(fm_run::RunDir::SAMPLES)), target: Some(three), cfg_scale: 1.0, ..fm_run::EvalJob::default() };
    let err = fm_run::evaluate(&job, &mut |_| ()).expect_err("refused").to_string();
    assert!(err.contains("its points are 2-D") && err.contains("is 3-D"), "{err}");
    // `fm eval --checkpoint C --target energy:…`: the model's own samples weighed; no KL.
    let eval = fm_run::EvalConfig { w2_points: 500, ..fm_run::EvalConfig::default() };
    let model = judged(fm_run::EvalJob {
        checkpoint: Some(dir.file(fm_run::RunDir::MODEL)),
        target: Some(spec.clone()),
        eval,
        cfg_scale: 1.0,
        ..fm_run::EvalJob::default()
    });
    assert!(model.contains("importance weights of 500 samples of the model") && model.contains("log Z") && model.contains("no KL"), "{model}");

    // Any objective but an energy-weighted one is refused before anything is written.
    let other = modules.join(format!("refused-{}", std::process::id()));
    let cfg = fm_run::RunConfig { target: spec, ..fm_run::RunConfig::default() };
    let err = fm_run::train_run(&cfg, &fm_run::RunDir::new(&other), &options, &mut |_| ()).err().expect("refused").to_string();
    assert!(err.contains("known by its density alone") && err.contains("--objective ewfm") && !other.exists(), "{err}");
    // Bad spellings are one line each.
    for (spelling, needle) in [("energy:x.pt", "no ?dim=D"), ("energy:x.pt?dim=0", "dim=0"), ("energy:x.pt?dim=2&colour=red", "unknown setting 'colour'")] {
        let cfg = fm_run::RunConfig { target: spelling.into(), ..fm_run::RunConfig::default() };
        let err = fm_run::train_run(&cfg, &fm_run::RunDir::new(&other), &options, &mut |_| ()).err().expect("refused");
        // As the command line prints it: the error and its causes on one line.
        let mut line = err.to_string();
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            line += &format!(": {c}");
            cause = c.source();
        }
        assert!(line.contains(needle) && !line.contains('\n'), "{spelling}: {line}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
