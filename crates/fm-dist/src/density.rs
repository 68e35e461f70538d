//! A distribution known by its density, normalised or not: the capability that importance
//! weights, effective sample sizes, normalising constants and energy-weighted training need, and
//! all they need (no sampler).
//!
//! A [`crate::Target`] offers a sampler, and where it has one its normalised log-density; a
//! Boltzmann target `p(x) ∝ exp(−E(x)/T)` is known by `log p̃ = −E/T` alone, its normalising
//! constant `Z = ∫ p̃` often unknown. [`Density`] is that second capability on its own:
//! [`density_of`] gives it for any target (its own unnormalised form where it has one, such as
//! ManyWell's with its published `log Z`, else its normalised density with `log Z = 0`).

use crate::{Result, Target};
use ndarray::{Array1, Array2, ArrayView2};

/// A (possibly unnormalised) density `p̃` on `R^dim`: `p(x) = p̃(x) / Z`.
///
/// Object safe (`Box<dyn Density>`); a value may offer nothing else (no sampler, no classes).
pub trait Density: Send + Sync {
    /// Short human-readable name (titles, reports).
    fn density_name(&self) -> String;
    /// Dimension of the points.
    fn density_dim(&self) -> usize;
    /// `log p̃(x)` of each row of `x` (`n × dim`), in nats: the negative energy at temperature 1.
    /// May be `−∞` where `p̃` is 0.
    ///
    /// # Errors
    /// Rows of another width.
    fn log_density(&self, x: ArrayView2<f64>) -> Result<Array1<f64>>;
    /// `log Z = log ∫ p̃(x) dx` where it is known (0 for a normalised density), `None` where it
    /// is what is to be estimated.
    fn log_normalizer(&self) -> Option<f64>;
    /// `∇ₓ log p̃(x)` of each row (`n × dim`): what gradient-based samplers (MALA) step along.
    ///
    /// # Errors
    /// Rows of another width; [`crate::Error::NoDensity`] where the density is not differentiable.
    fn grad_log_density(&self, x: ArrayView2<f64>) -> Result<Array2<f64>>;
    /// Each coordinate's standard deviation under `p`, where known: the scale energy-only
    /// training standardises by, so that its source `N(0, I)` in standard units covers the
    /// distribution (DEM's `data_normalization_factor` plays this part). `None`: unit scale.
    fn std_dev(&self) -> Option<Vec<f64>> {
        None
    }
}

/// A target known by its density alone, such as a user's energy: it offers [`Target::density`]
/// (the density itself, with its `log Z` where known) and nothing else. It has no sampler
/// ([`Target::has_sampler`] is false and [`Target::sample`] gives no rows, so that a metric
/// handed its "samples" refuses an empty set rather than judging against anything) and no
/// normalised density ([`Target::has_density`] is false unless `log Z` is known). What trains
/// towards it is an energy-weighted objective; what judges the result is importance weights.
pub struct DensityTarget(Box<dyn Density>);

impl DensityTarget {
    /// `density` as a target.
    pub fn new(density: Box<dyn Density>) -> Self {
        Self(density)
    }
}

impl Target for DensityTarget {
    fn name(&self) -> String {
        self.0.density_name()
    }
    fn dim(&self) -> usize {
        self.0.density_dim()
    }
    fn sample(&self, _n: usize, _rng: &mut dyn rand::RngCore) -> Array2<f64> {
        Array2::zeros((0, self.dim()))
    }
    fn has_sampler(&self) -> bool {
        false
    }
    fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        // Normalised only where log Z is known.
        match self.0.log_normalizer() {
            Some(log_z) => Ok(self.0.log_density(x)? - log_z),
            None => Err(crate::Error::NoDensity(format!("{} (its normalising constant is unknown)", self.name()))),
        }
    }
    fn has_density(&self) -> bool {
        self.0.log_normalizer().is_some()
    }
    fn score(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.0.grad_log_density(x)
    }
    fn density(&self) -> Option<&dyn Density> {
        Some(self.0.as_ref())
    }
}

/// A target's normalised density as a [`Density`] (`log Z = 0`).
pub struct Normalised<'a>(&'a dyn Target);

impl Density for Normalised<'_> {
    fn density_name(&self) -> String {
        self.0.name()
    }
    fn density_dim(&self) -> usize {
        self.0.dim()
    }
    fn log_density(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        self.0.log_prob(x)
    }
    fn log_normalizer(&self) -> Option<f64> {
        Some(0.0)
    }
    fn grad_log_density(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.0.score(x)
    }
    fn std_dev(&self) -> Option<Vec<f64>> {
        self.0.as_mixture().map(crate::GaussianMixture::std_dev)
    }
}

/// The density `target` offers: its own [`Target::density`] (an unnormalised form, with its
/// `log Z`), else its normalised density (`log Z = 0`); `None` for a target known by samples
/// only. Use it as a `&dyn Density` (it dereferences to one).
pub fn density_of(target: &dyn Target) -> Option<DensityOf<'_>> {
    match target.density() {
        Some(own) => Some(DensityOf::Own(own)),
        None if target.has_density() => Some(DensityOf::Normalised(Normalised(target))),
        None => None,
    }
}

/// What [`density_of`] returns: a target's own density, or its normalised one.
pub enum DensityOf<'a> {
    /// The target's own (unnormalised) density.
    Own(&'a dyn Density),
    /// The target's normalised density.
    Normalised(Normalised<'a>),
}

impl<'a> std::ops::Deref for DensityOf<'a> {
    type Target = dyn Density + 'a;
    fn deref(&self) -> &Self::Target {
        match self {
            DensityOf::Own(d) => *d,
            DensityOf::Normalised(n) => n,
        }
    }
}
