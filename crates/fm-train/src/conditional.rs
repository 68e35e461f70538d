//! Conditional flow matching: what a run conditions on, and classifier-free guidance.

use crate::{Error, KlEstimate, Result};
use fm_model::{ConditionShape, VelocityModel};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// What the network is conditioned on in training ([`crate::TrainConfig::condition`]).
///
/// Serde and [`std::str::FromStr`] names: `none`, `labels`, `values`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConditionOn {
    /// Nothing: the unconditional field (the seed).
    #[default]
    None,
    /// The target's class labels ([`fm_dist::Target::classes`]).
    Labels,
    /// The target's condition vectors ([`fm_dist::Target::condition_dim`], from a file).
    Values,
}

impl ConditionOn {
    /// Every choice, in declaration order.
    pub const ALL: [ConditionOn; 3] = [ConditionOn::None, ConditionOn::Labels, ConditionOn::Values];

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            ConditionOn::None => "none",
            ConditionOn::Labels => "labels",
            ConditionOn::Values => "values",
        }
    }

    /// Whether this is [`ConditionOn::None`] (serde skips the field then).
    pub fn is_none(&self) -> bool {
        *self == ConditionOn::None
    }

    /// The network's condition for a target of `classes` classes and `dim`-D condition
    /// vectors.
    ///
    /// # Errors
    /// [`Error::Config`] when the target carries no such condition.
    pub fn shape_for(self, target_name: &str, classes: usize, dim: usize) -> Result<ConditionShape> {
        match self {
            ConditionOn::None => Ok(ConditionShape::NONE),
            ConditionOn::Labels if classes > 0 => Ok(ConditionShape { classes, dim: 0 }),
            ConditionOn::Labels => Err(Error::Config(format!(
                "condition labels: the target {target_name} has no class labels (a file's labels are named with file:PTS.csv?label=COL or ?labels=Y.npy)"
            ))),
            ConditionOn::Values if dim > 0 => Ok(ConditionShape { classes: 0, dim }),
            ConditionOn::Values => Err(Error::Config(format!(
                "condition values: the target {target_name} has no condition vectors (name them with file:PTS.csv?cond=COL,… or ?conds=C.npy)"
            ))),
        }
    }
}

impl std::fmt::Display for ConditionOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ConditionOn {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase();
        ConditionOn::ALL.into_iter().find(|c| c.name() == key).ok_or_else(|| Error::Config(format!("unknown condition '{s}' (valid: none, labels, values)")))
    }
}

/// The probability of training a row on "no condition" unless set: 0.1, the usual choice for
/// classifier-free guidance (Ho & Salimans 2022 found 0.1–0.2 best).
pub const DEFAULT_COND_DROP: f64 = 0.1;

/// Whether a run of `cfg` leaves its "no condition" entry untrained: a conditional run that never
/// dropped the condition (`cond_drop = 0`). Guidance, unconditional sampling, the pooled
/// likelihood and the field figures evaluate that entry, and refuse or skip it.
pub fn null_entry_untrained(cfg: &crate::TrainConfig) -> bool {
    !cfg.condition.is_none() && cfg.cond_drop == 0.0
}

/// The largest guidance scale taken, in size: `w (v_c − v_∅)` at `|w| = 100` is already a
/// hundred times the conditional field's difference (the literature uses 1–10); beyond it the
/// samples leave the data's range (`--cfg-scale 1e30` wrote samples near 10²⁸ before this bound).
pub const MAX_GUIDANCE_SCALE: f64 = 100.0;

/// Refuses a guidance scale that is not finite or beyond ±[`MAX_GUIDANCE_SCALE`].
///
/// # Errors
/// [`Error::Config`], one line naming the scale and the bound.
pub fn check_guidance_scale(scale: f64) -> Result<()> {
    if !scale.is_finite() || scale.abs() > MAX_GUIDANCE_SCALE {
        return Err(Error::Config(format!(
            "the guidance scale must be a finite number in [-{MAX_GUIDANCE_SCALE}, {MAX_GUIDANCE_SCALE}], got {scale} (w = 1 is the conditional model, 0 the unconditional one; 1–10 is the usual range)"
        )));
    }
    Ok(())
}

/// A conditional model's field under one condition with classifier-free guidance (Ho &
/// Salimans 2022, in flow-matching form as in Zheng et al. 2023, "Guided flows"):
/// `v = v_∅ + w (v_c − v_∅)`. `w = 1` is the plain conditional field `v_c` and `w = 0` the
/// unconditional `v_∅`, each computed alone (bit for bit the model's); `w > 1` pushes samples
/// towards what sets `c` apart. Divergences combine the same way (the map is linear), so the
/// likelihood of a guided flow is exact.
pub struct Guided<'a, M: ?Sized> {
    /// The conditional network.
    pub model: &'a M,
    /// The condition's features, `[features]` ([`ConditionShape::features_of`]).
    pub condition: Tensor,
    /// The null condition's features.
    pub null: Tensor,
    /// The guidance scale `w`.
    pub scale: f64,
}

impl<'a, M: VelocityModel + ?Sized> Guided<'a, M> {
    /// `model` under class `label` and/or condition vector `values`, with guidance scale `scale`.
    ///
    /// # Errors
    /// [`Error::Config`] for an unconditional model, a scale that is not finite, or a condition
    /// the model does not take (a class out of range, a vector of another width).
    pub fn new(model: &'a M, label: Option<usize>, values: Option<&[f64]>, scale: f64) -> Result<Self> {
        let shape = model.condition_shape();
        if !shape.is_conditional() {
            return Err(Error::Config("the model is unconditional: it takes no class or condition (train with --condition labels)".into()));
        }
        check_guidance_scale(scale)?;
        let device = model.device();
        let features = |l: Option<usize>, v: Option<&[f64]>| -> Result<Tensor> { Ok(Tensor::f_from_slice(&shape.features_of(l, v)?)?.f_to_device(device)?) };
        Ok(Self { model, condition: features(label, values)?, null: features(None, None)?, scale })
    }
}

impl<M: VelocityModel + ?Sized> fm_ode::VectorField for Guided<'_, M> {
    fn velocity(&self, x: &Tensor, t: f64) -> fm_ode::Result<Tensor> {
        if self.scale == 1.0 {
            return self.model.velocity_given(x, t, &self.condition);
        }
        let null = self.model.velocity_given(x, t, &self.null)?;
        if self.scale == 0.0 {
            return Ok(null);
        }
        let cond = self.model.velocity_given(x, t, &self.condition)?;
        Ok(null.f_add(&cond.f_sub(&null)?.f_mul_scalar(self.scale)?)?)
    }

    fn velocity_and_divergence(&self, x: &Tensor, t: f64) -> fm_ode::Result<Option<(Tensor, Tensor)>> {
        let given = |c: &Tensor| self.model.velocity_and_divergence_given(x, t, c);
        if self.scale == 1.0 {
            return given(&self.condition);
        }
        let Some((v0, d0)) = given(&self.null)? else { return Ok(None) };
        if self.scale == 0.0 {
            return Ok(Some((v0, d0)));
        }
        let Some((v1, d1)) = given(&self.condition)? else { return Ok(None) };
        let mix = |a: &Tensor, b: &Tensor| -> fm_ode::Result<Tensor> { Ok(a.f_add(&b.f_sub(a)?.f_mul_scalar(self.scale)?)?) };
        Ok(Some((mix(&v0, &v1)?, mix(&d0, &d1)?)))
    }
}

/// A model under a fixed condition is an unconditional model of the same times: its forward
/// pass appends the condition's features (and the null's, mixed by the scale) to each row's
/// times, so every adapter that feeds the network whole rows (MeanFlow's [`crate::Jumps`])
/// stacks on guidance.
impl<M: VelocityModel + ?Sized> VelocityModel for Guided<'_, M> {
    fn forward(&self, x: &Tensor, t: &Tensor) -> fm_model::Result<Tensor> {
        let given = |c: &Tensor| -> fm_model::Result<Tensor> {
            let rows = c.f_unsqueeze(0)?.f_expand([t.size()[0], -1], false)?.f_to_kind(t.kind())?;
            self.model.forward(x, &Tensor::f_cat(&[t, &rows], 1)?)
        };
        if self.scale == 1.0 {
            return given(&self.condition);
        }
        let null = given(&self.null)?;
        if self.scale == 0.0 {
            return Ok(null);
        }
        Ok(null.f_add(&given(&self.condition)?.f_sub(&null)?.f_mul_scalar(self.scale)?)?)
    }
    fn dim(&self) -> usize {
        self.model.dim()
    }
    fn time_inputs(&self) -> usize {
        self.model.time_inputs()
    }
    fn device(&self) -> tch::Device {
        self.model.device()
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.model.named_parameters()
    }
    fn architecture(&self) -> fm_model::Architecture {
        self.model.architecture()
    }
}

/// `n` split among classes in proportion to `weights` (largest remainders), as `(class, count)`
/// with `class` the index into `weights`: samples of each class in these counts follow the
/// mixture `Σ_c p(c) p(x | c)`. Weights that sum to 0 (or are not finite) share equally.
pub fn counts_by_weight(n: usize, weights: &[f64]) -> Vec<(usize, usize)> {
    let total: f64 = weights.iter().sum();
    // No usable weights: equal shares.
    let share = |w: f64| if total > 0.0 && total.is_finite() { w / total } else { 1.0 / weights.len() as f64 };
    let exact: Vec<f64> = weights.iter().map(|&w| n as f64 * share(w)).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let short = n.saturating_sub(counts.iter().sum());
    for &c in order.iter().take(short) {
        counts[c] += 1;
    }
    counts.into_iter().enumerate().collect()
}

/// `n` fresh samples of class `class` of `target` (drawn in rounds from
/// [`fm_dist::Target::sample_conditioned`], keeping the rows of that class), in draw order.
///
/// # Errors
/// [`Error::Config`] for a target without classes, a class out of range, or a class so rare
/// that 1,000 rounds of `n` draws did not find `n` of it.
pub fn class_samples(target: &dyn fm_dist::Target, class: usize, n: usize, rng: &mut dyn rand::RngCore) -> Result<ndarray::Array2<f64>> {
    fm_dist::check_class(class, target.classes()).map_err(|e| Error::Config(e.to_string()))?;
    let mut rows: Vec<f64> = Vec::with_capacity(n * target.dim());
    let mut found = 0;
    for _ in 0..1000 {
        let drawn = target.sample_conditioned(n.max(64), rng);
        let labels = drawn.labels.unwrap_or_default();
        for (row, _) in drawn.points.rows().into_iter().zip(&labels).filter(|(_, &l)| l == class) {
            if found < n {
                rows.extend(row.iter());
                found += 1;
            }
        }
        if found == n {
            return Ok(ndarray::Array2::from_shape_vec((n, target.dim()), rows).expect("n rows of dim"));
        }
    }
    Err(Error::Config(format!("class {class} of {} is too rare to draw {n} samples of", target.name())))
}

/// How well a conditional model generates one class, against the exact class (printed by `fm
/// eval --per-class` and `cargo xtask conditional`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassQuality {
    /// The class.
    pub class: usize,
    /// The guidance scale `w` the model was sampled and judged with.
    pub scale: f64,
    /// `KL(p(·|c) ‖ q(·|c))` from the exact likelihood of the guided flow on fresh class
    /// samples (`None` where the class has no density, curve-shaped targets, or the model's
    /// samples are not its ODE's: one-step and MeanFlow models).
    pub kl: Option<KlEstimate>,
    /// The mean of `log p(x | c)` over fresh class samples minus over the generated ones, in
    /// nats, and its standard error (`None` without class densities): 0 for a perfect model,
    /// positive where the samples sit in thinner parts of the class.
    #[serde(default)]
    pub log_density_gap: Option<(f64, f64)>,
    /// Exact W2 between generated samples of the class and as many fresh ones.
    pub w2: f64,
    /// W2 between two fresh sets of the class of that size: what sampling noise alone gives.
    pub w2_floor: f64,
    /// The share of generated samples whose most probable class is `class`
    /// ([`fm_dist::Target::most_probable_class`]; `None` without class densities).
    pub purity: Option<f64>,
    /// The same share for fresh samples of the class: what a perfect model scores.
    pub true_purity: Option<f64>,
}

impl std::fmt::Display for ClassQuality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "class {} (w = {}): ", self.class, self.scale)?;
        match (&self.kl, self.log_density_gap) {
            (Some(kl), _) => write!(f, "KL {:.4} ± {:.4} nats, ", kl.kl, kl.kl_se)?,
            (None, Some(_)) => f.write_str("no KL (its samples are not its ODE's), ")?,
            (None, None) => f.write_str("no KL (no class density), ")?,
        }
        if let Some((gap, se)) = self.log_density_gap {
            write!(f, "log-density gap {gap:.4} ± {se:.4}, ")?;
        }
        write!(f, "W2 {:.4} (floor {:.4})", self.w2, self.w2_floor)?;
        if let (Some(p), Some(t)) = (self.purity, self.true_purity) {
            write!(f, ", purity {p:.4} (true samples {t:.4})")?;
        }
        Ok(())
    }
}

/// [`ClassQuality`] of `model` for class `class` as `request` generates (its generator,
/// guidance scale and sampler; its condition is replaced by the class): `w2_points` samples
/// (the source drawn with the sampler's seed) against as many fresh class samples, and, for a
/// flow (whose likelihood is its ODE's), KL on `kl_points` fresh class samples (0: none), all
/// fresh draws from `rng`. Judged in the data's units: a model trained on standardised data
/// (`model.map`) is carried back, samples and likelihood alike.
///
/// # Errors
/// [`Guided::new`]'s refusals; [`class_samples`]'s; sampling, likelihood and metric failures.
#[allow(clippy::too_many_arguments)]
pub fn class_quality<M: VelocityModel + ?Sized>(
    model: &crate::DataUnits<'_, M>,
    target: &dyn fm_dist::Target,
    class: usize,
    request: &crate::Request<'_>,
    w2_points: usize,
    kl_points: usize,
    likelihood: &crate::LikelihoodConfig,
    rng: &mut dyn rand::RngCore,
) -> Result<ClassQuality> {
    let scale = request.guidance;
    let sample = crate::SampleConfig { n_samples: w2_points, ..request.sample.clone() };
    let generated = model.generate(&crate::Request { condition: crate::Condition::Class(class), sample: &sample, ..request.clone() })?.points;
    let guided = Guided::new(model.field, Some(class), None, scale)?;
    let guided = crate::DataUnits { field: &guided, source: model.source, map: model.map, path: model.path };
    let fresh = class_samples(target, class, w2_points, rng)?;
    let other = class_samples(target, class, w2_points, rng)?;
    let w2 = fm_dist::metrics::w2(generated.view(), fresh.view())?;
    let w2_floor = fm_dist::metrics::w2(other.view(), fresh.view())?;
    let has_density = target.class_log_prob(fresh.slice(ndarray::s![..1, ..]), class).is_ok();
    let share = |x: ndarray::ArrayView2<f64>| -> Result<f64> {
        let best = target.most_probable_class(x)?;
        Ok(best.iter().filter(|b| **b == Some(class)).count() as f64 / best.len() as f64)
    };
    let (purity, true_purity) = if has_density { (Some(share(generated.view())?), Some(share(fresh.view())?)) } else { (None, None) };
    let log_density_gap = if has_density {
        let (g, t) = (target.class_log_prob(generated.view(), class)?, target.class_log_prob(fresh.view(), class)?);
        let var = |v: &ndarray::Array1<f64>| v.var(1.0) / v.len() as f64;
        Some((t.mean().unwrap_or(f64::NAN) - g.mean().unwrap_or(f64::NAN), (var(&g) + var(&t)).sqrt()))
    } else {
        None
    };
    let kl = if has_density && kl_points >= 2 && request.generator == crate::Generator::Flow {
        let start = std::time::Instant::now();
        let x = class_samples(target, class, kl_points, rng)?;
        let log_p = target.class_log_prob(x.view(), class)?;
        // The likelihood in the model's units, carried to the data's (log q_x = log q_z − log|det|).
        let z = guided.map.map_or_else(|| x.clone(), |m| m.inverse().apply(x.view()));
        let lik = crate::model_likelihood(guided.field, guided.source, z.view(), likelihood)?;
        let log_q = lik.log_q - guided.map.map_or(0.0, |m| m.log_det());
        let est = KlEstimate::from_log_probs(log_p.view(), log_q.view())?;
        Some(KlEstimate { nfe: lik.nfe, seconds: start.elapsed().as_secs_f64(), ..est })
    } else {
        None
    };
    Ok(ClassQuality { class, scale, kl, log_density_gap, w2, w2_floor, purity, true_purity })
}
