//! Energy-weighted flow matching (Dern et al. 2025, "Energy-Weighted Flow Matching: Unlocking
//! Continuous Normalizing Flows for Efficient and Scalable Boltzmann Sampling", arXiv:2509.03726).
//!
//! Flow matching needs samples of the target `p = p̃ / Z`; a Boltzmann target offers only `p̃`.
//! Writing the flow-matching loss as an expectation under a proposal `q` gives
//! `E_{x1~q}[ (p̃(x1)/q(x1)) |v_θ(x_t, t) − u_t(x_t | x0, x1)|² ] / E_q[p̃/q]`, estimated on each
//! batch with self-normalised weights `wᵢ = (p̃/q)(x1ᵢ) / mean_batch(p̃/q)`. The iterated variant
//! (iEWFM) takes the current model as its own proposal: every `every` steps it draws `size`
//! points with their exact `log q` (the divergence ODE, [`crate::sample_with_log_q`]) and
//! evaluates the energy there once (`size` evaluations, counted); training batches draw `x1`
//! uniformly from these points. The annealed variant (aEWFM) weighs by `p̃^{1/T}` with a
//! temperature `T` lowered from `T₀` to 1 over the first half of the run (geometrically, one
//! value per refresh), for landscapes whose modes a cold start would miss.
//!
//! Decisions of ours: the points of one refresh are the whole buffer (the paper keeps a buffer
//! of several refreshes; one refresh's points share one proposal, so `log q` is exactly theirs,
//! and a resumed run needs only the state's buffer); the energy is evaluated in the data's units
//! (the network trains in units standardised by the density's stated scale, see
//! [`crate::TrainingData::Energy`]); a NaN or `+∞` `log p̃` stops the run with a one-line
//! error naming the sample, as [`fm_dist::importance::ImportanceWeights::new`] does.

use super::{Batch, BatchLoss, Objective};
use crate::{Error, Result, TrainConfig, TrainingData};
use fm_model::VelocityModel;
use std::sync::Arc;
use tch::Kind;

/// Energy-weighted flow matching, iterated (`ewfm`) or annealed from `T₀` (`ewfm:T₀`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergyWeighted {
    /// The temperature of the first refresh, `≥ 1`; 1: the iterated variant, no annealing.
    pub start_temperature: f64,
    /// How the model's own samples are refreshed.
    pub plan: ProposalPlan,
}

/// How energy-weighted training draws its proposal: `size` points from the current model every
/// `every` steps, by `ode_steps` RK4 steps of the divergence-augmented ODE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposalPlan {
    /// Training steps between refreshes.
    pub every: usize,
    /// Points per refresh: the energy evaluations it costs.
    pub size: usize,
    /// RK4 steps of the ODE that draws them with their `log q`.
    pub ode_steps: usize,
}

impl Default for ProposalPlan {
    /// 4,096 points every 500 steps, 20 RK4 steps: 20 refreshes (81,920 energy evaluations) in
    /// a 10,000-step run.
    fn default() -> Self {
        Self { every: 500, size: 4096, ode_steps: 20 }
    }
}

impl Default for EnergyWeighted {
    fn default() -> Self {
        Self { start_temperature: 1.0, plan: ProposalPlan::default() }
    }
}

impl EnergyWeighted {
    /// `ewfm` or `ewfm:T0` (`T0 ≥ 1`).
    ///
    /// # Errors
    /// [`Error::Config`] for a `T0` that is not a finite number ≥ 1.
    pub fn build(arg: Option<&str>) -> Result<Arc<dyn Objective>> {
        let start_temperature = match arg {
            None => 1.0,
            Some(t) => t.parse::<f64>().map_err(|_| Error::Config(format!("objective 'ewfm' takes a start temperature T0 ≥ 1, got '{t}'")))?,
        };
        if !(start_temperature.is_finite() && start_temperature >= 1.0) {
            return Err(Error::Config(format!("objective ewfm:T0 anneals from T0 down to 1: T0 must be a finite number ≥ 1, got {start_temperature}")));
        }
        Ok(Arc::new(Self { start_temperature, ..Self::default() }))
    }

    /// The temperature of refresh `round` in a run of `steps`: `T₀^(1 − round / half)` over the
    /// first half of the refreshes, then 1.
    pub fn temperature(&self, round: usize, steps: usize) -> f64 {
        let rounds = steps.div_ceil(self.plan.every).max(1);
        let half = (rounds / 2).max(1);
        self.start_temperature.powf((1.0 - round as f64 / half as f64).max(0.0))
    }
}

impl Objective for EnergyWeighted {
    fn spelling(&self) -> String {
        match self.start_temperature {
            1.0 => "ewfm".into(),
            t => format!("ewfm:{t}"),
        }
    }

    fn check(&self, cfg: &TrainConfig, data: &TrainingData<'_>) -> Result<()> {
        if !matches!(data, TrainingData::Energy { .. }) {
            return Err(Error::Config(
                "objective ewfm trains from a density alone (TrainingData::Energy): it draws no target samples and takes no pairs".into(),
            ));
        }
        if cfg.path.needs_noise() {
            return Err(Error::Config(format!(
                "objective ewfm regresses on a path without noise: set path to linear or another deterministic path, got {}",
                cfg.path
            )));
        }
        if cfg.coupling != crate::Coupling::Independent {
            return Err(Error::Config(format!(
                "objective ewfm weighs each proposal point by its own weight: the coupling must be independent, got {}",
                cfg.coupling
            )));
        }
        Ok(())
    }

    fn loss(&self, model: &dyn VelocityModel, cfg: &TrainConfig, b: &Batch) -> Result<BatchLoss> {
        let weights = b.weights.as_ref().ok_or_else(|| Error::Internal("an ewfm batch carries no weights".into()))?;
        let (inputs, target) = cfg.path.interpolate(&b.x0, &b.x1, &b.t)?;
        let squared = model.forward(&inputs, &b.t)?.f_sub(&target)?.f_square()?;
        let per_row = squared.f_mean_dim(Some(&[1i64][..]), true, Kind::Float)?;
        Ok(BatchLoss::Loss(per_row.f_mul(weights)?.f_mean(Kind::Float)?))
    }

    fn energy(&self) -> Option<&EnergyWeighted> {
        Some(self)
    }
}
