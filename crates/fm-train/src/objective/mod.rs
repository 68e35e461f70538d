//! What training minimises: the [`Objective`] seam, and the choice of one in a run file or a
//! flag ([`ObjectiveChoice`], looked up in a registry by name).
//!
//! Each objective is one file here and one line of [`BUILT_IN`]; a user's own implements
//! [`Objective`] outside this crate and either goes straight into a [`crate::TrainConfig`]
//! ([`ObjectiveChoice::new`]) or is [`register`]ed so that run files and flags can name it.
//!
//! Time convention: `t = 0` is the source and `t = 1` the target everywhere here.

mod distill;
mod ewfm;
mod flow_matching;
mod likelihood;
mod meanflow;

pub use distill::Distill;
pub use ewfm::{EnergyWeighted, ProposalPlan};
pub use flow_matching::FlowMatching;
pub use likelihood::MaximumLikelihood;
pub use meanflow::{meanflow_target, MeanFlow};

use crate::{Error, Result, TrainConfig, TrainingData};
use fm_model::VelocityModel;
use std::sync::{Arc, RwLock};
use tch::Tensor;

/// One training batch on the model's device: `x0, x1: [n, d]` paired by the coupling, the
/// times `t: [n, 1]` from the time law (after [`Objective::draw`]), and what the objective drew
/// beside them (`extra`: flat, [`Objective::extra_len`] values; empty when it draws nothing).
pub struct Batch {
    /// Source points, `[n, d]`.
    pub x0: Tensor,
    /// Target points (the data), `[n, d]`.
    pub x1: Tensor,
    /// Times, `[n, 1]`.
    pub t: Tensor,
    /// The objective's own draws, flat `[extra_len]`.
    pub extra: Tensor,
    /// Each row's condition features, `[n, features]` (`[n, 0]` unconditioned): the loop appends
    /// them to a regression's times; an objective that evaluates the network itself appends them.
    pub conditions: Tensor,
    /// Each row's self-normalised importance weight, `[n, 1]` with mean 1, when the target
    /// points are a proposal's weighed against a density ([`TrainingData::Energy`]); `None` for
    /// target samples and pairs.
    pub weights: Option<Tensor>,
}

/// What one batch asks the loop to minimise.
pub enum BatchLoss {
    /// `mean |f_θ(inputs, times) − target|²`: the loop appends each row's condition features to
    /// `times` (conditional training) and may use the network's written-out backward pass.
    Regression {
        /// The network's point inputs, `[n, d]`.
        inputs: Tensor,
        /// Its time inputs, `[n, time_inputs]`.
        times: Tensor,
        /// The regression target, `[n, d]`, not tracking gradients.
        target: Tensor,
    },
    /// Any scalar that tracks gradients to the model's parameters; the loop backpropagates it.
    Loss(Tensor),
}

/// What training regresses the network on, or minimises, one batch at a time. The loop owns
/// the data, the optimizer, the schedule and the checkpoints; an objective says what it needs
/// (times, extra draws, a kind of network) and turns a batch into a loss.
///
/// Implementations: [`FlowMatching`], [`Distill`], [`MeanFlow`], [`MaximumLikelihood`]; the
/// example `shortcut` defines one outside the crate.
pub trait Objective: std::fmt::Debug + Send + Sync {
    /// Its spelling in run files and flags (`meanflow:0.5`): [`ObjectiveChoice`] parses it back.
    fn spelling(&self) -> String;

    /// What the trained network outputs, hence how it generates.
    fn generator(&self) -> Generator {
        Generator::Flow
    }

    /// Time inputs per row the network takes (2 for an average velocity `u(x, r, t)`).
    fn time_inputs(&self) -> usize {
        1
    }

    /// Refuses settings and data it does not apply to, before any work.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting and why.
    fn check(&self, cfg: &TrainConfig, data: &TrainingData<'_>) -> Result<()> {
        let _ = (cfg, data);
        Ok(())
    }

    /// How many values per batch of `n` rows of `d`-D points [`Objective::draw`] fills.
    fn extra_len(&self, cfg: &TrainConfig, n: usize, d: usize) -> usize {
        let _ = (cfg, n, d);
        0
    }

    /// Its random draws for one batch, after the points and the time law's `times` (which it
    /// may change), from the step's own generator.
    fn draw(&self, cfg: &TrainConfig, times: &mut [f32], extra: &mut [f32], rng: &mut dyn rand::RngCore) {
        let _ = (cfg, times, extra, rng);
    }

    /// The batch's loss for `model` at its current weights.
    ///
    /// # Errors
    /// The model's and torch's failures.
    fn loss(&self, model: &dyn VelocityModel, cfg: &TrainConfig, batch: &Batch) -> Result<BatchLoss>;

    /// Whether its loss is flow matching's, whose floor the exact flow gives.
    fn has_flow_matching_floor(&self) -> bool {
        false
    }

    /// Whether it can train a conditional network (flow matching: the condition rides with the
    /// time inputs of a regression).
    fn conditional(&self) -> bool {
        false
    }

    /// How it trains from a density alone, where it does: the loop then refreshes a weighted
    /// proposal from the model as its settings say ([`EnergyWeighted`]).
    fn energy(&self) -> Option<&EnergyWeighted> {
        None
    }

    /// The preset ([`crate::Preset::named`]) whose settings it was measured with, where the
    /// seed's do not suit it: a run that names neither a preset nor a run file starts from it.
    fn preset(&self) -> Option<&'static str> {
        None
    }
}

/// Builds an objective from the text after its name (`meanflow:0.5` → `Some("0.5")`).
pub type Builder = fn(Option<&str>) -> Result<Arc<dyn Objective>>;

/// The objectives every run file and flag can name: `(name, builder, spelling for help)`.
pub const BUILT_IN: [(&str, Builder, &str); 5] = [
    ("flow-matching", |arg| no_argument("flow-matching", arg, FlowMatching), "flow-matching"),
    ("distill", |arg| no_argument("distill", arg, Distill), "distill"),
    ("meanflow", MeanFlow::build, "meanflow[:RATIO]"),
    ("likelihood", MaximumLikelihood::build, "likelihood[:STEPS]"),
    ("ewfm", EnergyWeighted::build, "ewfm[:T0]"),
];

fn no_argument(name: &str, arg: Option<&str>, objective: impl Objective + 'static) -> Result<Arc<dyn Objective>> {
    match arg {
        None => Ok(Arc::new(objective)),
        Some(a) => Err(Error::Config(format!("objective '{name}' takes no argument, got '{name}:{a}'"))),
    }
}

/// Objectives registered at run time, beside [`BUILT_IN`].
static REGISTERED: RwLock<Vec<(String, Builder, String)>> = RwLock::new(Vec::new());

/// Makes `name` (and `name:ARG`) a valid objective in run files and flags from now on in this
/// process, built by `build`; `help` is its spelling in error messages (`shortcut[:K]`).
///
/// # Errors
/// [`Error::Config`] when `name` is taken (built in or registered already) or not a plain word.
pub fn register(name: &str, build: Builder, help: &str) -> Result<()> {
    if name.is_empty() || name.contains([':', ' ']) || name.to_ascii_lowercase() != name {
        return Err(Error::Config(format!("objective name '{name}': use lowercase words without ':' or spaces")));
    }
    let mut registered = REGISTERED.write().map_err(|_| Error::Internal("the objective registry was poisoned".into()))?;
    if BUILT_IN.iter().any(|b| b.0 == name) || registered.iter().any(|r| r.0 == name) {
        return Err(Error::Config(format!("objective '{name}' is already registered")));
    }
    registered.push((name.to_string(), build, help.to_string()));
    Ok(())
}

/// Every spelling an objective may take, for help texts and errors.
pub fn names() -> Vec<String> {
    let mut all: Vec<String> = BUILT_IN.iter().map(|b| b.2.to_string()).collect();
    if let Ok(registered) = REGISTERED.read() {
        all.extend(registered.iter().map(|r| r.2.clone()));
    }
    all
}

/// The objective of a run: a shared [`Objective`], compared, printed and saved by its
/// spelling, parsed back through the registry. `Default`: flow matching.
#[derive(Clone)]
pub struct ObjectiveChoice(Arc<dyn Objective>);

impl ObjectiveChoice {
    /// Any objective, a user's own included.
    pub fn new(objective: impl Objective + 'static) -> Self {
        Self(Arc::new(objective))
    }

    /// Flow matching, the seed's.
    pub fn flow_matching() -> Self {
        Self::new(FlowMatching)
    }

    /// Distillation into a one-step map.
    pub fn distill() -> Self {
        Self::new(Distill)
    }

    /// MeanFlow with the default share of `r ≠ t` rows.
    pub fn meanflow() -> Self {
        Self::new(MeanFlow::default())
    }

    /// Whether this is the objective spelled `name` (the part before any `:`).
    pub fn is(&self, name: &str) -> bool {
        crate::split_spec(&self.0.spelling()).0 == name
    }
}

impl Default for ObjectiveChoice {
    fn default() -> Self {
        Self::flow_matching()
    }
}

impl std::ops::Deref for ObjectiveChoice {
    type Target = dyn Objective;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl PartialEq for ObjectiveChoice {
    fn eq(&self, other: &Self) -> bool {
        self.0.spelling() == other.0.spelling()
    }
}

impl std::fmt::Debug for ObjectiveChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::fmt::Display for ObjectiveChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.spelling())
    }
}

impl std::str::FromStr for ObjectiveChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let spec = s.trim().to_ascii_lowercase();
        let (name, arg) = crate::split_spec(&spec);
        if let Some(b) = BUILT_IN.iter().find(|b| b.0 == name) {
            return Ok(Self((b.1)(arg)?));
        }
        let registered = REGISTERED.read().map_err(|_| Error::Internal("the objective registry was poisoned".into()))?;
        match registered.iter().find(|r| r.0 == name) {
            Some(r) => Ok(Self((r.1)(arg)?)),
            None => Err(Error::Config(format!("unknown objective '{}'; valid: {}", s.trim(), names().join(", ")))),
        }
    }
}

/// Saved as its spelling (`"meanflow:0.5"`).
impl serde::Serialize for ObjectiveChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.spelling())
    }
}

/// Read from its spelling, or from the table earlier versions wrote (`{ meanflow = { ratio = 0.5 } }`,
/// `{"meanflow":{"ratio":0.5}}`): a table of one objective with at most one setting.
impl<'de> serde::Deserialize<'de> for ObjectiveChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let spelling = match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => s,
            serde_json::Value::Object(table) if table.len() == 1 => {
                let (name, settings) = table.into_iter().next().expect("one entry");
                match settings {
                    serde_json::Value::Object(s) if s.is_empty() => name,
                    serde_json::Value::Object(s) if s.len() == 1 => format!("{name}:{}", s.values().next().expect("one setting")),
                    _ => return Err(D::Error::custom(format!("objective {{ {name} = … }}: expected one setting, as in \"{name}:VALUE\""))),
                }
            }
            _ => return Err(D::Error::custom("expected the objective spelled as on the command line, in quotes (e.g. \"meanflow:0.5\")")),
        };
        spelling.parse().map_err(D::Error::custom)
    }
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
    /// Every kind, in declaration order.
    pub const ALL: [Generator; 3] = [Generator::Flow, Generator::OneStep, Generator::AverageVelocity];

    /// What the network outputs, as a checkpoint records it: `velocity`, `one-step map` or
    /// `average velocity`.
    pub fn output(self) -> &'static str {
        match self {
            Generator::Flow => "velocity",
            Generator::OneStep => "one-step map",
            Generator::AverageVelocity => "average velocity",
        }
    }

    /// The kind whose [`Generator::output`] is `output`.
    ///
    /// # Errors
    /// [`Error::Config`] for another spelling (a file written by a newer fm, or edited).
    pub fn from_output(output: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|g| g.output() == output).ok_or_else(|| {
            let known: Vec<_> = Self::ALL.iter().map(|g| g.output()).collect();
            Error::Config(format!("the checkpoint records its network's output as '{output}', not one this fm knows ({})", known.join(", ")))
        })
    }

    /// Checks that `cfg` samples this kind of model as it was trained to be sampled.
    ///
    /// # Errors
    /// [`Error::Config`]: a one-step model with another method than Euler or more than one step;
    /// an average-velocity model with another method than Euler (its jumps are Euler's update
    /// with the average velocity; `steps` chooses how many).
    pub fn check(self, cfg: &crate::SampleConfig) -> Result<()> {
        let method = cfg.method;
        if self != Generator::Flow && cfg.sde.is_some() {
            return Err(crate::sde::needs_a_velocity(self));
        }
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

    /// How such a model is sampled, for a person reading `fm inspect`.
    pub fn how_to_sample(self) -> &'static str {
        match self {
            Generator::Flow => "a velocity field: any integrator, any steps",
            Generator::OneStep => "a one-step map x0 + v(x0, 0): fm sample --steps 1",
            Generator::AverageVelocity => "an average velocity: fm sample --steps K makes K jumps (K network evaluations)",
        }
    }

    /// Whether it is a velocity field, whose samples are an ODE's and whose likelihood the
    /// divergence-augmented ODE gives; a one-step map's and a MeanFlow model's samples are not.
    pub fn is_flow(self) -> bool {
        self == Generator::Flow
    }

    /// The steps its samples are judged in, given the steps a run file sets (if any): a
    /// one-step map in one, an average velocity in the run's jumps (one without a run file).
    pub fn judged_steps(self, configured: Option<usize>) -> usize {
        match self {
            Generator::AverageVelocity => configured.unwrap_or(1),
            _ => 1,
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

/// The refusal of an objective derived for the straight path `x_t = (1 − t) x0 + t x1`.
pub(crate) fn require_straight_path(objective: &dyn Objective, cfg: &TrainConfig) -> Result<()> {
    if cfg.path != crate::ProbabilityPath::Linear {
        return Err(Error::Config(format!(
            "objective {} is derived for the straight path x_t = (1 − t) x0 + t x1: set path to linear, got {}",
            objective.spelling(),
            cfg.path
        )));
    }
    Ok(())
}
