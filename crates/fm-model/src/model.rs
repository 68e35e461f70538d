//! The trainable velocity field: what `fm-train` needs of a network, whatever its layers.

use crate::{ConditionShape, Result};
use tch::{Device, Tensor};

/// What a checkpoint records to rebuild a model: the kind of network and its configuration.
///
/// Written into a checkpoint's header as `format` (the kind) and `config` (the JSON), and
/// compared when weights are loaded back into a model, so weights of one architecture are
/// never read into another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Architecture {
    /// A name for the kind of network, unique to its author (`fm-rs/mlp` for [`crate::Mlp`]).
    pub kind: String,
    /// Its configuration as JSON: everything needed, with the kind, to build it again.
    pub config: String,
}

impl Architecture {
    /// Whether `other` is the same architecture: the same kind, and configurations equal as
    /// JSON values (key order and spacing aside), or as text where either is not JSON.
    pub fn same_as(&self, other: &Architecture) -> bool {
        let json = |c: &str| serde_json::from_str::<serde_json::Value>(c).ok();
        self.kind == other.kind
            && match (json(&self.config), json(&other.config)) {
                (Some(a), Some(b)) => a == b,
                _ => self.config == other.config,
            }
    }
}

/// A trainable velocity field `v_θ(x, t)`: a network of points `x: [n, d]` and times
/// `t: [n, 1]` (in `[0, 1]`, 0 the source) to velocities `[n, d]`, with named parameters.
/// A conditional network (`v_θ(x, t | c)`, see [`VelocityModel::condition_shape`]) takes each
/// row's condition features after its times, in the same tensor: `t: [n, time_inputs +
/// features]`.
///
/// Training ([`fm_train::train`](../fm_train/fn.train.html)), its optimizer and EMA, resumable
/// checkpoints, likelihoods, tracking and sampling all go through this trait, so any tch
/// network trains like the built-in [`crate::Mlp`]. Sampling uses the
/// [`fm_ode::VectorField`] supertrait; a model with nothing faster to offer implements it with
/// [`velocity_at`].
///
/// The parameters are tensors that track gradients (from a [`tch::nn::VarStore`], say); the
/// optimizer updates them in place and the EMA and checkpoint loaders copy into them, so
/// [`VelocityModel::named_parameters`] must hand out shallow handles to the model's own tensors,
/// under unique names. The optimizer may move them into one contiguous buffer (`set_data`: every
/// handle sees the move, values unchanged), so a model must read its weights through those
/// tensors at each forward pass, not through views it cached before training.
pub trait VelocityModel: fm_ode::VectorField {
    /// `v(x, t)` for `x: [n, d]` and per-row times `t: [n, 1]` (`[n, 2]`, `[r, t]`, for an
    /// average velocity, see [`VelocityModel::time_inputs`]), both `f32`, tracking gradients.
    ///
    /// # Errors
    /// A shape the network does not take, or a torch failure.
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor>;

    /// What the network is conditioned on ([`ConditionShape::NONE`], the default: nothing).
    /// When conditional, [`VelocityModel::forward`]'s `t` carries each row's
    /// [`ConditionShape::features_of`] after its times, and the [`fm_ode::VectorField`] of the
    /// model is its unconditional field (the "no condition" entry).
    fn condition_shape(&self) -> ConditionShape {
        ConditionShape::NONE
    }

    /// The velocity of every row of `x` at time `t` under one condition, `c: [features]` (see
    /// [`ConditionShape::features_of`]), tracking gradients. The default repeats `c` beside the
    /// times into [`VelocityModel::forward`].
    ///
    /// # Errors
    /// What `forward` returns, as an [`fm_ode::Error`].
    fn velocity_given(&self, x: &Tensor, t: f64, c: &Tensor) -> fm_ode::Result<Tensor> {
        let n = x.size()[0];
        let times = Tensor::f_full([n, self.time_inputs() as i64], t, (tch::Kind::Float, x.device()))?;
        let c = c.f_to_kind(tch::Kind::Float)?.f_to_device(x.device())?.f_view([1, -1])?.f_expand([n, -1], false)?;
        Ok(self.forward(&x.f_to_kind(tch::Kind::Float)?, &Tensor::f_cat(&[&times, &c], 1)?)?)
    }

    /// [`VelocityModel::velocity_given`] and its exact divergence `Σ_k ∂v_k/∂x_k` (`[n]`),
    /// written out; `None` (the default) sends a likelihood through autograd instead.
    ///
    /// # Errors
    /// A torch failure.
    fn velocity_and_divergence_given(&self, _x: &Tensor, _t: f64, _c: &Tensor) -> fm_ode::Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }

    /// The width `d` of the points.
    fn dim(&self) -> usize;

    /// Times per row the network takes: 1 for a velocity field `v(x, t)` (the default), 2 for an
    /// average velocity `u(x, r, t)` with `t: [n, 2]` holding `[r, t]` (MeanFlow).
    fn time_inputs(&self) -> usize {
        1
    }

    /// The output and its Jacobian-vector product along `(dx, dt)`:
    /// `(f(x, t), ∂f/∂x · dx + ∂f/∂t · dt)`, both `[n, d]`, for `x, dx: [n, d]` and
    /// `t, dt: [n, time_inputs]`; nothing tracks gradients. The default runs autograd twice
    /// ([`jvp_autograd`]); a network may write its forward-mode derivative out.
    ///
    /// # Errors
    /// Inputs of the wrong shape, or a torch failure.
    fn jvp(&self, x: &Tensor, t: &Tensor, dx: &Tensor, dt: &Tensor) -> Result<(Tensor, Tensor)> {
        jvp_autograd(self, x, t, dx, dt)
    }

    /// Where the parameters live.
    fn device(&self) -> Device;

    /// Every trainable parameter, named, in a fixed order (the checkpoint's names; the order of
    /// the optimizer's flat buffer). Shallow handles: writing into them changes the model.
    fn named_parameters(&self) -> Vec<(String, Tensor)>;

    /// What a checkpoint records to rebuild this model.
    fn architecture(&self) -> Architecture;

    /// An optional fast path for the training step: the batch loss `mean |v(x, t) − target|²`
    /// with its gradient written into the parameters' `.grad` (replacing what they held), or
    /// `None` with nothing touched, and the trainer backpropagates through
    /// [`VelocityModel::forward`] with autograd instead (the default).
    ///
    /// # Errors
    /// A torch failure.
    fn mse_backward(&self, _x: &Tensor, _t: &Tensor, _target: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

impl std::fmt::Debug for dyn VelocityModel {
    /// Its architecture (kind and configuration) and device.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VelocityModel").field("architecture", &self.architecture()).field("device", &self.device()).finish()
    }
}

/// The velocity of `model` at every row of `x: [n, d]` at one time `t`: [`VelocityModel::forward`]
/// with `t` repeated (tracking gradients: the likelihood differentiates it). The plain
/// [`fm_ode::VectorField::velocity`] of a model.
///
/// # Errors
/// What `forward` returns, as an [`fm_ode::Error`].
///
/// For an average-velocity model (two time inputs) every time input is `t`: `u(x, t, t)`, the
/// instantaneous velocity.
///
/// For a conditional model, the unconditional velocity (the "no condition" entry).
pub fn velocity_at(model: &(impl VelocityModel + ?Sized), x: &Tensor, t: f64) -> fm_ode::Result<Tensor> {
    let shape = model.condition_shape();
    if shape.is_conditional() {
        return model.velocity_given(x, t, &Tensor::f_from_slice(&shape.features_of(None, None)?)?);
    }
    let times = Tensor::f_full([x.size()[0], model.time_inputs() as i64], t, (tch::Kind::Float, x.device()))?;
    Ok(model.forward(&x.f_to_kind(tch::Kind::Float)?, &times)?)
}

/// [`VelocityModel::jvp`] by autograd, for any model: the vector-Jacobian product
/// `g(w) = Jᵀw` is built with its graph (`create_graph`), and differentiating `⟨g(w), (dx, dt)⟩`
/// in `w` gives `J · (dx, dt)` (the "double-vjp" trick: two reverse passes in place of one
/// forward-mode pass).
///
/// # Errors
/// What the model's forward pass returns, or a torch failure (a model whose output does not
/// depend on `x` or `t` cannot be differentiated in them this way).
pub fn jvp_autograd(model: &(impl VelocityModel + ?Sized), x: &Tensor, t: &Tensor, dx: &Tensor, dt: &Tensor) -> Result<(Tensor, Tensor)> {
    // Gradients are needed here even when the caller holds a no-grad guard.
    tch::with_grad(|| jvp_by_double_vjp(model, x, t, dx, dt))
}

fn jvp_by_double_vjp(model: &(impl VelocityModel + ?Sized), x: &Tensor, t: &Tensor, dx: &Tensor, dt: &Tensor) -> Result<(Tensor, Tensor)> {
    let x = x.f_detach()?.f_to_kind(tch::Kind::Float)?.f_set_requires_grad(true)?;
    let t = t.f_detach()?.f_to_kind(tch::Kind::Float)?.f_set_requires_grad(true)?;
    let out = model.forward(&x, &t)?;
    let w = out.f_zeros_like()?.f_set_requires_grad(true)?;
    let inner = out.f_mul(&w)?.f_sum(tch::Kind::Float)?;
    let g = Tensor::f_run_backward(&[inner], &[&x, &t], true, true)?;
    let along = g[0]
        .f_mul(&dx.f_to_kind(tch::Kind::Float)?)?
        .f_sum(tch::Kind::Float)?
        .f_add(&g[1].f_mul(&dt.f_to_kind(tch::Kind::Float)?)?.f_sum(tch::Kind::Float)?)?;
    let jvp = Tensor::f_run_backward(&[along], &[&w], false, false)?;
    Ok((out.f_detach()?, jvp[0].f_detach()?))
}

/// The variables of `vs` sorted by name: [`VelocityModel::named_parameters`] for a model whose
/// parameters all live in one [`tch::nn::VarStore`].
pub fn var_store_parameters(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    let sorted: std::collections::BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    sorted.into_iter().collect()
}

/// Copies `values` into the parameters of `model` by name, without gradients.
///
/// # Errors
/// A parameter missing from `values` or of another shape ([`crate::Error::Parameters`]); nothing
/// is copied then.
pub fn copy_parameters(model: &(impl VelocityModel + ?Sized), values: &[(String, Tensor)]) -> Result<()> {
    let mut pairs = Vec::new();
    for (name, dst) in model.named_parameters() {
        let src =
            values.iter().find(|(n, _)| *n == name).map(|(_, t)| t).ok_or_else(|| crate::Error::Parameters(format!("no values for the parameter '{name}'")))?;
        if src.size() != dst.size() {
            return Err(crate::Error::Parameters(format!("'{name}' has shape {:?}, the model's is {:?}", src.size(), dst.size())));
        }
        pairs.push((dst.shallow_clone(), src.f_to_device(dst.device())?));
    }
    let _no_grad = tch::no_grad_guard();
    for (mut dst, src) in pairs {
        let src = src.f_to_kind(dst.kind())?;
        dst.f_copy_(&src)?;
    }
    Ok(())
}
