//! The divergence `div v = tr(∂v/∂x)` of a field, for [`crate::log_likelihood`]: the choice
//! ([`Divergence`]), the exact trace by autograd, and Hutchinson's estimator with its seeded,
//! chunking-independent probes.

use crate::{Error, Result};
use tch::{Kind, Tensor};

/// Largest dimension for which [`Divergence::Auto`] computes the exact divergence: beyond it
/// one Hutchinson probe (1 backward pass instead of `d`) is the cheaper choice.
pub const AUTO_EXACT_MAX_DIM: usize = 16;

/// The distribution of Hutchinson probes `ε` (both have `E[εεᵀ] = I`, hence unbiased).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Probe {
    /// Uniform ±1 entries: the lowest-variance choice, `Var = 2 Σ_{i≠j} S_ij²` for `S = (J + Jᵀ)/2`.
    #[default]
    Rademacher,
    /// Standard normal entries: `Var = 2 Σ_{i,j} S_ij²`.
    Gaussian,
}

impl Probe {
    /// Every probe distribution.
    pub const ALL: [Probe; 2] = [Probe::Rademacher, Probe::Gaussian];

    /// The name [`std::str::FromStr`] parses and [`std::fmt::Display`] prints.
    pub fn name(self) -> &'static str {
        match self {
            Probe::Rademacher => "rademacher",
            Probe::Gaussian => "gaussian",
        }
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Probe {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase();
        Probe::ALL
            .into_iter()
            .find(|p| p.name() == key)
            .ok_or_else(|| Error::Invalid(format!("unknown probe distribution '{s}' (valid: rademacher, gaussian)")))
    }
}

/// How the divergence `div v = tr(∂v/∂x)` is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Divergence {
    /// [`Divergence::Exact`] up to [`AUTO_EXACT_MAX_DIM`] dimensions, one Rademacher probe above.
    #[default]
    Auto,
    /// The trace of the Jacobian, one backward pass per dimension: exact, costs `d` passes.
    Exact,
    /// Hutchinson's estimator `mean_k ε_kᵀ (∂v/∂x) ε_k`: one backward pass per probe, unbiased.
    /// The probes are drawn once per point and solve (seeded by [`crate::LikelihoodOptions::seed`])
    /// and held fixed over time, so the integral is an unbiased estimate too.
    Hutchinson {
        /// Probes per point (at least 1): the estimator's variance falls as `1/probes`.
        probes: usize,
        /// Their distribution.
        kind: Probe,
    },
}

impl Divergence {
    /// The concrete choice for data of dimension `dim` ([`Divergence::Auto`] resolved).
    pub fn resolve(self, dim: usize) -> Divergence {
        match self {
            Divergence::Auto if dim <= AUTO_EXACT_MAX_DIM => Divergence::Exact,
            Divergence::Auto => Divergence::Hutchinson { probes: 1, kind: Probe::Rademacher },
            d => d,
        }
    }

    /// Backward passes per field evaluation in dimension `dim`.
    pub fn backward_passes(self, dim: usize) -> usize {
        match self.resolve(dim) {
            Divergence::Hutchinson { probes, .. } => probes,
            _ => dim,
        }
    }
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Divergence::Auto => f.write_str("auto"),
            Divergence::Exact => f.write_str("exact"),
            Divergence::Hutchinson { probes, kind } => write!(f, "hutchinson:{probes}:{kind}"),
        }
    }
}

/// Parses `auto`, `exact`, or `hutchinson[:PROBES[:rademacher|gaussian]]` (default 1 Rademacher
/// probe), the form [`std::fmt::Display`] prints, so a CLI flag can carry the choice.
impl std::str::FromStr for Divergence {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase();
        let mut parts = key.split(':');
        let bad = || Error::Invalid(format!("unknown divergence '{s}' (valid: auto, exact, hutchinson[:PROBES[:rademacher|gaussian]])"));
        let d = match parts.next() {
            Some("auto") => Divergence::Auto,
            Some("exact") => Divergence::Exact,
            Some("hutchinson") => {
                let probes = match parts.next() {
                    Some(p) => p.parse::<usize>().map_err(|_| bad())?,
                    None => 1,
                };
                let kind = match parts.next() {
                    Some(k) => k.parse()?,
                    None => Probe::Rademacher,
                };
                Divergence::Hutchinson { probes, kind }
            }
            _ => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        d.validate()?;
        Ok(d)
    }
}

impl Divergence {
    /// At least one Hutchinson probe.
    pub(crate) fn validate(self) -> Result<()> {
        match self {
            Divergence::Hutchinson { probes: 0, .. } => Err(Error::Invalid("Hutchinson needs at least 1 probe".into())),
            _ => Ok(()),
        }
    }
}

pub(crate) fn not_differentiable() -> Error {
    Error::Invalid(
        "the field's output has no autograd path from its input, so its divergence cannot be computed \
         (does it detach x or run under no_grad?)"
            .into(),
    )
}

/// `∂(Σ_rows out)/∂x`, with the graph kept for further passes when `keep` is set.
fn grad(out: &Tensor, x: &Tensor, keep: bool) -> Result<Tensor> {
    let g = Tensor::f_run_backward(&[out], &[x], keep, false)?.into_iter().next();
    match g {
        Some(g) if g.defined() => Ok(g),
        _ => Err(not_differentiable()),
    }
}

/// `Σ_i ∂v_i/∂x_i`, one backward pass per dimension (rows independent, so summing a column over
/// the batch gives each row's derivative at once).
pub(crate) fn exact_divergence(v: &Tensor, x: &Tensor, d: i64) -> Result<Tensor> {
    let mut div: Option<Tensor> = None;
    for i in 0..d {
        let g = grad(&v.f_select(1, i)?.f_sum(None::<Kind>)?, x, i + 1 < d)?.f_select(1, i)?;
        div = Some(match div {
            None => g,
            Some(acc) => acc.f_add(&g)?,
        });
    }
    div.ok_or_else(|| Error::Invalid("zero-dimensional points".into()))
}

/// `mean_k ε_kᵀ (∂v/∂x) ε_k` as `mean_k Σ_j (∂(v·ε_k)/∂x)_j ε_kj`, one backward pass per probe.
pub(crate) fn hutchinson(v: &Tensor, x: &Tensor, probes: &Tensor) -> Result<Tensor> {
    let k = probes.size()[0];
    let mut acc: Option<Tensor> = None;
    for p in 0..k {
        let e = probes.f_select(0, p)?;
        let g = grad(&v.f_mul(&e)?.f_sum(None::<Kind>)?, x, p + 1 < k)?;
        let term = g.f_mul(&e)?.f_sum_dim_intlist(1i64, false, None::<Kind>)?;
        acc = Some(match acc {
            None => term,
            Some(a) => a.f_add(&term)?,
        });
    }
    Ok(acc.ok_or_else(|| Error::Invalid("Hutchinson needs at least 1 probe".into()))?.f_div_scalar(k as f64)?)
}

/// SplitMix64's output function (Steele, Lea & Flood 2014): a bijective mixer of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `i`-th output of the SplitMix64 stream of `key`: counter-based, so any element is drawn
/// directly, which keeps each point's probes independent of the chunking.
fn splitmix(key: u64, i: u64) -> u64 {
    mix(key.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

/// Uniform on `(0, 1]` (when `open_zero`) or `[0, 1)` from the top 53 bits.
fn unit(bits: u64, open_zero: bool) -> f64 {
    ((bits >> 11) as f64 + if open_zero { 1.0 } else { 0.0 }) * (1.0 / (1u64 << 53) as f64)
}

/// Probes of points `first_row..first_row + rows`, shape `[probes, rows, d]`, on `like`'s
/// device and kind. Element `(point i, probe k, coordinate j)` is drawn from counter
/// `(i·probes + k)·d + j` of the seed's stream.
pub(crate) fn probe_tensor(seed: u64, kind: Probe, first_row: usize, rows: usize, probes: usize, d: usize, like: &Tensor) -> Result<Tensor> {
    let key = mix(seed ^ 0x6A09_E667_F3BC_C909);
    let mut data = Vec::with_capacity(rows * probes * d);
    for r in first_row..first_row + rows {
        for k in 0..probes {
            for j in 0..d {
                let idx = ((r * probes + k) * d + j) as u64;
                data.push(match kind {
                    Probe::Rademacher => {
                        if splitmix(key, idx) >> 63 == 0 {
                            1.0
                        } else {
                            -1.0
                        }
                    }
                    Probe::Gaussian => {
                        let u1 = unit(splitmix(key, 2 * idx), true);
                        let u2 = unit(splitmix(key, 2 * idx + 1), false);
                        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
                    }
                });
            }
        }
    }
    Ok(Tensor::f_from_slice(&data)?
        .f_reshape([rows as i64, probes as i64, d as i64])?
        .f_permute([1i64, 0, 2])?
        .f_contiguous()?
        .f_to_kind(like.f_kind()?)?
        .f_to_device(like.device())?)
}
