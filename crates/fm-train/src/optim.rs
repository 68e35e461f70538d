//! Optimisation: Adam and AdamW, the learning-rate schedule, gradient clipping and an
//! exponential moving average of the weights.
//!
//! Adam is owned here rather than taken from `tch::nn::Optimizer`: its moments are plain
//! named tensors we can checkpoint, and every operation is fallible instead of panicking.
//! The update is PyTorch's `torch.optim.Adam` / `AdamW` (single-tensor form) step for step.

use crate::{Error, Result};
use fm_model::VelocityModel;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use tch::{Device, Kind, Tensor};

/// Which Adam. Serde names `"adam"` and `"adamw"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OptimizerKind {
    /// `torch.optim.Adam`: a weight decay `λ` is an L2 term added to the gradient (`g + λ p`).
    #[default]
    #[serde(rename = "adam")]
    Adam,
    /// `torch.optim.AdamW`: decoupled weight decay, `p ← p (1 − lr λ)` before the Adam update.
    #[serde(rename = "adamw")]
    AdamW,
}

impl OptimizerKind {
    /// The serde and command-line name: `adam` or `adamw`.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
        }
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OptimizerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "adam" => Ok(OptimizerKind::Adam),
            "adamw" => Ok(OptimizerKind::AdamW),
            _ => Err(Error::Config(format!("unknown optimizer '{}'; valid optimizers: adam, adamw", s.trim()))),
        }
    }
}

/// Adam (or AdamW) over a list of named parameters.
///
/// When the parameters can share one buffer (the same floating-point kind and device, all
/// tracking gradients, no tensor given twice), the constructor moves them into one contiguous
/// tensor: every parameter becomes a view of it (`Tensor::set_data`, so every handle to the
/// parameter, the model's included, sees the move; the values do not change). The moments
/// and the gradients live in flat tensors of the same layout, the gradients as views that
/// backpropagation accumulates into, and a step is a handful of operations on the flat
/// tensors instead of as many per parameter, with the same arithmetic element by element.
/// Whenever that layout no longer holds (a parameter moved elsewhere, a gradient missing
/// or replaced), the update goes tensor by tensor as before, on the same moments.
pub struct Adam {
    names: Vec<String>,
    params: Vec<Tensor>,
    /// Views of `flat.exp_avg` when there is one.
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    flat: Option<FlatAdam>,
    /// Learning rate of the next step (a schedule sets it before each step).
    pub lr: f64,
    /// `(β1, β2)`: the decay rates of the averages of the gradient and of its square.
    pub betas: (f64, f64),
    /// `ε`, added to the bias-corrected `√v̂` in the update's denominator.
    pub eps: f64,
    /// `λ`: an L2 term for [`OptimizerKind::Adam`], decoupled for [`OptimizerKind::AdamW`].
    pub weight_decay: f64,
    /// Adam or AdamW: how `weight_decay` enters the update.
    pub kind: OptimizerKind,
    step: u64,
}

/// The contiguous buffers behind [`Adam`]: the parameters, their gradients and moments, each
/// one tensor, parameter `i` at elements `offset_i .. offset_i + numel_i` of every one.
struct FlatAdam {
    params: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// Parameter `i`'s view of `grad`, shaped like it.
    grad_slots: Vec<Tensor>,
    /// Where each parameter's data, and each gradient slot, start: while a parameter's data
    /// pointer is that of its slot of `params`, it is that slot (the buffer is alive, so no
    /// other tensor can hold that address).
    param_ptrs: Vec<usize>,
    grad_ptrs: Vec<usize>,
}

/// Where each of `params` goes in a flat buffer, as `(offset, numel, shape)`, and the buffer's length.
fn layout(params: &[Tensor]) -> (Vec<(i64, i64, Vec<i64>)>, i64) {
    let mut offset = 0;
    let slots = params
        .iter()
        .map(|p| {
            let n = p.numel() as i64;
            offset += n;
            (offset - n, n, p.size())
        })
        .collect();
    (slots, offset)
}

/// The views of `flat` at `slots`.
fn views(flat: &Tensor, slots: &[(i64, i64, Vec<i64>)]) -> Result<Vec<Tensor>> {
    slots.iter().map(|(offset, n, shape)| Ok(flat.f_narrow(0, *offset, *n)?.f_view(shape.as_slice())?)).collect()
}

impl FlatAdam {
    /// Moves `params` into one buffer (see [`Adam`]), or `None` when they cannot share one.
    fn new(params: &mut [Tensor]) -> Result<Option<Self>> {
        let Some(first) = params.first() else { return Ok(None) };
        let (kind, device) = (first.kind(), first.device());
        let mut ptrs: Vec<usize> = params.iter().map(|p| p.data_ptr() as usize).collect();
        ptrs.sort_unstable();
        let shareable = params.iter().all(|p| p.kind() == kind && p.device() == device && p.is_floating_point() && p.requires_grad() && p.numel() > 0)
            && ptrs.windows(2).all(|w| w[0] != w[1]);
        if !shareable {
            return Ok(None);
        }
        let (slots, total) = layout(params);
        let _no_grad = tch::no_grad_guard();
        let zeros = || Tensor::f_zeros([total], (kind, device));
        let flat = Self {
            params: zeros()?,
            grad: zeros()?,
            exp_avg: zeros()?,
            exp_avg_sq: zeros()?,
            grad_slots: Vec::new(),
            param_ptrs: Vec::new(),
            grad_ptrs: Vec::new(),
        };
        let param_slots = views(&flat.params, &slots)?;
        for (p, slot) in params.iter_mut().zip(&param_slots) {
            slot.shallow_clone().f_copy_(p)?;
            p.f_set_data(slot)?;
        }
        let grad_slots = views(&flat.grad, &slots)?;
        Ok(Some(Self {
            param_ptrs: param_slots.iter().map(|t| t.data_ptr() as usize).collect(),
            grad_ptrs: grad_slots.iter().map(|t| t.data_ptr() as usize).collect(),
            grad_slots,
            ..flat
        }))
    }

    /// Whether every parameter is still its slot of the buffer.
    fn params_in_place(&self, params: &[Tensor]) -> bool {
        params.iter().zip(&self.param_ptrs).all(|(p, &ptr)| p.data_ptr() as usize == ptr)
    }

    /// Whether every parameter has a gradient and every gradient is its slot of `grad`.
    fn grads_in_place(&self, params: &[Tensor]) -> bool {
        params.iter().zip(&self.grad_ptrs).all(|(p, &ptr)| {
            let g = p.grad();
            g.defined() && g.data_ptr() as usize == ptr
        })
    }

    /// Whether the flat update applies: every parameter in place and with a gradient. A
    /// gradient held elsewhere (the first backward pass allocates them, or someone replaced
    /// one) is moved into its slot, values kept, so later passes accumulate there.
    fn ready(&mut self, params: &[Tensor]) -> Result<bool> {
        if !self.params_in_place(params) {
            return Ok(false);
        }
        let _no_grad = tch::no_grad_guard();
        for ((p, slot), &ptr) in params.iter().zip(&self.grad_slots).zip(&self.grad_ptrs) {
            let mut g = p.grad();
            if !g.defined() {
                return Ok(false);
            }
            if g.data_ptr() as usize != ptr {
                slot.shallow_clone().f_copy_(&g)?;
                g.f_set_data(slot)?;
            }
        }
        Ok(true)
    }
}

impl std::fmt::Debug for Adam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adam")
            .field("kind", &self.kind)
            .field("lr", &self.lr)
            .field("betas", &self.betas)
            .field("eps", &self.eps)
            .field("weight_decay", &self.weight_decay)
            .field("step", &self.step)
            .field("params", &self.names)
            .field("flat", &self.flat.is_some())
            .finish()
    }
}

impl Adam {
    /// Adam with PyTorch's defaults (betas 0.9, 0.999, eps 1e-8, no weight decay).
    ///
    /// The parameters are moved into one buffer when they can share one (see [`Adam`]).
    ///
    /// # Errors
    /// [`Error::Torch`] when the buffers or moments cannot be allocated or the parameters moved.
    pub fn new(params: Vec<(String, Tensor)>, lr: f64) -> Result<Self> {
        let (names, mut params): (Vec<String>, Vec<Tensor>) = params.into_iter().unzip();
        let flat = FlatAdam::new(&mut params)?;
        let (exp_avg, exp_avg_sq) = match &flat {
            Some(f) => {
                let (slots, _) = layout(&params);
                (views(&f.exp_avg, &slots)?, views(&f.exp_avg_sq, &slots)?)
            }
            None => {
                let zeros = || params.iter().map(|p| p.f_zeros_like()).collect::<std::result::Result<Vec<_>, _>>();
                (zeros()?, zeros()?)
            }
        };
        Ok(Self { names, params, exp_avg, exp_avg_sq, flat, lr, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, kind: OptimizerKind::Adam, step: 0 })
    }

    /// AdamW with PyTorch's defaults but for the weight decay.
    ///
    /// # Errors
    /// As [`Adam::new`].
    pub fn adamw(params: Vec<(String, Tensor)>, lr: f64, weight_decay: f64) -> Result<Self> {
        Ok(Self { weight_decay, kind: OptimizerKind::AdamW, ..Self::new(params, lr)? })
    }

    /// Updates taken so far (PyTorch's `state["step"]`).
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The parameters, in the order given to the constructor.
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// Their names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether the parameters live in one buffer and the next step can update them at once.
    pub fn is_flat(&self) -> bool {
        self.flat.as_ref().is_some_and(|f| f.params_in_place(&self.params))
    }

    /// Clears the gradients (zeroes them in place; parameters without one keep none).
    pub fn zero_grad(&mut self) {
        if let Some(flat) = &mut self.flat {
            if flat.grads_in_place(&self.params) && flat.grad.f_zero_().is_ok() {
                return;
            }
        }
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Backpropagates `loss` into fresh gradients and applies one update.
    ///
    /// # Errors
    /// [`Error::Torch`] when backpropagation or the update fails.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        self.zero_grad();
        loss.f_backward()?;
        self.step()
    }

    /// [`clip_grad_norm`] of this optimizer's parameters, the gradients scaled in one
    /// operation when they are in one buffer.
    ///
    /// # Errors
    /// [`Error::Torch`] when a torch operation fails.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Result<Tensor> {
        if let Some(flat) = &mut self.flat {
            if flat.ready(&self.params)? {
                let _no_grad = tch::no_grad_guard();
                let (total, coef) = clip_coefficient(&flat.grad_slots, max_norm)?;
                let _ = flat.grad.f_mul_(&coef)?;
                return Ok(total);
            }
        }
        clip_grad_norm(&self.params, max_norm)
    }

    /// Applies one update from the gradients the parameters hold (parameters without a
    /// gradient are left alone, as PyTorch does).
    ///
    /// Adam (Kingma & Ba 2015, Algorithm 1) in PyTorch's arrangement: at step `k`, with
    /// `g` the gradient (plus `λ p` for [`OptimizerKind::Adam`] with weight decay),
    /// `m ← β1 m + (1 − β1) g`, `v ← β2 v + (1 − β2) g²` and
    /// `p ← p − lr / (1 − β1^k) · m / (√v / √(1 − β2^k) + ε)`. [`OptimizerKind::AdamW`]
    /// first decays the weights, `p ← p (1 − lr λ)` (Loshchilov & Hutter 2019).
    ///
    /// # Errors
    /// [`Error::Torch`] when a torch operation fails.
    pub fn step(&mut self) -> Result<()> {
        let _no_grad = tch::no_grad_guard();
        self.step += 1;
        let (b1, b2) = self.betas;
        let bias1 = 1.0 - b1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        let (lr, eps, weight_decay, kind) = (self.lr, self.eps, self.weight_decay, self.kind);
        // One parameter's update, or all of them at once on the flat buffers.
        let update = |p: &mut Tensor, mut g: Tensor, m: &mut Tensor, v: &mut Tensor| -> Result<()> {
            if weight_decay != 0.0 {
                match kind {
                    OptimizerKind::AdamW => {
                        let _ = p.f_mul_scalar_(1.0 - lr * weight_decay)?;
                    }
                    OptimizerKind::Adam => g = g.f_add(&p.f_mul_scalar(weight_decay)?)?,
                }
            }
            let _ = m.f_lerp_(&g, 1.0 - b1)?;
            let _ = v.f_mul_scalar_(b2)?.f_addcmul_(&g, &g.f_mul_scalar(1.0 - b2)?)?;
            let denom = v.f_sqrt()?.f_div_scalar_(bias2_sqrt)?.f_add_scalar_(eps)?;
            let _ = p.f_addcdiv_(&m.f_mul_scalar(-lr / bias1)?, &denom)?;
            Ok(())
        };
        if let Some(flat) = &mut self.flat {
            if flat.ready(&self.params)? {
                let g = flat.grad.shallow_clone();
                return update(&mut flat.params, g, &mut flat.exp_avg, &mut flat.exp_avg_sq);
            }
        }
        for ((p, m), v) in self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
            let g = p.grad();
            if g.defined() {
                update(p, g, m, v)?;
            }
        }
        Ok(())
    }

    /// The state to checkpoint, as named copies: `step` (an `i64` scalar), and
    /// `exp_avg.NAME` and `exp_avg_sq.NAME` for every parameter. Hyper-parameters are
    /// configuration, not state.
    ///
    /// # Errors
    /// [`Error::Torch`] when a moment cannot be copied.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![("step".to_string(), Tensor::from(self.step as i64))];
        for (name, m) in self.names.iter().zip(&self.exp_avg) {
            out.push((format!("exp_avg.{name}"), m.f_detach_copy()?));
        }
        for (name, v) in self.names.iter().zip(&self.exp_avg_sq) {
            out.push((format!("exp_avg_sq.{name}"), v.f_detach_copy()?));
        }
        Ok(out)
    }

    /// Restores what [`Adam::state`] exported (names looked up, shapes checked, values
    /// copied onto this optimizer's device). Nothing changes when anything is missing or wrong.
    ///
    /// # Errors
    /// [`Error::State`] for a tensor missing or of another shape, or a `step` that is not a
    /// scalar ≥ 0; [`Error::Torch`] when a conversion or copy fails.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let step = lookup(state, "step")?;
        if step.numel() != 1 {
            return Err(Error::State(format!("optimizer 'step' must be a scalar, got shape {:?}", step.size())));
        }
        let step = i64::try_from(step.f_to_kind(Kind::Int64)?)?;
        let step = u64::try_from(step).map_err(|_| Error::State(format!("optimizer 'step' must be ≥ 0, got {step}")))?;
        let mut moments = Vec::new();
        for (prefix, current) in [("exp_avg", &self.exp_avg), ("exp_avg_sq", &self.exp_avg_sq)] {
            for (name, t) in self.names.iter().zip(current) {
                let key = format!("{prefix}.{name}");
                moments.push(checked(lookup(state, &key)?, t, &key)?);
            }
        }
        let _no_grad = tch::no_grad_guard();
        for (dst, src) in self.exp_avg.iter_mut().chain(self.exp_avg_sq.iter_mut()).zip(&moments) {
            dst.f_copy_(src)?;
        }
        self.step = step;
        Ok(())
    }
}

fn lookup<'a>(state: &'a [(String, Tensor)], key: &str) -> Result<&'a Tensor> {
    state.iter().find(|(n, _)| n == key).map(|(_, t)| t).ok_or_else(|| Error::State(format!("no tensor '{key}'")))
}

/// `src` as a tensor of `like`'s kind on `like`'s device, after checking its shape.
fn checked(src: &Tensor, like: &Tensor, key: &str) -> Result<Tensor> {
    if src.size() != like.size() {
        return Err(Error::State(format!("tensor '{key}' has shape {:?}, expected {:?}", src.size(), like.size())));
    }
    Ok(src.f_to_device(like.device())?.f_to_kind(like.kind())?)
}

/// Scales the gradients of `params` so that their total 2-norm is at most `max_norm`, as
/// PyTorch's `clip_grad_norm_`: `total = ‖(‖g_1‖, …, ‖g_k‖)‖`, every gradient multiplied by
/// `min(1, max_norm / (total + 1e-6))`. Returns the total norm before clipping (a scalar
/// tensor on the parameters' device, so no device sync is forced), 0 when no parameter
/// has a gradient. ([`Adam::clip_grad_norm`] does the same for an optimizer's parameters.)
///
/// # Errors
/// [`Error::Torch`] when a torch operation fails.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<Tensor> {
    let _no_grad = tch::no_grad_guard();
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
    if grads.is_empty() {
        return Ok(Tensor::from(0f32));
    }
    let (total, coef) = clip_coefficient(&grads, max_norm)?;
    for mut g in grads {
        let _ = g.f_mul_(&coef)?;
    }
    Ok(total)
}

/// The total norm of `grads` (not empty) and the factor [`clip_grad_norm`] scales them by.
fn clip_coefficient(grads: &[Tensor], max_norm: f64) -> Result<(Tensor, Tensor)> {
    let norms = grads.iter().map(|g| g.f_norm()).collect::<std::result::Result<Vec<_>, _>>()?;
    let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
    // PyTorch's `max_norm / (total + 1e-6)` is `reciprocal(total + 1e-6) * max_norm`.
    let coef = total.f_add_scalar(1e-6)?.f_reciprocal()?.f_mul_scalar(max_norm)?.f_clamp_max(1.0)?;
    Ok((total, coef))
}

/// The learning-rate schedule after the warm-up. Serde names: `"constant"`,
/// `{ cosine = { min_lr = 1e-5 } }` (`min_lr` optional, 0 by default).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Half a cosine from the base rate (at the end of the warm-up) down to `min_lr` (at the last step).
    Cosine {
        /// The rate reached at the last step (0 by default).
        #[serde(default)]
        min_lr: f64,
    },
}

impl LrSchedule {
    /// The learning rate of update `step` (counted from 1) of `total`, for the base rate
    /// `lr` and `warmup` warm-up steps:
    ///
    /// - warm-up, `step ≤ warmup`: `lr · step / warmup` (linear, reaching `lr` at `step = warmup`);
    /// - then, with `p = (step − warmup) / (total − warmup)`: `lr` for `Constant`, and
    ///   `min_lr + (lr − min_lr) (1 + cos(π p)) / 2` for `Cosine` (`min_lr` exactly at `step = total`).
    ///
    /// Steps past `total` keep the last value.
    pub fn lr_at(self, lr: f64, step: usize, total: usize, warmup: usize) -> f64 {
        if step <= warmup {
            return lr * step as f64 / warmup as f64;
        }
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine { min_lr } => {
                let p = ((step - warmup) as f64 / total.saturating_sub(warmup).max(1) as f64).min(1.0);
                min_lr + (lr - min_lr) * 0.5 * (1.0 + (PI * p).cos())
            }
        }
    }
}

impl std::fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LrSchedule::Constant => f.write_str("constant"),
            LrSchedule::Cosine { min_lr } => write!(f, "cosine:{min_lr}"),
        }
    }
}

impl std::str::FromStr for LrSchedule {
    type Err = Error;
    /// `constant`, `cosine` (down to 0) or `cosine:MIN_LR`.
    fn from_str(s: &str) -> Result<Self> {
        let spec = s.trim().to_ascii_lowercase();
        match spec.split_once(':') {
            None if spec == "constant" => Ok(LrSchedule::Constant),
            None if spec == "cosine" => Ok(LrSchedule::Cosine { min_lr: 0.0 }),
            Some(("cosine", v)) => match v.trim().parse::<f64>() {
                Ok(min_lr) if min_lr.is_finite() && min_lr >= 0.0 => Ok(LrSchedule::Cosine { min_lr }),
                _ => Err(Error::Config(format!("lr_schedule: cosine takes a floor MIN_LR ≥ 0, got '{v}'"))),
            },
            _ => Err(Error::Config(format!("unknown lr_schedule '{}'; valid: constant, cosine, cosine:MIN_LR", s.trim()))),
        }
    }
}

/// An exponential moving average of named parameters, kept as tensors beside them: after
/// optimizer step `k` (1, 2, …) `ema ← d_k · ema + (1 − d_k) · θ` (as `ema.lerp_(θ, 1 − d_k)`),
/// with the warm-up `d_k = min(decay, (1 + k) / (10 + k))` ([`Ema::decay_at`]; TensorFlow's
/// `ExponentialMovingAverage(num_updates)`, diffusers' `EMAModel` default). It starts from the
/// parameters' values when created; the warm-up forgets them: without it, a 1,000-step run
/// with decay 0.999 kept 37 % of its initial weights and sampled with KL 2.30 nats where its
/// last weights had 0.028.
///
/// When the parameters lie one after the other in one buffer (as [`Adam`] leaves them), the
/// average is one tensor of the same layout too, and an update is one operation over all of them.
pub struct Ema {
    decay: f64,
    names: Vec<String>,
    params: Vec<Tensor>,
    /// Views of `flat`'s shadow when there is one.
    shadow: Vec<Tensor>,
    flat: Option<FlatEma>,
}

/// The parameters of an [`Ema`] seen as one tensor, and the average as one tensor.
struct FlatEma {
    /// A 1-D view of the buffer the parameters are in, from the first to the last.
    params: Tensor,
    shadow: Tensor,
    /// Where each parameter's data started: while they still do, `params` is them.
    ptrs: Vec<usize>,
}

impl FlatEma {
    /// `params` as one 1-D view when they are contiguous, back to back in one buffer, in order.
    fn span(params: &[Tensor]) -> Option<Tensor> {
        let first = params.first()?;
        let (kind, device) = (first.kind(), first.device());
        let mut next = first.data_ptr() as usize;
        for p in params {
            if p.kind() != kind || p.device() != device || !p.is_floating_point() || !p.is_contiguous() || p.numel() == 0 || p.data_ptr() as usize != next {
                return None;
            }
            next += p.numel() * kind.elt_size_in_bytes();
        }
        let total = params.iter().map(|p| p.numel() as i64).sum::<i64>();
        let _no_grad = tch::no_grad_guard();
        // From the first parameter's storage offset; libtorch refuses a view that would run
        // past the end of its storage, so tensors merely adjacent in memory are not taken for one.
        first.f_as_strided([total], [1], None).ok()
    }
}

impl std::fmt::Debug for Ema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ema").field("decay", &self.decay).field("params", &self.names).field("flat", &self.flat.is_some()).finish()
    }
}

impl Ema {
    /// Tracks `params` (shallow handles, as [`VelocityModel::named_parameters`] gives) with
    /// `decay` in `[0, 1)`.
    ///
    /// # Errors
    /// [`Error::Config`] for a `decay` outside `[0, 1)`; [`Error::Torch`] when the average cannot
    /// be allocated.
    pub fn new(params: Vec<(String, Tensor)>, decay: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            return Err(Error::Config(format!("ema_decay must be in [0, 1), got {decay}")));
        }
        let (names, params): (Vec<String>, Vec<Tensor>) = params.into_iter().unzip();
        let flat = match FlatEma::span(&params) {
            Some(span) => Some(FlatEma { shadow: span.f_detach_copy()?, params: span, ptrs: params.iter().map(|p| p.data_ptr() as usize).collect() }),
            None => None,
        };
        let shadow = match &flat {
            Some(f) => views(&f.shadow, &layout(&params).0)?,
            None => params.iter().map(|p| p.f_detach_copy()).collect::<std::result::Result<_, _>>()?,
        };
        Ok(Self { decay, names, params, shadow, flat })
    }

    /// The decay: the weight the average keeps at each update.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// The decay of the update after optimizer step `step` (counted from 1): the warm-up
    /// `min(decay, (1 + step) / (10 + step))`, which reaches `decay` after `(10·decay − 1) / (1 − decay)`
    /// steps (8,990 for 0.999).
    pub fn decay_at(&self, step: usize) -> f64 {
        self.decay.min((1 + step) as f64 / (10 + step) as f64)
    }

    /// Moves the average towards the current parameters after optimizer step `step` (counted
    /// from 1), with [`Ema::decay_at`]`(step)`: a run resumed at step `k` continues exactly.
    ///
    /// # Errors
    /// [`Error::Torch`] when a torch operation fails.
    pub fn update(&mut self, step: usize) -> Result<()> {
        let weight = 1.0 - self.decay_at(step);
        let _no_grad = tch::no_grad_guard();
        if let Some(flat) = &mut self.flat {
            if self.params.iter().zip(&flat.ptrs).all(|(p, &ptr)| p.data_ptr() as usize == ptr) {
                let _ = flat.shadow.f_lerp_(&flat.params, weight)?;
                return Ok(());
            }
        }
        for (e, p) in self.shadow.iter_mut().zip(&self.params) {
            let _ = e.f_lerp_(p, weight)?;
        }
        Ok(())
    }

    /// The averaged weights (shallow handles: copy them before changing them).
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        self.names.iter().cloned().zip(self.shadow.iter().map(|t| t.shallow_clone())).collect()
    }

    /// Copies the averaged weights into `model` (matched by name, shapes checked; nothing is
    /// copied when a name or shape does not match).
    ///
    /// # Errors
    /// [`Error::Model`] ([`fm_model::Error::Parameters`]): a parameter of `model` the average lacks, or of another shape.
    pub fn copy_to(&self, model: &(impl VelocityModel + ?Sized)) -> Result<()> {
        Ok(fm_model::copy_parameters(model, &self.weights())?)
    }

    /// A new model of `like`'s architecture (one of the [`fm_model::registry`]), on `device`,
    /// holding the averaged weights.
    ///
    /// Building it draws initial weights from torch's global generator before they are
    /// overwritten: call this after, not between, seeded initialisations.
    ///
    /// # Errors
    /// [`Error::Model`] when `like` is not of the registry's architectures or the network cannot
    /// be built on `device`, or its parameters are not those the average was made for (see
    /// [`Ema::copy_to`]).
    pub fn to_model(&self, like: &(impl VelocityModel + ?Sized), device: Device) -> Result<fm_model::Network> {
        let config = fm_model::registry::config_of(like).ok_or_else(|| {
            fm_model::Error::Config(format!("a '{}' model is not of the registry's architectures: build one and Ema::copy_to it", like.architecture().kind))
        })?;
        let model = fm_model::registry::build(&config, device)?;
        self.copy_to(&*model)?;
        Ok(model)
    }

    /// The averaged weights as named copies, for a checkpoint: `NAME` for every parameter.
    ///
    /// # Errors
    /// [`Error::Torch`] when a tensor cannot be copied.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        self.names.iter().zip(&self.shadow).map(|(n, t)| Ok((n.clone(), t.f_detach_copy()?))).collect()
    }

    /// Restores what [`Ema::state`] exported; nothing changes when anything is missing or wrong.
    ///
    /// # Errors
    /// [`Error::State`] for a tensor missing or of another shape; [`Error::Torch`] when a
    /// conversion or copy fails.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let values = self.names.iter().zip(&self.shadow).map(|(n, t)| checked(lookup(state, n)?, t, n)).collect::<Result<Vec<_>>>()?;
        let _no_grad = tch::no_grad_guard();
        for (dst, src) in self.shadow.iter_mut().zip(&values) {
            dst.f_copy_(src)?;
        }
        Ok(())
    }
}
