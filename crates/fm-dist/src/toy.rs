//! The 2-D benchmark targets of the flow-matching literature.
//!
//! Parameters follow TorchCFM (`sample_8gaussians`) and the FFJORD toy datasets
//! (`lib/toy_data.py`, which TorchCFM's examples reuse), so figures and metrics are
//! comparable with published ones. Where those scripts draw deterministic grids
//! (sklearn's `make_moons` / `make_circles` space their angles evenly) or fixed class
//! counts (FFJORD's pinwheel), these samplers draw the same distribution i.i.d.:
//! every row is an independent sample, as [`Target::sample`] promises.
//!
//! The two mixtures and the checkerboard have analytic densities; the curve-shaped
//! targets (moons, circles, swiss roll, spirals, pinwheel) do not, and answer
//! [`Error::NoDensity`].

use crate::{check_dim, Error, GaussianMixture, Result, Target};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng, RngCore};
use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// One standard normal draw.
fn normal(rng: &mut dyn RngCore) -> f64 {
    rng.sample(rand_distr::StandardNormal)
}

/// One uniform draw in `[0, 1)`.
fn uniform(rng: &mut dyn RngCore) -> f64 {
    rng.random::<f64>()
}

/// `n × 2` array whose rows are successive calls of `point`, with the class each call returns.
fn fill(n: usize, rng: &mut dyn RngCore, mut point: impl FnMut(&mut dyn RngCore) -> ([f64; 2], usize)) -> (Array2<f64>, Vec<usize>) {
    let mut out = Array2::<f64>::zeros((n, 2));
    let mut labels = Vec::with_capacity(n);
    for mut row in out.axis_iter_mut(Axis(0)) {
        let ([x, y], class) = point(rng);
        row[0] = x;
        row[1] = y;
        labels.push(class);
    }
    (out, labels)
}

fn check_positive(what: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::Invalid(format!("{what} must be a finite positive number, got {v}")));
    }
    Ok(())
}

/// Isotropic equal-weight mixture on the given centres.
fn isotropic_mixture(centres: &[[f64; 2]], variance: f64) -> Result<GaussianMixture> {
    let k = centres.len();
    let means = Array2::from_shape_fn((k, 2), |(i, j)| centres[i][j]);
    let cov = Array2::from_diag(&Array1::from_elem(2, variance));
    GaussianMixture::new(vec![1.0 / k as f64; k], means, vec![cov; k])
}

/// `mixture()`, `Default`, `From` and the `Target` impl of a named wrapper around a
/// [`GaussianMixture`] held in its `gmm` field (built by its `new_default`).
macro_rules! mixture_target {
    ($ty:ty, $name:literal) => {
        impl $ty {
            /// The underlying mixture (for [`crate::metrics::mixture_shares`] and friends).
            pub fn mixture(&self) -> &GaussianMixture {
                &self.gmm
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                Self::new_default()
            }
        }

        impl From<$ty> for GaussianMixture {
            fn from(t: $ty) -> Self {
                t.gmm
            }
        }

        impl Target for $ty {
            fn name(&self) -> String {
                $name.into()
            }
            fn dim(&self) -> usize {
                2
            }
            fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
                self.gmm.sample(n, rng)
            }
            fn sample_conditioned(&self, n: usize, rng: &mut dyn RngCore) -> crate::Conditioned {
                self.gmm.sample_conditioned(n, rng)
            }
            fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
                self.gmm.log_prob(x)
            }
            fn score(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
                self.gmm.score(x)
            }
            fn as_mixture(&self) -> Option<&GaussianMixture> {
                Some(&self.gmm)
            }
        }
    };
}

// ---------------------------------------------------------------------------------
// 8 Gaussians
// ---------------------------------------------------------------------------------

/// Eight equal-weight Gaussians on a circle: the usual source/target pair of I-CFM and
/// OT-CFM (Tong et al. 2023) experiments.
///
/// Defaults are TorchCFM's `sample_8gaussians`: `eight_normal_sample(n, 2, scale=5,
/// var=0.1)`. That function passes `sqrt(var) · I` to torch's `MultivariateNormal` as
/// the *covariance*, so its samples have covariance `√0.1 · I ≈ 0.316 · I` (standard
/// deviation `0.1^¼ ≈ 0.562`), not `0.1 · I`; we reproduce what it samples, so that
/// results are comparable with published ones. Use [`EightGaussians::new`] for others.
#[derive(Debug, Clone)]
pub struct EightGaussians {
    gmm: GaussianMixture,
    radius: f64,
    variance: f64,
}

impl EightGaussians {
    /// Radius of the circle of centres (TorchCFM's `scale`).
    pub const RADIUS: f64 = 5.0;
    /// Per-coordinate variance of each component: TorchCFM's effective `sqrt(0.1)`.
    pub const VARIANCE: f64 = 0.316_227_766_016_837_94;

    /// TorchCFM's 8 Gaussians (radius 5, covariance `√0.1 · I`).
    pub fn new_default() -> Self {
        Self::new(Self::RADIUS, Self::VARIANCE).expect("the default 8 Gaussians are valid")
    }

    /// Centres at angles `kπ/4` on a circle of `radius`, covariance `variance · I`.
    ///
    /// # Errors
    /// [`Error::Invalid`] unless `radius` and `variance` are finite and positive.
    pub fn new(radius: f64, variance: f64) -> Result<Self> {
        check_positive("8 Gaussians radius", radius)?;
        check_positive("8 Gaussians variance", variance)?;
        // TorchCFM's order: (±1, 0), (0, ±1), then the diagonals.
        let d = FRAC_1_SQRT_2;
        let unit = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [d, d], [d, -d], [-d, d], [-d, -d]];
        let centres: Vec<[f64; 2]> = unit.iter().map(|c| [radius * c[0], radius * c[1]]).collect();
        Ok(Self { gmm: isotropic_mixture(&centres, variance)?, radius, variance })
    }

    /// Radius of the circle of centres.
    pub fn radius(&self) -> f64 {
        self.radius
    }
    /// Per-coordinate variance of each component (covariance `variance · I`).
    pub fn variance(&self) -> f64 {
        self.variance
    }
}

mixture_target!(EightGaussians, "8gaussians");

// ---------------------------------------------------------------------------------
// 25 Gaussians
// ---------------------------------------------------------------------------------

/// 25 equal-weight Gaussians on a 5 × 5 grid.
///
/// FFJORD's `toy_data.py` has no 25-Gaussian set; the dataset comes from the WGAN-GP
/// toy experiments (Gulrajani et al. 2017: centres `2·{−2,…,2}²`, std 0.05, then all
/// divided by 2.828). We keep that grid unscaled, centres at `{−4, −2, 0, 2, 4}²`
/// (spacing 2), with isotropic variance 0.01 (std 0.1), so the modes are well
/// separated (20 standard deviations apart) yet not needle-thin.
#[derive(Debug, Clone)]
pub struct TwentyFiveGaussians {
    gmm: GaussianMixture,
    spacing: f64,
    std: f64,
}

impl TwentyFiveGaussians {
    /// Distance between neighbouring centres.
    pub const SPACING: f64 = 2.0;
    /// Per-coordinate standard deviation of each component.
    pub const STD: f64 = 0.1;

    /// Grid `{−4, −2, 0, 2, 4}²`, std 0.1.
    pub fn new_default() -> Self {
        Self::new(Self::SPACING, Self::STD).expect("the default 25 Gaussians are valid")
    }

    /// Centres at `spacing · {−2, …, 2}²`, covariance `std² · I`.
    ///
    /// # Errors
    /// [`Error::Invalid`] unless `spacing` and `std` are finite and positive.
    pub fn new(spacing: f64, std: f64) -> Result<Self> {
        check_positive("25 Gaussians spacing", spacing)?;
        check_positive("25 Gaussians std", std)?;
        let mut centres = Vec::with_capacity(25);
        for i in -2..=2 {
            for j in -2..=2 {
                centres.push([spacing * i as f64, spacing * j as f64]);
            }
        }
        Ok(Self { gmm: isotropic_mixture(&centres, std * std)?, spacing, std })
    }

    /// Distance between neighbouring centres.
    pub fn spacing(&self) -> f64 {
        self.spacing
    }
    /// Per-coordinate standard deviation of each component.
    pub fn std(&self) -> f64 {
        self.std
    }
}

mixture_target!(TwentyFiveGaussians, "25gaussians");

// ---------------------------------------------------------------------------------
// Density-free targets
// ---------------------------------------------------------------------------------

/// `Target` impl for a 2-D target with no analytic density, whose samples come in `$classes`
/// classes (0: unlabelled) as its `point` says.
macro_rules! density_free_target {
    ($ty:ty, $name:literal, $classes:expr) => {
        impl Target for $ty {
            fn name(&self) -> String {
                $name.into()
            }
            fn dim(&self) -> usize {
                2
            }
            fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
                fill(n, rng, |r| self.point(r)).0
            }
            fn log_prob(&self, _x: ArrayView2<f64>) -> Result<Array1<f64>> {
                Err(Error::NoDensity($name.into()))
            }
            fn has_density(&self) -> bool {
                false
            }
            fn classes(&self) -> usize {
                $classes
            }
            fn class_weights(&self) -> Vec<f64> {
                vec![1.0 / $classes as f64; $classes]
            }
            fn sample_conditioned(&self, n: usize, rng: &mut dyn RngCore) -> crate::Conditioned {
                let (points, labels) = fill(n, rng, |r| self.point(r));
                crate::Conditioned { points, labels: ($classes > 0).then_some(labels), values: None }
            }
        }
    };
}

/// Two interleaving half circles: FFJORD's `moons`, i.e. sklearn's
/// `make_moons(noise=0.1)` then `x · 2 + (−1, −0.2)`.
///
/// Before rescaling, a moon is picked with probability ½ and `t ~ U[0, π]`: the upper
/// moon is `(cos t, sin t)`, the lower one `(1 − cos t, 0.5 − sin t)`; then
/// `N(0, 0.1² I)` noise. After rescaling the noise std is 0.2 and the mean is `(0, 0.3)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Moons;

impl Moons {
    /// sklearn's `noise` (before the ×2 rescale).
    pub const NOISE: f64 = 0.1;
    /// Factor applied after the noise (FFJORD's `× 2`).
    pub const SCALE: f64 = 2.0;
    /// Offset added after scaling (FFJORD's `+ (−1, −0.2)`).
    pub const SHIFT: [f64; 2] = [-1.0, -0.2];

    /// A point and its moon (0 the upper, 1 the lower).
    fn point(&self, rng: &mut dyn RngCore) -> ([f64; 2], usize) {
        let t = PI * uniform(rng);
        let upper = uniform(rng) < 0.5;
        let (x, y) = if upper { (t.cos(), t.sin()) } else { (1.0 - t.cos(), 0.5 - t.sin()) };
        let x = x + Self::NOISE * normal(rng);
        let y = y + Self::NOISE * normal(rng);
        ([Self::SCALE * x + Self::SHIFT[0], Self::SCALE * y + Self::SHIFT[1]], usize::from(!upper))
    }
}
density_free_target!(Moons, "moons", 2);

/// Two concentric rings: FFJORD's `circles`, i.e. sklearn's
/// `make_circles(factor=0.5, noise=0.08)` then `× 3`.
///
/// A ring is picked with probability ½ and the angle is uniform: outer radius 3, inner
/// radius 1.5, then `N(0, 0.24² I)` noise (sklearn's 0.08, times 3).
#[derive(Debug, Clone, Copy, Default)]
pub struct Circles;

impl Circles {
    /// Radius of the outer ring (sklearn's 1, times 3).
    pub const OUTER_RADIUS: f64 = 3.0;
    /// Radius of the inner ring (sklearn's `factor` 0.5, times 3).
    pub const INNER_RADIUS: f64 = 1.5;
    /// Noise std after the ×3 rescale.
    pub const NOISE: f64 = 0.24;

    /// A point and its ring (0 the outer, 1 the inner).
    fn point(&self, rng: &mut dyn RngCore) -> ([f64; 2], usize) {
        let outer = uniform(rng) < 0.5;
        let r = if outer { Self::OUTER_RADIUS } else { Self::INNER_RADIUS };
        let a = 2.0 * PI * uniform(rng);
        ([r * a.cos() + Self::NOISE * normal(rng), r * a.sin() + Self::NOISE * normal(rng)], usize::from(!outer))
    }
}
density_free_target!(Circles, "circles", 2);

/// FFJORD's `swissroll`: sklearn's `make_swiss_roll(noise=1.0)`, columns 0 and 2,
/// divided by 5.
///
/// `t = 1.5π (1 + 2u)`, `u ~ U[0, 1)`, so `t ∈ [1.5π, 4.5π)`; the point is
/// `(t cos t, t sin t) / 5` plus `N(0, 0.2² I)` (sklearn's noise 1, divided by 5).
#[derive(Debug, Clone, Copy, Default)]
pub struct SwissRoll;

impl SwissRoll {
    /// Standard deviation of the Gaussian noise added to each coordinate before the division
    /// (sklearn's `noise`).
    pub const NOISE: f64 = 1.0;
    /// Both coordinates are divided by this (FFJORD's `/ 5`).
    pub const DIVISOR: f64 = 5.0;

    /// A point (one roll: no classes).
    fn point(&self, rng: &mut dyn RngCore) -> ([f64; 2], usize) {
        let t = 1.5 * PI * (1.0 + 2.0 * uniform(rng));
        let x = t * t.cos() + Self::NOISE * normal(rng);
        let y = t * t.sin() + Self::NOISE * normal(rng);
        ([x / Self::DIVISOR, y / Self::DIVISOR], 0)
    }
}
density_free_target!(SwissRoll, "swissroll", 0);

/// FFJORD's `2spirals`: two point-symmetric spirals of 1.5 turns.
///
/// `s = √u · 3π` (540°), `u ~ U[0, 1)`; one spiral is `(−s cos s + 0.5 u₁, s sin s + 0.5 u₂)`
/// with `u₁, u₂ ~ U[0, 1)`, the other its negation (picked with probability ½); then
/// `/ 3` and `N(0, 0.1² I)` noise.
#[derive(Debug, Clone, Copy, Default)]
pub struct TwoSpirals;

impl TwoSpirals {
    /// Angle range of each spiral (540°).
    pub const MAX_ANGLE: f64 = 3.0 * PI;
    /// Width of the uniform jitter before the division.
    pub const JITTER: f64 = 0.5;
    /// Both coordinates are divided by this after the jitter (FFJORD's `/ 3`).
    pub const DIVISOR: f64 = 3.0;
    /// Standard deviation of the Gaussian noise added after the division.
    pub const NOISE: f64 = 0.1;

    /// A point and its spiral (0 the one drawn, 1 its negation).
    fn point(&self, rng: &mut dyn RngCore) -> ([f64; 2], usize) {
        let s = uniform(rng).sqrt() * Self::MAX_ANGLE;
        let x = -s.cos() * s + Self::JITTER * uniform(rng);
        let y = s.sin() * s + Self::JITTER * uniform(rng);
        let first = uniform(rng) < 0.5;
        let sign = if first { 1.0 } else { -1.0 };
        ([sign * x / Self::DIVISOR + Self::NOISE * normal(rng), sign * y / Self::DIVISOR + Self::NOISE * normal(rng)], usize::from(!first))
    }
}
density_free_target!(TwoSpirals, "2spirals", 2);

/// FFJORD's `pinwheel` (from Johnson et al.'s SVAE): 5 curved blades.
///
/// Blade `c` is uniform over 5 (FFJORD takes equal counts, then shuffles). Features
/// `f = (1 + 0.3 z₁, 0.1 z₂)` (radial std 0.3, tangential std 0.1) are rotated by
/// `2πc/5 + 0.25 · exp(f₀)` (rate 0.25) and scaled by 2:
/// `2 · (f₀ cos a + f₁ sin a, −f₀ sin a + f₁ cos a)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pinwheel;

impl Pinwheel {
    /// Number of blades (FFJORD's `num_classes`).
    pub const CLASSES: usize = 5;
    /// Standard deviation of the radial feature `f₀` around 1 (FFJORD's `radial_std`).
    pub const RADIAL_STD: f64 = 0.3;
    /// Standard deviation of the tangential feature `f₁` (FFJORD's `tangential_std`).
    pub const TANGENTIAL_STD: f64 = 0.1;
    /// How fast a blade curls: its rotation grows by `RATE · exp(f₀)` (FFJORD's `rate`).
    pub const RATE: f64 = 0.25;
    /// Factor applied to the rotated features (FFJORD's `2 ·`).
    pub const SCALE: f64 = 2.0;

    /// A point and its blade.
    fn point(&self, rng: &mut dyn RngCore) -> ([f64; 2], usize) {
        let c = ((uniform(rng) * Self::CLASSES as f64) as usize).min(Self::CLASSES - 1);
        let f0 = 1.0 + Self::RADIAL_STD * normal(rng);
        let f1 = Self::TANGENTIAL_STD * normal(rng);
        let a = 2.0 * PI * c as f64 / Self::CLASSES as f64 + Self::RATE * f0.exp();
        let (s, co) = a.sin_cos();
        ([Self::SCALE * (f0 * co + f1 * s), Self::SCALE * (-f0 * s + f1 * co)], c)
    }
}
density_free_target!(Pinwheel, "pinwheel", Pinwheel::CLASSES);

// ---------------------------------------------------------------------------------
// Checkerboard
// ---------------------------------------------------------------------------------

/// FFJORD's `checkerboard`: uniform on the 8 dark squares of a 4 × 4 board on `[−4, 4)²`.
///
/// Squares have side 2; with `u = x / 2`, the square holding `x` is dark when
/// `⌊u₀⌋ + ⌊u₁⌋` is even (FFJORD's `x₂ + ⌊x₁⌋ mod 2` construction). The occupied area
/// is 8 × 4 = 32, so the density is exactly `1/32` there and 0 elsewhere: `log_prob` is
/// `−ln 32` or `−inf` (NaN rows give NaN). Squares are half-open, like the sampler's
/// `[0, 1)` draws, which fixes the measure-zero edges.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checkerboard;

impl Checkerboard {
    /// Half the board's side: the board is `[−HALF_WIDTH, HALF_WIDTH)²`.
    pub const HALF_WIDTH: f64 = 4.0;
    /// Side of one square.
    pub const SQUARE: f64 = 2.0;
    /// Total area of the dark squares.
    pub const AREA: f64 = 32.0;

    /// Whether `(x, y)` lies on a dark square (where the density is `1/32`).
    pub fn contains(x: f64, y: f64) -> bool {
        Self::square(x, y).is_some()
    }

    /// The dark square holding `(x, y)`, numbered 0 to 7 row by row from the bottom left (its
    /// class), or `None` off the dark squares.
    pub fn square(x: f64, y: f64) -> Option<usize> {
        let inside = |v: f64| (-Self::HALF_WIDTH..Self::HALF_WIDTH).contains(&v);
        if !(inside(x) && inside(y)) {
            return None;
        }
        let (i, j) = ((x / Self::SQUARE).floor() as i64, (y / Self::SQUARE).floor() as i64);
        // Columns i and rows j run from −2 to 1; two dark squares per row.
        ((i + j).rem_euclid(2) == 0).then(|| ((j + 2) * 2 + (i + 2) / 2) as usize)
    }

    /// Number of dark squares (its classes).
    pub const SQUARES: usize = 8;
}

impl Target for Checkerboard {
    fn name(&self) -> String {
        "checkerboard".into()
    }
    fn dim(&self) -> usize {
        2
    }
    /// FFJORD: x1 ~ U[−2, 2); x2 ~ U[0, 1) or U[−2, −1), shifted up by ⌊x1⌋ mod 2; all × 2.
    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
        self.sample_conditioned(n, rng).points
    }
    /// Labelled by the square each point lies on ([`Checkerboard::square`]'s numbering, from the
    /// draw's own integer parts: doubling is exact, so they are the point's square).
    fn sample_conditioned(&self, n: usize, rng: &mut dyn RngCore) -> crate::Conditioned {
        let (points, labels) = fill(n, rng, |r| {
            let x1 = 4.0 * uniform(r) - 2.0;
            let lower = if uniform(r) < 0.5 { 2.0 } else { 0.0 };
            let x2 = uniform(r) - lower + x1.floor().rem_euclid(2.0);
            // Column x1.floor() and row x2.floor() run from −2 to 1; two dark squares per row.
            let (i, j) = (x1.floor() as i64, x2.floor() as i64);
            ([2.0 * x1, 2.0 * x2], ((j + 2) * 2 + (i + 2) / 2) as usize)
        });
        crate::Conditioned { points, labels: Some(labels), values: None }
    }
    fn classes(&self) -> usize {
        Self::SQUARES
    }
    fn class_weights(&self) -> Vec<f64> {
        vec![1.0 / Self::SQUARES as f64; Self::SQUARES]
    }
    /// Uniform on square `class`: `−ln 4` there, `−inf` elsewhere.
    fn class_log_prob(&self, x: ArrayView2<f64>, class: usize) -> Result<Array1<f64>> {
        check_dim(&x, 2)?;
        crate::check_class(class, Self::SQUARES)?;
        let inside = -(Self::SQUARE * Self::SQUARE).ln();
        Ok(x.map_axis(Axis(1), |r| if Self::square(r[0], r[1]) == Some(class) { inside } else { f64::NEG_INFINITY }))
    }
    fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        check_dim(&x, 2)?;
        let inside = -Self::AREA.ln();
        Ok(x.map_axis(Axis(1), |r| {
            if r[0].is_nan() || r[1].is_nan() {
                f64::NAN
            } else if Self::contains(r[0], r[1]) {
                inside
            } else {
                f64::NEG_INFINITY
            }
        }))
    }
}
