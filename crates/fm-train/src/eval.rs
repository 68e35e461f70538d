//! Exact log-likelihoods of a trained model, and the KL divergence from a target to it.
//!
//! A flow-matching model defines a density: `q = (φ₁)♯ p₀`, the source `p₀` carried by the
//! flow `φ` of the learned field from `t = 0` to `t = 1`. [`model_log_prob`] evaluates it at
//! given points by integrating the divergence-augmented ODE backwards, from `t = 1` to `0`
//! ([`fm_ode::log_likelihood`]): `log q(x) = log p₀(x₀) − ∫₀¹ div v(x_t, t) dt`, where `x₀` is
//! `x` carried back to the source. [`kl_estimate`] turns that into the Monte Carlo estimate
//! of `KL(target ‖ model) = E_p[log p(x) − log q(x)]` on fresh target samples, with its
//! standard error.
//!
//! ```
//! use fm_dist::{GaussianMixture, StandardNormal};
//! use fm_model::{Mlp, MlpConfig};
//! use fm_train::{kl_estimate, model_log_prob, LikelihoodConfig};
//! use rand::{rngs::StdRng, SeedableRng};
//!
//! let target = GaussianMixture::seed();
//! let source = StandardNormal::new(2).unwrap();
//! let mlp = Mlp::new(MlpConfig::default(), tch::Device::Cpu).unwrap(); // untrained
//! let cfg = LikelihoodConfig { steps: 10, ..LikelihoodConfig::default() };
//!
//! let x = ndarray::array![[0.0, 0.0], [1.0, 3.0]];
//! let log_q = model_log_prob(&mlp, &source, x.view(), &cfg).unwrap();
//! assert_eq!(log_q.len(), 2);
//!
//! let kl = kl_estimate(&target, &mlp, &source, 200, &cfg, &mut StdRng::seed_from_u64(0)).unwrap();
//! assert!(kl.kl > 0.0 && kl.kl_se > 0.0);
//! assert!((kl.kl - (kl.nll - kl.entropy)).abs() < 1e-9);
//! println!("{kl}");
//! ```

use crate::HasDevice;
use crate::{array_to_tensor, tensor_to_array, Error, Result};
use fm_dist::Target;
use fm_ode::{log_likelihood, AdaptiveOptions, Divergence, LikelihoodOptions, Method, TimeGrid, VectorField};
use ndarray::{Array1, ArrayView1, ArrayView2};
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Device, Kind};

/// How [`model_log_prob`] and [`kl_estimate`] solve the likelihood ODE.
///
/// `Default` is RK4 with 50 steps from `t = 1` to `0`, the exact divergence in low dimension,
/// 1,024 points per solve. Measured on the seed model (10,000 steps of the seed configuration)
/// with `cargo run --release -p fm-train --example integrators` (5,000 target samples): its KL
/// is within 1e-5 nats of that of Dopri5 at tolerance 1e-7 (20,595 evaluations per chunk), far
/// below the standard error of any feasible estimate (6e-3 at 5,000 samples); 20 steps are
/// within 3e-4, 100 steps cost twice as much for no gain in the KL.
///
/// Per point, `log q` converges only at first order in the step for a ReLU network, whose
/// divergence jumps where a unit switches on or off: the mean |Δ log q| is 5.7e-3 at 50 steps
/// and 2.9e-3 at 100 (the errors have both signs and cancel in the KL). Raise `steps` when
/// single values matter more than their mean. For the same reason Dopri5, fine for sampling,
/// is a poor choice here: the jumps force small steps (930 evaluations at tolerance 1e-5).
///
/// Read from TOML or JSON with every field optional (`deny_unknown_fields`); `method` and
/// `divergence` are names (`"rk4"`, `"dopri5"`; `"auto"`, `"exact"`, `"hutchinson:4:gaussian"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LikelihoodConfig {
    /// The integrator (default RK4). Dopri5 uses `rtol`, `atol` and `max_steps`, not `steps`.
    #[serde(with = "method_name")]
    pub method: Method,
    /// Fixed steps from `t = 1` to `0` (default 50); must be at least 1 whatever the method.
    pub steps: usize,
    /// How the divergence is computed (default `auto`: exact up to
    /// [`fm_ode::AUTO_EXACT_MAX_DIM`] dimensions, one Hutchinson probe above).
    #[serde(with = "divergence_name")]
    pub divergence: Divergence,
    /// Points solved together (default 1,024): bounds the memory of the autograd graph of one
    /// field evaluation however many points are asked for. A fixed-step method's results do
    /// not depend on it; Dopri5 sizes its steps per chunk.
    pub chunk_size: usize,
    /// Seeds the Hutchinson probes (default 0); unused by the exact divergence.
    pub seed: u64,
    /// Dopri5's relative tolerance on the augmented state `[x, log-density]` (default 1e-5).
    pub rtol: f64,
    /// Dopri5's absolute tolerance (default 1e-5), positive.
    pub atol: f64,
    /// Dopri5's budget of attempted steps per chunk (default 10,000).
    pub max_steps: usize,
}

impl Default for LikelihoodConfig {
    fn default() -> Self {
        let adaptive = AdaptiveOptions::default();
        Self {
            method: Method::Rk4,
            steps: 50,
            divergence: Divergence::Auto,
            chunk_size: 1024,
            seed: 0,
            rtol: adaptive.rtol,
            atol: adaptive.atol,
            max_steps: adaptive.max_steps,
        }
    }
}

impl LikelihoodConfig {
    /// Checks every setting (each message names the field); returns the time grid from `t = 1`
    /// to `0` the solve steps through.
    ///
    /// # Errors
    /// [`Error::Config`] for 0 steps, a chunk size of 0, a Hutchinson estimator without probes,
    /// or invalid tolerances; [`Error::Ode`] for more steps than a time grid may have.
    pub fn validate(&self) -> Result<TimeGrid> {
        if self.steps == 0 {
            return Err(Error::Config("steps must be at least 1".into()));
        }
        if self.chunk_size == 0 {
            return Err(Error::Config("chunk_size must be at least 1".into()));
        }
        if let Divergence::Hutchinson { probes: 0, .. } = self.divergence {
            return Err(Error::Config("divergence: Hutchinson needs at least 1 probe".into()));
        }
        self.adaptive().validate().map_err(|e| Error::Config(e.to_string()))?;
        Ok(TimeGrid::uniform(1.0, 0.0, self.steps)?)
    }

    /// The settings of [`fm_ode::log_likelihood`] this configuration stands for.
    pub fn options(&self) -> LikelihoodOptions {
        LikelihoodOptions { divergence: self.divergence, chunk_size: self.chunk_size, seed: self.seed, adaptive: self.adaptive() }
    }

    fn adaptive(&self) -> AdaptiveOptions {
        AdaptiveOptions { rtol: self.rtol, atol: self.atol, max_steps: self.max_steps }
    }
}

mod method_name {
    use fm_ode::Method;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.name())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

mod divergence_name {
    use fm_ode::Divergence;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(d: &Divergence, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Divergence, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// `log q(x)` of each row of `x` under the model: the density of `source` carried by the flow
/// of `field` (a trained model, or an [`crate::ExactFlow`]) from `t = 0` to `1`.
///
/// Each row is carried back from `t = 1` to `0` with the divergence integrated alongside
/// ([`fm_ode::log_likelihood`], `cfg.chunk_size` rows at a time, in `f32` on the model's
/// device), and `source.log_prob` is added at the point reached. Any source with a density
/// will do; `N(0, I)` is the usual one. [`model_likelihood`] also reports the cost.
///
/// Bad input is an error, never a panic.
///
/// # Errors
/// [`Error::Config`] (or [`Error::Ode`]) for a bad configuration
/// ([`LikelihoodConfig::validate`]); [`Error::Dist`] for points with the wrong number of columns
/// or non-finite values, a source of another dimension or without a density; [`Error::Ode`] when
/// the solve fails; [`Error::Torch`] for torch failures.
pub fn model_log_prob(field: &(impl VectorField + HasDevice + ?Sized), source: &dyn Target, x: ArrayView2<f64>, cfg: &LikelihoodConfig) -> Result<Array1<f64>> {
    Ok(model_likelihood(field, source, x, cfg)?.log_q)
}

/// What [`model_likelihood`] returns: the log-densities and what they cost.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelLikelihood {
    /// `log q(x)` of each row.
    pub log_q: Array1<f64>,
    /// Field evaluations per point, averaged over the solve's chunks (each evaluation also
    /// costs the divergence's backward passes: `d` for the exact one). A fixed-step method's
    /// is `steps × evaluations per step`; 0 for no points.
    pub nfe: f64,
    /// Wall time of the solve and the source's log-density.
    pub seconds: f64,
}

/// [`model_log_prob`] with its cost: field evaluations and wall time.
///
/// # Errors
/// As [`model_log_prob`].
pub fn model_likelihood(
    field: &(impl VectorField + HasDevice + ?Sized),
    source: &dyn Target,
    x: ArrayView2<f64>,
    cfg: &LikelihoodConfig,
) -> Result<ModelLikelihood> {
    let start = Instant::now();
    let grid = cfg.validate()?;
    let dim = field.dim().unwrap_or(source.dim());
    check_source(source, dim)?;
    if x.ncols() != dim {
        return Err(fm_dist::Error::Dim { expected: dim, got: x.ncols() }.into());
    }
    if let Some(row) = x.rows().into_iter().position(|r| r.iter().any(|v| !v.is_finite())) {
        return Err(fm_dist::Error::Metric(format!("row {row} of the points holds NaN or infinite values")).into());
    }
    let n = x.nrows();
    if n == 0 {
        return Ok(ModelLikelihood { log_q: Array1::zeros(0), nfe: 0.0, seconds: start.elapsed().as_secs_f64() });
    }
    // The whole point set goes to fm-ode at once (an `n × d` tensor, the size of the input):
    // it solves `chunk_size` rows at a time, so the autograd graph stays bounded, and draws
    // each row's Hutchinson probes from the row's index, so results do not depend on chunking.
    let xt = array_to_tensor(x, field.device())?;
    // libtorch's threads for this work: measured on one evaluation of the first chunk.
    let first = xt.f_narrow(0, 0, n.min(cfg.chunk_size) as i64)?;
    crate::threads::choose(|| match field.velocity_and_divergence(&first, 0.5)? {
        Some(_) => Ok::<(), Error>(()),
        None => field.velocity(&first, 0.5).map(drop).map_err(Error::from),
    })?;
    let lik = log_likelihood(&crate::sample::Borrowed(field), &xt, &grid, cfg.method, &cfg.options())?;
    let x0 = tensor_to_array(&lik.x0)?;
    let source_lp = source.log_prob(x0.view())?;
    let delta = Vec::<f64>::try_from(lik.delta_log_p.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_contiguous()?)?;
    if delta.len() != n || source_lp.len() != n {
        return Err(Error::Internal(format!("the likelihood solve returned {} values and the source {} for {n} points", delta.len(), source_lp.len())));
    }
    let chunks = n.div_ceil(cfg.chunk_size);
    Ok(ModelLikelihood { log_q: source_lp + Array1::from(delta), nfe: lik.nfe as f64 / chunks as f64, seconds: start.elapsed().as_secs_f64() })
}

fn check_source(source: &dyn Target, dim: usize) -> Result<()> {
    if source.dim() != dim {
        return Err(fm_dist::Error::Dim { expected: dim, got: source.dim() }.into());
    }
    if !source.has_density() {
        return Err(fm_dist::Error::NoDensity(format!("the source {}", source.name())).into());
    }
    Ok(())
}

/// A Monte Carlo estimate of `KL(target ‖ model)` from `n` target samples `x_i`, in nats.
///
/// With `d_i = log p(x_i) − log q(x_i)`: `kl = mean(d)`, `kl_se = std(d) / √n` (the sample
/// standard deviation, `n − 1` in its denominator). `kl = nll − entropy` exactly, both being
/// means over the same samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KlEstimate {
    /// Samples the estimate averages.
    pub n: usize,
    /// `−mean log q(x_i)`: the model's negative log-likelihood of target samples (cross-entropy).
    pub nll: f64,
    /// `−mean log p(x_i)`: Monte Carlo estimate of the target's differential entropy.
    pub entropy: f64,
    /// `mean(log p − log q)`: the KL estimate.
    pub kl: f64,
    /// Its standard error, `std(log p − log q) / √n`.
    #[serde(deserialize_with = "fm_dist::metrics::nan_as_null::deserialize")]
    pub kl_se: f64,
    /// Field evaluations per point in the likelihood solve, averaged over its chunks (each
    /// also costs the divergence's backward passes). A fixed-step method's is
    /// `steps × evaluations per step`; 0 when it did not come from a solve.
    pub nfe: f64,
    /// Wall time of the estimate: drawing the samples, both densities and the solve.
    pub seconds: f64,
}

impl KlEstimate {
    /// The estimate from per-sample log-densities under the target (`log_p`) and the model
    /// (`log_q`) at the same points; `nfe` and `seconds` are left at 0.
    ///
    /// # Errors
    /// [`Error::Dist`] (a [`fm_dist::Error::Metric`]) when the lengths differ, there are fewer
    /// than 2 samples (no standard error), or a value is NaN or infinite.
    pub fn from_log_probs(log_p: ArrayView1<f64>, log_q: ArrayView1<f64>) -> Result<Self> {
        let n = log_p.len();
        if log_q.len() != n {
            return Err(fm_dist::Error::Metric(format!("KL from {n} target log-densities and {} model log-densities", log_q.len())).into());
        }
        if n < 2 {
            return Err(fm_dist::Error::Metric(format!("a KL estimate with a standard error needs at least 2 samples, got {n}")).into());
        }
        let bad = |v: ArrayView1<f64>| v.iter().filter(|x| !x.is_finite()).count();
        let (bad_p, bad_q) = (bad(log_p), bad(log_q));
        if bad_p + bad_q > 0 {
            return Err(fm_dist::Error::Metric(format!(
                "non-finite log-densities ({bad_q} of {n} under the model, {bad_p} under the target): \
                 the model or its likelihood solve diverged"
            ))
            .into());
        }
        let nf = n as f64;
        let diff = &log_p - &log_q;
        let kl = diff.sum() / nf;
        let var = diff.iter().map(|d| (d - kl) * (d - kl)).sum::<f64>() / (nf - 1.0);
        Ok(Self { n, nll: -log_q.sum() / nf, entropy: -log_p.sum() / nf, kl, kl_se: (var / nf).sqrt(), nfe: 0.0, seconds: 0.0 })
    }
}

impl std::fmt::Display for KlEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KL(target ‖ model) {:.4} ± {:.4} nats (NLL {:.4}, entropy {:.4}; {} samples, {:.0} NFE, {:.2} s)",
            self.kl, self.kl_se, self.nll, self.entropy, self.n, self.nfe, self.seconds
        )
    }
}

/// Estimates `KL(target ‖ model)` on `n` fresh samples of `target`, drawn first from `rng`
/// (`target.sample(n, rng)`), with the model's log-density from [`model_log_prob`] and the
/// target's from `target.log_prob`. See [`KlEstimate`].
///
/// # Errors
/// [`Error::Config`] for `n < 2` or an invalid configuration; [`Error::Dist`] when the target
/// or the source has no density, dimensions disagree, or a log-density is not finite;
/// [`Error::Ode`] when the likelihood solve fails.
pub fn kl_estimate(
    target: &dyn Target,
    field: &(impl VectorField + HasDevice + ?Sized),
    source: &dyn Target,
    n: usize,
    cfg: &LikelihoodConfig,
    rng: &mut dyn RngCore,
) -> Result<KlEstimate> {
    let start = Instant::now();
    cfg.validate()?;
    let dim = field.dim().unwrap_or(source.dim());
    if !target.has_density() {
        return Err(fm_dist::Error::NoDensity(format!("the target {}", target.name())).into());
    }
    if target.dim() != dim {
        return Err(fm_dist::Error::Dim { expected: dim, got: target.dim() }.into());
    }
    check_source(source, dim)?;
    if n < 2 {
        return Err(Error::Config(format!("a KL estimate needs at least 2 samples, got {n}")));
    }
    let x = target.sample(n, rng);
    let log_p = target.log_prob(x.view())?;
    let lik = model_likelihood(field, source, x.view(), cfg)?;
    let est = KlEstimate::from_log_probs(log_p.view(), lik.log_q.view())?;
    Ok(KlEstimate { nfe: lik.nfe, seconds: start.elapsed().as_secs_f64(), ..est })
}

/// The quality figures tracked during training (the `w2` and `kl` columns of `fm train`'s
/// metrics.csv): exact W2 between `n` generated samples and a fixed holdout of `n` target
/// points, and KL(target ‖ model) on that holdout where target and source have densities.
///
/// The holdout, the source draws and the likelihood settings are fixed when the tracker is
/// made, so figures from different steps differ only through the model. Nothing here draws
/// from torch's generator: tracking does not change what the run trains.
pub struct Tracker {
    holdout: ndarray::Array2<f64>,
    /// For a model trained in standard units: the map to data units, where W2 is measured.
    map: Option<fm_dist::affine::Affine>,
    log_p: Option<Array1<f64>>,
    sample: crate::SampleConfig,
    likelihood: LikelihoodConfig,
    generator: crate::Generator,
}

/// What [`Tracker::measure`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tracked {
    /// Exact 2-Wasserstein distance ([`fm_dist::metrics::w2`]) between the generated samples
    /// and the holdout, in the data's units.
    pub w2: f64,
    /// `None` where the target or source has no density.
    pub kl: Option<f64>,
}

impl Tracker {
    /// A holdout of `n ≥ 2` target points drawn with `seed`; samples by `sample`'s method and
    /// steps (its `n_samples` becomes `n`, its seed `seed + 1`), likelihoods by `likelihood`.
    ///
    /// # Errors
    /// [`Error::Config`] for `n < 2`; what [`SampleConfig::validate`](crate::SampleConfig::validate)
    /// and [`LikelihoodConfig::validate`] return; [`Error::Dist`] when the target's log-density fails.
    pub fn new(target: &dyn Target, source: &dyn Target, n: usize, seed: u64, sample: &crate::SampleConfig, likelihood: &LikelihoodConfig) -> Result<Self> {
        if n < 2 {
            return Err(Error::Config(format!("tracking needs at least 2 points, got {n}")));
        }
        let sample = crate::SampleConfig { n_samples: n, seed: seed.wrapping_add(1), ..sample.clone() };
        sample.validate()?;
        likelihood.validate()?;
        let holdout = target.sample(n, &mut rand::rngs::StdRng::seed_from_u64(seed));
        let log_p = if target.has_density() && source.has_density() { Some(target.log_prob(holdout.view())?) } else { None };
        Ok(Self { holdout, map: None, log_p, sample, likelihood: likelihood.clone(), generator: crate::Generator::Flow })
    }

    /// For a model trained in standard units (target and source given to [`Tracker::new`] in
    /// those units): W2 measured in data units, `x = shift + scale ⊙ z`. KL is the same in
    /// either units (it is invariant under an invertible map).
    pub fn in_data_units(self, map: fm_dist::affine::Affine) -> Self {
        Self { map: Some(map), ..self }
    }

    /// For a model that generates otherwise than by integrating its field (a one-step map,
    /// MeanFlow): W2 of its one-step samples (one evaluation, what it is trained for), and no KL
    /// (its likelihood is not the ODE's).
    pub fn for_generator(self, generator: crate::Generator) -> Self {
        match generator {
            crate::Generator::Flow => self,
            _ => Self {
                generator,
                log_p: None,
                sample: crate::SampleConfig { n_samples: self.sample.n_samples, seed: self.sample.seed, ..crate::SampleConfig::one_step() },
                ..self
            },
        }
    }

    /// The figures of `model` now.
    ///
    /// # Errors
    /// What [`crate::sample`] and [`model_log_prob`] return; [`Error::Dist`] when W2 or the KL
    /// cannot be computed (non-finite samples or log-densities).
    pub fn measure(&self, model: &(impl fm_model::VelocityModel + ?Sized), source: &dyn Target) -> Result<Tracked> {
        // The field's own samples (the ODE): tracking follows what training does to the field.
        let ode = crate::SampleConfig { sde: None, ..self.sample.clone() };
        let units = crate::DataUnits { field: model, source, map: None, path: crate::ProbabilityPath::Linear };
        let generated = units.generate(&crate::Request::new(self.generator, &ode))?.points;
        let w2 = match &self.map {
            None => fm_dist::metrics::w2(generated.view(), self.holdout.view())?,
            Some(map) => fm_dist::metrics::w2(map.apply(generated.view()).view(), map.apply(self.holdout.view()).view())?,
        };
        let kl = match &self.log_p {
            Some(log_p) => {
                let log_q = model_log_prob(model, source, self.holdout.view(), &self.likelihood)?;
                Some(KlEstimate::from_log_probs(log_p.view(), log_q.view())?.kl)
            }
            None => None,
        };
        Ok(Tracked { w2, kl })
    }
}
