//! Probability paths: how a source sample `x0` and a target sample `x1` are joined at
//! time `t`, and the velocity `u_t` the network learns to predict there.
//!
//! Every path is written down once, in [`ProbabilityPath::interpolate_with_noise`]; the
//! formulas are on the variants. Time runs from the source (`t = 0`) to the target
//! (`t = 1`), as in TorchCFM and Meta's `flow_matching`. Paths with a Gaussian noise term
//! take their `ε ~ N(0, I)` from the caller, so the training loop draws it from its one
//! seeded generator and the data stream stays reproducible.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::FRAC_PI_2;
use tch::Tensor;

/// A conditional probability path `x_t = ψ_t(x0, x1, ε)` and its velocity `u_t = ∂_t ψ_t`.
///
/// Serde names are kebab-case: `"linear"`, `"vp"` (alias `"cosine"`), and tables for the
/// variants with parameters, e.g. `{ icfm = { sigma = 0.1 } }`. [`std::str::FromStr`] takes
/// the command-line form `name` or `name:VALUE` (`icfm:0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbabilityPath {
    /// The straight line of the seed, rectified flow and I-CFM with σ = 0:
    /// `x_t = (1 − t) x0 + t x1`, `u_t = x1 − x0`.
    #[default]
    Linear,
    /// I-CFM (Tong et al. 2023): the straight line blurred by a constant Gaussian,
    /// `x_t = t x1 + (1 − t) x0 + σ ε`, `u_t = x1 − x0`.
    Icfm {
        /// `σ ≥ 0`, the standard deviation of the noise, the same at every `t`.
        sigma: f64,
    },
    /// Lipman et al. 2023's optimal-transport path, with `x0` as the noise sample:
    /// `x_t = t x1 + (1 − (1 − σ_min) t) x0`, `u_t = x1 − (1 − σ_min) x0`
    /// (TorchCFM's `TargetConditionalFlowMatcher`, whose `(x1 − (1 − σ_min) x_t) / (1 − (1 − σ_min) t)`
    /// is the same field).
    Lipman {
        /// `σ_min ∈ [0, 1]`: at `t = 1`, `x_t = x1 + σ_min x0`, the target blurred by `σ_min`
        /// times the source sample.
        sigma_min: f64,
    },
    /// The variance-preserving trigonometric interpolant (Albergo et al. 2023; TorchCFM's
    /// `VariancePreservingConditionalFlowMatcher` with σ = 0, Meta's `CosineScheduler`):
    /// `x_t = cos(πt/2) x0 + sin(πt/2) x1`, `u_t = π/2 (cos(πt/2) x1 − sin(πt/2) x0)`.
    #[serde(alias = "cosine")]
    Vp,
    /// The Brownian bridge of Schrödinger-bridge CFM (Tong et al. 2024):
    /// `x_t = μ_t + σ √(t(1 − t)) ε` with `μ_t = t x1 + (1 − t) x0`, and
    /// `u_t = (1 − 2t) / (2t(1 − t)) (x_t − μ_t) + x1 − x0`.
    ///
    /// `x_t − μ_t` is evaluated as `σ √(t(1 − t)) ε` (no cancellation), so
    /// `u_t = σ (1 − 2t) / (2 √(t(1 − t))) ε + x1 − x0`; at `t = 0` and `t = 1`, where the
    /// noise vanishes, `u_t = x1 − x0` (what TorchCFM's ε-guarded division gives).
    /// Training pairs come from the entropic-OT plan with `reg = 2σ²`
    /// ([`crate::Coupling::Sinkhorn`]), which [`crate::TrainConfig::validate`] requires.
    SchrodingerBridge {
        /// `σ > 0`, the bridge's noise scale: `x_t` deviates from `μ_t` by `σ √(t(1 − t)) ε`.
        sigma: f64,
    },
}

impl ProbabilityPath {
    /// Every name [`std::str::FromStr`] knows, with the form it takes.
    pub const NAMES: [&'static str; 5] = ["linear", "icfm:SIGMA", "lipman:SIGMA_MIN", "vp (or cosine)", "schrodinger-bridge:SIGMA"];

    /// The name of the variant, as serde and [`std::str::FromStr`] spell it.
    pub fn name(self) -> &'static str {
        match self {
            ProbabilityPath::Linear => "linear",
            ProbabilityPath::Icfm { .. } => "icfm",
            ProbabilityPath::Lipman { .. } => "lipman",
            ProbabilityPath::Vp => "vp",
            ProbabilityPath::SchrodingerBridge { .. } => "schrodinger-bridge",
        }
    }

    /// Whether `x_t` has a noise term `ε` (so training draws one per coordinate).
    pub fn needs_noise(self) -> bool {
        matches!(self, ProbabilityPath::Icfm { .. } | ProbabilityPath::SchrodingerBridge { .. })
    }

    /// Checks the parameters; the message names the field.
    ///
    /// # Errors
    /// [`Error::Config`] for an I-CFM `sigma` that is negative or not finite, a Lipman
    /// `sigma_min` outside `[0, 1]`, or a Schrödinger-bridge `sigma` that is not positive and finite.
    pub fn validate(self) -> Result<()> {
        let bad = |what: &str, v: f64, need: &str| Err(Error::Config(format!("path: {} {what} must be {need}, got {v}", self.name())));
        match self {
            ProbabilityPath::Icfm { sigma } if !(sigma.is_finite() && sigma >= 0.0) => bad("sigma", sigma, "finite and ≥ 0"),
            ProbabilityPath::Lipman { sigma_min } if !(0.0..=1.0).contains(&sigma_min) => bad("sigma_min", sigma_min, "in [0, 1]"),
            ProbabilityPath::SchrodingerBridge { sigma } if !(sigma.is_finite() && sigma > 0.0) => bad("sigma", sigma, "finite and > 0"),
            _ => Ok(()),
        }
    }

    /// The path's coefficients at time `t` when it is affine in independent `(x0, x1, ε)`:
    /// `x_t = α_t x1 + σ_t x0 + s ε` and `u_t = α̇_t x1 + σ̇_t x0` (see [`AffineCoefficients`]).
    ///
    /// Every path is, except the Schrödinger bridge (`None`): its noise scale depends on `t`
    /// and its velocity on `ε`, and it is only trained on entropic-OT pairs, which are not
    /// independent. The exact flow of [`crate::exact`] is built on these coefficients.
    pub fn affine(self, t: f64) -> Option<AffineCoefficients> {
        let straight =
            |sigma0: f64, noise: f64| AffineCoefficients { alpha: t, sigma: 1.0 - (1.0 - sigma0) * t, d_alpha: 1.0, d_sigma: -(1.0 - sigma0), noise };
        match self {
            ProbabilityPath::Linear => Some(straight(0.0, 0.0)),
            ProbabilityPath::Icfm { sigma } => Some(straight(0.0, sigma)),
            ProbabilityPath::Lipman { sigma_min } => Some(straight(sigma_min, 0.0)),
            ProbabilityPath::Vp => {
                let (s, c) = (FRAC_PI_2 * t).sin_cos();
                Some(AffineCoefficients { alpha: s, sigma: c, d_alpha: FRAC_PI_2 * c, d_sigma: -FRAC_PI_2 * s, noise: 0.0 })
            }
            ProbabilityPath::SchrodingerBridge { .. } => None,
        }
    }

    /// The noise-free path (`ε = 0`): `(x_t, u_t)` for batches `x0, x1: [n, d]` and times `t: [n, 1]`.
    ///
    /// # Errors
    /// [`Error::Torch`] when the shapes do not broadcast.
    pub fn interpolate(self, x0: &Tensor, x1: &Tensor, t: &Tensor) -> Result<(Tensor, Tensor)> {
        self.eval(x0, x1, t, None)
    }

    /// `(x_t, u_t)` for batches `x0, x1: [n, d]`, times `t: [n, 1]` and noise `eps: [n, d]`
    /// (ignored by the paths without a noise term).
    ///
    /// # Errors
    /// [`Error::Torch`] when the shapes do not broadcast.
    pub fn interpolate_with_noise(self, x0: &Tensor, x1: &Tensor, t: &Tensor, eps: &Tensor) -> Result<(Tensor, Tensor)> {
        self.eval(x0, x1, t, Some(eps))
    }

    fn eval(self, x0: &Tensor, x1: &Tensor, t: &Tensor, eps: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        match self {
            ProbabilityPath::Linear => {
                let u = x1.f_sub(x0)?;
                let xt = x0.f_add(&t.f_mul(&u)?)?;
                Ok((xt, u))
            }
            ProbabilityPath::Icfm { sigma } => {
                let u = x1.f_sub(x0)?;
                let mut xt = x0.f_add(&t.f_mul(&u)?)?;
                if let Some(eps) = eps {
                    xt = xt.f_add(&eps.f_mul_scalar(sigma)?)?;
                }
                Ok((xt, u))
            }
            ProbabilityPath::Lipman { sigma_min } => {
                // t x1 + (1 − (1 − σ_min) t) x0 = x0 + t (x1 − (1 − σ_min) x0) = x0 + t u.
                let u = x1.f_sub(&x0.f_mul_scalar(1.0 - sigma_min)?)?;
                let xt = x0.f_add(&t.f_mul(&u)?)?;
                Ok((xt, u))
            }
            ProbabilityPath::Vp => {
                let angle = t.f_mul_scalar(FRAC_PI_2)?;
                let (c, s) = (angle.f_cos()?, angle.f_sin()?);
                let xt = c.f_mul(x0)?.f_add(&s.f_mul(x1)?)?;
                let u = c.f_mul(x1)?.f_sub(&s.f_mul(x0)?)?.f_mul_scalar(FRAC_PI_2)?;
                Ok((xt, u))
            }
            ProbabilityPath::SchrodingerBridge { sigma } => {
                let u_mean = x1.f_sub(x0)?;
                let mut xt = x0.f_add(&t.f_mul(&u_mean)?)?;
                let Some(eps) = eps else {
                    return Ok((xt, u_mean));
                };
                // s = √(t(1 − t)); σ_t = σ s; σ'_t = σ (1 − 2t) / (2 s), taken as 0 where s = 0.
                let s = t.f_mul(&t.f_neg()?.f_add_scalar(1.0)?)?.f_sqrt()?;
                let ds = t.f_mul_scalar(-2.0)?.f_add_scalar(1.0)?.f_div(&s.f_mul_scalar(2.0)?)?;
                let ds = ds.f_where_self(&s.f_gt(0.0)?, &ds.f_zeros_like()?)?;
                xt = xt.f_add(&s.f_mul(eps)?.f_mul_scalar(sigma)?)?;
                let u = u_mean.f_add(&ds.f_mul(eps)?.f_mul_scalar(sigma)?)?;
                Ok((xt, u))
            }
        }
    }
}

/// An affine path at one time: `x_t = alpha·x1 + sigma·x0 + noise·ε` with `ε ~ N(0, I)`
/// independent of `(x0, x1)`, and the velocity the network regresses on,
/// `u_t = d_alpha·x1 + d_sigma·x0` (the constant noise of I-CFM does not move, so it has no
/// velocity). The notation of Lipman et al. 2024 ("Flow Matching Guide and Code": an affine
/// path's scheduler `(α_t, σ_t)` and its derivatives), with I-CFM's constant `noise` added.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineCoefficients {
    /// `α_t`, the weight of the target sample `x1`.
    pub alpha: f64,
    /// `σ_t`, the weight of the source sample `x0`.
    pub sigma: f64,
    /// `α̇_t = dα_t/dt`.
    pub d_alpha: f64,
    /// `σ̇_t = dσ_t/dt`.
    pub d_sigma: f64,
    /// The standard deviation `s` of the extra noise `s ε` (I-CFM's σ; 0 for the others).
    pub noise: f64,
}

impl std::fmt::Display for ProbabilityPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ProbabilityPath::Icfm { sigma } | ProbabilityPath::SchrodingerBridge { sigma } => {
                write!(f, "{}:{sigma}", self.name())
            }
            ProbabilityPath::Lipman { sigma_min } => write!(f, "{}:{sigma_min}", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

impl std::str::FromStr for ProbabilityPath {
    type Err = Error;
    /// `linear`, `icfm:SIGMA`, `lipman:SIGMA_MIN`, `vp` (or `cosine`), `schrodinger-bridge:SIGMA`
    /// (case-insensitive); the parameters are validated.
    fn from_str(s: &str) -> Result<Self> {
        let spec = s.trim().to_ascii_lowercase();
        let (name, arg) = crate::split_spec(&spec);
        let value = |what: &str| -> Result<f64> {
            let a = arg.ok_or_else(|| Error::Config(format!("path '{name}' needs its {what}: {name}:{}", what.to_ascii_uppercase())))?;
            a.parse().map_err(|_| Error::Config(format!("path '{name}': {what} must be a number, got '{a}'")))
        };
        let path = match name {
            "linear" | "vp" | "cosine" if arg.is_some() => return Err(Error::Config(format!("path '{name}' takes no ':' argument (got '{s}')"))),
            "linear" => ProbabilityPath::Linear,
            "vp" | "cosine" => ProbabilityPath::Vp,
            "icfm" => ProbabilityPath::Icfm { sigma: value("sigma")? },
            "lipman" => ProbabilityPath::Lipman { sigma_min: value("sigma_min")? },
            "schrodinger-bridge" => ProbabilityPath::SchrodingerBridge { sigma: value("sigma")? },
            _ => return Err(Error::Config(format!("unknown path '{name}'; valid paths: {}", Self::NAMES.join(", ")))),
        };
        path.validate()?;
        Ok(path)
    }
}
