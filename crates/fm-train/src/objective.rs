//! What the network learns: the velocity of the flow, a one-step map, or the average velocity
//! over an interval (few-step generation).
//!
//! Time convention: `t = 0` is the source and `t = 1` the target everywhere here. MeanFlow
//! (Geng et al. 2025, "Mean Flows for One-step Generative Modeling", arXiv:2505.13447) writes
//! `t = 1` for the noise and `t = 0` for the data, with `u(z_t, r, t)` anchored at the *later*
//! time `t`, so that `z_r = z_t − (t − r) u`. With `τ = 1 − t_paper` our average velocity
//! `u(x, r, t) = 1/(t − r) ∫_r^t v(x_τ, τ) dτ` is anchored at `x = x_r`, the start of the jump
//! in our direction, `x_t = x_r + (t − r) u(x_r, r, t)`, and equals minus theirs. Their identity
//! `u = v − (t − r) d/dt u` becomes, differentiating in the anchor time `r` along the flow,
//! `u(x_r, r, t) = v(x_r, r) + (t − r) (∂_r u + v · ∇_x u)`: the same form with the sign of the
//! derivative term turned, which the training target below uses.

use crate::{Error, ProbabilityPath, Result};
use fm_model::VelocityModel;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// What training regresses the network on. Serde names: `"flow-matching"`, `"distill"`,
/// `{ meanflow = { ratio = 0.5 } }`; [`std::str::FromStr`] takes `flow-matching`, `distill`,
/// `meanflow` or `meanflow:RATIO`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Flow matching (Lipman et al. 2023): `v_θ(x_t, t) ≈ u_t`, sampled by integrating the ODE.
    #[default]
    FlowMatching,
    /// Distillation into a one-step map (Liu et al. 2022, "Flow Straight and Fast", §2.3): on
    /// coupled pairs (a teacher's source points and their images), `v_θ(x0, 0) ≈ x1 − x0`
    /// (the linear path at `t = 0` only), so that `x1 ≈ x0 + v_θ(x0, 0)`: one evaluation. The
    /// model is valid at `t = 0` only, and is sampled by one Euler step.
    Distill,
    /// MeanFlow (Geng et al. 2025): a network of the average velocity `u_θ(x, r, t)` (two time
    /// inputs) trained on the straight path with the MeanFlow identity as target,
    /// `sg(v + (t − r)(∂_r u_θ + v · ∇_x u_θ))` at `x_r`, `v = x1 − x0` (see the module docs for
    /// the time convention); sampled by `k` jumps `x_{t+h} = x_t + h u_θ(x_t, t, t + h)`.
    #[serde(rename = "meanflow")]
    MeanFlow {
        /// The share of training rows with `r < t`; the rest have `r = t`, where the target is
        /// plain flow matching's. The paper's best on ImageNet is 25 %; on the seed mixture
        /// (10,000 steps, fast preset) one-step samples measured log-density gaps of 0.246 at
        /// 25 %, 0.148 at 50 % and −0.121 at 100 % (which never learns `u(x, t, t)`): 50 % here.
        #[serde(default = "default_ratio")]
        ratio: f64,
    },
}

/// The default share of rows with `r ≠ t` (see [`Objective::MeanFlow`]).
fn default_ratio() -> f64 {
    0.5
}

/// What a trained model generates with, read from its objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    /// A velocity field: any integrator, any number of steps.
    Flow,
    /// A one-step map `x0 + v(x0, 0)`: one Euler step, nothing else.
    OneStep,
    /// An average velocity: `k` jumps of `1/k` (Euler's update with `u` in place of `v`).
    AverageVelocity,
}

impl Generator {
    /// Checks that `cfg` samples this kind of model as it was trained to be sampled.
    ///
    /// # Errors
    /// [`Error::Config`]: a one-step model with another method than Euler or more than one step;
    /// an average-velocity model with another method than Euler (its jumps are Euler's update
    /// with the average velocity; `steps` chooses how many).
    pub fn check(self, cfg: &crate::SampleConfig) -> Result<()> {
        let method = cfg.method;
        match self {
            Generator::Flow => Ok(()),
            Generator::OneStep if method != fm_ode::Method::Euler || cfg.steps != 1 => Err(Error::Config(format!(
                "a distilled model is a one-step map x0 + v(x0, 0), valid at t = 0 only: sample it with --method euler --steps 1, not {}",
                if method.is_adaptive() { method.to_string() } else { format!("{method} with {} step{}", cfg.steps, if cfg.steps == 1 { "" } else { "s" }) }
            ))),
            Generator::AverageVelocity if method != fm_ode::Method::Euler => Err(Error::Config(format!(
                "a MeanFlow model jumps with its average velocity, x + h·u(x, t, t + h), in --steps jumps: --method {method} does not apply (use --method euler)"
            ))),
            _ => Ok(()),
        }
    }

    /// Sets what this kind of model samples with unless the user gave it: one Euler step for a
    /// one-step map; Euler's update (the jumps) for an average velocity; nothing for a flow.
    pub fn defaults(self, cfg: &mut crate::SampleConfig, steps_given: bool, method_given: bool) {
        if self != Generator::Flow && !method_given {
            cfg.method = fm_ode::Method::Euler;
        }
        if self == Generator::OneStep && !steps_given {
            cfg.steps = 1;
        }
    }

    /// A word for reports: `flow`, `one-step`, `meanflow`.
    pub fn name(self) -> &'static str {
        match self {
            Generator::Flow => "flow",
            Generator::OneStep => "one-step",
            Generator::AverageVelocity => "meanflow",
        }
    }
}

impl Objective {
    /// MeanFlow with the paper's share of `r ≠ t` rows.
    pub fn meanflow() -> Self {
        Objective::MeanFlow { ratio: default_ratio() }
    }

    /// The names [`std::str::FromStr`] takes.
    pub const NAMES: [&'static str; 3] = ["flow-matching", "distill", "meanflow[:RATIO]"];

    /// How a model trained with this objective generates.
    pub fn generator(self) -> Generator {
        match self {
            Objective::FlowMatching => Generator::Flow,
            Objective::Distill => Generator::OneStep,
            Objective::MeanFlow { .. } => Generator::AverageVelocity,
        }
    }

    /// Times per row the network must take: 2 for MeanFlow's `u(x, r, t)`, else 1.
    pub fn time_inputs(self) -> usize {
        match self {
            Objective::MeanFlow { .. } => 2,
            _ => 1,
        }
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::Config`] for a MeanFlow ratio outside `[0, 1]`.
    pub fn validate(self) -> Result<()> {
        if let Objective::MeanFlow { ratio } = self {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(Error::Config(format!("objective: the meanflow ratio (the share of rows with r < t) must be in [0, 1], got {ratio}")));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Objective::FlowMatching => f.write_str("flow-matching"),
            Objective::Distill => f.write_str("distill"),
            Objective::MeanFlow { ratio } => write!(f, "meanflow:{ratio}"),
        }
    }
}

impl std::str::FromStr for Objective {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let spec = s.trim().to_ascii_lowercase();
        let objective = match crate::split_spec(&spec) {
            ("flow-matching", None) => Objective::FlowMatching,
            ("distill", None) => Objective::Distill,
            ("meanflow", None) => Objective::meanflow(),
            ("meanflow", Some(r)) => Objective::MeanFlow {
                ratio: r.trim().parse().map_err(|_| Error::Config(format!("objective 'meanflow' takes a number RATIO in [0, 1], got '{r}'")))?,
            },
            _ => return Err(Error::Config(format!("unknown objective '{}'; valid: {}", s.trim(), Self::NAMES.join(", ")))),
        };
        objective.validate()?;
        Ok(objective)
    }
}

/// MeanFlow's regression pair at `x_r = (1 − r) x0 + r x1` (anchored at the earlier time, see
/// the module docs): inputs `(x_r, [r, t])` and the target
/// `sg(v + (t − r) (∂_r u + v · ∇_x u))`, `v = x1 − x0`, with the derivative along the flow a
/// Jacobian-vector product of the network (tangent `(v, [1, 0])`) at the current weights.
/// Shapes: `x0, x1: [n, d]`, `r, t: [n, 1]` with `r ≤ t`; returns `x_r: [n, d]`, the target
/// `[n, d]` and the times `[n, 2]`, in that order.
///
/// # Errors
/// The model's and torch's failures.
pub fn meanflow_target(model: &(impl VelocityModel + ?Sized), x0: &Tensor, x1: &Tensor, r: &Tensor, t: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let (xr, v) = ProbabilityPath::Linear.interpolate(x0, x1, r)?;
    let times = Tensor::f_cat(&[r, t], 1)?;
    let tangent = Tensor::f_cat(&[r.f_ones_like()?, t.f_zeros_like()?], 1)?;
    let (_, du) = model.jvp(&xr, &times, &v, &tangent)?;
    let target = v.f_add(&t.f_sub(r)?.f_mul(&du)?)?.f_detach()?;
    Ok((xr, target, times))
}

/// Fills the second time column of a MeanFlow batch: rows draw `(a, b)` from the time law in
/// `first` and `second`; a share `ratio` of them become `(min, max)` (an interval, `r < t`), the
/// others `(a, a)` (a point, `r = t`: plain flow matching's target).
pub(crate) fn meanflow_times(first: &mut [f32], second: &mut [f32], ratio: f64, rng: &mut dyn rand::RngCore) {
    use rand::Rng;
    for (a, b) in first.iter_mut().zip(second.iter_mut()) {
        if rng.random::<f64>() < ratio {
            let (lo, hi) = if *a <= *b { (*a, *b) } else { (*b, *a) };
            (*a, *b) = (lo, hi);
        } else {
            *b = *a;
        }
    }
}
