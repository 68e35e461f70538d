//! The learned velocity field of flow matching: the [`VelocityModel`] trait, the architectures
//! of its [`registry`] — the seed's MLP on `[x, t]` ([`Mlp`], `mlp`) and a residual MLP with
//! layer norm on sinusoidal time features ([`ResMlp`], `resmlp`); a program adds its own with
//! [`registry::register`] — and their checkpoints, every loader returning the architecture the
//! file records ([`Network`]).
//!
//! The MLP's parameters are named like the seed's PyTorch `FlowMatchNet` (an `nn.Sequential` called
//! `net`: `net.0.weight`, `net.0.bias`, `net.2.weight`, …), so a checkpoint written here loads
//! into that module with `load_state_dict(safetensors.torch.load_file(path))`. The seed's own
//! `torch.save(net.state_dict(), 'flow_match_model.pth')` loads here with
//! [`checkpoint::load_any`], and [`checkpoint::save_pth`] writes a `.pth` that
//! `torch.load(path, weights_only=True)` reads.
//!
//! ```
//! use fm_model::{Mlp, MlpConfig, checkpoint};
//! use fm_ode::VectorField;
//! use tch::{Device, Kind, Tensor};
//!
//! let mlp = Mlp::new(MlpConfig::default(), Device::Cpu).unwrap(); // the seed's network
//! let x = Tensor::zeros([5, 2], (Kind::Float, Device::Cpu));
//! let v = mlp.velocity(&x, 0.5).unwrap();
//! assert_eq!(v.size(), [5, 2]);
//!
//! let path = std::env::temp_dir().join(format!("fm-model-doc-{}.safetensors", std::process::id()));
//! checkpoint::save(&mlp, &path, &Default::default()).unwrap();
//! let (loaded, _meta) = checkpoint::load(&path, Device::Cpu).unwrap();
//! assert_eq!(loaded.architecture(), fm_model::VelocityModel::architecture(&mlp));
//! # std::fs::remove_file(&path).unwrap();
//! ```
//!
//! Part of `fm`; the user guide, a book with tutorials, how-tos and measured results, is
//! [docs/SUMMARY.md](https://github.com/fm-rs/flow-matching/blob/main/docs/SUMMARY.md)
//! in the repository (`mdbook serve docs` renders it).

#![warn(missing_docs)]

pub mod checkpoint;
mod condition;
mod mlp;
mod model;
pub mod pth;
pub mod registry;
mod resmlp;

pub use condition::ConditionShape;
pub use mlp::{Activation, Mlp, MlpConfig};
pub use model::{copy_parameters, jvp_autograd, var_store_parameters, velocity_at, Architecture, VelocityModel};
pub use registry::Network;
pub use resmlp::ResMlp;

/// Runs `f` with torch's global generator seeded with `seed`, holding a process-wide lock: the
/// generator is shared by every thread, so a seeded initialisation (`Mlp::new` draws from it)
/// is only reproducible when no other thread seeds or draws in between — as parallel tests do.
pub fn with_torch_seed<T>(seed: u64, f: impl FnOnce() -> T) -> T {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(seed as i64);
    f()
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Values that do not fit a model's parameters (a name missing, a shape that differs); the
    /// message says which.
    #[error("the parameters do not match the model: {0}")]
    Parameters(String),
    /// A setting or an input out of its domain: a network size of 0 or above
    /// [`MlpConfig::MAX_PARAMETERS`], an odd time embedding, an unknown activation or device,
    /// inputs of the wrong shape, parameter values that do not match the model's names and
    /// shapes, a state dict whose values do not fill its shapes. The message says which.
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// A checkpoint that cannot be read or does not fit: unreadable, not a valid safetensors or
    /// `torch.save` file, another format version or architecture, a tensor missing, extra, of
    /// another shape or not finite.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The file, as given (`<bytes>` when reading from memory).
        path: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A checkpoint file that could not be written (from [`fm_dist::io::write_atomic`]).
    #[error(transparent)]
    File(#[from] fm_dist::Error),
    /// A libtorch operation failed (shapes, kinds, devices, memory).
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The result of this crate's fallible functions, with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for fm_ode::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Torch(t) => fm_ode::Error::Torch(t),
            e => fm_ode::Error::Invalid(e.to_string()),
        }
    }
}

/// Parses `auto`, `cpu`, `cuda` or `cuda:N`; `cuda` without a usable GPU is an error.
///
/// # Errors
/// [`Error::Config`] for another name, or a CUDA device index libtorch does not see.
pub fn parse_device(s: &str) -> Result<tch::Device> {
    let key = s.trim().to_ascii_lowercase();
    let cuda = |i: usize| {
        let n = tch::Cuda::device_count().max(0) as usize;
        if i < n {
            Ok(tch::Device::Cuda(i))
        } else if n == 0 {
            Err(Error::Config(format!("device '{s}': CUDA is not available here (no GPU visible to libtorch); use --device cpu or auto")))
        } else {
            Err(Error::Config(format!("device '{s}': only {n} CUDA device(s) visible")))
        }
    };
    match key.as_str() {
        "auto" => Ok(tch::Device::cuda_if_available()),
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => cuda(0),
        _ => match key.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => cuda(i),
            _ => Err(Error::Config(format!("unknown device '{s}' (valid: auto, cpu, cuda, cuda:N)"))),
        },
    }
}
