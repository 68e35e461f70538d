//! Figures for flow matching, drawn with plotters from plain arrays (no tensors here).
//!
//! | function | draws |
//! | --- | --- |
//! | [`compare`] | the target's density (filled levels, colour bar) beside generated samples |
//! | [`trajectories`] | particles' paths `[T, N, D]`, coloured by time, over the target |
//! | [`field`] | a velocity field as arrows coloured by speed, one panel per time ([`field_beside`]: two fields, e.g. a model's above the exact one) |
//! | [`density`] | the model's log-density beside the target's, on one colour scale |
//! | [`loss`] | training curves: loss over steps, and other named series (W2, KL, …) |
//! | [`animation`] | an animated GIF of samples flowing from the source to the target |
//!
//! Conventions shared by all figures:
//! - Each takes plain arrays (or closures the caller implements with its model) and a
//!   settings struct with `Default`; each is titled, its axes named, with a colour bar where
//!   colour encodes a value.
//! - Output is PNG, or SVG when the path ends in `.svg` (GIF for [`animation`]), written
//!   atomically: on any error nothing is left behind and an existing file is untouched.
//! - Axes fit the data by default (with a 5% margin, covering samples and target), or are set
//!   with `x_range`/`y_range: Some(..)`. [`CompareFigure`]'s `Default` is the exception: it
//!   keeps the seed's fixed axes so that the seed's figure stays reproducible
//!   ([`CompareFigure::fitted`] fits them).
//! - Data of more than two dimensions is drawn on the pair of coordinates `coords: (i, j)`
//!   (0-based) of the settings; axes are named 1-based like the seed's ("x1", "x2") and the
//!   title says which pair ("coordinates 3 and 7 of 16" for `(2, 6)` of 16-D data).
//! - Invalid input (empty or mismatched arrays, non-finite states, a coordinate pair out of
//!   range, a zero size, …) is an [`Error`], never a panic; so is an unusable `FM_FONT`.
//! - Text is set in DejaVu Sans, built in (no installed fonts needed); `FM_FONT=/path/to/font.ttf`
//!   picks another.
//!
//! ```no_run
//! use fm_dist::{GaussianMixture, StandardNormal, Target};
//! use fm_viz::{compare, trajectories, CompareFigure, TrajectoryFigure};
//! use ndarray::Array3;
//! use rand::SeedableRng;
//!
//! let gmm = GaussianMixture::seed();
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let samples = gmm.sample(10_000, &mut rng);
//! // The seed's figure: the target's density beside the samples, on x ∈ [-6, 8], y ∈ [-5, 6].
//! compare(std::path::Path::new("compare.png"), &gmm, samples.view(), &CompareFigure::default()).unwrap();
//!
//! // Straight paths from N(0, I) to the mixture, as SVG.
//! let (x0, x1) = (StandardNormal::new(2).unwrap().sample(300, &mut rng), gmm.sample(300, &mut rng));
//! let times: Vec<f64> = (0..=20).map(|k| k as f64 / 20.0).collect();
//! let states = Array3::from_shape_fn((21, 300, 2), |(k, p, c)| (1.0 - times[k]) * x0[[p, c]] + times[k] * x1[[p, c]]);
//! trajectories(std::path::Path::new("paths.svg"), states.view(), &times, Some(&gmm), &TrajectoryFigure::default()).unwrap();
//! ```
//!
//! `cargo run -p fm-viz --example gallery [DIR]` renders every figure with realistic inputs.
//!
//! Part of `fm`; the user guide, a book with tutorials, how-tos and measured results, is
//! [docs/SUMMARY.md](https://github.com/fm-rs/flow-matching/blob/main/docs/SUMMARY.md)
//! in the repository (`mdbook serve docs` renders it).

#![warn(missing_docs)]

mod animation;
mod colour;
mod compare;
mod density;
mod field;
mod figure;
mod font;
mod guidance;
mod histogram;
mod loss;
mod trajectories;

pub use animation::{animation, AnimationFigure};
pub use compare::{compare, CompareFigure};
pub use density::{density, DensityFigure};
pub use field::{field, field_beside, FieldFigure};
pub use guidance::{guidance, GuidanceFigure};
pub use histogram::{histograms, HistogramFigure, HistogramSeries};
pub use loss::{loss, LossFigure};
pub use trajectories::{trajectories, TrajectoryFigure};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The figure font cannot be registered: the file `FM_FONT` names cannot be read or is
    /// not a usable TrueType font.
    #[error("{0}")]
    Font(String),
    /// Input or settings no figure can be drawn from: empty or mismatched arrays, non-finite
    /// values, a coordinate pair out of range, a size out of bounds, …; the message says which.
    #[error("invalid figure: {0}")]
    Invalid(String),
    /// A closure the caller passed (a velocity field, a log-density) failed.
    #[error("the figure's input function failed: {0}")]
    Callback(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An error of `fm-dist`: a target's log-density failed, or the figure's file could not
    /// be written ([`fm_dist::Error::File`]; an existing file is then untouched).
    #[error(transparent)]
    Dist(#[from] fm_dist::Error),
}

/// The result of this crate's figure functions, with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
