//! Target distributions for flow matching, and the metrics that judge samples.
//!
//! What a distribution offers is split by capability: a [`Target`] samples (and has its
//! normalised density and classes where it has them); a [`Density`] is a density alone, possibly
//! unnormalised with its `log Z` where known, which is all that importance weights
//! ([`importance`]) and energy-based training need. The Boltzmann benchmarks ([`energy`]:
//! GMM-40, ManyWell, the funnel) offer both.
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
//!
//! Part of `fm`; the user guide, a book with tutorials, how-tos and measured results, is
//! [docs/SUMMARY.md](https://github.com/fm-rs/flow-matching/blob/main/docs/SUMMARY.md)
//! in the repository (`mdbook serve docs` renders it).

#![warn(missing_docs)]

pub mod affine;
pub mod baselines;
pub mod density;
pub mod empirical;
pub mod energy;
pub mod files;
pub mod gmm;
pub mod importance;
pub mod io;
pub mod linalg;
pub mod metrics;
pub mod normal;
pub mod registry;
pub mod spec;
pub mod threads;
pub mod toy;

pub use density::{density_of, Density, DensityTarget};
pub use empirical::PointCloud;
pub use energy::{Funnel, ManyWell};
pub use gmm::GaussianMixture;
pub use normal::StandardNormal;
pub use registry::{list_targets, parse_source, parse_target, Scheme};
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
    /// Whether [`Target::sample`] draws from it (the default). A target known by its energy
    /// alone ([`DensityTarget`]) has no sampler: energy-weighted objectives train towards it and
    /// importance weights judge what reaches it, never samples of its own.
    fn has_sampler(&self) -> bool {
        true
    }
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
    /// Its own unnormalised density with its normalising constant, where it is known by one (a
    /// Boltzmann target's `p̃ = exp(−E)`, as ManyWell's); `None` (the default) where its
    /// normalised [`Target::log_prob`] is its density. [`density_of`] gives either.
    fn density(&self) -> Option<&dyn Density> {
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
    /// How many classes its samples are labelled with (0: none). A mixture's classes are its
    /// components in order; a curve-shaped target's its moons, rings, spirals, blades or squares.
    fn classes(&self) -> usize {
        self.as_mixture().map_or(0, GaussianMixture::n_components)
    }
    /// The width of the continuous condition each sample carries (0: none; only a file's
    /// points carry one, see [`PointCloud`]).
    fn condition_dim(&self) -> usize {
        0
    }
    /// `n` samples with their class labels (when [`Target::classes`] > 0) and condition values
    /// (when [`Target::condition_dim`] > 0). The points are those [`Target::sample`] draws from
    /// the same generator state.
    fn sample_conditioned(&self, n: usize, rng: &mut dyn RngCore) -> Conditioned {
        Conditioned { points: self.sample(n, rng), labels: None, values: None }
    }
    /// The share `p(c)` of each class (empty without classes): a mixture's weights, equal shares
    /// for the built-in curve-shaped targets, a labelled file's class counts over its rows.
    fn class_weights(&self) -> Vec<f64> {
        self.as_mixture().map_or_else(Vec::new, |m| m.weights().to_vec())
    }
    /// `log p(x | c)` of each row of `x`: the density of class `c` alone (a mixture's component
    /// `c`, a checkerboard's square `c`). [`Error::NoDensity`] where there is none.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a class out of range; [`Error::Dim`] for `x` of another width.
    fn class_log_prob(&self, x: ArrayView2<f64>, class: usize) -> Result<Array1<f64>> {
        let gmm = self.as_mixture().ok_or_else(|| Error::NoDensity(format!("a class of {}", self.name())))?;
        check_class(class, gmm.n_components())?;
        Ok(gmm.component_log_joint(x)?.column(class).mapv(|v| v - gmm.weights()[class].ln()))
    }
    /// The most probable class of each row of `x`, `argmax_c p(c) p(x | c)` (`None` where every
    /// class has density 0): what a sample's class purity is judged by.
    ///
    /// # Errors
    /// As [`Target::class_log_prob`].
    fn most_probable_class(&self, x: ArrayView2<f64>) -> Result<Vec<Option<usize>>> {
        let weights = self.class_weights();
        let mut best = vec![(f64::NEG_INFINITY, None); x.nrows()];
        for (c, w) in weights.iter().enumerate() {
            for (b, lp) in best.iter_mut().zip(self.class_log_prob(x, c)?) {
                let score = w.ln() + lp;
                if score > b.0 {
                    *b = (score, Some(c));
                }
            }
        }
        Ok(best.into_iter().map(|b| b.1).collect())
    }
}

/// Samples with what they are conditioned on ([`Target::sample_conditioned`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Conditioned {
    /// The points, `n × dim`.
    pub points: Array2<f64>,
    /// Each point's class, in `0..classes` (`None`: the target has no classes).
    pub labels: Option<Vec<usize>>,
    /// Each point's condition vector, `n × condition_dim` (`None`: it has none).
    pub values: Option<Array2<f64>>,
}

/// Checks that `class` is one of `classes`.
///
/// # Errors
/// [`Error::Invalid`] naming the valid range.
pub fn check_class(class: usize, classes: usize) -> Result<()> {
    match classes {
        0 => Err(Error::Invalid(format!("class {class}: the distribution has no classes"))),
        _ if class >= classes => Err(Error::Invalid(format!("class {class} is out of range: the distribution has {classes} classes, 0 to {}", classes - 1))),
        _ => Ok(()),
    }
}

/// Checks that `x` has `dim` columns.
pub(crate) fn check_dim(x: &ArrayView2<f64>, dim: usize) -> Result<()> {
    if x.ncols() != dim {
        return Err(Error::Dim { expected: dim, got: x.ncols() });
    }
    Ok(())
}
