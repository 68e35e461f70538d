//! Conditional flow matching: classifier-free guidance is the conditional and unconditional
//! fields at w = 1 and 0, bit for bit; the condition-aware couplings against brute force; the
//! per-class KL of a trained model against quadrature.

use super::coupling::permutations;
use fm_dist::{GaussianMixture, StandardNormal, Target};
use fm_model::{ConditionShape, Mlp, MlpConfig, VelocityModel};
use fm_ode::VectorField;
use fm_train::coupling::{c2ot_assignment, c2ot_weight, ot_within_classes, squared_distances};
use fm_train::{ConditionOn, Coupling, Guided, LikelihoodConfig, LrSchedule, SampleConfig, TrainConfig};
use ndarray::{array, Array2};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tch::{Device, Kind, Tensor};

fn conditional_mlp(classes: usize, cond_dim: usize, dim: usize, seed: u64) -> Mlp {
    let cfg = MlpConfig { dim, hidden_dim: 32, classes, cond_dim, activation: fm_model::Activation::Gelu, ..MlpConfig::default() };
    fm_model::with_torch_seed(seed, || Mlp::new(cfg, Device::Cpu)).unwrap()
}

fn features(shape: ConditionShape, label: Option<usize>) -> Tensor {
    Tensor::from_slice(&shape.features_of(label, None).unwrap())
}

#[test]
fn guidance_at_one_is_the_conditional_field_and_at_zero_the_unconditional_bit_for_bit() {
    let mlp = conditional_mlp(3, 0, 2, 3);
    let shape = mlp.condition_shape();
    let x = fm_model::with_torch_seed(9, || Tensor::randn([50, 2], (Kind::Float, Device::Cpu)));
    for t in [0.0, 0.37, 1.0] {
        let v1 = mlp.velocity_given(&x, t, &features(shape, Some(2))).unwrap();
        let v0 = mlp.velocity_given(&x, t, &features(shape, None)).unwrap();
        assert!(Guided::new(&mlp, Some(2), None, 1.0).unwrap().velocity(&x, t).unwrap().equal(&v1));
        assert!(Guided::new(&mlp, Some(2), None, 0.0).unwrap().velocity(&x, t).unwrap().equal(&v0));
        // The model's own field is the unconditional one.
        assert!(mlp.velocity(&x, t).unwrap().equal(&v0));
        // The folded bias is the network on [x, t, features].
        let cols = Tensor::cat(&[Tensor::full([50, 1], t, (Kind::Float, Device::Cpu)), features(shape, Some(2)).view([1, -1]).expand([50, -1], false)], 1);
        let direct = mlp.forward(&x, &cols).unwrap();
        assert!(f64::try_from((&direct - &v1).abs().max()).unwrap() < 1e-5);
        // w = 2.5: v0 + w (v1 − v0), and its divergence the same mix of the two divergences.
        let g = Guided::new(&mlp, Some(2), None, 2.5).unwrap();
        let (v, div) = g.velocity_and_divergence(&x, t).unwrap().unwrap();
        assert!(f64::try_from((&v - (&v0 + (&v1 - &v0) * 2.5)).abs().max()).unwrap() < 1e-5);
        let xg = x.detach().set_requires_grad(true);
        let vg = g.velocity(&xg, t).unwrap();
        let mut auto = Tensor::zeros([50], (Kind::Float, Device::Cpu));
        for k in 0..2 {
            let grad = Tensor::run_backward(&[vg.select(1, k).sum(Kind::Float)], &[&xg], true, false);
            auto += grad[0].select(1, k);
        }
        assert!(f64::try_from((&div - &auto).abs().max()).unwrap() < 1e-4, "divergence of the guided field");
    }
}

/// With a time embedding the condition features still come after the (embedded) times: the
/// folded bias, the forward pass and a training step agree.
#[test]
fn a_conditional_network_with_a_time_embedding_trains_and_samples() {
    let cfg = MlpConfig { hidden_dim: 16, classes: 3, time_embedding: 8, activation: fm_model::Activation::Silu, ..MlpConfig::default() };
    let mut mlp = fm_model::with_torch_seed(2, || Mlp::new(cfg, Device::Cpu)).unwrap();
    let shape = mlp.condition_shape();
    let x = fm_model::with_torch_seed(9, || Tensor::randn([20, 2], (Kind::Float, Device::Cpu)));
    let given = mlp.velocity_given(&x, 0.3, &features(shape, Some(1))).unwrap();
    let cols = Tensor::cat(&[Tensor::full([20, 1], 0.3, (Kind::Float, Device::Cpu)), features(shape, Some(1)).view([1, -1]).expand([20, -1], false)], 1);
    assert!(f64::try_from((mlp.forward(&x, &cols).unwrap() - &given).abs().max()).unwrap() < 1e-5);
    let train = TrainConfig { steps: 5, batch_size: 32, condition: ConditionOn::Labels, ..TrainConfig::default() };
    fm_train::train(&mut mlp, &GaussianMixture::seed(), &StandardNormal::new(2).unwrap(), &train, &mut |_| {}).unwrap();
    assert!(Guided::new(&mlp, Some(0), None, 2.0).unwrap().velocity(&x, 0.5).is_ok());
}

#[test]
fn guidance_refuses_what_the_model_does_not_take() {
    let mlp = conditional_mlp(3, 0, 2, 3);
    assert!(Guided::new(&mlp, Some(3), None, 1.0).err().unwrap().to_string().contains("out of range"));
    assert!(Guided::new(&mlp, Some(1), None, f64::NAN).is_err());
    assert!(Guided::new(&mlp, None, Some(&[0.5]), 1.0).is_err());
    let plain = fm_model::with_torch_seed(1, || Mlp::new(MlpConfig::default(), Device::Cpu)).unwrap();
    assert!(Guided::new(&plain, Some(0), None, 1.0).err().unwrap().to_string().contains("unconditional"));
    let values = conditional_mlp(0, 2, 2, 3);
    assert!(Guided::new(&values, None, Some(&[0.5]), 1.0).err().unwrap().to_string().contains("2-D"));
    assert!(Guided::new(&values, None, Some(&[0.5, -1.0]), 1.0).is_ok());
}

/// Random tiny batches with 1 to 3 classes.
fn batches() -> impl Iterator<Item = (Array2<f64>, Array2<f64>, Vec<usize>)> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..30).map(move |_| {
        let n = rng.random_range(2..=8);
        let x0 = Array2::from_shape_fn((n, 2), |_| rng.random::<f64>() * 4.0 - 2.0);
        let x1 = Array2::from_shape_fn((n, 2), |_| rng.random::<f64>() * 4.0 - 2.0);
        let labels = (0..n).map(|_| rng.random_range(0..3)).collect();
        (x0, x1, labels)
    })
}

#[test]
fn class_wise_ot_never_pairs_across_classes_and_is_optimal_within_each() {
    for (x0, x1, labels) in batches() {
        let pairs = ot_within_classes(x0.view(), x1.view(), &labels).unwrap();
        let n = labels.len();
        let mut perm = vec![usize::MAX; n];
        for &(i, j) in &pairs {
            assert_eq!(labels[i], labels[j], "pair ({i}, {j}) crosses classes {labels:?}");
            perm[i] = j;
        }
        let mut seen = perm.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>(), "not a permutation: {perm:?}");
        let cost = squared_distances(x0.view(), x1.view());
        for class in 0..3 {
            let rows: Vec<usize> = (0..n).filter(|&i| labels[i] == class).collect();
            let ours: f64 = rows.iter().map(|&i| cost[i * n + perm[i]]).sum();
            let best = permutations(rows.len())
                .into_iter()
                .map(|p| rows.iter().zip(&p).map(|(&i, &k)| cost[i * n + rows[k]]).sum::<f64>())
                .fold(f64::INFINITY, f64::min);
            assert!(ours <= best + 1e-9, "class {class}: {ours} > the optimum {best}");
        }
        // C2OT with labels is the same plan.
        let c2ot = Coupling::c2ot().pairs_conditioned(x0.view(), x1.view(), Some(&labels), None, &mut StdRng::seed_from_u64(0)).unwrap();
        assert_eq!(c2ot, pairs);
    }
}

#[test]
fn c2ot_with_condition_vectors_is_the_optimum_of_its_cost() {
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..10 {
        let n = 6;
        let x0 = Array2::from_shape_fn((n, 2), |_| rng.random::<f64>() * 4.0 - 2.0);
        let x1 = Array2::from_shape_fn((n, 2), |_| rng.random::<f64>() * 4.0 - 2.0);
        let y = Array2::from_shape_fn((n, 1), |_| rng.random::<f64>() * 2.0 - 1.0);
        for ratio in [0.05, 0.3] {
            let perm = c2ot_assignment(x0.view(), x1.view(), y.view(), ratio).unwrap();
            let (m, c) = (squared_distances(x0.view(), x1.view()), squared_distances(y.view(), y.view()));
            let w = c2ot_weight(&m, &c, n, ratio);
            let total = |p: &[usize]| p.iter().enumerate().map(|(i, &j)| m[i * n + j] + w * c[i * n + j]).sum::<f64>();
            let best = permutations(n).iter().map(|p| total(p)).fold(f64::INFINITY, f64::min);
            assert!(total(&perm) <= best + 1e-9 * best.max(1.0), "c2ot {} > the optimum {best} (w = {w})", total(&perm));
            // w meets the ratio: at most `ratio` of the pairs are no dearer than the independent one
            // (ties on the diagonal count, so at least 1/n always are).
            let share = (0..n * n).filter(|&k| m[k] + w * c[k] <= m[(k % n) * n + k % n]).count() as f64 / (n * n) as f64;
            assert!(share <= ratio.max(1.0 / n as f64) + 1e-12, "share {share} at w = {w}");
        }
    }
    // Condition vectors far apart keep every pair within its condition: a large w.
    let x = array![[0.0, 0.0], [1.0, 0.0]];
    let y = array![[0.0], [100.0]];
    assert_eq!(c2ot_assignment(x.view(), array![[1.0, 0.0], [0.0, 0.0]].view(), y.view(), 0.05).unwrap(), vec![0, 1]);
}

#[test]
fn couplings_that_use_conditions_refuse_data_without_them() {
    let x = array![[0.0, 0.0], [1.0, 0.0]];
    let mut rng = StdRng::seed_from_u64(0);
    assert!(Coupling::OtClass.pairs(x.view(), x.view(), &mut rng).is_err());
    assert!(Coupling::OtClass.pairs_conditioned(x.view(), x.view(), None, None, &mut rng).is_err());
    assert!(Coupling::OtClass.pairs_conditioned(x.view(), x.view(), Some(&[0]), None, &mut rng).is_err());
    assert_eq!("c2ot:0.2".parse::<Coupling>().unwrap(), Coupling::C2ot { ratio: 0.2 });
    assert!("c2ot:1.5".parse::<Coupling>().is_err());
    assert!(TrainConfig { coupling: Coupling::OtClass, ..TrainConfig::default() }.validate().is_err());
    assert!(TrainConfig { condition: ConditionOn::Labels, cond_drop: 1.0, ..TrainConfig::default() }.validate().is_err());
    // MeanFlow conditions as flow matching does; maximum likelihood trains unconditional networks.
    assert!(TrainConfig { condition: ConditionOn::Labels, objective: fm_train::ObjectiveChoice::meanflow(), ..TrainConfig::default() }.validate().is_ok());
    let likelihood = TrainConfig { condition: ConditionOn::Labels, objective: "likelihood".parse().unwrap(), ..TrainConfig::default() };
    assert!(likelihood.validate().unwrap_err().to_string().contains("unconditional networks only"));
}

#[test]
fn training_refuses_a_condition_the_data_or_the_model_lack() {
    let cfg = TrainConfig { steps: 2, condition: ConditionOn::Labels, ..TrainConfig::default() };
    let source = StandardNormal::new(2).unwrap();
    // The swiss roll has no classes.
    let mut mlp = conditional_mlp(3, 0, 2, 1);
    let err = fm_train::train(&mut mlp, &fm_dist::SwissRoll, &source, &cfg, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("no class labels"), "{err}");
    // A model of 2 classes for 3.
    let mut two = conditional_mlp(2, 0, 2, 1);
    let err = fm_train::train(&mut two, &GaussianMixture::seed(), &source, &cfg, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("3 classes") && err.contains("2 classes"), "{err}");
    // An unconditional model asked to condition.
    let mut plain = fm_model::with_torch_seed(1, || Mlp::new(MlpConfig::default(), Device::Cpu)).unwrap();
    assert!(fm_train::train(&mut plain, &GaussianMixture::seed(), &source, &cfg, &mut |_| {}).is_err());
}

/// A short conditional run on a 1-D mixture of two classes: each class's KL(p(·|c) ‖ q(·|c)),
/// estimated by Monte Carlo from the exact likelihood ([`fm_train::class_quality`]), agrees with
/// the KL computed by quadrature of the same densities on a fine grid, and is small: the
/// network generates each class, not the mixture or the other class.
#[test]
fn per_class_kl_of_a_conditional_run_on_a_1d_mixture_matches_quadrature() {
    let target = GaussianMixture::new(vec![0.4, 0.6], array![[-2.0], [1.5]], vec![array![[0.25]], array![[0.5]]]).unwrap();
    let source = StandardNormal::new(1).unwrap();
    let mut mlp = conditional_mlp(2, 0, 1, 5);
    let cfg = TrainConfig {
        steps: 1500,
        lr: 3e-3,
        lr_schedule: LrSchedule::Cosine { min_lr: 0.0 },
        condition: ConditionOn::Labels,
        seed: 2,
        ..TrainConfig::default()
    };
    fm_train::train(&mut mlp, &target, &source, &cfg, &mut |_| {}).unwrap();
    let likelihood = LikelihoodConfig::default();
    let sample = SampleConfig { steps: 50, ..SampleConfig::default() };
    let mut rng = StdRng::seed_from_u64(4);
    for class in 0..2 {
        let q = fm_train::class_quality(
            &fm_train::DataUnits { field: &mlp, source: &source, map: None, path: fm_train::ProbabilityPath::Linear },
            &target,
            class,
            &fm_train::Request::new(fm_train::Generator::Flow, &sample),
            500,
            4000,
            &likelihood,
            &mut rng,
        )
        .unwrap();
        let kl = q.kl.clone().unwrap();
        // Quadrature over ±8 standard deviations of the class.
        let (mu, sd) = (target.means()[[class, 0]], target.covariances()[class][[0, 0]].sqrt());
        let h = 16.0 * sd / 2000.0;
        let grid = Array2::from_shape_fn((2001, 1), |(i, _)| mu - 8.0 * sd + h * i as f64);
        let log_p = target.class_log_prob(grid.view(), class).unwrap();
        let guided = Guided::new(&mlp, Some(class), None, 1.0).unwrap();
        let log_q = fm_train::model_log_prob(&guided, &source, grid.view(), &likelihood).unwrap();
        let exact: f64 = log_p.iter().zip(&log_q).map(|(lp, lq)| lp.exp() * (lp - lq) * h).sum();
        assert!((kl.kl - exact).abs() <= 4.0 * kl.kl_se + 1e-3, "class {class}: Monte Carlo {kl} vs quadrature {exact:.5}");
        assert!(exact < 0.05, "class {class}: KL {exact:.4} after a short run: the condition does not reach the samples");
        assert!((q.purity.unwrap() - q.true_purity.unwrap()).abs() < 0.02, "{q}");
    }
}
