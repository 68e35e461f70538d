//! One linear combination of stage derivatives, [`Weights`], and its evaluation on tensors in
//! the operation order its representation fixes.

use crate::{Error, Result};
use tch::Tensor;

/// The coefficients of one linear combination `h Σ_j w_j k_j` of stage derivatives: a row of
/// the Butcher matrix `a`, the weights `b`, the error weights or the dense-output weights.
///
/// The representation also fixes the floating-point operations (see each variant): the two
/// forms of the same coefficients are the same method, their results equal up to rounding, and
/// a tableau can reproduce a hand-written formula bit for bit.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    /// Floating-point coefficients `w_j`, evaluated term by term in stage order as
    /// `y + k_1·(h·w_1) + k_2·(h·w_2) + …`, zero coefficients skipped (the form of Hairer's
    /// `dopri5.f`). For coefficients that are not simple fractions.
    Real(Vec<f64>),
    /// Exact fractions `w_j = numerators[j] / denominator` (a positive denominator), evaluated
    /// as `y + (Σ_m m·Σ_{j: n_j = m} k_j)·(h / denominator)`: the stages sharing a numerator are
    /// summed first (in stage order), the distinct numerators `m` taken in order of first
    /// appearance, factors of 1 and zero numerators left out. RK4's `(1, 2, 2, 1)/6` is thus
    /// `y + ((k1 + k4) + (k2 + k3)·2)·(h/6)`, the usual hand-written form, with fewer rounding
    /// steps and multiplications than the term-by-term one.
    Rational {
        /// The numerators `n_j`, one per stage the combination covers.
        numerators: Vec<i64>,
        /// The common denominator (at least 1).
        denominator: i64,
    },
}

impl Weights {
    /// [`Weights::Real`] from a slice.
    pub fn real(w: &[f64]) -> Self {
        Weights::Real(w.to_vec())
    }

    /// [`Weights::Rational`] from a slice of numerators and their denominator.
    pub fn rational(numerators: &[i64], denominator: i64) -> Self {
        Weights::Rational { numerators: numerators.to_vec(), denominator }
    }

    /// The number of coefficients.
    pub fn len(&self) -> usize {
        match self {
            Weights::Real(w) => w.len(),
            Weights::Rational { numerators, .. } => numerators.len(),
        }
    }

    /// Whether there are no coefficients (the first row of `a`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Coefficient `j` as an `f64` (panics when `j >= len()`).
    pub fn value(&self, j: usize) -> f64 {
        match self {
            Weights::Real(w) => w[j],
            Weights::Rational { numerators, denominator } => numerators[j] as f64 / *denominator as f64,
        }
    }

    /// Every coefficient as an `f64`.
    pub fn values(&self) -> Vec<f64> {
        (0..self.len()).map(|j| self.value(j)).collect()
    }

    /// The first `n` coefficients, in the same representation (for comparing a row of `a` with `b`).
    pub(crate) fn prefix(&self, n: usize) -> Weights {
        match self {
            Weights::Real(w) => Weights::Real(w[..n.min(w.len())].to_vec()),
            Weights::Rational { numerators, denominator } => {
                Weights::Rational { numerators: numerators[..n.min(numerators.len())].to_vec(), denominator: *denominator }
            }
        }
    }

    /// Checks `len` coefficients, all finite, and a positive denominator.
    pub(crate) fn check(&self, what: &str, len: usize) -> std::result::Result<(), String> {
        if self.len() != len {
            return Err(format!("{what} has {} coefficients, expected {len}", self.len()));
        }
        if let Weights::Rational { denominator, .. } = self {
            if *denominator < 1 {
                return Err(format!("{what} has denominator {denominator}, expected at least 1"));
            }
        }
        match self.values().iter().position(|w| !w.is_finite()) {
            Some(j) => Err(format!("{what} holds a non-finite coefficient at {j}")),
            None => Ok(()),
        }
    }
}

/// `base + h Σ_j w_j k_j` over the first `k.len()` weights (`base` absent: `h Σ_j w_j k_j`),
/// in the order [`Weights`] documents; zeros when there is no term and no base.
pub(crate) fn combine(w: &Weights, base: Option<&Tensor>, h: f64, k: &[Tensor]) -> Result<Tensor> {
    let sum = match w {
        Weights::Real(ws) => {
            let mut out = base.map(Tensor::shallow_clone);
            for (wj, kj) in ws.iter().zip(k) {
                if *wj != 0.0 {
                    out = Some(add(out, kj.f_mul_scalar(h * wj)?)?);
                }
            }
            return out.map_or_else(|| zeros(k), Ok);
        }
        Weights::Rational { numerators, denominator } => {
            let mut groups: Vec<(i64, Tensor)> = Vec::new();
            for (&n, kj) in numerators.iter().zip(k).filter(|(n, _)| **n != 0) {
                match groups.iter_mut().find(|(m, _)| *m == n) {
                    Some((_, s)) => *s = s.f_add(kj)?,
                    None => groups.push((n, kj.shallow_clone())),
                }
            }
            let mut total = None;
            for (m, s) in groups {
                total = Some(add(total, if m == 1 { s } else { s.f_mul_scalar(m as f64)? })?);
            }
            match total {
                Some(t) => t.f_mul_scalar(h / *denominator as f64)?,
                None => return base.map_or_else(|| zeros(k), |b| Ok(b.shallow_clone())),
            }
        }
    };
    match base {
        Some(b) => Ok(b.f_add(&sum)?),
        None => Ok(sum),
    }
}

fn add(acc: Option<Tensor>, term: Tensor) -> Result<Tensor> {
    match acc {
        Some(a) => Ok(a.f_add(&term)?),
        None => Ok(term),
    }
}

fn zeros(k: &[Tensor]) -> Result<Tensor> {
    match k.first() {
        Some(k) => Ok(k.f_zeros_like()?),
        None => Err(Error::Invalid("a linear combination of no stages".into())),
    }
}
