//! What a MeanFlow training step costs against a flow-matching step, on the seed's workload
//! (batch 256, the fast preset's 3 × 128 GELU network, CPU): the MeanFlow target needs a
//! Jacobian-vector product of the network, written out for the MLP (`Mlp::jvp`, about two
//! forward passes) or, for a model without one, autograd's double-vjp (`jvp_autograd`).
//!
//! ```text
//! cargo run --release -p fm-train --example meanflow_cost -- [--steps 2000]
//! ```

use fm_dist::{GaussianMixture, StandardNormal};
use fm_model::{Architecture, Mlp, MlpConfig, VelocityModel};
use fm_ode::VectorField;
use fm_train::{train, ObjectiveChoice, TrainConfig};
use std::time::Instant;
use tch::{Device, Tensor};

/// The MLP without its written-out JVP: what any other model pays.
struct AutogradJvp(Mlp);

impl VelocityModel for AutogradJvp {
    fn forward(&self, x: &Tensor, t: &Tensor) -> fm_model::Result<Tensor> {
        self.0.forward(x, t)
    }
    fn dim(&self) -> usize {
        VelocityModel::dim(&self.0)
    }
    fn time_inputs(&self) -> usize {
        VelocityModel::time_inputs(&self.0)
    }
    fn device(&self) -> Device {
        VelocityModel::device(&self.0)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.0.named_parameters()
    }
    fn architecture(&self) -> Architecture {
        self.0.architecture()
    }
    fn mse_backward(&self, x: &Tensor, t: &Tensor, target: &Tensor) -> fm_model::Result<Option<Tensor>> {
        self.0.mse_backward(x, t, target)
    }
}

impl VectorField for AutogradJvp {
    fn velocity(&self, x: &Tensor, t: f64) -> fm_ode::Result<Tensor> {
        self.0.velocity(x, t)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = args.iter().position(|a| a == "--steps").and_then(|i| args.get(i + 1)).map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let (target, source) = (GaussianMixture::seed(), StandardNormal::new(2)?);
    let base = TrainConfig { steps, warmup_steps: steps / 20, ..TrainConfig::preset("fast")? };
    let net = |time_inputs| MlpConfig { time_inputs, ..fm_train::Preset::named("fast").unwrap().model };
    let mut fm = fm_model::with_torch_seed(0, || Mlp::new(net(1), Device::Cpu))?;
    let mut mf = fm_model::with_torch_seed(0, || Mlp::new(net(2), Device::Cpu))?;
    let mut mf_autograd = AutogradJvp(fm_model::with_torch_seed(0, || Mlp::new(net(2), Device::Cpu))?);
    let meanflow = TrainConfig { objective: ObjectiveChoice::meanflow(), ..base.clone() };
    let time = |f: &mut dyn FnMut() -> fm_train::Result<fm_train::TrainReport>| -> Result<f64, Box<dyn std::error::Error>> {
        let t0 = Instant::now();
        f()?;
        Ok(t0.elapsed().as_secs_f64() / steps as f64 * 1e3)
    };
    let t_fm = time(&mut || train(&mut fm, &target, &source, &base, &mut |_| {}))?;
    let t_mf = time(&mut || train(&mut mf, &target, &source, &meanflow, &mut |_| {}))?;
    let t_ag = time(&mut || train(&mut mf_autograd, &target, &source, &meanflow, &mut |_| {}))?;
    println!("{steps} steps of 256, fast preset network, {} thread(s)", tch::get_num_threads());
    println!("flow matching step                 {t_fm:.3} ms");
    println!("MeanFlow step, written-out JVP     {t_mf:.3} ms  ({:.2}× flow matching)", t_mf / t_fm);
    println!("MeanFlow step, autograd double-vjp {t_ag:.3} ms  ({:.2}× flow matching)", t_ag / t_fm);
    Ok(())
}
