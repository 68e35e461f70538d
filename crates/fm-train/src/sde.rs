//! Stochastic sampling that keeps the flow's marginals.
//!
//! A velocity field `v(x, t)` trained on an affine Gaussian path `x_t = α_t x1 + σ_t x0`,
//! `x0 ~ N(0, I)` (t = 0 the source), carries `p_0` to `p_1` through marginals `p_t`. For any
//! `w(t) ≥ 0` the SDE
//!
//! `dx = [v(x, t) + w(t) ∇log p_t(x)] dt + √(2 w(t)) dW`
//!
//! has the same marginals: its Fokker–Planck equation adds `−∇·(w p ∇log p) + w Δp = 0` to the
//! continuity equation (Song et al. 2021, "Score-Based Generative Modeling through SDEs", eq. 6
//! and App. D.1; Ma et al. 2024, SiT, §2.3 and `transport/transport.py`, whose "diffusion" is our
//! `w`). Without the score term the noise would blur the marginals (the fault of tue-bmd/zea
//! #551 and diffusers #8549).
//!
//! The score from the velocity: with `E[x1 | x_t]` and `E[x0 | x_t]` the posterior means,
//! `x = α E[x1] + σ E[x0]` and `v = α̇ E[x1] + σ̇ E[x0]`, so `E[x0 | x] = (α v − α̇ x) / (α σ̇ − α̇ σ)`,
//! and for a standard-normal source `∇log p_t(x) = −E[x0 | x] / σ_t`, i.e.
//!
//! `s(x, t) = (α̇ x − α v) / (σ (α σ̇ − α̇ σ))`
//!
//! — SiT's `get_score_from_velocity` (`(α/α̇ v − x) / (σ² − α/α̇ σ̇ σ)`) multiplied out. On the
//! straight path (`α = t`, `σ = 1 − t`) it is `(t v − x) / (1 − t)`; at `t = 0`, `−x`. It is
//! undefined where `σ_t = 0` (t = 1 on the straight path): Euler–Maruyama evaluates the drift at
//! the start of each step only, and its last step is taken as the mean (no noise).

use crate::{AffineCoefficients, Error, Generator, HasDevice, ProbabilityPath, Result};
use fm_dist::Target;
use fm_ode::{SdeOptions, SdeSolution, TimeGrid, VectorField};
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use tch::Tensor;

/// The diffusion `w(t)` of the marginal-preserving SDE, by SiT's names (`compute_diffusion`),
/// each times a norm `c`. `g = √(2w)` is the noise's standard deviation per unit time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffusionForm {
    /// `w = c`.
    Constant,
    /// `w = c σ_t`: SiT's default; vanishes at the target end of the straight path.
    Sigma,
    /// `w = c (1 − t)`.
    Linear,
    /// `w = ¼ (c cos(πt) + 1)²`.
    Decreasing,
    /// `w = c sin²(πt)`: no noise at either end.
    IncreasingDecreasing,
    /// `w = c (α̇/α σ² − σ σ̇)`: the diffusion of the score-based SDE that has this path
    /// (SiT's "SBDM"); infinite at `t = 0` where `α = 0`, so its first step is the ODE's.
    Sbdm,
}

impl DiffusionForm {
    /// Every form with its name, in the order help texts list them.
    pub const ALL: [(DiffusionForm, &'static str); 6] = [
        (DiffusionForm::Sigma, "sigma"),
        (DiffusionForm::Constant, "constant"),
        (DiffusionForm::Linear, "linear"),
        (DiffusionForm::Decreasing, "decreasing"),
        (DiffusionForm::IncreasingDecreasing, "increasing-decreasing"),
        (DiffusionForm::Sbdm, "sbdm"),
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|f| f.0 == self).map_or("?", |f| f.1)
    }
}

/// The stochastic sampler: a diffusion form and its norm. Spelled `FORM` or `FORM:NORM`
/// (`sigma`, `constant:0.5`); `Default` is SiT's, `sigma` with norm 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sde {
    /// The shape of `w(t)`.
    pub form: DiffusionForm,
    /// Its scale `c ≥ 0` (0: the ODE, bit for bit).
    pub norm: f64,
}

impl Default for Sde {
    fn default() -> Self {
        Self { form: DiffusionForm::Sigma, norm: 1.0 }
    }
}

impl Sde {
    /// `w(t)` on a path with coefficients `c` at `t`: finite and ≥ 0, or 0 where the form is
    /// infinite (SBDM at `t = 0`: that step is the ODE's).
    pub fn w(&self, c: &AffineCoefficients, t: f64) -> f64 {
        let pi = std::f64::consts::PI;
        let w = match self.form {
            DiffusionForm::Constant => self.norm,
            DiffusionForm::Sigma => self.norm * c.sigma,
            DiffusionForm::Linear => self.norm * (1.0 - t),
            DiffusionForm::Decreasing => 0.25 * (self.norm * (pi * t).cos() + 1.0).powi(2),
            DiffusionForm::IncreasingDecreasing => self.norm * (pi * t).sin().powi(2),
            DiffusionForm::Sbdm => self.norm * (c.d_alpha / c.alpha * c.sigma * c.sigma - c.sigma * c.d_sigma),
        };
        if w.is_finite() {
            w.max(0.0)
        } else {
            0.0
        }
    }

    /// Checks that this sampler applies to a model generating as `generator` along `path`
    /// from `source` (`exact_score`: the field knows its score, as the exact flow does, and
    /// neither the source nor the path's noise need be converted).
    ///
    /// # Errors
    /// [`Error::Config`] with the reason: a one-step or average-velocity model (no velocity
    /// field to add noise to), a path that is not affine or adds noise of its own, a source
    /// that is not the standard normal, a norm that is negative or not finite.
    pub fn check(&self, generator: Generator, path: ProbabilityPath, source: &dyn Target, exact_score: bool) -> Result<()> {
        if !(0.0..=MAX_NORM).contains(&self.norm) {
            return Err(Error::Config(format!("--sde {}: the norm must be in [0, {MAX_NORM}]", self)));
        }
        if generator != Generator::Flow {
            return Err(needs_a_velocity(generator));
        }
        if exact_score {
            return Ok(());
        }
        match path.affine(0.5) {
            None => return Err(Error::Config(format!("--sde: the path {path} is not affine in (x0, x1): its score is not a function of the velocity"))),
            Some(c) if c.noise != 0.0 => {
                return Err(Error::Config(format!(
                    "--sde: the path {path} adds noise of its own beside the source, so the velocity does not determine the score (train on linear, lipman:σ_min or vp)"
                )))
            }
            Some(_) => {}
        }
        if crate::is_standard_normal(source) {
            return Ok(());
        }
        Err(Error::Config(format!(
            "--sde: the score from the velocity is derived for a standard-normal source, the source is {} (the exact flow, --oracle, has its own score)",
            source.name()
        )))
    }
}

/// The largest norm taken: beyond it Euler–Maruyama's steps near the data shrink the state by
/// `1 − c h/(1 − t)`-like factors far from 1 (on the exact flow of gmm3 at 100 steps `constant:20`
/// gave a log-density gap of −0.58 nats).
pub const MAX_NORM: f64 = 100.0;

/// The refusal of `--sde` for a model that is not a velocity field.
pub(crate) fn needs_a_velocity(generator: Generator) -> Error {
    Error::Config(format!("--sde needs a velocity field: a {} model is not the velocity of a probability path (sample it with --sde none)", generator.name()))
}

impl Sde {
    /// Checks that a field trained with `train` (on a teacher's pairs when `on_pairs`) is the
    /// marginal velocity the score is derived from: flow matching on independently drawn
    /// pairs. A minibatch coupling (OT, Sinkhorn, within classes, C2OT) or a teacher's pairs
    /// (reflow) make `x0` and `x1` dependent, and a likelihood-trained field is any field that
    /// carries the source to the target: for these `−E[x0 | x]/σ_t` is not the score of `p_t`
    /// (measured: `--sde` on an OT-coupled model raised its W2 excess from 0.10 to 0.65).
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting.
    pub fn check_training(&self, train: &crate::TrainConfig, on_pairs: bool) -> Result<()> {
        let why = if !train.objective.has_flow_matching_floor() {
            format!("objective {} does not learn the path's marginal velocity", train.objective)
        } else if on_pairs {
            "the model trained on a teacher's pairs (reflow), which couple x0 and x1".to_string()
        } else if train.coupling != crate::Coupling::Independent {
            format!("coupling {} pairs x0 with x1 by the batch, so they are not independent", train.coupling)
        } else {
            return Ok(());
        };
        Err(Error::Config(format!("--sde: {why}; the score from the velocity holds for flow matching on independent pairs only (sample it without --sde)")))
    }
}

impl std::fmt::Display for Sde {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.form.name(), self.norm)
    }
}

impl std::str::FromStr for Sde {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let spec = s.trim().to_ascii_lowercase();
        let (name, norm) = crate::split_spec(&spec);
        let valid = || DiffusionForm::ALL.iter().map(|f| f.1).collect::<Vec<_>>().join(", ");
        let form = DiffusionForm::ALL
            .iter()
            .find(|f| f.1 == name)
            .map(|f| f.0)
            .ok_or_else(|| Error::Config(format!("unknown diffusion '{}' (valid: {}, each optionally :NORM)", s.trim(), valid())))?;
        let norm: f64 = match norm {
            None => 1.0,
            Some(n) => n.parse().map_err(|_| Error::Config(format!("diffusion '{}': the norm '{n}' is not a number", s.trim())))?,
        };
        if !(0.0..=MAX_NORM).contains(&norm) {
            return Err(Error::Config(format!("diffusion '{}': the norm must be in [0, {MAX_NORM}]", s.trim())));
        }
        Ok(Sde { form, norm })
    }
}

impl serde::Serialize for Sde {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Sde {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// `∇log p_t(x)` from the velocity `v` at `x`, `t` on a noise-free affine path from a standard
/// normal (see the module docs). Shapes `[n, d]`.
///
/// # Errors
/// [`Error::Config`] for a path that is not affine or adds noise; torch's failures.
pub fn score_from_velocity(path: ProbabilityPath, x: &Tensor, v: &Tensor, t: f64) -> Result<Tensor> {
    let c = path.affine(t).filter(|c| c.noise == 0.0).ok_or_else(|| Error::Config(format!("the path {path} has no score from its velocity")))?;
    let denominator = c.sigma * (c.alpha * c.d_sigma - c.d_alpha * c.sigma);
    Ok(x.f_mul_scalar(c.d_alpha)?.f_sub(&v.f_mul_scalar(c.alpha)?)?.f_mul_scalar(1.0 / denominator)?)
}

/// The drift `v + w(t) s` of the marginal-preserving SDE of `field` (trained on `path`): a
/// [`VectorField`], so Euler–Maruyama steps it as Euler steps a flow. With `w(t) = 0` it is
/// `v`, untouched. The score is the field's own where it has one ([`HasDevice::score`]), else
/// [`score_from_velocity`].
pub struct MarginalDrift<'a, F: ?Sized> {
    /// The velocity field.
    pub field: &'a F,
    /// The path it was trained on.
    pub path: ProbabilityPath,
    /// The diffusion.
    pub sde: Sde,
}

impl<F: VectorField + HasDevice + ?Sized> MarginalDrift<'_, F> {
    /// `w(t)` (0 where the path has no coefficients).
    pub fn w(&self, t: f64) -> f64 {
        self.path.affine(t).map_or(0.0, |c| self.sde.w(&c, t))
    }
}

impl<F: VectorField + HasDevice + ?Sized> VectorField for MarginalDrift<'_, F> {
    fn velocity(&self, x: &Tensor, t: f64) -> fm_ode::Result<Tensor> {
        let v = self.field.velocity(x, t)?;
        let w = self.w(t);
        if w == 0.0 {
            return Ok(v);
        }
        let score = match self.field.score(x, t) {
            Some(s) => s?,
            None => score_from_velocity(self.path, x, &v, t).map_err(|e| fm_ode::Error::Invalid(e.to_string()))?,
        };
        Ok(v.f_add(&score.f_to_kind(v.kind())?.f_mul_scalar(w)?)?)
    }
}

/// Mixed into the sampling seed for the SDE's noise.
const NOISE_SEED: u64 = 0x5de0_0000_0015_e5ed;

/// Euler–Maruyama through `grid` from `x0: [n, d]`, rows `first_row..first_row + n` of a
/// sampling run, with the noise of row `i` at step `k` drawn from a generator of its own
/// (seeded by `seed`, `i` and `k`): a seed gives the same samples whatever the chunk size or
/// device, and a step's noise is known without the earlier ones. The last step is its mean.
///
/// # Errors
/// The field's and torch's failures.
pub fn integrate(
    drift: &MarginalDrift<'_, impl VectorField + HasDevice + ?Sized>,
    x0: &Tensor,
    grid: &TimeGrid,
    seed: u64,
    first_row: usize,
    opts: SdeOptions,
) -> Result<SdeSolution> {
    let shape = x0.size();
    let (n, d) = (shape[0] as usize, shape[1] as usize);
    let device = x0.device();
    let mut noise = |k: usize| -> fm_ode::Result<Tensor> {
        let mut values = Vec::with_capacity(n * d);
        for row in first_row..first_row + n {
            let mut rng = StdRng::seed_from_u64(crate::step_seed(seed ^ NOISE_SEED ^ (row as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15), k));
            values.extend((0..d).map(|_| -> f32 { StandardNormal.sample(&mut rng) }));
        }
        Ok(Tensor::f_from_slice(&values)?.f_view(shape.as_slice())?.f_to_device(device)?)
    };
    let w = |t: f64| (2.0 * drift.w(t)).sqrt();
    Ok(fm_ode::euler_maruyama(drift, &w, x0, grid, &mut noise, SdeOptions { last_step_mean: true, ..opts })?)
}
