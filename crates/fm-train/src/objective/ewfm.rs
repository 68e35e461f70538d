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

impl ProposalPlan {
    /// Checks that the counts can run: `every ≥ 1`, `size ≥ 2`, `ode_steps ≥ 1`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the count.
    pub fn validate(&self) -> Result<()> {
        if self.every == 0 || self.size < 2 || self.ode_steps == 0 {
            return Err(Error::Config(format!("objective ewfm's proposal plan needs a refresh every ≥ 1 steps, ≥ 2 points and ≥ 1 ODE steps, got {self:?}")));
        }
        Ok(())
    }
}

impl Default for EnergyWeighted {
    fn default() -> Self {
        Self { start_temperature: 1.0, plan: ProposalPlan::default() }
    }
}

impl EnergyWeighted {
    /// `ewfm`, `ewfm:T0` (`T0 ≥ 1`), or `ewfm:T0:EVERY:SIZE:ODE_STEPS` (a plan other than the
    /// default, as [`Objective::spelling`] writes it so that run files and checkpoints keep it).
    ///
    /// # Errors
    /// [`Error::Config`] for a `T0` that is not a finite number ≥ 1, or a plan that is not three
    /// counts ≥ 1 (a size ≥ 2).
    pub fn build(arg: Option<&str>) -> Result<Arc<dyn Objective>> {
        let Some(arg) = arg else { return Ok(Arc::new(Self::default())) };
        let bad = || Error::Config(format!("objective 'ewfm' takes ewfm:T0 (a start temperature T0 ≥ 1) or ewfm:T0:EVERY:SIZE:ODE_STEPS, got 'ewfm:{arg}'"));
        let parts: Vec<&str> = arg.split(':').collect();
        let start_temperature: f64 = parts[0].trim().parse().map_err(|_| bad())?;
        if !(start_temperature.is_finite() && start_temperature >= 1.0) {
            return Err(Error::Config(format!("objective ewfm:T0 anneals from T0 down to 1: T0 must be a finite number ≥ 1, got {start_temperature}")));
        }
        let plan = match parts[1..] {
            [] => ProposalPlan::default(),
            [every, size, ode_steps] => {
                let count = |v: &str| v.trim().parse::<usize>().map_err(|_| bad());
                ProposalPlan { every: count(every)?, size: count(size)?, ode_steps: count(ode_steps)? }
            }
            _ => return Err(bad()),
        };
        plan.validate()?;
        Ok(Arc::new(Self { start_temperature, plan }))
    }

    /// The temperature of refresh `round` in a run of `steps`: `T₀^(1 − round / half)` over the
    /// first `half = rounds / 2` refreshes, then 1 (a run of one refresh has no room to anneal:
    /// 1 throughout). The schedule follows `steps`: a resumed run given more steps re-times it
    /// from its next refresh on, as it does the learning rate.
    pub fn temperature(&self, round: usize, steps: usize) -> f64 {
        let half = steps.div_ceil(self.plan.every.max(1)) / 2;
        if half == 0 {
            return 1.0;
        }
        self.start_temperature.powf((1.0 - round as f64 / half as f64).max(0.0))
    }
}

impl Objective for EnergyWeighted {
    fn spelling(&self) -> String {
        let ProposalPlan { every, size, ode_steps } = self.plan;
        match (self.start_temperature, self.plan == ProposalPlan::default()) {
            (1.0, true) => "ewfm".into(),
            (t, true) => format!("ewfm:{t}"),
            (t, false) => format!("ewfm:{t}:{every}:{size}:{ode_steps}"),
        }
    }

    fn check(&self, cfg: &TrainConfig, data: &TrainingData<'_>) -> Result<()> {
        self.plan.validate()?;
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

    /// The seed's settings (batch 256, learning rate 1e-4) reach GMM-40's W2 6.97; the `energy`
    /// preset's reach 5.45 with `ewfm` and 4.06 with its own `ewfm:4` (docs/howto/energy.md).
    fn preset(&self) -> Option<&'static str> {
        Some("energy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectiveChoice;

    #[test]
    fn spellings_round_trip_with_their_plan_and_bad_ones_are_one_line() {
        for spelling in ["ewfm", "ewfm:4", "ewfm:2.5:100:512:8"] {
            assert_eq!(spelling.parse::<ObjectiveChoice>().unwrap().to_string(), spelling);
        }
        assert_eq!("ewfm:1:500:4096:20".parse::<ObjectiveChoice>().unwrap().to_string(), "ewfm", "the default plan is not spelled");
        for (bad, needle) in [("ewfm:0.5", "T0 must be"), ("ewfm:x", "takes ewfm:T0"), ("ewfm:2:100", "takes ewfm:T0"), ("ewfm:2:0:512:8", "every ≥ 1")] {
            let err = bad.parse::<ObjectiveChoice>().unwrap_err().to_string();
            assert!(err.contains(needle) && !err.contains('\n'), "{bad}: {err}");
        }
    }

    #[test]
    fn the_temperature_falls_from_t0_to_one_over_the_first_half_of_the_refreshes() {
        let annealed = EnergyWeighted { start_temperature: 4.0, ..Default::default() };
        // 10,000 steps: 20 refreshes, T = 4 at the first, 2 at the fifth (half way to the tenth), 1 from the tenth.
        let t: Vec<f64> = (0..20).map(|r| annealed.temperature(r, 10_000)).collect();
        assert_eq!((t[0], t[5], t[10], t[19]), (4.0, 2.0, 1.0, 1.0));
        assert!(t.windows(2).all(|w| w[1] <= w[0]));
        // One refresh has no room to anneal: it weighs the target itself.
        assert_eq!(annealed.temperature(0, 500), 1.0);
    }
}
