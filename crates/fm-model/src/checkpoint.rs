//! Checkpoints as `.safetensors`: the weights under PyTorch's names, and in the header
//! metadata the format, its version and the model configuration (JSON), so the file alone
//! rebuilds the model. Callers may add their own metadata entries (training state, target, …).
//!
//! PyTorch's own `.pth` (`torch.save(net.state_dict(), path)`) is read and written too (see
//! [`crate::pth`]): [`load_any`] takes either format, told apart by content; [`save_pth`],
//! [`export_pth`] and [`import_pth`] write and convert. Both formats go through one
//! [`StateDict`] → model path, [`from_state_dict`], which checks every name and shape. Every
//! loader returns a [`Network`] of the architecture the file records, built through the
//! [`crate::registry`].

use crate::{registry, Activation, Architecture, Error, MlpConfig, Network, Result, VelocityModel};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Value of the `format` metadata entry of the plain MLP's checkpoints (each architecture of
/// the [`crate::registry`] has its own).
pub const FORMAT: &str = "fm-rs/mlp";
/// Version of the layout; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// Header metadata of a checkpoint (string keys and values, as safetensors stores them).
pub type Metadata = BTreeMap<String, String>;

fn err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.display().to_string(), msg: msg.into() }
}

/// The checkpoint bytes of `model`, with `extra` metadata beside its architecture: the
/// parameters sorted by name, under their own names.
///
/// The safetensors layout is written here rather than by the `safetensors` crate, whose
/// metadata map has no fixed order: with sorted keys the same model gives the same bytes.
///
/// # Errors
/// [`Error::Parameters`] when a parameter holds NaN or infinity (a diverged model is never
/// written); a torch failure reading the weights.
pub fn to_bytes(model: &(impl VelocityModel + ?Sized), extra: &Metadata) -> Result<Vec<u8>> {
    let metadata = full_metadata(model, extra);
    let mut tensors = model.named_parameters();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    refuse_non_finite(&tensors)?;
    encode_safetensors(&tensors, &metadata)
}

/// An error naming the first tensor that holds NaN or infinity.
fn refuse_non_finite(tensors: &[(String, Tensor)]) -> Result<()> {
    let _no_grad = tch::no_grad_guard();
    for (name, t) in tensors {
        if t.is_floating_point() && !bool::try_from(t.f_isfinite()?.f_all()?)? {
            return Err(Error::Parameters(format!("parameter '{name}' holds NaN or infinite values (a diverged model): nothing is written")));
        }
    }
    Ok(())
}

/// Safetensors bytes of `tensors`, in the order given, and `metadata` (sorted keys), so the
/// same tensors give the same bytes. Integer tensors are stored as I64, all others as F32.
///
/// # Errors
/// [`Error::Torch`] when a tensor cannot be copied to the host (and [`Error::Config`] should
/// the header fail to serialise as JSON).
pub fn encode_safetensors(tensors: &[(String, Tensor)], metadata: &Metadata) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(metadata).map_err(|e| Error::Config(e.to_string()))?);
    let mut data = Vec::new();
    for (name, t) in tensors {
        let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let start = data.len();
        let dtype = match t.kind() {
            Kind::Int64 => {
                data.extend(Vec::<i64>::try_from(t.f_flatten(0, -1)?)?.iter().flat_map(|v| v.to_le_bytes()));
                "I64"
            }
            _ => {
                data.extend(Vec::<f32>::try_from(t.f_to_kind(Kind::Float)?.f_flatten(0, -1)?)?.iter().flat_map(|v| v.to_le_bytes()));
                "F32"
            }
        };
        header.insert(name.clone(), serde_json::json!({ "dtype": dtype, "shape": t.size(), "data_offsets": [start, data.len()] }));
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

/// `extra` with the architecture of `model` (`format`: its kind, `config`: its JSON) and the
/// layout's version.
fn full_metadata(model: &(impl VelocityModel + ?Sized), extra: &Metadata) -> Metadata {
    let architecture = model.architecture();
    let mut metadata = extra.clone();
    metadata.insert("format".into(), architecture.kind);
    metadata.insert("format_version".into(), FORMAT_VERSION.to_string());
    metadata.insert("config".into(), architecture.config);
    metadata
}

/// Writes `model` to `path` atomically (a temporary file renamed into place).
///
/// # Errors
/// A torch failure, or the file cannot be written (nothing is left at `path` then).
pub fn save(model: &(impl VelocityModel + ?Sized), path: &Path, extra: &Metadata) -> Result<()> {
    fm_dist::io::write_atomic(path, &to_bytes(model, extra)?)?;
    Ok(())
}

/// Reads the weights of a checkpoint written by [`save`] into `model`, which must have the
/// architecture the file records (kind and configuration); returns the header metadata. The
/// way to load any [`VelocityModel`]: build it as it was built for training, then load.
///
/// # Errors
/// An unreadable file, another architecture, or a parameter missing or of another shape
/// ([`Error::Checkpoint`], naming the file); the model is unchanged then.
pub fn load_into(model: &(impl VelocityModel + ?Sized), path: &Path) -> Result<Metadata> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    let (state, metadata) = read_safetensors(&bytes).map_err(|e| err(path, e.to_string()))?;
    let architecture = model.architecture();
    let recorded = Architecture { kind: metadata.get("format").cloned().unwrap_or_default(), config: metadata.get("config").cloned().unwrap_or_default() };
    if !recorded.same_as(&architecture) {
        return Err(err(
            path,
            format!(
                "holds a {} model with config {}, not the {} model with config {} it is loaded into",
                recorded.kind, recorded.config, architecture.kind, architecture.config
            ),
        ));
    }
    if metadata.get("format_version").map(String::as_str) != Some(&FORMAT_VERSION.to_string()) {
        return Err(err(path, format!("format version {} is not {FORMAT_VERSION}", metadata.get("format_version").map_or("(none)", String::as_str))));
    }
    let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    if let Some((extra, _)) = state.iter().find(|(n, _)| !names.contains(n)) {
        return Err(err(path, format!("holds a tensor '{extra}' the model has no parameter for")));
    }
    if let Some((bad, _)) = state.iter().find(|(_, t)| t.values.iter().any(|v| !v.is_finite())) {
        return Err(err(path, format!("tensor '{bad}' holds NaN or infinite values")));
    }
    let tensors = state
        .into_iter()
        .map(|(name, data)| {
            let shape: Vec<i64> = data.shape.iter().map(|&s| s as i64).collect();
            Ok((name, Tensor::f_from_slice(&data.values)?.f_view(shape.as_slice())?))
        })
        .collect::<Result<Vec<_>>>()?;
    crate::copy_parameters(model, &tensors).map_err(|e| err(path, e.to_string()))?;
    Ok(metadata)
}

/// Reads a checkpoint: the model on `device`, and the header metadata.
///
/// A checkpoint without our metadata (a `.safetensors` exported from PyTorch) does not say its
/// activation and is refused: [`load_any_with`] reads it with the caller's.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file when it cannot be read, is not valid safetensors, was
/// written by another format version, or its tensors do not make the model (see
/// [`from_state_dict`]); [`Error::Config`] when its recorded configuration is invalid;
/// [`Error::Torch`] when the model cannot be built on `device`.
pub fn load(path: &Path, device: Device) -> Result<(Network, Metadata)> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    from_bytes(&bytes, device).map_err(|e| match e {
        Error::Checkpoint { msg, .. } => err(path, msg),
        e => e,
    })
}

/// One tensor of a state dict: its shape and its values in row-major order, as `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    /// Size of each dimension (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements, row-major: as many as the product of `shape`.
    pub values: Vec<f32>,
}

/// Named tensors in order, as a PyTorch `state_dict()` holds them (`net.0.weight`, …).
pub type StateDict = Vec<(String, TensorData)>;

/// What the caller knows of the architecture when the file does not say it all.
///
/// The weights give the data dimension (the output width), the time features (the rest of the
/// input width), the hidden width and the number of hidden layers, but not the activation:
/// files without our `config` metadata (a state dict written by PyTorch) take it from here, and
/// are refused when neither [`Self::activation`] nor [`Self::described`] gives one, rather than
/// run with a guessed one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// The architecture to expect. Tensor shapes are checked against it, and a `config` in the
    /// file's metadata must equal it. `None`: the file's config, else one inferred from shapes.
    pub config: Option<MlpConfig>,
    /// The activation of an architecture inferred from shapes (the seed's is ReLU). `None`: a
    /// file that does not record its activation is an error saying how to give it.
    pub activation: Option<Activation>,
    /// A description of the network from elsewhere (a run file's `[model]`), used for a file
    /// without its config only when its shapes are exactly that network; then its activation
    /// is the description's (unless [`Self::activation`] says otherwise).
    pub described: Option<MlpConfig>,
    /// What the first layer's inputs after the data are, for a file that does not record it.
    /// `None`: only the seed's layout (`x` then one raw `t`) is read from shapes alone; any
    /// other width admits several readings and is refused, naming them.
    pub inputs: Option<InputLayout>,
}

/// What a network's first layer reads after the `d` data columns, as a file without fm's record
/// cannot say: its times (one raw `t`, `N` sinusoidal features of `t`, or MeanFlow's two raw
/// times `r, t`), then its condition (`K` one-hot classes, `C` values, and the "no condition"
/// entry when conditioned). Spelled `t`, `t:N`, `meanflow` or `meanflow-paper`, then optionally
/// `,classes:K` and `,cond:C` (`--inputs t,classes:8`).
///
/// `meanflow-paper`: an average-velocity network `u(z, r, t)` in the MeanFlow paper's time (t = 1
/// the noise, the jump `z_r = z_t − (t − r) u`), inputs `[x, r, t]`. It is converted on reading
/// into fm's convention (t = 0 the source; `u_fm(x, r, t) = −u_paper(x, 1 − t, 1 − r)`, exact:
/// the first layer's `r` and `t` columns swap and change sign, its bias gains both, and the last
/// layer changes sign; docs/few-step.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputLayout {
    /// Sinusoidal time features (0: raw times).
    pub time_embedding: usize,
    /// Raw times: 1, or 2 for an average velocity (MeanFlow).
    pub time_inputs: usize,
    /// One-hot classes (0: none).
    pub classes: usize,
    /// Condition values (0: none).
    pub cond_dim: usize,
    /// A MeanFlow network in the paper's time convention, to convert.
    pub meanflow_paper: bool,
}

impl InputLayout {
    /// The layout of network `c` (fm's time convention).
    pub fn of(c: &MlpConfig) -> Self {
        Self { time_embedding: c.time_embedding, time_inputs: c.time_inputs, classes: c.classes, cond_dim: c.cond_dim, meanflow_paper: false }
    }

    /// The first layer's width for `dim`-D data.
    pub fn inputs(&self, dim: usize) -> usize {
        // As the network reads them (`MlpConfig::time_features`): each raw time, or E features of each.
        let times = self.time_inputs.max(1) * self.time_embedding.max(1);
        let conditioned = self.classes > 0 || self.cond_dim > 0;
        [times, self.classes, self.cond_dim, usize::from(conditioned)].into_iter().fold(dim, usize::saturating_add)
    }

    /// The readings of a first layer of `inputs` columns for `dim`-D data: every layout of that
    /// width fm trains — its times (one raw `t`, `E` sinusoidal features, MeanFlow's `r, t` in
    /// either time convention), then nothing, `K` classes or `C` values, each with the "no
    /// condition" entry (`K + 1` or `C + 1` columns). Classes and values together are left out:
    /// fm samples such a network with neither alone.
    pub fn readings(dim: usize, inputs: usize) -> Vec<InputLayout> {
        let Some(extra) = inputs.checked_sub(dim) else { return Vec::new() };
        let raw = InputLayout { time_inputs: 1, ..Self::default() };
        let meanflow = InputLayout { time_inputs: 2, ..Self::default() };
        let mut times = vec![(raw, 1), (meanflow, 2), (InputLayout { meanflow_paper: true, ..meanflow }, 2)];
        times.extend((2..=extra).step_by(2).map(|e| (InputLayout { time_embedding: e, ..raw }, e)));
        let mut out = Vec::new();
        for (time, width) in times {
            match extra.checked_sub(width) {
                Some(0) => out.push(time),
                Some(rest) if rest >= 2 => {
                    out.push(InputLayout { classes: rest - 1, ..time });
                    out.push(InputLayout { cond_dim: rest - 1, ..time });
                }
                _ => {}
            }
        }
        out
    }
}

impl std::fmt::Display for InputLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.time_embedding, self.time_inputs, self.meanflow_paper) {
            (0, 2, false) => write!(f, "meanflow")?,
            (0, 2, true) => write!(f, "meanflow-paper")?,
            (0, _, _) => write!(f, "t")?,
            (n, _, _) => write!(f, "t:{n}")?,
        }
        if self.classes > 0 {
            write!(f, ",classes:{}", self.classes)?;
        }
        if self.cond_dim > 0 {
            write!(f, ",cond:{}", self.cond_dim)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for InputLayout {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = |why: &str| format!("input layout '{s}': {why} (spelled t, t:N, meanflow or meanflow-paper, then optionally ,classes:K and ,cond:C)");
        let mut parts = s.split(',').map(str::trim);
        let number = |v: &str, what: &str| v.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| bad(&format!("{what} must be a positive whole number")));
        let mut layout = match parts.next().unwrap_or("") {
            "t" => InputLayout { time_inputs: 1, ..Self::default() },
            "meanflow" => InputLayout { time_inputs: 2, ..Self::default() },
            "meanflow-paper" => InputLayout { time_inputs: 2, meanflow_paper: true, ..Self::default() },
            other => match other.strip_prefix("t:") {
                Some(n) => {
                    let n = number(n, "the number of time features")?;
                    if n % 2 != 0 {
                        return Err(bad("the number of time features is even (sines and cosines)"));
                    }
                    InputLayout { time_inputs: 1, time_embedding: n, ..Self::default() }
                }
                None => return Err(bad("it starts with the times")),
            },
        };
        for part in parts {
            match part.split_once(':') {
                Some(("classes", k)) if layout.classes == 0 => layout.classes = number(k, "classes")?,
                Some(("cond", c)) if layout.cond_dim == 0 => layout.cond_dim = number(c, "cond")?,
                _ => return Err(bad(&format!("'{part}' is not classes:K or cond:C (each at most once)"))),
            }
        }
        Ok(layout)
    }
}

impl LoadOptions {
    /// Options for a file whose activation the caller knows: a PyTorch state dict of the
    /// seed's network is `LoadOptions::with_activation(Activation::Relu)`.
    pub fn with_activation(activation: Activation) -> Self {
        Self { activation: Some(activation), ..Self::default() }
    }
}

/// The checkpoint file formats this crate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.safetensors`, ours (with config metadata) or PyTorch's `safetensors.torch.save_file`.
    Safetensors,
    /// A `torch.save` zip archive of a state dict (`.pth`, `.pt`).
    Pth,
}

impl Format {
    /// The format of a file's bytes: a zip archive (`PK\x03\x04`) is a `.pth`, anything else is
    /// read as safetensors.
    pub fn detect(bytes: &[u8]) -> Format {
        // A safetensors header (JSON) starts at byte 8; its length's low byte may well be 0x80.
        if bytes.get(8) == Some(&b'{') {
            return Format::Safetensors;
        }
        if crate::pth::is_pth(bytes) || bytes.first() == Some(&0x80) {
            Format::Pth
        } else {
            Format::Safetensors
        }
    }
}

/// Parses safetensors checkpoint bytes (see [`load`]); other formats: [`from_any_bytes`].
///
/// # Errors
/// As [`load`], the [`Error::Checkpoint`] path being `<bytes>`.
pub fn from_bytes(bytes: &[u8], device: Device) -> Result<(Network, Metadata)> {
    let (state, metadata) = read_safetensors(bytes)?;
    let mlp = build(&state, &metadata, device, &LoadOptions::default())?;
    Ok((mlp, metadata))
}

/// The tensors (as `f32`; F32 and F64 accepted) and header metadata of safetensors bytes.
///
/// # Errors
/// [`Error::Checkpoint`] (path `<bytes>`) when the bytes are not valid safetensors or a tensor
/// is of another dtype.
pub fn read_safetensors(bytes: &[u8]) -> Result<(StateDict, Metadata)> {
    let here = Path::new("<bytes>");
    let st = SafeTensors::deserialize(bytes).map_err(|e| err(here, format!("not a valid safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| err(here, format!("not a valid safetensors file ({e})")))?;
    let metadata: Metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let mut tensors = st.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut state = StateDict::with_capacity(tensors.len());
    for (name, view) in tensors {
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F64 => view.data().chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32).collect(),
            other => return Err(err(here, format!("tensor '{name}' has dtype {other:?}; expected F32 or F64"))),
        };
        state.push((name, TensorData { shape: view.shape().to_vec(), values }));
    }
    Ok((state, metadata))
}

/// Parses checkpoint bytes of any [`Format`]: the model on `device` and the metadata (that of
/// our writers; empty for a `.pth` written by PyTorch).
///
/// # Errors
/// [`Error::Checkpoint`] (path `<bytes>`) when the bytes are neither valid safetensors nor a
/// readable `torch.save` archive (see [`crate::pth::read`]), when a recorded config differs
/// from `opts.config`, or when the tensors do not make the model; otherwise as [`load`].
pub fn from_any_bytes(bytes: &[u8], device: Device, opts: &LoadOptions) -> Result<(Network, Metadata)> {
    let (state, metadata) = match Format::detect(bytes) {
        Format::Pth => crate::pth::read(bytes)?,
        Format::Safetensors => read_safetensors(bytes)?,
    };
    let mlp = build(&state, &metadata, device, opts)?;
    Ok((mlp, metadata))
}

/// What a checkpoint's shapes say of its network when the file does not record it (a PyTorch
/// state dict): its linear layers, and the readings of its first layer's inputs
/// ([`InputLayout::readings`]), without choosing among them or an activation. `None` for a file
/// that records its network (load it), or whose tensors are not an MLP's.
///
/// # Errors
/// [`Error::Checkpoint`] (path `<bytes>`) when the bytes are neither safetensors nor a
/// `torch.save` archive.
pub fn describe_unrecorded(bytes: &[u8]) -> Result<Option<String>> {
    let (state, metadata) = match Format::detect(bytes) {
        Format::Pth => crate::pth::read(bytes)?,
        Format::Safetensors => read_safetensors(bytes)?,
    };
    if metadata.contains_key("config") {
        return Ok(None);
    }
    let renamed = canonical_names(&state);
    let state = renamed.as_ref().unwrap_or(&state);
    let mut widths = Vec::new();
    while let Some(t) = get(state, &format!("net.{}.weight", 2 * widths.len())) {
        match t.shape[..] {
            [out, inp] => widths.push((inp, out)),
            _ => return Ok(None),
        }
    }
    let (Some(&(inputs, _)), Some(&(_, dim))) = (widths.first(), widths.last()) else { return Ok(None) };
    let chain = std::iter::once(inputs).chain(widths.iter().map(|w| w.1)).map(|w| w.to_string()).collect::<Vec<_>>().join("→");
    let readings = InputLayout::readings(dim, inputs);
    let read = match readings.as_slice() {
        [] => format!("no layout fm trains has {inputs} inputs for {dim}-D data"),
        [only] => format!("its inputs read only as {only} ({})", reading(only)),
        several => format!(
            "its {inputs} inputs read as {} — give --inputs to sample it",
            several.iter().map(|r| format!("{r} ({})", reading(r))).collect::<Vec<_>>().join(" | ")
        ),
    };
    Ok(Some(format!(
        "an MLP without fm's record (a PyTorch state dict): linear layers {chain} ({} hidden of {}, {dim}-D output); {read}; its activation is not recorded (give --activation to sample it)",
        widths.len() - 1,
        widths.first().map_or(0, |w| w.1)
    )))
}

/// Reads a checkpoint of any [`Format`], told apart by content rather than by extension. A
/// file without our config (a `.pth` from PyTorch, such as the seed's `flow_match_model.pth`)
/// is refused, since its activation is unknown: [`load_any_with`] says it.
///
/// # Errors
/// As [`from_any_bytes`], the [`Error::Checkpoint`] naming the file; also when it cannot be read.
pub fn load_any(path: &Path, device: Device) -> Result<(Network, Metadata)> {
    load_any_with(path, device, &LoadOptions::default())
}

/// [`load_any`] with the caller's knowledge of the architecture.
///
/// # Errors
/// As [`load_any`].
pub fn load_any_with(path: &Path, device: Device, opts: &LoadOptions) -> Result<(Network, Metadata)> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    // Another file fm writes (a training state, samples, a run file) is named for what it is.
    if let Some(kind) = fm_dist::files::FileKind::detect(&bytes).filter(|k| *k != fm_dist::files::FileKind::ModelCheckpoint) {
        return Err(err(path, format!("not a model checkpoint: {}", kind.advice())));
    }
    from_any_bytes(&bytes, device, opts).map_err(|e| match e {
        Error::Checkpoint { msg, .. } => err(path, msg),
        e => e,
    })
}

/// The architecture recorded in our metadata, after checking its format and version; `None`
/// for files of other writers (no metadata, or a foreign `format` such as PyTorch's `pt`).
fn config_from_metadata(metadata: &Metadata) -> std::result::Result<Option<MlpConfig>, String> {
    let kind = match metadata.get("format") {
        Some(format) => match registry::by_format(format) {
            Some(kind) => {
                let version: u32 = metadata.get("format_version").and_then(|v| v.parse().ok()).ok_or("format_version is missing or not a number")?;
                if version != FORMAT_VERSION {
                    let which = if version > FORMAT_VERSION { "a newer" } else { "an older" };
                    return Err(format!("written by {which} fm (format version {version}); this fm reads version {FORMAT_VERSION}"));
                }
                Some(kind)
            }
            None if format.starts_with("fm-rs/") => return Err(format!("format '{format}' is not an fm model checkpoint ('{FORMAT}')")),
            // Written by fm's checkpoint writer for a VelocityModel no registry entry builds.
            None if metadata.contains_key("format_version") => {
                return Err(format!(
                    "holds a '{format}' model, none of the architectures registered here ({}): register it (fm_model::registry::register), \
                     or build it and read it with checkpoint::load_into",
                    registry::names().join(", ")
                ))
            }
            None => return Ok(None),
        },
        None => None,
    };
    let Some(json) = metadata.get("config") else { return Ok(None) };
    let config: MlpConfig = serde_json::from_str(json).map_err(|e| format!("config metadata is invalid: {e}"))?;
    match kind {
        Some(kind) if kind.name != config.kind => {
            Err(format!("its format '{}' is the '{}' architecture, its config says '{}'", kind.format, kind.name, config.kind))
        }
        _ => Ok(Some(config)),
    }
}

/// The model of a state dict with its file's metadata.
fn build(state: &StateDict, metadata: &Metadata, device: Device, opts: &LoadOptions) -> Result<Network> {
    let here = Path::new("<bytes>");
    let recorded = config_from_metadata(metadata).map_err(|m| err(here, m))?;
    let config = match (recorded, &opts.config) {
        (Some(file), Some(wanted)) if &file != wanted => {
            return Err(err(here, format!("the checkpoint's config {file:?} differs from the expected {wanted:?}")));
        }
        (file, wanted) => wanted.clone().or(file),
    };
    if let (Some(c), Some(given)) = (&config, opts.inputs) {
        // A file that records its network is read as recorded: --inputs that says otherwise is refused.
        let recorded = InputLayout::of(c);
        if recorded != (InputLayout { meanflow_paper: false, ..given }) || given.meanflow_paper {
            return Err(err(here, format!("the file records its network's inputs ({recorded}); --inputs {given} is for files that do not (leave it out)")));
        }
    }
    from_state_dict(state, device, &LoadOptions { config, ..opts.clone() })
}

/// Builds the model from named tensors, whatever file they came from: the architecture is
/// `opts.config`, or inferred from the shapes of `net.0.weight`, `net.2.weight`, … with
/// `opts.activation`. Every tensor must be present with its exact shape and finite values, and
/// no other tensor may be there; errors name the tensor.
///
/// # Errors
/// [`Error::Checkpoint`] (path `<bytes>`) for a tensor missing, unexpected, of another shape or
/// not finite, for shapes no architecture can be inferred from, or for a config needing more
/// parameters than `state` holds; [`Error::Config`] when the config is invalid
/// ([`MlpConfig::validate`]); [`Error::Torch`] when the model cannot be built on `device`.
pub fn from_state_dict(state: &StateDict, device: Device, opts: &LoadOptions) -> Result<Network> {
    let here = Path::new("<bytes>");
    // Refusals list the tensors under the file's own names.
    let holds = || format!("; the file holds {}", list_tensors(state));
    let renamed = canonical_names(state);
    let state = renamed.as_ref().unwrap_or(state);
    let config = match &opts.config {
        Some(c) => c.clone(),
        None => infer_config(state, opts).map_err(|m| err(here, m + &holds()))?,
    };
    let converted = match opts.inputs {
        Some(layout) if layout.meanflow_paper && opts.config.is_none() => Some(from_meanflow_paper_time(state, &config).map_err(|m| err(here, m))?),
        _ => None,
    };
    let state = converted.as_ref().unwrap_or(state);
    // Everything is checked before the model is built: the config comes from the file (or its
    // shapes) and may describe a network far larger than the file holds.
    check_size(state, &config)?;
    config.validate()?;
    let model = registry::build(&config, device)?;
    let expected: Vec<(String, Vec<i64>)> = model.named_parameters().into_iter().map(|(n, t)| (n, t.size())).collect();
    if let Some((extra, _)) = state.iter().find(|(n, _)| !expected.iter().any(|(e, _)| e == n)) {
        return Err(err(here, format!("unexpected tensor '{extra}' for {}{}", describe(&config), holds())));
    }
    let mut checked = Vec::with_capacity(expected.len());
    for (name, shape) in expected {
        let t = get(state, &name).ok_or_else(|| err(here, format!("tensor '{name}' is missing for {}{}", describe(&config), holds())))?;
        let got: Vec<i64> = t.shape.iter().map(|&s| s as i64).collect();
        if got != shape {
            return Err(err(here, format!("tensor '{name}' has shape {got:?}, expected {shape:?} for {}{}", describe(&config), holds())));
        }
        if t.values.iter().any(|v| !v.is_finite()) {
            return Err(err(here, format!("tensor '{name}' holds NaN or infinite values")));
        }
        checked.push((name.clone(), Tensor::f_from_slice(&t.values)?.f_reshape(&shape)?));
    }
    crate::copy_parameters(&*model, &checked)?;
    Ok(model)
}

/// An average-velocity MLP in the MeanFlow paper's time (`[x, r, t]` inputs, t = 1 the noise)
/// as fm's: `u_fm(x, r, t) = −u_paper(x, 1 − t, 1 − r)`. The first layer's `W_x x + w_r r' + w_t t' + b`
/// at `r' = 1 − t`, `t' = 1 − r` is `W_x x − w_t r − w_r t + (b + w_r + w_t)`; the last layer
/// changes sign. Exact up to float rounding of the bias.
fn from_meanflow_paper_time(state: &StateDict, config: &MlpConfig) -> std::result::Result<StateDict, String> {
    let d = config.dim;
    let last = 2 * config.hidden_layers;
    let mut out = state.clone();
    let find = |out: &mut StateDict, name: &str| out.iter().position(|(n, _)| n == name).ok_or_else(|| format!("tensor '{name}' is missing"));
    let (w0, b0) = (find(&mut out, "net.0.weight")?, find(&mut out, "net.0.bias")?);
    let inputs = out[w0].1.shape.get(1).copied().unwrap_or(0);
    if inputs != d + 2 || config.time_inputs != 2 {
        return Err(format!("meanflow-paper converts a network of [x, r, t] ({} inputs), the file's first layer has {inputs}", d + 2));
    }
    let rows = out[w0].1.shape[0];
    for row in 0..rows {
        let w = &mut out[w0].1.values[row * inputs..(row + 1) * inputs];
        let (w_r, w_t) = (w[d], w[d + 1]);
        (w[d], w[d + 1]) = (-w_t, -w_r);
        out[b0].1.values[row] += w_r + w_t;
    }
    for name in [format!("net.{last}.weight"), format!("net.{last}.bias")] {
        let i = find(&mut out, &name)?;
        out[i].1.values.iter_mut().for_each(|v| *v = -*v);
    }
    Ok(out)
}

/// The state dict under our names (`net.0.weight`, …) when it uses another common spelling of
/// them; `None` when it needs no renaming. PyTorch prefixes every key with `module.` for a
/// network wrapped in `DataParallel`/`DistributedDataParallel` and with `_orig_mod.` for one
/// built by `torch.compile` (in either order); a bare `nn.Sequential` has no `net.` prefix.
fn canonical_names(state: &StateDict) -> Option<StateDict> {
    let all_start = |names: &[String], p: &str| !names.is_empty() && names.iter().all(|n| n.starts_with(p));
    let mut names: Vec<String> = state.iter().map(|(n, _)| n.clone()).collect();
    while let Some(p) = ["module.", "_orig_mod."].into_iter().find(|p| all_start(&names, p)) {
        names.iter_mut().for_each(|n| *n = n[p.len()..].to_string());
    }
    let bare_sequential = names.iter().all(|n| n.split_once('.').is_some_and(|(i, rest)| i.parse::<usize>().is_ok() && !rest.contains('.')));
    if !names.is_empty() && bare_sequential {
        names.iter_mut().for_each(|n| *n = format!("net.{n}"));
    }
    let changed = names.iter().zip(state).any(|(n, (old, _))| n != old);
    changed.then(|| names.into_iter().zip(state.iter().map(|(_, t)| t.clone())).collect())
}

/// The names and shapes of a state dict's tensors, for error messages: all of them up to 12,
/// else the first 10 and how many more.
fn list_tensors(state: &StateDict) -> String {
    if state.is_empty() {
        return "no tensors".into();
    }
    let shown = if state.len() <= 12 { state.len() } else { 10 };
    let mut s = format!("{} tensor{}: ", state.len(), if state.len() == 1 { "" } else { "s" });
    s += &state[..shown].iter().map(|(n, t)| format!("{n} {:?}", t.shape)).collect::<Vec<_>>().join(", ");
    if shown < state.len() {
        s += &format!(", … and {} more", state.len() - shown);
    }
    s
}

/// An error unless `config` could fit in `state`: no more linear layers than the state has tensors,
/// no dimension larger than all its values. Passing this, the parameter list of `config` is
/// small and its sizes do not overflow; the exact names and shapes are checked next.
fn check_size(state: &StateDict, config: &MlpConfig) -> Result<()> {
    let values: usize = state.iter().map(|(_, t)| t.values.len()).sum();
    if config.hidden_layers >= state.len() || config.dim >= values || config.hidden_dim > values {
        return Err(err(
            Path::new("<bytes>"),
            format!("{} has more parameters than the checkpoint holds ({} tensors, {values} values in all)", describe(config), state.len()),
        ));
    }
    Ok(())
}

fn get<'s>(state: &'s StateDict, name: &str) -> Option<&'s TensorData> {
    state.iter().rev().find(|(n, _)| n == name).map(|(_, t)| t)
}

/// The parameters of `model` on the CPU as `f32`, in its [`VelocityModel::named_parameters`]
/// order (PyTorch's `state_dict()` order for [`crate::Mlp`]).
///
/// # Errors
/// A torch failure reading the weights.
pub fn state_dict(model: &(impl VelocityModel + ?Sized)) -> Result<StateDict> {
    model
        .named_parameters()
        .into_iter()
        .map(|(name, var)| {
            let shape = var.size().iter().map(|&s| s as usize).collect();
            let values = Vec::<f32>::try_from(var.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_flatten(0, -1)?)?;
            Ok((name, TensorData { shape, values }))
        })
        .collect()
}

/// The `.pth` bytes of `mlp`: what `torch.save(net.state_dict(), path)` writes for the same
/// network (float32, PyTorch's names and order), loadable with `torch.load(path,
/// weights_only=True)`. Our metadata (format, config, `extra`) rides in a record torch ignores,
/// so [`load_any`] gets the activation back.
///
/// # Errors
/// [`Error::Torch`] when the weights cannot be read; [`Error::Config`] when the archive cannot
/// be written (see [`crate::pth::write_state_dict`]).
pub fn to_pth_bytes(mlp: &(impl VelocityModel + ?Sized), extra: &Metadata) -> Result<Vec<u8>> {
    refuse_non_finite(&mlp.named_parameters())?;
    crate::pth::write_state_dict(&state_dict(mlp)?, &full_metadata(mlp, extra))
}

/// Writes `mlp` as a `.pth` (see [`to_pth_bytes`]) to `path` atomically.
///
/// # Errors
/// As [`to_pth_bytes`], and [`Error::File`] when the file cannot be written (nothing is left
/// at `path` then).
pub fn save_pth(mlp: &(impl VelocityModel + ?Sized), path: &Path, extra: &Metadata) -> Result<()> {
    fm_dist::io::write_atomic(path, &to_pth_bytes(mlp, extra)?)?;
    Ok(())
}

/// Converts a checkpoint (any [`Format`], usually our `.safetensors`) into a `.pth` for
/// PyTorch, keeping its metadata (see [`crate::pth::write_state_dict`]); `opts` as for
/// [`load_any_with`].
///
/// # Errors
/// What [`load_any_with`] returns for `src`, and what [`save_pth`] returns for `dst`.
pub fn export_pth(src: &Path, dst: &Path, opts: &LoadOptions) -> Result<()> {
    let (mlp, metadata) = load_any_with(src, Device::Cpu, opts)?;
    save_pth(&*mlp, dst, &metadata)
}

/// Converts a checkpoint (any [`Format`], usually a PyTorch `.pth`) into our `.safetensors`,
/// with the config (inferred, or from `opts`) and any metadata in its header.
///
/// # Errors
/// What [`load_any_with`] returns for `src`, and what [`save`] returns for `dst`.
pub fn import_pth(src: &Path, dst: &Path, opts: &LoadOptions) -> Result<()> {
    let (mlp, metadata) = load_any_with(src, Device::Cpu, opts)?;
    save(&*mlp, dst, &metadata)
}

fn describe(c: &MlpConfig) -> String {
    let condition = c.condition_shape();
    let on = if condition.is_conditional() { format!(", conditioned on {condition}") } else { String::new() };
    let (title, depth) = registry::find(&c.kind).map_or((c.kind.as_str(), "layers"), |k| (k.title, k.depth));
    format!("a {}-D {title} with {} {depth} of width {}{on}", c.dim, c.hidden_layers, c.hidden_dim)
}

/// The architecture implied by the shapes of `net.0.weight`, `net.2.weight`, …, with the
/// activation and time features the caller gives (the shapes cannot say them).
fn infer_config(state: &StateDict, opts: &LoadOptions) -> std::result::Result<MlpConfig, String> {
    // A network the run file describes, whose shapes these are, is that network (with the
    // activation given, if one is): the shapes alone cannot tell a condition's inputs (or two
    // raw times) from time features. An explicit --inputs is read as given instead.
    // Another architecture than the plain MLP is never read from shapes: the description is it
    // (its names and shapes are checked as the weights are copied).
    if let Some(described) = opts.described.as_ref().filter(|d| d.kind != registry::MLP) {
        return Ok(MlpConfig { activation: opts.activation.unwrap_or(described.activation), ..described.clone() });
    }
    if let (Some(described), None) = (&opts.described, opts.inputs) {
        let fits = |(name, shape): &(String, Vec<i64>)| get(state, name).is_some_and(|t| t.shape.iter().map(|&v| v as i64).eq(shape.iter().copied()));
        if described.parameter_shapes().iter().all(fits) {
            return Ok(MlpConfig { activation: opts.activation.unwrap_or(described.activation), ..described.clone() });
        }
    }
    let shape = |i: usize| get(state, &format!("net.{i}.weight")).map(|t| t.shape.clone());
    let first = shape(0).ok_or("no config metadata and no tensor 'net.0.weight' to infer the architecture from")?;
    let mut linear = 1;
    while shape(2 * linear).is_some() {
        linear += 1;
    }
    let last = shape(2 * (linear - 1)).unwrap_or_default();
    if first.len() != 2 || last.len() != 2 || linear < 2 {
        return Err(format!(
            "cannot infer an MLP: expected linear layers 'net.0', 'net.2', 'net.4', … (linear and activation alternating, as in the seed's \
             nn.Sequential), found 'net.0.weight' of shape {first:?} and {} such layer(s)",
            linear
        ));
    }
    // The output is as wide as the data; what the rest of the input is, the shapes say only
    // for the seed's layout (one raw t): any other width has several readings, which the user
    // (or a run file) chooses among, never fm.
    let (dim, inputs) = (last[0], first[1]);
    let readings = InputLayout::readings(dim, inputs);
    let layout = match (opts.inputs, readings.as_slice()) {
        (Some(given), _) if given.inputs(dim) == inputs => given,
        (Some(given), _) => {
            return Err(format!(
                "--inputs {given} means {} first-layer inputs for {dim}-D data, the file's first layer has {inputs}{}",
                given.inputs(dim),
                match readings.is_empty() {
                    true => String::new(),
                    false => format!(" (its readings: {})", readings.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
                }
            ))
        }
        (None, []) => return Err(format!("cannot infer an MLP: {inputs} inputs and {dim} outputs leave no time input")),
        (None, [only]) => *only,
        (None, several) => {
            // Each reading with its meaning while few; beyond that the spellings say enough.
            let list = match several.len() {
                n if n <= 6 => several.iter().map(|r| format!("{r} ({})", reading(r))).collect::<Vec<_>>().join(" | "),
                _ => several.iter().map(ToString::to_string).collect::<Vec<_>>().join(" | "),
            };
            let run_file = match &opts.described {
                Some(d) => format!(" (the run file's network, {}, is not this file's)", shape_of(d)),
                None => " (or --config with the run file that trained it)".to_string(),
            };
            return Err(format!(
                "the file does not record what its network's {inputs} inputs are beyond the {dim}-D data, and its shapes allow {}: \
                 say which with --inputs {list}{run_file}",
                several.len()
            ));
        }
    };
    let inferred = |activation| MlpConfig {
        kind: registry::MLP.into(),
        dim,
        hidden_dim: first[0],
        hidden_layers: linear - 1,
        activation,
        time_embedding: layout.time_embedding,
        time_inputs: layout.time_inputs,
        classes: layout.classes,
        cond_dim: layout.cond_dim,
    };
    if let Some(activation) = opts.activation {
        return Ok(inferred(activation));
    }
    match &opts.described {
        // The run file decides what the shapes leave open (an average velocity's two raw times
        // read like two time features).
        Some(described) if described.parameter_shapes() == inferred(described.activation).parameter_shapes() => Ok(inferred(described.activation)),
        described => Err(format!(
            "the file does not record its network's activation (a state dict written by PyTorch holds only weights){}: \
             say which with --activation {} (the seed's network uses relu)",
            described.as_ref().map_or(String::new(), |d| format!(
                ", and its shapes ({}) are not the network the run file describes ({})",
                shape_of(&inferred(d.activation)),
                shape_of(d)
            )),
            Activation::ALL.map(Activation::name).join("|")
        )),
    }
}

/// What a reading of the input layout means, in words.
fn reading(layout: &InputLayout) -> String {
    let times = match (layout.time_embedding, layout.time_inputs, layout.meanflow_paper) {
        (0, 2, false) => "an average velocity u(x, r, t), fm's time".to_string(),
        (0, 2, true) => "an average velocity in the MeanFlow paper's time".to_string(),
        (0, _, _) => "a velocity of x and t".to_string(),
        (n, _, _) => format!("a velocity with {n} sinusoidal time features"),
    };
    match (layout.classes, layout.cond_dim) {
        (0, 0) => times,
        (1, 0) => format!("{times}, conditioned on 1 class"),
        (k, 0) => format!("{times}, conditioned on {k} classes"),
        (0, 1) => format!("{times}, conditioned on 1 value"),
        (0, c) => format!("{times}, conditioned on {c} values"),
        (k, c) => format!("{times}, conditioned on {k} classes and {c} values"),
    }
}

/// A network's shape, without its activation.
fn shape_of(c: &MlpConfig) -> String {
    let layout = InputLayout::of(c);
    format!("{}-D, {} hidden layers of {}, inputs {layout}", c.dim, c.hidden_layers, c.hidden_dim)
}
