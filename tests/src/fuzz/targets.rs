//! The fuzz targets: each takes any bytes, returns whether the input was accepted, and must
//! never panic, hang or allocate more than its input justifies. Where an input is accepted, the
//! result is used the way the program would use it next, and the invariants our own writers
//! promise are asserted (an assertion that fails is a bug like a panic).

use fm_dist::empirical::{parse_csv, parse_csv_table};
use fm_dist::io::{decode_npy, encode_csv, encode_npy};
use fm_dist::{MixtureSpec, PointCloud, SpecFormat, Target};
use fm_model::checkpoint::{from_any_bytes, LoadOptions};

use fm_run::RunConfig;
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// A Gaussian-mixture spec (`spec:FILE`), TOML and JSON: parsed, built, sampled, its density
/// and score evaluated.
pub fn spec(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let mut accepted = false;
    for format in [SpecFormat::Toml, SpecFormat::Json] {
        let Ok(mixture) = MixtureSpec::parse(&text, format).and_then(|s| s.to_mixture()) else { continue };
        let x = mixture.sample(4, &mut ChaCha8Rng::seed_from_u64(0));
        mixture.log_prob(x.view()).expect("a mixture has a density");
        mixture.score(x.view()).expect("a mixture has a score");
        accepted = true;
    }
    accepted
}

/// A run file (`fm train --config FILE`), read by the `fm` command's own code, then checked
/// as `fm train` checks it before any work (short of reading the files a `spec:` or `file:`
/// target names). An accepted run file must survive the round trip `--resume` relies on: the
/// `config.toml` written into the run folder reads back as the same configuration.
pub fn run_config(data: &[u8]) -> bool {
    SCRATCH.with(|dir| {
        let path = dir.0.join("run.toml");
        // A new file each time: rewriting one in place makes ext4 flush it to disk at every close.
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, data).expect("the fuzzer's scratch file is writable");
        let Ok(cfg) = RunConfig::read(&path) else { return false };
        if !checks_like_fm_train(&cfg) {
            return false;
        }
        let text = cfg.to_toml().expect("a valid run configuration serialises");
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, &text).expect("the fuzzer's scratch file is writable");
        let back = RunConfig::read(&path).unwrap_or_else(|e| panic!("the config.toml fm writes does not read back: {e:#}\n{text}"));
        assert_eq!(back.to_toml().expect("serialises"), text, "the config.toml fm writes reads back as another configuration");
        true
    })
}

/// What `fm train` checks of a configuration before it writes anything (see `train_in` in
/// crates/fm-cli/src/train.rs).
fn checks_like_fm_train(cfg: &RunConfig) -> bool {
    if fm_model::parse_device(&cfg.device).is_err() {
        return false;
    }
    let mut model = cfg.model.clone();
    let mut dims = Vec::new();
    for name in [&cfg.target, &cfg.source] {
        let kind = name.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if kind == "spec" || kind == "file" {
            continue; // the fuzzer does not open paths it made up
        }
        match fm_dist::parse_target(name) {
            Ok(t) => dims.push(t.dim()),
            Err(_) => return false,
        }
    }
    if dims.len() == 2 && dims[0] != dims[1] {
        return false;
    }
    if let Some(&d) = dims.first() {
        model.dim = d;
    }
    model.validate().is_ok() && cfg.train.validate().is_ok() && cfg.sample.validate().is_ok() && cfg.eval.validate(cfg.sample.n_samples).is_ok()
}

/// A per-thread scratch folder, removed when the thread ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

thread_local! {
    static SCRATCH: Scratch = {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("fm-fuzz-{}-{n}", std::process::id());
        // In memory where there is a tmpfs for it (twice the executions per second), else in /tmp.
        let dir = [PathBuf::from("/dev/shm"), std::env::temp_dir()]
            .into_iter()
            .map(|base| base.join(&name))
            .find(|dir| std::fs::create_dir_all(dir).is_ok())
            .expect("the fuzzer's scratch folder can be created");
        Scratch(dir)
    };
}

/// A model checkpoint, safetensors or `.pth` (`fm sample --checkpoint`, `fm inspect`,
/// `fm import`): a model that loads must evaluate.
pub fn checkpoint(data: &[u8]) -> bool {
    // Without an activation given, only a file that records its network may load.
    if let Ok((_, metadata)) = from_any_bytes(data, Device::Cpu, &LoadOptions::default()) {
        assert!(metadata.contains_key("config"), "a file without its config loaded with no activation given");
    }
    let Ok((mlp, _metadata)) = from_any_bytes(data, Device::Cpu, &LoadOptions::with_activation(fm_model::Activation::Relu)) else { return false };
    let x = Tensor::zeros([2, mlp.dim() as i64], (Kind::Float, Device::Cpu));
    let v = mlp.velocity(&x, 0.5).expect("a model that loads evaluates");
    assert_eq!(v.size(), x.size());
    true
}

/// A `.npy` point cloud (`file:FILE`): decoded (exactly: it encodes and decodes to the same
/// bits), then taken as a target and sampled.
pub fn npy(data: &[u8]) -> bool {
    let Ok(points) = decode_npy(data) else { return false };
    let again = decode_npy(&encode_npy(points.view())).expect("a .npy we wrote decodes");
    assert!(same_bits(&points, &again), "a decoded .npy changes when written and read again");
    point_cloud(points)
}

/// A `.csv` point cloud (`file:FILE`): parsed with what its first line was taken as (a header
/// or a point, pandas' column numbers, a pandas index column), the structure checked (an index
/// column comes with a header naming every kept column, at least one finite point), parsed
/// exactly (our CSV of it parses to the same bits), then taken as a target and sampled.
pub fn csv(data: &[u8]) -> bool {
    let Ok(table) = parse_csv_table(&String::from_utf8_lossy(data)) else { return false };
    let points = table.points;
    assert!(!table.index_column || table.header.is_some(), "a pandas index column was dropped without a header");
    if let Some(names) = &table.header {
        assert_eq!(names.len(), points.ncols(), "the header does not name every column of the points");
    }
    assert!(points.nrows() >= 1 && points.ncols() >= 1, "a CSV parsed to {:?} points", points.dim());
    assert!(points.iter().all(|v| v.is_finite()), "a CSV parsed to a non-finite coordinate");
    let again = parse_csv(&encode_csv(points.view())).expect("a CSV we wrote parses");
    assert!(same_bits(&points, &again), "parsed CSV points change when written and read again");
    point_cloud(points)
}

fn point_cloud(points: Array2<f64>) -> bool {
    let Ok(cloud) = PointCloud::new(points, "fuzz") else { return false };
    let x = cloud.sample(4, &mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!(x.ncols(), cloud.dim());
    true
}

fn same_bits(a: &Array2<f64>, b: &Array2<f64>) -> bool {
    a.dim() == b.dim() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
