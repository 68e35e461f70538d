//! The resumable training checkpoint: one `.safetensors` file holding everything a run
//! needs to continue bit for bit.
//!
//! Tensors: the model weights as `model.NAME` (PyTorch names, `model.net.0.weight`, …), the
//! optimizer as `optimizer.` + [`crate::Adam::state`] names and, when there is one, the EMA as
//! `ema.NAME` (see [`TrainState::state`]). Header metadata: [`STATE_FORMAT`] and its version,
//! the step reached, the resolved [`TrainConfig`] (`train`, JSON) and the model configuration
//! (`model`, JSON), plus whatever the caller adds.
//!
//! No random-number state is stored: every step's data are drawn from a generator seeded by
//! `(seed, step)` (see [`crate::train_resumable`]).

use crate::{Error, Result, TrainConfig, TrainState};
use fm_model::checkpoint::Metadata;
use fm_model::{MlpConfig, Network, VelocityModel};
use safetensors::{Dtype, SafeTensors};
use std::path::Path;
use tch::{Device, Tensor};

/// Value of the `format` metadata entry of a training checkpoint.
pub const STATE_FORMAT: &str = "fm-rs/train-state";
/// Version of the layout; bumped on any incompatible change.
pub const STATE_FORMAT_VERSION: u32 = 1;
/// The file name of the training checkpoint inside a run folder.
pub const STATE_FILE: &str = "train-state.safetensors";

/// What [`crate::train_resumable`] hands its checkpoint hook: the run as of the end of `step`.
#[derive(Clone, Copy)]
pub struct Checkpoint<'a> {
    /// Updates taken so far.
    pub step: usize,
    /// The model, holding the last iterate.
    pub model: &'a dyn VelocityModel,
    /// The optimizer and EMA.
    pub state: &'a TrainState,
    /// The configuration the run follows.
    pub cfg: &'a TrainConfig,
    /// Mean loss of the reporting window that ended at `step`.
    pub loss: f64,
    /// Whether this is the last step of the run (`step == cfg.steps`).
    pub finished: bool,
}

/// A training checkpoint of a network of the [`fm_model::registry`] read back: the model (last
/// iterate) and the state to continue with.
pub struct LoadedState {
    /// The model, holding the last iterate, of the architecture the file records.
    pub model: Network,
    /// The optimizer and EMA to continue with.
    pub state: TrainState,
    /// Updates taken when it was written.
    pub step: usize,
    /// The configuration it was written with.
    pub train: TrainConfig,
    /// The whole header metadata (ours and the caller's entries).
    pub metadata: Metadata,
}

impl std::fmt::Debug for LoadedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedState").field("model", &self.model.architecture()).field("step", &self.step).field("train", &self.train).finish_non_exhaustive()
    }
}

fn ckpt_err(msg: impl Into<String>) -> Error {
    Error::Checkpoint(msg.into())
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| ckpt_err(e.to_string()))
}

/// Whether every element of every tensor is finite (integer tensors always are).
///
/// # Errors
/// [`Error::Torch`] when a check fails.
pub fn all_finite<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> Result<bool> {
    let _no_grad = tch::no_grad_guard();
    for t in tensors {
        if t.is_floating_point() && !bool::try_from(t.f_isfinite()?.f_all()?)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The checkpoint bytes of `ckpt`, with `extra` metadata beside ours. Refuses (an error,
/// nothing written) when any weight, moment or average is NaN or infinite.
///
/// Tensors are sorted by name and the metadata keys too, so the same state gives the same bytes.
///
/// # Errors
/// [`Error::Diverged`] for a non-finite tensor; [`Error::Torch`] or [`Error::Model`] when a
/// tensor cannot be read or encoded.
pub fn state_to_bytes(ckpt: &Checkpoint<'_>, extra: &Metadata) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Tensor)> = ckpt.model.named_parameters().into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
    tensors.extend(ckpt.state.state()?);
    if !all_finite(tensors.iter().map(|(_, t)| t))? {
        return Err(Error::Diverged { step: ckpt.step, loss: ckpt.loss });
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut metadata = extra.clone();
    metadata.insert("format".into(), STATE_FORMAT.into());
    metadata.insert("format_version".into(), STATE_FORMAT_VERSION.to_string());
    metadata.insert("step".into(), ckpt.step.to_string());
    metadata.insert("train".into(), json(ckpt.cfg)?);
    let architecture = ckpt.model.architecture();
    metadata.insert("model".into(), architecture.config);
    // Older files, all of the MLP, have no kind: absent means `fm-rs/mlp`.
    if architecture.kind != fm_model::checkpoint::FORMAT {
        metadata.insert("model_kind".into(), architecture.kind);
    }
    Ok(fm_model::checkpoint::encode_safetensors(&tensors, &metadata)?)
}

/// Writes the checkpoint to `path` atomically (temporary file, fsync, rename: `path` holds the
/// previous checkpoint or this one, never a mix). See [`state_to_bytes`].
///
/// # Errors
/// As [`state_to_bytes`], and [`Error::Dist`] when the file cannot be written.
pub fn save_state(path: &Path, ckpt: &Checkpoint<'_>, extra: &Metadata) -> Result<()> {
    let bytes = state_to_bytes(ckpt, extra)?;
    fm_dist::io::write_atomic(path, &bytes)?;
    Ok(())
}

/// Reads a checkpoint written by [`save_state`]: the model on `device` and the state to
/// continue with. Every name, shape and setting is checked; a file that is not ours, of
/// another version, or truncated is an error naming the problem.
///
/// Building the model draws from torch's global generator (its initial weights are then overwritten).
///
/// # Errors
/// [`Error::Checkpoint`] for bytes that are not valid safetensors, another format or version,
/// a missing metadata entry, a model that is not an MLP, or a missing or misshapen weight;
/// [`Error::Model`] for an invalid model configuration; [`Error::State`] for optimizer or EMA
/// state that does not fit the recorded configuration; [`Error::Torch`] for torch failures.
pub fn state_from_bytes(bytes: &[u8], device: Device) -> Result<LoadedState> {
    let raw = RawState::parse(bytes)?;
    let format = raw.architecture().kind;
    let Some(kind) = fm_model::registry::by_format(&format) else {
        return Err(ckpt_err(format!(
            "the model is a {format}, none of the architectures registered here ({}): register it, or build it and load with load_state_into",
            fm_model::registry::names().join(", ")
        )));
    };
    let model: MlpConfig = serde_json::from_str(raw.get("model")?).map_err(|e| ckpt_err(format!("model config: {e}")))?;
    if model.kind != kind.name {
        return Err(ckpt_err(format!("the format '{format}' is the '{}' architecture, the model config says '{}'", kind.name, model.kind)));
    }
    model.validate()?;
    check_model_size(&model, &raw.tensors)?;
    let built = fm_model::registry::build(&model, device)?;
    let resumed = raw.restore(&*built)?;
    Ok(LoadedState { model: built, state: resumed.state, step: resumed.step, train: resumed.train, metadata: resumed.metadata })
}

/// A training checkpoint read into a model built by the caller (see [`load_state_into`]).
#[derive(Debug)]
pub struct ResumedState {
    /// The optimizer and EMA to continue with.
    pub state: TrainState,
    /// Updates taken when it was written.
    pub step: usize,
    /// The configuration it was written with.
    pub train: TrainConfig,
    /// The whole header metadata (ours and the caller's entries).
    pub metadata: Metadata,
}

/// The parsed tensors and metadata of a training checkpoint, its format checked.
struct RawState {
    tensors: Vec<(String, Tensor)>,
    metadata: Metadata,
}

impl RawState {
    fn parse(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| ckpt_err(format!("not a valid safetensors file ({e})")))?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| ckpt_err(format!("not a valid safetensors file ({e})")))?;
        let metadata: Metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
        let mut tensors = Vec::new();
        for (name, view) in st.tensors() {
            let shape: Vec<i64> = view.shape().iter().map(|&s| s as i64).collect();
            let raw = view.data();
            let t = match view.dtype() {
                Dtype::F32 => Tensor::from_slice(&raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>()),
                Dtype::I64 => Tensor::from_slice(&raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect::<Vec<_>>()),
                other => return Err(ckpt_err(format!("tensor '{name}' has dtype {other:?}; expected F32 or I64"))),
            };
            tensors.push((name, t.f_view(shape.as_slice())?));
        }
        let raw = RawState { tensors, metadata };
        if raw.get("format")? != STATE_FORMAT {
            return Err(ckpt_err(format!("format '{}' is not {STATE_FORMAT}", raw.get("format")?)));
        }
        if raw.get("format_version")? != STATE_FORMAT_VERSION.to_string() {
            return Err(ckpt_err(format!("format version {} is not {STATE_FORMAT_VERSION}", raw.get("format_version")?)));
        }
        Ok(raw)
    }

    /// The recorded model: `model_kind` (absent in files of the MLP, which predate it) and `model`.
    fn architecture(&self) -> fm_model::Architecture {
        let kind = self.metadata.get("model_kind").map_or(fm_model::checkpoint::FORMAT, String::as_str);
        fm_model::Architecture { kind: kind.into(), config: self.metadata.get("model").cloned().unwrap_or_default() }
    }

    fn get(&self, key: &str) -> Result<&str> {
        self.metadata.get(key).map(String::as_str).ok_or_else(|| ckpt_err(format!("the metadata has no '{key}' entry (not a training checkpoint)")))
    }

    /// Copies the `model.*` tensors into `model` and rebuilds the optimizer and EMA.
    fn restore(self, model: &(impl VelocityModel + ?Sized)) -> Result<ResumedState> {
        let step = self.get("step")?;
        let step: usize = step.parse().map_err(|_| ckpt_err(format!("step '{step}' is not a count")))?;
        let train: TrainConfig = serde_json::from_str(self.get("train")?).map_err(|e| ckpt_err(format!("train config: {e}")))?;
        let weights: Vec<(String, Tensor)> =
            self.tensors.iter().filter_map(|(n, t)| n.strip_prefix("model.").map(|n| (n.to_string(), t.shallow_clone()))).collect();
        fm_model::copy_parameters(model, &weights).map_err(|e| ckpt_err(format!("model weights: {e}")))?;
        let mut state = TrainState::new(model, &train)?;
        state.load_state(&self.tensors)?;
        Ok(ResumedState { state, step, train, metadata: self.metadata })
    }
}

/// Reads the training checkpoint at `path` into `model`, built by the caller with the
/// architecture the file records (kind and configuration, compared): the way to resume any
/// [`VelocityModel`]. Returns the optimizer, EMA and step to continue with.
///
/// # Errors
/// An unreadable or foreign file, another architecture, a missing or misshapen tensor
/// ([`Error::Checkpoint`], naming the file).
pub fn load_state_into(model: &(impl VelocityModel + ?Sized), path: &Path) -> Result<ResumedState> {
    read_naming(path, |bytes| {
        let raw = RawState::parse(bytes)?;
        let (recorded, architecture) = (raw.architecture(), model.architecture());
        if !recorded.same_as(&architecture) {
            return Err(ckpt_err(format!(
                "holds a {} model with config {}, not the {} model with config {}",
                recorded.kind, recorded.config, architecture.kind, architecture.config
            )));
        }
        raw.restore(model)
    })
}

/// `read(bytes of path)`, its checkpoint errors (and a file that cannot be read) naming `path`.
fn read_naming<T>(path: &Path, read: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| ckpt_err(format!("{}: {e}", path.display())))?;
    read(&bytes).map_err(|e| match e {
        Error::Checkpoint(msg) => ckpt_err(format!("{}: {msg}", path.display())),
        e => e,
    })
}

/// An error unless `model` could fit in `tensors`: checked before the model is built, since the
/// config in the metadata could describe a network far larger than the file holds (names and
/// shapes are then checked as the weights are restored).
fn check_model_size(model: &MlpConfig, tensors: &[(String, Tensor)]) -> Result<()> {
    let values: usize = tensors.iter().map(|(_, t)| t.numel()).sum();
    if model.hidden_layers >= tensors.len() || model.dim >= values || model.hidden_dim > values || model.parameter_count() > values as u128 {
        return Err(ckpt_err(format!(
            "the model config ({} dimensions, {} hidden layers of width {}) has more parameters than the file holds ({} tensors, {values} values)",
            model.dim,
            model.hidden_layers,
            model.hidden_dim,
            tensors.len()
        )));
    }
    Ok(())
}

/// Reads the checkpoint at `path` (see [`state_from_bytes`]); errors name the file.
///
/// # Errors
/// As [`state_from_bytes`], and [`Error::Checkpoint`] when the file cannot be read.
pub fn load_state(path: &Path, device: Device) -> Result<LoadedState> {
    read_naming(path, |bytes| state_from_bytes(bytes, device))
}
