//! Flow matching (Lipman et al. 2023, "Flow Matching for Generative Modeling"; Liu et al. 2022;
//! Albergo & Vanden-Eijnden 2023): regress the network on the conditional velocity of the
//! run's probability path, `v_θ(x_t, t) ≈ u_t(x_t | x0, x1)`; sampled by integrating the ODE.

use super::{Batch, BatchLoss, Objective};
use crate::{Result, TrainConfig};
use fm_model::VelocityModel;
use rand_distr::{Distribution, StandardNormal};

/// Flow matching, the seed's objective. Draws the path's noise `ε: [n, d]` when the path has
/// one (I-CFM, the Schrödinger bridge).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowMatching;

impl Objective for FlowMatching {
    fn spelling(&self) -> String {
        "flow-matching".into()
    }

    fn extra_len(&self, cfg: &TrainConfig, n: usize, d: usize) -> usize {
        if cfg.path.needs_noise() {
            n * d
        } else {
            0
        }
    }

    fn draw(&self, _cfg: &TrainConfig, _times: &mut [f32], extra: &mut [f32], rng: &mut dyn rand::RngCore) {
        for e in extra.iter_mut() {
            *e = StandardNormal.sample(rng);
        }
    }

    fn loss(&self, _model: &dyn VelocityModel, cfg: &TrainConfig, b: &Batch) -> Result<BatchLoss> {
        let (inputs, target) = if cfg.path.needs_noise() {
            cfg.path.interpolate_with_noise(&b.x0, &b.x1, &b.t, &b.extra.f_view_as(&b.x0)?)?
        } else {
            cfg.path.interpolate(&b.x0, &b.x1, &b.t)?
        };
        Ok(BatchLoss::Regression { inputs, times: b.t.shallow_clone(), target })
    }

    fn has_flow_matching_floor(&self) -> bool {
        true
    }

    fn conditional(&self) -> bool {
        true
    }
}
