//! The residual MLP velocity field (`kind = "resmlp"`): pre-norm residual blocks on a hidden
//! width, with sinusoidal time features.

use crate::mlp::TimeInputs;
use crate::{ConditionShape, Error, MlpConfig, Result};
use tch::{nn, Device, Tensor};

/// A residual MLP `v(x, t)`: the inputs `[x, τ(t), c]` (sinusoidal time features `τ`,
/// [`MlpConfig::sinusoidal_features`] of them per time, the
/// condition's features `c` when conditioned) projected to the hidden width, then
/// `hidden_layers` pre-norm residual blocks `h ← h + W₂ σ(W₁ LayerNorm(h) + b₁) + b₂`, then a
/// final layer norm and a linear map to the `dim` outputs.
///
/// The residual stream keeps gradients flowing through a deep network and the layer norms keep
/// each block's inputs of order one whatever the data's scale (the design of the MLP baselines
/// of diffusion and flow-matching work, e.g. Tabular DDPM's and TorchCFM's ResNet MLPs). `W₂`
/// and `b₂` start at zero, so every block starts as the identity.
///
/// Parameters are named as the PyTorch module of docs/reference/formats.md names them
/// (`input.weight`, `blocks.0.norm.weight`, `blocks.0.fc1.weight`, `blocks.0.fc2.weight`, …,
/// `norm.weight`, `output.weight`), so its checkpoints load there with `load_state_dict`.
///
/// Training and divergences go through autograd (no written-out backward pass).
pub struct ResMlp {
    vs: nn::VarStore,
    input: nn::Linear,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    output: nn::Linear,
    config: MlpConfig,
    times: TimeInputs,
}

struct Block {
    norm: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl std::fmt::Debug for ResMlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResMlp").field("config", &self.config).field("device", &self.vs.device()).finish()
    }
}

impl ResMlp {
    /// Sinusoidal features of each time when the configuration asks for none
    /// (`time_embedding = 0`): the residual MLP always embeds its times.
    pub const TIME_FEATURES: usize = 32;

    /// A freshly initialised network (PyTorch's default `nn.Linear` and `nn.LayerNorm`
    /// initialisation, each block's second layer zero), from torch's global generator: build it
    /// inside [`crate::with_torch_seed`] for reproducibility.
    ///
    /// # Errors
    /// [`Error::Config`] when [`MlpConfig::validate`] refuses `config` or its kind is not
    /// `resmlp`; [`Error::Torch`] when it cannot be built on `device`.
    pub fn new(config: MlpConfig, device: Device) -> Result<Self> {
        config.validate()?;
        if config.kind != crate::registry::RESMLP {
            return Err(Error::Config(format!("a '{}' network is not a residual MLP", config.kind)));
        }
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (h, d) = (config.hidden_dim as i64, config.dim as i64);
        let inputs = d + (config.time_features() + config.condition_shape().features()) as i64;
        let input = nn::linear(&root / "input", inputs, h, Default::default());
        let zero = nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true };
        let blocks = (0..config.hidden_layers)
            .map(|i| {
                let b = &root / "blocks" / i;
                Block {
                    norm: nn::layer_norm(&b / "norm", vec![h], Default::default()),
                    fc1: nn::linear(&b / "fc1", h, h, Default::default()),
                    fc2: nn::linear(&b / "fc2", h, h, zero),
                }
            })
            .collect();
        let norm = nn::layer_norm(&root / "norm", vec![h], Default::default());
        let output = nn::linear(&root / "output", h, d, Default::default());
        let times = TimeInputs::new(&config, device)?;
        Ok(Self { vs, input, blocks, norm, output, config, times })
    }

    /// The shape of the network.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// Weights and biases in all for `config` (without overflow): the input projection,
    /// `hidden_layers` blocks of two `h × h` linear layers and a layer norm, the final norm and
    /// the output layer.
    pub fn parameter_count(config: &MlpConfig) -> u128 {
        let (d, h, l) = (config.dim as u128, config.hidden_dim as u128, config.hidden_layers as u128);
        let inputs = d.saturating_add((config.time_features() + config.condition_shape().features()) as u128);
        let block = h.saturating_mul(h).saturating_add(h).saturating_mul(2).saturating_add(h.saturating_mul(2));
        let outer = inputs.saturating_mul(h).saturating_add(h).saturating_add(h.saturating_mul(2)).saturating_add(h.saturating_mul(d)).saturating_add(d);
        outer.saturating_add(l.saturating_mul(block))
    }

    /// `v(x, t)` for `x: [n, dim]` and rows `t: [n, time_inputs + condition features]`
    /// (tracks gradients).
    ///
    /// # Errors
    /// [`Error::Config`] for inputs of the wrong shape; [`Error::Torch`] for torch failures.
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let (rows, k) = (x.size().first().copied().unwrap_or(0), (self.config.time_inputs + self.config.condition_shape().features()) as i64);
        if x.size() != [rows, self.config.dim as i64] || t.size() != [rows, k] {
            return Err(Error::Config(format!(
                "the residual MLP takes x of shape [n, {}] and t of shape [n, {k}]; got {:?} and {:?}",
                self.config.dim,
                x.size(),
                t.size()
            )));
        }
        let kind = self.input.ws.kind();
        let context = self.times.context(t, None, kind)?.0;
        let mut h = Tensor::f_cat(&[&x.f_to_kind(kind)?, &context], 1)?.f_linear(&self.input.ws, self.input.bs.as_ref())?;
        for b in &self.blocks {
            let mut z = h.apply(&b.norm).f_linear(&b.fc1.ws, b.fc1.bs.as_ref())?;
            self.config.activation.apply_(&mut z)?;
            h = h.f_add(&z.f_linear(&b.fc2.ws, b.fc2.bs.as_ref())?)?;
        }
        Ok(h.apply(&self.norm).f_linear(&self.output.ws, self.output.bs.as_ref())?)
    }
}

impl crate::VelocityModel for ResMlp {
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        ResMlp::forward(self, x, t)
    }
    fn time_inputs(&self) -> usize {
        self.config.time_inputs
    }
    fn dim(&self) -> usize {
        self.config.dim
    }
    fn device(&self) -> Device {
        self.vs.device()
    }
    /// In the order of the PyTorch module's `state_dict()`.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let linear = |name: String, l: &nn::Linear| {
            [(format!("{name}.weight"), l.ws.shallow_clone())].into_iter().chain(l.bs.as_ref().map(|b| (format!("{name}.bias"), b.shallow_clone())))
        };
        let norm = |name: String, n: &nn::LayerNorm| {
            [n.ws.as_ref().map(|w| (format!("{name}.weight"), w.shallow_clone())), n.bs.as_ref().map(|b| (format!("{name}.bias"), b.shallow_clone()))]
                .into_iter()
                .flatten()
        };
        let mut out: Vec<(String, Tensor)> = linear("input".into(), &self.input).collect();
        for (i, b) in self.blocks.iter().enumerate() {
            out.extend(norm(format!("blocks.{i}.norm"), &b.norm));
            out.extend(linear(format!("blocks.{i}.fc1"), &b.fc1));
            out.extend(linear(format!("blocks.{i}.fc2"), &b.fc2));
        }
        out.extend(norm("norm".into(), &self.norm));
        out.extend(linear("output".into(), &self.output));
        out
    }
    fn architecture(&self) -> crate::Architecture {
        // MlpConfig holds numbers and names: it always serialises.
        crate::Architecture { kind: crate::registry::RESMLP_FORMAT.into(), config: serde_json::to_string(&self.config).unwrap_or_default() }
    }
    fn condition_shape(&self) -> ConditionShape {
        self.config.condition_shape()
    }
}

impl fm_ode::VectorField for ResMlp {
    fn velocity(&self, x: &Tensor, t: f64) -> fm_ode::Result<Tensor> {
        crate::velocity_at(self, x, t)
    }
}
