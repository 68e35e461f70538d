//! Checkpoints and samples that cross over to PyTorch and back, checked against the real torch.
//!
//! The Python side is `tests/python/crossover.py`, run once for all tests of this file (torch's
//! import takes seconds): it loads what we wrote into the seed's `FlowMatchNet`, saves a seed
//! network the seed's way (`torch.save(net.state_dict(), p)`), and computes velocities and Euler
//! samples on inputs we give it. Each test then checks its own part of its report.
//!
//! The interpreter is `$FM_PYTHON`, else the one of the venv that `.libtorch` points into
//! (`cargo xtask setup`); without either these tests fail, they do not skip.

use fm_model::checkpoint::{self, LoadOptions};
use fm_model::{Activation, Mlp, MlpConfig, VelocityModel};
use fm_ode::{solve, Method, SolveOptions, TimeGrid};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// Velocities from the same float32 weights and inputs, through the same libtorch kernels in the
/// same order (`cat([x, t])` then `linear`): equal up to the last bits at most.
const VELOCITY_TOL: f64 = 1e-6;

/// Euler samples: our integrator evaluates the field with the first layer split as
/// `W_x x + (W_t t + b)` (no concatenation per step), PyTorch as `W [x, t] + b`: the sums are
/// rounded in another order, a few float32 ulps (~1e-7 relative) per evaluation. Over 100 steps
/// of dt = 0.01 these add up to about 100 · 0.01 · 1e-7 · |v| ≲ 1e-6, amplified along the flow by
/// at most exp(∫ Lip(v) dt), which stays well under 10 for these small networks: 1e-4 is a
/// bound with margin, and far below any difference a wrong weight or time would make (≥ 1e-2).
const SAMPLE_TOL: f64 = 1e-4;

struct Cross {
    dir: PathBuf,
    report: serde_json::Value,
    /// Everything as (name, shape, values): tensors are not `Sync`.
    arrays: Vec<(String, Vec<i64>, Vec<f32>)>,
}

impl Cross {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn tensor(&self, name: &str) -> Tensor {
        let (_, shape, values) = self.arrays.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("no array '{name}' in {}", self.dir.display()));
        Tensor::from_slice(values).reshape(shape)
    }
    /// Fails the test with Python's traceback unless its section of the report is "ok".
    fn section_ok(&self, name: &str) {
        let status = self.report[name].as_str().unwrap_or("missing from report.json");
        assert_eq!(status, "ok", "PyTorch side, section '{name}' failed (files in {}):\n{status}", self.dir.display());
    }
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("FM_PYTHON") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "FM_PYTHON is set to {}, which does not exist", p.display());
        return p;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let link = root.join(".libtorch");
    let venv_python = link.canonicalize().ok().map(|torch| torch.join("../../../../bin/python"));
    match venv_python {
        Some(p) if p.exists() => p,
        _ => panic!(
            "no Python with torch for the PyTorch cross-over tests: set FM_PYTHON to a python that has torch and safetensors, \
             or run `cargo xtask setup` so that {} points into a torch venv (its python is <torch>/../../../../bin/python)",
            link.display()
        ),
    }
}

fn model() -> Mlp {
    tch::manual_seed(11);
    Mlp::new(MlpConfig::default(), Device::Cpu).unwrap()
}

/// A network the shapes alone misread: GELU, and 16 time features (an 18-wide first layer).
fn model_te() -> Mlp {
    Mlp::new(MlpConfig { activation: Activation::Gelu, time_embedding: 16, ..MlpConfig::default() }, Device::Cpu).unwrap()
}

/// An average-velocity network u(x, r, t) (MeanFlow's): a 4-wide first layer of `[x, r, t]`.
fn model_mf() -> Mlp {
    Mlp::new(MlpConfig { activation: Activation::Gelu, time_inputs: 2, ..MlpConfig::default() }, Device::Cpu).unwrap()
}

/// The residual MLP of tests/python/resmlp.py's cross-over: GELU, 2 blocks of 64, 16 time features.
fn res_config() -> MlpConfig {
    MlpConfig { kind: "resmlp".into(), hidden_dim: 64, hidden_layers: 2, activation: Activation::Gelu, time_embedding: 16, ..MlpConfig::default() }
}

fn model_res() -> fm_model::ResMlp {
    let model = fm_model::ResMlp::new(res_config(), Device::Cpu).unwrap();
    // Weights away from the zero start of each block's second layer, so every layer counts.
    tch::no_grad(|| model.named_parameters().iter().for_each(|(_, p)| drop(p.shallow_clone().f_add_(&(p.randn_like() * 0.1)).unwrap())));
    model
}

/// A class-conditional network v(x, t | c): 3 classes and the "no condition" entry.
fn model_cond() -> Mlp {
    Mlp::new(MlpConfig { activation: Activation::Gelu, classes: 3, ..MlpConfig::default() }, Device::Cpu).unwrap()
}

/// Our model, as the Rust side wrote it for PyTorch (tests run in parallel threads: re-seeding
/// torch's global generator in each would race).
fn ours(c: &Cross) -> fm_model::Network {
    checkpoint::load(&c.path("ours.safetensors"), Device::Cpu).unwrap().0
}

fn cross() -> &'static Cross {
    static CROSS: OnceLock<Cross> = OnceLock::new();
    CROSS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fm-model-pytorch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        checkpoint::save(&model(), &dir.join("ours.safetensors"), &Default::default()).unwrap();
        checkpoint::export_pth(&dir.join("ours.safetensors"), &dir.join("ours.pth"), &LoadOptions::default()).unwrap();
        let te = model_te();
        checkpoint::save_pth(&te, &dir.join("ours_te.pth"), &Default::default()).unwrap();
        checkpoint::save(&te, &dir.join("ours_te.safetensors"), &Default::default()).unwrap();
        tch::manual_seed(5);
        let opts = (Kind::Float, Device::Cpu);
        let mf = model_mf();
        checkpoint::save_pth(&mf, &dir.join("ours_mf.pth"), &Default::default()).unwrap();
        let res = model_res();
        checkpoint::save(&res, &dir.join("ours_res.safetensors"), &Default::default()).unwrap();
        checkpoint::save_pth(&res, &dir.join("ours_res.pth"), &Default::default()).unwrap();
        let cond = model_cond();
        checkpoint::save_pth(&cond, &dir.join("ours_cond.pth"), &Default::default()).unwrap();
        checkpoint::save(&cond, &dir.join("ours_cond.safetensors"), &Default::default()).unwrap();
        let inputs = [
            ("x", Tensor::randn([64, 2], opts) * 2.0),
            ("t", Tensor::rand([64, 1], opts)),
            ("x0", Tensor::randn([512, 2], opts)),
            ("rt", Tensor::rand([64, 2], opts)),
            // Classes 0..2, and −1 for "no condition".
            ("lab", Tensor::randint(4, [64], opts) - 1.0),
        ];
        Tensor::write_safetensors(&inputs, dir.join("inputs.safetensors")).unwrap();

        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/crossover.py");
        let python = python();
        let log = |n: &str| std::fs::File::create(dir.join(n)).unwrap();
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log("python.out"))
            .stderr(log("python.err"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(300) {
                child.kill().ok();
                panic!("{} {} took over 300 s", python.display(), script.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = std::fs::read_to_string(dir.join("python.err")).unwrap_or_default();
        assert!(status.success(), "{} {} {} failed ({status}):\n{stderr}", python.display(), script.display(), dir.display());
        let report = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
        let mut arrays = Vec::new();
        for file in ["inputs.safetensors", "outputs.safetensors"] {
            for (name, t) in Tensor::read_safetensors(dir.join(file)).unwrap() {
                arrays.push((name, t.size(), Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()));
            }
        }
        Cross { dir, report, arrays }
    })
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    f64::try_from((a - b).abs().max()).unwrap()
}

fn assert_velocities(mlp: &dyn VelocityModel, c: &Cross, expected: &str) {
    let v = mlp.forward(&c.tensor("x"), &c.tensor("t")).unwrap();
    let diff = max_diff(&v, &c.tensor(expected));
    assert!(diff <= VELOCITY_TOL, "velocities differ from PyTorch's '{expected}' by {diff}");
}

#[test]
fn our_safetensors_loads_into_the_seeds_flowmatchnet_with_the_same_velocities() {
    let c = cross();
    c.section_ok("safetensors_into_torch");
    assert_velocities(&*ours(c), c, "v_ours");
}

#[test]
fn our_pth_loads_with_torch_load_weights_only() {
    let c = cross();
    c.section_ok("pth_into_torch");
    assert_velocities(&*ours(c), c, "v_ours_pth");
    // Our metadata rides along in the .pth: the config comes back without inference.
    let (back, meta) = checkpoint::load_any(&c.path("ours.pth"), Device::Cpu).unwrap();
    assert_eq!(crate::config(&*back), MlpConfig::default());
    assert_eq!(meta["format"], checkpoint::FORMAT);
}

#[test]
fn a_seed_net_saved_by_torch_save_loads_with_the_same_velocities() {
    let c = cross();
    c.section_ok("seed_pth");
    let relu = LoadOptions::with_activation(Activation::Relu);
    let (seed, meta) = checkpoint::load_any_with(&c.path("seed.pth"), Device::Cpu, &relu).unwrap();
    assert_eq!(crate::config(&*seed), MlpConfig::default(), "architecture inferred from the shapes, ReLU as told");
    assert!(meta.is_empty());
    assert_velocities(&*seed, c, "v_seed");

    // The same weights through safetensors.torch.save_file, saved from a GPU, or pickled with
    // protocol 4.
    for file in ["seed.safetensors", "seed_cuda.pth", "seed_proto4.pth"] {
        let (other, _) = checkpoint::load_any_with(&c.path(file), Device::Cpu, &relu).unwrap();
        for (name, v) in crate::params(&*seed) {
            assert!(v.equal(&crate::params(&*other)[&name]), "{file}: {name} differs from seed.pth's");
        }
    }
    let (st, _) = checkpoint::load_any_with(&c.path("seed.safetensors"), Device::Cpu, &relu).unwrap();
    assert_velocities(&*st, c, "v_seed");

    // Conversion to our format keeps the weights and records the (overridden) architecture.
    let opts = LoadOptions::with_activation(Activation::Silu);
    checkpoint::import_pth(&c.path("seed.pth"), &c.path("imported.safetensors"), &opts).unwrap();
    let (imported, meta) = checkpoint::load(&c.path("imported.safetensors"), Device::Cpu).unwrap();
    assert_eq!(crate::config(&*imported), MlpConfig { activation: Activation::Silu, ..MlpConfig::default() });
    assert!(meta["config"].contains("silu"), "{meta:?}");
    for (name, v) in crate::params(&*seed) {
        assert!(v.equal(&crate::params(&*imported)[&name]), "{name} changed in the conversion");
    }

    // What torch does not write, or no longer writes: clear errors.
    let err = checkpoint::load_any(&c.path("seed_deflated.pth"), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("seed_deflated.pth") && err.contains("is compressed (method 8)"), "{err}");
    let err = checkpoint::load_any(&c.path("seed_legacy.pth"), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("legacy torch.save format"), "{err}");
}

#[test]
fn euler_samples_agree_with_the_seeds_sampler_both_ways() {
    let c = cross();
    c.section_ok("safetensors_into_torch");
    c.section_ok("seed_pth");
    let grid = TimeGrid::uniform(0.0, 1.0, 100).unwrap();
    let x0 = c.tensor("x0");
    let (seed, _) = checkpoint::load_any_with(&c.path("seed.pth"), Device::Cpu, &LoadOptions::with_activation(Activation::Relu)).unwrap();
    for (mlp, expected) in [(ours(c), "euler_ours"), (seed, "euler_seed")] {
        let ours = solve(&*mlp, &x0, &grid, Method::Euler, SolveOptions::default()).unwrap().x;
        let theirs = c.tensor(expected);
        let diff = max_diff(&ours, &theirs);
        assert!(diff <= SAMPLE_TOL, "Euler samples differ from PyTorch's '{expected}' by {diff}");
        // The samples moved: the comparison is not between two copies of x0.
        let moved = max_diff(&theirs, &x0);
        assert!(moved > 100.0 * SAMPLE_TOL, "'{expected}' barely moved from x0 ({moved})");
        eprintln!("{expected}: max |ours - PyTorch| = {diff:.2e} (points moved up to {moved:.2})");
    }
}

#[test]
fn a_state_dict_without_its_activation_is_refused_until_told_and_then_right() {
    let c = cross();
    c.section_ok("foreign_layouts");
    // Run as ReLU, this SiLU network would give other velocities with exit code 0: refused instead.
    let err = checkpoint::load_any(&c.path("silu.pth"), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("silu.pth") && err.contains("--activation relu|silu|gelu|selu|elu"), "{err}");
    assert!(err.contains("net.0.weight [128, 3]") && err.contains("8 tensors"), "the refusal lists what the file holds: {err}");
    let (silu, _) = checkpoint::load_any_with(&c.path("silu.pth"), Device::Cpu, &LoadOptions::with_activation(Activation::Silu)).unwrap();
    assert_velocities(&*silu, c, "v_silu");
}

#[test]
fn data_parallel_compiled_and_bare_sequential_names_load_as_the_seed() {
    let c = cross();
    c.section_ok("foreign_layouts");
    let relu = LoadOptions::with_activation(Activation::Relu);
    for file in ["seed_dp.pth", "seed_compiled.pth", "seed_bare.pth"] {
        let (mlp, _) = checkpoint::load_any_with(&c.path(file), Device::Cpu, &relu).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_velocities(&*mlp, c, "v_seed");
    }
}

#[test]
fn our_metadata_survives_torch_load_and_torch_save() {
    let c = cross();
    c.section_ok("foreign_layouts");
    // Without the record, the activation (GELU) would be unknown.
    let (back, meta) = checkpoint::load_any(&c.path("ours_te_resaved.pth"), Device::Cpu).unwrap();
    assert_eq!(&crate::config(&*back), model_te().config());
    assert_eq!(meta["format"], checkpoint::FORMAT);
    let (ours, _) = checkpoint::load(&c.path("ours_te.safetensors"), Device::Cpu).unwrap();
    for (name, v) in crate::params(&*ours) {
        assert!(v.equal(&crate::params(&*back)[&name]), "{name} changed through PyTorch");
    }
}

/// A MeanFlow network exported as a `.pth` is the documented `MeanFlowNet` in PyTorch (the same
/// average velocities, the same one-jump samples), and comes back through `torch.save` with its
/// two time inputs.
#[test]
fn an_average_velocity_network_crosses_to_pytorch_and_back() {
    let c = cross();
    c.section_ok("meanflow_into_torch");
    let (mf, _) = checkpoint::load_any(&c.path("ours_mf_resaved.pth"), Device::Cpu).unwrap();
    assert_eq!(crate::config(&*mf).time_inputs, 2);
    let u = mf.forward(&c.tensor("x"), &c.tensor("rt")).unwrap();
    let diff = max_diff(&u, &c.tensor("u_ours_mf"));
    assert!(diff <= VELOCITY_TOL, "average velocities differ from PyTorch's by {diff}");
    let x0 = c.tensor("x0");
    let times = Tensor::cat(&[Tensor::zeros([512, 1], (Kind::Float, Device::Cpu)), Tensor::ones([512, 1], (Kind::Float, Device::Cpu))], 1);
    let jump = &x0 + mf.forward(&x0, &times).unwrap();
    assert!(max_diff(&jump, &c.tensor("jump_ours_mf")) <= VELOCITY_TOL);
}

/// A class-conditional network exported as a `.pth` is the documented `ConditionalNet` in
/// PyTorch (the same velocities for every class and for "no condition"), and comes back
/// through `torch.save` with its classes and every weight unchanged.
#[test]
fn a_conditional_network_crosses_to_pytorch_and_back_exactly() {
    let c = cross();
    c.section_ok("conditional_into_torch");
    let (back, _) = checkpoint::load_any(&c.path("ours_cond_resaved.pth"), Device::Cpu).unwrap();
    let (ours, _) = checkpoint::load(&c.path("ours_cond.safetensors"), Device::Cpu).unwrap();
    assert_eq!(crate::config(&*back), crate::config(&*ours));
    assert_eq!(crate::config(&*back).classes, 3);
    for (name, v) in crate::params(&*ours) {
        assert!(v.equal(&crate::params(&*back)[&name]), "{name} changed through PyTorch");
    }
    let shape = back.condition_shape();
    let labels = Vec::<f32>::try_from(c.tensor("lab")).unwrap();
    let rows: Vec<f32> = labels.iter().flat_map(|&l| shape.features_of((l >= 0.0).then_some(l as usize), None).unwrap()).collect();
    let features = Tensor::from_slice(&rows).view([labels.len() as i64, -1]);
    let v = back.forward(&c.tensor("x"), &Tensor::cat(&[c.tensor("t"), features], 1)).unwrap();
    let diff = max_diff(&v, &c.tensor("v_ours_cond"));
    assert!(diff <= VELOCITY_TOL, "conditional velocities differ from PyTorch's by {diff}");
}

#[test]
fn the_residual_mlp_loads_into_its_pytorch_module_and_back_with_the_same_velocities() {
    let c = cross();
    c.section_ok("resmlp_into_torch");
    // Ours, read back from both files: the architecture rides in them.
    for file in ["ours_res.safetensors", "ours_res.pth"] {
        let (back, _) = checkpoint::load_any(&c.path(file), Device::Cpu).unwrap();
        assert_eq!(back.architecture().kind, "fm-rs/resmlp", "{file}");
        assert_eq!(crate::config(&*back), res_config(), "{file}");
        assert_velocities(&*back, c, "v_ours_res");
    }
    // PyTorch's own initialisation, saved by torch.save: no record, so the sizes are given.
    let opts = LoadOptions { config: Some(res_config()), ..LoadOptions::default() };
    let (theirs, _) = checkpoint::load_any_with(&c.path("res_torch.pth"), Device::Cpu, &opts).unwrap();
    assert_velocities(&*theirs, c, "v_res_torch");
    // Without the sizes it is not taken for an MLP: its names are not an MLP's.
    let err = checkpoint::load_any_with(&c.path("res_torch.pth"), Device::Cpu, &LoadOptions::with_activation(Activation::Gelu)).unwrap_err().to_string();
    assert!(err.contains("net.0.weight"), "{err}");
}
