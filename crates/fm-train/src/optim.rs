//! Adam, owned here rather than taken from `tch::nn::Optimizer`: its moments are plain
//! tensors we can checkpoint, and every operation is fallible instead of panicking.
//! The update is PyTorch's `torch.optim.Adam` (single-tensor form) step for step.

use crate::Result;
use tch::Tensor;

pub struct Adam {
    params: Vec<Tensor>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    step: u64,
}

impl Adam {
    pub fn new(params: Vec<Tensor>, lr: f64) -> Result<Self> {
        let zeros = |p: &Tensor| p.f_zeros_like();
        Ok(Self {
            exp_avg: params.iter().map(zeros).collect::<std::result::Result<_, _>>()?,
            exp_avg_sq: params.iter().map(zeros).collect::<std::result::Result<_, _>>()?,
            params,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            step: 0,
        })
    }

    /// Backpropagates `loss` into fresh gradients and applies one update.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        for p in &mut self.params {
            p.zero_grad();
        }
        loss.f_backward()?;
        let _no_grad = tch::no_grad_guard();
        self.step += 1;
        let (b1, b2) = self.betas;
        let bias1 = 1.0 - b1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        for ((p, m), v) in self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = m.f_lerp_(&g, 1.0 - b1)?;
            let _ = v.f_mul_scalar_(b2)?.f_addcmul_(&g, &g.f_mul_scalar(1.0 - b2)?)?;
            let denom = v.f_sqrt()?.f_div_scalar_(bias2_sqrt)?.f_add_scalar_(self.eps)?;
            let _ = p.f_addcdiv_(&m.f_mul_scalar(-self.lr / bias1)?, &denom)?;
        }
        Ok(())
    }
}
