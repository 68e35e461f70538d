//! The MLP velocity field.

use crate::{ConditionShape, Error, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Reduction, Tensor};

/// Non-linearity between the hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `max(0, x)`, the seed's.
    #[default]
    Relu,
    /// `x · sigmoid(x)` (SiLU, also called swish).
    Silu,
    /// `x Φ(x)` with `Φ` the standard normal CDF: the exact (erf) GELU, not its tanh
    /// approximation.
    Gelu,
    /// SELU, `λ x` for `x > 0` and `λ α (eˣ − 1)` below (`λ ≈ 1.0507`, `α ≈ 1.6733`). It has no
    /// written-out derivative here: training and divergences go through autograd.
    Selu,
    /// ELU, `x` for `x > 0` and `eˣ − 1` below (PyTorch's `nn.ELU()`, α = 1): the continuous-
    /// normalising-flow examples' (Meta's `2d_continuous_normalizing_flow`). Autograd, as SELU.
    Elu,
}

impl Activation {
    /// Every activation, in declaration order.
    pub const ALL: [Activation; 5] = [Activation::Relu, Activation::Silu, Activation::Gelu, Activation::Selu, Activation::Elu];

    /// Whether training and divergences go through autograd (no written-out derivative).
    fn autograd_only(self) -> bool {
        matches!(self, Activation::Selu | Activation::Elu)
    }

    /// The lowercase name (`relu`, `silu`, `gelu`, `selu`, `elu`) that serde, [`std::fmt::Display`]
    /// and [`std::str::FromStr`] use.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Silu => "silu",
            Activation::Gelu => "gelu",
            Activation::Selu => "selu",
            Activation::Elu => "elu",
        }
    }

    /// `σ(x)` into `x`, a layer's fresh output that nothing else holds. ReLU works in place
    /// (one allocation less per layer, about 2.5 % of a seed training step: its backward needs
    /// only its result, which is what stays in `x`); the others' backward passes need their
    /// input, so they write a new tensor.
    pub(crate) fn apply_(self, x: &mut Tensor) -> Result<()> {
        match self {
            Activation::Relu => drop(x.f_relu_()?),
            Activation::Silu => *x = x.f_silu()?,
            Activation::Gelu => *x = x.f_gelu("none")?,
            Activation::Selu => *x = x.f_selu()?,
            Activation::Elu => *x = x.f_elu()?,
        }
        Ok(())
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase();
        Activation::ALL.into_iter().find(|a| a.name() == key).ok_or_else(|| {
            let names: Vec<_> = Activation::ALL.iter().map(|a| a.name()).collect();
            Error::Config(format!("unknown activation '{s}' (valid: {})", names.join(", ")))
        })
    }
}

/// Shape of the network; `Default` is the seed's `FlowMatchNet(input_dim=2, hidden_dim=128)`:
/// `[x, t]` (3 inputs) → 128 → ReLU → 128 → ReLU → 128 → ReLU → 2.
///
/// The same sizes describe every architecture of the [`crate::registry`] (`kind`): the plain
/// MLP (`mlp`, [`Mlp`]) and the residual MLP (`resmlp`, [`crate::ResMlp`]), whose
/// `hidden_layers` are residual blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpConfig {
    /// The architecture, by its registry name ([`crate::registry::names`]): `mlp` (the
    /// default, the seed's) or `resmlp`. Written into a run file and checkpoint only when it
    /// is not `mlp`, so the seed's network reads as it always has.
    #[serde(skip_serializing_if = "is_mlp")]
    pub kind: String,
    /// Dimension of the data (the network sees `dim + time_features()` inputs: `x` and its
    /// times, `dim + 1` for the seed's).
    pub dim: usize,
    /// Width of every hidden layer.
    pub hidden_dim: usize,
    /// Number of hidden layers (each followed by the activation).
    pub hidden_layers: usize,
    /// Non-linearity after each hidden layer (ReLU, the seed's, by default).
    pub activation: Activation,
    /// Sinusoidal time features in place of the raw `t` (even; 0, the seed's, feeds `t`
    /// itself; a residual MLP takes 0 as its default, [`crate::ResMlp::TIME_FEATURES`]). With `k > 0` the network sees `[x, sin(ω_1 t), …, sin(ω_h t), cos(ω_1 t), …,
    /// cos(ω_h t)]`, `h = k/2`, frequencies geometric from 1 to 100 radians per unit time
    /// ([`MlpConfig::time_frequencies`]): a small network then resolves fast changes of the
    /// field in `t` (near `t = 1` on sharp targets) without spending width on them.
    pub time_embedding: usize,
    /// Times the network takes: 1 for a velocity field `v(x, t)`, 2 for an average velocity
    /// `u(x, r, t)` over the interval from `r` to `t` (MeanFlow), whose time inputs are
    /// `[r, t]` (each embedded on its own when `time_embedding > 0`). Written into a run file and
    /// checkpoint only when it is not 1, so the seed's network reads as it always has.
    #[serde(skip_serializing_if = "is_one")]
    pub time_inputs: usize,
    /// Class labels the network is conditioned on (0: none). With classes or a condition
    /// vector the network sees, after its times, the condition features of
    /// [`ConditionShape`] (`classes + cond_dim + 1` inputs: one-hot class, vector, "no
    /// condition" flag). Written only when not 0, as `cond_dim`.
    #[serde(skip_serializing_if = "is_zero")]
    pub classes: usize,
    /// Width of the condition vector the network takes (0: none).
    #[serde(skip_serializing_if = "is_zero")]
    pub cond_dim: usize,
}

fn is_mlp(kind: &str) -> bool {
    kind == crate::registry::MLP
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            kind: crate::registry::MLP.into(),
            dim: 2,
            hidden_dim: 128,
            hidden_layers: 3,
            activation: Activation::Relu,
            time_embedding: 0,
            time_inputs: 1,
            classes: 0,
            cond_dim: 0,
        }
    }
}

impl MlpConfig {
    /// Checks the sizes: a registered `kind`, `time_inputs` 1 or 2, `dim`, `hidden_dim` and
    /// `hidden_layers` at least 1, at most [`Self::MAX_PARAMETERS`] parameters in all,
    /// `time_embedding` even and at most 1024.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting that is out of range.
    pub fn validate(&self) -> Result<()> {
        crate::registry::find(&self.kind)?;
        if !(1..=2).contains(&self.time_inputs) {
            return Err(Error::Config(format!("time_inputs must be 1 (a velocity v(x, t)) or 2 (an average velocity u(x, r, t)), got {}", self.time_inputs)));
        }
        if self.dim == 0 || self.hidden_dim == 0 || self.hidden_layers == 0 {
            return Err(Error::Config(format!(
                "dim ({}), hidden_dim ({}) and hidden_layers ({}) must all be at least 1",
                self.dim, self.hidden_dim, self.hidden_layers
            )));
        }
        if self.parameter_count() > Self::MAX_PARAMETERS as u128 {
            return Err(Error::Config(format!(
                "a network of {} hidden layers of width {} on {}-D data has {} parameters, more than the {} allowed",
                self.hidden_layers,
                self.hidden_dim,
                self.dim,
                self.parameter_count(),
                Self::MAX_PARAMETERS
            )));
        }
        if self.classes > 1 << 16 || self.cond_dim > 1 << 16 {
            return Err(Error::Config(format!("classes ({}) and cond_dim ({}) must be at most 65,536", self.classes, self.cond_dim)));
        }
        if self.time_embedding % 2 == 1 || self.time_embedding > 1024 {
            return Err(Error::Config(format!("time_embedding must be an even number of features up to 1024 (0: the raw time), got {}", self.time_embedding)));
        }
        Ok(())
    }

    /// The most parameters a network may have (2²⁸, 1 GiB of `f32`): sizes from a flag or a file
    /// beyond it are a configuration error, not an allocation failure.
    pub const MAX_PARAMETERS: usize = 1 << 28;

    /// Weights and biases in all, computed without overflow for any sizes, as the `kind`'s
    /// registry entry counts them ([`crate::registry::Kind::parameters`]; the plain MLP's
    /// count, [`MlpConfig::mlp_parameter_count`], for a kind not registered).
    pub fn parameter_count(&self) -> u128 {
        crate::registry::find(&self.kind).map_or_else(|_| self.mlp_parameter_count(), |k| (k.parameters)(self))
    }

    /// The plain MLP's weights and biases, computed without overflow for any sizes.
    pub fn mlp_parameter_count(&self) -> u128 {
        let (d, h, l, tf) =
            (self.dim as u128, self.hidden_dim as u128, self.hidden_layers as u128, (self.time_features() + self.condition_shape().features()) as u128);
        let hidden = l.saturating_sub(1).saturating_mul(h.saturating_mul(h).saturating_add(h));
        let outer = (d + tf).saturating_mul(h).saturating_add(h).saturating_add(h.saturating_mul(d)).saturating_add(d);
        outer.saturating_add(hidden)
    }

    /// What the network is conditioned on.
    pub fn condition_shape(&self) -> ConditionShape {
        ConditionShape { classes: self.classes, dim: self.cond_dim }
    }

    /// Sinusoidal features of each time the network computes: `time_embedding`, or where none
    /// is asked for its kind's default ([`crate::registry::Kind::default_time_features`]: the
    /// residual MLP never reads the raw time).
    pub fn sinusoidal_features(&self) -> usize {
        match self.time_embedding {
            0 => crate::registry::find(&self.kind).map_or(0, |k| k.default_time_features),
            k => k,
        }
    }

    /// Inputs the network takes for its times: per time, 1 (raw) or its sinusoidal features.
    pub fn time_features(&self) -> usize {
        self.time_inputs.max(1) * self.sinusoidal_features().max(1)
    }

    /// The `time_embedding / 2` frequencies `ω_i` of the embedding, geometric from 1 to 100.
    pub fn time_frequencies(&self) -> Vec<f64> {
        let h = self.sinusoidal_features() / 2;
        (0..h).map(|i| if h == 1 { 1.0 } else { 100f64.powf(i as f64 / (h - 1) as f64) }).collect()
    }

    /// `(name, shape)` of every parameter, in the order of PyTorch's `state_dict()`.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<i64>)> {
        let mut out = Vec::new();
        for (i, (fan_in, fan_out)) in self.layer_sizes().into_iter().enumerate() {
            out.push((format!("net.{}.weight", 2 * i), vec![fan_out as i64, fan_in as i64]));
            out.push((format!("net.{}.bias", 2 * i), vec![fan_out as i64]));
        }
        out
    }

    /// `(fan_in, fan_out)` of each linear layer.
    fn layer_sizes(&self) -> Vec<(usize, usize)> {
        let mut sizes = vec![(self.dim + self.time_features() + self.condition_shape().features(), self.hidden_dim)];
        sizes.extend(std::iter::repeat_n((self.hidden_dim, self.hidden_dim), self.hidden_layers - 1));
        sizes.push((self.hidden_dim, self.dim));
        sizes
    }
}

/// The MLP `v(x, t)`, with its parameters in a [`nn::VarStore`].
pub struct Mlp {
    vs: nn::VarStore,
    layers: Vec<nn::Linear>,
    config: MlpConfig,
    times: TimeInputs,
}

impl std::fmt::Debug for Mlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mlp").field("config", &self.config).field("device", &self.vs.device()).finish()
    }
}

impl Mlp {
    /// A freshly initialised network (PyTorch's default `nn.Linear` initialisation), from
    /// torch's global generator: build it inside [`crate::with_torch_seed`] for reproducibility.
    ///
    /// # Errors
    /// [`Error::Config`] when [`MlpConfig::validate`] refuses `config`; [`Error::Torch`] when
    /// the frequencies of the time embedding cannot be built on `device`.
    pub fn new(config: MlpConfig, device: Device) -> Result<Self> {
        config.validate()?;
        if config.kind != crate::registry::MLP {
            return Err(Error::Config(format!("a '{}' network is not an MLP: build it with fm_model::registry::build", config.kind)));
        }
        let vs = nn::VarStore::new(device);
        let net = vs.root() / "net";
        let layers = config
            .layer_sizes()
            .into_iter()
            .enumerate()
            .map(|(i, (fan_in, fan_out))| nn::linear(&net / (2 * i), fan_in as i64, fan_out as i64, Default::default()))
            .collect();
        let times = TimeInputs::new(&config, device)?;
        Ok(Self { vs, layers, config, times })
    }

    /// The shape of the network.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }
    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }
    /// The store of the parameters, named as in PyTorch (`net.0.weight`, `net.0.bias`, …).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    /// The store of the parameters, mutably: to copy weights into its variables, as the
    /// checkpoint loaders do.
    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// `v(x, t)` for a batch `x: [n, dim]` and per-row times `t: [n, 1]` (tracks gradients);
    /// for an average-velocity network (`time_inputs = 2`), `u(x, r, t)` with `t: [n, 2]` holding
    /// `[r, t]`.
    ///
    /// # Errors
    /// [`Error::Config`] when `x` is not `[n, dim]` or `t` not `[n, time_inputs]`;
    /// [`Error::Torch`] when another torch operation fails.
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        self.check_context(x, t)?;
        let h = Tensor::f_cat(&[x, &self.context(t)?], 1)?.f_linear(&self.layers[0].ws, self.layers[0].bs.as_ref())?;
        self.rest(h)
    }

    /// The training step's loss and gradient without autograd: the mean squared error
    /// `mean |v(x, t) − target|²` of a batch, its gradient written into the parameters'
    /// `.grad` tensors (replacing what they held). The backward pass is written out for this
    /// network with the libtorch ops autograd runs for it, in the same memory layouts, so the
    /// gradients are autograd's, bit for bit (tested), without building and walking a graph.
    ///
    /// Returns the loss, or `None` with nothing touched when a parameter has no `.grad` yet
    /// (one autograd pass, or an optimizer that allocates them, makes them) or the activation
    /// has no written-out derivative (SELU): then backpropagate through [`Mlp::forward`].
    ///
    /// # Errors
    /// [`Error::Config`] when `x` is not `[n, dim]`; [`Error::Torch`] when `t` or `target` does
    /// not fit `x` or another torch operation fails.
    pub fn mse_backward(&self, x: &Tensor, t: &Tensor, target: &Tensor) -> Result<Option<Tensor>> {
        if self.config.activation.autograd_only() {
            return Ok(None);
        }
        let grads: Vec<(Tensor, Option<Tensor>)> = self.layers.iter().map(|l| (l.ws.grad(), l.bs.as_ref().map(Tensor::grad))).collect();
        if grads.iter().any(|(w, b)| !w.defined() || b.as_ref().is_some_and(|b| !b.defined())) {
            return Ok(None);
        }
        self.check_input(x)?;
        self.check_context(x, t)?;
        let _no_grad = tch::no_grad_guard();
        let input = Tensor::f_cat(&[x, &self.context(t)?], 1)?;
        let (hidden, v) = self.rest_keeping(input.f_linear(&self.layers[0].ws, self.layers[0].bs.as_ref())?)?;
        let loss = v.f_mse_loss(target, Reduction::Mean)?;
        // Backward, from dL/dv (autograd seeds it with ones).
        let mut g = v.f_mse_loss_backward(&loss.f_ones_like()?, target, Reduction::Mean)?;
        for (i, (layer, (grad_w, grad_b))) in self.layers.iter().zip(&grads).enumerate().rev() {
            // linear is addmm(b, input, Wᵀ): autograd's dW is gᵀ·input in W's layout, db the column sums.
            let layer_input = if i == 0 { &input } else { &hidden[i - 1].1 };
            let _ = g.f_tr()?.f_mm_out(grad_w, layer_input)?;
            if let Some(grad_b) = grad_b {
                let _ = g.f_sum_intlist_out(grad_b, [0i64].as_slice(), false, None::<Kind>)?;
            }
            if i == 0 {
                break;
            }
            let upstream = g.f_mm(&layer.ws)?;
            let (z, a) = &hidden[i - 1];
            g = match self.config.activation {
                Activation::Relu => a.f_threshold_backward(&upstream, 0)?,
                Activation::Gelu => z.f_gelu_backward(&upstream, "none")?,
                Activation::Silu => z.f_silu_backward(&upstream)?,
                Activation::Selu | Activation::Elu => return Err(Error::Config("SELU and ELU have no written-out derivative".into())),
            };
        }
        Ok(Some(loss))
    }

    /// [`Mlp::rest`], keeping every hidden layer's (pre-activation, activation) for a written-out
    /// backward pass (for ReLU, in place, both are the activation: its derivative reads that).
    fn rest_keeping(&self, mut h: Tensor) -> Result<(Vec<(Tensor, Tensor)>, Tensor)> {
        let mut hidden = Vec::with_capacity(self.layers.len() - 1);
        for layer in &self.layers[1..] {
            let z = h.shallow_clone();
            self.config.activation.apply_(&mut h)?;
            hidden.push((z, h.shallow_clone()));
            h = h.f_linear(&layer.ws, layer.bs.as_ref())?;
        }
        Ok((hidden, h))
    }

    /// The network's inputs besides `x` for rows `t: [n, time_inputs + condition features]`
    /// ([`TimeInputs::context`]).
    fn context(&self, t: &Tensor) -> Result<Tensor> {
        Ok(self.times.context(t, None, self.layers[0].ws.kind())?.0)
    }

    /// The network's output and its forward-mode derivative (a Jacobian-vector product) along
    /// the tangent `(dx, dt)` of its inputs: `(f(x, t), ∂f/∂x · dx + ∂f/∂t · dt)`, shapes
    /// `[n, dim]` each, for `x, dx: [n, dim]` and `t, dt: [n, time_inputs]`; no gradients are
    /// tracked. Written out layer by layer (`dz ↦ W dz`, then `σ'(z) ⊙ dz`), it costs about two
    /// forward passes; SELU, without a written-out derivative, goes through autograd
    /// ([`crate::jvp_autograd`]). MeanFlow's training target needs it (Geng et al. 2025, eq. 8).
    ///
    /// # Errors
    /// [`Error::Config`] for inputs of the wrong shape; [`Error::Torch`] for torch failures.
    pub fn jvp(&self, x: &Tensor, t: &Tensor, dx: &Tensor, dt: &Tensor) -> Result<(Tensor, Tensor)> {
        if self.config.activation.autograd_only() {
            return crate::jvp_autograd(self, x, t, dx, dt);
        }
        self.check_input(x)?;
        self.check_input(dx)?;
        self.check_context(x, t)?;
        self.check_context(x, dt)?;
        let _no_grad = tch::no_grad_guard();
        let (tau, dtau) = self.times.context(t, Some(dt), self.layers[0].ws.kind())?;
        let dtau = dtau.ok_or_else(|| Error::Config("no time tangent".into()))?;
        let first = &self.layers[0];
        let mut h = Tensor::f_cat(&[&x.f_to_kind(Kind::Float)?, &tau], 1)?.f_linear(&first.ws, first.bs.as_ref())?;
        let mut dh = Tensor::f_cat(&[&dx.f_to_kind(Kind::Float)?, &dtau], 1)?.f_matmul(&first.ws.f_tr()?)?;
        for layer in &self.layers[1..] {
            let da = match self.config.activation {
                Activation::Relu => h.f_threshold_backward(&dh, 0)?,
                Activation::Gelu => h.f_gelu_backward(&dh, "none")?,
                Activation::Silu => h.f_silu_backward(&dh)?,
                Activation::Selu | Activation::Elu => return Err(Error::Config("SELU and ELU have no written-out derivative".into())),
            };
            self.config.activation.apply_(&mut h)?;
            h = h.f_linear(&layer.ws, layer.bs.as_ref())?;
            dh = da.f_matmul(&layer.ws.f_tr()?)?;
        }
        Ok((h, dh))
    }

    /// Hidden layers and output, from the pre-activation of the first layer.
    fn rest(&self, mut h: Tensor) -> Result<Tensor> {
        for layer in &self.layers[1..] {
            self.config.activation.apply_(&mut h)?;
            h = h.f_linear(&layer.ws, layer.bs.as_ref())?;
        }
        Ok(h)
    }

    fn check_context(&self, x: &Tensor, t: &Tensor) -> Result<()> {
        let (rows, k, c) = (x.size()[0], self.config.time_inputs as i64, self.config.condition_shape().features() as i64);
        if t.size() != [rows, k + c] {
            let what = if k == 1 { "one time per row" } else { "two times per row, [r, t]" };
            let condition = if c > 0 { format!(" and {c} condition features") } else { String::new() };
            return Err(Error::Config(format!("the model takes {what}{condition}, of shape [{rows}, {}]; got {:?}", k + c, t.size())));
        }
        Ok(())
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let size = x.size();
        if size.len() != 2 || size[1] != self.config.dim as i64 {
            return Err(Error::Config(format!("the model takes inputs of shape [n, {}], got {:?}", self.config.dim, size)));
        }
        Ok(())
    }
}

impl Mlp {
    /// The first layer's pre-activation of all rows at one time `t` under one condition
    /// `c: [features]` (`None`: no condition), split as `W_x x + (W_t τ(t) + W_c c + b)`, so no
    /// `[x, τ(t), c]` concatenation is built at each evaluation.
    fn first_layer_at(&self, x: &Tensor, t: f64, c: Option<&Tensor>) -> Result<Tensor> {
        self.check_input(x)?;
        let first = &self.layers[0];
        let d = self.config.dim as i64;
        let w_x = first.ws.f_narrow(1, 0, d)?;
        let mut bias = match (&self.times.frequencies, self.config.time_inputs) {
            (None, 1) => first.ws.f_select(1, d)?.f_mul_scalar(t)?,
            _ => {
                // Every time input at t (an average velocity's u(x, t, t) is the velocity).
                // Filled on the device: a copy from the host would wait for the GPU's queue.
                let times = Tensor::f_full([1, self.config.time_inputs as i64], t, (Kind::Float, self.device()))?;
                let tau = self.times.embed(&times, None, self.layers[0].ws.kind())?.0;
                tau.f_matmul(&first.ws.f_narrow(1, d, self.config.time_features() as i64)?.f_tr()?)?.f_squeeze_dim(0)?
            }
        };
        let shape = self.config.condition_shape();
        if shape.is_conditional() {
            let null;
            let c = match c {
                Some(c) => c,
                None => {
                    null = Tensor::f_from_slice(&shape.features_of(None, None)?)?.f_to_device(self.device())?;
                    &null
                }
            };
            let w_c = first.ws.f_narrow(1, d + self.config.time_features() as i64, shape.features() as i64)?;
            bias = bias.f_add(&w_c.f_mv(&c.f_to_kind(w_c.kind())?.f_to_device(w_c.device())?.f_view([-1])?)?)?;
        } else if c.is_some_and(|c| c.numel() > 0) {
            return Err(Error::Config("the model is unconditional: it takes no condition".into()));
        }
        if let Some(b) = &first.bs {
            bias = bias.f_add(b)?;
        }
        Ok(x.f_to_kind(Kind::Float)?.f_matmul(&w_x.f_tr()?)?.f_add(&bias)?)
    }
}

impl crate::VelocityModel for Mlp {
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        Mlp::forward(self, x, t)
    }
    fn time_inputs(&self) -> usize {
        self.config.time_inputs
    }
    /// Written out ([`Mlp::jvp`]).
    fn jvp(&self, x: &Tensor, t: &Tensor, dx: &Tensor, dt: &Tensor) -> Result<(Tensor, Tensor)> {
        Mlp::jvp(self, x, t, dx, dt)
    }
    fn dim(&self) -> usize {
        self.config.dim
    }
    fn device(&self) -> Device {
        self.vs.device()
    }
    /// In the order of PyTorch's `state_dict()` (`net.0.weight`, `net.0.bias`, `net.2.weight`, …).
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut vars = self.vs.variables();
        self.config.parameter_shapes().into_iter().filter_map(|(name, _)| vars.remove(&name).map(|t| (name, t))).collect()
    }
    fn architecture(&self) -> crate::Architecture {
        // MlpConfig holds numbers, names and a list: it always serialises.
        crate::Architecture { kind: crate::checkpoint::FORMAT.into(), config: serde_json::to_string(&self.config).unwrap_or_default() }
    }
    /// The written-out backward pass ([`Mlp::mse_backward`]).
    fn mse_backward(&self, x: &Tensor, t: &Tensor, target: &Tensor) -> Result<Option<Tensor>> {
        Mlp::mse_backward(self, x, t, target)
    }
    fn condition_shape(&self) -> ConditionShape {
        self.config.condition_shape()
    }
    /// The condition folded into the first layer's bias, as for the times.
    fn velocity_given(&self, x: &Tensor, t: f64, c: &Tensor) -> fm_ode::Result<Tensor> {
        Ok(self.rest(self.first_layer_at(x, t, Some(c))?)?)
    }
    fn velocity_and_divergence_given(&self, x: &Tensor, t: f64, c: &Tensor) -> fm_ode::Result<Option<(Tensor, Tensor)>> {
        self.velocity_and_divergence_with(x, t, Some(c))
    }
}

impl fm_ode::VectorField for Mlp {
    /// All rows at one time `t` (the first layer split, see `first_layer_at`).
    fn velocity(&self, x: &Tensor, t: f64) -> fm_ode::Result<Tensor> {
        Ok(self.rest(self.first_layer_at(x, t, None)?)?)
    }

    /// The exact divergence without autograd: the forward pass keeps each activation's
    /// derivative, then the `d` rows of the Jacobian's transpose are carried back through the
    /// layers together, as one `[d·n, width]` block per layer (autograd would walk the graph once
    /// per dimension), and `Σ_k ∂v_k/∂x_k` is read off at the input. SELU: `None` (autograd).
    fn velocity_and_divergence(&self, x: &Tensor, t: f64) -> fm_ode::Result<Option<(Tensor, Tensor)>> {
        self.velocity_and_divergence_with(x, t, None)
    }
}

impl Mlp {
    /// The velocity and its exact divergence at one time under one condition (`None`: none),
    /// without autograd's backward passes (see [`fm_ode::VectorField::velocity_and_divergence`]);
    /// differentiable in the weights when `x` tracks gradients.
    fn velocity_and_divergence_with(&self, x: &Tensor, t: f64, c: Option<&Tensor>) -> fm_ode::Result<Option<(Tensor, Tensor)>> {
        if self.config.activation.autograd_only() {
            return Ok(None);
        }
        // Recorded for autograd only when `x` tracks gradients: an objective that trains through
        // the likelihood (fm-train's maximum likelihood) differentiates this divergence in the weights.
        let _no_grad = (!x.requires_grad()).then(tch::no_grad_guard);
        let (layers, v) = self.rest_keeping(self.first_layer_at(x, t, c)?)?;
        // Every hidden layer's activation and, but for ReLU (whose derivative reads the
        // activation), σ'(pre-activation). A broadcast product, not the activations' backward ops:
        // oneDNN's GELU backward refuses a gradient broadcast against its input.
        let mut hidden = Vec::with_capacity(layers.len());
        for (z, a) in layers {
            let derivative = match self.config.activation {
                Activation::Relu => None,
                Activation::Gelu => Some(z.f_gelu_backward(&z.f_ones_like()?, "none")?),
                Activation::Silu => Some(z.f_silu_backward(&z.f_ones_like()?)?),
                Activation::Selu | Activation::Elu => return Err(fm_ode::Error::Invalid("SELU and ELU have no written-out derivative".into())),
            };
            hidden.push((a, derivative));
        }
        let (n, d) = (v.size()[0], self.config.dim as i64);
        let width = self.config.hidden_dim as i64;
        // Rows of the Jacobian carried together: as many as keep a block near 1 MiB (both of the
        // seed's; one at a time for 16-D at width 512, where a [16·n, 512] block runs out of cache).
        let group = ((1 << 18) / (n * width).max(1)).clamp(1, d);
        let last = &self.layers[self.layers.len() - 1].ws;
        let w_x = self.layers[0].ws.f_narrow(1, 0, d)?.f_tr()?;
        let mut div = v.f_new_zeros([n], (v.kind(), v.device()))?;
        for first in (0..d).step_by(group as usize) {
            let k = group.min(d - first);
            // g[j] = ∂v_(first+j)/∂(this layer's output) for every row: starts as rows of the last weight.
            let mut g = last.f_narrow(0, first, k)?.f_unsqueeze(1)?.f_expand([k, n, width], false)?;
            for (i, (a, derivative)) in hidden.iter().enumerate().rev() {
                g = match derivative {
                    None => a.f_threshold_backward(&g, 0)?,
                    Some(s) => g.f_mul(s)?,
                };
                if i > 0 {
                    g = g.f_reshape([k * n, width])?.f_mm(&self.layers[i].ws)?.f_reshape([k, n, width])?;
                }
            }
            // Σ_j g[j] · (column first+j of the first layer's x-part).
            let columns = w_x.f_narrow(0, first, k)?.f_unsqueeze(1)?;
            div = div.f_add(&g.f_mul(&columns)?.f_sum_dim_intlist([0i64, 2].as_slice(), false, None::<Kind>)?)?;
        }
        Ok(Some((v, div)))
    }
}

/// How a network of the MLP family reads its rows' times and condition (`t: [n, time_inputs +
/// condition features]`): each time raw or as its sinusoidal features, then the condition's
/// features as they are. Shared by [`Mlp`] and [`crate::ResMlp`].
pub(crate) struct TimeInputs {
    /// `[1, time_embedding/2]` frequencies of the time embedding (`None` without one).
    pub(crate) frequencies: Option<Tensor>,
    time_inputs: i64,
    condition_features: i64,
}

impl TimeInputs {
    pub(crate) fn new(config: &MlpConfig, device: Device) -> Result<Self> {
        let frequencies = match config.sinusoidal_features() {
            0 => None,
            _ => Some(Tensor::f_from_slice(&config.time_frequencies())?.f_to_kind(Kind::Float)?.f_to_device(device)?.f_unsqueeze(0)?),
        };
        Ok(Self { frequencies, time_inputs: config.time_inputs as i64, condition_features: config.condition_shape().features() as i64 })
    }

    /// The inputs besides `x` for rows `t`, in `kind` (the weights' precision): the times
    /// ([`TimeInputs::embed`]) followed by the condition features as they are; and their
    /// derivative along `dt` (the same shape as `t`) when given.
    pub(crate) fn context(&self, t: &Tensor, dt: Option<&Tensor>, kind: Kind) -> Result<(Tensor, Option<Tensor>)> {
        let (k, c) = (self.time_inputs, self.condition_features);
        if c == 0 {
            return self.embed(t, dt, kind);
        }
        let times = |t: &Tensor| t.f_narrow(1, 0, k);
        let (features, tangent) = self.embed(&times(t)?, dt.map(times).transpose()?.as_ref(), kind)?;
        let kind = features.kind();
        let features = Tensor::f_cat(&[features, t.f_narrow(1, k, c)?.f_to_kind(kind)?], 1)?;
        let tangent = match (tangent, dt) {
            (Some(tangent), Some(dt)) => Some(Tensor::f_cat(&[tangent, dt.f_narrow(1, k, c)?.f_to_kind(kind)?], 1)?),
            _ => None,
        };
        Ok((features, tangent))
    }

    /// The time inputs of rows at times `t: [n, time_inputs]`: `t` itself, or the sinusoidal
    /// embedding of each column in turn (in `kind`); and its derivative along `dt` when given:
    /// `d sin(ωt) = ω cos(ωt) dt`, `d cos(ωt) = −ω sin(ωt) dt`.
    pub(crate) fn embed(&self, t: &Tensor, dt: Option<&Tensor>, kind: Kind) -> Result<(Tensor, Option<Tensor>)> {
        let Some(w) = &self.frequencies else {
            return Ok((t.shallow_clone(), dt.map(Tensor::shallow_clone)));
        };
        let (mut features, mut tangents) = (Vec::new(), Vec::new());
        let w = w.f_to_kind(kind)?;
        for j in 0..self.time_inputs {
            let angle = t.f_narrow(1, j, 1)?.f_to_kind(kind)?.f_mul(&w)?;
            let (sin, cos) = (angle.f_sin()?, angle.f_cos()?);
            if let Some(dt) = dt {
                let rate = dt.f_narrow(1, j, 1)?.f_to_kind(kind)?.f_mul(&w)?;
                tangents.push(cos.f_mul(&rate)?);
                tangents.push(sin.f_mul(&rate)?.f_neg()?);
            }
            features.push(sin);
            features.push(cos);
        }
        let tangent = if dt.is_some() { Some(Tensor::f_cat(&tangents, 1)?) } else { None };
        Ok((Tensor::f_cat(&features, 1)?, tangent))
    }
}
