//! Generating samples by integrating a trained field.

use crate::{array_to_tensor, tensor_to_array, Error, Result};
use fm_dist::Target;
use fm_ode::{solve, Method, SolveOptions, TimeGrid, VectorField};
use ndarray::Array2;
use rand::{rngs::StdRng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How to sample; `Default` is the seed's 10,000 samples by 100 Euler steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleConfig {
    pub n_samples: usize,
    pub steps: usize,
    #[serde(with = "method_name")]
    pub method: Method,
    /// Seeds the source draws.
    pub seed: u64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self { n_samples: 10_000, steps: 100, method: Method::Euler, seed: 1 }
    }
}

mod method_name {
    use fm_ode::Method;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.name())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Draws `cfg.n_samples` source points and carries them through `field` from t = 0 to 1.
pub fn sample(field: &(impl VectorField + HasDevice), source: &dyn Target, cfg: &SampleConfig) -> Result<Array2<f64>> {
    if cfg.n_samples == 0 {
        return Err(Error::Config("the number of samples must be at least 1".into()));
    }
    let grid = TimeGrid::uniform(0.0, 1.0, cfg.steps)?;
    let x0 = source.sample(cfg.n_samples, &mut StdRng::seed_from_u64(cfg.seed));
    let x0 = array_to_tensor(x0.view(), field.device())?;
    let sol = solve(field, &x0, &grid, cfg.method, SolveOptions::default())?;
    tensor_to_array(&sol.x)
}

/// Where a field's tensors live.
pub trait HasDevice {
    fn device(&self) -> tch::Device;
}

impl HasDevice for fm_model::Mlp {
    fn device(&self) -> tch::Device {
        fm_model::Mlp::device(self)
    }
}
