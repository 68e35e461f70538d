//! The crates together: train → checkpoint → reload → sample → judge → draw.

use fm_dist::{metrics::SampleQuality, GaussianMixture, StandardNormal};
use fm_model::{checkpoint, Mlp, MlpConfig};
use fm_ode::{solve, Method, SolveOptions, TimeGrid};
use fm_train::{array_to_tensor, sample, tensor_to_array, train, SampleConfig, TrainConfig};
use rand::{rngs::StdRng, SeedableRng};
use tch::Device;

#[test]
fn a_reloaded_checkpoint_samples_exactly_like_the_trained_model() {
    let dir = std::env::temp_dir().join(format!("fm-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = GaussianMixture::seed();
    let source = StandardNormal::new(2).unwrap();
    tch::manual_seed(0);
    let mut mlp = Mlp::new(MlpConfig::default(), Device::Cpu).unwrap();
    let cfg = TrainConfig { steps: 1500, lr: 2e-3, ..TrainConfig::default() };
    train(&mut mlp, &target, &source, &cfg, &mut |_| {}).unwrap();

    let path = dir.join("model.safetensors");
    checkpoint::save(&mlp, &path, &Default::default()).unwrap();
    let (loaded, _) = checkpoint::load(&path, Device::Cpu).unwrap();
    let sample_cfg = SampleConfig { n_samples: 3000, steps: 20, method: Method::Midpoint, seed: 9, chunk_size: 512, ..SampleConfig::default() };
    let a = sample(&mlp, &source, &sample_cfg).unwrap();
    let b = sample(&*loaded, &source, &sample_cfg).unwrap();
    assert_eq!(a, b, "a reloaded model must sample bit-identically");

    // fm-train's sampler is fm-ode's solve on the source draws.
    let x0 = fm_dist::Target::sample(&source, 3000, &mut StdRng::seed_from_u64(9));
    let direct = solve(
        &*loaded,
        &array_to_tensor(x0.view(), Device::Cpu).unwrap(),
        &TimeGrid::uniform(0.0, 1.0, 20).unwrap(),
        Method::Midpoint,
        SolveOptions::default(),
    )
    .unwrap();
    assert_eq!(tensor_to_array(&direct.x).unwrap(), a);

    // A short run already puts every component's share within 0.05 of its weight.
    let q = SampleQuality::measure(&target, a.view(), 1000, 1, &mut StdRng::seed_from_u64(1)).unwrap();
    assert!(q.max_share_error().unwrap() < 0.05, "{q}");
    fm_viz::compare(&dir.join("compare.png"), &target, a.view(), &fm_viz::CompareFigure { resolution: 60, ..Default::default() }).unwrap();
    assert!(dir.join("compare.png").exists());
}
