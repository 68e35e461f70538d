//! Host cost of pairing one training batch: N(0, I) source rows with rows of the seed
//! mixture or of the 8 Gaussians, by each coupling.
//!
//! ```text
//! cargo run --release -p fm-train --example coupling_cost [-- BATCH [REPEATS]]
//! ```

use fm_dist::{EightGaussians, GaussianMixture, StandardNormal, Target};
use fm_train::coupling::{ot_assignment, squared_distances};
use fm_train::Coupling;
use rand::{rngs::StdRng, SeedableRng};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let n = args.first().copied().unwrap_or(256);
    let repeats = args.get(1).copied().unwrap_or(200);
    let source = StandardNormal::new(2)?;
    let targets: [(&str, Box<dyn Target>); 2] = [("gmm3", Box::new(GaussianMixture::seed())), ("8gaussians", Box::new(EightGaussians::new_default()))];
    println!("batch {n}, {repeats} batches per row; milliseconds per batch (mean, min)");
    for (name, target) in &targets {
        let mut rng = StdRng::seed_from_u64(0);
        let batches: Vec<_> = (0..repeats).map(|_| (source.sample(n, &mut rng), target.sample(n, &mut rng))).collect();
        let time = |f: &mut dyn FnMut(&ndarray::Array2<f64>, &ndarray::Array2<f64>)| {
            let mut all = Vec::with_capacity(repeats);
            for (x0, x1) in &batches {
                let t = Instant::now();
                f(x0, x1);
                all.push(t.elapsed().as_secs_f64() * 1e3);
            }
            (all.iter().sum::<f64>() / all.len() as f64, all.iter().copied().fold(f64::INFINITY, f64::min))
        };
        let (cost_mean, cost_min) = time(&mut |a, b| {
            std::hint::black_box(squared_distances(a.view(), b.view()));
        });
        println!("{name:<11} cost matrix only      {cost_mean:8.3} {cost_min:8.3}");
        let (ot_mean, ot_min) = time(&mut |a, b| {
            std::hint::black_box(ot_assignment(a.view(), b.view()).unwrap());
        });
        println!("{name:<11} ot (cost + lsap)      {ot_mean:8.3} {ot_min:8.3}");
        for reg in [2.0, 0.5] {
            let mut prng = StdRng::seed_from_u64(1);
            let (m, mn) = time(&mut |a, b| {
                std::hint::black_box(Coupling::Sinkhorn { reg }.pairs(a.view(), b.view(), &mut prng).unwrap());
            });
            println!("{name:<11} sinkhorn reg {reg:<4}     {m:8.3} {mn:8.3}");
        }
    }
    Ok(())
}
