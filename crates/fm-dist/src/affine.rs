//! Per-coordinate affine maps `x = shift + scale ⊙ z`, and distributions pushed through them:
//! how a model trained on standardised data is seen in the data's own units.
//!
//! Standardising (each coordinate to mean 0 and standard deviation 1) is what every ML toolkit
//! does to data far from unit scale: a network's initialisation, learning rate and the
//! standard-normal source all assume coordinates of order one. Flow matching is then learnt in
//! standard units `z`, and its samples and densities are carried back: for `x = shift + scale ⊙ z`,
//! `log p_x(x) = log p_z(z) − Σᵢ ln scaleᵢ` (the change of variables of a diagonal linear map).

use crate::{check_dim, Error, Result, Target};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The map `x = shift + scale ⊙ z`, one shift and one positive scale per coordinate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affine {
    /// Added after scaling (data units).
    pub shift: Vec<f64>,
    /// Multiplies each coordinate; finite and positive.
    pub scale: Vec<f64>,
}

impl Affine {
    /// The map that standardises `points` (`N × D`, N ≥ 1): `shift` their mean, `scale` their
    /// standard deviation per coordinate (population, `1/N`). A coordinate that does not vary
    /// keeps scale 1 (there is nothing to divide by; its mean still moves to 0).
    ///
    /// # Errors
    /// [`Error::Invalid`] for no points, or non-finite values or moments.
    pub fn standardizing(points: ArrayView2<f64>) -> Result<Self> {
        if points.nrows() == 0 {
            return Err(Error::Invalid("cannot standardise no points".into()));
        }
        let mean = points.mean_axis(Axis(0)).ok_or_else(|| Error::Invalid("cannot standardise no points".into()))?;
        let std = points.std_axis(Axis(0), 0.0);
        let scale: Vec<f64> = std.iter().map(|&s| if s > 0.0 { s } else { 1.0 }).collect();
        let map = Self { shift: mean.to_vec(), scale };
        map.validate(points.ncols())?;
        Ok(map)
    }

    /// Checks that the map has `dim` coordinates, finite shifts and finite positive scales.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming what is wrong.
    pub fn validate(&self, dim: usize) -> Result<()> {
        if self.shift.len() != dim || self.scale.len() != dim {
            return Err(Error::Invalid(format!("a {dim}-D affine map needs {dim} shifts and scales, got {} and {}", self.shift.len(), self.scale.len())));
        }
        if let Some(s) = self.shift.iter().find(|s| !s.is_finite()) {
            return Err(Error::Invalid(format!("affine map: shift {s} is not finite")));
        }
        if let Some(s) = self.scale.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::Invalid(format!("affine map: scale {s} is not a finite positive number")));
        }
        Ok(())
    }

    /// The inverse map, `z = (x − shift) / scale`.
    pub fn inverse(&self) -> Self {
        Self { shift: self.shift.iter().zip(&self.scale).map(|(m, s)| -m / s).collect(), scale: self.scale.iter().map(|s| 1.0 / s).collect() }
    }

    /// `shift + scale ⊙ z` for each row of `z`.
    pub fn apply(&self, z: ArrayView2<f64>) -> Array2<f64> {
        let mut x = z.to_owned();
        for mut row in x.rows_mut() {
            for ((v, m), s) in row.iter_mut().zip(&self.shift).zip(&self.scale) {
                *v = m + s * *v;
            }
        }
        x
    }

    /// `scale ⊙ v` for each row of `v`: the map's linear part, which carries a velocity or a
    /// displacement (the shift moves points, not differences of points).
    pub fn scale_rows(&self, v: ArrayView2<f64>) -> Array2<f64> {
        let mut out = v.to_owned();
        for mut row in out.rows_mut() {
            row.iter_mut().zip(&self.scale).for_each(|(v, s)| *v *= s);
        }
        out
    }

    /// `Σᵢ ln scaleᵢ`, the log-determinant of the map's Jacobian: a density pushed through it
    /// loses this much log-density at every point.
    pub fn log_det(&self) -> f64 {
        self.scale.iter().map(|s| s.ln()).sum()
    }

    /// A sentence saying how far from unit scale `points` are, when far enough for training to
    /// suffer: a coordinate's standard deviation outside [1e-2, 1e2], or its mean further than
    /// 1e2 from the origin. `None` when near.
    pub fn scale_warning(points: ArrayView2<f64>) -> Option<String> {
        let map = Self::standardizing(points).ok()?;
        let (smallest, largest) = map.scale.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        let farthest = map.shift.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        (smallest < 1e-2 || largest > 1e2 || farthest > 1e2).then(|| {
            format!(
                "the data are far from unit scale (standard deviations {smallest:.3e} to {largest:.3e}, means up to {farthest:.3e} from 0): \
                 a network and a N(0, I) source of unit scale learn such data poorly"
            )
        })
    }
}

/// Whether `t` is the standard normal `N(0, I)`: noise, which has no units and so is already in
/// standard units (any other source is data, standardised with the target).
pub fn is_standard_normal(t: &dyn Target) -> bool {
    t.as_gaussian().is_some_and(|(mean, cov)| mean.iter().all(|&m| m == 0.0) && cov == Array2::<f64>::eye(t.dim()))
}

/// The source a model trained under `map` starts from, in its standard units: noise as it is,
/// a data source pushed through the inverse map.
///
/// # Errors
/// As [`Pushforward::new`].
pub fn standard_source(source: Box<dyn Target>, map: &Affine) -> Result<Box<dyn Target>> {
    if is_standard_normal(source.as_ref()) {
        Ok(source)
    } else {
        Ok(Box::new(Pushforward::new(source, map.inverse())?))
    }
}

/// A distribution pushed through an [`Affine`] map: samples `shift + scale ⊙ z` for `z` drawn
/// from the inner distribution, log-density `log p(z) − Σ ln scale` at `z = (x − shift)/scale`.
pub struct Pushforward {
    inner: Box<dyn Target>,
    map: Affine,
    inverse: Affine,
}

impl Pushforward {
    /// `inner` pushed through `map`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `map` does not fit `inner`'s dimension or is not a valid map.
    pub fn new(inner: Box<dyn Target>, map: Affine) -> Result<Self> {
        map.validate(inner.dim())?;
        Ok(Self { inverse: map.inverse(), inner, map })
    }
}

impl Target for Pushforward {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn sample(&self, n: usize, rng: &mut dyn RngCore) -> Array2<f64> {
        self.map.apply(self.inner.sample(n, rng).view())
    }
    fn log_prob(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        check_dim(&x, self.dim())?;
        Ok(self.inner.log_prob(self.inverse.apply(x).view())? - self.map.log_det())
    }
    fn has_density(&self) -> bool {
        self.inner.has_density()
    }
    fn has_sampler(&self) -> bool {
        self.inner.has_sampler()
    }
    fn describe_data(&self) -> Option<String> {
        self.inner.describe_data()
    }
    fn classes(&self) -> usize {
        self.inner.classes()
    }
    fn condition_dim(&self) -> usize {
        self.inner.condition_dim()
    }
    fn class_weights(&self) -> Vec<f64> {
        self.inner.class_weights()
    }
    fn sample_conditioned(&self, n: usize, rng: &mut dyn RngCore) -> crate::Conditioned {
        let inner = self.inner.sample_conditioned(n, rng);
        crate::Conditioned { points: self.map.apply(inner.points.view()), ..inner }
    }
    fn class_log_prob(&self, x: ArrayView2<f64>, class: usize) -> Result<Array1<f64>> {
        check_dim(&x, self.dim())?;
        Ok(self.inner.class_log_prob(self.inverse.apply(x).view(), class)? - self.map.log_det())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StandardNormal;
    use ndarray::array;
    use rand::SeedableRng;

    #[test]
    fn standardizing_gives_zero_mean_unit_std_and_inverts() {
        let x = array![[1e6, 1e-6], [1e6 + 2.0, 3e-6], [1e6 + 4.0, 5e-6]];
        let map = Affine::standardizing(x.view()).unwrap();
        let z = map.inverse().apply(x.view());
        for col in z.columns() {
            assert!(col.mean().unwrap().abs() < 1e-9 && (col.std(0.0) - 1.0).abs() < 1e-9, "{col}");
        }
        let back = map.apply(z.view());
        assert!(back.iter().zip(&x).all(|(a, b)| (a - b).abs() <= 1e-9 * b.abs().max(1e-12)), "{back}");
        assert!(Affine::scale_warning(x.view()).is_some());
        assert!(Affine::scale_warning(z.view()).is_none());
        // A constant coordinate keeps scale 1.
        assert_eq!(Affine::standardizing(array![[1.0, 5.0], [2.0, 5.0]].view()).unwrap().scale[1], 1.0);
    }

    #[test]
    fn pushforward_density_is_the_change_of_variables() {
        // N(0, 1) pushed through x = 3 + 2z is N(3, 4): log p(x) = −(x−3)²/8 − ln 2 − ln(2π)/2.
        let map = Affine { shift: vec![3.0], scale: vec![2.0] };
        let p = Pushforward::new(Box::new(StandardNormal::new(1).unwrap()), map).unwrap();
        let x = array![[3.0], [5.0], [-1.0]];
        let got = p.log_prob(x.view()).unwrap();
        for (g, xi) in got.iter().zip(x.column(0)) {
            let want = -(xi - 3.0).powi(2) / 8.0 - 2f64.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
            assert!((g - want).abs() < 1e-12, "{g} vs {want}");
        }
        let s = p.sample(20_000, &mut rand::rngs::StdRng::seed_from_u64(1));
        // Mean within 4 standard errors (σ/√n = 2/√20000 ≈ 0.014).
        assert!((s.mean().unwrap() - 3.0).abs() < 4.0 * 2.0 / (20_000f64).sqrt());
        assert!(Pushforward::new(Box::new(StandardNormal::new(2).unwrap()), Affine { shift: vec![0.0], scale: vec![1.0] }).is_err());
    }
}
