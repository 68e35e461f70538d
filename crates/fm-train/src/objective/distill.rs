//! Distillation into a one-step map (Liu et al. 2022, "Flow Straight and Fast", §2.3).

use super::{require_straight_path, Batch, BatchLoss, Generator, Objective};
use crate::{Error, Result, TrainConfig, TrainingData};
use fm_model::VelocityModel;

/// On coupled pairs (a teacher's source points and their images), `v_θ(x0, 0) ≈ x1 − x0` (the
/// linear path at `t = 0` only), so that `x1 ≈ x0 + v_θ(x0, 0)`: one evaluation. The model is
/// valid at `t = 0` only, and is sampled by one Euler step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Distill;

impl Objective for Distill {
    fn spelling(&self) -> String {
        "distill".into()
    }

    fn generator(&self) -> Generator {
        Generator::OneStep
    }

    fn check(&self, cfg: &TrainConfig, data: &TrainingData<'_>) -> Result<()> {
        require_straight_path(self, cfg)?;
        if !matches!(data, TrainingData::Pairs(_)) {
            return Err(Error::Config(
                "objective distill learns a teacher's one-step map from its coupled pairs: train it on pairs (fm train --pairs FILE)".into(),
            ));
        }
        Ok(())
    }

    fn draw(&self, _cfg: &TrainConfig, times: &mut [f32], _extra: &mut [f32], _rng: &mut dyn rand::RngCore) {
        times.fill(0.0);
    }

    fn loss(&self, _model: &dyn VelocityModel, cfg: &TrainConfig, b: &Batch) -> Result<BatchLoss> {
        let (inputs, target) = cfg.path.interpolate(&b.x0, &b.x1, &b.t)?;
        Ok(BatchLoss::Regression { inputs, times: b.t.shallow_clone(), target })
    }
}
