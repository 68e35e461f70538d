//! A velocity network of your own, trained by flow matching and sampled through fm's crates.
//!
//! The network is a two-layer MLP on `tch::nn`; all fm-train asks of it is `VelocityModel`
//! (forward pass, parameters, device, architecture) and `VectorField` for sampling.

use fm_dist::{metrics, parse_target};
use fm_model::{var_store_parameters, velocity_at, Architecture, VelocityModel};
use fm_ode::VectorField;
use fm_train::{sample, train, SampleConfig, TrainConfig};
use rand::SeedableRng;
use tch::{nn, nn::Module, Device, Tensor};

struct TwoLayers {
    vs: nn::VarStore,
    net: nn::Sequential,
}

impl TwoLayers {
    fn new(width: i64) -> Self {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let net = nn::seq()
            .add(nn::linear(&root / "fc1", 3, width, Default::default()))
            .add_fn(|x| x.silu())
            .add(nn::linear(&root / "fc2", width, width, Default::default()))
            .add_fn(|x| x.silu())
            .add(nn::linear(&root / "out", width, 2, Default::default()));
        Self { vs, net }
    }
}

impl VelocityModel for TwoLayers {
    fn forward(&self, x: &Tensor, t: &Tensor) -> fm_model::Result<Tensor> {
        Ok(self.net.forward(&Tensor::f_cat(&[x, t], 1)?))
    }
    fn dim(&self) -> usize {
        2
    }
    fn device(&self) -> Device {
        self.vs.device()
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        var_store_parameters(&self.vs)
    }
    fn architecture(&self) -> Architecture {
        Architecture { kind: "downstream/two-layers".into(), config: "{}".into() }
    }
}

impl VectorField for TwoLayers {
    fn velocity(&self, x: &Tensor, t: f64) -> fm_ode::Result<Tensor> {
        velocity_at(self, x, t)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = std::env::args().nth(1).map_or(Ok(2000), |s| s.parse())?;
    let target = parse_target("8gaussians")?;
    let source = parse_target("normal:2")?;
    let mut model = fm_model::with_torch_seed(0, || TwoLayers::new(64));
    let cfg = TrainConfig { steps, lr: 1e-3, ..TrainConfig::default() };
    let report = train(&mut model, target.as_ref(), source.as_ref(), &cfg, &mut |_| {})?;
    let samples = sample(&model, source.as_ref(), &SampleConfig { n_samples: 1000, ..SampleConfig::default() })?;
    let truth = target.sample(1000, &mut rand::rngs::StdRng::seed_from_u64(1));
    let w2 = metrics::w2(samples.view(), truth.view())?;
    println!("trained {} steps in {:.1} s (final loss {:.4}); W2 of 1,000 samples to 1,000 true points: {w2:.3}", report.steps, report.seconds, report.final_loss);
    Ok(())
}
