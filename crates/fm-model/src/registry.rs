//! Architectures by name: what a run file's `[model] kind`, `--model` and a checkpoint's
//! `format` resolve through. `mlp` (the seed's network) and `resmlp` are built in; a program
//! adds its own with [`register`], and every loader of fm then builds it from its checkpoints.
//!
//! ```
//! use fm_model::{registry, MlpConfig};
//!
//! let cfg = MlpConfig { kind: "resmlp".into(), time_embedding: 32, ..MlpConfig::default() };
//! let model = registry::build(&cfg, tch::Device::Cpu).unwrap();
//! assert_eq!(model.architecture().kind, "fm-rs/resmlp");
//! assert!(registry::names().contains(&"mlp".to_string()));
//! ```

use crate::{Error, Mlp, MlpConfig, ResMlp, Result, VelocityModel};
use std::sync::RwLock;
use tch::Device;

/// The plain MLP's name (the seed's network, the default).
pub const MLP: &str = "mlp";
/// The residual MLP's name.
pub const RESMLP: &str = "resmlp";
/// The residual MLP's checkpoint `format` ([`crate::Architecture::kind`]).
pub const RESMLP_FORMAT: &str = "fm-rs/resmlp";

/// A trainable network of any architecture, as every loader returns it.
pub type Network = Box<dyn VelocityModel>;

/// One architecture: its name, the `format` its checkpoints record, how to build it from the
/// shared sizes, and how many parameters those sizes give.
#[derive(Clone, Copy)]
pub struct Kind {
    /// The name a run file and `--model` use (`mlp`, `resmlp`).
    pub name: &'static str,
    /// What its checkpoints record as `format` ([`crate::Architecture::kind`]): unique to it.
    pub format: &'static str,
    /// A freshly initialised network (from torch's global generator, see
    /// [`crate::with_torch_seed`]).
    pub build: fn(&MlpConfig, Device) -> Result<Network>,
    /// Its weights and biases in all, without overflow (the size limit is checked with it
    /// before anything is allocated).
    pub parameters: fn(&MlpConfig) -> u128,
    /// What it is called in messages ("MLP"), and what `hidden_layers` counts of it ("hidden
    /// layers", "blocks").
    pub title: &'static str,
    /// See [`Kind::title`].
    pub depth: &'static str,
    /// Sinusoidal time features per time when the configuration asks for none
    /// (`time_embedding = 0`): 0 feeds the raw time.
    pub default_time_features: usize,
    /// One line for `--help` and `fm targets`-style listings.
    pub help: &'static str,
}

fn build_mlp(c: &MlpConfig, device: Device) -> Result<Network> {
    Ok(Box::new(Mlp::new(c.clone(), device)?))
}

fn build_resmlp(c: &MlpConfig, device: Device) -> Result<Network> {
    Ok(Box::new(ResMlp::new(c.clone(), device)?))
}

const BUILT_IN: [Kind; 2] = [
    Kind {
        name: MLP,
        format: crate::checkpoint::FORMAT,
        build: build_mlp,
        parameters: MlpConfig::mlp_parameter_count,
        title: "MLP",
        depth: "hidden layers",
        default_time_features: 0,
        help: "the seed's network: linear layers and an activation, [x, t] in",
    },
    Kind {
        name: RESMLP,
        format: RESMLP_FORMAT,
        build: build_resmlp,
        parameters: ResMlp::parameter_count,
        title: "resmlp",
        depth: "blocks",
        default_time_features: ResMlp::TIME_FEATURES,
        help: "residual blocks with layer norm on sinusoidal time features (32 unless --time-embedding)",
    },
];

static ADDED: RwLock<Vec<Kind>> = RwLock::new(Vec::new());

/// Adds an architecture (or replaces one of the same name), for the whole process.
///
/// # Errors
/// [`Error::Config`] when `kind` names a built-in architecture or its format is another's.
pub fn register(kind: Kind) -> Result<()> {
    if BUILT_IN.iter().any(|k| k.name == kind.name || k.format == kind.format) {
        return Err(Error::Config(format!("'{}' ({}) is a built-in architecture", kind.name, kind.format)));
    }
    let mut added = ADDED.write().unwrap_or_else(|p| p.into_inner());
    if added.iter().any(|k| k.format == kind.format && k.name != kind.name) {
        return Err(Error::Config(format!("format '{}' is already another architecture's", kind.format)));
    }
    added.retain(|k| k.name != kind.name);
    added.push(kind);
    Ok(())
}

fn all() -> Vec<Kind> {
    BUILT_IN.iter().copied().chain(ADDED.read().unwrap_or_else(|p| p.into_inner()).iter().copied()).collect()
}

/// Every architecture's name, built-in first.
pub fn names() -> Vec<String> {
    all().iter().map(|k| k.name.to_string()).collect()
}

/// Every architecture as `name: help`, joined by `; `, for `--help` texts.
pub fn help() -> String {
    all().iter().map(|k| format!("{}: {}", k.name, k.help)).collect::<Vec<_>>().join("; ")
}

/// The architecture called `name`.
///
/// # Errors
/// [`Error::Config`] listing the names when none is called `name`.
pub fn find(name: &str) -> Result<Kind> {
    all().into_iter().find(|k| k.name == name).ok_or_else(|| Error::Config(format!("unknown model '{name}' (valid: {})", names().join(", "))))
}

/// The architecture whose checkpoints record `format`, if any.
pub fn by_format(format: &str) -> Option<Kind> {
    all().into_iter().find(|k| k.format == format)
}

/// A freshly initialised network of `config.kind` (see [`Kind::build`]).
///
/// # Errors
/// [`Error::Config`] for an unknown kind or sizes it refuses; [`Error::Torch`] when it cannot
/// be built on `device`.
pub fn build(config: &MlpConfig, device: Device) -> Result<Network> {
    config.validate()?;
    (find(&config.kind)?.build)(config, device)
}

/// The sizes of a network of this registry, read back from its recorded architecture; `None`
/// for a network of another kind of configuration.
pub fn config_of(model: &(impl VelocityModel + ?Sized)) -> Option<MlpConfig> {
    let architecture = model.architecture();
    by_format(&architecture.kind)?;
    serde_json::from_str(&architecture.config).ok()
}
