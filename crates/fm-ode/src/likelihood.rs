//! Log-likelihoods under the flow: the divergence-augmented ODE.
//!
//! Along a solution `x_t` of `dx/dt = v(x, t)` the density pushed forward by the flow obeys
//! `d/dt log q_t(x_t) = −div v(x_t, t)`. Integrating `d/dt [x, l] = [v(x, t), div v(x, t)]`
//! with `l = 0` at the grid's first time `a` up to its last time `b` therefore gives
//! `log q_a(x_a) = log q_b(x_b) + l(b)`. With the usual grid from 1 to 0 that is
//! `log q_1(x_1) = log p_0(x_0) − ∫₀¹ div v(x_t, t) dt`, the source density `p_0` being the
//! caller's ([`Likelihood::log_prob`], [`standard_normal_log_prob`]).
//!
//! The augmented state is one `[n, d + 1]` tensor, so every method (any tableau) carries it unchanged
//! (Dopri5 measures its error over both parts). The divergence is taken with autograd inside
//! each field evaluation only; the solve itself runs without gradient tracking and every
//! returned value is detached, so no graph outlives an evaluation.

use crate::divergence::{exact_divergence, hutchinson, not_differentiable, probe_tensor};
use crate::{solve_with, AdaptiveOptions, ButcherTableau, Divergence, Error, Method, Result, SolveOptions, Stepping, TimeGrid, VectorField};
use tch::{Kind, Tensor};

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
/// with the integrated divergence of `field`, `chunk_size` points at a time:
/// [`log_likelihood_with`] with the method's tableau and [`Method::stepping`].
///
/// The field must be differentiable in `x` by autograd (it is evaluated with gradient tracking
/// on, whatever the caller's mode) and must treat rows independently.
///
/// # Errors
/// As [`log_likelihood_with`].
pub fn log_likelihood(field: &dyn VectorField, x: &Tensor, grid: &TimeGrid, method: Method, opts: &LikelihoodOptions) -> Result<Likelihood> {
    log_likelihood_with(field, x, grid, method.tableau(), method.stepping(), opts)
}

/// [`log_likelihood`] with any explicit Runge–Kutta `tableau`, in fixed or adaptive steps
/// ([`crate::solve_with`]); adaptive steps use `opts.adaptive` on the augmented state.
///
/// # Errors
/// [`Error::Invalid`] for points not of shape `[n, d]` with `d >= 1`, non-floating points, a
/// zero chunk size, a Hutchinson estimator without probes, a field whose output has the wrong
/// shape or no autograd path from its input; every error of [`crate::solve_with`].
pub fn log_likelihood_with(
    field: &dyn VectorField,
    x: &Tensor,
    grid: &TimeGrid,
    tableau: &ButcherTableau,
    stepping: Stepping,
    opts: &LikelihoodOptions,
) -> Result<Likelihood> {
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
        let sol = solve_with(&aug, &state, grid, tableau, stepping, solve_opts)?;
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
