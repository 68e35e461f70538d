//! Target distributions for flow matching, and the metrics that judge samples.
//!
//! Pure Rust (`ndarray` + `rand`), no libtorch: usable alone by any crate that needs
//! to sample a target, evaluate its density or compare two sample sets.
//!
//! ```
//! use fm_dist::{GaussianMixture, Target, metrics};
//! use rand::SeedableRng;
//!
//! let gmm = GaussianMixture::seed(); // the seed experiment's 3-component 2-D mixture
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let x = gmm.sample(1000, &mut rng);
//! assert_eq!(x.dim(), (1000, 2));
//!
//! let shares = metrics::mixture_shares(&gmm, x.view()).unwrap();
//! assert!((shares[1] - 0.5).abs() < 0.06);
//! let mean_lp = metrics::mean_log_prob(&gmm, x.view()).unwrap();
//! assert!(mean_lp < 0.0);
//! ```

#![warn(missing_docs)]

pub mod affine;
pub mod empirical;
pub mod files;
pub mod gmm;
pub mod io;
pub mod linalg;
pub mod metrics;
pub mod normal;
pub mod registry;
pub mod spec;
pub mod toy;

pub use empirical::PointCloud;
pub use gmm::GaussianMixture;
pub use normal::StandardNormal;
pub use registry::{list_targets, parse_source, parse_target};
pub use spec::{ComponentSpec, MixtureSpec, SpecFormat};
pub use toy::{Checkerboard, Circles, EightGaussians, Moons, Pinwheel, SwissRoll, TwentyFiveGaussians, TwoSpirals};

use ndarray::{Array1, Array2, ArrayView2};
use rand::RngCore;

/// Errors of this crate: every invalid input is a value, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Parameters or data that describe no valid distribution: a bad weight, mean or
    /// covariance, a dimension of 0, a malformed spec, an unknown target name. The message
    /// says which.
    #[error("invalid distribution: {0}")]
    Invalid(String),
    /// An array with the wrong number of columns.
    #[error("dimension mismatch: expected {expected} columns, got {got}")]
    Dim {
        /// The columns needed: the distribution's dimension (for a two-set metric, the
        /// first set's width).
        expected: usize,
        /// The columns the array has.
        got: usize,
    },
    /// The named distribution has no analytic density, so [`Target::log_prob`] (or
    /// [`Target::score`]) cannot answer.
    #[error("{0} has no analytic density")]
    NoDensity(String),
    /// A metric cannot be computed from its inputs (empty or non-finite sample sets, shapes
    /// that do not match, bad settings); the message says why.
    #[error("{0}")]
    Metric(String),
    /// A file that cannot be used: an unsupported extension, content that does not parse or
    /// holds invalid data, or a write that failed.
    #[error("{path}: {msg}")]
    File {
        /// The file, as given.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A file that cannot be read (missing, no permission, …). The message names the file; the
    /// OS error is the `source` (an error chain, or `{:#}` of `anyhow`, prints both).
    #[error("cannot read {path}")]
    Io {
        /// The file, as given.
        path: String,
        /// The operating system's error.
        #[source]
        cause: std::io::Error,
    },
}

/// The result of this crate's fallible functions, with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A distribution flow matching can start from or carry samples to.
///
/// Object safe, so a target can be chosen at run time (`Box<dyn Target>`).
pub trait Target: Send + Sync {
    /// Short human-readable name (used in titles and reports).
    fn name(&self) -> String;
    /// Dimension of the samples.
    fn dim(&self) -> usize;
    /// `n` independent samples as an `n × dim` array.
    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64>;
    /// Log-density of each row of `x`; [`Error::NoDensity`] where there is none.
    fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>>;
    /// Whether [`Target::log_prob`] is available.
    fn has_density(&self) -> bool {
        true
    }
    /// The score `∇ₓ log p(x)` of each row of `x` (an `n × dim` array); [`Error::NoDensity`]
    /// where the target has no differentiable density.
    fn score(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        let _ = x;
        Err(Error::NoDensity(self.name()))
    }
    /// What the data are and how they were read, for a target read from a file (the row count,
    /// the header, a dropped index column); `None` for the built-in distributions.
    fn describe_data(&self) -> Option<String> {
        None
    }
    /// The Gaussian mixture this target is, if it is one (for component shares).
    fn as_mixture(&self) -> Option<&GaussianMixture> {
        None
    }
    /// Mean (`[dim]`) and covariance (`[dim, dim]`) when this distribution is one Gaussian (the
    /// standard normal, a one-component mixture): what a closed-form flow from it needs.
    fn as_gaussian(&self) -> Option<(Array1<f64>, Array2<f64>)> {
        None
    }
}

/// Checks that `x` has `dim` columns.
pub(crate) fn check_dim(x: &ArrayView2<f64>, dim: usize) -> Result<()> {
    if x.ncols() != dim {
        return Err(Error::Dim { expected: dim, got: x.ncols() });
    }
    Ok(())
}
