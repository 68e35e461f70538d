//! The Boltzmann-sampling benchmarks of the energy-based samplers' papers, by their published
//! definitions, each with an exact sampler and its normalising constant so that learned samplers
//! are judged exactly: GMM-40 (fab-torch's `GMM(dim=2, n_mixes=40, loc_scaling=40,
//! log_var_scaling=1)`, as DEM uses it), ManyWell (fab-torch's `ManyWellEnergy(a=-0.5, b=-6,
//! c=1)`) and Neal's funnel.

use crate::{check_dim, Density, Error, GaussianMixture, Result, Target};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng, RngCore};
use std::sync::OnceLock;

/// GMM-40's means: `(torch.rand((40, 2)) − 0.5) · 2 · 40` after `torch.manual_seed(0)`, as
/// fab-torch draws them (float32 values, printed by torch 2.11 and copied here).
const GMM40_MEANS: [[f64; 2]; 40] = [
    [-0.2994728088378906, 21.457744598388672],
    [-32.92180633544922, -29.43756103515625],
    [-15.406174659729004, 10.72629451751709],
    [-0.7925271987915039, 31.715579986572266],
    [-3.5497617721557617, 10.584502220153809],
    [-12.088522911071777, -7.862615585327148],
    [-38.21393966674805, -26.491283416748047],
    [-16.488924026489258, 1.4817428588867188],
    [15.813407897949219, 24.000911712646484],
    [-27.117643356323242, -17.418514251708984],
    [14.528684616088867, 33.215518951416016],
    [-8.232007026672363, 29.932470321655273],
    [-6.447334289550781, 4.2325639724731445],
    [36.21904754638672, -37.106815338134766],
    [-25.1815185546875, -10.126609802246094],
    [-15.591998100280762, 34.56003189086914],
    [-25.92718505859375, -18.413314819335938],
    [-27.94561767578125, -37.462440490722656],
    [-23.349618911743164, 34.3839225769043],
    [17.848735809326172, 19.38690185546875],
    [2.1036624908447266, -20.507339477539062],
    [6.767387390136719, -37.3477897644043],
    [-28.90264892578125, -20.621200561523438],
    [25.237518310546875, 23.452850341796875],
    [-17.73980140686035, -1.4432954788208008],
    [25.582427978515625, 39.765323638916016],
    [15.875287055969238, 5.403714179992676],
    [26.819454193115234, -23.552093505859375],
    [7.453761100769043, -31.01222038269043],
    [-27.723445892333984, -20.663341522216797],
    [18.098922729492188, 16.086416244506836],
    [-23.69409942626953, 12.084283828735352],
    [21.958881378173828, -5.048694610595703],
    [1.527261734008789, 9.2681884765625],
    [24.8150634765625, 38.40776443481445],
    [-30.82494354248047, -14.65878963470459],
    [15.720396041870117, 33.14197540283203],
    [34.808292388916016, 35.29426956176758],
    [7.9605817794799805, -34.78330612182617],
    [3.6796998977661133, -25.024213790893555],
];

/// GMM-40: 40 equal-weight Gaussians in 2-D at fab-torch's means, `(torch.rand((40, 2)) − 0.5)·80`
/// after `torch.manual_seed(0)` (torch's float32 draws, kept in this file), each with standard deviation
/// `softplus(1) ≈ 1.3133` per coordinate (fab-torch's `scale_tril = diag(softplus(log_var))`,
/// `log_var = 1`); normalised, so `log Z = 0`. A Gaussian mixture: it samples, has classes and an
/// exact flow like any other.
pub fn gmm40() -> GaussianMixture {
    let std = 1f64.exp().ln_1p(); // softplus(1)
    let means = Array2::from_shape_fn((40, 2), |(k, j)| GMM40_MEANS[k][j]);
    let covs = vec![Array2::eye(2) * (std * std); 40];
    GaussianMixture::new(vec![1.0 / 40.0; 40], means, covs).expect("GMM-40's constants make a valid mixture").with_name("GMM-40")
}

/// ManyWell in `dim` (even) dimensions: `dim/2` independent copies of fab-torch's double well
/// on a pair `(x₁, x₂)`, `log p̃ = −x₁⁴ + 6x₁² + ½x₁ − ½x₂²` (`a = −½, b = −6, c = 1`: the
/// energy `a x₁ + b x₁² + c x₁⁴ + ½x₂²`). Each pair's `x₁` has two wells (near ±1.7, the right one
/// deeper), so the target has `2^(dim/2)` modes. Its `log Z` is `dim/2` times the pair's,
/// `log ∫ exp(−x⁴ + 6x² + ½x) dx + ½ log 2π` (by quadrature, see [`ManyWell::pair_log_z`]):
/// 164.6957 for `dim = 32`. Sampled exactly: `x₁` by rejection from a uniform box (the density
/// outside `[−4, 4]` is below `e^−150` of its peak), `x₂` Gaussian.
#[derive(Debug, Clone)]
pub struct ManyWell {
    dim: usize,
}

impl ManyWell {
    /// ManyWell in `dim` dimensions.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an odd or zero `dim`.
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 || dim % 2 == 1 {
            return Err(Error::Invalid(format!("manywell:D takes an even dimension D ≥ 2 (pairs of coordinates), got {dim}")));
        }
        Ok(Self { dim })
    }

    /// `log p̃` of one well's `x₁` (without the Gaussian `x₂`).
    fn well(x: f64) -> f64 {
        -x.powi(4) + 6.0 * x * x + 0.5 * x
    }

    /// The log normalising constant of one pair: `log ∫ exp(well(x)) dx + ½ log 2π`, by
    /// composite Simpson on `[−6, 6]` with 120,000 intervals (the integrand is below `e^−1000`
    /// outside, and smooth: the rule is exact to rounding here).
    pub fn pair_log_z() -> f64 {
        static LOG_Z: OnceLock<f64> = OnceLock::new();
        *LOG_Z.get_or_init(|| {
            let (peak, [mass, _, _]) = Self::well_moments();
            peak + mass.ln() + 0.5 * (2.0 * std::f64::consts::PI).ln()
        })
    }

    /// The standard deviation of one well's `x₁` under its density, by the same rule.
    fn well_std_dev() -> f64 {
        let (_, [mass, first, second]) = Self::well_moments();
        (second / mass - (first / mass).powi(2)).sqrt()
    }

    /// `∫ xᵏ exp(well(x) − peak) dx` for k = 0, 1, 2 by composite Simpson on `[−6, 6]` with
    /// 120,000 intervals, relative to the peak so that nothing overflows; and the peak.
    fn well_moments() -> (f64, [f64; 3]) {
        let (a, b, n) = (-6.0f64, 6.0f64, 120_000usize);
        let h = (b - a) / n as f64;
        let peak = (0..=n).map(|i| Self::well(a + i as f64 * h)).fold(f64::NEG_INFINITY, f64::max);
        let mut sums = [0.0; 3];
        for i in 0..=n {
            let x = a + i as f64 * h;
            let simpson = if i == 0 || i == n {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            let f = (Self::well(x) - peak).exp() * simpson * h / 3.0;
            sums[0] += f;
            sums[1] += f * x;
            sums[2] += f * x * x;
        }
        (peak, sums)
    }

    /// `x₁` of one well, by rejection from the uniform box `[−4, 4]` under the well's peak.
    fn sample_well(rng: &mut dyn RngCore) -> f64 {
        // The peak of well(x) is at the root of −4x³ + 12x + ½ near 1.74: bounded above by 10.
        let bound = 10.0;
        loop {
            let x = rng.random_range(-4.0..4.0);
            if rng.random::<f64>().ln() < Self::well(x) - bound {
                return x;
            }
        }
    }
}

impl Density for ManyWell {
    fn density_name(&self) -> String {
        Target::name(self)
    }
    fn density_dim(&self) -> usize {
        self.dim
    }
    fn log_density(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        check_dim(&x, self.dim)?;
        Ok(x.map_axis(Axis(1), |r| r.exact_chunks(2).into_iter().map(|p| Self::well(p[0]) - 0.5 * p[1] * p[1]).sum()))
    }
    fn log_normalizer(&self) -> Option<f64> {
        Some(self.dim as f64 / 2.0 * Self::pair_log_z())
    }
    fn grad_log_density(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        check_dim(&x, self.dim)?;
        Ok(Array2::from_shape_fn(x.dim(), |(i, j)| {
            let v = x[[i, j]];
            if j % 2 == 0 {
                -4.0 * v.powi(3) + 12.0 * v + 0.5
            } else {
                -v
            }
        }))
    }
    fn std_dev(&self) -> Option<Vec<f64>> {
        let well = Self::well_std_dev();
        Some((0..self.dim).map(|j| if j % 2 == 0 { well } else { 1.0 }).collect())
    }
}

impl Target for ManyWell {
    fn name(&self) -> String {
        format!("ManyWell-{}", self.dim)
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
        let mut out = Array2::zeros((n, self.dim));
        for i in 0..n {
            for j in 0..self.dim {
                out[[i, j]] = if j % 2 == 0 { Self::sample_well(rng) } else { rng.sample(rand_distr::StandardNormal) };
            }
        }
        out
    }
    fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        let log_z = self.log_normalizer().unwrap_or(0.0);
        Ok(self.log_density(x)? - log_z)
    }
    fn score(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.grad_log_density(x)
    }
    fn density(&self) -> Option<&dyn Density> {
        Some(self)
    }
}

/// Neal's funnel in `dim ≥ 2` dimensions: `x₀ ~ N(0, 3²)`, then each `xᵢ | x₀ ~ N(0, e^{x₀})`
/// (Neal 2003, "Slice sampling"; the 10-D benchmark of the samplers' papers). Normalised
/// (`log Z = 0`) and sampled exactly by its definition. Its neck (`x₀ ≪ 0`) is narrow, its mouth
/// wide: what samplers with one step size miss.
#[derive(Debug, Clone)]
pub struct Funnel {
    dim: usize,
}

impl Funnel {
    /// The funnel in `dim` dimensions.
    ///
    /// # Errors
    /// [`Error::Invalid`] for `dim < 2`.
    pub fn new(dim: usize) -> Result<Self> {
        if dim < 2 {
            return Err(Error::Invalid(format!("funnel:D takes a dimension D ≥ 2, got {dim}")));
        }
        Ok(Self { dim })
    }
}

/// The funnel's own density: normalised (`log Z = 0`), with its scale (`x₀`: 3; each `xᵢ`:
/// `√E[e^{x₀}] = e^{9/4}`).
impl Density for Funnel {
    fn density_name(&self) -> String {
        Target::name(self)
    }
    fn density_dim(&self) -> usize {
        self.dim
    }
    fn log_density(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        self.log_prob(x)
    }
    fn log_normalizer(&self) -> Option<f64> {
        Some(0.0)
    }
    fn grad_log_density(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.score(x)
    }
    fn std_dev(&self) -> Option<Vec<f64>> {
        Some((0..self.dim).map(|j| if j == 0 { 3.0 } else { 2.25f64.exp() }).collect())
    }
}

impl Target for Funnel {
    fn name(&self) -> String {
        format!("Funnel-{}", self.dim)
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
        let mut out = Array2::zeros((n, self.dim));
        for mut row in out.rows_mut() {
            let v: f64 = 3.0 * rng.sample::<f64, _>(rand_distr::StandardNormal);
            row[0] = v;
            let s = (0.5 * v).exp();
            for x in row.iter_mut().skip(1) {
                *x = s * rng.sample::<f64, _>(rand_distr::StandardNormal);
            }
        }
        out
    }
    fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        check_dim(&x, self.dim)?;
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        let k = (self.dim - 1) as f64;
        Ok(x.map_axis(Axis(1), |r| {
            let v = r[0];
            let rest: f64 = r.iter().skip(1).map(|x| x * x).sum();
            (-v * v / 18.0 - 3f64.ln() - half_log_2pi) + (-0.5 * rest * (-v).exp() - 0.5 * k * v - k * half_log_2pi)
        }))
    }
    fn score(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        check_dim(&x, self.dim)?;
        let k = (self.dim - 1) as f64;
        let mut g = Array2::zeros(x.dim());
        for (mut out, r) in g.rows_mut().into_iter().zip(x.rows()) {
            let v = r[0];
            let e = (-v).exp();
            let rest: f64 = r.iter().skip(1).map(|x| x * x).sum();
            out[0] = -v / 9.0 + 0.5 * rest * e - 0.5 * k;
            for j in 1..self.dim {
                out[j] = -r[j] * e;
            }
        }
        Ok(g)
    }
    fn density(&self) -> Option<&dyn Density> {
        Some(self)
    }
}
