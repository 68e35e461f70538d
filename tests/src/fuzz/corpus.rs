//! The seed corpora (`tests/fuzz/corpus/<target>/`): small valid inputs, made by our own
//! writers ([`write_seeds`], `fuzz --write-corpus`), that the mutations start from; and the
//! regression inputs (`tests/fuzz/regressions/<target>/`) of bugs the fuzzer found, replayed
//! before every run.

use fm_dist::io::{encode_csv, encode_npy};
use fm_dist::{ComponentSpec, GaussianMixture, MixtureSpec};
use fm_model::checkpoint::{self, Metadata};
use fm_model::{Activation, Mlp, MlpConfig};
use fm_run::RunConfig;
use ndarray::{array, Array2};
use std::path::{Path, PathBuf};
use tch::Device;

/// `tests/fuzz` of this workspace.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The seed corpora, one folder per target.
pub fn corpus_root() -> PathBuf {
    fuzz_dir().join("corpus")
}

/// The inputs of fixed bugs, one folder per target.
pub fn regressions_root() -> PathBuf {
    fuzz_dir().join("regressions")
}

/// The files of `dir`, sorted by name (so runs are reproducible); none if it does not exist.
pub fn read_dir_sorted(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push((entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path())?));
        }
    }
    files.sort();
    Ok(files)
}

/// The seed inputs of every target, as our writers make them today: `(target, file, bytes)`.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();

    // Mixture specs: the seed experiment's target in JSON, and the three covariance forms in TOML.
    let seed = MixtureSpec::from(&GaussianMixture::seed());
    out.push(("spec", "seed.json", serde_json::to_vec_pretty(&seed).expect("JSON")));
    let forms = MixtureSpec {
        name: Some("three forms".into()),
        components: vec![
            ComponentSpec {
                weight: Some(0.5),
                mean: vec![0.0, 0.0, 1.0],
                cov: Some(vec![vec![1.0, 0.2, 0.0], vec![0.2, 1.0, 0.0], vec![0.0, 0.0, 0.5]]),
                ..Default::default()
            },
            ComponentSpec { weight: Some(0.3), mean: vec![4.0, 0.0, -1.5], diag: Some(vec![0.5, 0.5, 2.0]), ..Default::default() },
            ComponentSpec { weight: Some(0.2), mean: vec![0.0, 4.0, 0.0], var: Some(0.3), ..Default::default() },
        ],
    };
    out.push(("spec", "forms.toml", toml::to_string(&forms).expect("TOML").into_bytes()));
    let equal = MixtureSpec { name: None, components: vec![ComponentSpec { mean: vec![-1.0], var: Some(2.0), ..Default::default() }; 2] };
    out.push(("spec", "equal-weights.json", serde_json::to_vec(&equal).expect("JSON")));

    // Run files: the defaults, and one that sets every kind of value.
    out.push(("run-config", "default.toml", RunConfig::default().to_toml().expect("TOML").into_bytes()));
    let mut rich = RunConfig { target: "8gaussians".into(), source: "normal".into(), device: "cpu".into(), ..RunConfig::default() };
    rich.model = MlpConfig { dim: 2, hidden_dim: 64, hidden_layers: 2, activation: Activation::Silu, ..MlpConfig::default() };
    let t = &mut rich.train;
    t.path = "icfm:0.1".parse().expect("path");
    t.coupling = "sinkhorn:0.05".parse().expect("coupling");
    t.time_sampling = "logit-normal:0,1".parse().expect("time sampling");
    t.optimizer = "adamw".parse().expect("optimizer");
    t.lr_schedule = "cosine:1e-5".parse().expect("schedule");
    t.warmup_steps = 100;
    t.max_grad_norm = Some(1.0);
    t.ema_decay = Some(0.999);
    rich.sample.method = "dopri5".parse().expect("method");
    rich.eval.likelihood.divergence = "hutchinson:4".parse().expect("divergence");
    out.push(("run-config", "rich.toml", rich.to_toml().expect("TOML").into_bytes()));

    // Checkpoints: ours (safetensors and .pth) and a plain state dict as PyTorch writes one.
    tch::manual_seed(0);
    let mlp =
        Mlp::new(MlpConfig { dim: 2, hidden_dim: 4, hidden_layers: 2, activation: Activation::Gelu, ..MlpConfig::default() }, Device::Cpu).expect("model");
    let meta: Metadata = [("target".to_string(), "gmm3".to_string())].into();
    out.push(("checkpoint", "ours.safetensors", checkpoint::to_bytes(&mlp, &meta).expect("safetensors")));
    out.push(("checkpoint", "ours.pth", checkpoint::to_pth_bytes(&mlp, &meta).expect("pth")));
    let plain: Vec<(String, tch::Tensor)> = mlp.var_store().variables().into_iter().collect::<std::collections::BTreeMap<_, _>>().into_iter().collect();
    out.push(("checkpoint", "plain.safetensors", checkpoint::encode_safetensors(&plain, &Metadata::new()).expect("safetensors")));
    // The key spellings of PyTorch wrappers, as plain .pth state dicts: DataParallel, torch.compile
    // (and both), a bare nn.Sequential.
    let state = checkpoint::state_dict(&mlp).expect("state dict");
    for (name, prefix, strip) in
        [("dataparallel.pth", "module.", ""), ("compiled.pth", "_orig_mod.", ""), ("both.pth", "module._orig_mod.", ""), ("bare-sequential.pth", "", "net.")]
    {
        let renamed: checkpoint::StateDict = state.iter().map(|(k, t)| (format!("{prefix}{}", k.strip_prefix(strip).unwrap_or(k)), t.clone())).collect();
        out.push(("checkpoint", name, fm_model::pth::write_state_dict(&renamed, &Metadata::new()).expect("pth")));
    }

    // Point clouds.
    let points: Array2<f64> = array![[0.5, -1.25], [3.0, 2.0], [-0.125, 1e-3], [1e6, -7.5], [2.5, 0.0]];
    out.push(("npy", "points-f32.npy", encode_npy(points.mapv(|v| v as f32).view())));
    out.push(("npy", "points-f64.npy", encode_npy(points.view())));
    out.push(("npy", "column-f64.npy", encode_npy(array![[1.0], [2.0], [-3.5]].view())));
    out.push(("csv", "points.csv", encode_csv(points.view()).into_bytes()));
    out.push((
        "csv",
        "three-columns.csv",
        format!("# a comment, then a blank line\n\n{}", encode_csv(array![[1.0, 2.0, 3.0], [-4.0, 5.5, 6e-7]].view())).into_bytes(),
    ));
    // What pandas and spreadsheets write: column numbers as the header (`df.to_csv(index=False)`),
    // an index column under an empty name (`df.to_csv()`) or `Unnamed: 0` (read and written
    // again), and Excel's byte-order mark with CRLF line ends and quotes.
    out.push(("csv", "pandas-column-numbers.csv", b"0,1\n0.5,-1.25\n3.0,2.0\n-0.125,0.001\n".to_vec()));
    out.push(("csv", "pandas-index.csv", b",x,y\n0,0.5,-1.25\n1,3.0,2.0\n2,-0.125,0.001\n".to_vec()));
    out.push(("csv", "pandas-index-column-numbers.csv", b",0,1\n0,0.5,-1.25\n1,3.0,2.0\n".to_vec()));
    out.push(("csv", "unnamed-0-index.csv", b"Unnamed: 0,x,y\n0,0.5,-1.25\n1,3.0,2.0\n".to_vec()));
    out.push(("csv", "bom-crlf-quotes.csv", "\u{feff}\"x\",\"y\"\r\n0.5,-1.25\r\n\"3.0\",2\r\n".as_bytes().to_vec()));
    out.push(("csv", "bom-one-column.csv", "\u{feff}5\r\n6\r\n7.5\r\n".as_bytes().to_vec()));
    out
}

/// Writes [`seeds`] under `root` (`root/<target>/<file>`), replacing what is there; returns the paths.
pub fn write_seeds(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (target, name, bytes) in seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        written.push(path);
    }
    Ok(written)
}
