//! How training draws the time `t` of each pair.

use crate::{Error, Result};
use rand::{Rng, RngCore};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// The law of the training times.
///
/// Serde names: `"uniform"`, `"stratified"`, or `{ logit-normal = { mean = 0.0, std = 1.0 } }` (both
/// fields optional). [`std::str::FromStr`] takes `uniform`, `stratified`, `logit-normal` or
/// `logit-normal:MEAN,STD`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeSampling {
    /// `t ~ U[0, 1)`, the seed's (one `f32` draw per row).
    #[default]
    Uniform,
    /// `t = sigmoid(m)` with `m ~ N(mean, std²)` (Esser et al. 2024): more weight on the
    /// middle of the path. Its median is `sigmoid(mean)`. Times are kept strictly inside
    /// `(0, 1)` in `f32` (clamped to `[2⁻²⁴, 1 − 2⁻²⁴]`).
    LogitNormal {
        /// The mean of the logit `m` (0 by default; `sigmoid(mean)` is the median time).
        #[serde(default)]
        mean: f64,
        /// The standard deviation of `m`, `> 0` (1 by default).
        #[serde(default = "one")]
        std: f64,
    },
    /// Stratified uniform times: row `i` of a batch of `n` gets `t = (i + U_i) / n`, so each
    /// batch covers `[0, 1)` evenly (the marginal law of every row is still `U[0, 1)`, and the
    /// loss an unbiased estimate of the uniform-time loss) with less variance from the times.
    Stratified,
}

fn one() -> f64 {
    1.0
}

impl TimeSampling {
    /// The smallest and largest logit-normal time.
    pub const LOGIT_NORMAL_RANGE: (f32, f32) = (1.0 / 16_777_216.0, 1.0 - 1.0 / 16_777_216.0);

    /// The logit-normal law with mean 0 and standard deviation 1.
    pub fn logit_normal() -> Self {
        TimeSampling::LogitNormal { mean: 0.0, std: 1.0 }
    }

    /// Checks the parameters; the message names the field.
    ///
    /// # Errors
    /// [`Error::Config`] for a logit-normal mean that is not finite or a std that is not
    /// positive and finite.
    pub fn validate(self) -> Result<()> {
        if let TimeSampling::LogitNormal { mean, std } = self {
            if !(mean.is_finite() && std.is_finite() && std > 0.0) {
                return Err(Error::Config(format!("time_sampling: logit-normal needs a finite mean and a positive finite std, got mean {mean}, std {std}")));
            }
        }
        Ok(())
    }

    /// The time at probability level `u ∈ (0, 1)` of this law (its quantile function `F⁻¹(u)`):
    /// `u` for the uniform laws, `sigmoid(mean + std Φ⁻¹(u))` for the logit-normal one. Used to
    /// spread Monte Carlo times evenly over the law ([`crate::exact`]).
    pub fn quantile(self, u: f64) -> f64 {
        use statrs::distribution::ContinuousCDF;
        match self {
            TimeSampling::Uniform | TimeSampling::Stratified => u,
            TimeSampling::LogitNormal { mean, std } => {
                let z = statrs::distribution::Normal::standard().inverse_cdf(u);
                1.0 / (1.0 + (-(mean + std * z)).exp())
            }
        }
    }

    /// Fills `out` with one batch of times: independent draws, except [`TimeSampling::Stratified`]'s one per stratum.
    pub fn fill(self, out: &mut [f32], rng: &mut dyn RngCore) {
        match self {
            TimeSampling::Uniform => out.iter_mut().for_each(|t| *t = rng.random::<f32>()),
            TimeSampling::Stratified => {
                let n = out.len() as f64;
                for (i, t) in out.iter_mut().enumerate() {
                    // Below 1 in f32 as the uniform law's draws are.
                    *t = (((i as f64 + rng.random::<f64>()) / n) as f32).min(1.0 - f32::EPSILON / 2.0);
                }
            }
            TimeSampling::LogitNormal { mean, std } => {
                let (lo, hi) = Self::LOGIT_NORMAL_RANGE;
                for t in out {
                    let z: f64 = StandardNormal.sample(rng);
                    let logit = mean + std * z;
                    *t = ((1.0 / (1.0 + (-logit).exp())) as f32).clamp(lo, hi);
                }
            }
        }
    }
}

impl std::fmt::Display for TimeSampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeSampling::Uniform => f.write_str("uniform"),
            TimeSampling::Stratified => f.write_str("stratified"),
            TimeSampling::LogitNormal { mean, std } => write!(f, "logit-normal:{mean},{std}"),
        }
    }
}

impl std::str::FromStr for TimeSampling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let spec = s.trim().to_ascii_lowercase();
        let (name, arg) = crate::split_spec(&spec);
        let sampling = match (name, arg) {
            ("uniform", None) => TimeSampling::Uniform,
            ("stratified", None) => TimeSampling::Stratified,
            ("logit-normal", None) => TimeSampling::logit_normal(),
            ("logit-normal", Some(a)) => {
                let parsed: Option<(f64, f64)> = a.split_once(',').and_then(|(m, s)| Some((m.trim().parse().ok()?, s.trim().parse().ok()?)));
                let (mean, std) = parsed.ok_or_else(|| Error::Config(format!("time sampling 'logit-normal' takes MEAN,STD, got '{a}'")))?;
                TimeSampling::LogitNormal { mean, std }
            }
            ("uniform" | "stratified", Some(_)) => return Err(Error::Config(format!("time sampling '{name}' takes no ':' argument (got '{s}')"))),
            _ => return Err(Error::Config(format!("unknown time sampling '{name}'; valid: uniform, stratified, logit-normal, logit-normal:MEAN,STD"))),
        };
        sampling.validate()?;
        Ok(sampling)
    }
}
