//! MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling", arXiv:2505.13447).
//!
//! MeanFlow writes `t = 1` for the noise and `t = 0` for the data, with `u(z_t, r, t)` anchored
//! at the *later* time `t`, so that `z_r = z_t − (t − r) u`. With `τ = 1 − t_paper` our average
//! velocity `u(x, r, t) = 1/(t − r) ∫_r^t v(x_τ, τ) dτ` is anchored at `x = x_r`, the start of
//! the jump in our direction, `x_t = x_r + (t − r) u(x_r, r, t)`, and equals minus theirs. Their
//! identity `u = v − (t − r) d/dt u` becomes, differentiating in the anchor time `r` along the
//! flow, `u(x_r, r, t) = v(x_r, r) + (t − r) (∂_r u + v · ∇_x u)`: the same form with the sign of
//! the derivative term turned, which the training target below uses.

use super::{require_straight_path, Batch, BatchLoss, Generator, Objective};
use crate::{Error, ProbabilityPath, Result, TrainConfig};
use fm_model::VelocityModel;
use std::sync::Arc;
use tch::Tensor;

/// A network of the average velocity `u_θ(x, r, t)` (two time inputs) trained on the straight
/// path with the MeanFlow identity as target, `sg(v + (t − r)(∂_r u_θ + v · ∇_x u_θ))` at `x_r`,
/// `v = x1 − x0`; sampled by `k` jumps `x_{t+h} = x_t + h u_θ(x_t, t, t + h)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanFlow {
    /// The share of training rows with `r < t`; the rest have `r = t`, where the target is
    /// plain flow matching's. The paper's best on ImageNet is 25 %; on the seed mixture
    /// (10,000 steps, fast preset) one-step samples measured log-density gaps of 0.246 at
    /// 25 %, 0.148 at 50 % and −0.121 at 100 % (which never learns `u(x, t, t)`): 50 % here.
    pub ratio: f64,
}

impl Default for MeanFlow {
    fn default() -> Self {
        Self { ratio: 0.5 }
    }
}

impl MeanFlow {
    /// `meanflow` or `meanflow:RATIO`.
    ///
    /// # Errors
    /// [`Error::Config`] for a ratio that is not a number in `[0, 1]`.
    pub fn build(arg: Option<&str>) -> Result<Arc<dyn Objective>> {
        let ratio = match arg {
            None => Self::default().ratio,
            Some(r) => r.parse().map_err(|_| Error::Config(format!("objective 'meanflow' takes a number RATIO in [0, 1], got '{r}'")))?,
        };
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Error::Config(format!("objective: the meanflow ratio (the share of rows with r < t) must be in [0, 1], got {ratio}")));
        }
        Ok(Arc::new(MeanFlow { ratio }))
    }
}

impl Objective for MeanFlow {
    fn spelling(&self) -> String {
        format!("meanflow:{}", self.ratio)
    }

    fn generator(&self) -> Generator {
        Generator::AverageVelocity
    }

    fn time_inputs(&self) -> usize {
        2
    }

    fn check(&self, cfg: &TrainConfig, _data: &crate::TrainingData<'_>) -> Result<()> {
        require_straight_path(self, cfg)
    }

    fn extra_len(&self, _cfg: &TrainConfig, n: usize, _d: usize) -> usize {
        n
    }

    /// The second time column: rows draw `(a, b)` from the time law; a share `ratio` of them
    /// become `(min, max)` (an interval, `r < t`), the others `(a, a)` (a point, `r = t`: plain
    /// flow matching's target).
    fn draw(&self, cfg: &TrainConfig, first: &mut [f32], second: &mut [f32], rng: &mut dyn rand::RngCore) {
        use rand::Rng;
        cfg.time_sampling.fill(second, rng);
        for (a, b) in first.iter_mut().zip(second.iter_mut()) {
            if rng.random::<f64>() < self.ratio {
                let (lo, hi) = if *a <= *b { (*a, *b) } else { (*b, *a) };
                (*a, *b) = (lo, hi);
            } else {
                *b = *a;
            }
        }
    }

    fn loss(&self, model: &dyn VelocityModel, _cfg: &TrainConfig, b: &Batch) -> Result<BatchLoss> {
        let (inputs, target, times) = meanflow_target(model, &b.x0, &b.x1, &b.t, &b.extra.f_view_as(&b.t)?, &b.conditions)?;
        Ok(BatchLoss::Regression { inputs, times, target })
    }

    /// Conditioned on classes or vectors as flow matching is: the features ride after `[r, t]`,
    /// and the derivative along the flow holds them fixed (a zero tangent).
    fn conditional(&self) -> bool {
        true
    }
}

/// MeanFlow's regression pair at `x_r = (1 − r) x0 + r x1` (anchored at the earlier time, see
/// the module docs): inputs `(x_r, [r, t])` and the target
/// `sg(v + (t − r) (∂_r u + v · ∇_x u))`, `v = x1 − x0`, with the derivative along the flow a
/// Jacobian-vector product of the network (tangent `(v, [1, 0])`) at the current weights.
/// Shapes: `x0, x1: [n, d]`, `r, t: [n, 1]` with `r ≤ t`, each row's condition features
/// `c: [n, f]` (`f = 0` for an unconditional network; fixed along the flow); returns
/// `x_r: [n, d]`, the target `[n, d]` and the times `[n, 2]` (without the features), in that order.
///
/// # Errors
/// The model's and torch's failures.
pub fn meanflow_target(
    model: &(impl VelocityModel + ?Sized),
    x0: &Tensor,
    x1: &Tensor,
    r: &Tensor,
    t: &Tensor,
    c: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (xr, v) = ProbabilityPath::Linear.interpolate(x0, x1, r)?;
    let times = Tensor::f_cat(&[r, t], 1)?;
    let tangent = Tensor::f_cat(&[r.f_ones_like()?, t.f_zeros_like()?], 1)?;
    let (_, du) = if c.size()[1] == 0 {
        model.jvp(&xr, &times, &v, &tangent)?
    } else {
        model.jvp(&xr, &Tensor::f_cat(&[&times, c], 1)?, &v, &Tensor::f_cat(&[&tangent, &c.f_zeros_like()?], 1)?)?
    };
    let target = v.f_add(&t.f_sub(r)?.f_mul(&du)?)?.f_detach()?;
    Ok((xr, target, times))
}
