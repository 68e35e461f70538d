//! Checkpoints as `.safetensors`: the weights under PyTorch's names, and in the header
//! metadata the format, its version and the model configuration (JSON), so the file alone
//! rebuilds the model. Callers may add their own metadata entries (training state, target, …).

use crate::{Error, Mlp, MlpConfig, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Value of the `format` metadata entry.
pub const FORMAT: &str = "fm-rs/mlp";
/// Version of the layout; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// Header metadata of a checkpoint (string keys and values, as safetensors stores them).
pub type Metadata = BTreeMap<String, String>;

fn err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.display().to_string(), msg: msg.into() }
}

/// The checkpoint bytes of `mlp`, with `extra` metadata beside the format and config.
///
/// The safetensors layout is written here rather than by the `safetensors` crate, whose
/// metadata map has no fixed order: with sorted keys the same model gives the same bytes.
pub fn to_bytes(mlp: &Mlp, extra: &Metadata) -> Result<Vec<u8>> {
    let mut metadata = extra.clone();
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("format_version".into(), FORMAT_VERSION.to_string());
    metadata.insert("config".into(), serde_json::to_string(mlp.config()).map_err(|e| Error::Config(e.to_string()))?);
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(&metadata).map_err(|e| Error::Config(e.to_string()))?);
    let mut names: Vec<String> = mlp.config().parameter_shapes().into_iter().map(|(n, _)| n).collect();
    names.sort();
    let vars = mlp.var_store().variables();
    let mut data = Vec::new();
    for name in names {
        let var = vars.get(&name).ok_or_else(|| Error::Config(format!("parameter {name} is missing")))?;
        let values = Vec::<f32>::try_from(var.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_flatten(0, -1)?)?;
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(name, serde_json::json!({ "dtype": "F32", "shape": var.size(), "data_offsets": [start, data.len()] }));
    }
    let mut header = serde_json::to_vec(&header).map_err(|e| Error::Config(e.to_string()))?;
    // The data start is aligned to 8 bytes by padding the header with spaces, as safetensors does.
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    Ok(out)
}

/// Writes `mlp` to `path` atomically (a temporary file renamed into place).
pub fn save(mlp: &Mlp, path: &Path, extra: &Metadata) -> Result<()> {
    fm_dist::io::write_atomic(path, &to_bytes(mlp, extra)?)?;
    Ok(())
}

/// Reads a checkpoint: the model on `device`, and the header metadata.
///
/// A checkpoint without our metadata (a `.safetensors` exported from PyTorch) is accepted
/// when the tensor shapes determine the architecture (ReLU is then assumed).
pub fn load(path: &Path, device: Device) -> Result<(Mlp, Metadata)> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    from_bytes(&bytes, device).map_err(|e| match e {
        Error::Checkpoint { msg, .. } => err(path, msg),
        e => e,
    })
}

/// Parses checkpoint bytes (see [`load`]).
pub fn from_bytes(bytes: &[u8], device: Device) -> Result<(Mlp, Metadata)> {
    let here = Path::new("<bytes>");
    let st = SafeTensors::deserialize(bytes).map_err(|e| err(here, format!("not a valid safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| err(here, format!("not a valid safetensors file ({e})")))?;
    let metadata: Metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    if let Some(format) = metadata.get("format") {
        if format != FORMAT {
            return Err(err(here, format!("format '{format}' is not an fm model checkpoint ('{FORMAT}')")));
        }
        let version: u32 = metadata.get("format_version").and_then(|v| v.parse().ok()).ok_or_else(|| err(here, "format_version is missing or not a number"))?;
        if version != FORMAT_VERSION {
            let which = if version > FORMAT_VERSION { "a newer" } else { "an older" };
            return Err(err(here, format!("written by {which} fm (format version {version}); this fm reads version {FORMAT_VERSION}")));
        }
    }
    let config = match metadata.get("config") {
        Some(json) => serde_json::from_str::<MlpConfig>(json).map_err(|e| err(here, format!("config metadata is invalid: {e}")))?,
        None => infer_config(&st).map_err(|m| err(here, m))?,
    };
    config.validate()?;
    let mut mlp = Mlp::new(config, device)?;
    let expected = mlp.config().parameter_shapes();
    if let Some(extra) = st.names().into_iter().find(|n| !expected.iter().any(|(e, _)| e == n)) {
        return Err(err(here, format!("unexpected tensor '{extra}' for {}", describe(mlp.config()))));
    }
    let _no_grad = tch::no_grad_guard();
    let mut vars = mlp.var_store_mut().variables();
    for (name, shape) in expected {
        let view = st.tensor(&name).map_err(|_| err(here, format!("tensor '{name}' is missing")))?;
        let got: Vec<i64> = view.shape().iter().map(|&s| s as i64).collect();
        if got != shape {
            return Err(err(here, format!("tensor '{name}' has shape {got:?}, expected {shape:?} for {}", describe(mlp.config()))));
        }
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F64 => view.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
            other => return Err(err(here, format!("tensor '{name}' has dtype {other:?}; expected F32 or F64"))),
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(err(here, format!("tensor '{name}' holds NaN or infinite values")));
        }
        let src = Tensor::from_slice(&values).f_reshape(&shape)?.f_to_device(device)?;
        vars.get_mut(&name).expect("created by Mlp::new").f_copy_(&src)?;
    }
    Ok((mlp, metadata))
}

fn describe(c: &MlpConfig) -> String {
    format!("a {}-D MLP with {} hidden layers of width {}", c.dim, c.hidden_layers, c.hidden_dim)
}

/// The architecture implied by the shapes of `net.0.weight`, `net.2.weight`, …
fn infer_config(st: &SafeTensors) -> std::result::Result<MlpConfig, String> {
    let shape = |i: usize| st.tensor(&format!("net.{i}.weight")).ok().map(|t| t.shape().to_vec());
    let first = shape(0).ok_or("no config metadata and no tensor 'net.0.weight' to infer the architecture from")?;
    let mut linear = 1;
    while shape(2 * linear).is_some() {
        linear += 1;
    }
    let last = shape(2 * (linear - 1)).expect("counted above");
    if first.len() != 2 || first[1] < 2 || last.len() != 2 || linear < 2 {
        return Err(format!("cannot infer an MLP from 'net.0.weight' of shape {first:?} and {linear} linear layers"));
    }
    Ok(MlpConfig { dim: first[1] - 1, hidden_dim: first[0], hidden_layers: linear - 1, ..MlpConfig::default() })
}
