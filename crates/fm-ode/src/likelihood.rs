//! Log-likelihoods under the flow: the divergence-augmented ODE.
//!
//! Along a solution `x_t` of `dx/dt = v(x, t)` the density pushed forward by the flow obeys
//! `d/dt log q_t(x_t) = −div v(x_t, t)`. Integrating `d/dt [x, l] = [v(x, t), div v(x, t)]`
//! with `l = 0` at the grid's first time `a` up to its last time `b` therefore gives
//! `log q_a(x_a) = log q_b(x_b) + l(b)`. With the usual grid from 1 to 0 that is
//! `log q_1(x_1) = log p_0(x_0) − ∫₀¹ div v(x_t, t) dt`, the source density `p_0` being the
//! caller's ([`Likelihood::log_prob`], [`standard_normal_log_prob`]).
//!
//! The augmented state is one `[n, d + 1]` tensor, so every [`Method`] carries it unchanged
//! (Dopri5 measures its error over both parts). The divergence is taken with autograd inside
//! each field evaluation only; the solve itself runs without gradient tracking and every
//! returned value is detached, so no graph outlives an evaluation.

use crate::{solve, AdaptiveOptions, Error, Method, Result, SolveOptions, TimeGrid, VectorField};
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
    /// The probes are drawn once per point and solve (seeded by [`LikelihoodOptions::seed`])
    /// and held fixed over time, so the integral is an unbiased estimate too.
    Hutchinson { probes: usize, kind: Probe },
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
    fn validate(self) -> Result<()> {
        match self {
            Divergence::Hutchinson { probes: 0, .. } => Err(Error::Invalid("Hutchinson needs at least 1 probe".into())),
            _ => Ok(()),
        }
    }
}

/// Settings of [`log_likelihood`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LikelihoodOptions {
    /// How the divergence is computed (default [`Divergence::Auto`]).
    pub divergence: Divergence,
    /// Points solved together (default 1024): memory (the autograd graph of one evaluation)
    /// stays bounded however many points are asked for. With a fixed-step method the results
    /// do not depend on it; Dopri5 sizes its steps per chunk.
    pub chunk_size: usize,
    /// Seeds the Hutchinson probes (default 0). Point `i` gets the same probes whatever the chunking.
    pub seed: u64,
    /// Tolerances of [`Method::Dopri5`] on the augmented state.
    pub adaptive: AdaptiveOptions,
}

impl Default for LikelihoodOptions {
    fn default() -> Self {
        Self { divergence: Divergence::Auto, chunk_size: 1024, seed: 0, adaptive: AdaptiveOptions::default() }
    }
}

/// What [`log_likelihood`] returns: the pieces of `log q_a(x_a) = log q_b(x_b) + delta_log_p`.
#[derive(Debug)]
pub struct Likelihood {
    /// The points carried to the grid's last time (`x_0`, in the source, for a grid from 1 to 0), `[n, d]`.
    pub x0: Tensor,
    /// `∫ div v dt` from the grid's first to its last time, `[n]` (for a grid from 1 to 0:
    /// `−∫₀¹ div v dt`), to add to the source's log-density of `x0`.
    pub delta_log_p: Tensor,
    /// Field evaluations, summed over the chunks (each also costs the divergence's backward passes).
    pub nfe: usize,
    /// Backward passes, summed over the chunks.
    pub backward_passes: usize,
    /// The divergence computation used ([`Divergence::Auto`] resolved).
    pub divergence: Divergence,
}

impl Likelihood {
    /// `source_log_prob(x0) + delta_log_p`: the log-density of the input points, given the
    /// log-density (`[n, d] → [n]`) of the distribution at the grid's last time.
    pub fn log_prob(&self, source_log_prob: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let lp = source_log_prob(&self.x0)?;
        if lp.size() != self.delta_log_p.size() {
            return Err(Error::Invalid(format!("the source log-density returned shape {:?}, expected {:?}", lp.size(), self.delta_log_p.size())));
        }
        Ok(lp.f_add(&self.delta_log_p)?)
    }
}

/// Log-density of the standard normal `N(0, I)` at each row of `x: [n, d]`, shape `[n]`: the
/// usual flow-matching source, so `lik.log_prob(standard_normal_log_prob)` is the model's log-likelihood.
pub fn standard_normal_log_prob(x: &Tensor) -> Result<Tensor> {
    let size = x.size();
    if size.len() != 2 {
        return Err(Error::Invalid(format!("expected points of shape [n, d], got {size:?}")));
    }
    let log_norm = -0.5 * size[1] as f64 * (2.0 * std::f64::consts::PI).ln();
    Ok(x.f_square()?.f_sum_dim_intlist(1i64, false, None::<Kind>)?.f_mul_scalar(-0.5)?.f_add_scalar(log_norm)?)
}

/// Carries the points `x: [n, d]` through `grid` (usually from 1 to 0) with `method`, together
/// with the integrated divergence of `field`, `chunk_size` points at a time.
///
/// The field must be differentiable in `x` by autograd (it is evaluated with gradient tracking
/// on, whatever the caller's mode) and must treat rows independently.
pub fn log_likelihood(field: &dyn VectorField, x: &Tensor, grid: &TimeGrid, method: Method, opts: &LikelihoodOptions) -> Result<Likelihood> {
    let size = x.size();
    if size.len() != 2 || size[1] == 0 {
        return Err(Error::Invalid(format!("expected points of shape [n, d] with d >= 1, got {size:?}")));
    }
    let kind = x.f_kind()?;
    if !matches!(kind, Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double) {
        return Err(Error::Invalid(format!("expected floating-point points, got {kind:?}")));
    }
    if opts.chunk_size == 0 {
        return Err(Error::Invalid("the chunk size must be at least 1".into()));
    }
    let (n, d) = (size[0] as usize, size[1] as usize);
    let divergence = opts.divergence.resolve(d);
    divergence.validate()?;
    let solve_opts = SolveOptions { keep_trajectory: false, adaptive: opts.adaptive };

    let (mut x0, mut delta, mut nfe) = (Vec::new(), Vec::new(), 0);
    for start in (0..n).step_by(opts.chunk_size) {
        let len = opts.chunk_size.min(n - start);
        let xc = x.f_narrow(0, start as i64, len as i64)?.f_detach()?;
        let probes = match divergence {
            Divergence::Hutchinson { probes, kind: pk } => Some(probe_tensor(opts.seed, pk, start, len, probes, d, x)?),
            _ => None,
        };
        let aug = Augmented { field, dim: d as i64, probes };
        let state = Tensor::f_cat(&[xc.shallow_clone(), xc.f_new_zeros([len as i64, 1], (kind, x.device()))?], 1)?;
        let sol = solve(&aug, &state, grid, method, solve_opts)?;
        nfe += sol.nfe;
        x0.push(sol.x.f_narrow(1, 0, d as i64)?);
        delta.push(sol.x.f_select(1, d as i64)?);
    }
    let (x0, delta_log_p) =
        if n == 0 { (x.f_detach_copy()?, x.f_new_zeros([0], (kind, x.device()))?) } else { (Tensor::f_cat(&x0, 0)?, Tensor::f_cat(&delta, 0)?) };
    Ok(Likelihood { x0, delta_log_p, nfe, backward_passes: nfe * divergence.backward_passes(d), divergence })
}

/// The augmented field `[x, l] ↦ [v(x, t), div v(x, t)]`.
struct Augmented<'a> {
    field: &'a dyn VectorField,
    dim: i64,
    /// `[probes, rows, d]` for Hutchinson; `None` for the exact divergence.
    probes: Option<Tensor>,
}

impl VectorField for Augmented<'_> {
    fn velocity(&self, s: &Tensor, t: f64) -> Result<Tensor> {
        let kind = s.f_kind()?;
        let x = s.f_narrow(1, 0, self.dim)?.f_detach()?;
        let check = |v: &Tensor| match v.size() == x.size() {
            true => Ok(()),
            false => Err(Error::Invalid(format!("the field returned shape {:?} for points of shape {:?}", v.size(), x.size()))),
        };
        // The field's own exact divergence where it has one, else autograd.
        let own = if self.probes.is_none() { self.field.velocity_and_divergence(&x, t)? } else { None };
        let (v, div) = match own {
            Some((v, div)) => {
                check(&v)?;
                (v, div)
            }
            None => {
                let x = x.f_set_requires_grad(true)?;
                tch::with_grad(|| {
                    let v = self.field.velocity(&x, t)?;
                    check(&v)?;
                    if !v.requires_grad() {
                        return Err(not_differentiable());
                    }
                    let div = match &self.probes {
                        None => exact_divergence(&v, &x, self.dim)?,
                        Some(p) => hutchinson(&v, &x, p)?,
                    };
                    Ok((v, div))
                })?
            }
        };
        Ok(Tensor::f_cat(&[v.f_detach()?.f_to_kind(kind)?, div.f_detach()?.f_to_kind(kind)?.f_unsqueeze(1)?], 1)?)
    }
}

fn not_differentiable() -> Error {
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
fn exact_divergence(v: &Tensor, x: &Tensor, d: i64) -> Result<Tensor> {
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
fn hutchinson(v: &Tensor, x: &Tensor, probes: &Tensor) -> Result<Tensor> {
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
fn probe_tensor(seed: u64, kind: Probe, first_row: usize, rows: usize, probes: usize, d: usize, like: &Tensor) -> Result<Tensor> {
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
