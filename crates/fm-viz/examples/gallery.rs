//! Renders every figure with realistic inputs: `cargo run -p fm-viz --example gallery [DIR]`.
//!
//! The flow is the exact marginal velocity of the straight-line path from N(0, I) to the
//! seed's Gaussian mixture (the field a perfectly trained model learns), integrated with Euler.

use fm_dist::{GaussianMixture, StandardNormal, Target};
use fm_viz::*;
use ndarray::{Array1, Array2, Array3, ArrayView2, Axis};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::path::PathBuf;

/// The marginal velocity of x_t = (1 - t) x0 + t x1, x0 ~ N(0, I), x1 ~ the mixture.
fn velocity(gmm: &GaussianMixture, x: ArrayView2<f64>, t: f64) -> Array2<f64> {
    let mut out = Array2::zeros(x.raw_dim());
    for (r, row) in x.rows().into_iter().enumerate() {
        let mut logw = Vec::new();
        let mut us = Vec::new();
        for k in 0..gmm.n_components() {
            let (m, c) = (gmm.means().row(k).to_owned(), &gmm.covariances()[k]);
            // S = (1-t)² I + t² Σ, cross = t Σ - (1-t) I.
            let s = [[(1.0 - t).powi(2) + t * t * c[[0, 0]], t * t * c[[0, 1]]], [t * t * c[[1, 0]], (1.0 - t).powi(2) + t * t * c[[1, 1]]]];
            let det = s[0][0] * s[1][1] - s[0][1] * s[1][0];
            let inv = [[s[1][1] / det, -s[0][1] / det], [-s[1][0] / det, s[0][0] / det]];
            let d = [row[0] - t * m[0], row[1] - t * m[1]];
            let z = [inv[0][0] * d[0] + inv[0][1] * d[1], inv[1][0] * d[0] + inv[1][1] * d[1]];
            let cross = [[t * c[[0, 0]] - (1.0 - t), t * c[[0, 1]]], [t * c[[1, 0]], t * c[[1, 1]] - (1.0 - t)]];
            us.push([m[0] + cross[0][0] * z[0] + cross[0][1] * z[1], m[1] + cross[1][0] * z[0] + cross[1][1] * z[1]]);
            logw.push(gmm.weights()[k].ln() - 0.5 * (d[0] * z[0] + d[1] * z[1]) - 0.5 * det.ln());
        }
        let mx = logw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logw.iter().map(|l| (l - mx).exp()).collect();
        let sum: f64 = w.iter().sum();
        for c in 0..2 {
            out[[r, c]] = us.iter().zip(&w).map(|(u, w)| u[c] * w).sum::<f64>() / sum;
        }
    }
    out
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/tmp/fm-viz-gallery".into()));
    std::fs::create_dir_all(&dir).unwrap();
    let gmm = GaussianMixture::seed();
    let mut rng = StdRng::seed_from_u64(7);

    // Trajectories: 300 particles, 60 Euler steps of the exact field.
    let (n, steps) = (300, 60);
    let x0 = StandardNormal::new(2).unwrap().sample(n, &mut rng);
    let times: Vec<f64> = (0..=steps).map(|k| k as f64 / steps as f64).collect();
    let mut states = Array3::zeros((steps + 1, n, 2));
    states.index_axis_mut(Axis(0), 0).assign(&x0);
    let mut x = x0.clone();
    for k in 0..steps {
        let v = velocity(&gmm, x.view(), times[k]);
        x = &x + &(v * (times[k + 1] - times[k]));
        states.index_axis_mut(Axis(0), k + 1).assign(&x);
    }
    for ext in ["png", "svg"] {
        let p = dir.join(format!("trajectories.{ext}"));
        trajectories(&p, states.view(), &times, Some(&gmm), &TrajectoryFigure::default()).unwrap();
        println!("{}", p.display());
    }
    // Straight lines from the independent coupling (they cross).
    let x1 = gmm.sample(n, &mut rng);
    let lines = Array3::from_shape_fn((steps + 1, n, 2), |(k, p, c)| (1.0 - times[k]) * x0[[p, c]] + times[k] * x1[[p, c]]);
    let p = dir.join("trajectories-straight.png");
    trajectories(&p, lines.view(), &times, Some(&gmm), &TrajectoryFigure::default()).unwrap();
    println!("{}", p.display());
    // 16-D: no density drawn, target samples instead.
    let sn = StandardNormal::new(16).unwrap();
    let hi0 = sn.sample(200, &mut rng);
    let hi = Array3::from_shape_fn((21, 200, 16), |(k, p, c)| hi0[[p, c]] * (1.0 - 0.5 * k as f64 / 20.0) + 2.0 * (c % 3) as f64 * k as f64 / 20.0);
    let t21: Vec<f64> = (0..21).map(|k| k as f64 / 20.0).collect();
    let p = dir.join("trajectories-16d.png");
    trajectories(&p, hi.view(), &t21, Some(&sn), &TrajectoryFigure { coords: (2, 6), ..Default::default() }).unwrap();
    println!("{}", p.display());
    let _ = (rng.random::<f64>(), Array1::<f64>::zeros(1));

    // The field at five times.
    for ext in ["png", "svg"] {
        let p = dir.join(format!("field.{ext}"));
        field(&p, |x: ArrayView2<f64>, t| Ok::<_, std::convert::Infallible>(velocity(&gmm, x, t)), Some(&gmm), &FieldFigure::default()).unwrap();
        println!("{}", p.display());
    }

    // Log-densities: a slightly-off "model" (means shifted, covariances inflated) beside the target.
    let covs: Vec<Array2<f64>> = gmm.covariances().iter().map(|c| c * 1.3).collect();
    let means = gmm.means().to_owned() + 0.25;
    let model = GaussianMixture::new(vec![0.25, 0.4, 0.35], means, covs).unwrap();
    for ext in ["png", "svg"] {
        let p = dir.join(format!("density.{ext}"));
        density(&p, |x: ArrayView2<f64>| model.log_prob(x), Some(&gmm), &DensityFigure::default()).unwrap();
        println!("{}", p.display());
    }
    // The seed's compare figure, the same with fitted axes, and a 16-D one.
    let samples = gmm.sample(10_000, &mut StdRng::seed_from_u64(0));
    for (name, fig) in [
        ("compare-seed.png", CompareFigure::seed()),
        ("compare-fitted.png", CompareFigure::fitted()),
        ("compare.svg", CompareFigure { resolution: 120, ..CompareFigure::seed() }),
    ] {
        let p = dir.join(name);
        compare(&p, &gmm, samples.view(), &fig).unwrap();
        println!("{}", p.display());
    }
    let p = dir.join("compare-16d.png");
    let s16 = sn.sample(5000, &mut rng);
    compare(&p, &sn, s16.view(), &CompareFigure { coords: (2, 6), ..CompareFigure::fitted() }).unwrap();
    println!("{}", p.display());

    // The flow as a GIF (2000 particles).
    let big = StandardNormal::new(2).unwrap().sample(2000, &mut rng);
    let mut flow = Array3::zeros((steps + 1, 2000, 2));
    flow.index_axis_mut(Axis(0), 0).assign(&big);
    let mut x = big;
    for k in 0..steps {
        x = &x + &(velocity(&gmm, x.view(), times[k]) * (times[k + 1] - times[k]));
        flow.index_axis_mut(Axis(0), k + 1).assign(&x);
    }
    let p = dir.join("animation.gif");
    animation(&p, flow.view(), &times, Some(&gmm), &AnimationFigure::default()).unwrap();
    println!("{}", p.display());

    // Training curves: a noisy decaying loss, W2 and KL every 250 steps.
    let steps = 5000;
    let loss_rows =
        Array2::from_shape_fn(
            (steps, 2),
            |(k, c)| {
                if c == 0 {
                    k as f64
                } else {
                    1.05 + 1.8 * (-(k as f64) / 600.0).exp() + 0.25 * (rng.random::<f64>() - 0.5)
                }
            },
        );
    let w2 = Array2::from_shape_fn((21, 2), |(k, c)| if c == 0 { 250.0 * k as f64 } else { 0.08 + 3.0 * (-(k as f64) / 3.0).exp() });
    let kl = Array2::from_shape_fn((21, 2), |(k, c)| if c == 0 { 250.0 * k as f64 } else { 0.01 + 6.0 * (-(k as f64) / 2.5).exp() });
    for ext in ["png", "svg"] {
        let p = dir.join(format!("loss.{ext}"));
        loss(&p, loss_rows.view(), &[("W2", w2.view()), ("KL", kl.view())], &LossFigure { width: 1800, ..LossFigure::default() }).unwrap();
        println!("{}", p.display());
    }
    let p = dir.join("loss-alone.png");
    loss(&p, loss_rows.view(), &[], &LossFigure::default()).unwrap();
    println!("{}", p.display());
    let p = dir.join("density-model-only.png");
    density(&p, |x: ArrayView2<f64>| model.log_prob(x), None, &DensityFigure::default()).unwrap();
    println!("{}", p.display());
}
