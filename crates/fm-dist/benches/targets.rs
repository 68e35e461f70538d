//! Sampling and `log_prob` throughput of the seed mixture and of a 64-D, 10-component
//! mixture, and the cost of exact W2. Run with `cargo bench -p fm-dist`.

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use fm_dist::{metrics, ComponentSpec, GaussianMixture, MixtureSpec, Target};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::hint::black_box;

/// 10 components in 64-D with random means and diagonal covariances (full Cholesky all the same).
fn mixture_64d() -> GaussianMixture {
    let mut rng = StdRng::seed_from_u64(7);
    let components = (0..10)
        .map(|_| ComponentSpec {
            mean: (0..64).map(|_| rng.random_range(-5.0..5.0)).collect(),
            diag: Some((0..64).map(|_| rng.random_range(0.2..2.0)).collect()),
            ..ComponentSpec::default()
        })
        .collect();
    MixtureSpec { name: None, components }.to_mixture().expect("valid 64-D mixture")
}

fn targets(c: &mut Criterion) {
    let cases = [("seed-2d-3comp", GaussianMixture::seed()), ("64d-10comp", mixture_64d())];
    let mut group = c.benchmark_group("mixture");
    for (name, gmm) in &cases {
        for n in [256usize, 10_000] {
            group.throughput(Throughput::Elements(n as u64));
            let mut rng = StdRng::seed_from_u64(0);
            group.bench_with_input(BenchmarkId::new(format!("sample/{name}"), n), &n, |b, &n| b.iter(|| black_box(gmm.sample(n, &mut rng))));
            let x = gmm.sample(n, &mut rng);
            group.bench_with_input(BenchmarkId::new(format!("log_prob/{name}"), n), &x, |b, x| b.iter(|| black_box(gmm.log_prob(x.view()).unwrap())));
        }
    }
    group.finish();
}

fn w2(c: &mut Criterion) {
    let gmm = GaussianMixture::seed();
    let mut group = c.benchmark_group("w2");
    group.sample_size(10);
    for n in [500usize, 1000, 2000, 4000] {
        let mut rng = StdRng::seed_from_u64(1);
        let (a, b) = (gmm.sample(n, &mut rng), gmm.sample(n, &mut rng));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| bench.iter(|| black_box(metrics::w2(a.view(), b.view()).unwrap())));
    }
    group.finish();
}

/// The benchmark groups, in a private module: `criterion_group!` defines a `pub fn`, which
/// would otherwise be an undocumented public item of this bench crate.
mod groups {
    criterion::criterion_group!(benches, super::targets, super::w2);
}
criterion_main!(groups::benches);
