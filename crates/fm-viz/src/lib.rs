//! Figures for flow matching, drawn with plotters from plain arrays (no tensors here).
//!
//! ```no_run
//! use fm_dist::{GaussianMixture, Target};
//! use fm_viz::{compare, CompareFigure};
//! use rand::SeedableRng;
//!
//! let gmm = GaussianMixture::seed();
//! let samples = gmm.sample(10_000, &mut rand::rngs::StdRng::seed_from_u64(0));
//! // The seed's figure: the target's density beside the samples, on x ∈ [-6, 8], y ∈ [-5, 6].
//! compare(std::path::Path::new("compare.png"), &gmm, samples.view(), &CompareFigure::default()).unwrap();
//! ```

mod colour;
mod compare;
mod font;

pub use compare::{compare, CompareFigure};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Font(String),
    #[error("invalid figure: {0}")]
    Invalid(String),
    #[error(transparent)]
    Dist(#[from] fm_dist::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
