//! The exact flow of a Gaussian-mixture target: the velocity field flow matching tries to
//! learn, the marginal density `p_t` at every time, and the part of the training loss no
//! model can remove.
//!
//! For an affine path `x_t = α_t x1 + σ_t x0 + s ε` ([`ProbabilityPath::affine`]) with `x0 ~
//! N(m, S)`, `x1 ~ Σ_k w_k N(μ_k, Σ_k)` and `ε ~ N(0, I)` drawn independently, everything is
//! Gaussian given the component `k` (the linear-Gaussian conditioning of any textbook, e.g.
//! Bishop 2006 §2.3.1; for flow matching's affine paths and the marginal field as a conditional
//! expectation, Lipman et al. 2024, "Flow Matching Guide and Code"):
//! - `x_t | k ~ N(m_k(t), S_k(t))` with `m_k(t) = α_t μ_k + σ_t m` and
//!   `S_k(t) = α_t² Σ_k + σ_t² S + s² I`, so `p_t(x) = Σ_k w_k N(x; m_k(t), S_k(t))`;
//! - the conditional velocity `u_t = α̇_t x1 + σ̇_t x0` has `Cov(u_t, x_t | k) = C_k(t) = α̇_t α_t Σ_k + σ̇_t σ_t S`,
//!   so `E[u_t | x_t = x, k] = α̇_t μ_k + σ̇_t m + C_k S_k⁻¹ (x − m_k(t))` and
//!   `Cov(u_t | x_t, k) = α̇_t² Σ_k + σ̇_t² S − C_k S_k⁻¹ C_kᵀ`;
//! - the marginal field `v*(x, t) = E[u_t | x_t = x]` averages those means with the posterior
//!   weights `γ_k(x, t) ∝ w_k N(x; m_k(t), S_k(t))`;
//! - the flow-matching loss of any model `v` splits as `E‖v − u_t‖² = E‖v − v*‖² + L_floor`,
//!   `L_floor = E‖u_t − v*(x_t, t)‖²` (the cross term vanishes because `v*` is the conditional
//!   mean). [`ExactFlow::loss_floor`] estimates `L_floor` with the inner expectation in closed
//!   form, `E[‖u_t − v*‖² | x_t] = Σ_k γ_k (tr Cov(u_t | x_t, k) + ‖E[u_t | x_t, k]‖²) − ‖v*‖²`.
//!
//! Covered: the paths `linear`, `icfm:σ`, `lipman:σ_min` and `vp`, with independent pairs.
//! Not covered: minibatch OT and Sinkhorn couplings (the pairs are then dependent through the
//! batch, and `(x0, x1)` is no longer a product of Gaussians and a mixture), and the
//! Schrödinger-bridge path (it trains on entropic-OT pairs). `S_k(t)` is positive definite at
//! every `t ∈ [0, 1]` because every `Σ_k` and `S` is and `α_t, σ_t` never vanish together, so
//! the ends of the interval need no special case (Lipman's path at `t = 1` and VP at `t = 1`
//! give `S_k = Σ_k + …`).
//!
//! Losses here are on the training loss's scale: the mean over coordinates (`/ dim`).
//!
//! ```
//! use fm_dist::{GaussianMixture, StandardNormal, Target};
//! use fm_train::{exact::ExactFlow, ProbabilityPath, TimeSampling};
//! use rand::{rngs::StdRng, SeedableRng};
//!
//! let flow = ExactFlow::new(&GaussianMixture::seed(), &StandardNormal::new(2).unwrap(), ProbabilityPath::Linear).unwrap();
//! // At t = 0 the marginal is the source, at t = 1 the target.
//! let x = ndarray::array![[0.5, -1.0]];
//! let lp0 = flow.log_prob_t(x.view(), 0.0).unwrap()[0];
//! assert!((lp0 - StandardNormal::new(2).unwrap().log_prob(x.view()).unwrap()[0]).abs() < 1e-12);
//! let floor = flow.loss_floor(TimeSampling::Uniform, 256, 16, &mut StdRng::seed_from_u64(0)).unwrap();
//! assert!(floor.mean > 0.0 && floor.se > 0.0);
//! ```

use crate::path::AffineCoefficients;
use crate::{Coupling, Error, HasDevice, ProbabilityPath, Result, TimeSampling};
use fm_dist::linalg::{cholesky, solve_lower, solve_lower_transpose};
use fm_dist::metrics::Estimate;
use fm_dist::{GaussianMixture, Target};
use fm_ode::VectorField;
use ndarray::{Array1, Array2, ArrayView2};
use rand::{Rng, RngCore};
use tch::{Device, Kind, Tensor};

/// What the exact flow supports, for error messages.
pub const SUPPORTED: &str = "the exact flow needs a Gaussian-mixture target (gmm3, 8gaussians, 25gaussians or spec:FILE), \
a Gaussian source (normal:D or a one-component spec:FILE), an affine path (linear, icfm:σ, lipman:σ_min or vp) \
and independent pairs (coupling independent)";

/// The seed of the loss floor every training run prints: the floor belongs to the target,
/// source, path and time law, not to the training seed, so all runs of one setting print the
/// same figure.
pub const FLOOR_SEED: u64 = 0x000f_1002;

/// Independent replicates of the Monte Carlo estimates over time (see [`ExactFlow::loss_floor`]).
pub const REPLICATES: usize = 16;

/// About the most values one tensor of a Monte Carlo estimate holds (`[times, points, K, D]`).
const MAX_VALUES: usize = 1 << 20;

/// Times and points per time of the floor a training run prints on small mixtures (1,048,576
/// points: ± 0.0016 on the seed experiment, whose floor is 2.98; docs/exact-flow.md); larger
/// ones get fewer ([`floor_draws`]).
pub const FLOOR_DRAWS: (usize, usize) = (4096, 256);

/// The work (`times × points × K × D²`, the size of the largest product) the floor a training
/// run prints may cost: the seed mixture's [`FLOOR_DRAWS`] take 12.6 M, about a second here.
pub const FLOOR_WORK: usize = 1 << 24;

/// [`FLOOR_DRAWS`], cut for a mixture of `k` components in `d` dimensions so that the work
/// stays within [`FLOOR_WORK`]: times first (down to 2 per replicate), then points per time
/// (down to 4). A 64-component 32-D mixture gets 32 × 8. The printed standard error says what
/// precision that buys.
pub fn floor_draws(k: usize, d: usize) -> (usize, usize) {
    let per_point = (k * d * d).max(1);
    let (mut times, mut points) = FLOOR_DRAWS;
    while times > 2 * REPLICATES && times * points * per_point > FLOOR_WORK {
        times /= 2;
    }
    while points > 4 && times * points * per_point > FLOOR_WORK {
        points /= 2;
    }
    (times, points)
}

/// The closed-form flow from a Gaussian source to a Gaussian-mixture target along an affine
/// path with independent pairs (see the [module docs](self)). A [`VectorField`] like a trained
/// model: every integrator, the likelihood code and the figures take it unchanged.
#[derive(Debug, Clone)]
pub struct ExactFlow {
    target: GaussianMixture,
    source_mean: Array1<f64>,
    source_cov: Array2<f64>,
    path: ProbabilityPath,
    device: Device,
}

/// The exact flow at `T` times: per time and component, what the field needs (row-major).
struct Slices {
    times: Vec<f64>,
    /// `m_k(t)`, `[T, K, D]`.
    means: Vec<f64>,
    /// `S_k(t)`, `[T, K, D, D]`.
    covs: Vec<f64>,
    /// The Cholesky factor of `S_k(t)`, `[T, K, D, D]` (to draw from `p_t`).
    chol: Vec<f64>,
    /// `S_k(t)⁻¹`, `[T, K, D, D]`.
    precision: Vec<f64>,
    /// `C_k S_k⁻¹`, `[T, K, D, D]`.
    gain: Vec<f64>,
    /// `α̇_t μ_k + σ̇_t m`, `[T, K, D]`.
    offset: Vec<f64>,
    /// `ln w_k − ½ ln det S_k − D/2 ln 2π`, `[T, K]`.
    log_norm: Vec<f64>,
    /// `tr Cov(u_t | x_t, k)`, `[T, K]`.
    residual_trace: Vec<f64>,
}

impl ExactFlow {
    /// The exact flow of `path` from `source` to `target`, on the CPU.
    ///
    /// # Errors
    /// [`Error::Exact`] naming what is not supported (see [`SUPPORTED`]): a target that is
    /// not a Gaussian mixture, a source that is not one Gaussian, a path that is not affine,
    /// or dimensions that differ.
    pub fn new(target: &dyn Target, source: &dyn Target, path: ProbabilityPath) -> Result<Self> {
        let unsupported = |what: String| Err(Error::Exact(format!("{what}; {SUPPORTED}")));
        let Some(mixture) = target.as_mixture() else {
            return unsupported(format!("the target {} is not a Gaussian mixture", target.name()));
        };
        let Some((source_mean, source_cov)) = source.as_gaussian() else {
            return unsupported(format!("the source {} is not a single Gaussian", source.name()));
        };
        if path.affine(0.5).is_none() {
            return unsupported(format!("the path {path} is not affine in independent samples"));
        }
        if source.dim() != target.dim() {
            return Err(Error::Exact(format!("the source {} is {}-D but the target {} is {}-D", source.name(), source.dim(), target.name(), target.dim())));
        }
        path.validate()?;
        Ok(Self { target: mixture.clone(), source_mean, source_cov, path, device: Device::Cpu })
    }

    /// [`ExactFlow::new`] for a training setting: also refuses couplings other than
    /// [`Coupling::Independent`], whose pairs are not drawn independently.
    ///
    /// # Errors
    /// As [`ExactFlow::new`], and [`Error::Exact`] for a dependent coupling.
    pub fn for_training(target: &dyn Target, source: &dyn Target, path: ProbabilityPath, coupling: Coupling) -> Result<Self> {
        if coupling != Coupling::Independent {
            return Err(Error::Exact(format!("the coupling {coupling} pairs samples through the batch; {SUPPORTED}")));
        }
        Self::new(target, source, path)
    }

    /// The same flow evaluated on `device` (its [`VectorField`] output lives there).
    pub fn on(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The dimension of the points.
    pub fn dim(&self) -> usize {
        self.target.dim()
    }

    /// The times and points per time of the floor a training run prints ([`floor_draws`] for this mixture).
    pub fn floor_draws(&self) -> (usize, usize) {
        floor_draws(self.target.n_components(), self.dim())
    }

    /// The target the flow ends at (up to [`ExactFlow::blurred_ends`]).
    pub fn target(&self) -> &GaussianMixture {
        &self.target
    }

    /// The path the flow follows.
    pub fn path(&self) -> ProbabilityPath {
        self.path
    }

    /// Where the flow's ends are not the source and the target, what they are instead: I-CFM's
    /// constant noise blurs both (`p_0 = N(m, S + s² I)`, `p_1` the target convolved with
    /// `N(0, s² I)`), Lipman's path stops `σ_min` short of the target (`p_1` the target convolved
    /// with `N(0, σ_min² S)`). Samples of the source carried by such a flow do not follow the
    /// target exactly, and its KL to the target is that blur's, not an integrator's. `None` for
    /// `linear`, `vp` and `lipman:0`.
    pub fn blurred_ends(&self) -> Option<String> {
        match self.path {
            ProbabilityPath::Icfm { sigma } if sigma > 0.0 => Some(format!(
                "the {} path's exact flow runs from the source blurred by N(0, {:.4} I) to the target blurred by the same: sampled from the source, it does not reach the target exactly",
                self.path,
                sigma * sigma
            )),
            ProbabilityPath::Lipman { sigma_min } if sigma_min > 0.0 => Some(format!(
                "the {} path's exact flow ends at the target blurred by N(0, {:.4} S) (S the source's covariance), not at the target",
                self.path,
                sigma_min * sigma_min
            )),
            _ => None,
        }
    }

    /// The marginal `p_t` as a Gaussian mixture (`p_0` the source, `p_1` the target, up to I-CFM's noise).
    ///
    /// # Errors
    /// [`Error::Exact`] for a time outside `[0, 1]` or not finite.
    pub fn marginal(&self, t: f64) -> Result<GaussianMixture> {
        let sl = self.slices(&[t])?;
        let (k, d) = (self.target.n_components(), self.dim());
        let means = Array2::from_shape_vec((k, d), sl.means).map_err(|e| Error::Exact(e.to_string()))?;
        let covs =
            sl.covs.chunks(d * d).map(|c| Array2::from_shape_vec((d, d), c.to_vec()).map_err(|e| Error::Exact(e.to_string()))).collect::<Result<Vec<_>>>()?;
        Ok(GaussianMixture::new(self.target.weights().to_vec(), means, covs)?)
    }

    /// `log p_t(x)` of each row of `x: [n, D]`, in nats.
    ///
    /// # Errors
    /// A bad time (as [`ExactFlow::marginal`]) or points of another dimension.
    pub fn log_prob_t(&self, x: ArrayView2<f64>, t: f64) -> Result<Array1<f64>> {
        Ok(self.marginal(t)?.log_prob(x)?)
    }

    fn slices(&self, times: &[f64]) -> Result<Slices> {
        let (k, d) = (self.target.n_components(), self.dim());
        let n = times.len();
        let mut out = Slices {
            times: times.to_vec(),
            means: Vec::with_capacity(n * k * d),
            covs: Vec::with_capacity(n * k * d * d),
            chol: Vec::with_capacity(n * k * d * d),
            precision: Vec::with_capacity(n * k * d * d),
            gain: Vec::with_capacity(n * k * d * d),
            offset: Vec::with_capacity(n * k * d),
            log_norm: Vec::with_capacity(n * k),
            residual_trace: Vec::with_capacity(n * k),
        };
        let (mut col, mut y, mut z) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
        for &t in times {
            if !(0.0..=1.0).contains(&t) {
                return Err(Error::Exact(format!("time {t} is outside [0, 1]")));
            }
            let Some(AffineCoefficients { alpha: a, sigma: s, d_alpha: da, d_sigma: ds, noise }) = self.path.affine(t) else {
                return Err(Error::Exact(format!("the path {} is not affine; {SUPPORTED}", self.path)));
            };
            for (c, (mu, sig)) in self.target.means().rows().into_iter().zip(self.target.covariances()).enumerate() {
                let cov = sig * (a * a) + &self.source_cov * (s * s) + Array2::<f64>::eye(d) * (noise * noise);
                let cross = sig * (da * a) + &self.source_cov * (ds * s);
                let l = cholesky(cov.view())?;
                // S⁻¹ column by column: S⁻¹ e_j = L⁻ᵀ L⁻¹ e_j.
                let mut precision = Array2::<f64>::zeros((d, d));
                for j in 0..d {
                    col.iter_mut().enumerate().for_each(|(i, v)| *v = f64::from(i == j));
                    solve_lower(l.view(), ndarray::ArrayView1::from(&col[..]), &mut y);
                    solve_lower_transpose(l.view(), &y, &mut z);
                    precision.column_mut(j).assign(&ndarray::ArrayView1::from(&z[..]));
                }
                let gain = cross.dot(&precision);
                let u_cov = sig * (da * da) + &self.source_cov * (ds * ds);
                out.residual_trace.push((&u_cov - &gain.dot(&cross.t())).diag().sum());
                let half_log_det: f64 = l.diag().iter().map(|v| v.ln()).sum();
                out.log_norm.push(self.target.weights()[c].ln() - half_log_det - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln());
                out.means.extend((&mu * a + &self.source_mean * s).iter());
                out.offset.extend((&mu * da + &self.source_mean * ds).iter());
                out.covs.extend(cov.iter());
                out.chol.extend(l.iter());
                out.precision.extend(precision.iter());
                out.gain.extend(gain.iter());
            }
        }
        Ok(out)
    }

    /// Per time `t` of `sl` and row of `x: [T, P, D]`: the posterior weights `γ: [T, P, K]` and the
    /// conditional velocity means `E[u_t | x, k]: [T, P, K, D]`, and `S_k⁻¹ (x − m_k): [T, P, K, D]`,
    /// in `x`'s kind and device, differentiable in `x`.
    fn posterior(&self, sl: &Slices, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (t, k, d) = (sl.times.len() as i64, self.target.n_components() as i64, self.dim() as i64);
        let opts = (x.f_kind()?, x.device());
        let tensor = |v: &[f64], shape: &[i64]| -> Result<Tensor> { Ok(Tensor::f_from_slice(v)?.f_reshape(shape)?.f_to_kind(opts.0)?.f_to_device(opts.1)?) };
        let diff = x.f_unsqueeze(2)?.f_sub(&tensor(&sl.means, &[t, 1, k, d])?)?;
        let pd = Tensor::f_einsum("tkij,tpkj->tpki", &[tensor(&sl.precision, &[t, k, d, d])?, diff.shallow_clone()], None::<&[i64]>)?;
        let maha = diff.f_mul(&pd)?.f_sum_dim_intlist(-1i64, false, None::<Kind>)?;
        let logits = tensor(&sl.log_norm, &[t, 1, k])?.f_sub(&maha.f_mul_scalar(0.5)?)?;
        let gamma = logits.f_softmax(-1i64, None::<Kind>)?;
        let spread = Tensor::f_einsum("tkij,tpkj->tpki", &[tensor(&sl.gain, &[t, k, d, d])?, diff], None::<&[i64]>)?;
        let mk = tensor(&sl.offset, &[t, 1, k, d])?.f_add(&spread)?;
        Ok((gamma, mk, pd))
    }

    /// `∇log p_t` at `x: [T, P, D]`, `[T, P, D]`: `−Σ_k γ_k S_k⁻¹ (x − m_k)`, the mixture's
    /// score (the exact score the SDE sampler is checked against).
    fn score_at(&self, sl: &Slices, x: &Tensor) -> Result<Tensor> {
        let (gamma, _, pd) = self.posterior(sl, x)?;
        Ok(gamma.f_unsqueeze(-1)?.f_mul(&pd)?.f_sum_dim_intlist(2i64, false, None::<Kind>)?.f_neg()?)
    }

    /// `v*` at `x: [T, P, D]`, `[T, P, D]`.
    fn velocity_at(&self, sl: &Slices, x: &Tensor) -> Result<Tensor> {
        let (gamma, mk, _) = self.posterior(sl, x)?;
        Ok(gamma.f_unsqueeze(-1)?.f_mul(&mk)?.f_sum_dim_intlist(2i64, false, None::<Kind>)?)
    }

    /// `per_time` points of `p_t` at each time of `sl`, as an `f64` tensor `[T, P, D]` on the CPU.
    /// (`GaussianMixture::sample` draws the same way, from one mixture; here every time has its own
    /// covariances, already factored in `sl`, so no mixture is built per time.)
    fn draw(&self, sl: &Slices, per_time: usize, rng: &mut dyn RngCore) -> Result<Tensor> {
        let (k, d) = (self.target.n_components(), self.dim());
        let cumulative: Vec<f64> = self
            .target
            .weights()
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w;
                Some(*acc)
            })
            .collect();
        let mut out = Vec::with_capacity(sl.times.len() * per_time * d);
        let mut z = vec![0.0; d];
        for ti in 0..sl.times.len() {
            for _ in 0..per_time {
                let u: f64 = rng.random();
                let c = cumulative.iter().position(|&cw| u < cw).unwrap_or(k - 1);
                z.iter_mut().for_each(|v| *v = rng.sample(rand_distr::StandardNormal));
                let (m, l) = (&sl.means[(ti * k + c) * d..][..d], &sl.chol[(ti * k + c) * d * d..][..d * d]);
                out.extend((0..d).map(|i| m[i] + (0..=i).map(|j| l[i * d + j] * z[j]).sum::<f64>()));
            }
        }
        Ok(Tensor::f_from_slice(&out)?.f_reshape([sl.times.len() as i64, per_time as i64, d as i64])?)
    }

    /// `L_floor`, the expected flow-matching loss of the exact field itself (no model can go
    /// below it), as the training loss reports it: the mean over coordinates of
    /// `E_t E_{x_t ~ p_t} E[‖u_t − v*(x_t, t)‖² | x_t]`, the inner expectation in closed form.
    ///
    /// Monte Carlo over `n_times` times spread over the law `time` (in [`REPLICATES`] independent
    /// randomly shifted replicates, whose spread gives the standard error) and `per_time` points
    /// of `p_t` at each, in `f64`.
    ///
    /// # Errors
    /// [`Error::Config`] for `n_times < 2 · REPLICATES` or `per_time == 0`; a failing solve of `S_k(t)`.
    pub fn loss_floor(&self, time: TimeSampling, n_times: usize, per_time: usize, rng: &mut dyn RngCore) -> Result<Estimate> {
        self.per_time_means(time, n_times, per_time, rng, |sl, x| {
            let (gamma, mk, _) = self.posterior(sl, x)?;
            let sum = |a: &Tensor, dim: i64| a.f_sum_dim_intlist(dim, false, None::<Kind>);
            let v = sum(&gamma.f_unsqueeze(-1)?.f_mul(&mk)?, 2)?;
            let (t, k) = (sl.times.len() as i64, self.target.n_components() as i64);
            let trace = Tensor::f_from_slice(&sl.residual_trace)?.f_reshape([t, 1, k])?;
            let second = trace.f_add(&sum(&mk.f_square()?, -1)?)?;
            let total = sum(&gamma.f_mul(&second)?, -1)?.f_sub(&sum(&v.f_square()?, -1)?)?;
            Ok(total.f_div_scalar(self.dim() as f64)?)
        })
    }

    /// The field error `E_t E_{x_t ~ p_t} ‖v(x_t, t) − v*(x_t, t)‖²` of a model `v`, as a mean
    /// over coordinates (the training loss's scale, so `loss ≈ floor + field error`); Monte Carlo
    /// as [`ExactFlow::loss_floor`], the model evaluated in `f32` on its device.
    ///
    /// # Errors
    /// As [`ExactFlow::loss_floor`], and the model's own errors.
    pub fn field_error(
        &self,
        model: &(impl VectorField + HasDevice + ?Sized),
        time: TimeSampling,
        n_times: usize,
        per_time: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Estimate> {
        self.per_time_means(time, n_times, per_time, rng, |sl, x| self.squared_error(model, sl, x))
    }

    /// The field error at each of `times` (each in `[0, 1]`), on `per_time ≥ 2` points of `p_t`:
    /// the curve over `t` that shows where a model is off.
    ///
    /// # Errors
    /// A bad time or count, and the model's own errors.
    pub fn field_error_curve(
        &self,
        model: &(impl VectorField + HasDevice + ?Sized),
        times: &[f64],
        per_time: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Vec<Estimate>> {
        if per_time < 2 {
            return Err(Error::Config(format!("a field error with a standard error needs at least 2 points per time, got {per_time}")));
        }
        times
            .iter()
            .map(|&t| {
                let sl = self.slices(&[t])?;
                let x = self.draw(&sl, per_time, rng)?;
                Ok(Estimate::of(&Vec::<f64>::try_from(self.squared_error(model, &sl, &x)?.f_get(0)?)?)?)
            })
            .collect()
    }

    /// `‖v(x, t) − v*(x, t)‖² / D` at the `f64` points `x: [T, P, D]`, `[T, P]`.
    fn squared_error(&self, model: &(impl VectorField + HasDevice + ?Sized), sl: &Slices, x: &Tensor) -> Result<Tensor> {
        let _no_grad = tch::no_grad_guard();
        let truth = self.velocity_at(sl, x)?;
        // The model takes one time per call.
        let v = sl
            .times
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                Ok(model
                    .velocity(&x.f_get(i as i64)?.f_to_kind(Kind::Float)?.f_to_device(model.device())?, t)?
                    .f_to_device(Device::Cpu)?
                    .f_to_kind(Kind::Double)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::f_stack(&v, 0)?.f_sub(&truth)?.f_square()?.f_mean_dim(-1i64, false, None::<Kind>)?)
    }

    /// The mean of `f` (a value per point, `[T, P]` for points `[T, P, D]`) over `t` from the law
    /// `time` and `x_t ~ p_t`: `n_times` times, `per_time` points of `p_t` at each.
    ///
    /// The times are spread evenly over the law (randomised quasi–Monte Carlo: `t = F⁻¹((i + U_r) / m)`,
    /// `i < m`, with a uniform shift `U_r` per replicate, [`REPLICATES`] replicates of
    /// `m = n_times / REPLICATES` times): the loss varies several-fold over `t`, and independent
    /// times made that variation the whole error (the seed's floor had a standard error of 0.03
    /// from 131,072 points). Each replicate is an unbiased estimate, independent of the others,
    /// so the standard error is that of the replicate means.
    fn per_time_means(
        &self,
        time: TimeSampling,
        n_times: usize,
        per_time: usize,
        rng: &mut dyn RngCore,
        f: impl Fn(&Slices, &Tensor) -> Result<Tensor>,
    ) -> Result<Estimate> {
        time.validate()?;
        if n_times < 2 * REPLICATES || per_time == 0 {
            return Err(Error::Config(format!(
                "a Monte Carlo estimate over time needs at least {} times ({REPLICATES} replicates of 2) and 1 point per time, got {n_times} × {per_time}",
                2 * REPLICATES
            )));
        }
        let _no_grad = tch::no_grad_guard();
        let m = n_times / REPLICATES;
        let mut replicates = Vec::with_capacity(REPLICATES);
        // Times of a replicate are evaluated together, in chunks that keep the largest tensor
        // (`[times, points, K, D]`) near a million values whatever the mixture.
        let chunk = (MAX_VALUES / (per_time * self.target.n_components() * self.dim()).max(1)).clamp(1, m);
        // libtorch's threads for this work, measured on one chunk drawn from a generator of its
        // own (the estimate's draws stay those of `rng`).
        let probe_times: Vec<f64> = (0..chunk).map(|i| (i as f64 + 0.5) / chunk as f64).collect();
        let probe_slices = self.slices(&probe_times)?;
        let probe_x = self.draw(&probe_slices, per_time, &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0))?;
        crate::threads::choose(|| f(&probe_slices, &probe_x).map(drop))?;
        for _ in 0..REPLICATES {
            let shift: f64 = rng.random();
            let times: Vec<f64> = (0..m).map(|i| time.quantile((i as f64 + shift) / m as f64).clamp(0.0, 1.0)).collect();
            let mut sum = 0.0;
            for part in times.chunks(chunk) {
                let sl = self.slices(part)?;
                let x = self.draw(&sl, per_time, rng)?;
                sum += f64::try_from(f(&sl, &x)?.f_sum(Kind::Double)?)?;
            }
            replicates.push(sum / (m * per_time) as f64);
        }
        Ok(Estimate::of(&replicates)?)
    }
}

/// The loss floor of a training setting, as every training run prints it: [`ExactFlow::loss_floor`]
/// for `cfg`'s path and time law, seeded by [`FLOOR_SEED`] with [`floor_draws`]; `None` where the
/// exact flow does not cover the setting (a target that is not a Gaussian mixture, another source,
/// the Schrödinger bridge, a dependent coupling).
///
/// # Errors
/// Only failures inside a covered setting (which would be a bug or a degenerate mixture).
pub fn training_floor(target: &dyn Target, source: &dyn Target, cfg: &crate::TrainConfig) -> Result<Option<Estimate>> {
    let flow = match ExactFlow::for_training(target, source, cfg.path, cfg.coupling) {
        Ok(flow) => flow,
        Err(Error::Exact(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(FLOOR_SEED);
    let (times, points) = flow.floor_draws();
    Ok(Some(flow.loss_floor(cfg.time_sampling, times, points, &mut rng)?))
}

impl VectorField for ExactFlow {
    /// `v*(x, t)` for `x: [n, D]` in `x`'s kind and device, differentiable in `x` (autograd gives
    /// the likelihood its exact divergence). Errors for `t` outside `[0, 1]` or a wrong width.
    fn velocity(&self, x: &Tensor, t: f64) -> fm_ode::Result<Tensor> {
        let size = x.size();
        if size.len() != 2 || size[1] != self.dim() as i64 {
            return Err(fm_ode::Error::Invalid(format!("the exact flow is {}-D, got points of shape {size:?}", self.dim())));
        }
        let result = self.slices(&[t]).and_then(|sl| Ok(self.velocity_at(&sl, &x.f_unsqueeze(0)?)?.f_squeeze_dim(0)?));
        result.map_err(|e| match e {
            Error::Torch(e) => fm_ode::Error::Torch(e),
            e => fm_ode::Error::Invalid(e.to_string()),
        })
    }
}

impl HasDevice for ExactFlow {
    fn device(&self) -> Device {
        self.device
    }
    fn score(&self, x: &Tensor, t: f64) -> Option<fm_ode::Result<Tensor>> {
        let result = self.slices(&[t]).and_then(|sl| Ok(self.score_at(&sl, &x.f_unsqueeze(0)?)?.f_squeeze_dim(0)?));
        Some(result.map_err(|e| fm_ode::Error::Invalid(e.to_string())))
    }
    fn has_score(&self) -> bool {
        true
    }
    fn dim(&self) -> Option<usize> {
        Some(self.target.dim())
    }
}
