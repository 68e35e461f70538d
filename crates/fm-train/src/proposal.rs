//! The weighted proposal of energy-only training ([`crate::objective::EnergyWeighted`]): the
//! model's own samples with their importance weights against the density, refreshed every
//! `every` steps, kept in the training state (so a run resumed mid-refresh trains on the same
//! points, bit for bit), and counted in energy evaluations.

use crate::objective::EnergyWeighted;
use crate::{Error, Result, SampleConfig};
use fm_dist::affine::Affine;
use fm_dist::importance::{ImportanceSummary, ImportanceWeights};
use fm_dist::{Density, Target};
use fm_model::VelocityModel;
use ndarray::Array1;
use rand::{Rng, RngCore};
use tch::{Kind, Tensor};

/// One refresh of the proposal: its points in the network's units and their log-weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// Which refresh (from 0): steps `round·every + 1 ..= (round + 1)·every` train on it.
    pub round: usize,
    /// The temperature `T` its weights are taken at (`p̃^{1/T}`).
    pub temperature: f64,
    /// Energy evaluations of the run so far, this refresh's included.
    pub evaluations: u64,
    dim: usize,
    /// `[size × dim]`, row-major, in the network's (standard) units, as the batches take them.
    points: Vec<f32>,
    /// `log p̃(x)/T − log q(x)` in the data's units (`−∞` where `p̃ = 0`), rounded to `f32`
    /// as the training state stores it (so that a resumed run weighs exactly as this one).
    log_w: Vec<f64>,
}

/// What the training loop reports of the current proposal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergyProgress {
    /// Energy evaluations so far.
    pub evaluations: u64,
    /// The temperature of the current proposal's weights.
    pub temperature: f64,
    /// Its ESS and `log Z` (of `p̃^{1/T}`) ± standard error.
    pub weights: ImportanceSummary,
}

/// Mixed into the run's seed for each refresh's source draws.
const PROPOSAL_SEED: u64 = 0x7072_6f70_6f73_616c;

impl Proposal {
    /// Refresh `round` of a run of `steps` seeded by `seed`: `plan.size` points of `model`
    /// (trained in the units `map` leads out of: `x = shift + scale ⊙ z`) with their exact
    /// `log q`, weighed against `density` at the round's temperature; `evaluations` counted
    /// before it.
    ///
    /// # Errors
    /// A NaN or `+∞` `log p̃` (one line naming the sample), a proposal whose every weight is 0,
    /// and [`crate::sample_with_log_q`]'s failures.
    #[allow(clippy::too_many_arguments)]
    pub fn draw(
        model: &dyn VelocityModel,
        density: &dyn Density,
        source: &dyn Target,
        map: Option<&Affine>,
        objective: &EnergyWeighted,
        round: usize,
        steps: usize,
        seed: u64,
        evaluations: u64,
    ) -> Result<Self> {
        let plan = objective.plan;
        let cfg = SampleConfig {
            n_samples: plan.size,
            steps: plan.ode_steps,
            method: fm_ode::Method::Rk4,
            seed: crate::step_seed(seed ^ PROPOSAL_SEED, round),
            ..SampleConfig::default()
        };
        let (z, log_q_z) = crate::sample_with_log_q(model, source, &cfg)?;
        let (x, log_q) = match map {
            Some(map) => (map.apply(z.view()), log_q_z - map.log_det()),
            None => (z.clone(), log_q_z),
        };
        let log_p = density.log_density(x.view())?;
        if let Some(i) = log_p.iter().position(|v| v.is_nan() || *v == f64::INFINITY) {
            return Err(Error::Data(format!(
                "the density {} gives log p̃ = {} at proposal point {i} of refresh {round} ({:?}): energy-only training needs a finite energy",
                density.density_name(),
                log_p[i],
                x.row(i).to_vec()
            )));
        }
        // Rounded to f32, as the state keeps them.
        let temperature = f64::from(objective.temperature(round, steps) as f32);
        let log_w: Array1<f64> = (log_p / temperature - &log_q).mapv(|w| f64::from(w as f32));
        if log_w.iter().all(|w| *w == f64::NEG_INFINITY) {
            return Err(Error::Config(format!(
                "refresh {round}: the density {} is 0 at every one of the {} proposal points: the source does not reach it (state its scale: Density::std_dev)",
                density.density_name(),
                plan.size
            )));
        }
        Ok(Self {
            round,
            temperature,
            evaluations: evaluations + plan.size as u64,
            dim: z.ncols(),
            points: z.iter().map(|v| *v as f32).collect(),
            log_w: log_w.to_vec(),
        })
    }

    /// The dimension of its points.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Its ESS and `log Z` estimate, with the evaluations so far.
    pub fn progress(&self) -> EnergyProgress {
        let weights = ImportanceWeights { log_w: Array1::from(self.log_w.clone()) }.summary();
        EnergyProgress { evaluations: self.evaluations, temperature: self.temperature, weights }
    }

    /// Fills a batch: `x1` rows drawn uniformly with replacement from the points, and each row's
    /// weight self-normalised over the batch (mean 1; a batch whose weights are all 0 gets
    /// weight 1 on every row: nothing is known about which is better).
    pub(crate) fn fill(&self, x1: &mut [f32], weights: &mut [f32], rng: &mut dyn RngCore) {
        let d = self.dim;
        let size = self.log_w.len();
        let drawn: Vec<usize> = weights.iter().map(|_| rng.random_range(0..size)).collect();
        let log_sum = fm_dist::gmm::log_sum_exp(drawn.iter().map(|&i| self.log_w[i]));
        let n = weights.len() as f64;
        for (k, &i) in drawn.iter().enumerate() {
            x1[k * d..(k + 1) * d].copy_from_slice(&self.points[i * d..(i + 1) * d]);
            weights[k] = if log_sum.is_finite() { ((self.log_w[i] - log_sum).exp() * n) as f32 } else { 1.0 };
        }
    }

    /// As named tensors for the training state (which stores floats as f32, exactly what
    /// [`Proposal::draw`] keeps): `proposal.points` `[size, dim]`, `proposal.log_w` `[size]`
    /// (`−∞` stored as the most negative f32, since a state holds finite numbers only),
    /// `proposal.temperature` `[1]`, and `proposal.count` `[round, evaluations]` (i64).
    pub(crate) fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let size = self.log_w.len() as i64;
        let finite: Vec<f32> = self.log_w.iter().map(|w| (*w as f32).max(f32::MIN)).collect();
        Ok(vec![
            ("proposal.points".into(), Tensor::f_from_slice(&self.points)?.f_view([size, self.dim as i64])?),
            ("proposal.log_w".into(), Tensor::f_from_slice(&finite)?),
            ("proposal.temperature".into(), Tensor::f_from_slice(&[self.temperature as f32])?),
            ("proposal.count".into(), Tensor::f_from_slice(&[self.round as i64, self.evaluations as i64])?),
        ])
    }

    /// Reads back what [`Proposal::state`] wrote (`tensors` without the `proposal.` prefix).
    ///
    /// # Errors
    /// [`Error::State`] for a tensor missing or of another shape or kind.
    pub(crate) fn from_state(tensors: &[(String, Tensor)]) -> Result<Self> {
        let get =
            |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t).ok_or_else(|| Error::State(format!("the proposal has no '{name}' tensor")));
        let bad = |what: &str| Error::State(format!("the proposal's {what} cannot be read"));
        let points = get("points")?;
        let (size, dim) = match points.size()[..] {
            [s, d] => (s as usize, d as usize),
            _ => return Err(bad("points")),
        };
        let points = Vec::<f32>::try_from(points.f_to_kind(Kind::Float)?.f_contiguous()?.f_view(-1)?).map_err(|_| bad("points"))?;
        let floats = |name: &str| Vec::<f32>::try_from(get(name)?.f_to_kind(Kind::Float)?.f_contiguous()?.f_view(-1)?).map_err(|_| bad(name));
        let log_w = floats("log_w")?;
        let temperature = floats("temperature")?;
        let count = Vec::<i64>::try_from(get("count")?.f_to_kind(Kind::Int64)?.f_contiguous()?).map_err(|_| bad("count"))?;
        if size == 0 || dim == 0 || log_w.len() != size || temperature.len() != 1 || count.len() != 2 || count.iter().any(|c| *c < 0) {
            return Err(bad("shapes"));
        }
        if points.iter().any(|v| !v.is_finite())
            || log_w.iter().any(|w| w.is_nan() || *w == f32::INFINITY)
            || !(temperature[0].is_finite() && temperature[0] >= 1.0)
        {
            return Err(bad("values (not finite, or a temperature below 1)"));
        }
        let log_w = log_w.into_iter().map(|w| if w == f32::MIN { f64::NEG_INFINITY } else { f64::from(w) }).collect();
        Ok(Self { round: count[0] as usize, evaluations: count[1] as u64, temperature: f64::from(temperature[0]), dim, points, log_w })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::{Batch, BatchLoss, FlowMatching, Objective};
    use crate::TrainConfig;
    use fm_dist::{density_of, GaussianMixture};
    use rand::SeedableRng;

    fn proposal(points: ndarray::ArrayView2<f64>, log_w: Vec<f64>) -> Proposal {
        Proposal { round: 0, temperature: 1.0, evaluations: 0, dim: points.ncols(), points: points.iter().map(|v| *v as f32).collect(), log_w }
    }

    #[test]
    fn a_proposal_equal_to_the_target_gives_flow_matchings_loss() {
        // q = p: every log-weight is log p̃ − log q = log Z = 0 for the normalised mixture.
        let target = GaussianMixture::seed();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let x = target.sample(512, &mut rng);
        let density = density_of(&target).unwrap();
        let log_w = (density.log_density(x.view()).unwrap() - target.log_prob(x.view()).unwrap()).to_vec();
        assert!(log_w.iter().all(|w| *w == 0.0));
        let p = proposal(x.view(), log_w);
        let n = 128;
        let (mut x1, mut w) = (vec![0f32; n * 2], vec![0f32; n]);
        p.fill(&mut x1, &mut w, &mut rng);
        assert!(w.iter().all(|w| *w == 1.0), "equal weights normalise to 1: {w:?}");
        let x0 = fm_dist::StandardNormal::new(2).unwrap().sample(n, &mut rng);
        let t: Vec<f32> = (0..n).map(|i| (i as f32 + 0.5) / n as f32).collect();
        let batch = Batch {
            x0: crate::array_to_tensor(x0.view(), tch::Device::Cpu).unwrap(),
            x1: Tensor::from_slice(&x1).view([n as i64, 2]),
            t: Tensor::from_slice(&t).view([n as i64, 1]),
            extra: Tensor::zeros([0], (Kind::Float, tch::Device::Cpu)),
            conditions: Tensor::zeros([n as i64, 0], (Kind::Float, tch::Device::Cpu)),
            weights: Some(Tensor::from_slice(&w).view([n as i64, 1])),
        };
        let model = fm_model::with_torch_seed(1, || fm_model::Mlp::new(fm_model::MlpConfig::default(), tch::Device::Cpu)).unwrap();
        let cfg = TrainConfig::default();
        let weighted = match EnergyWeighted::default().loss(&model, &cfg, &batch).unwrap() {
            BatchLoss::Loss(l) => f64::try_from(l).unwrap(),
            BatchLoss::Regression { .. } => unreachable!("ewfm weighs its own loss"),
        };
        let plain = match FlowMatching.loss(&model, &cfg, &batch).unwrap() {
            BatchLoss::Regression { inputs, times, target } => {
                f64::try_from(model.forward(&inputs, &times).unwrap().mse_loss(&target, tch::Reduction::Mean)).unwrap()
            }
            BatchLoss::Loss(_) => unreachable!("flow matching is a regression"),
        };
        assert!((weighted - plain).abs() <= 1e-6 * plain, "weighted {weighted} vs flow matching {plain}");
    }

    #[test]
    fn weights_are_self_normalised_over_each_batch() {
        // Two points, w = 1 and 3: every batch's weights sum to n, and keep the ratio 3.
        let x = ndarray::array![[0.0, 0.0], [1.0, 1.0]];
        let p = proposal(x.view(), vec![0.0, 3f64.ln()]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let n = 64;
        let (mut x1, mut w) = (vec![0f32; n * 2], vec![0f32; n]);
        p.fill(&mut x1, &mut w, &mut rng);
        let sum: f32 = w.iter().sum();
        assert!((sum - n as f32).abs() < 1e-3, "weights sum to {sum}");
        let light = w.iter().zip(x1.chunks(2)).find(|(_, x)| x[0] == 0.0).map(|(w, _)| *w).unwrap();
        let heavy = w.iter().zip(x1.chunks(2)).find(|(_, x)| x[0] == 1.0).map(|(w, _)| *w).unwrap();
        assert!((heavy / light - 3.0).abs() < 1e-5);
    }

    #[test]
    fn the_state_keeps_the_proposal_and_its_zero_weights() {
        let x = ndarray::array![[0.5, -1.0], [2.0, 3.0], [1.0, 0.0]];
        let mut p = proposal(x.view(), vec![-1.5, f64::NEG_INFINITY, 0.25]);
        // (Values a state can hold exactly: f32's.)
        (p.round, p.evaluations, p.temperature) = (7, 12_288, 2.5);
        let state = p.state().unwrap();
        assert!(crate::checkpoint::all_finite(state.iter().map(|(_, t)| t)).unwrap());
        let back: Vec<(String, Tensor)> = state.into_iter().map(|(n, t)| (n.trim_start_matches("proposal.").to_string(), t)).collect();
        assert_eq!(Proposal::from_state(&back).unwrap(), p);
    }
}
