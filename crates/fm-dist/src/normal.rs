//! The standard normal `N(0, I)`, the default source of flow matching.

use crate::{check_dim, Error, Result, Target};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng, RngCore};

/// `N(0, I_d)`.
#[derive(Debug, Clone, Copy)]
pub struct StandardNormal {
    dim: usize,
}

impl StandardNormal {
    /// The standard normal in `dim` dimensions.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `dim` is 0.
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::Invalid("standard normal needs dimension >= 1".into()));
        }
        Ok(Self { dim })
    }
}

impl Target for StandardNormal {
    fn name(&self) -> String {
        format!("N(0, I{})", self.dim)
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
        Array2::from_shape_simple_fn((n, self.dim), || rng.sample(rand_distr::StandardNormal))
    }
    fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        check_dim(&x, self.dim)?;
        let c = -0.5 * self.dim as f64 * (2.0 * std::f64::consts::PI).ln();
        Ok(x.map_axis(Axis(1), |r| c - 0.5 * r.dot(&r)))
    }
    fn score(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        check_dim(&x, self.dim)?;
        Ok(-x.to_owned())
    }
    fn as_gaussian(&self) -> Option<(Array1<f64>, Array2<f64>)> {
        Some((Array1::zeros(self.dim), Array2::eye(self.dim)))
    }
}
