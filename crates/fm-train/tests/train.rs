//! Training: it learns, it is reproducible, it refuses bad settings, it stops on divergence.

use fm_dist::{GaussianMixture, StandardNormal};
use fm_model::{Mlp, MlpConfig};
use fm_train::{sample, train, ProbabilityPath, SampleConfig, TrainConfig};
use ndarray::{array, Axis};
use tch::{Device, Kind, Tensor};

fn shifted_gaussian() -> GaussianMixture {
    GaussianMixture::new(vec![1.0], array![[3.0, -2.0]], vec![array![[0.25, 0.0], [0.0, 0.25]]]).unwrap()
}

fn model(seed: i64) -> Mlp {
    tch::manual_seed(seed);
    Mlp::new(MlpConfig { hidden_dim: 64, ..MlpConfig::default() }, Device::Cpu).unwrap()
}

/// Mean and per-axis standard deviation of samples from the model.
fn sample_stats(mlp: &Mlp) -> (Vec<f64>, Vec<f64>) {
    let x = sample(mlp, &StandardNormal::new(2).unwrap(), &SampleConfig { n_samples: 4000, steps: 50, ..SampleConfig::default() }).unwrap();
    (x.mean_axis(Axis(0)).unwrap().to_vec(), x.std_axis(Axis(0), 1.0).to_vec())
}

#[test]
fn learns_a_shifted_gaussian() {
    let target = shifted_gaussian();
    let source = StandardNormal::new(2).unwrap();
    let mut mlp = model(0);
    let (mean0, _) = sample_stats(&mlp);
    // The untrained field does not carry noise to (3, -2): the check below can fail.
    assert!((mean0[0] - 3.0).abs() > 1.0 || (mean0[1] + 2.0).abs() > 1.0, "untrained mean {mean0:?}");
    let cfg = TrainConfig { steps: 3000, lr: 3e-3, ..TrainConfig::default() };
    let report = train(&mut mlp, &target, &source, &cfg, &mut |_| {}).unwrap();
    assert!(report.final_loss < report.loss_history[0].1);
    let (mean, std) = sample_stats(&mlp);
    eprintln!("trained: mean {mean:?}, std {std:?}");
    // Sampling error of the mean with 4,000 points is 0.5/63 ≈ 0.008; the rest is the model's.
    for (got, want) in mean.iter().zip([3.0, -2.0]) {
        assert!((got - want).abs() < 0.1, "mean {mean:?}");
    }
    for s in &std {
        assert!((s - 0.5).abs() < 0.1, "std {std:?}");
    }
}

#[test]
fn same_seed_same_weights() {
    let target = GaussianMixture::seed();
    let source = StandardNormal::new(2).unwrap();
    let cfg = TrainConfig { steps: 30, batch_size: 64, seed: 5, ..TrainConfig::default() };
    let run = || {
        let mut mlp = model(1);
        train(&mut mlp, &target, &source, &cfg, &mut |_| {}).unwrap();
        fm_model::checkpoint::to_bytes(&mlp, &Default::default()).unwrap()
    };
    assert_eq!(run(), run());
    let mut other = model(1);
    train(&mut other, &target, &source, &TrainConfig { seed: 6, ..cfg.clone() }, &mut |_| {}).unwrap();
    assert_ne!(run(), fm_model::checkpoint::to_bytes(&other, &Default::default()).unwrap());
}

#[test]
fn progress_is_reported_every_n_steps_and_at_the_end() {
    let mut steps = Vec::new();
    let cfg = TrainConfig { steps: 25, batch_size: 8, report_every: 10, ..TrainConfig::default() };
    let report = train(&mut model(0), &GaussianMixture::seed(), &StandardNormal::new(2).unwrap(), &cfg, &mut |p| steps.push(p.step)).unwrap();
    assert_eq!(steps, [10, 20, 25]);
    assert_eq!(report.loss_history.len(), 3);
}

#[test]
fn bad_settings_are_refused_before_training() {
    let (t, s) = (GaussianMixture::seed(), StandardNormal::new(2).unwrap());
    for (cfg, msg) in [
        (TrainConfig { steps: 0, ..TrainConfig::default() }, "steps must be at least 1"),
        (TrainConfig { batch_size: 0, ..TrainConfig::default() }, "batch size must be at least 1"),
        (TrainConfig { lr: 0.0, ..TrainConfig::default() }, "learning rate must be a positive number"),
        (TrainConfig { lr: f64::NAN, ..TrainConfig::default() }, "learning rate must be a positive number"),
    ] {
        let err = train(&mut model(0), &t, &s, &cfg, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains(msg), "{err}");
    }
    let err = train(&mut model(0), &t, &StandardNormal::new(3).unwrap(), &TrainConfig::default(), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("dimension mismatch"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_the_step() {
    // Targets at 1e20: the squared error overflows float32 at once.
    let far = GaussianMixture::new(vec![1.0], array![[1e20, 0.0]], vec![array![[1.0, 0.0], [0.0, 1.0]]]).unwrap();
    let cfg = TrainConfig { steps: 50, batch_size: 8, report_every: 5, ..TrainConfig::default() };
    let err = train(&mut model(0), &far, &StandardNormal::new(2).unwrap(), &cfg, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("training diverged") && err.contains("at step 5"), "{err}");
}

#[test]
fn linear_path_ends_and_derivative() {
    let x0 = Tensor::from_slice(&[1.0f32, 2.0, -1.0, 0.5]).reshape([2, 2]);
    let x1 = Tensor::from_slice(&[3.0f32, -1.0, 0.0, 4.0]).reshape([2, 2]);
    let at = |t: f64| ProbabilityPath::Linear.interpolate(&x0, &x1, &Tensor::full([2, 1], t, (Kind::Float, Device::Cpu))).unwrap();
    let max = |t: Tensor| f64::try_from(t.abs().max()).unwrap();
    assert_eq!(max(at(0.0).0 - &x0), 0.0);
    assert_eq!(max(at(1.0).0 - &x1), 0.0);
    let h = 1e-2;
    let fd = (at(0.4 + h).0 - at(0.4 - h).0) / (2.0 * h);
    assert!(max(fd - at(0.4).1) < 1e-3);
}

#[test]
fn samples_are_reproducible_and_shaped() {
    let mlp = model(2);
    let cfg = SampleConfig { n_samples: 50, steps: 5, ..SampleConfig::default() };
    let src = StandardNormal::new(2).unwrap();
    let a = sample(&mlp, &src, &cfg).unwrap();
    assert_eq!(a.dim(), (50, 2));
    assert_eq!(a, sample(&mlp, &src, &cfg).unwrap());
    assert!(sample(&mlp, &src, &SampleConfig { n_samples: 0, ..cfg.clone() }).is_err());
    assert!(sample(&mlp, &src, &SampleConfig { steps: 0, ..cfg }).is_err());
}
