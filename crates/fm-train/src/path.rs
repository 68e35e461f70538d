//! Probability paths: how a source sample `x0` and a target sample `x1` are joined at
//! time `t`, and the velocity the network learns to predict there.

use crate::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbabilityPath {
    /// The straight line of the seed, rectified flow and I-CFM with σ = 0:
    /// `x_t = (1 − t) x0 + t x1`, `u_t = x1 − x0`.
    #[default]
    Linear,
}

impl ProbabilityPath {
    /// `(x_t, u_t)` for batches `x0, x1: [n, d]` and times `t: [n, 1]`.
    pub fn interpolate(self, x0: &Tensor, x1: &Tensor, t: &Tensor) -> Result<(Tensor, Tensor)> {
        match self {
            ProbabilityPath::Linear => {
                let u = x1.f_sub(x0)?;
                let xt = x0.f_add(&t.f_mul(&u)?)?;
                Ok((xt, u))
            }
        }
    }
}
